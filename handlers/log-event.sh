#!/bin/sh
# log-event.sh - the simplest hookrunner handler: show what the daemon passed in.
#
# Useful as a first handler while wiring up a new source, and as a template.
#
# Inputs
#   args   anything; typically `--<param>=<value>` pairs, printed one per line
#          verbatim (values may contain spaces, quotes, newlines, `$()` ...).
#   stdin  the raw request body; only its size in bytes is reported.
#   env    HOOK_SOURCE, HOOK_EVENT, HOOK_TASK_ID, HOOK_DELIVERY_ID (set by the
#          daemon); LOG_FILE (optional, from the program's `env:`): if set, one
#          line "<task id> <source> <event>" is appended to that file.
# Exit     0; 1 only if LOG_FILE is set but cannot be appended to.
#
# webhook.yaml (from the shipped one; relative paths start at its directory):
#   mappings:
#     jira:
#       jira:issue_created:
#         params:
#           key: payload.issue.key        # -> --key=PROJ-123
#         rules:
#           - run: log-event              # no program named log-event: runs
#                                         # handlers/log-event.sh with every
#                                         # param of its mapping
#   A `programs:` entry is only needed for env (LOG_FILE), a timeout, ...;
#   it then gets only the params it lists, and every mapping that runs it
#   must extract them:
#   programs:
#     log-event:
#       command: handlers/log-event.sh
#       timeout: 30s
#       env:
#         LOG_FILE: /var/log/hookrunner/events.log
#
# Untrusted data is only ever printed through printf '%s', never `echo`
# (echo may interpret backslashes or a leading -n/-e) and never eval'd.

printf 'source=%s event=%s task=%s delivery=%s\n' \
    "${HOOK_SOURCE-}" "${HOOK_EVENT-}" "${HOOK_TASK_ID-}" "${HOOK_DELIVERY_ID-}"

n=0
for arg in "$@"; do
    n=$((n + 1))
    printf 'arg %d: %s\n' "$n" "$arg"
done

# wc -c pads with spaces on some systems; strip them.
size=$(wc -c | tr -d ' ')
printf 'stdin: %s bytes\n' "$size"

if [ -n "${LOG_FILE-}" ]; then
    printf '%s %s %s\n' "${HOOK_TASK_ID-}" "${HOOK_SOURCE-}" "${HOOK_EVENT-}" >>"$LOG_FILE" || exit 1
fi
exit 0

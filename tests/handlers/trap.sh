#!/bin/sh
# Test handler: ignores SIGTERM, starts a background grandchild that also
# ignores it, records both pids in $PIDS_FILE, then waits forever.
trap '' TERM
sh -c 'trap "" TERM; while :; do sleep 1; done' &
printf '%s %s\n' "$$" "$!" > "$PIDS_FILE"
while :; do sleep 1; done

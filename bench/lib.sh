# Shared by bench/run.sh and bench/callgrind.sh (sourced; needs SECRET and SPAWN_PAR).

# hookrunner: one GitHub source (HMAC-SHA256 of X-Hub-Signature-256, no dedup:
# loads send no X-GitHub-Delivery), one param passed as one argument.
hr_config() { # file max_queued keep program-argv-yaml arg-template
  cat >"$1" <<EOF
server: {max_body: 1MiB}
tasks: {max_concurrent: $SPAWN_PAR, max_queued: $2, keep: $3}
deliveries: {keep: 10000}
sources:
  github: {provider: github, secret: $SECRET, dedup: off}
  rss: {provider: generic, auth: none}
programs:
  handler:
    command: $4
    args: [$5]
  trivial:
    command: [/bin/true]
mappings:
  github:
    push:
      params: {ref: payload.ref, n: payload.n, sent: payload.sent}
      rules:
        - if: ref == "refs/heads/bench"
          run: handler
  rss:
    "*":
      rules:
        - run: trivial
EOF
}

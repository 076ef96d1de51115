#!/usr/bin/env bash
# Runs hookrunner's fuzz targets (fuzz/, cargo-fuzz + libFuzzer), one after
# the other, and prints how many inputs each ran and whether it crashed.
# See docs/FUZZING.md.
#
#   bash bench/fuzz.sh                      # every target, 60 s each
#   bash bench/fuzz.sh 1800 body_parser     # one target, 30 min
#   RUNS=10000000 bash bench/fuzz.sh 1800   # stop at 10 M inputs or 30 min
#
# Knobs (env, defaults in brackets):
#   RUNS [unlimited]      libFuzzer -runs: stop after this many inputs
#   SANITIZER [address]   address or none (none when address cannot build)
#   NICE [19]             nice level of builds and runs (the machine is shared)
#   MAX_LEN [libFuzzer's] -max_len, bytes
#   FUZZ_ARGS []          more libFuzzer flags, e.g. "-jobs=2"
# The corpus of each target grows in fuzz/corpus/<target> (seeded from
# tests/fixtures, webhook.yaml, docs/recipes and the configs in tests/*.rs);
# a crash is kept in fuzz/artifacts/<target>/, the log in fuzz/logs/<target>.log.
# Exit status: 0 when no target crashed, 1 when one did, 2 on a setup error.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SECONDS_PER_TARGET=${1:-60}
shift || true
NICE=${NICE:-19}
SANITIZER=${SANITIZER:-address}
# cargo-fuzz needs nightly flags (-Zsanitizer, sancov); stable rustc takes them with this.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz from crates.io" >&2
  nice -n "$NICE" cargo install cargo-fuzz --locked >&2 || { echo "cannot install cargo-fuzz" >&2; exit 2; }
fi

ALL=(body_parser signatures forwarded_for form list_queries config record)
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL[@]}")

build() {
  nice -n "$NICE" cargo fuzz build -O -s "$SANITIZER" "$@" >&2
}
# Without a name, `cargo fuzz build` builds every target at once.
if ! build; then
  if [[ $SANITIZER != none ]]; then
    echo "the $SANITIZER sanitizer does not build here; trying without one" >&2
    SANITIZER=none
    build || { echo "the fuzz targets do not build" >&2; exit 2; }
  else
    echo "the fuzz targets do not build" >&2
    exit 2
  fi
fi

# ---------------------------------------------------------------------------
# Seeds: real bodies and configs, in each target's input format.
seed() { # target name  (content on stdin)
  mkdir -p "fuzz/corpus/$1"
  cat >"fuzz/corpus/$1/seed-$2"
}
fixtures=(tests/fixtures/github/*.json tests/fixtures/gitlab/*.json tests/fixtures/gitea/*.json tests/fixtures/jira/*.json)
paths='ref|repository.full_name|commits[0].id|sender|[0]'
for f in "${fixtures[@]}"; do
  [[ -f $f ]] || continue
  name=$(echo "$f" | tr '/' '_')
  { printf "\\x$(printf %02x ${#paths})%s" "$paths"; cat "$f"; } | seed body_parser "$name"
  { printf '\x00\x04\x03\x01\x07\x02'; cat "$f"; } | seed form "json-$name"
  { printf '\x13\x06abcdef'; cat "$f"; } | seed form "round-$name"
done
printf '\x06ref|ref{"ref":1,"ref":{"a":[1,2]},"x":"\\u00e9"}' | seed body_parser dup
printf '\x02\x00payload=%%7B%%22ref%%22%%3A%%22main%%22%%7D&a=b' | seed form payload
printf '\x03\x00text=hi&user_name=bob&text=again&payload' | seed form plain
printf '\x0e\x00Multipart/Form-Data; boundary=x\nbody' | seed form other
printf '\x00Stripe-Signature: t=1700000000,v1=%s,v0=00\n\n{"type":"invoice.paid"}' "$(printf 'ab%.0s' {1..32})" | seed signatures stripe
printf '\x02webhook-id: msg_1\nwebhook-timestamp: 1700000000\nwebhook-signature: v1,AAAA v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n\n{"test": 1}' | seed signatures standard
printf '\x04X-Slack-Request-Timestamp: 1700000000\nX-Slack-Signature: v0=%s\n\ntoken=x&text=hi' "$(printf 'cd%.0s' {1..32})" | seed signatures slack
printf '\x06X-Hub-Signature-256: sha256=%s\nX-Hub-Signature: sha1=00\n\n{}' "$(printf '01%.0s' {1..32})" | seed signatures github
printf '\x08X-Sig: sha256=00ff\n\nbody' | seed signatures hmac
printf '\x0eContent-Type: application/x-www-form-urlencoded\nX-Gitea-Signature: 00\n\npayload=%%7B%%7D' | seed signatures gitea
printf '\x10X-Gitlab-Token: gl-fuzz-token\nwebhook-id: a\nwebhook-timestamp: 1700000000\nwebhook-signature: v1,AAAA\n\n{}' | seed signatures gitlab
printf '\x01\x00\x10\x00\x00\x07\x00\x00\x00\x01\n\n{"ref":"refs/heads/main"}' | seed signatures roundtrip
printf '127.0.0.1\n127.0.0.1 10.0.0.0/8 ::1\n198.51.100.1, 10.0.0.2\n203.0.113.9, 127.0.0.1' | seed forwarded_for chain
printf '::ffff:127.0.0.1\n127.0.0.0/8\nunknown, 1.2.3.4:5555\n[::1], 2001:db8::1' | seed forwarded_for bad
printf 'status=queued&limit=10&source=github&event=push&program=deploy' | seed list_queries tasks
printf 'outcome=accepted&before=0b5a1f3e-9d2c-4c1a-8f00-6a2b3c4d5e6f&limit=1000' | seed list_queries deliveries
printf 'limit=0&status=x%%0Ay&junk=1' | seed list_queries bad
printf 'Authorization: Basic dTpw\nX-Custom-Key: k\nX-Note: a: b\nUser-Agent: caf\xc3\xa9\xff\n' | seed record auth
printf 'Content-Type: application/json\nX-Long: %s\nX-Line: a\rb\n' "$(printf 'x%.0s' {1..1100})" | seed record long
seed config webhook.yaml <webhook.yaml
for f in docs/recipes/*.md README.md docs/*.md; do
  [[ -f $f ]] || continue
  awk -v out="fuzz/corpus/config/seed-$(basename "$f" .md)-" '
    /^```ya?ml/ {n++; on=1; next} /^```/ {on=0; next} on {print > (out n)}' "$f"
done
for f in tests/*.rs; do
  perl -0777 -ne '
    my $n = 0;
    while (/r#"(.*?)"#/sg) {
      my $t = $1; next unless $t =~ /^\s*(sources|server|mappings|programs|tasks|state):/m;
      $n++; open(my $o, ">", "fuzz/corpus/config/seed-'"$(basename "$f" .rs)"'-$n") or die; print $o $t; close $o;
    }' "$f"
done

# ---------------------------------------------------------------------------
mkdir -p fuzz/logs
printf '%-14s %14s %8s %10s  %s\n' target inputs seconds inputs/s result
crashed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  args=(-max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1)
  [[ -n ${RUNS:-} ]] && args+=(-runs="$RUNS")
  [[ -n ${MAX_LEN:-} ]] && args+=(-max_len="$MAX_LEN")
  [[ -f fuzz/dicts/$t.dict ]] && args+=(-dict="fuzz/dicts/$t.dict")
  # shellcheck disable=SC2206
  args+=(${FUZZ_ARGS:-})
  before=$(ls "fuzz/artifacts/$t" | wc -l)
  start=$(date +%s)
  status=0
  nice -n "$NICE" cargo fuzz run -O -s "$SANITIZER" "$t" "fuzz/corpus/$t" -- "${args[@]}" \
    >"fuzz/logs/$t.log" 2>&1 || status=$?
  took=$(( $(date +%s) - start ))
  inputs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "fuzz/logs/$t.log" | tail -1 | grep -o '[0-9]*$' || true)
  [[ -n $inputs ]] || inputs=$(grep -oE '^#[0-9]+' "fuzz/logs/$t.log" | tail -1 | tr -d '#' || true)
  inputs=${inputs:-0}
  after=$(ls "fuzz/artifacts/$t" | wc -l)
  if [[ $status -eq 0 && $after -eq $before ]]; then
    result="no crash"
  else
    result="CRASH (exit $status): $(ls -t "fuzz/artifacts/$t" | head -1), see fuzz/logs/$t.log"
    crashed=1
  fi
  printf '%-14s %14s %8s %10s  %s\n' "$t" "$inputs" "$took" "$(( inputs / (took > 0 ? took : 1) ))" "$result"
done
echo "sanitizer: $SANITIZER; $(cargo fuzz --version); $(rustc --version)"
exit $crashed

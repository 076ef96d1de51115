#!/usr/bin/env bash
# Instructions per ignored delivery, counted by callgrind: repeatable on a
# noisy machine where requests/s are not. See BENCHMARKS.md.
#
#   bash bench/callgrind.sh          # after `bash bench/run.sh` built everything
#   bash bench/callgrind.sh --check  # the CI guard (builds what it needs)
#
# Runs hookrunner (section (1)'s config) and the bare actix-web ceiling under
# `valgrind --tool=callgrind`, sends 500 warm-up deliveries, zeroes the
# counters, sends N more (4 connections), and prints user-space instructions
# per request for each, for two bodies: the 270-byte push-shaped body and
# GitHub's real 8.6 KiB push (tests/fixtures/github/push.json). Both are
# validly signed and no rule matches them (ignored deliveries). Knobs:
# N [2000], PORT [19090], BODIES ["small push"].
#
# --check: builds the release hookrunner and the load generator (not the
# ceiling), counts hookrunner only (N [1000]: the count per request is the
# same as with 2,000, see BENCHMARKS.md), and fails if either count is more
# than 10 % above the number recorded in bench/callgrind-baseline.txt.
# After a change that costs instructions on purpose, record the new numbers:
# `bash bench/callgrind.sh --check --record`.
#
# valgrind does not emulate the SHA extensions, so SHA-256 runs its software
# fallback there: hookrunner's count includes ~20k instructions of HMAC that
# take a few hundred cycles natively.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHECK= RECORD=
for arg in "$@"; do
  case $arg in
    --check) CHECK=1 ;;
    --record) CHECK=1 RECORD=1 ;;
    *) echo "usage: bash bench/callgrind.sh [--check [--record]]" >&2; exit 2 ;;
  esac
done
if [[ -n $CHECK ]]; then N=${N:-1000}; else N=${N:-2000}; fi
PORT=${PORT:-19090}
BODIES=${BODIES:-small push}
OUT=$ROOT/target/bench-callgrind
BASELINE=$ROOT/bench/callgrind-baseline.txt
TOLERANCE_PCT=10
SECRET=bench-secret-0123456789
HOOKRUNNER=${HOOKRUNNER:-$ROOT/target/release/hookrunner}
CEILING=$ROOT/target/bench-tools/release/hookrunner-bench-ceiling
LOADGEN=$ROOT/target/bench-tools/release/loadgen

if ! command -v valgrind >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then echo "need valgrind (apt-get install valgrind)" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
if [[ -n $CHECK ]]; then
  echo "building hookrunner (release) and the load generator" >&2
  (cd "$ROOT" && cargo build --release --quiet --bin hookrunner)
  CARGO_TARGET_DIR=$ROOT/target/bench-tools cargo build --release --quiet \
    --manifest-path "$ROOT/bench/tools/Cargo.toml" --bin loadgen
  bins=("$HOOKRUNNER" "$LOADGEN")
else
  bins=("$HOOKRUNNER" "$CEILING" "$LOADGEN")
fi
for bin in "${bins[@]}"; do
  [[ -x $bin ]] || { echo "missing $bin: run bash bench/run.sh first" >&2; exit 1; }
done
rm -rf "$OUT" && mkdir -p "$OUT"

SPAWN_PAR=4
source "$ROOT/bench/lib.sh"
hr_config "$OUT/hr.yaml" 1000 10000 "[/bin/true]" '"{n}"'
printf '%s' '{"ref":"refs/heads/master","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"0000000000000000000000000000000000000000","repository":{"id":186853002,"full_name":"acme/app","private":false},"pusher":{"name":"octocat"},"sender":{"login":"octocat","id":21031067}}' >"$OUT/small.json"
cp "$ROOT/tests/fixtures/github/push.json" "$OUT/push.json"

declare -A COUNT
count() { # name body cmd...
  local name=$1 body=$2; shift 2
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  send() { "$LOADGEN" --addr "127.0.0.1:$PORT" --path /hooks/github --conns 4 --n "$1" --secret "$SECRET" \
    --header 'X-GitHub-Event: push' --body-file "$OUT/$body.json"; }
  send 500 >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  local sent
  sent=$(send "$N")
  echo "  $name: $sent" >&2
  [[ $sent == *" s200=$N "* ]] || { echo "$name: not every request was answered 200: $sent" >&2; kill "$pid"; exit 1; }
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local dump ir
  dump=$(ls -t "$OUT/$name.out".* | head -n 1)
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
  COUNT[$name]=$((ir / N))
  echo "$name instructions/request: $((ir / N))   (callgrind_annotate --inclusive=yes $dump)"
}
for body in $BODIES; do
  count "hookrunner-$body" "$body" "$HOOKRUNNER" --config "$OUT/hr.yaml" --listen "127.0.0.1:$PORT"
  [[ -n $CHECK ]] || count "ceiling-$body" "$body" "$CEILING" "127.0.0.1:$PORT"
done
[[ -n $CHECK ]] || exit 0

if [[ -n $RECORD ]]; then
  {
    sed -n '/^#/p' "$BASELINE"
    for body in $BODIES; do echo "$body ${COUNT[hookrunner-$body]}"; done
  } >"$BASELINE.new"
  mv "$BASELINE.new" "$BASELINE"
  echo "recorded in $BASELINE"
  exit 0
fi
failed=0
for body in $BODIES; do
  recorded=$(awk -v b="$body" '$1 == b {print $2}' "$BASELINE")
  [[ -n $recorded ]] || { echo "no recorded count for '$body' in $BASELINE" >&2; exit 1; }
  now=${COUNT[hookrunner-$body]}
  ratio=$(awk -v a="$now" -v b="$recorded" 'BEGIN {printf "%.3f", a / b}')
  if ((now * 100 > recorded * (100 + TOLERANCE_PCT))); then
    echo "FAIL $body: $now instructions per ignored delivery, $ratio x the recorded $recorded (limit $((100 + TOLERANCE_PCT)) %)"
    failed=1
  else
    echo "ok   $body: $now instructions per ignored delivery, $ratio x the recorded $recorded (limit $((100 + TOLERANCE_PCT)) %)"
  fi
done
exit $failed

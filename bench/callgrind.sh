#!/usr/bin/env bash
# Instructions per ignored delivery, counted by callgrind: repeatable on a
# noisy machine where requests/s are not. See BENCHMARKS.md.
#
#   bash bench/callgrind.sh          # after `bash bench/run.sh` built everything
#
# Runs hookrunner (section (1)'s config) and the bare actix-web ceiling under
# `valgrind --tool=callgrind`, sends 500 warm-up deliveries, zeroes the
# counters, sends N more (the 270-byte body, 4 connections), and prints user-
# space instructions per request for each. Knobs: N [2000], PORT [19090].
# valgrind does not emulate the SHA extensions, so SHA-256 runs its software
# fallback there: hookrunner's count includes ~20k instructions of HMAC that
# take a few hundred cycles natively.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-2000}
PORT=${PORT:-19090}
OUT=$ROOT/target/bench-callgrind
SECRET=bench-secret-0123456789
HOOKRUNNER=${HOOKRUNNER:-$ROOT/target/release/hookrunner}
CEILING=$ROOT/target/bench-tools/release/hookrunner-bench-ceiling
LOADGEN=$ROOT/target/bench-tools/release/loadgen
for bin in "$HOOKRUNNER" "$CEILING" "$LOADGEN"; do
  [[ -x $bin ]] || { echo "missing $bin: run bash bench/run.sh first" >&2; exit 1; }
done
if ! command -v valgrind >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then echo "need valgrind (apt-get install valgrind)" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
rm -rf "$OUT" && mkdir -p "$OUT"

SPAWN_PAR=4
source "$ROOT/bench/lib.sh"
hr_config "$OUT/hr.yaml" 1000 10000 "[/bin/true]" '"{n}"'
BODY='{"ref":"refs/heads/master","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"0000000000000000000000000000000000000000","repository":{"id":186853002,"full_name":"acme/app","private":false},"pusher":{"name":"octocat"},"sender":{"login":"octocat","id":21031067}}'

count() { # name cmd...
  local name=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  send() { "$LOADGEN" --addr "127.0.0.1:$PORT" --path /hooks/github --conns 4 --n "$1" --secret "$SECRET" \
    --header 'X-GitHub-Event: push' --body "$BODY"; }
  send 500 >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  echo "  $name: $(send "$N")" >&2
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local dump ir
  dump=$(ls -t "$OUT/$name.out".* | head -n 1)
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
  echo "$name instructions/request: $((ir / N))   (callgrind_annotate --inclusive=yes $dump)"
}
count hookrunner "$HOOKRUNNER" --config "$OUT/hr.yaml" --listen "127.0.0.1:$PORT"
count ceiling "$CEILING" "127.0.0.1:$PORT"

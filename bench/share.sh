#!/usr/bin/env bash
# Natively, per ignored delivery: how much CPU the daemon spends, and how much
# of it is hookrunner's own code. See BENCHMARKS.md ("Fifth pass").
#
#   bash bench/share.sh    # after `bash bench/run.sh` built everything
#
# For each body (the 270-byte push-shaped one and GitHub's 8.6 KiB push,
# validly signed, no rule matching), alternating hookrunner and the bare
# actix-web ceiling, RUNS times: a 2 s `wrk -c64` warm-up, then the daemon's
# user+system CPU time (/proc/PID/stat) over a DURATION `wrk -c64` run,
# divided by the requests it answered. Then `perf record` (cpu-clock, DWARF
# call graphs) of each server under the same load, its samples split into
# parts (bench/share.py): hookrunner's own code by step (verifying, parsing,
# judging, recording, answering), and the work both servers do on the
# connection (the send, split into waking the client, being preempted at its
# end, and the rest; recv; epoll; the rest of actix-web and tokio), each
# shown as µs of that server's mean CPU time per request. CPU time is not
# requests/s (wrk shares the two cores), but it says where the time goes.
# Knobs: DURATION [8s], RUNS [2], PORT [19095], BODIES ["small push"],
# PERF [1] (0: CPU time only). Installs perf (Debian `linux-perf`) if missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=$ROOT/target/bench-run
DURATION=${DURATION:-8s}
RUNS=${RUNS:-2}
PORT=${PORT:-19095}
BODIES=${BODIES:-small push}
PERF=${PERF:-1}
HOOKRUNNER=${HOOKRUNNER:-$ROOT/target/release/hookrunner}
CEILING=$ROOT/target/bench-tools/release/hookrunner-bench-ceiling
OUT=$ROOT/target/bench-share

for f in "$RUN/hr-ignored.yaml" "$RUN/wrk-small.lua" "$RUN/wrk-push.lua" "$HOOKRUNNER" "$CEILING"; do
  [[ -e $f ]] || { echo "missing $f: run \`bash bench/run.sh\` first" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk is missing: run \`bash bench/run.sh\` first" >&2; exit 1; }
if [[ $PERF == 1 ]] && ! command -v perf >/dev/null; then
  [[ $(id -u) -eq 0 ]] || { echo "perf is missing (or PERF=0)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi
rm -rf "$OUT" && mkdir -p "$OUT/tmp"
log() { printf '[share %s] %s\n' "$(date +%T)" "$*" >&2; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_port() {
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$1" >&2; exit 1
}
TMPDIR=$OUT/tmp "$HOOKRUNNER" serve --config "$RUN/hr-ignored.yaml" --listen "127.0.0.1:$PORT" >"$OUT/hookrunner.log" 2>&1 &
HR=$!; PIDS+=("$HR")
"$CEILING" "127.0.0.1:$((PORT + 1))" >"$OUT/ceiling.log" 2>&1 &
CEIL=$!; PIDS+=("$CEIL")
wait_port "$PORT"; wait_port "$((PORT + 1))"

TICK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
measure() { # name pid port body
  local url="http://127.0.0.1:$3/hooks/github" lua="$RUN/wrk-$4.lua" before after out
  wrk -t2 -c64 -d2s -s "$lua" "$url" >/dev/null 2>&1 || true
  before=$(cpu "$2")
  out=$(wrk -t2 -c64 -d"$DURATION" -s "$lua" "$url" 2>&1)
  after=$(cpu "$2")
  python3 - "$1" "$4" "$before" "$after" "$TICK" <<EOF | tee -a "$OUT/results.txt"
import re, sys
name, body, before, after, tick = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
out = """$out"""
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
print(f"cpu\t{name}\t{body}\t{rps:.0f}\t{(after - before) / tick * 1e6 / reqs:.2f}")
EOF
}
for _ in $(seq "$RUNS"); do
  for body in $BODIES; do
    log "CPU per request, $body body: hookrunner, then the ceiling"
    measure hookrunner "$HR" "$PORT" "$body"
    measure ceiling "$CEIL" "$((PORT + 1))" "$body"
  done
done

if [[ $PERF == 1 ]]; then
  for body in $BODIES; do
    for server in hookrunner ceiling; do
      if [[ $server == hookrunner ]]; then pid=$HR port=$PORT; else pid=$CEIL port=$((PORT + 1)); fi
      log "perf record of the $server, $body body"
      url="http://127.0.0.1:$port/hooks/github"
      wrk -t2 -c64 -d2s -s "$RUN/wrk-$body.lua" "$url" >/dev/null 2>&1 || true
      wrk -t2 -c64 -d9s -s "$RUN/wrk-$body.lua" "$url" >/dev/null 2>&1 &
      load=$!
      sleep 1
      perf record -q -e cpu-clock -F 1999 -g --call-graph dwarf,16384 -p "$pid" -o "$OUT/perf-$server-$body.data" -- sleep 5 >/dev/null 2>&1
      wait "$load" || true
      perf script -i "$OUT/perf-$server-$body.data" -F ip,sym 2>/dev/null |
        python3 "$ROOT/bench/share.py" classify "$server" "$body" >>"$OUT/results.txt"
    done
  done
fi
python3 "$ROOT/bench/share.py" table "$OUT/results.txt"
log "raw results and perf data: $OUT"

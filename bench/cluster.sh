#!/usr/bin/env bash
# The cluster benchmark (issue 14): one node on SQLite, one node on
# PostgreSQL, three nodes on PostgreSQL, side by side; and the three nodes
# again with a `GET /events` listener on one of them (the others relay it
# their events). See BENCHMARKS.md.
#
#   bash bench/cluster.sh            # ~3 min on 2 cores
#   QUICK=1 bash bench/cluster.sh    # short, to check the script itself
#
# Needs the machine's PostgreSQL at 127.0.0.1:5432 (trust auth, user
# postgres); every run makes and drops its own databases. Knobs (env):
#   ACCEPT_N [20000]  ACCEPT_CONNS [48]   accepted deliveries (1), tasks started (2)
#   LAT_N [400]       LAT_GAP_MS [20]     cross-node delivery-to-start (3)
#   LEASE [10s]                           takeover after kill -9 (4)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [[ -n "${QUICK:-}" ]]; then
  : "${ACCEPT_N:=3000}" "${LAT_N:=100}" "${LEASE:=3s}"
fi
ACCEPT_N=${ACCEPT_N:-20000}
ACCEPT_CONNS=${ACCEPT_CONNS:-48}
LAT_N=${LAT_N:-400}
LAT_GAP_MS=${LAT_GAP_MS:-20}
LEASE=${LEASE:-10s}
PORT_BASE=${PORT_BASE:-19180}
OUT=${OUT:-$ROOT/target/bench-cluster}
rm -rf "$OUT" && mkdir -p "$OUT"
RESULTS=$OUT/results.txt
: >"$RESULTS"
log() { printf '[cluster %s] %s\n' "$(date +%T)" "$*" >&2; }
# The nodes' state (SQLite, output files) is under OUT: on an ext4 without a
# journal, the files earlier runs deleted slow down making new ones (the
# "Fourth pass" in BENCHMARKS.md); OUT=<a journaled file system> avoids it.
log "state and output files in $OUT: $(findmnt -no FSTYPE,SOURCE,OPTIONS -T "$OUT" 2>/dev/null || echo unknown)"
result() { echo "$1=$2" >>"$RESULTS"; log "$1=$2"; }
kv() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }

pg_isready -h 127.0.0.1 -p 5432 -q || { echo "no PostgreSQL at 127.0.0.1:5432" >&2; exit 1; }
log "building hookrunner and the load tools (release)"
[[ -n "${HOOKRUNNER:-}" ]] || cargo build --release --quiet
CARGO_TARGET_DIR=$ROOT/target/bench-tools cargo build --release --quiet --manifest-path bench/tools/Cargo.toml
HOOKRUNNER=${HOOKRUNNER:-$ROOT/target/release/hookrunner}
LOADGEN=$ROOT/target/bench-tools/release/loadgen
STAMP=$ROOT/bench/handlers/stamp.sh

PIDS=()
DBS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in "${DBS[@]}"; do psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
new_db() { local d="hr_bench_$$_$1"; psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $d"; DBS+=("$d"); echo "postgres://postgres@127.0.0.1:5432/$d?sslmode=disable"; }
wait_port() { for _ in $(seq 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nothing on :$1" >&2; exit 1; }
# start NAME PORT CONFIG [labels]; sets PID
start() {
  HOOKRUNNER_NODE_NAME=$1 HOOKRUNNER_NODE_LABELS=${4:-} RUST_LOG=warn "$HOOKRUNNER" serve --config "$3" --listen "127.0.0.1:$2" >"$OUT/$1.log" 2>&1 &
  PID=$!; PIDS+=("$PID"); wait_port "$2"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
config() { # file state-yaml runs-file
  cat >"$1" <<EOF
$2
node: {lease: $LEASE}
tasks: {max_concurrent: 4, max_queued: 1000000, keep: 100000}
deliveries: {keep: 100000}
sources:
  a: {provider: generic, auth: none, event: {field: kind}, dedup: off}
programs:
  trivial:
    command: [$STAMP, $3]
    args: ["{sent}"]
  crossing:
    command: [$STAMP, $3]
    args: ["{sent}"]
    run_on: [runner]
  long:
    command: [sleep, "600"]
mappings:
  a:
    trivial: {params: {sent: payload.sent}, rules: [{run: trivial}]}
    crossing: {params: {sent: payload.sent}, rules: [{run: crossing}]}
    long: {rules: [{run: long}]}
EOF
}
drained() { # port: no task queued or running anywhere
  local q r
  q=$(curl -s "http://127.0.0.1:$1/tasks?status=queued&limit=1"); r=$(curl -s "http://127.0.0.1:$1/tasks?status=running&limit=1")
  [[ $q == *'"tasks":[]'* && $r == *'"tasks":[]'* ]]
}
wait_drained() { while ! drained "$1"; do sleep 0.2; done; }
start_rate() { # runs-file: tasks started per second, first to last start
  python3 - "$1" <<'EOF'
import sys
starts = sorted(int(l.split()[1]) for l in open(sys.argv[1]) if l.strip())
span = (starts[-1] - starts[0]) / 1e9 if len(starts) > 1 else 0
print(f"{len(starts) / span:.0f}" if span else "0")
EOF
}

# ---------------------------------------------------------------- (1)+(2) accept and start rates
accept() { # name: one of sqlite, pg1, pg3, pg3w (pg3 with an /events listener on node 1)
  local name=$1 runs=$OUT/runs-$1 state ports=() line rps=0 acked=0
  : >"$runs"
  case $name in
    sqlite) state="state: {path: $OUT/$name/hookrunner.db}";;
    *) state="state: {postgres: \"$(new_db "$name")\", connections: 8}";;
  esac
  config "$OUT/$name.yaml" "$state" "$runs"
  local n=1; [[ $name == pg3* ]] && n=3
  local pids=()
  for i in $(seq "$n"); do
    local port=$((PORT_BASE + i)); start "$name-n$i" "$port" "$OUT/$name.yaml" runner; pids+=("$PID"); ports+=("$port")
  done
  local watcher=
  if [[ $name == pg3w ]]; then
    curl -sN "http://127.0.0.1:${ports[0]}/events" >"$OUT/events-$name.txt" & watcher=$!
    sleep 1 # the other nodes hear of the listener
  fi
  log "($name) $ACCEPT_N deliveries over $n node(s), $ACCEPT_CONNS connections"
  local per=$((ACCEPT_N / n)) conns=$((ACCEPT_CONNS / n)) outs=()
  for port in "${ports[@]}"; do
    "$LOADGEN" --addr "127.0.0.1:$port" --path /hooks/a --conns "$conns" --n "$per" \
      --body '{"kind":"trivial","sent":"'"$port"'-{i}"}' >"$OUT/load-$name-$port.txt" &
    outs+=($!)
  done
  for p in "${outs[@]}"; do wait "$p"; done
  for port in "${ports[@]}"; do
    line=$(cat "$OUT/load-$name-$port.txt"); log "  :$port $line"
    rps=$(python3 -c "print($rps + $(kv "$line" rps))"); acked=$((acked + $(kv "$line" s202)))
  done
  wait_drained "${ports[0]}"; sleep 0.5
  if [[ -n $watcher ]]; then
    sleep 1; kill "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true
    # Every task's end, from whichever node ran it, on node 1's stream.
    result "events_${name}_finished" "$(grep -c '^event: task.finished' "$OUT/events-$name.txt" || true)"
  fi
  for p in "${pids[@]}"; do stop "$p"; done
  result "accept_${name}_rps" "$(printf '%.0f' "$rps")"
  result "accept_${name}_acked" "$acked"
  # Each acknowledged delivery carries a unique "<port>-<n>": lost = acknowledged
  # but never started; ran twice = started more than once.
  result "accept_${name}_lost" "$((acked - $(awk '{print $1}' "$runs" | sort -u | wc -l)))"
  result "accept_${name}_twice" "$(($(wc -l <"$runs") - $(awk '{print $1}' "$runs" | sort -u | wc -l)))"
  result "start_${name}_per_s" "$(start_rate "$runs")"
}
accept sqlite
accept pg1
accept pg3
accept pg3w

# ---------------------------------------------------------------- (3) cross-node delivery-to-start
log "(3) delivery-to-start when the accepting node does not run the task: $LAT_N requests, $LAT_GAP_MS ms apart"
runs=$OUT/runs-cross; : >"$runs"
config "$OUT/cross.yaml" "state: {postgres: \"$(new_db cross)\", connections: 8}" "$runs"
start accepter $((PORT_BASE + 11)) "$OUT/cross.yaml" ""; A=$PID
start runner $((PORT_BASE + 12)) "$OUT/cross.yaml" "runner"; B=$PID
"$LOADGEN" --addr "127.0.0.1:$((PORT_BASE + 11))" --path /hooks/a --n "$LAT_N" --gap-ms "$LAT_GAP_MS" \
  --body '{"kind":"crossing","sent":"{t}"}' >/dev/null
wait_drained $((PORT_BASE + 11))
python3 - "$runs" >>"$RESULTS" <<'EOF'
import sys
d = sorted((int(b) - int(a)) / 1e6 for a, b in (l.split() for l in open(sys.argv[1]) if l.strip()))
pct = lambda p: d[min(int(len(d) * p), len(d) - 1)]
print(f"cross_n={len(d)}\ncross_p50_ms={pct(.5):.3f}\ncross_p99_ms={pct(.99):.3f}")
EOF
tail -n 3 "$RESULTS" | sed 's/^/[cluster]   /' >&2

# ---------------------------------------------------------------- (4) takeover after kill -9
log "(4) takeover: a long task on the runner, kill -9 the runner, time until the accepter has settled it (lease $LEASE)"
id=$(curl -s -X POST -H 'Content-Type: application/json' -d '{"kind":"long"}' "http://127.0.0.1:$((PORT_BASE + 11))/hooks/a" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks"][0]["id"])')
until curl -s "http://127.0.0.1:$((PORT_BASE + 11))/tasks/$id" | grep -q '"status":"running"'; do sleep 0.05; done
node=$(curl -s "http://127.0.0.1:$((PORT_BASE + 11))/tasks/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])')
victim=$A; [[ $node == runner ]] && victim=$B
t0=$(date +%s.%N)
kill -9 "$victim"
watch=$((PORT_BASE + 11)); [[ $victim == "$A" ]] && watch=$((PORT_BASE + 12))
until curl -s "http://127.0.0.1:$watch/tasks/$id" | grep -q '"status":"interrupted"'; do sleep 0.05; done
t1=$(date +%s.%N)
result takeover_s "$(python3 -c "print(round($t1 - $t0, 2))")"
result takeover_lease_s "$(python3 -c "import re; v='$LEASE'; n=float(re.match(r'[\d.]+', v).group()); print(n/1000 if v.endswith('ms') else n)")"
stop "$A"; stop "$B"

# ---------------------------------------------------------------- table
python3 - "$RESULTS" <<'EOF'
import sys
r = dict(l.strip().split("=", 1) for l in open(sys.argv[1]) if "=" in l)
num = lambda k: float(r[k]) if k in r else None
rows = [("measure", "SQLite, 1 node", "PostgreSQL, 1 node", "PostgreSQL, 3 nodes", "target", "met")]
s, p1, p3 = num("accept_sqlite_rps"), num("accept_pg1_rps"), num("accept_pg3_rps")
rows.append(("accepted deliveries/s", f"{s:.0f}", f"{p1:.0f}", f"{p3:.0f}", "PostgreSQL >= 0.5 x SQLite", "yes" if p1 >= .5 * s else f"NO ({p1 / s:.2f}x)"))
rows.append(("acknowledged, lost, ran twice", *(f"{r['accept_%s_acked' % n]}, {r['accept_%s_lost' % n]}, {r['accept_%s_twice' % n]}" for n in ("sqlite", "pg1", "pg3")), "0 lost, 0 twice",
             "yes" if all(r["accept_%s_lost" % n] == "0" and r["accept_%s_twice" % n] == "0" for n in ("sqlite", "pg1", "pg3")) else "NO"))
rows.append(("tasks started/s (trivial handler)", r["start_sqlite_per_s"], r["start_pg1_per_s"], r["start_pg3_per_s"], "", ""))
w3 = num("accept_pg3w_rps")
rows.append(("3 nodes, one streaming /events: accepted/s, started/s", "", "", f"{w3:.0f} ({w3 / p3:.2f}x), {r['start_pg3w_per_s']}", "", ""))
rows.append(("  task.finished events on that stream", "", "", f"{r['events_pg3w_finished']} of {r['accept_pg3w_acked']}", "all", "yes" if r["events_pg3w_finished"] == r["accept_pg3w_acked"] else "NO"))
c50, c99 = num("cross_p50_ms"), num("cross_p99_ms")
rows.append(("delivery-to-start, other node, p50/p99 ms", "", "", f"{c50:.2f} / {c99:.2f} (2 nodes)", "p50 < 5 ms", "yes" if c50 < 5 else "NO"))
t, lease = num("takeover_s"), num("takeover_lease_s")
rows.append(("kill -9 to takeover, s", "", "", f"{t:.2f} (lease {lease:g} s)", "<= lease + 2 s", "yes" if t <= lease + 2 else "NO"))
w = [max(len(str(x[i])) for x in rows) for i in range(len(rows[0]))]
for i, x in enumerate(rows):
    print("| " + " | ".join(str(c).ljust(w[j]) for j, c in enumerate(x)) + " |")
    if i == 0: print("|" + "|".join("-" * (n + 2) for n in w) + "|")
EOF
log "raw results: $RESULTS; logs: $OUT"

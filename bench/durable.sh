#!/usr/bin/env bash
# Durable store benchmark (issue 5): accepted deliveries per second with the
# store against in-memory mode, 64 concurrent senders, in one run; and the time
# of `GET /tasks?limit=50` with 1,000,000 tasks stored.
#
#   bash bench/durable.sh            # N=20000 deliveries per mode, ROWS=1000000
#
# Loopback only. Needs the tools bench/run.sh builds (target/bench-tools).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
N=${N:-20000}
ROWS=${ROWS:-1000000}
PORT=${PORT:-19190}
OUT=${OUT:-target/bench-durable}
rm -rf "$OUT" && mkdir -p "$OUT"
cargo build --release --quiet
cargo build --release --quiet --manifest-path bench/tools/Cargo.toml --target-dir target/bench-tools
HR=$ROOT/target/release/hookrunner
LOADGEN=$ROOT/target/bench-tools/release/loadgen

config() { # file state-line
  cat >"$1" <<YAML
$2
tasks: {max_concurrent: 4, max_queued: 100000, keep: 2000000}
sources:
  ci: {provider: generic, auth: none}
programs:
  trivial: {command: [/bin/true]}
mappings:
  ci:
    "*":
      rules: [{run: trivial}]
YAML
}

run_mode() { # name state-line
  config "$OUT/$1.yaml" "$2"
  RUST_LOG=warn "$HR" serve --config "$OUT/$1.yaml" --listen "127.0.0.1:$PORT" 2>"$OUT/$1.log" &
  local pid=$!
  for _ in $(seq 100); do curl -s "127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  "$LOADGEN" --addr "127.0.0.1:$PORT" --path /hooks/ci --conns 64 --n 2000 --body '{"i":{i}}' >/dev/null  # warm-up
  local line
  line=$("$LOADGEN" --addr "127.0.0.1:$PORT" --path /hooks/ci --conns 64 --n "$N" --body '{"i":{i}}')
  echo "$1: $line"
  echo "$line" | sed -n 's/.*rps=\([0-9.]*\).*/\1/p' >"$OUT/$1.rps"
  kill -TERM $pid; wait $pid || true
}

run_mode memory ""
run_mode durable "state: {path: $ROOT/$OUT/store.db}"
mem=$(cat "$OUT/memory.rps"); dur=$(cat "$OUT/durable.rps")
python3 -c "print(f'accepted/s: in-memory {float(\"$mem\"):.0f}, durable {float(\"$dur\"):.0f}, ratio {float(\"$dur\")/float(\"$mem\"):.2f} (target >= 0.70)')"

# 1,000,000 stored tasks: copy a real row, then time the API.
python3 - "$OUT/store.db" "$ROWS" <<'PY'
import sqlite3, sys, uuid, json
db, rows = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
have = c.execute("select count(*) from tasks").fetchone()[0]
src = c.execute("select source, event, program, status, created_ms, finished_ms, data from tasks order by seq desc limit 1").fetchone()
seq = c.execute("select max(seq) from tasks").fetchone()[0]
data = json.loads(src[6])
batch = []
for i in range(max(0, rows - have)):
    seq += 1
    tid = str(uuid.uuid4())
    data["id"] = tid; data["_seq"] = seq
    batch.append((tid, seq, src[0], src[1], src[2], src[3], src[4], src[5], json.dumps(data)))
    if len(batch) == 50000:
        c.executemany("insert into tasks (id, seq, source, event, program, status, created_ms, finished_ms, data) values (?,?,?,?,?,?,?,?,?)", batch); batch = []
c.executemany("insert into tasks (id, seq, source, event, program, status, created_ms, finished_ms, data) values (?,?,?,?,?,?,?,?,?)", batch)
c.commit()
print("stored tasks:", c.execute("select count(*) from tasks").fetchone()[0])
PY
config "$OUT/big.yaml" "state: {path: $ROOT/$OUT/store.db}"
RUST_LOG=warn "$HR" serve --config "$OUT/big.yaml" --listen "127.0.0.1:$PORT" 2>"$OUT/big.log" &
pid=$!
for _ in $(seq 300); do curl -s "127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
for q in "limit=50" "limit=50&program=trivial" "limit=50&status=succeeded" "limit=50&source=ci"; do
  curl -s -o /dev/null "127.0.0.1:$PORT/tasks?$q"   # warm the page cache
  times=$(for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' "127.0.0.1:$PORT/tasks?$q"; done | sort -n)
  p50=$(echo "$times" | sed -n 10p); max=$(echo "$times" | tail -1)
  python3 -c "print(f'GET /tasks?$q at $ROWS stored tasks: p50 {float(\"$p50\")*1000:.1f} ms, max {float(\"$max\")*1000:.1f} ms (target < 10 ms)')"
done
kill -TERM $pid; wait $pid || true

#!/usr/bin/env bash
# hookrunner benchmark suite: one command, one table. See BENCHMARKS.md.
#
#   bash bench/run.sh            # everything (~8-10 min on 2 cores)
#   QUICK=1 bash bench/run.sh    # short durations, to check the script itself
#
# Every load targets 127.0.0.1 only. Knobs (env, defaults in brackets):
#   WRK_DURATION [15s]  WRK_CONNS [64]  WRK_THREADS [2]   ignored deliveries (1)
#   BURST_N [20000]     BURST_CONNS ["64 4"]  SPAWN_PAR [4]  executed burst (2)
#   LAT_N [500]         LAT_GAP_MS [20]                     delivery-to-start (3)
#   RSS_N [100000]      RSS_CONNS [16]                      memory (4)
#   SKIP="wrk burst lat rss"  (any subset)                  skip sections
#   PORT_BASE [19080]   OUT [target/bench-run]              ports and scratch dir
#   HR_TMPDIR [$OUT/tmp]                                    hookrunner's TMPDIR (output files)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [[ -n "${QUICK:-}" ]]; then
  : "${WRK_DURATION:=5s}" "${BURST_N:=2000}" "${LAT_N:=100}" "${RSS_N:=10000}"
fi
WRK_DURATION=${WRK_DURATION:-15s}
WRK_CONNS=${WRK_CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
BURST_N=${BURST_N:-20000}
BURST_CONNS=${BURST_CONNS:-64 4}
SPAWN_PAR=${SPAWN_PAR:-4}
LAT_N=${LAT_N:-500}
LAT_GAP_MS=${LAT_GAP_MS:-20}
RSS_N=${RSS_N:-100000}
RSS_CONNS=${RSS_CONNS:-16}
SKIP=${SKIP:-}
PORT_BASE=${PORT_BASE:-19080}
OUT=${OUT:-$ROOT/target/bench-run}
SECRET=bench-secret-0123456789
HR_PORT=$PORT_BASE WH_PORT=$((PORT_BASE + 1)) CEIL_PORT=$((PORT_BASE + 2))

rm -rf "$OUT" && mkdir -p "$OUT"
RESULTS=$OUT/results.txt
: >"$RESULTS"
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
result() { echo "$1=$2" >>"$RESULTS"; log "$1=$2"; }
skip() { [[ " $SKIP " == *" $1 "* ]]; }

# ---------------------------------------------------------------- tools
if ! command -v webhook >/dev/null || ! command -v wrk >/dev/null; then
  log "installing webhook and wrk (Debian packages)"
  if [[ $(id -u) -ne 0 ]]; then echo "need root for apt-get (or install webhook and wrk yourself)" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq webhook wrk >/dev/null
fi
# adnanh/webhook's Debian package may start a service on :9000; we use our own instance.
log "building hookrunner (release)"
[[ -n "${HOOKRUNNER:-}" ]] || cargo build --release --quiet
export CARGO_TARGET_DIR=$ROOT/target/bench-tools
log "building the ceiling server and the load tools (release)"
cargo build --release --quiet --manifest-path bench/ceiling/Cargo.toml
cargo build --release --quiet --manifest-path bench/tools/Cargo.toml
unset CARGO_TARGET_DIR
HOOKRUNNER=${HOOKRUNNER:-$ROOT/target/release/hookrunner}
CEILING=$ROOT/target/bench-tools/release/hookrunner-bench-ceiling
LOADGEN=$ROOT/target/bench-tools/release/loadgen
SPAWNLOOP=$ROOT/target/bench-tools/release/spawnloop
# The spawn loop's handlers get the environment hookrunner gives its handlers
# (src/process/program.rs INHERITED_ENV; nothing else of ours), so both start
# the same bash: with the whole shell environment bash skips work it does with
# a cleared one (no SHELL: it reads /etc/passwd), ~0.2 ms a start here.
HANDLER_ENV=(env -i)
for var in PATH HOME LANG LC_ALL TZ; do [[ -n "${!var:-}" ]] && HANDLER_ENV+=("$var=${!var}"); done
APPEND=$ROOT/bench/handlers/append.sh
STAMP=$ROOT/bench/handlers/stamp.sh

# ---------------------------------------------------------------- processes
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() { # port
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$1" >&2; exit 1
}
start() { # name port cmd... ; sets PID
  local name=$1 port=$2; shift 2
  "$@" >"$OUT/$name.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  wait_port "$port"
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# Without `state:`, hookrunner's handlers write their output files in a
# directory under TMPDIR. /tmp on these machines is where every test run
# creates and deletes its files, and their ext4 has no journal, so making a
# new file checks free inodes for a recent deletion: ~600 us a file in /tmp
# when measured, ~20 us in a fresh directory elsewhere on the same disk. With
# /tmp the executed burst ran 700/s, with a directory of its own 1,171/s
# (BENCHMARKS.md, "Second pass"). HR_TMPDIR=/tmp measures the former. A
# directory on a journaled file system (ext4 skips that check when it has a
# journal) gives the figure most hosts see (BENCHMARKS.md, "Fourth pass").
HR_TMPDIR=${HR_TMPDIR:-$OUT/tmp}
mkdir -p "$HR_TMPDIR"
log "output files in $HR_TMPDIR: $(findmnt -no FSTYPE,SOURCE,OPTIONS -T "$HR_TMPDIR" 2>/dev/null || echo unknown)"
start_hookrunner() { # name config
  start "$1" "$HR_PORT" env RUST_LOG="${RUST_LOG:-info}" TMPDIR="$HR_TMPDIR" "$HOOKRUNNER" serve --config "$2" --listen "127.0.0.1:$HR_PORT"
}
start_webhook() { # name hooks.json
  start "$1" "$WH_PORT" webhook -hooks "$2" -ip 127.0.0.1 -port "$WH_PORT"
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hr_idle() { # true when no task of the daemon is queued or running
  local q r
  q=$(curl -s "http://127.0.0.1:$HR_PORT/tasks?status=queued&limit=1")
  r=$(curl -s "http://127.0.0.1:$HR_PORT/tasks?status=running&limit=1")
  [[ $q == *'"tasks":[]'* && $r == *'"tasks":[]'* ]]
}
wait_hr_drained() { while ! hr_idle; do sleep 0.2; done; }
wait_children_gone() { # pid: until the daemon has no child process left for 1 s
  local quiet=0
  while ((quiet < 5)); do
    if pgrep -P "$1" >/dev/null; then quiet=0; else quiet=$((quiet + 1)); fi
    sleep 0.2
  done
}
kv() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; } # line key

# ---------------------------------------------------------------- bodies and configs
python3 - "$SECRET" "$OUT" <<'EOF'
import hmac, hashlib, json, sys
secret, out = sys.argv[1].encode(), sys.argv[2]
# Two bodies, both `ref: refs/heads/master` (no rule matches): GitHub's real
# 8.6 KiB push, and a 270-byte push-shaped one (the issue's reference numbers
# for adnanh/webhook, 31-36k/s, are only reachable with a small body).
small = json.dumps({"ref": "refs/heads/master", "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                    "after": "0000000000000000000000000000000000000000",
                    "repository": {"id": 186853002, "full_name": "acme/app", "private": False},
                    "pusher": {"name": "octocat"}, "sender": {"login": "octocat", "id": 21031067}},
                   separators=(",", ":")).encode()
bodies = {"push": open("tests/fixtures/github/push.json", "rb").read(), "small": small}
for name, body in bodies.items():
    open(f"{out}/{name}.json", "wb").write(body)
    sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
    open(f"{out}/wrk-{name}.lua", "w").write(f'''wrk.method = "POST"
local f = io.open("{out}/{name}.json", "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-Hub-Signature-256"] = "sha256={sig}"
''')
EOF

# hookrunner's config for every section: hr_config (bench/lib.sh).
source "$ROOT/bench/lib.sh"
# adnanh/webhook: the same check and argument; `ignored` never matches (ref is master).
wh_config() { # file out-file handler param
  python3 - "$@" "$SECRET" <<'EOF'
import json, sys
path, outfile, handler, param, secret = sys.argv[1:6]
hmac = {"match": {"type": "payload-hmac-sha256", "secret": secret,
                  "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}}
def ref_is(v): return {"match": {"type": "value", "value": v, "parameter": {"source": "payload", "name": "ref"}}}
def hook(id, ref):
    return {"id": id, "execute-command": handler, "command-working-directory": "/tmp",
            "pass-arguments-to-command": [{"source": "string", "name": outfile}, {"source": "payload", "name": param}],
            "trigger-rule": {"and": [hmac, ref_is(ref)]}}
json.dump([hook("github", "refs/heads/bench")], open(path, "w"), indent=1)
EOF
}

# ================================================================ (1) ignored deliveries
wrk_run() { # name url body
  wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d2s -s "$OUT/wrk-$3.lua" "$2" >/dev/null 2>&1 || true # warm-up
  wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --latency -s "$OUT/wrk-$3.lua" "$2" >"$OUT/wrk-$3-$1.txt" 2>&1
  python3 - "$OUT/wrk-$3-$1.txt" "$3_$1" >>"$RESULTS" <<'EOF'
import re, sys
t, name = open(sys.argv[1]).read(), sys.argv[2]
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1, "s": 1e3}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1)); p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t); errs = re.search(r"Socket errors:.*", t)
print(f"ignored_{name}_rps={rps:.0f}\nignored_{name}_p50_ms={p50:.3f}\nignored_{name}_p99_ms={p99:.3f}")
print(f"ignored_{name}_non2xx={bad.group(1) if bad else 0}")
if errs: print(f"ignored_{name}_socket_errors={errs.group(0).split(':',1)[1].strip().replace(' ','')}")
EOF
  tail -n 4 "$RESULTS" | sed 's/^/[bench]   /' >&2
}
if ! skip wrk; then
  hr_config "$OUT/hr-ignored.yaml" 1000 10000 "[$APPEND, $OUT/never]" '"{n}"'
  wh_config "$OUT/wh-ignored.json" "$OUT/never" "$APPEND" n
  for body in small push; do
    log "(1) ignored deliveries, $body body: wrk -c$WRK_CONNS -d$WRK_DURATION, valid signature, no rule matches"
    start_hookrunner hr-ignored "$OUT/hr-ignored.yaml"
    curl -s -o /dev/null -w '[bench]   hookrunner answers %{http_code}\n' -X POST --data-binary @"$OUT/$body.json" \
      -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
      -H "X-Hub-Signature-256: sha256=$(openssl dgst -sha256 -hmac "$SECRET" "$OUT/$body.json" 2>/dev/null | awk '{print $2}')" \
      "http://127.0.0.1:$HR_PORT/hooks/github" >&2 || true
    wrk_run hookrunner "http://127.0.0.1:$HR_PORT/hooks/github" "$body"
    stop "$PID"
    start_webhook wh-ignored "$OUT/wh-ignored.json"
    wrk_run webhook "http://127.0.0.1:$WH_PORT/hooks/github" "$body"
    stop "$PID"
    start ceiling "$CEIL_PORT" "$CEILING" "127.0.0.1:$CEIL_PORT"
    wrk_run ceiling "http://127.0.0.1:$CEIL_PORT/hooks/github" "$body"
    stop "$PID"
  done
  [[ -s $OUT/never ]] && log "WARNING: a handler ran during the ignored test"
fi

# ================================================================ (2) executed burst
EXEC_BODY='{"ref":"refs/heads/bench","n":"{i}"}'
burst() { # daemon conns
  local daemon=$1 conns=$2 file=$OUT/executed-$1-c$2 t0 line acked lines end
  : >"$file"
  if [[ $daemon == hookrunner ]]; then
    hr_config "$OUT/hr-burst.yaml" "$BURST_N" "$BURST_N" "[$APPEND, $file]" '"{n}"'
    start_hookrunner "hr-burst-c$conns" "$OUT/hr-burst.yaml"
  else
    wh_config "$OUT/wh-burst.json" "$file" "$APPEND" n
    start_webhook "wh-burst-c$conns" "$OUT/wh-burst.json"
  fi
  t0=$(date +%s.%N)
  line=$("$LOADGEN" --addr "127.0.0.1:$([[ $daemon == hookrunner ]] && echo $HR_PORT || echo $WH_PORT)" \
    --path /hooks/github --conns "$conns" --n "$BURST_N" --secret "$SECRET" \
    --header 'X-GitHub-Event: push' --body "$EXEC_BODY")
  log "  $daemon c$conns: $line"
  if [[ $daemon == hookrunner ]]; then wait_hr_drained; else wait_children_gone "$PID"; fi
  sleep 0.3
  stop "$PID"
  acked=$(kv "$line" s2xx)
  lines=$(wc -l <"$file")
  end=$(stat -c %.9Y "$file")
  result "burst_${daemon}_c${conns}_acked" "$acked"
  result "burst_${daemon}_c${conns}_refused" "$(( $(kv "$line" s503) + $(kv "$line" other) + $(kv "$line" errors) ))"
  result "burst_${daemon}_c${conns}_executed" "$lines"
  result "burst_${daemon}_c${conns}_distinct" "$(sort -u "$file" | wc -l)"
  result "burst_${daemon}_c${conns}_lost" "$((acked - $(sort -u "$file" | wc -l)))"
  result "burst_${daemon}_c${conns}_accept_rps" "$(kv "$line" rps)"
  result "burst_${daemon}_c${conns}_exec_per_s" "$(python3 -c "print(round($lines / ($end - $t0), 1))")"
}
if ! skip burst; then
  log "(2) executed burst: $BURST_N deliveries, handler appends its param to a file, $SPAWN_PAR at a time"
  : >"$OUT/executed-spawn"
  line=$("${HANDLER_ENV[@]}" "$SPAWNLOOP" --n "$BURST_N" --par "$SPAWN_PAR" -- "$APPEND" "$OUT/executed-spawn" "{i}")
  log "  raw spawn loop: $line"
  result burst_spawn_executed "$(wc -l <"$OUT/executed-spawn")"
  result burst_spawn_exec_per_s "$(kv "$line" per_sec)"
  for c in $BURST_CONNS; do
    burst hookrunner "$c"
    burst webhook "$c"
  done
fi

# ================================================================ (3) delivery-to-handler-start latency
lat_stats() { # name file
  python3 - "$2" "$1" >>"$RESULTS" <<'EOF'
import sys
d = sorted((int(b) - int(a)) / 1e6 for a, b in (l.split() for l in open(sys.argv[1]) if l.strip()))
name = sys.argv[2]
pct = lambda p: d[min(int(len(d) * p), len(d) - 1)]
print(f"lat_{name}_n={len(d)}\nlat_{name}_p50_ms={pct(.5):.3f}\nlat_{name}_p99_ms={pct(.99):.3f}")
EOF
  tail -n 3 "$RESULTS" | sed 's/^/[bench]   /' >&2
}
if ! skip lat; then
  log "(3) delivery-to-handler-start: $LAT_N requests, one at a time, ${LAT_GAP_MS} ms apart"
  LAT_BODY='{"ref":"refs/heads/bench","n":"{i}","sent":"{t}"}'
  : >"$OUT/lat-spawn"
  "${HANDLER_ENV[@]}" "$SPAWNLOOP" --n "$LAT_N" --par 1 --gap-ms "$LAT_GAP_MS" -- "$STAMP" "$OUT/lat-spawn" "{t}" >/dev/null
  lat_stats spawn "$OUT/lat-spawn"
  : >"$OUT/lat-hookrunner"
  hr_config "$OUT/hr-lat.yaml" 1000 10000 "[$STAMP, $OUT/lat-hookrunner]" '"{sent}"'
  start_hookrunner hr-lat "$OUT/hr-lat.yaml"
  "$LOADGEN" --addr "127.0.0.1:$HR_PORT" --path /hooks/github --n "$LAT_N" --gap-ms "$LAT_GAP_MS" \
    --secret "$SECRET" --header 'X-GitHub-Event: push' --body "$LAT_BODY" >/dev/null
  wait_hr_drained; stop "$PID"
  lat_stats hookrunner "$OUT/lat-hookrunner"
  : >"$OUT/lat-webhook"
  wh_config "$OUT/wh-lat.json" "$OUT/lat-webhook" "$STAMP" sent
  start_webhook wh-lat "$OUT/wh-lat.json"
  "$LOADGEN" --addr "127.0.0.1:$WH_PORT" --path /hooks/github --n "$LAT_N" --gap-ms "$LAT_GAP_MS" \
    --secret "$SECRET" --header 'X-GitHub-Event: push' --body "$LAT_BODY" >/dev/null
  wait_children_gone "$PID"; stop "$PID"
  lat_stats webhook "$OUT/lat-webhook"
fi

# ================================================================ (4) memory
count_succeeded() { # api: the succeeded tasks it holds, paged 1000 at a time (its limit)
  python3 - "$1" <<'EOF'
import json, sys, urllib.request
api, before, n = sys.argv[1], "", 0
while True:
    page = json.load(urllib.request.urlopen(f"{api}/tasks?status=succeeded&limit=1000{before}"))["tasks"]
    n += len(page)
    if len(page) < 1000:
        break
    before = "&before=" + page[-1]["id"]
print(n)
EOF
}
if ! skip rss; then
  log "(4) RSS: idle, then after $RSS_N finished tasks of /bin/true retained (tasks.keep: $RSS_N)"
  wh_config "$OUT/wh-idle.json" "$OUT/never" "$APPEND" n
  start_webhook wh-idle "$OUT/wh-idle.json"
  sleep 1; result rss_webhook_idle_kib "$(rss_kib "$PID")"; stop "$PID"
  # A short queue (senders retry on 503): RSS then measures retained tasks, not a transient backlog.
  hr_config "$OUT/hr-rss.yaml" 256 "$RSS_N" "[$APPEND, $OUT/never]" '"{n}"'
  sed -i 's/^deliveries: .*/deliveries: {keep: 1}/' "$OUT/hr-rss.yaml"   # only task records grow
  start_hookrunner hr-rss "$OUT/hr-rss.yaml"
  sleep 1; idle=$(rss_kib "$PID"); result rss_hookrunner_idle_kib "$idle"
  line=$("$LOADGEN" --addr "127.0.0.1:$HR_PORT" --path /hooks/rss --conns "$RSS_CONNS" --n "$RSS_N" --retry-503 --body '{"n":{i}}')
  log "  $line"
  wait_hr_drained; sleep 1
  full=$(rss_kib "$PID")
  result rss_hookrunner_tasks "$(count_succeeded "http://127.0.0.1:$HR_PORT")"
  result rss_hookrunner_after_kib "$full"
  result rss_hookrunner_bytes_per_task "$(( (full - idle) * 1024 / RSS_N ))"
  stop "$PID"
fi

# ================================================================ table
python3 - "$RESULTS" "$BURST_CONNS" "$RSS_N" <<'EOF'
import sys
r = {}
for l in open(sys.argv[1]):
    k, _, v = l.strip().partition("=")
    r[k] = v
def f(k, fmt="{:.0f}"):
    v = r.get(k)
    if v is None: return "-"
    try: return fmt.format(float(v))
    except ValueError: return v
def ratio(a, b):
    try: return f"{float(r[a]) / float(r[b]):.2f}"
    except (KeyError, ValueError, ZeroDivisionError): return "-"
rows = []
def row(*c): rows.append(c)
row("measure", "hookrunner", "adnanh/webhook", "limit", "ours/peer", "ours/limit", "target", "met")
def met(ok): return "-" if ok is None else ("yes" if ok else "NO")
def num(k):
    try: return float(r[k])
    except (KeyError, ValueError): return None
for body, label in (("small", "270 B"), ("push", "8.6 KiB")):
    k = lambda d, what: f"ignored_{body}_{d}_{what}"
    hr, wh, ce = num(k("hookrunner", "rps")), num(k("webhook", "rps")), num(k("ceiling", "rps"))
    row(f"(1) ignored/s @64, {label} body", f(k("hookrunner", "rps")), f(k("webhook", "rps")), f(k("ceiling", "rps")) + " (ceiling)",
        ratio(k("hookrunner", "rps"), k("webhook", "rps")), ratio(k("hookrunner", "rps"), k("ceiling", "rps")),
        ">=2x peer, >=0.8 ceiling", met(None if None in (hr, wh, ce) else hr >= 2 * wh and hr >= .8 * ce))
    for p in ("p50", "p99"):
        row(f"(1) ignored {p} ms, {label} body", f(k("hookrunner", f"{p}_ms"), "{:.2f}"), f(k("webhook", f"{p}_ms"), "{:.2f}"),
            f(k("ceiling", f"{p}_ms"), "{:.2f}"), ratio(k("hookrunner", f"{p}_ms"), k("webhook", f"{p}_ms")),
            ratio(k("hookrunner", f"{p}_ms"), k("ceiling", f"{p}_ms")), "p99 < 5 ms" if p == "p99" else "",
            met(None if p == "p50" or num(k("hookrunner", f"{p}_ms")) is None else num(k("hookrunner", f"{p}_ms")) < 5))
for c in sys.argv[2].split():
    b = f"burst_%s_c{c}_"
    for what in ("acked", "refused", "executed", "lost"):
        row(f"(2) burst c{c}: {what}", f(b % "hookrunner" + what), f(b % "webhook" + what), f("burst_spawn_executed") if what == "executed" else "",
            "", "", "0 lost" if what == "lost" else "", met(None if num(b % "hookrunner" + what) is None else num(b % "hookrunner" + what) == 0) if what == "lost" else "")
    k = b % "hookrunner" + "exec_per_s"
    row(f"(2) burst c{c}: executed/s", f(k), f(b % "webhook" + "exec_per_s"), f("burst_spawn_exec_per_s") + " (spawn loop)",
        ratio(k, b % "webhook" + "exec_per_s"), ratio(k, "burst_spawn_exec_per_s"), ">=0.8 spawn loop",
        met(None if num(k) is None else num(k) >= .8 * num("burst_spawn_exec_per_s")))
for p in ("p50", "p99"):
    k = f"lat_hookrunner_{p}_ms"
    row(f"(3) delivery-to-start {p} ms", f(k, "{:.2f}"), f(f"lat_webhook_{p}_ms", "{:.2f}"), f(f"lat_spawn_{p}_ms", "{:.2f}") + " (spawn->start)",
        ratio(k, f"lat_webhook_{p}_ms"), ratio(k, f"lat_spawn_{p}_ms"), "p50 < 2 ms" if p == "p50" else "",
        met(None if p == "p99" or num(k) is None else num(k) < 2))
row("(4) RSS idle MiB", f("rss_hookrunner_idle_kib", "{:.0f}") if False else (f"{num('rss_hookrunner_idle_kib')/1024:.1f}" if num('rss_hookrunner_idle_kib') else "-"),
    f"{num('rss_webhook_idle_kib')/1024:.1f}" if num('rss_webhook_idle_kib') else "-", "", ratio("rss_hookrunner_idle_kib", "rss_webhook_idle_kib"), "",
    "< 20 MB", met(None if num("rss_hookrunner_idle_kib") is None else num("rss_hookrunner_idle_kib") * 1024 < 20e6))
row(f"(4) RSS after {sys.argv[3]} tasks MiB", f"{num('rss_hookrunner_after_kib')/1024:.1f}" if num('rss_hookrunner_after_kib') else "-", "", "", "", "", "", "")
row("(4) bytes per retained task", f("rss_hookrunner_bytes_per_task"), "", "", "", "", "< 2048", met(None if num("rss_hookrunner_bytes_per_task") is None else num("rss_hookrunner_bytes_per_task") < 2048))
w = [max(len(str(x[i])) for x in rows) for i in range(len(rows[0]))]
for i, x in enumerate(rows):
    print("| " + " | ".join(str(c).ljust(w[j]) for j, c in enumerate(x)) + " |")
    if i == 0: print("|" + "|".join("-" * (n + 2) for n in w) + "|")
EOF
log "raw results: $RESULTS; logs and wrk output: $OUT"

#!/usr/bin/env bash
# Instructions per ignored delivery, counted by callgrind: repeatable on a
# noisy machine where requests/s are not. See BENCHMARKS.md.
#
#   bash bench/callgrind.sh          # after `bash bench/run.sh` built everything
#   bash bench/callgrind.sh --check  # the CI guard (builds what it needs)
#   bash bench/callgrind.sh --kinds  # the same fields as JSON, form, multipart, XML
#   bash bench/callgrind.sh --evict  # with a full delivery log: cache misses too
#
# Runs hookrunner (section (1)'s config) and the bare actix-web ceiling under
# `valgrind --tool=callgrind`, sends 500 warm-up deliveries, zeroes the
# counters, sends N more (4 connections), and prints user-space instructions
# per request for each, for two bodies: the 270-byte push-shaped body and
# GitHub's real 8.6 KiB push (tests/fixtures/github/push.json). Both are
# validly signed and no rule matches them (ignored deliveries). Knobs:
# N [2000], PORT [19090], BODIES ["small push"].
#
# --kinds: counts hookrunner only, for ignored deliveries of one set of
# fields (a 270-byte push's) sent as each body kind to an unsigned generic
# source: what each parser costs beside JSON.
#
# --evict: counts hookrunner only, 270 B body, after 11,000 warm-up
# deliveries (past `deliveries.keep`, 10,000, so each one evicts the oldest
# record), with callgrind's cache simulation and a last-level cache of 2 MiB
# (this machine's L2 per core): prints instructions and L2 misses per
# delivery. The misses, not the instructions, are what the log's working set
# costs (BENCHMARKS.md, third pass).
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
CHECK= RECORD= KINDS= EVICT=
for arg in "$@"; do
  case $arg in
    --check) CHECK=1 ;;
    --record) CHECK=1 RECORD=1 ;;
    --kinds) KINDS=1 ;;
    --evict) EVICT=1 ;;
    *) echo "usage: bash bench/callgrind.sh [--check [--record] | --kinds | --evict]" >&2; exit 2 ;;
  esac
done
if [[ -n $CHECK ]]; then N=${N:-1000}; else N=${N:-2000}; fi
PORT=${PORT:-19090}
BODIES=${BODIES:-small push}
OUT=$ROOT/target/bench-callgrind
BASELINE=$ROOT/bench/callgrind-baseline.txt
TOLERANCE_PCT=10
SECRET=bench-secret-0123456789
HOOKRUNNER_SET=${HOOKRUNNER:+1}
HOOKRUNNER=${HOOKRUNNER:-$ROOT/target/release/hookrunner}
CEILING=$ROOT/target/bench-tools/release/hookrunner-bench-ceiling
LOADGEN=$ROOT/target/bench-tools/release/loadgen

if ! command -v valgrind >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then echo "need valgrind (apt-get install valgrind)" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
WARM=500 VG_EXTRA=()
if [[ -n $EVICT ]]; then
  WARM=11000 VG_EXTRA=(--cache-sim=yes --LL=2097152,16,64) BODIES=small
fi
if [[ -n $CHECK || -n $KINDS || -n $EVICT ]]; then
  # --kinds and --evict take $HOOKRUNNER as it is when set; --check always builds.
  if [[ -n $CHECK || -z ${HOOKRUNNER_SET:-} ]]; then
    echo "building hookrunner (release)" >&2
    (cd "$ROOT" && cargo build --release --quiet --bin hookrunner)
  fi
  echo "building the load generator" >&2
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
# How count() sends: path, Content-Type, and the signing flag.
SEND_PATH=/hooks/github SEND_TYPE=application/json SEND_SIGN=(--secret "$SECRET" --header 'X-GitHub-Event: push')
count() { # name body cmd...
  local name=$1 body=$2; shift 2
  valgrind --tool=callgrind "${VG_EXTRA[@]}" --callgrind-out-file="$OUT/$name.out" "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  send() { "$LOADGEN" --addr "127.0.0.1:$PORT" --path "$SEND_PATH" --conns 4 --n "$1" "${SEND_SIGN[@]}" \
    --content-type "$SEND_TYPE" --body-file "$OUT/$body"; }
  send "$WARM" >/dev/null
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
  if [[ -n $EVICT ]]; then
    awk -v n="$N" '/^events:/ {for (i = 2; i <= NF; i++) ev[i] = $i}
      /^(summary|totals):/ {for (i = 2; i <= NF; i++) if (ev[i] ~ /^(ILmr|DLmr|DLmw)$/) m[ev[i]] = $i; exit}
      END {printf "%s L2 misses/request: %.1f (data read %.1f, data write %.1f, instruction %.1f)\n", name, (m["ILmr"] + m["DLmr"] + m["DLmw"]) / n, m["DLmr"] / n, m["DLmw"] / n, m["ILmr"] / n}' \
      name="$name" "$dump"
  fi
}
if [[ -n $KINDS ]]; then
  # One set of fields, four ways; JSON, form and multipart go to `kinds`,
  # XML (whose root element is the one top-level key) to `kinds-xml`.
  cat >"$OUT/kinds.yaml" <<EOF
server: {max_body: 1MiB}
tasks: {max_concurrent: 4, max_queued: 1000, keep: 10000}
deliveries: {keep: 10000}
sources:
  kinds: {provider: generic, auth: none, bodies: [json, form, multipart], dedup: off}
  kinds-xml: {provider: generic, auth: none, bodies: [xml], dedup: off}
programs:
  trivial: {command: [/bin/true]}
mappings:
  kinds:
    "*":
      params: {ref: payload.ref, pusher: payload.pusher}
      rules: [{if: 'ref == "refs/heads/bench"', run: trivial}]
  kinds-xml:
    "*":
      params: {ref: payload.push.ref, pusher: payload.push.pusher}
      rules: [{if: 'ref == "refs/heads/bench"', run: trivial}]
EOF
  before=6113728f27ae82c7b1a177c8d03f9e96e0adf246 after=0000000000000000000000000000000000000000
  printf '{"ref":"refs/heads/master","before":"%s","after":"%s","repository":"acme/app","pusher":"octocat","sender":"octocat"}' \
    "$before" "$after" >"$OUT/kind.json"
  printf 'ref=refs%%2Fheads%%2Fmaster&before=%s&after=%s&repository=acme%%2Fapp&pusher=octocat&sender=octocat' \
    "$before" "$after" >"$OUT/kind.form"
  {
    for f in ref:refs/heads/master before:$before after:$after repository:acme/app pusher:octocat sender:octocat; do
      printf -- '--b0undary\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' "${f%%:*}" "${f#*:}"
    done
    printf -- '--b0undary--\r\n'
  } >"$OUT/kind.multipart"
  printf '<push><ref>refs/heads/master</ref><before>%s</before><after>%s</after><repository>acme/app</repository><pusher>octocat</pusher><sender>octocat</sender></push>' \
    "$before" "$after" >"$OUT/kind.xml"
  SEND_SIGN=()
  for kind in json form multipart xml; do
    case $kind in
      json) SEND_PATH=/hooks/kinds SEND_TYPE=application/json ;;
      form) SEND_PATH=/hooks/kinds SEND_TYPE=application/x-www-form-urlencoded ;;
      multipart) SEND_PATH=/hooks/kinds SEND_TYPE='multipart/form-data; boundary=b0undary' ;;
      xml) SEND_PATH=/hooks/kinds-xml SEND_TYPE=application/xml ;;
    esac
    echo "  $kind: $(wc -c <"$OUT/kind.$kind") bytes" >&2
    count "hookrunner-$kind" "kind.$kind" "$HOOKRUNNER" --config "$OUT/kinds.yaml" --listen "127.0.0.1:$PORT"
  done
  exit 0
fi
for body in $BODIES; do
  count "hookrunner-$body" "$body.json" "$HOOKRUNNER" --config "$OUT/hr.yaml" --listen "127.0.0.1:$PORT"
  [[ -n $CHECK || -n $EVICT ]] || count "ceiling-$body" "$body.json" "$CEILING" "127.0.0.1:$PORT"
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

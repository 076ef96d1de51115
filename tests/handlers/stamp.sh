#!/bin/sh
# Test handler: appends `start|end <task id> <node> <ns since epoch>` to
# $OUT_FILE around a sleep of $SLEEP seconds.
printf 'start %s %s %s\n' "$HOOK_TASK_ID" "$HOOK_NODE" "$(date +%s%N)" >> "$OUT_FILE"
sleep "${SLEEP:-0.2}"
printf 'end %s %s %s\n' "$HOOK_TASK_ID" "$HOOK_NODE" "$(date +%s%N)" >> "$OUT_FILE"

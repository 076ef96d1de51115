#!/bin/sh
# Test handler: waits until the file $GATE exists, then appends
# `<task id> <attempt-agnostic run>` to $OUT_FILE.
while [ ! -e "$GATE" ]; do
    sleep 0.05
done
printf '%s\n' "$HOOK_TASK_ID" >> "$OUT_FILE"

#!/bin/sh
# Test handler: records its start, sleeps $SLEEP seconds, records its end.
printf 'start %s\n' "$HOOK_TASK_ID" >> "$OUT_FILE"
sleep "${SLEEP:-1}"
printf 'end %s\n' "$HOOK_TASK_ID" >> "$OUT_FILE"

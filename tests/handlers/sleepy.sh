#!/bin/sh
# Test handler: records its start, sleeps $SLEEP seconds ($FIRST_SLEEP,
# when set, for the first run that writes to $OUT_FILE), records its end.
printf 'start %s\n' "$HOOK_TASK_ID" >> "$OUT_FILE"
if [ -n "$FIRST_SLEEP" ] && mkdir "$OUT_FILE.first" 2>/dev/null; then
  SLEEP=$FIRST_SLEEP
fi
sleep "${SLEEP:-1}"
printf 'end %s\n' "$HOOK_TASK_ID" >> "$OUT_FILE"

#!/bin/sh
# Test handler: appends `start|end <task id> <node> <ns since epoch>` to
# $OUT_FILE around a sleep of $SLEEP seconds ($FIRST_SLEEP, when set, for
# the first run that writes to $OUT_FILE).
printf 'start %s %s %s\n' "$HOOK_TASK_ID" "$HOOK_NODE" "$(date +%s%N)" >> "$OUT_FILE"
if [ -n "$FIRST_SLEEP" ] && mkdir "$OUT_FILE.first" 2>/dev/null; then
  SLEEP=$FIRST_SLEEP
fi
# $LONG_SLEEP instead for a run whose first argument is $LONG_FOR.
if [ -n "$LONG_FOR" ] && [ "$1" = "$LONG_FOR" ]; then
  SLEEP=$LONG_SLEEP
fi
sleep "${SLEEP:-0.2}"
printf 'end %s %s %s\n' "$HOOK_TASK_ID" "$HOOK_NODE" "$(date +%s%N)" >> "$OUT_FILE"

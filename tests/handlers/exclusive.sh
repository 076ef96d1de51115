#!/bin/sh
# Test handler: runs only while no other run holds $LOCK. It takes the lock
# on a descriptor its sleep inherits, so the lock is held until every
# process of its group is gone; a run that finds it taken appends
# `overlap <task id> <node> <ns>` to $OUT_FILE and exits 3. Otherwise as
# stamp.sh: `start` and `end` lines around a sleep of $SLEEP seconds
# ($FIRST_SLEEP for the first run).
exec 9>>"$LOCK"
if ! flock -n 9; then
  printf 'overlap %s %s %s\n' "$HOOK_TASK_ID" "$HOOK_NODE" "$(date +%s%N)" >> "$OUT_FILE"
  exit 3
fi
printf 'start %s %s %s\n' "$HOOK_TASK_ID" "$HOOK_NODE" "$(date +%s%N)" >> "$OUT_FILE"
if [ -n "$FIRST_SLEEP" ] && mkdir "$OUT_FILE.first" 2>/dev/null; then
  SLEEP=$FIRST_SLEEP
fi
sleep "${SLEEP:-0.2}"
printf 'end %s %s %s\n' "$HOOK_TASK_ID" "$HOOK_NODE" "$(date +%s%N)" >> "$OUT_FILE"

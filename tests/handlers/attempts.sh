#!/bin/sh
# Test handler: fails (exit $FAIL_CODE, default 1) until it has run $SUCCEED_ON times,
# counting runs in $COUNT_FILE; logs each run's time.
n=$(( $(cat "$COUNT_FILE" 2>/dev/null || echo 0) + 1 ))
printf '%s\n' "$n" > "$COUNT_FILE"
printf 'run %s\n' "$n"
if [ "$n" -ge "${SUCCEED_ON:-3}" ]; then exit "${FINAL_CODE:-0}"; fi
exit "${FAIL_CODE:-1}"

#!/bin/sh
# Test handler: prints its pid, then `tick N` every $PAUSE seconds for
# $TICKS ticks, then `done` on stderr.
printf 'pid %s\n' "$$"
i=1
while [ "$i" -le "${TICKS:-3}" ]; do
    printf 'tick %s\n' "$i"
    sleep "${PAUSE:-0.3}"
    i=$((i + 1))
done
printf 'done\n' >&2

#!/bin/sh
# Test handler: prints `tick N` for N in 1..$TICKS, sleeping $PAUSE between lines,
# then one line on stderr.
i=1
while [ "$i" -le "${TICKS:-3}" ]; do
    printf 'tick %s\n' "$i"
    sleep "${PAUSE:-0.3}"
    i=$((i + 1))
done
printf 'done\n' >&2

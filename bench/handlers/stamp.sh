#!/bin/bash
# bench handler: append "<send time ns> <start time ns>" to the file $1.
# $2 is the request's send time (ns) carried in the body. The start time is
# taken without a fork: bash's $EPOCHREALTIME (µs) — `date +%s%N` would add
# a fork+exec (~1 ms) to what is measured.
now=${EPOCHREALTIME//[.,]/}
echo "$2 ${now}000" >> "$1"

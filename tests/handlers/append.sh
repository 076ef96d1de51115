#!/bin/sh
# Test handler: appends its first argument as one line to $OUT_FILE.
printf '%s\n' "$1" >> "$OUT_FILE"

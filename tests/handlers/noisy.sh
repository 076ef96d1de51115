#!/bin/sh
# Test handler: writes 200,000 bytes to stdout ending in a marker, a line to stderr, exits 3.
head -c 199990 /dev/zero | tr '\0' 'x'
printf 'THE-END\n'
printf 'oops\n' >&2
exit 3

#!/bin/sh
# Test handler: lacks its exec bit on purpose.
exit 0

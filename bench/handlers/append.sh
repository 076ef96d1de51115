#!/bin/bash
# bench handler: append the param ($2) as one line to the file $1.
echo "$2" >> "$1"

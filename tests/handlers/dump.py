#!/usr/bin/env python3
"""Test handler: prints what it received (argv, environment, stdin) as JSON."""
import json
import os
import sys

body = sys.stdin.buffer.read()
out = {
    "argv": sys.argv[1:],
    "env": dict(os.environ),
    "stdin": body.decode("utf-8", "replace"),
    "stdin_len": len(body),
    "cwd": os.getcwd(),
}
sys.stdout.reconfigure(encoding="utf-8")
print(json.dumps(out, ensure_ascii=False))

#!/usr/bin/env python3
"""Test handler: prints what it received (argv, environment, stdin) as JSON,
and the contents of every file an argument (`--name=<path>`) or a variable
names."""
import json
import os
import sys

body = sys.stdin.buffer.read()
files = {}
candidates = [a.split("=", 1)[1] for a in sys.argv[1:] if "=" in a] + list(os.environ.values())
for path in candidates:
    if os.path.isabs(path) and os.path.isfile(path):
        with open(path, "rb") as f:
            files[path] = f.read().decode("utf-8", "replace")
out = {
    "argv": sys.argv[1:],
    "env": dict(os.environ),
    "stdin": body.decode("utf-8", "replace"),
    "stdin_len": len(body),
    "cwd": os.getcwd(),
    "files": files,
}
sys.stdout.reconfigure(encoding="utf-8")
print(json.dumps(out, ensure_ascii=False))

#!/usr/bin/env python3
"""notify.py - a handler in the style older webhook services used: argparse options.

Prints one JSON line summarising the event; a starting point for handlers
that want to do something with the payload in Python.

Inputs
  args   --event_type=, --repo=, --ref=, --author=   (all optional, default "")
         Any other argument is an error (argparse prints usage, exit 2).
         Always pass values as --opt=value (what hookrunner does): then a value
         starting with "-" is kept verbatim. The split form "--opt value"
         would reject such values.
  stdin  the request body; if it is a JSON object its sorted top-level keys
         are reported. Empty or invalid bodies are ignored.
  env    nothing required.
Output {"event_type": ..., "repo": ..., "ref": ..., "author": ..., "body_keys": [...]}
       as UTF-8 whatever the locale. Exit 0.

webhook.yaml (from the shipped one; relative paths start at its directory):
  programs:
    notify:
      command: [python3, handlers/notify.py]
      args: ["--event_type={source}:{event}"]   # -> --event_type=github:push
      params: [repo, ref, author]               # -> --repo=... --ref=... --author=...
      timeout: 30s
  mappings:
    github:
      push:
        params:
          ref: payload.ref
          repo: payload.repository.full_name
          author: payload.head_commit.author.name
        rules:
          - run: notify
    gitlab:
      push:
        params:
          ref: payload.ref
          repo: payload.project.path_with_namespace
          author: payload.user_name
        rules:
          - run: notify
"""
import argparse
import json
import os
import sys


def utf8(s):
    # argv/env are decoded with the locale's encoding; the daemon sends UTF-8.
    # Round-trip through the raw bytes so a non-UTF-8 LANG cannot garble them.
    return os.fsencode(s).decode("utf-8", "replace")


def main():
    # backslashreplace: a lone surrogate (a "\ud800" escape in the body) must not crash us
    sys.stdout.reconfigure(encoding="utf-8", errors="backslashreplace")
    sys.stderr.reconfigure(encoding="utf-8")

    parser = argparse.ArgumentParser(allow_abbrev=False)
    for name in ("event_type", "repo", "ref", "author"):
        parser.add_argument("--" + name, default="")
    args = parser.parse_args([utf8(a) for a in sys.argv[1:]])

    body_keys = []
    raw = sys.stdin.buffer.read() if sys.stdin is not None else b""
    if raw.strip():
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # bad JSON/UTF-8, absurd nesting
            body = None
        if isinstance(body, dict):
            body_keys = sorted(body)

    out = {
        "event_type": args.event_type,
        "repo": args.repo,
        "ref": args.ref,
        "author": args.author,
        "body_keys": body_keys,
    }
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

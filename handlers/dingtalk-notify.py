#!/usr/bin/env python3
"""dingtalk-notify.py - post a markdown message to a DingTalk custom robot.

Inputs
  args   --title=  message title (default "$HOOK_SOURCE $HOOK_EVENT")
         --text=   free text, e.g. a commit message
         --repo=  --ref=  --event_type=   shown as "- **repo**: ..." lines when non-empty
         --url=    if given, appended as a "[Open](url)" link
         All optional; anything else is an error (exit 2). Use the --opt=value form.
  env    DINGTALK_WEBHOOK_URL  required, https://oapi.dingtalk.com/robot/send?access_token=...
         DINGTALK_SECRET       optional; the robot's "加签" secret (starts with SEC)
         HOOK_SOURCE, HOOK_EVENT  set by the daemon, used for the default title
  stdin  ignored.
Exit     0 sent ("dingtalk: sent"); 1 network error, non-2xx or non-zero errcode
         (the response goes to stderr); 2 usage/config error.
If the robot's security setting is "custom keywords", the title or text must
contain one of them, or DingTalk answers errcode 310000.

webhook.yaml (not in the shipped config; add it next to `notify`. Relative
paths start at the config file's directory):
  programs:
    dingtalk:
      command: handlers/dingtalk-notify.py
      args: ["--event_type={source}:{event}"]   # optional
      params: [repo, ref, text]                 # -> --repo=... --ref=... --text=...
      timeout: 30s
      env:
        DINGTALK_WEBHOOK_URL: ${DINGTALK_WEBHOOK_URL}   # must be set when the daemon starts
        DINGTALK_SECRET: ${DINGTALK_SECRET:-}
        # The daemon clears the environment: add HTTPS_PROXY here if one is needed.
  mappings:
    github:
      push:                         # the shipped mapping, plus `text`
        params:
          ref: payload.ref
          repo: payload.repository.full_name
          author: payload.head_commit.author.name
          text: payload.head_commit.message
        rules:
          - run: dingtalk
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def utf8(s):
    # argv/env are decoded with the locale's encoding; the daemon sends UTF-8.
    return os.fsencode(s).decode("utf-8", "replace")


def dingtalk_sign(timestamp, secret):
    # DingTalk: key is the secret, message is "timestamp\nsecret"; URL-encoded.
    msg = f"{timestamp}\n{secret}".encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def main():
    sys.stdout.reconfigure(encoding="utf-8")
    sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace")

    parser = argparse.ArgumentParser(allow_abbrev=False)
    for name in ("title", "text", "repo", "ref", "event_type", "url"):
        parser.add_argument("--" + name, default="")
    args = parser.parse_args([utf8(a) for a in sys.argv[1:]])

    webhook = os.environ.get("DINGTALK_WEBHOOK_URL", "")
    if not webhook.startswith(("https://", "http://")):
        print("dingtalk-notify: set DINGTALK_WEBHOOK_URL to the robot's http(s) webhook URL",
              file=sys.stderr)
        return 2
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in webhook):
        # Not repeated: the URL holds the robot's secret.
        print("dingtalk-notify: DINGTALK_WEBHOOK_URL holds white space or control characters (a comment "
              "after it in an EnvironmentFile?): set it to the webhook URL alone", file=sys.stderr)
        return 2
    secret = utf8(os.environ.get("DINGTALK_SECRET", ""))
    if secret:
        timestamp = str(round(time.time() * 1000))
        webhook += ("&" if "?" in webhook else "?")
        webhook += f"timestamp={timestamp}&sign={dingtalk_sign(timestamp, secret)}"
    env = lambda name: utf8(os.environ.get(name, ""))
    title = args.title or f"{env('HOOK_SOURCE')} {env('HOOK_EVENT')}".strip() or "hookrunner"

    fields = (("repo", args.repo), ("ref", args.ref),
              ("event", args.event_type), ("text", args.text))
    lines = [f"### {title}", ""]
    lines += [f"- **{label}**: {value}" for label, value in fields if value]
    if args.url:
        lines += ["", f"[Open]({args.url})"]
    payload = {"msgtype": "markdown", "markdown": {"title": title, "text": "\n".join(lines)}}

    req = urllib.request.Request(
        webhook, method="POST",
        data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (http.client.HTTPException, ValueError) as e:
        # Their text may quote the URL, which holds the robot's secret.
        print(f"dingtalk-notify: the request could not be made ({type(e).__name__})", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"dingtalk-notify: request failed: {e}", file=sys.stderr)
        return 1

    try:
        reply = json.loads(raw)
    except ValueError:
        reply = None
    if not (200 <= status < 300 and isinstance(reply, dict) and reply.get("errcode", 0) == 0):
        print(f"dingtalk-notify: HTTP {status}: {raw.decode('utf-8', 'replace')}",
              file=sys.stderr)
        return 1
    print("dingtalk: sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())

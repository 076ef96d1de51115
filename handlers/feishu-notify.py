#!/usr/bin/env python3
"""feishu-notify.py - post an interactive card to a Feishu/Lark custom bot.

Inputs
  args   --title=  card title (default "$HOOK_SOURCE $HOOK_EVENT")
         --text=   free text, e.g. a commit message
         --repo=  --ref=  --event_type=   shown as "**repo**: ..." lines when non-empty
         --url=    if given, the card gets an "Open" button linking to it
         All optional; anything else is an error (exit 2). Use the --opt=value form.
  env    FEISHU_WEBHOOK_URL  required, https://open.feishu.cn/open-apis/bot/v2/hook/<id>
                             (Lark: https://open.larksuite.com/...)
         FEISHU_SECRET       optional; the bot's "signature verification" secret
         HOOK_SOURCE, HOOK_EVENT  set by the daemon, used for the default title
  stdin  ignored.
Exit     0 sent ("feishu: sent"); 1 network error, non-2xx or non-zero
         code/StatusCode (the response goes to stderr); 2 usage/config error.

webhook.yaml (not in the shipped config; add it next to `notify`. Relative
paths start at the config file's directory):
  programs:
    feishu:
      command: handlers/feishu-notify.py
      args: ["--event_type={source}:{event}"]   # optional
      params: [repo, ref, text, url]            # -> --repo=... --ref=... --text=... --url=...
      timeout: 30s
      env:
        FEISHU_WEBHOOK_URL: ${FEISHU_WEBHOOK_URL}   # must be set when the daemon starts
        FEISHU_SECRET: ${FEISHU_SECRET:-}
        # The daemon clears the environment: add HTTPS_PROXY here if one is needed.
  mappings:
    github:
      push:                         # the shipped mapping, plus `text` and `url`
        params:
          ref: payload.ref
          repo: payload.repository.full_name
          author: payload.head_commit.author.name
          text: payload.head_commit.message
          url: payload.compare
        rules:
          - run: feishu
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
import urllib.request


def utf8(s):
    # argv/env are decoded with the locale's encoding; the daemon sends UTF-8.
    return os.fsencode(s).decode("utf-8", "replace")


def md_escape(s):
    # Keep untrusted text from injecting lark_md tags such as <at id=all></at>.
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def feishu_sign(timestamp, secret):
    # Feishu: the key is "timestamp\nsecret" and the message is empty.
    key = f"{timestamp}\n{secret}".encode("utf-8")
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def main():
    sys.stdout.reconfigure(encoding="utf-8")
    sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace")

    parser = argparse.ArgumentParser(allow_abbrev=False)
    for name in ("title", "text", "repo", "ref", "event_type", "url"):
        parser.add_argument("--" + name, default="")
    args = parser.parse_args([utf8(a) for a in sys.argv[1:]])

    webhook = os.environ.get("FEISHU_WEBHOOK_URL", "")
    if not webhook.startswith(("https://", "http://")):
        print("feishu-notify: set FEISHU_WEBHOOK_URL to the bot's http(s) webhook URL",
              file=sys.stderr)
        return 2
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in webhook):
        # Not repeated: the URL holds the bot's secret.
        print("feishu-notify: FEISHU_WEBHOOK_URL holds white space or control characters (a comment "
              "after it in an EnvironmentFile?): set it to the webhook URL alone", file=sys.stderr)
        return 2
    secret = utf8(os.environ.get("FEISHU_SECRET", ""))
    env = lambda name: utf8(os.environ.get(name, ""))
    title = args.title or f"{env('HOOK_SOURCE')} {env('HOOK_EVENT')}".strip() or "hookrunner"

    fields = (("repo", args.repo), ("ref", args.ref),
              ("event", args.event_type), ("text", args.text))
    lines = [f"**{label}**: {md_escape(value)}" for label, value in fields if value]
    elements = [{"tag": "div",
                 "text": {"tag": "lark_md", "content": "\n".join(lines) or "(no details)"}}]
    if args.url:
        elements.append({"tag": "action", "actions": [{
            "tag": "button", "type": "primary",
            "text": {"tag": "plain_text", "content": "Open"}, "url": args.url}]})

    payload = {"msg_type": "interactive", "card": {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": title}, "template": "blue"},
        "elements": elements}}
    if secret:
        timestamp = str(int(time.time()))
        payload["timestamp"] = timestamp
        payload["sign"] = feishu_sign(timestamp, secret)

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
        # Their text may quote the URL, which holds the bot's secret.
        print(f"feishu-notify: the request could not be made ({type(e).__name__})", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"feishu-notify: request failed: {e}", file=sys.stderr)
        return 1

    try:
        reply = json.loads(raw)
    except ValueError:
        reply = None
    ok = (200 <= status < 300 and isinstance(reply, dict)
          and reply.get("code", 0) == 0 and reply.get("StatusCode", 0) == 0)
    if not ok:
        print(f"feishu-notify: HTTP {status}: {raw.decode('utf-8', 'replace')}",
              file=sys.stderr)
        return 1
    print("feishu: sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""feishu-owner-dm.py - send a push to its project owners' Feishu/Lark inbox.

A push (GitLab; GitHub, Gitea and Forgejo pushes work too) is matched to its
project's owners in an owners file; their Feishu user ids are looked up by
email through the Feishu app API, and each owner gets one interactive card:
project, pusher, branch, the last commit's message, and a button to the change.

Inputs
  stdin  the webhook body (JSON), as hookrunner passes it
  args   --print      print the owners and the card instead of calling Feishu
         --event=NAME the event, when HOOK_EVENT does not carry it
  env    FEISHU_APP_ID, FEISHU_APP_SECRET   required: a self-built app with the
                          bot feature, and the permissions contact:user.id:readonly
                          (look users up by email), contact:user.employee_id:readonly
                          (or the lookup answers no user_id) and im:message:send_as_bot
         OWNERS_FILE      required: the owners file (relative paths start at the
                          program's working_dir, by default the config's directory)
         FEISHU_API_BASE  default https://open.feishu.cn (Lark: https://open.larksuite.com)
         HOOK_CACHE_DIR   where the tenant access token is cached until it
                          expires (default $XDG_CACHE_HOME/hookrunner, else
                          $HOME/.cache/hookrunner, else /tmp/hookrunner-<uid>)
         CHAT_RETRY_ATTEMPTS, CHAT_RETRY_MAX_WAIT, CHAT_DEADLINE   as in dingtalk-events.py
Owners file (JSON, or the YAML subset below): project path -> one email or a list.
  {"acme/billing": "li.lei@example.com",
   "acme/": ["han.meimei@example.com", "ops@example.com"],
   "*": "fallback@example.com"}
  YAML: `key: value`, `key: [a, b]`, or `key:` followed by `  - a` lines; # comments.
  Matching (case-insensitive): the key equal to the project path first; else the
  longest key contained in the path (ties: the first in the file); else `*`.
Exit     0 every owner got the card; 1 refused for good (bad app id/secret, a
         permission missing); 2 usage/config error (env, owners file, payload);
         3 partly done: no owner for the project, or owners Feishu does not
         know (named on stderr; the others got their card); 75 retryable (429,
         5xx, rate limits, network) after this run's retries: list it in
         exit_codes.retry. A retried task does not send a card twice: the
         owners already served are remembered per HOOK_TASK_ID (and Feishu
         drops repeats of the same `uuid` within an hour).
"""
import hashlib
import json
import os
import re
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import _chat  # noqa: E402
from _chat import EXIT_PARTIAL, EXIT_PERMANENT, EXIT_RETRY, EXIT_SENT, EXIT_USAGE, Failure  # noqa: E402

PROG = "feishu-owner-dm.py"
# Invalid or expired tenant access token: fetch a new one once.
TOKEN_CODES = (99991661, 99991663, 99991664, 99991668)
# Frequency limits of the Open Platform and of im/v1/messages.
RATE_CODES = (99991400, 230020, 11232)


# ------------------------------------------------------------ owners file

# One `@` between two parts without spaces, quotes, brackets or braces: what
# a mistyped file (a YAML mapping, a stray quote) is not.
EMAIL = re.compile(r"[^@\s\"'{}\[\]<>,;]+@[^@\s\"'{}\[\]<>,;]+")


def parse_scalar(value, where):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    if value[:1] in "\"'" or value[-1:] in "\"'":
        raise Failure(EXIT_USAGE, f"{where}: unbalanced quotes in {value!r}")
    return value


def strip_comment(line):
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def split_key(line, where):
    """`key: rest` with a plain or quoted key."""
    if line[:1] in "\"'":
        end = line.find(line[0], 1)
        if end < 0 or line[end + 1: end + 2] != ":":
            raise Failure(EXIT_USAGE, f"{where}: expected `\"key\": value`")
        return line[1:end], line[end + 2:]
    idx = line.find(": ")
    if idx >= 0:
        key, rest = line[:idx], line[idx + 2:]
    elif line.endswith(":"):
        key, rest = line[:-1], ""
    else:
        raise Failure(EXIT_USAGE, f"{where}: expected `key: value`")
    return key.strip(), rest


def parse_yaml_subset(raw, path):
    owners, key = {}, None
    for n, line in enumerate(raw.splitlines(), 1):
        where = f"{path}:{n}"
        line = strip_comment(line)
        if not line.strip() or line.strip() == "---":
            continue
        if line[0] in " \t":
            item = line.strip()
            if not item.startswith("- ") and item != "-":
                raise Failure(EXIT_USAGE, f"{where}: expected a `- email` list item under a key")
            if key is None or not isinstance(owners[key], list):
                raise Failure(EXIT_USAGE, f"{where}: a list item without a `key:` above it")
            owners[key].append(parse_scalar(item[1:], where))
            continue
        key, rest = split_key(line, where)
        rest = rest.strip()
        if key in owners:
            raise Failure(EXIT_USAGE, f"{where}: `{key}` is given twice")
        if not rest:
            owners[key] = []
        elif rest.startswith("{"):
            raise Failure(EXIT_USAGE, f"{where}: `{{...}}` is not supported here: give an email or a list of emails")
        elif rest.startswith("["):
            if not rest.endswith("]"):
                raise Failure(EXIT_USAGE, f"{where}: a `[` list must end on the same line")
            inner = rest[1:-1].strip()
            owners[key] = [parse_scalar(x, where) for x in inner.split(",")] if inner else []
        else:
            owners[key] = parse_scalar(rest, where)
    return owners


def load_owners(path):
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise Failure(EXIT_USAGE, f"cannot read the owners file {path}: {e}")
    if path.endswith(".json") or raw.lstrip().startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise Failure(EXIT_USAGE, f"the owners file {path} is not valid JSON: {e}")
    else:
        data = parse_yaml_subset(raw, path)
    if not isinstance(data, dict):
        raise Failure(EXIT_USAGE, f"the owners file {path} must map project paths to emails")
    owners = {}
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        emails = []
        for v in values:
            if not isinstance(v, str):
                raise Failure(EXIT_USAGE, f"owners file {path}: `{key}` must be an email or a list of emails")
            for e in (e.strip() for e in v.replace(";", ",").split(",")):
                if not e:
                    continue
                if not EMAIL.fullmatch(e):
                    raise Failure(EXIT_USAGE, f"owners file {path}: `{key}`: {e!r} is not an email")
                emails.append(e)
        owners[str(key)] = emails
    return owners


def owners_for(owners, project):
    """(matched key, emails): the exact path first, then the longest key
    contained in the path, then `*`; (None, []) when nothing matches."""
    path = project.strip().strip("/").lower()
    for key, emails in owners.items():
        if key.strip().strip("/").lower() == path:
            return key, emails
    best = None
    for key, emails in owners.items():
        k = key.strip().lower()
        if k and k != "*" and k in path and (best is None or len(k) > len(best[0].strip())):
            best = (key, emails)
    if best:
        return best
    if "*" in owners:
        return "*", owners["*"]
    return None, []


# ------------------------------------------------------------------ card


def last_commit(payload):
    head = payload.get("head_commit")
    if isinstance(head, dict):
        return head
    commits = [c for c in payload.get("commits") or [] if isinstance(c, dict)]
    want = _chat.text(payload.get("checkout_sha") or payload.get("after"))
    for c in commits:
        if c.get("id") == want:
            return c
    return commits[-1] if commits else {}


def owner_card(s, payload):
    esc = _chat.lark_escape
    commit = last_commit(payload)
    message = _chat.shorten(_chat.text(commit.get("message")).strip(), 1000)
    n = len(s["commits"]) + s["more_commits"]
    project = f"[{_chat.md_link_text(esc(s['project']))}]({s['project_url']})" if s["project_url"] else esc(s["project"])
    lines = [f"**Project**: {project}", f"**Pusher**: {esc(s['actor'])}"]
    ref = _chat.text(payload.get("ref"))
    if ref:
        lines.append(f"**Branch**: {esc(_chat.branch_of(ref))}")
    if n:
        lines.append(f"**Commits**: {n}")
    elements = [{"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(lines)}}]
    if message:
        sha = _chat.text(commit.get("id"))[:8]
        elements.append({"tag": "div", "text": {"tag": "lark_md",
                                                "content": f"**Last commit** {sha}\n{esc(message)}"}})
    if s["url"]:
        elements.append({"tag": "action", "actions": [{
            "tag": "button", "type": "primary",
            "text": {"tag": "plain_text", "content": "View changes"}, "url": s["url"]}]})
    return {"config": {"wide_screen_mode": True},
            "header": {"title": {"tag": "plain_text", "content": _chat.title_of(s)},
                       "template": _chat.FEISHU_TEMPLATES.get(s["color"], "blue")},
            "elements": elements}


# ------------------------------------------------------------- Feishu API


def cache_dir():
    for base in (_chat.env("HOOK_CACHE_DIR"),
                 os.path.join(_chat.env("XDG_CACHE_HOME"), "hookrunner") if _chat.env("XDG_CACHE_HOME") else "",
                 os.path.join(_chat.env("HOME"), ".cache", "hookrunner") if _chat.env("HOME") else "",
                 os.path.join(tempfile.gettempdir(), f"hookrunner-{os.getuid()}")):
        if not base:
            continue
        try:
            os.makedirs(base, mode=0o700, exist_ok=True)
            if os.access(base, os.W_OK):
                return base
        except OSError:
            continue
    return None


class Feishu:
    def __init__(self, base, app_id, app_secret, budget):
        self.base = base.rstrip("/")
        self.app_id, self.app_secret = app_id, app_secret
        self.budget = budget
        self.cache = None
        directory = cache_dir()
        if directory:
            key = hashlib.sha256(f"{self.base}\n{app_id}".encode("utf-8")).hexdigest()[:16]
            self.cache = os.path.join(directory, f"feishu-tenant-token-{key}.json")
        self.token = None

    def _cached(self):
        if not self.cache:
            return None
        try:
            with open(self.cache, encoding="utf-8") as f:
                entry = json.load(f)
            # Feishu hands out a new token in the last 30 minutes; refresh a bit before.
            if isinstance(entry, dict) and entry.get("expires_at", 0) - time.time() > 300:
                return entry.get("token") or None
        except (OSError, ValueError):
            pass
        return None

    def _store(self, token, expire):
        if not self.cache:
            return
        entry = {"token": token, "expires_at": time.time() + expire}
        tmp = f"{self.cache}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f)
            os.replace(tmp, self.cache)
        except OSError as e:
            print(f"{PROG}: cannot cache the token in {self.cache}: {e}", file=sys.stderr)

    def forget_token(self):
        self.token = None
        if self.cache:
            try:
                os.remove(self.cache)
            except OSError:
                pass

    def tenant_token(self):
        if self.token:
            return self.token
        self.token = self._cached()
        if self.token:
            _chat.keep_secret(self.token)
            return self.token
        reply = _chat.send(
            "tenant_access_token",
            lambda: (f"{self.base}/open-apis/auth/v3/tenant_access_token/internal",
                     {"app_id": self.app_id, "app_secret": self.app_secret}, {}),
            ok=lambda r, a: isinstance(r, dict) and r.get("code") == 0 and r.get("tenant_access_token"),
            rate_limited=lambda r: isinstance(r, dict) and r.get("code") in RATE_CODES,
            budget=self.budget)
        self.token = reply["tenant_access_token"]
        _chat.keep_secret(self.token)
        self._store(self.token, float(reply.get("expire") or 7200))
        return self.token

    def call(self, name, path, body):
        """POST with the tenant token; a token Feishu calls invalid is fetched again once."""
        for fresh in (False, True):
            token = self.tenant_token()
            try:
                return _chat.send(
                    name,
                    lambda: (f"{self.base}{path}", body, {"Authorization": f"Bearer {token}"}),
                    ok=lambda r, a: isinstance(r, dict) and r.get("code") == 0,
                    rate_limited=lambda r: isinstance(r, dict) and r.get("code") in RATE_CODES,
                    budget=self.budget)
            except Failure as f:
                if fresh or _chat.get(f.reply, "code") not in TOKEN_CODES:
                    raise
                self.forget_token()
        raise AssertionError("unreachable")

    def user_ids(self, emails):
        """email -> user_id for those Feishu knows."""
        found = {}
        for i in range(0, len(emails), 50):
            reply = self.call("users/batch_get_id",
                              "/open-apis/contact/v3/users/batch_get_id?user_id_type=user_id",
                              {"emails": emails[i:i + 50]})
            for user in _chat.get(reply, "data", "user_list", default=[]):
                if isinstance(user, dict) and user.get("user_id") and user.get("email"):
                    found[user["email"].lower()] = user["user_id"]
        return found

    def send_card(self, user_id, card, uuid):
        body = {"receive_id": user_id, "msg_type": "interactive",
                "content": json.dumps(card, ensure_ascii=False)}
        if uuid:
            body["uuid"] = uuid
        return self.call("im/v1/messages", "/open-apis/im/v1/messages?receive_id_type=user_id", body)


# ----------------------------------------------------------------- ledger


class Ledger:
    """The user ids a task already reached, so a retried task skips them."""

    def __init__(self, task_id):
        self.path = None
        self.sent = set()
        directory = cache_dir() if task_id else None
        if not directory:
            return
        safe = "".join(c for c in task_id if c.isalnum() or c in "-_")[:80]
        self.path = os.path.join(directory, f"feishu-owner-dm-sent-{safe}.json")
        try:
            with open(self.path, encoding="utf-8") as f:
                self.sent = set(json.load(f))
        except (OSError, ValueError, TypeError):
            pass
        self._sweep(directory)

    @staticmethod
    def _sweep(directory):
        cutoff = time.time() - 86400
        try:
            for name in os.listdir(directory):
                if name.startswith("feishu-owner-dm-sent-"):
                    full = os.path.join(directory, name)
                    if os.path.getmtime(full) < cutoff:
                        os.remove(full)
        except OSError:
            pass

    def add(self, user_id):
        self.sent.add(user_id)
        if self.path:
            try:
                with open(self.path, "w", encoding="utf-8") as f:
                    json.dump(sorted(self.sent), f)
            except OSError as e:
                print(f"{PROG}: cannot record the sent cards in {self.path}: {e}", file=sys.stderr)


# ------------------------------------------------------------------- main


def main():
    _chat.setup_stdio()
    _chat.PROG = PROG
    try:
        return run()
    except Failure as f:
        print(f"{PROG}: {_chat.masked(f.message)}", file=sys.stderr)
        return f.code


def run():
    args = _chat.parse_args(sys.argv[1:], PROG)
    owners_file = _chat.env("OWNERS_FILE").strip()
    if not owners_file:
        raise Failure(EXIT_USAGE, "set OWNERS_FILE to the owners file (JSON or simple YAML)")
    owners = load_owners(owners_file)
    payload = _chat.read_payload()
    s = _chat.summarize(payload, args.event or _chat.env("HOOK_EVENT"),
                        int(_chat.env_number("CHAT_MAX_COMMITS", 5, int)))
    key, emails = owners_for(owners, s["project"])
    if not emails:
        print(f"{PROG}: no owner for project {s['project'] or '(unknown)'} in {owners_file}", file=sys.stderr)
        return EXIT_PARTIAL
    card = owner_card(s, payload)
    if args.print:
        print(json.dumps({"project": s["project"], "owners_key": key, "owners": emails, "card": card},
                         ensure_ascii=False, indent=2))
        return EXIT_SENT

    app_id, app_secret = _chat.env("FEISHU_APP_ID").strip(), _chat.env("FEISHU_APP_SECRET").strip()
    _chat.keep_secret(app_secret)
    if not app_id or not app_secret:
        raise Failure(EXIT_USAGE, "set FEISHU_APP_ID and FEISHU_APP_SECRET (the app's credentials)")
    base = _chat.env("FEISHU_API_BASE").strip() or "https://open.feishu.cn"
    if not base.startswith(("https://", "http://")):
        raise Failure(EXIT_USAGE, "FEISHU_API_BASE must be an http(s) URL")
    feishu = Feishu(base, app_id, app_secret, _chat.Budget())

    unique = list(dict.fromkeys(e for e in emails))
    ids = feishu.user_ids(unique)
    unknown = [e for e in unique if e.lower() not in ids]
    task_id = _chat.env("HOOK_TASK_ID")
    ledger = Ledger(task_id)
    sent, retry, refused = [], [], []
    for email in unique:
        user_id = ids.get(email.lower())
        if not user_id:
            continue
        if user_id in ledger.sent:
            print(f"already sent to {email} by an earlier attempt")
            sent.append(email)
            continue
        uuid = hashlib.sha256(f"{task_id}\n{user_id}".encode("utf-8")).hexdigest()[:40] if task_id else None
        try:
            feishu.send_card(user_id, card, uuid)
        except Failure as f:
            print(f"{PROG}: {email}: {_chat.masked(f.message)}", file=sys.stderr)
            (retry if f.code == EXIT_RETRY else refused).append(email)
            continue
        ledger.add(user_id)
        sent.append(email)
        print(f"sent to {email}")
    for email in unknown:
        print(f"{PROG}: {email} (owner of {s['project']} by `{key}`) is not a Feishu user the app can see "
              "(no such email in the tenant, outside the app's contact range, or the app lacks "
              "contact:user.employee_id:readonly, without which Feishu returns no user_id)",
              file=sys.stderr)
    print(f"feishu: {len(sent)} of {len(unique)} owners of {s['project']} reached")
    if retry:
        return EXIT_RETRY
    if refused:
        return EXIT_PERMANENT
    if unknown:
        return EXIT_PARTIAL
    return EXIT_SENT


if __name__ == "__main__":
    sys.exit(main())

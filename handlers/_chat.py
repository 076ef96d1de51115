"""_chat.py - shared code of the chat handlers (dingtalk-events.py,
feishu-events.py, wecom-events.py, slack-events.py, feishu-owner-dm.py).

Not a handler itself: the scripts import it from their own directory. Python
3.11 standard library only.

What is here:
  - reading the payload (stdin) and telling which provider and event it is;
  - summarize(): one event -> a neutral summary (project, who, what happened,
    link, details, commits);
  - render_*(): a summary -> the JSON each chat service takes;
  - send(): a POST with bounded retries for 429 / 5xx / network errors,
    honouring Retry-After, and the exit codes the handlers share.

Exit codes (the same for every chat handler, see docs/HOOKS.md):
  0   sent
  1   permanent failure: the service refused the message (403, bad token or
      secret, an API error code); retrying will not help
  2   usage or config error (a missing or malformed env var, stdin not JSON)
  3   partly done (feishu-owner-dm.py: a project without owners, or owners
      Feishu could not find; the others were sent)
  75  retryable failure (429, 5xx, a rate-limit code, a network error) that
      was still failing after the handler's own retries; list it in the
      program's `exit_codes.retry` so the daemon tries again later
"""
import base64
import email.utils
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

EXIT_SENT = 0
EXIT_PERMANENT = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_RETRY = 75

# The handler's name, for the lines it prints (set by run() and the scripts).
PROG = "chat"

ZERO_SHA = "0" * 40


# Secrets this run holds (webhook URL tokens, signing and app secrets, an
# access token): never repeated in what it prints, even when a service's
# answer quotes them back (a proxy's error page quoting the request line).
SECRETS = set()


def keep_secret(value):
    """Registers a secret to be masked in everything printed."""
    value = (value or "").strip()
    if len(value) >= 6:
        SECRETS.add(value)


def keep_url_secrets(url):
    """Registers what in a webhook URL is a credential: the userinfo, every
    query value, and the path after its first segment (a hook URL's token)."""
    parts = urllib.parse.urlsplit(url)
    keep_secret(url)
    keep_secret(parts.password)
    for _, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        keep_secret(value)
        keep_secret(urllib.parse.quote(value, safe=""))
    for segment in parts.path.split("/")[2:]:
        keep_secret(segment)


def masked(text_):
    """`text_` with every registered secret as `***` (longest first)."""
    for secret in sorted(SECRETS, key=len, reverse=True):
        text_ = text_.replace(secret, "***")
    return text_


class Failure(Exception):
    """Ends the handler with `code`; `message` goes to stderr."""

    def __init__(self, code, message, reply=None):
        super().__init__(message)
        self.code = code
        self.message = message
        # The service's decoded answer, when there was one.
        self.reply = reply


# ------------------------------------------------------------------ basics


def utf8(s):
    # argv/env are decoded with the locale's encoding; the daemon sends UTF-8.
    return os.fsencode(s).decode("utf-8", "replace")


def env(name, default=""):
    value = os.environ.get(name)
    return default if value is None else utf8(value)


def env_number(name, default, cast=float):
    raw = env(name).strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise Failure(EXIT_USAGE, f"{name} must be a number, not {raw!r}")
    if value < 0:
        raise Failure(EXIT_USAGE, f"{name} must not be negative")
    return value


def setup_stdio():
    sys.stdout.reconfigure(encoding="utf-8", errors="backslashreplace")
    sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace")


def read_payload():
    raw = sys.stdin.buffer.read() if sys.stdin is not None else b""
    if not raw.strip():
        raise Failure(EXIT_USAGE, "no payload on stdin (run this from hookrunner, or pipe a webhook body in)")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise Failure(EXIT_USAGE, f"the payload on stdin is not JSON: {e}")
    if not isinstance(body, dict):
        raise Failure(EXIT_USAGE, "the payload on stdin is not a JSON object")
    return body


def get(obj, *path, default=None):
    """obj[path[0]][path[1]]..., or `default` where something is missing."""
    for key in path:
        if isinstance(obj, dict) and key in obj:
            obj = obj[key]
        elif isinstance(obj, list) and isinstance(key, int) and -len(obj) <= key < len(obj):
            obj = obj[key]
        else:
            return default
    return default if obj is None else obj


def text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def first_line(s, limit=120):
    s = text(s).strip()
    line = s.splitlines()[0].strip() if s else ""
    return shorten(line, limit)


def shorten(s, limit):
    s = text(s)
    return s if len(s) <= limit else s[: max(limit - 1, 0)].rstrip() + "…"


def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def branch_of(ref):
    ref = text(ref)
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


# ----------------------------------------------------- provider and event

GITLAB_KINDS = {
    "push", "tag_push", "merge_request", "pipeline", "job", "issue", "confidential_issue",
    "note", "confidential_note", "release", "wiki_page", "deployment", "feature_flag",
}
GITHUB_KINDS = {"push", "pull_request", "issues", "issue_comment", "release", "workflow_run", "create", "delete",
                "pull_request_review_comment", "ping"}


def detect(payload, hook_event=""):
    """(provider, kind): provider is "gitlab" or "github" (GitHub, Gitea,
    Forgejo and Gogs share their payload shapes); kind is the event."""
    hook_event = (hook_event or "").strip()
    kind_hint = hook_event.split(".")[0]
    if kind_hint.endswith(" Hook"):  # GitLab's raw header value
        kind_hint = kind_hint[: -len(" Hook")].strip().lower().replace(" ", "_")
    object_kind = payload.get("object_kind")
    if isinstance(object_kind, str) and object_kind:
        kind = "job" if object_kind == "build" else object_kind
        if kind_hint in GITLAB_KINDS and kind_hint.replace("confidential_", "") == kind:
            kind = kind_hint
        elif kind in ("issue", "note") and (
            payload.get("event_type") == f"confidential_{kind}"
            or (kind == "issue" and get(payload, "object_attributes", "confidential") is True)
        ):
            kind = f"confidential_{kind}"
        return "gitlab", kind
    if kind_hint in GITHUB_KINDS:
        return "github", kind_hint
    # A generic source (HOOK_EVENT "default"): guess from the shape.
    if "workflow_run" in payload:
        return "github", "workflow_run"
    if "zen" in payload and "hook_id" in payload:
        return "github", "ping"
    if "comment" in payload and "pull_request" in payload:
        return "github", "pull_request_review_comment"
    if "pull_request" in payload and "action" in payload:
        return "github", "pull_request"
    if "comment" in payload and "issue" in payload:
        return "github", "issue_comment"
    if "issue" in payload and "action" in payload:
        return "github", "issues"
    if "release" in payload and "action" in payload:
        return "github", "release"
    if "ref" in payload and "commits" in payload:
        return "github", "push"
    return "github", kind_hint or "event"


# ---------------------------------------------------------------- summary


def summary(**fields):
    s = {
        "provider": "", "kind": "", "project": "", "project_url": "", "actor": "",
        "headline": "", "url": "", "details": [], "commits": [], "more_commits": 0,
        "excerpt": "", "color": "blue",
    }
    s.update(fields)
    return s


def status_color(status):
    status = text(status).lower()
    if status in ("success", "succeeded", "passed", "merged", "completed", "created", "published"):
        return "green"
    if status in ("failed", "failure", "canceled", "cancelled", "timed_out", "action_required", "error"):
        return "red"
    if status in ("closed", "skipped", "deleted", "manual", "neutral", "stale"):
        return "grey"
    return "blue"


def commit_list(commits, total, limit, sha_key="id", author=lambda c: get(c, "author", "name", default="")):
    commits = [c for c in commits or [] if isinstance(c, dict)]
    # Newest last in both GitLab's and GitHub's lists; show the newest first.
    shown = list(reversed(commits))[:limit]
    out = [{
        "sha": text(c.get(sha_key))[:8],
        "message": first_line(c.get("message") or c.get("title")),
        "author": text(author(c)),
        "url": text(c.get("url")),
    } for c in shown]
    total = max(int(total or 0), len(commits))
    return out, max(total - len(out), 0)


# The types GitLab, GitHub and Gitea give the fields messages are made from
# (top level, and inside `object_attributes`). A value of another type is a
# payload not shaped as the provider sends it: said, not silently left out.
SHAPES = {
    "object_kind": str, "event_name": str, "action": str, "ref": str, "before": str, "after": str,
    "user_name": str, "user_username": str, "user_email": str,
    "project": dict, "repository": dict, "user": dict, "sender": dict, "pusher": dict,
    "head_commit": dict, "pull_request": dict, "issue": dict, "comment": dict,
    "release": dict, "workflow_run": dict, "merge_request": dict, "object_attributes": dict,
    "commits": list, "total_commits_count": int, "size": int,
}
ATTRIBUTE_SHAPES = {
    "title": str, "action": str, "state": str, "status": str, "url": str,
    "note": str, "source_branch": str, "target_branch": str,
}
TYPE_NAMES = {str: "a string", dict: "an object", list: "an array", int: "a number",
              float: "a number", bool: "true or false"}


def check_shape(payload):
    def check(obj, shapes, where):
        for key, want in shapes.items():
            value = obj.get(key)
            if value is None or isinstance(value, want):
                continue
            got = TYPE_NAMES.get(type(value), type(value).__name__)
            raise Failure(EXIT_USAGE, f"the payload is not shaped as the provider sends it: "
                                      f"`{where}{key}` is {got}, where {TYPE_NAMES[want]} belongs")
    check(payload, SHAPES, "")
    if isinstance(payload.get("object_attributes"), dict):
        check(payload["object_attributes"], ATTRIBUTE_SHAPES, "object_attributes.")
    if any(not isinstance(c, dict) for c in payload.get("commits") or []):
        raise Failure(EXIT_USAGE, "the payload is not shaped as the provider sends it: "
                                  "`commits` holds something other than objects")


def summarize(payload, hook_event="", max_commits=5):
    check_shape(payload)
    provider, kind = detect(payload, hook_event)
    if provider == "gitlab":
        fn = GITLAB.get(kind, gitlab_other)
    else:
        fn = GITHUB.get(kind, github_other)
    s = fn(payload, kind, max_commits)
    s["provider"], s["kind"] = provider, kind
    return s


# --- GitLab (payload shapes: GitLab's "Webhook events" documentation)


def gl_project(p):
    project = p.get("project") if isinstance(p.get("project"), dict) else {}
    path = text(project.get("path_with_namespace"))
    url = text(project.get("web_url"))
    if not path:
        homepage = text(get(p, "repository", "homepage"))
        url = url or homepage
        path = urllib.parse.urlsplit(homepage).path.strip("/") or text(p.get("project_name"))
    return path, url


# Who did it, when the payload does not say (a deleted account, a system hook).
NOBODY = "someone"


def gl_user(p):
    return text(get(p, "user", "name") or p.get("user_name") or get(p, "user", "username")) or NOBODY


def gitlab_push(p, kind, limit):
    project, project_url = gl_project(p)
    who = gl_user(p)
    name = branch_of(p.get("ref"))
    before, after = text(p.get("before")), text(p.get("after"))
    commits, more = commit_list(p.get("commits"), p.get("total_commits_count"), limit)
    n = len(commits) + more
    tag = kind == "tag_push"
    thing = f"tag {name}" if tag else f"branch {name}"
    if after == ZERO_SHA:
        headline, url, color = f"{who} deleted {thing}", project_url, "grey"
        commits, more = [], 0
    elif tag:
        headline = f"{who} pushed tag {name}"
        url, color = f"{project_url}/-/tags/{urllib.parse.quote(name)}", "green"
    elif before == ZERO_SHA:
        headline = f"{who} created branch {name}" + (f" with {plural(n, 'commit')}" if n else "")
        url, color = f"{project_url}/-/commits/{urllib.parse.quote(name)}", "blue"
    else:
        headline = f"{who} pushed {plural(n, 'commit')} to {name}"
        url, color = f"{project_url}/-/compare/{before[:8]}...{after[:8]}", "blue"
    if not project_url:
        url = commits[0]["url"] if commits else ""
    return summary(project=project, project_url=project_url, actor=who, headline=headline,
                   url=url, commits=commits, more_commits=more, color=color)


MR_VERBS = {"open": "opened", "close": "closed", "reopen": "reopened", "update": "updated",
            "approved": "approved", "approval": "approved", "unapproved": "unapproved",
            "unapproval": "unapproved", "merge": "merged"}


def gitlab_merge_request(p, kind, limit):
    project, project_url = gl_project(p)
    who = gl_user(p)
    a = p.get("object_attributes") or {}
    verb = MR_VERBS.get(text(a.get("action")), text(a.get("action")) or text(a.get("state")) or "changed")
    return summary(
        project=project, project_url=project_url, actor=who,
        headline=f"{who} {verb} merge request !{text(a.get('iid'))}: {first_line(a.get('title'))}",
        url=text(a.get("url")), excerpt=shorten(text(a.get("description")).strip(), 300),
        color="violet" if verb == "merged" else status_color(verb),
        details=[("Branches", f"{text(a.get('source_branch'))} → {text(a.get('target_branch'))}"),
                 ("State", text(a.get("state")))])


def gitlab_pipeline(p, kind, limit):
    project, project_url = gl_project(p)
    a = p.get("object_attributes") or {}
    status = text(a.get("detailed_status") or a.get("status"))
    pid = text(a.get("id"))
    url = text(a.get("url")) or (f"{project_url}/-/pipelines/{pid}" if project_url else "")
    details = [("Ref", text(a.get("ref"))), ("Status", status)]
    if a.get("duration") is not None:
        details.append(("Duration", f"{text(a.get('duration'))} s"))
    commit = p.get("commit") or {}
    if commit:
        details.append(("Commit", f"{text(commit.get('id'))[:8]} {first_line(commit.get('message') or commit.get('title'))}"))
    mr = p.get("merge_request") or {}
    if mr:
        details.append(("Merge request", f"!{text(mr.get('iid'))} {first_line(mr.get('title'))}"))
    return summary(project=project, project_url=project_url, actor=gl_user(p),
                   headline=f"Pipeline #{pid} {status} on {text(a.get('ref'))}",
                   url=url, color=status_color(a.get("status")), details=details)


def gitlab_job(p, kind, limit):
    project, project_url = gl_project(p)
    status = text(p.get("build_status"))
    url = f"{project_url}/-/jobs/{text(p.get('build_id'))}" if project_url else ""
    details = [("Stage", text(p.get("build_stage"))), ("Ref", text(p.get("ref"))), ("Status", status)]
    if p.get("build_duration") is not None:
        details.append(("Duration", f"{float(p.get('build_duration')):.0f} s"))
    if status == "failed" and p.get("build_failure_reason"):
        details.append(("Failure", text(p.get("build_failure_reason"))))
    commit = p.get("commit") or {}
    if commit:
        details.append(("Commit", f"{text(commit.get('sha') or commit.get('id'))[:8]} {first_line(commit.get('message'))}"))
    return summary(project=project, project_url=project_url, actor=gl_user(p),
                   headline=f"Job {text(p.get('build_name'))} {status} on {text(p.get('ref'))}",
                   url=url, color=status_color(status), details=details)


ISSUE_VERBS = {"open": "opened", "close": "closed", "reopen": "reopened", "update": "updated"}


def gitlab_issue(p, kind, limit):
    project, project_url = gl_project(p)
    who = gl_user(p)
    a = p.get("object_attributes") or {}
    verb = ISSUE_VERBS.get(text(a.get("action")), text(a.get("action")) or "changed")
    what = "confidential issue" if kind == "confidential_issue" else "issue"
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"{who} {verb} {what} #{text(a.get('iid'))}: {first_line(a.get('title'))}",
                   url=text(a.get("url")), excerpt=shorten(text(a.get("description")).strip(), 300),
                   color=status_color(verb), details=[("State", text(a.get("state")))])


def gitlab_note(p, kind, limit):
    project, project_url = gl_project(p)
    who = gl_user(p)
    a = p.get("object_attributes") or {}
    on = text(a.get("noteable_type"))
    if on == "MergeRequest":
        target = f"merge request !{text(get(p, 'merge_request', 'iid'))}: {first_line(get(p, 'merge_request', 'title'))}"
    elif on == "Issue":
        target = f"issue #{text(get(p, 'issue', 'iid'))}: {first_line(get(p, 'issue', 'title'))}"
    elif on == "Commit":
        target = f"commit {text(get(p, 'commit', 'id'))[:8]}: {first_line(get(p, 'commit', 'message'))}"
    elif on == "Snippet":
        target = f"snippet ${text(get(p, 'snippet', 'id'))}: {first_line(get(p, 'snippet', 'title'))}"
    else:
        target = on or "something"
    what = "a confidential comment" if kind == "confidential_note" else "a comment"
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"{who} left {what} on {target}", url=text(a.get("url")),
                   excerpt=shorten(text(a.get("note")).strip(), 300))


RELEASE_VERBS = {"create": "created", "update": "updated", "delete": "deleted"}


def gitlab_release(p, kind, limit):
    project, project_url = gl_project(p)
    verb = RELEASE_VERBS.get(text(p.get("action")), text(p.get("action")) or "changed")
    who = gl_user(p) or text(get(p, "commit", "author", "name"))
    name, tag = text(p.get("name")), text(p.get("tag"))
    label = name if not tag or name == tag else f"{name} ({tag})"
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"Release {label} {verb}", url=text(p.get("url")),
                   excerpt=shorten(text(p.get("description")).strip(), 300),
                   color="green" if verb == "created" else status_color(verb),
                   details=[("Tag", tag)])


WIKI_VERBS = {"create": "created", "update": "updated", "delete": "deleted"}


def gitlab_wiki_page(p, kind, limit):
    project, project_url = gl_project(p)
    who = gl_user(p)
    a = p.get("object_attributes") or {}
    verb = WIKI_VERBS.get(text(a.get("action")), text(a.get("action")) or "changed")
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"{who} {verb} wiki page {first_line(a.get('title'))}",
                   url=text(a.get("url")), excerpt=shorten(text(a.get("message")).strip(), 300),
                   color=status_color(verb))


def gitlab_deployment(p, kind, limit):
    project, project_url = gl_project(p)
    status = text(p.get("status"))
    env_name = text(p.get("environment"))
    url = text(p.get("deployable_url")) or text(p.get("environment_external_url")) or project_url
    details = [("Environment", env_name), ("Status", status), ("Ref", text(p.get("ref")))]
    if p.get("short_sha") or p.get("commit_title"):
        details.append(("Commit", f"{text(p.get('short_sha'))} {first_line(p.get('commit_title'))}".strip()))
    if p.get("environment_external_url"):
        details.append(("URL", text(p.get("environment_external_url"))))
    verb = {"success": "succeeded", "running": "started", "canceled": "canceled",
            "failed": "failed"}.get(status, status)
    return summary(project=project, project_url=project_url, actor=gl_user(p),
                   headline=f"Deployment to {env_name} {verb}", url=url,
                   color=status_color(status), details=details)


def gitlab_feature_flag(p, kind, limit):
    project, project_url = gl_project(p)
    who = gl_user(p)
    a = p.get("object_attributes") or {}
    state = "on" if a.get("active") else "off"
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"{who} turned feature flag {text(a.get('name'))} {state}",
                   url=f"{project_url}/-/feature_flags" if project_url else "",
                   excerpt=shorten(text(a.get("description")).strip(), 300),
                   color="green" if state == "on" else "grey")


def gitlab_other(p, kind, limit):
    project, project_url = gl_project(p)
    who = gl_user(p)
    url = text(get(p, "object_attributes", "url")) or project_url
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"{kind.replace('_', ' ')} event" + (f" by {who}" if who else ""), url=url)


GITLAB = {
    "push": gitlab_push, "tag_push": gitlab_push, "merge_request": gitlab_merge_request,
    "pipeline": gitlab_pipeline, "job": gitlab_job, "issue": gitlab_issue,
    "confidential_issue": gitlab_issue, "note": gitlab_note, "confidential_note": gitlab_note,
    "release": gitlab_release, "wiki_page": gitlab_wiki_page, "deployment": gitlab_deployment,
    "feature_flag": gitlab_feature_flag,
}


# --- GitHub (also Gitea, Forgejo, Gogs: same shapes, a few other field names)


def gh_project(p):
    repo = p.get("repository") or {}
    return text(repo.get("full_name")), text(repo.get("html_url"))


def gh_user(p):
    sender = p.get("sender") or {}
    return text(sender.get("login") or sender.get("username") or get(p, "pusher", "name")
                or get(p, "pusher", "login")) or NOBODY


def github_push(p, kind, limit):
    project, project_url = gh_project(p)
    who = text(get(p, "pusher", "name") or get(p, "pusher", "full_name") or get(p, "pusher", "login")
               or get(p, "pusher", "username")) or gh_user(p)
    ref = text(p.get("ref"))
    name = branch_of(ref)
    tag = ref.startswith("refs/tags/")
    thing = f"tag {name}" if tag else f"branch {name}"
    compare = text(p.get("compare") or p.get("compare_url"))
    commits, more = commit_list(p.get("commits"), p.get("total_commits") or p.get("size"), limit)
    n = len(commits) + more
    if p.get("deleted") or text(p.get("after")) == ZERO_SHA:
        return summary(project=project, project_url=project_url, actor=who,
                       headline=f"{who} deleted {thing}", url=project_url, color="grey",
                       details=[("Ref", ref)])
    if tag:
        headline, color = f"{who} pushed tag {name}", "green"
    elif p.get("created") or text(p.get("before")) == ZERO_SHA:
        headline = f"{who} created branch {name}" + (f" with {plural(n, 'commit')}" if n else "")
        color = "blue"
    else:
        headline, color = f"{who} pushed {plural(n, 'commit')} to {name}", "blue"
    if p.get("forced"):
        headline += " (forced)"
    url = compare or text(get(p, "head_commit", "url")) or project_url
    return summary(project=project, project_url=project_url, actor=who, headline=headline, url=url,
                   commits=commits, more_commits=more, color=color)


def github_pull_request(p, kind, limit):
    project, project_url = gh_project(p)
    who = gh_user(p)
    pr = p.get("pull_request") or {}
    action = text(p.get("action"))
    verb = "merged" if action == "closed" and pr.get("merged") else action.replace("_", " ")
    base = get(pr, "base", "ref", default="")
    head = get(pr, "head", "ref", default="") or get(pr, "head", "label", default="")
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"{who} {verb} pull request #{text(pr.get('number') or p.get('number'))}: {first_line(pr.get('title'))}",
                   url=text(pr.get("html_url")), excerpt=shorten(text(pr.get("body")).strip(), 300),
                   color="violet" if verb == "merged" else status_color(verb),
                   details=[("Branches", f"{text(head)} → {text(base)}"), ("State", text(pr.get("state")))])


def github_issues(p, kind, limit):
    project, project_url = gh_project(p)
    who = gh_user(p)
    issue = p.get("issue") or {}
    action = text(p.get("action")).replace("_", " ")
    label = text(get(p, "label", "name"))
    label = f" [{label}]" if label and action in ("labeled", "unlabeled") else ""
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"{who} {action} issue #{text(issue.get('number'))}: {first_line(issue.get('title'))}{label}",
                   url=text(issue.get("html_url")), excerpt=shorten(text(issue.get("body")).strip(), 300),
                   color=status_color(p.get("action")), details=[("State", text(issue.get("state")))])


def github_issue_comment(p, kind, limit):
    project, project_url = gh_project(p)
    who = gh_user(p)
    issue = p.get("issue") or {}
    comment = p.get("comment") or {}
    what = "pull request" if issue.get("pull_request") else "issue"
    action = text(p.get("action"))
    verb = {"created": "commented on", "edited": "edited a comment on",
            "deleted": "deleted a comment on"}.get(action, f"{action} a comment on")
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"{who} {verb} {what} #{text(issue.get('number'))}: {first_line(issue.get('title'))}",
                   url=text(comment.get("html_url") or issue.get("html_url")),
                   excerpt=shorten(text(comment.get("body")).strip(), 300))


def github_review_comment(p, kind, limit):
    project, project_url = gh_project(p)
    who = gh_user(p)
    pr = p.get("pull_request") or {}
    comment = p.get("comment") or {}
    where = f" ({text(comment.get('path'))})" if comment.get("path") else ""
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"{who} commented on pull request #{text(pr.get('number'))}: {first_line(pr.get('title'))}{where}",
                   url=text(comment.get("html_url") or pr.get("html_url")),
                   excerpt=shorten(text(comment.get("body")).strip(), 300))


def github_ping(p, kind, limit):
    project, project_url = gh_project(p)
    return summary(project=project, project_url=project_url, actor=gh_user(p),
                   headline=f"Webhook {text(p.get('hook_id'))} is set up", url=project_url,
                   excerpt=text(p.get("zen")), color="green")


def github_release(p, kind, limit):
    project, project_url = gh_project(p)
    who = gh_user(p) or text(get(p, "release", "author", "login"))
    r = p.get("release") or {}
    name, tag = text(r.get("name")), text(r.get("tag_name"))
    label = name if name and (not tag or name == tag) else (f"{name} ({tag})" if name else tag)
    action = text(p.get("action"))
    kind_word = "pre-release" if r.get("prerelease") else "release"
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"{who} {action} {kind_word} {label}", url=text(r.get("html_url")),
                   excerpt=shorten(text(r.get("body")).strip(), 300), color=status_color(action),
                   details=[("Tag", tag)])


def github_workflow_run(p, kind, limit):
    project, project_url = gh_project(p)
    run = p.get("workflow_run") or {}
    who = text(get(run, "actor", "login")) or gh_user(p)
    name = text(run.get("name")) or text(get(p, "workflow", "name")) or text(run.get("path"))
    state = text(run.get("conclusion") or run.get("status") or p.get("action"))
    details = [("Branch", text(run.get("head_branch"))), ("Event", text(run.get("event"))),
               ("Run", f"#{text(run.get('run_number'))}")]
    title = text(run.get("display_title")) or first_line(get(run, "head_commit", "message"))
    if title:
        details.append(("Commit", first_line(title)))
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"Workflow {name} {state} on {text(run.get('head_branch'))}",
                   url=text(run.get("html_url")), color=status_color(state), details=details)


def github_create_delete(p, kind, limit):
    project, project_url = gh_project(p)
    who = gh_user(p)
    verb = "created" if kind == "create" else "deleted"
    return summary(project=project, project_url=project_url, actor=who,
                   headline=f"{who} {verb} {text(p.get('ref_type'))} {text(p.get('ref'))}",
                   url=project_url, color=status_color(verb))


def github_other(p, kind, limit):
    project, project_url = gh_project(p)
    who = gh_user(p)
    action = text(p.get("action"))
    what = kind.replace("_", " ") + (f" {action}" if action else "")
    return summary(project=project, project_url=project_url, actor=who,
                   headline=what + (f" by {who}" if who else ""), url=project_url)


GITHUB = {
    "push": github_push, "pull_request": github_pull_request, "issues": github_issues,
    "issue_comment": github_issue_comment, "release": github_release,
    "workflow_run": github_workflow_run, "create": github_create_delete, "delete": github_create_delete,
    "pull_request_review_comment": github_review_comment, "ping": github_ping,
}


# --------------------------------------------------------------- rendering


def details_with_actor(s):
    """The details, led by who did it when the headline does not say."""
    if s["actor"] and s["actor"] not in s["headline"]:
        return [("By", s["actor"])] + list(s["details"])
    return list(s["details"])


def title_of(s, prefix=""):
    title = f"{s['project']}: {s['headline']}" if s["project"] else s["headline"]
    return f"{prefix}{title}" if prefix else title


def md_link_text(s):
    # Brackets would end a markdown link's text early.
    return text(s).replace("[", "(").replace("]", ")")


def more_line(n):
    return f"… and {n} more commit{'s' if n != 1 else ''}"


def md_text(s):
    """Untrusted text in DingTalk's markdown: no HTML tags (angle brackets
    become full-width, as for WeCom) and no links or images of its own (a
    `](` cannot end a link's text)."""
    return no_links(text(s).replace("<", "＜").replace(">", "＞"))


def no_links(s):
    # `[text](url)` and `![](url)` need `](`; a full-width bracket breaks them.
    return s.replace("](", "］(")


def render_dingtalk(s, prefix=""):
    """DingTalk custom robot: msgtype markdown."""
    lines = []
    project = f"[{md_link_text(s['project'])}]({s['project_url']})" if s["project_url"] else md_text(s["project"])
    lines.append(f"#### {project}" if project else "#### " + md_text(s["headline"]))
    lines += ["", f"**{md_text(s['headline'])}**", ""]
    for label, value in details_with_actor(s):
        if value:
            lines.append(f"- {label}: {md_text(value)}")
    for c in s["commits"]:
        sha = f"[{md_link_text(c['sha'])}]({c['url']})" if c["url"] else md_text(c["sha"])
        who = f" ({md_text(c['author'])})" if c["author"] else ""
        lines.append(f"- {sha} {md_text(c['message'])}{who}")
    if s["more_commits"]:
        lines.append(f"- {more_line(s['more_commits'])}")
    if s["excerpt"]:
        lines += [""] + ["> " + md_text(line) for line in s["excerpt"].splitlines() if line.strip()]
    if s["url"]:
        lines += ["", f"[Open]({s['url']})"]
    return {"msgtype": "markdown",
            "markdown": {"title": title_of(s, prefix), "text": "\n".join(lines)}}


def lark_escape(s):
    # Keep untrusted text from injecting lark_md tags such as <at id=all></at>,
    # and links or images of its own.
    return no_links(text(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


FEISHU_TEMPLATES = {"green": "green", "red": "red", "grey": "grey", "blue": "blue", "violet": "purple"}


def feishu_card(s, prefix="", button="Open"):
    """An interactive card (message card JSON 1.0): header, fields, commits, a button."""
    lines = []
    if s["project_url"]:
        # The header is plain text (no links there): the project's link leads the fields.
        lines.append(f"**Project**: [{lark_escape(md_link_text(s['project']))}]({s['project_url']})")
    for label, value in details_with_actor(s):
        if value:
            lines.append(f"**{label}**: {lark_escape(value)}")
    elements = []
    if lines:
        elements.append({"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(lines)}})
    commit_lines = []
    for c in s["commits"]:
        sha = f"[{lark_escape(md_link_text(c['sha']))}]({c['url']})" if c["url"] else lark_escape(c["sha"])
        who = f" ({lark_escape(c['author'])})" if c["author"] else ""
        commit_lines.append(f"{sha} {lark_escape(c['message'])}{who}")
    if s["more_commits"]:
        commit_lines.append(more_line(s["more_commits"]))
    if commit_lines:
        elements.append({"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(commit_lines)}})
    if s["excerpt"]:
        elements.append({"tag": "div", "text": {"tag": "lark_md", "content": lark_escape(s["excerpt"])}})
    if s["url"]:
        elements.append({"tag": "action", "actions": [{
            "tag": "button", "type": "primary",
            "text": {"tag": "plain_text", "content": button}, "url": s["url"]}]})
    if not elements:
        elements.append({"tag": "div", "text": {"tag": "lark_md", "content": lark_escape(s["headline"])}})
    header = {"title": {"tag": "plain_text", "content": title_of(s, prefix)},
              "template": FEISHU_TEMPLATES.get(s["color"], "blue")}
    return {"config": {"wide_screen_mode": True}, "header": header, "elements": elements}


def render_feishu(s, prefix=""):
    """Feishu/Lark custom bot: msg_type interactive."""
    return {"msg_type": "interactive", "card": feishu_card(s, prefix)}


WECOM_COLORS = {"green": "info", "red": "warning", "grey": "comment", "blue": "info", "violet": "info"}
WECOM_LIMIT = 4096  # bytes of markdown.content


def wecom_text(s):
    # WeCom markdown reads `<@userid>` as a mention and `<font>` as markup, and
    # decodes no entities: angle brackets of untrusted text become full-width.
    return no_links(text(s).replace("<", "＜").replace(">", "＞"))


def render_wecom(s, prefix=""):
    """WeCom (企业微信) group robot: msgtype markdown (its own markdown subset)."""
    color = WECOM_COLORS.get(s["color"], "info")
    w = wecom_text
    project = f"[{md_link_text(w(s['project']))}]({s['project_url']})" if s["project_url"] else w(s["project"])
    lines = [f"{prefix}**{project}**" if project else f"{prefix}**{w(s['headline'])}**",
             f"<font color=\"{color}\">{w(s['headline'])}</font>"]
    for label, value in details_with_actor(s):
        if value:
            lines.append(f"> {label}: <font color=\"comment\">{w(value)}</font>")
    for c in s["commits"]:
        sha = f"[{md_link_text(w(c['sha']))}]({c['url']})" if c["url"] else w(c["sha"])
        who = f" ({w(c['author'])})" if c["author"] else ""
        lines.append(f"> {sha} {w(c['message'])}{who}")
    if s["excerpt"]:
        lines.append("> " + " ".join(w(s["excerpt"]).split()))
    # Kept whole when the rest is cut to WeCom's limit: how many commits
    # were left out, and the link.
    tail = "\n".join(t for t in (f"> {more_line(s['more_commits'])}" if s["more_commits"] else "",
                                   f"[View]({s['url']})" if s["url"] else "") if t)
    content = "\n".join(lines)
    budget = WECOM_LIMIT - len(tail.encode("utf-8")) - 2
    if len(content.encode("utf-8")) > budget:
        # Cut on a character boundary, never inside a UTF-8 sequence.
        content = content.encode("utf-8")[: budget - 3].decode("utf-8", "ignore") + "…"
    if tail:
        content += "\n" + tail
    return {"msgtype": "markdown", "markdown": {"content": content}}


def slack_escape(s):
    return text(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_slack(s, prefix=""):
    """Slack incoming webhook: blocks with mrkdwn, plus `text` as the fallback."""
    project = (f"<{s['project_url']}|{slack_escape(s['project'])}>" if s["project_url"]
               else slack_escape(s["project"]))
    head = f"{slack_escape(prefix)}*{project}*: {slack_escape(s['headline'])}" if project else \
        f"{slack_escape(prefix)}*{slack_escape(s['headline'])}*"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": head}}]
    lines = [f"*{label}*: {slack_escape(value)}" for label, value in s["details"] if value]
    for c in s["commits"]:
        sha = f"<{c['url']}|`{c['sha']}`>" if c["url"] else f"`{c['sha']}`"
        who = f" ({slack_escape(c['author'])})" if c["author"] else ""
        lines.append(f"{sha} {slack_escape(c['message'])}{who}")
    if s["more_commits"]:
        lines.append(more_line(s["more_commits"]))
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    if s["excerpt"]:
        quoted = "\n".join("> " + slack_escape(line) for line in s["excerpt"].splitlines() if line.strip())
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": quoted}})
    context = []
    if s["actor"]:
        context.append({"type": "mrkdwn", "text": f"by {slack_escape(s['actor'])}"})
    if s["url"]:
        context.append({"type": "mrkdwn", "text": f"<{s['url']}|Open>"})
    if context:
        blocks.append({"type": "context", "elements": context})
    # `text` is what notifications show: escaped as the blocks are.
    return {"text": slack_escape(title_of(s, prefix)), "blocks": blocks}


# ----------------------------------------------------------------- signing


def dingtalk_sign(timestamp, secret):
    # DingTalk: key is the secret, message is "timestamp\nsecret"; URL-encoded.
    msg = f"{timestamp}\n{secret}".encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def feishu_sign(timestamp, secret):
    # Feishu: the key is "timestamp\nsecret" and the message is empty.
    key = f"{timestamp}\n{secret}".encode("utf-8")
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


# -------------------------------------------------------------------- HTTP


class Answer:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw

    def json(self):
        try:
            value = json.loads(self.raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return value

    def body_text(self, limit=500):
        return shorten(masked(self.raw.decode("utf-8", "replace").strip()), limit)


def wait_hint(headers):
    """Seconds to wait from Retry-After (seconds or an HTTP date), or Feishu's
    x-ogw-ratelimit-reset; None when the answer says nothing."""
    for name in ("Retry-After", "x-ogw-ratelimit-reset"):
        value = headers.get(name) if headers is not None else None
        if not value:
            continue
        value = value.strip()
        try:
            return max(float(value), 0.0)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            continue
    return None


def request(url, body=None, headers=None, method="POST", timeout=10):
    """One HTTP request; an HTTP error status is an Answer, a network error raises OSError."""
    data = None
    all_headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        all_headers.setdefault("Content-Type", "application/json; charset=utf-8")
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Answer(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())
    except (http.client.HTTPException, ValueError) as e:
        # Their text may quote the URL, which holds the bot's secret.
        raise OSError(f"the request could not be made ({type(e).__name__})")


class Retry(Exception):
    """The attempt failed in a way another attempt may fix."""

    def __init__(self, message, wait=None):
        super().__init__(message)
        self.message, self.wait = message, wait


class Budget:
    """How many attempts, and how long, a handler may spend on retries."""

    def __init__(self):
        self.attempts = int(env_number("CHAT_RETRY_ATTEMPTS", 3, int)) or 1
        self.max_wait = env_number("CHAT_RETRY_MAX_WAIT", 10.0)
        self.deadline = time.monotonic() + env_number("CHAT_DEADLINE", 25.0)


def with_retries(name, attempt, budget=None):
    """Calls attempt() until it returns; Retry means try again (after the
    hinted wait or a backoff of 1 s, 2 s, ...) within the budget, then exit 75."""
    budget = budget or Budget()
    for n in range(1, budget.attempts + 1):
        try:
            return attempt()
        except Retry as r:
            wait = r.wait if r.wait is not None else float(2 ** (n - 1))
            if n == budget.attempts:
                raise Failure(EXIT_RETRY, f"{name}: {r.message}; gave up after {plural(n, 'attempt')}")
            if wait > budget.max_wait or time.monotonic() + wait > budget.deadline:
                raise Failure(EXIT_RETRY, f"{name}: {r.message}; asked to wait {wait:g} s, longer than this run may")
            print(f"{PROG}: {name}: {masked(r.message)}; retrying in {wait:g} s", file=sys.stderr)
            time.sleep(wait)
    raise AssertionError("unreachable")


def classify(name, answer, ok, rate_limited=lambda reply: False):
    """Raises Retry or Failure unless `ok(reply)` holds for a 2xx answer."""
    status = answer.status
    if status == 429 or status == 408 or status >= 500:
        raise Retry(f"HTTP {status}: {answer.body_text()}", wait_hint(answer.headers))
    reply = answer.json()
    if 200 <= status < 300 and ok(reply, answer):
        return reply
    if rate_limited(reply):
        raise Retry(f"rate limited: HTTP {status}: {answer.body_text()}", wait_hint(answer.headers))
    raise Failure(EXIT_PERMANENT, f"{name}: HTTP {status}: {answer.body_text()}", reply)


def send(name, make_request, ok, rate_limited=lambda reply: False, budget=None):
    """POSTs what make_request() builds (url, body, headers), fresh each attempt
    (signatures carry a timestamp), with retries. Returns the decoded reply."""

    budget = budget or Budget()

    def attempt():
        url, body, headers = make_request()
        # A request waits at most 10 s, and never past the run's deadline:
        # the run ends (75, to be retried) before the program's timeout.
        left = budget.deadline - time.monotonic()
        if left <= 0:
            raise Failure(EXIT_RETRY, f"{name}: no time left before CHAT_DEADLINE; gave up")
        try:
            answer = request(url, body, headers, timeout=min(10.0, max(left, 0.5)))
        except OSError as e:
            raise Retry(f"request failed: {e}")
        return classify(name, answer, ok, rate_limited)

    return with_retries(name, attempt, budget)


# ---------------------------------------------------------- the handlers


def webhook_env(var, service):
    url = env(var).strip()
    if not url.startswith(("https://", "http://")):
        raise Failure(EXIT_USAGE, f"set {var} to the {service} bot's http(s) webhook URL")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        # Not repeated: the URL holds the bot's secret.
        raise Failure(EXIT_USAGE, f"{var} holds white space or control characters (a comment after it in an "
                                  "EnvironmentFile?): set it to the webhook URL alone")
    keep_url_secrets(url)
    return url


def parse_args(argv, prog):
    import argparse

    parser = argparse.ArgumentParser(prog=prog, allow_abbrev=False)
    parser.add_argument("--print", action="store_true",
                        help="print the message JSON instead of sending it")
    parser.add_argument("--event", default="",
                        help="the event name, when HOOK_EVENT does not carry it (e.g. push)")
    return parser.parse_args([utf8(a) for a in argv])


def prepare(prog):
    args = parse_args(sys.argv[1:], prog)
    payload = read_payload()
    max_commits = int(env_number("CHAT_MAX_COMMITS", 5, int))
    s = summarize(payload, args.event or env("HOOK_EVENT"), max_commits)
    return args, s


def run(service):
    """The main of dingtalk-events.py, feishu-events.py, wecom-events.py, slack-events.py."""
    global PROG
    setup_stdio()
    prog = PROG = f"{service}-events.py"
    try:
        try:
            args, s = prepare(prog)
            prefix = env("CHAT_TITLE_PREFIX")
            render = {"dingtalk": render_dingtalk, "feishu": render_feishu,
                      "wecom": render_wecom, "slack": render_slack}[service]
            message = render(s, prefix)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            # A field of another type than the provider sends (a string
            # where an object or a number belongs): a bad payload, not a crash.
            raise Failure(EXIT_USAGE, f"the payload is not shaped as the provider sends it ({type(e).__name__}: "
                                      f"{text(str(e))[:200]})")
        if args.print:
            print(json.dumps(message, ensure_ascii=False, indent=2))
            return EXIT_SENT
        SENDERS[service](message)
    except Failure as f:
        print(f"{prog}: {masked(f.message)}", file=sys.stderr)
        return f.code
    print(f"{service}: sent {title_of(s)}")
    return EXIT_SENT


def send_dingtalk(message):
    url = webhook_env("DINGTALK_WEBHOOK_URL", "dingtalk")
    secret = env("DINGTALK_SECRET")
    keep_secret(secret)

    def make():
        target = url
        if secret:
            timestamp = str(round(time.time() * 1000))
            target += ("&" if "?" in target else "?")
            target += f"timestamp={timestamp}&sign={dingtalk_sign(timestamp, secret)}"
        return target, message, {}

    # 130101: sending too fast (20 messages a minute per robot).
    send("dingtalk", make,
         ok=lambda r, a: isinstance(r, dict) and r.get("errcode", 0) == 0,
         rate_limited=lambda r: isinstance(r, dict) and r.get("errcode") in (130101, 130102))


def send_feishu(message):
    url = webhook_env("FEISHU_WEBHOOK_URL", "feishu")
    secret = env("FEISHU_SECRET")
    keep_secret(secret)

    def make():
        body = dict(message)
        if secret:
            timestamp = str(int(time.time()))
            body["timestamp"] = timestamp
            body["sign"] = feishu_sign(timestamp, secret)
        return url, body, {}

    # 9499 / 11232: frequency limits of custom bots.
    send("feishu", make,
         ok=lambda r, a: isinstance(r, dict) and r.get("code", 0) == 0 and r.get("StatusCode", 0) == 0,
         rate_limited=lambda r: isinstance(r, dict) and r.get("code") in (9499, 11232))


def send_wecom(message):
    url = webhook_env("WECOM_WEBHOOK_URL", "wecom")
    # 45009: API frequency limit (20 messages a minute per robot); -1: system busy.
    send("wecom", lambda: (url, message, {}),
         ok=lambda r, a: isinstance(r, dict) and r.get("errcode", 0) == 0,
         rate_limited=lambda r: isinstance(r, dict) and r.get("errcode") in (45009, -1))


def send_slack(message):
    url = webhook_env("SLACK_WEBHOOK_URL", "slack")
    # Slack answers 200 "ok"; errors are 4xx with a word (invalid_token, no_service, ...).
    send("slack", lambda: (url, message, {}), ok=lambda r, a: True)


SENDERS = {"dingtalk": send_dingtalk, "feishu": send_feishu, "wecom": send_wecom, "slack": send_slack}

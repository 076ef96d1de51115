#!/usr/bin/env python3
"""feishu-events.py - post GitLab/GitHub events to a Feishu/Lark group bot as an interactive card.

Reads the webhook payload on stdin, tells the provider and event from it and
from HOOK_EVENT (GitLab: push, tag_push, merge_request, pipeline, job, issue,
confidential_issue, note, confidential_note, release, wiki_page, deployment,
feature_flag; GitHub, Gitea, Forgejo: push, pull_request, issues,
issue_comment, release, workflow_run; anything else gets a short generic
message), and posts one message naming the project, who did it, what
happened and a link to it. Long commit lists are cut to CHAT_MAX_COMMITS
("… and N more commits").

Inputs
  stdin  the webhook body (JSON), as hookrunner passes it
  args   --print      print the message JSON instead of sending it
         --event=NAME the event, when HOOK_EVENT does not carry it
  env
         FEISHU_WEBHOOK_URL    required, https://open.feishu.cn/open-apis/bot/v2/hook/<id>
                               (Lark: https://open.larksuite.com/...)
         FEISHU_SECRET         optional; the bot's signature secret: adds
                               timestamp and sign to the body
         CHAT_TITLE_PREFIX     optional text put before the title (e.g. a
                               keyword the robot's security setting requires)
         CHAT_MAX_COMMITS      commits listed (default 5)
         CHAT_RETRY_ATTEMPTS   attempts in all for 429 / 5xx / network errors (default 3)
         CHAT_RETRY_MAX_WAIT   longest wait (s) this run honours from Retry-After (default 10)
         CHAT_DEADLINE         seconds this run may spend retrying (default 25;
                               keep it below the program's timeout)
         HOOK_EVENT            set by the daemon
Exit     0 sent; 1 refused for good (403, bad token or secret, an error code);
         2 usage/config error; 75 retryable (429, 5xx, network), after the
         retries above: list 75 in the program's exit_codes.retry.

See docs/HOOKS.md and docs/recipes/ for complete webhook.yaml examples:
  programs:
    feishu:
      command: handlers/feishu-events.py
      timeout: 30s
      exit_codes: {success: [0], retry: [75]}
      retry: {attempts: 4, backoff: 30s, max_backoff: 5m, on: [timed_out]}
      env:
        FEISHU_WEBHOOK_URL: ${FEISHU_WEBHOOK_URL}
        FEISHU_SECRET: ${FEISHU_SECRET:-}
  mappings:
    gitlab:
      "*":
        rules:
          - run: feishu
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import _chat  # noqa: E402

if __name__ == "__main__":
    sys.exit(_chat.run("feishu"))

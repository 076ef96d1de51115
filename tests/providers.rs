//! Provider presets against the real daemon: each delivery is signed exactly
//! as its provider signs it, over the exact bytes sent; then tampered bodies,
//! wrong secrets, stale timestamps, rotated secrets and handshakes.

mod common;
use base64::Engine as _;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use std::time::{SystemTime, UNIX_EPOCH};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WHSEC_OLD: &str = "whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=";
const STRIPE_SECRET: &str = "whsec_stripe_test_secret";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

const CONFIG: &str = r#"
sources:
  github:
    provider: github
    secret: gh-secret
  github_rotating:
    provider: github
    secrets: [gh-old, gh-new]
  github_legacy:
    provider: github
    secret: gh-secret
    allow_sha1: true
  gitlab_signed:
    provider: gitlab
    signing_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  gitlab_both:
    provider: gitlab
    token: gl-token
    signing_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  gitea:
    provider: gitea
    secret: gitea-secret
  forgejo:
    provider: forgejo
    secret: forgejo-secret
  gogs:
    provider: gogs
    secret: gogs-secret
  bitbucket:
    provider: bitbucket
    secret: bb-secret
  jira:
    provider: jira
    secrets: [jira-old, jira-new]
  slack:
    provider: slack
    secrets: [old-slack-secret, 8f742231b10e8888abcd99yyyzzz85a5]
  standard:
    provider: standard
    secrets: [whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=, whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]
  standard_kind:
    provider: standard
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    event: {field: data.kind}
    tolerance: 10m
  stripe:
    provider: stripe
    secrets: [whsec_stripe_old, whsec_stripe_test_secret]
  basic:
    provider: generic
    auth: {basic: {user: deploy, password: "s3cret:pw"}}
  b64:
    provider: generic
    auth: {hmac: sha512, secrets: [b64-old, b64-new], header: X-Signature, prefix: "sha512=", encoding: base64}
    event: {header: X-Event}
  query:
    provider: generic
    auth: {token: q-token, query: key}
mappings:
  github: {"*": {rules: [{run: log-event}]}}
  github_rotating: {"*": {rules: [{run: log-event}]}}
  github_legacy: {"*": {rules: [{run: log-event}]}}
  gitlab_signed: {"*": {rules: [{run: log-event}]}}
  gitlab_both: {"*": {rules: [{run: log-event}]}}
  gitea:
    push:
      params: {repo: payload.repository.full_name}
      rules: [{run: log-event}]
    pull_request.opened:
      rules: [{run: log-event}]
  forgejo: {"*": {rules: [{run: log-event}]}}
  gogs: {"*": {rules: [{run: log-event}]}}
  bitbucket: {"*": {rules: [{run: log-event}]}}
  jira: {"*": {rules: [{run: log-event}]}}
  slack: {"*": {rules: [{run: log-event}]}}
  standard: {"*": {rules: [{run: log-event}]}}
  standard_kind: {"*": {rules: [{run: log-event}]}}
  stripe: {"*": {rules: [{run: log-event}]}}
  basic: {"*": {rules: [{run: log-event}]}}
  b64: {"*": {rules: [{run: log-event}]}}
  query: {"*": {rules: [{run: log-event}]}}
"#;

fn daemon() -> Daemon {
    Daemon::start(CONFIG)
}

/// A delivery id no other test delivery uses.
fn fresh() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn mac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Slack: `v0=` hex HMAC of `v0:{ts}:{body}`.
fn slack_sig(secret: &str, ts: i64, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac256(secret.as_bytes(), &[format!("v0:{ts}:").as_bytes(), body]))
    )
}

/// Standard Webhooks: `v1,` base64 HMAC of `{id}.{ts}.{body}` under the decoded secret.
fn standard_sig(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    format!("v1,{}", b64(&mac256(&key, &[format!("{id}.{ts}.").as_bytes(), body])))
}

/// Stripe: `t=..,v1=..` hex HMAC of `{t}.{body}` keyed with the whole secret string.
fn stripe_sig(secret: &str, ts: i64, body: &[u8]) -> String {
    let v1 = hex::encode(mac256(secret.as_bytes(), &[format!("{ts}.").as_bytes(), body]));
    format!("t={ts},v1={v1}")
}

/// Asserts a "timestamp N s old/in the future, tolerance T s" refusal, N within a second or two.
fn assert_stale(r: &Resp, expected_age: i64, direction: &str, tolerance: u64) {
    assert_eq!(r.status, 401, "{}", r.text);
    let error = r.error();
    let age: i64 = error
        .strip_prefix("timestamp ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{error}"));
    assert!((expected_age..=expected_age + 2).contains(&age), "{error}");
    assert_eq!(error, format!("timestamp {age} s {direction}, tolerance {tolerance} s"));
}

fn assert_accepted(r: &Resp, event: &str, delivery_id: &str) {
    assert_eq!(r.status, 202, "{}", r.text);
    let json = r.json();
    assert_eq!(json["event"], event, "{json}");
    assert_eq!(json["delivery_id"], delivery_id, "{json}");
    assert_eq!(json["tasks"].as_array().unwrap().len(), 1, "{json}");
}

#[test]
fn github_sha256_rotation_and_legacy_sha1() {
    let d = daemon();
    let body = fixture("github/push.json");
    let sig = format!("sha256={}", hex::encode(mac256(b"gh-secret", &[&body])));
    let id = fresh();
    let r = d.post_json(
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Delivery", &id),
        ],
        &body,
    );
    assert_accepted(&r, "push", &id);

    let mut tampered = body.clone();
    tampered[20] ^= 1;
    let r = d.post_json(
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Delivery", &fresh()),
        ],
        &tampered,
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");

    // Rotation: the old and the new secret both pass; any other does not.
    for secret in ["gh-old", "gh-new"] {
        let sig = format!("sha256={}", hex::encode(mac256(secret.as_bytes(), &[&body])));
        let id = fresh();
        let r = d.post_json(
            "/hooks/github_rotating",
            &[
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &sig),
                ("X-GitHub-Delivery", &id),
            ],
            &body,
        );
        assert_accepted(&r, "push", &id);
    }
    let wrong = format!("sha256={}", hex::encode(mac256(b"gh-secret", &[&body])));
    let r = d.post_json(
        "/hooks/github_rotating",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &wrong),
            ("X-GitHub-Delivery", &fresh()),
        ],
        &body,
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");

    // The legacy SHA-1 header alone: only where `allow_sha1: true`.
    let sha1 = {
        let mut m = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"gh-secret").unwrap();
        m.update(&body);
        format!("sha1={}", hex::encode(m.finalize().into_bytes()))
    };
    let r = d.post_json(
        "/hooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature", &sha1),
            ("X-GitHub-Delivery", &fresh()),
        ],
        &body,
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.error(),
        "only the legacy SHA-1 `X-Hub-Signature` header was sent; set `allow_sha1: true` on the source to accept it"
    );
    let id = fresh();
    let r = d.post_json(
        "/hooks/github_legacy",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature", &sha1),
            ("X-GitHub-Delivery", &id),
        ],
        &body,
    );
    assert_accepted(&r, "push", &id);
    assert!(
        !d.logs().contains("gh-secret") && !d.logs().contains("gh-old"),
        "a secret reached the log"
    );
}

#[test]
fn gitlab_signing_token_is_standard_webhooks() {
    let d = daemon();
    let body = fixture("gitlab/push.json");
    let id = fresh();
    let ts = now();
    let sig = standard_sig(WHSEC, &id, ts, &body);
    let ts_text = ts.to_string();
    // GitLab sends the Idempotency-Key as the webhook-id.
    let send = |source: &str, id: &str, ts: &str, sig: &str, extra: &[(&str, &str)], body: &[u8]| {
        let mut h = vec![
            ("X-Gitlab-Event", "Push Hook"),
            ("Idempotency-Key", id),
            ("webhook-id", id),
            ("webhook-timestamp", ts),
            ("webhook-signature", sig),
        ];
        h.extend_from_slice(extra);
        d.post_json(&format!("/hooks/{source}"), &h, body)
    };
    let r = send("gitlab_signed", &id, &ts_text, &sig, &[], &body);
    assert_accepted(&r, "push", &id);

    let mut tampered = body.clone();
    tampered[5] ^= 1;
    let r = send("gitlab_signed", &id, &ts_text, &sig, &[], &tampered);
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");

    let old_id = fresh();
    let old = now() - 400;
    let sig_old = standard_sig(WHSEC, &old_id, old, &body);
    let r = send("gitlab_signed", &old_id, &old.to_string(), &sig_old, &[], &body);
    assert_stale(&r, 400, "old", 300);

    // Token and signing token both set: both must match.
    let id = fresh();
    let sig = standard_sig(WHSEC, &id, ts, &body);
    let r = send(
        "gitlab_both",
        &id,
        &ts_text,
        &sig,
        &[("X-Gitlab-Token", "gl-token")],
        &body,
    );
    assert_accepted(&r, "push", &id);
    let r = send("gitlab_both", &id, &ts_text, &sig, &[("X-Gitlab-Token", "nope")], &body);
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the token does not match");
    let r = send("gitlab_both", &id, &ts_text, &sig, &[], &body);
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "no token was sent (expected the `X-Gitlab-Token` header)");
}

#[test]
fn gitea_forgejo_and_gogs_bare_hex_signatures() {
    let d = daemon();
    let push = fixture("gitea/push.json");
    let sig = hex::encode(mac256(b"gitea-secret", &[&push]));
    let id = fresh();
    let r = d.post_json(
        "/hooks/gitea",
        &[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", &id),
            ("X-Gitea-Signature", &sig),
        ],
        &push,
    );
    assert_accepted(&r, "push", &id);
    let task = d.wait_task(r.json()["tasks"][0]["id"].as_str().unwrap());
    assert_eq!(task["params"]["repo"], "Test-CI/multi-line-secrets");

    let pr = fixture("gitea/pull_request.opened.json");
    let pr_sig = hex::encode(mac256(b"gitea-secret", &[&pr]));
    let id = fresh();
    let r = d.post_json(
        "/hooks/gitea",
        &[
            ("X-Gitea-Event", "pull_request"),
            ("X-Gitea-Delivery", &id),
            ("X-Gitea-Signature", &pr_sig),
        ],
        &pr,
    );
    assert_accepted(&r, "pull_request", &id);

    // Form mode: Gitea signs the JSON in the `payload` field, not the form.
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&push).unwrap())
        .finish();
    let id = fresh();
    let r = d.post(
        "/hooks/gitea",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", &id),
            ("X-Gitea-Signature", &sig),
        ],
        form.as_bytes(),
    );
    assert_accepted(&r, "push", &id);
    // A field beside `payload` is signed by nobody: the form fails the check.
    for extra in [
        format!("{form}&ref=refs%2Fheads%2Fevil"),
        format!("ref=x&{form}"),
        format!("{form}&{form}"),
    ] {
        let r = d.post(
            "/hooks/gitea",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Gitea-Event", "push"),
                ("X-Gitea-Delivery", &fresh()),
                ("X-Gitea-Signature", &sig),
            ],
            extra.as_bytes(),
        );
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.error(), "the signature does not match");
    }

    let mut tampered = push.clone();
    tampered[10] ^= 1;
    let r = d.post_json(
        "/hooks/gitea",
        &[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", &fresh()),
            ("X-Gitea-Signature", &sig),
        ],
        &tampered,
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");
    let wrong = hex::encode(mac256(b"not-the-secret", &[&push]));
    let r = d.post_json(
        "/hooks/gitea",
        &[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", &fresh()),
            ("X-Gitea-Signature", &wrong),
        ],
        &push,
    );
    assert_eq!(r.status, 401);
    let r = d.post_json(
        "/hooks/gitea",
        &[
            ("X-Gitea-Event", "push"),
            ("X-Hub-Signature-256", &format!("sha256={sig}")),
        ],
        &push,
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the `X-Gitea-Signature` header is missing");

    // Forgejo and Gogs read their own headers.
    let sig = hex::encode(mac256(b"forgejo-secret", &[&push]));
    let id = fresh();
    let r = d.post_json(
        "/hooks/forgejo",
        &[
            ("X-Forgejo-Event", "push"),
            ("X-Forgejo-Delivery", &id),
            ("X-Forgejo-Signature", &sig),
        ],
        &push,
    );
    assert_accepted(&r, "push", &id);
    let r = d.post_json(
        "/hooks/forgejo",
        &[
            ("X-Forgejo-Event", "push"),
            ("X-Forgejo-Delivery", &fresh()),
            ("X-Gitea-Signature", &sig),
        ],
        &push,
    );
    assert_eq!(r.status, 401);
    let sig = hex::encode(mac256(b"gogs-secret", &[&pr]));
    let id = fresh();
    let r = d.post_json(
        "/hooks/gogs",
        &[
            ("X-Gogs-Event", "pull_request"),
            ("X-Gogs-Delivery", &id),
            ("X-Gogs-Signature", &sig),
        ],
        &pr,
    );
    assert_accepted(&r, "pull_request", &id);
}

#[test]
fn bitbucket_cloud_and_server() {
    let d = daemon();
    let cloud = br#"{"push":{"changes":[{"new":{"type":"branch","name":"main"}}]},"repository":{"full_name":"team/repo"},"actor":{"display_name":"A"}}"#;
    let sig = format!("sha256={}", hex::encode(mac256(b"bb-secret", &[cloud])));
    let id = fresh();
    let r = d.post_json(
        "/hooks/bitbucket",
        &[
            ("X-Event-Key", "repo:push"),
            ("X-Request-UUID", &id),
            ("X-Hub-Signature", &sig),
        ],
        cloud,
    );
    assert_accepted(&r, "repo:push", &id);

    let server = br#"{"eventKey":"pr:opened","date":"2024-01-01T00:00:00+0000","pullRequest":{"id":1,"title":"x"}}"#;
    let sig = format!("sha256={}", hex::encode(mac256(b"bb-secret", &[server])));
    let id = fresh();
    let r = d.post_json(
        "/hooks/bitbucket",
        &[
            ("X-Event-Key", "pr:opened"),
            ("X-Request-Id", &id),
            ("X-Hub-Signature", &sig),
        ],
        server,
    );
    assert_accepted(&r, "pr:opened", &id);

    let r = d.post_json(
        "/hooks/bitbucket",
        &[
            ("X-Event-Key", "pr:opened"),
            ("X-Request-Id", &fresh()),
            ("X-Hub-Signature", &sig),
        ],
        cloud,
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");
    let wrong = format!("sha256={}", hex::encode(mac256(b"other", &[server])));
    let r = d.post_json(
        "/hooks/bitbucket",
        &[
            ("X-Event-Key", "pr:opened"),
            ("X-Request-Id", &fresh()),
            ("X-Hub-Signature", &wrong),
        ],
        server,
    );
    assert_eq!(r.status, 401);
}

#[test]
fn jira_cloud_signature_with_rotated_secrets() {
    let d = daemon();
    let body = fixture("jira/issue_created.json");
    for secret in ["jira-old", "jira-new"] {
        let sig = format!("sha256={}", hex::encode(mac256(secret.as_bytes(), &[&body])));
        let id = fresh();
        let r = d.post_json(
            "/hooks/jira",
            &[("X-Hub-Signature", &sig), ("X-Atlassian-Webhook-Identifier", &id)],
            &body,
        );
        assert_accepted(&r, "jira:issue_created", &id);
    }
    let sig = format!("sha256={}", hex::encode(mac256(b"jira-other", &[&body])));
    let r = d.post_json(
        "/hooks/jira",
        &[("X-Hub-Signature", &sig), ("X-Atlassian-Webhook-Identifier", &fresh())],
        &body,
    );
    assert_eq!(r.status, 401);
}

#[test]
fn slack_signatures_timestamps_and_url_verification() {
    let d = daemon();
    let event_id = format!("Ev{}", fresh().replace('-', ""));
    let body = format!(
        r#"{{"token":"x","team_id":"T1","type":"event_callback","event":{{"type":"app_mention","text":"hi","user":"U1"}},"event_id":"{event_id}","event_time":1700000000}}"#
    );
    let ts = now();
    let ts_text = ts.to_string();
    let send = |ts: &str, sig: &str, body: &[u8]| {
        d.post_json(
            "/hooks/slack",
            &[("X-Slack-Request-Timestamp", ts), ("X-Slack-Signature", sig)],
            body,
        )
    };
    // Rotation: the old and the current signing secret both pass.
    let r = send(&ts_text, &slack_sig(SLACK_SECRET, ts, body.as_bytes()), body.as_bytes());
    assert_accepted(&r, "app_mention", &event_id);
    let other_id = format!("Ev{}", fresh().replace('-', ""));
    let other = body.replace(&event_id, &other_id);
    let r = send(
        &ts_text,
        &slack_sig("old-slack-secret", ts, other.as_bytes()),
        other.as_bytes(),
    );
    assert_accepted(&r, "app_mention", &other_id);

    let sig = slack_sig(SLACK_SECRET, ts, body.as_bytes());
    let tampered = body.replace("hi", "ho");
    let r = send(&ts_text, &sig, tampered.as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");
    let r = send(
        &ts_text,
        &slack_sig("wrong-secret", ts, body.as_bytes()),
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");
    // The timestamp is signed too: the same signature with another timestamp fails.
    let r = send(&(ts - 1).to_string(), &sig, body.as_bytes());
    assert_eq!(r.status, 401);

    // A correct signature on a stale or future timestamp: refused.
    let old = now() - 412;
    let r = send(
        &old.to_string(),
        &slack_sig(SLACK_SECRET, old, body.as_bytes()),
        body.as_bytes(),
    );
    assert_stale(&r, 412, "old", 300);
    let ahead = now() + 400;
    let r = send(
        &ahead.to_string(),
        &slack_sig(SLACK_SECRET, ahead, body.as_bytes()),
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert!(r.error().ends_with("s in the future, tolerance 300 s"), "{}", r.text);

    let r = d.post_json("/hooks/slack", &[("X-Slack-Signature", &sig)], body.as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the `X-Slack-Request-Timestamp` header is missing");

    // The URL handshake: answered with the challenge, after the signature check.
    let hello = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let r = send(&ts_text, &slack_sig(SLACK_SECRET, ts, hello), hello);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        serde_json::json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    let r = send(&ts_text, &slack_sig("wrong-secret", ts, hello), hello);
    assert_eq!(r.status, 401);

    // A slash command is a plain form: its fields become the JSON object rules see.
    let form = b"token=xyz&team_id=T1&command=%2Fdeploy&text=prod%20now&user_name=roadrunner";
    let r = d.post(
        "/hooks/slack",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Slack-Request-Timestamp", &ts_text),
            ("X-Slack-Signature", &slack_sig(SLACK_SECRET, ts, form)),
        ],
        form,
    );
    assert!(r.status == 200 || r.status == 202, "{}", r.text);
    assert_eq!(r.json()["event"], "slash_command");
    assert!(!d.logs().contains(SLACK_SECRET), "the secret reached the log");
}

#[test]
fn standard_webhooks_and_svix_headers() {
    let d = daemon();
    let id = format!("msg_{}", fresh());
    let body = br#"{"type":"user.created","timestamp":"2024-01-01T00:00:00Z","data":{"kind":"admin","id":"u1"}}"#;
    let ts = now();
    let ts_text = ts.to_string();
    let send = |source: &str, prefix: &str, id: &str, ts: &str, sig: &str, body: &[u8]| {
        let (hid, hts, hsig) = (
            format!("{prefix}-id"),
            format!("{prefix}-timestamp"),
            format!("{prefix}-signature"),
        );
        d.post_json(
            &format!("/hooks/{source}"),
            &[(&hid, id), (&hts, ts), (&hsig, sig)],
            body,
        )
    };
    let sig = standard_sig(WHSEC, &id, ts, body);
    let r = send("standard", "webhook", &id, &ts_text, &sig, body);
    assert_accepted(&r, "user.created", &id);

    // Svix headers, the old secret (rotation), and a list with another version first.
    let id2 = format!("msg_{}", fresh());
    let list = format!("v1a,bm9wZQ== {}", standard_sig(WHSEC_OLD, &id2, ts, body));
    let r = send("standard", "svix", &id2, &ts_text, &list, body);
    assert_accepted(&r, "user.created", &id2);

    // The event from a configured body field.
    let id3 = format!("msg_{}", fresh());
    let r = send(
        "standard_kind",
        "webhook",
        &id3,
        &ts_text,
        &standard_sig(WHSEC, &id3, ts, body),
        body,
    );
    assert_accepted(&r, "admin", &id3);

    let r = send(
        "standard",
        "webhook",
        &id,
        &ts_text,
        &sig,
        br#"{"type":"user.deleted"}"#,
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");
    // The id is signed: the same signature under another id fails.
    let r = send("standard", "webhook", &fresh(), &ts_text, &sig, body);
    assert_eq!(r.status, 401);
    let wrong = standard_sig("whsec_d3Jvbmd3cm9uZ3dyb25nd3Jvbmd3cm9uZw==", &id, ts, body);
    let r = send("standard", "webhook", &id, &ts_text, &wrong, body);
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");

    let old = now() - 301;
    let old_id = format!("msg_{}", fresh());
    let r = send(
        "standard",
        "webhook",
        &old_id,
        &old.to_string(),
        &standard_sig(WHSEC, &old_id, old, body),
        body,
    );
    assert_stale(&r, 301, "old", 300);
    // A source with `tolerance: 10m` takes it.
    let r = send(
        "standard_kind",
        "webhook",
        &old_id,
        &old.to_string(),
        &standard_sig(WHSEC, &old_id, old, body),
        body,
    );
    assert_accepted(&r, "admin", &old_id);
}

#[test]
fn stripe_signature_header() {
    let d = daemon();
    let id = format!("evt_{}", fresh().replace('-', ""));
    let body = format!(
        r#"{{"id":"{id}","object":"event","type":"invoice.paid","data":{{"object":{{"id":"in_1","object":"invoice"}}}}}}"#
    );
    let ts = now();
    let send = |sig: &str, body: &[u8]| d.post_json("/hooks/stripe", &[("Stripe-Signature", sig)], body);
    let r = send(&stripe_sig(STRIPE_SECRET, ts, body.as_bytes()), body.as_bytes());
    assert_accepted(&r, "invoice.paid", &id);

    // The old secret still passes while rotating; extra v1 and v0 entries are fine.
    let id2 = format!("evt_{}", fresh().replace('-', ""));
    let body2 = body.replace(&id, &id2);
    let header = format!(
        "{},v1={},v0=abcdef",
        stripe_sig("whsec_stripe_old", ts, body2.as_bytes()),
        "00".repeat(32)
    );
    let r = send(&header, body2.as_bytes());
    assert_accepted(&r, "invoice.paid", &id2);

    let sig = stripe_sig(STRIPE_SECRET, ts, body.as_bytes());
    let r = send(&sig, body.replace("invoice.paid", "invoice.void").as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");
    let r = send(&stripe_sig("whsec_wrong", ts, body.as_bytes()), body.as_bytes());
    assert_eq!(r.status, 401);
    // Stripe keys with the whole `whsec_...` string: a signature under its decoded bytes fails.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode("stripe_test_secret")
        .unwrap_or_default();
    let v1 = hex::encode(mac256(&decoded, &[format!("{ts}.").as_bytes(), body.as_bytes()]));
    let r = send(&format!("t={ts},v1={v1}"), body.as_bytes());
    assert_eq!(r.status, 401);
    // The timestamp is signed: the same v1 under another `t` fails.
    let r = send(
        &sig.replace(&format!("t={ts}"), &format!("t={}", ts - 1)),
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);

    let old = now() - 600;
    let r = send(&stripe_sig(STRIPE_SECRET, old, body.as_bytes()), body.as_bytes());
    assert_stale(&r, 600, "old", 300);
    let r = send("v1=abc", body.as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(
        r.error(),
        "the `Stripe-Signature` header is not a well-formed signature"
    );
}

#[test]
fn generic_basic_base64_hmac_and_query_token() {
    let d = daemon();
    let body = br#"{"ok":true}"#;
    let creds = format!("Basic {}", b64(b"deploy:s3cret:pw"));
    let r = d.post_json("/hooks/basic", &[("Authorization", &creds)], body);
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["event"], "default");
    let r = d.post_json(
        "/hooks/basic",
        &[("Authorization", &format!("Basic {}", b64(b"deploy:nope")))],
        body,
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the user name or password does not match");
    let r = d.post_json("/hooks/basic", &[], body);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.error(),
        "no HTTP Basic credentials were sent (expected an `Authorization: Basic ...` header)"
    );

    let sign = |key: &[u8], body: &[u8]| {
        let mut m = <Hmac<sha2::Sha512> as KeyInit>::new_from_slice(key).unwrap();
        m.update(body);
        format!("sha512={}", b64(&m.finalize().into_bytes()))
    };
    for key in [&b"b64-old"[..], b"b64-new"] {
        let r = d.post_json(
            "/hooks/b64",
            &[("X-Signature", &sign(key, body)), ("X-Event", "build")],
            body,
        );
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.json()["event"], "build");
    }
    let r = d.post_json(
        "/hooks/b64",
        &[("X-Signature", &sign(b"b64-new", body)), ("X-Event", "build")],
        br#"{"ok":false}"#,
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the signature does not match");
    let hex_sig = format!("sha512={}", "ab".repeat(64));
    let r = d.post_json("/hooks/b64", &[("X-Signature", &hex_sig), ("X-Event", "build")], body);
    assert_eq!(r.status, 401);

    let r = d.post_json("/hooks/query?key=q-token", &[], body);
    assert_eq!(r.status, 202, "{}", r.text);
    let r = d.post_json("/hooks/query?key=wrong", &[], body);
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "the token does not match");
    let r = d.post_json("/hooks/query", &[("X-Webhook-Token", "q-token")], body);
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "no token was sent (expected the `key` query parameter)");
    assert!(
        !d.logs().contains("s3cret") && !d.logs().contains("q-token"),
        "a secret reached the log"
    );
}

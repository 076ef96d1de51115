//! Signing a delivery as a source's provider would, for `hookrunner send`:
//! the event and delivery-id headers, and whatever the source's [`Auth`]
//! checks (token, HMAC, timestamped signature, HTTP Basic), made with the
//! first secret of each rotation list. [`crate::auth::verify`] accepts what
//! [`sign`] produces.

use crate::auth::{slack, standard, stripe, Auth, HmacAlgo, SigEncoding};
use crate::config::Source;
use crate::mapping::event::EventSpec;
use base64::Engine as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// What to add to a request so that its source accepts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signed {
    /// Request headers, in the order a provider would send them.
    pub headers: Vec<(String, String)>,
    /// Query parameters (a token that a source reads only from the query).
    pub query: Vec<(String, String)>,
}

impl Signed {
    /// Sets `name` to `value`, replacing a header of that name (any case).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.into()));
    }

    /// The value of header `name` (any case), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The headers (and query) that make `body` a delivery `source` accepts, for
/// event `event` (may be empty where the event is read from the body), signed
/// at `now`. The error says why it cannot be done, e.g. a missing event.
pub fn sign(source: &Source, event: &str, body: &[u8], now: SystemTime) -> Result<Signed, String> {
    let mut out = Signed::default();
    let event = event.trim();
    let id = uuid::Uuid::new_v4().to_string();
    match &source.event {
        EventSpec::Header(name) => {
            if event.is_empty() {
                return Err(format!(
                    "source `{}` reads its event from the `{name}` header: give --event",
                    source.name
                ));
            }
            out.set(name, event);
        }
        // GitLab and Jira have a header for it; without --event (and for
        // Slack, Stripe, body fields, generic sources without an event) the
        // body carries the event.
        EventSpec::Custom { .. } if !event.is_empty() => {
            if let Some((name, value)) = source.provider.event_header(event) {
                out.set(name, value);
            }
        }
        _ => {}
    }
    for header in source.provider.delivery_headers() {
        // Svix's alias would repeat the Standard Webhooks id; one is enough.
        if *header != "svix-id" {
            out.set(header, id.clone());
        }
    }
    sign_auth(&source.auth, &id, body, now, &mut out)?;
    Ok(out)
}

fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn encode(encoding: SigEncoding, mac: &[u8]) -> String {
    match encoding {
        SigEncoding::Hex => hex::encode(mac),
        SigEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(mac),
    }
}

fn first<'a, T>(list: &'a [T], what: &str) -> Result<&'a T, String> {
    list.first().ok_or_else(|| format!("the source lists no {what}"))
}

fn sign_auth(auth: &Auth, id: &str, body: &[u8], now: SystemTime, out: &mut Signed) -> Result<(), String> {
    match auth {
        Auth::None => {}
        Auth::Token { secrets, header, query } => {
            let token = String::from_utf8_lossy(first(secrets, "token")?.expose()).into_owned();
            match (header, query) {
                (Some(h), _) => out.set(h, token),
                (None, Some(q)) => out.query.push((q.clone(), token)),
                (None, None) => return Err("the source's token auth names no header and no query parameter".into()),
            }
        }
        Auth::Hmac {
            algo,
            secrets,
            header,
            query,
            prefix,
            encoding,
        } => {
            let mac = algo.sign(first(secrets, "secret")?.expose(), body);
            let signature = format!("{prefix}{}", encode(*encoding, &mac));
            match (header, query) {
                (Some(h), _) => out.set(h, signature),
                (None, Some(q)) => out.query.push((q.clone(), signature)),
                (None, None) => return Err("the source's hmac auth names no header and no query parameter".into()),
            }
        }
        Auth::Github { secrets, .. } => {
            let mac = HmacAlgo::Sha256.sign(first(secrets, "secret")?.expose(), body);
            out.set("X-Hub-Signature-256", format!("sha256={}", hex::encode(mac)));
        }
        Auth::Gitea { secrets, header } => {
            // The body is sent as JSON, so the body itself is what is signed.
            let mac = HmacAlgo::Sha256.sign(first(secrets, "secret")?.expose(), body);
            out.set(header, hex::encode(mac));
        }
        Auth::Basic { user, password } => {
            let mut pair = user.expose().to_vec();
            pair.push(b':');
            pair.extend_from_slice(password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            out.set("Authorization", format!("Basic {encoded}"));
        }
        Auth::Slack { secrets, .. } => {
            let ts = unix_seconds(now);
            let mut signed = format!("v0:{ts}:").into_bytes();
            signed.extend_from_slice(body);
            let mac = HmacAlgo::Sha256.sign(first(secrets, "secret")?.expose(), &signed);
            out.set(slack::TIMESTAMP, ts.to_string());
            out.set(slack::SIGNATURE, format!("v0={}", hex::encode(mac)));
        }
        Auth::Standard { keys, .. } => {
            let ts = unix_seconds(now);
            // The delivery id, when the provider takes it from `webhook-id`.
            let id = out.header(standard::ID[0]).unwrap_or(id).to_string();
            let signature = first(keys, "signing secret")?.sign(&id, ts, body);
            out.set(standard::ID[0], id);
            out.set(standard::TIMESTAMP[0], ts.to_string());
            out.set(standard::SIGNATURE[0], signature);
        }
        Auth::Stripe { secrets, .. } => {
            let ts = unix_seconds(now);
            let mut signed = format!("{ts}.").into_bytes();
            signed.extend_from_slice(body);
            let mac = HmacAlgo::Sha256.sign(first(secrets, "secret")?.expose(), &signed);
            out.set(stripe::SIGNATURE, format!("t={ts},v1={}", hex::encode(mac)));
        }
        Auth::All(all) => {
            for a in all {
                sign_auth(a, id, body, now, out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::verify;
    use crate::headers::HeaderPairs;
    use crate::mapping::event::event_of;
    use std::path::Path;
    use std::sync::Arc;

    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn source(yaml: &str) -> Arc<Source> {
        let config = crate::config::parse(&format!("sources:\n  s:\n{yaml}"), Path::new("webhook.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        config.sources["s"].clone()
    }

    fn header_map(signed: &Signed) -> HeaderPairs {
        let mut h = HeaderPairs::new();
        h.add("content-type", "application/json");
        for (k, v) in &signed.headers {
            h.add(k, v.as_str());
        }
        h
    }

    /// Signs `body` for the source in `yaml`, checks that `verify` accepts it
    /// (and refuses it once the body changes), and returns the event name read.
    fn round_trip(yaml: &str, event: &str, body: &[u8]) -> (Signed, String) {
        let s = source(yaml);
        let now = SystemTime::now();
        let signed = sign(&s, event, body, now).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        let headers = header_map(&signed);
        assert_eq!(
            verify(&s.auth, &headers, &signed.query, body, now),
            Ok(()),
            "{yaml}: {signed:?}"
        );
        if !matches!(s.auth, Auth::None | Auth::Token { .. } | Auth::Basic { .. }) {
            let mut tampered = body.to_vec();
            tampered.push(b' ');
            assert!(
                verify(&s.auth, &headers, &signed.query, &tampered, now).is_err(),
                "{yaml}"
            );
        }
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        let name = event_of(&s.event, &headers, &json)
            .unwrap_or_else(|e| panic!("{yaml}: {e}"))
            .name;
        (signed, name)
    }

    const BODY: &[u8] = br#"{"ref":"refs/heads/main","type":"invoice.paid","webhookEvent":"jira:issue_created"}"#;

    #[test]
    fn every_preset_verifies() {
        let cases = [
            ("    provider: github\n    secrets: [first, second]\n", "push", "push"),
            ("    provider: gitlab\n    token: t0k\n", "merge_request", "merge_request"),
            (&format!("    provider: gitlab\n    signing_secret: {WHSEC}\n"), "push", "push"),
            (&format!("    provider: gitlab\n    token: t\n    signing_secret: {WHSEC}\n"), "Tag Push Hook", "tag_push"),
            ("    provider: gitea\n    secret: s\n", "push", "push"),
            ("    provider: forgejo\n    secret: s\n", "push", "push"),
            ("    provider: gogs\n    secret: s\n", "push", "push"),
            ("    provider: bitbucket\n    secret: s\n", "repo:push", "repo:push"),
            ("    provider: jira\n    token: t\n", "", "jira:issue_created"),
            ("    provider: jira\n    secret: s\n", "jira:issue_updated", "jira:issue_updated"),
            ("    provider: stripe\n    secret: whsec_abc\n", "", "invoice.paid"),
            (&format!("    provider: standard\n    secret: {WHSEC}\n"), "", "invoice.paid"),
            ("    provider: generic\n    auth: none\n", "", "default"),
            ("    provider: generic\n    auth: {token: t, header: X-T}\n    event: {header: X-Event}\n", "build", "build"),
            ("    provider: generic\n    auth: {token: t, query: key}\n", "", "default"),
            ("    provider: generic\n    auth: {hmac: sha512, secret: k, header: X-Sig, prefix: 'v=', encoding: base64}\n", "", "default"),
            ("    provider: generic\n    auth: {hmac: sha1, secret: k, header: X-Sig}\n", "", "default"),
            ("    provider: generic\n    auth: {basic: {user: u, password: 'p:w'}}\n", "", "default"),
        ];
        for (yaml, event, expected) in cases {
            let (_, name) = round_trip(yaml, event, BODY);
            assert_eq!(name, expected, "{yaml}");
        }
    }

    #[test]
    fn slack_event_comes_from_the_body() {
        let body = br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#;
        let (signed, name) = round_trip("    provider: slack\n    secret: s\n", "", body);
        assert_eq!(name, "app_mention");
        assert!(signed.header("X-Slack-Signature").unwrap().starts_with("v0="));
    }

    #[test]
    fn delivery_ids_and_query_tokens() {
        let (signed, _) = round_trip("    provider: github\n    secret: s\n", "push", BODY);
        assert!(uuid::Uuid::parse_str(signed.header("X-GitHub-Delivery").unwrap()).is_ok());
        let (signed, _) = round_trip(&format!("    provider: standard\n    secret: {WHSEC}\n"), "", BODY);
        // One id: the delivery id is the signed `webhook-id`.
        assert_eq!(signed.headers.iter().filter(|(k, _)| k == "webhook-id").count(), 1);
        let (signed, _) = round_trip("    provider: generic\n    auth: {token: t, query: key}\n", "", BODY);
        assert_eq!(signed.query, vec![("key".to_string(), "t".to_string())]);
        assert!(signed.headers.is_empty());
    }

    #[test]
    fn a_header_event_is_required() {
        let s = source("    provider: github\n    secret: s\n");
        let err = sign(&s, "", BODY, SystemTime::now()).unwrap_err();
        assert_eq!(
            err,
            "source `s` reads its event from the `X-GitHub-Event` header: give --event"
        );
    }
}

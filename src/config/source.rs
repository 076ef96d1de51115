//! `sources.<name>`: provider presets, their auth, event names and delivery ids.

use super::locate::Seg;
use super::raw::{RawAuth, RawDedup, RawSource};
use super::{key, valid_header, Checker};
use crate::auth::{ip::parse_net, Auth, HmacAlgo, SigEncoding};
use crate::mapping::event::EventSpec;
use crate::mapping::params::parse_path;
use crate::mapping::Routes;
use actix_web::http::header::HeaderMap;
use ipnet::IpNet;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A provider preset: how a source's deliveries name their event and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Github,
    Gitlab,
    Jira,
    Generic,
}

impl Provider {
    const NAMES: [(&'static str, Provider); 4] = [
        ("github", Provider::Github),
        ("gitlab", Provider::Gitlab),
        ("jira", Provider::Jira),
        ("generic", Provider::Generic),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES.iter().find(|(_, p)| *p == self).map(|(n, _)| *n).unwrap_or("generic")
    }

    /// The header carrying the provider's delivery id, if it has one.
    pub fn delivery_header(self) -> Option<&'static str> {
        match self {
            Provider::Github => Some("x-github-delivery"),
            Provider::Gitlab => Some("x-gitlab-event-uuid"),
            Provider::Jira => Some("x-atlassian-webhook-identifier"),
            Provider::Generic => None,
        }
    }
}

/// A checked `sources.<name>` with its mappings.
#[derive(Debug)]
pub struct Source {
    pub name: Arc<str>,
    pub provider: Provider,
    pub auth: Auth,
    pub allow_ips: Option<Vec<IpNet>>,
    pub event: EventSpec,
    /// Repeats inside the window run nothing; `None` when off.
    pub dedup: Option<Dedup>,
    pub routes: Routes,
}


/// How long a delivery id is remembered when `dedup` says nothing.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(60);

/// Repeats of a delivery inside `window` run nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dedup {
    pub window: Duration,
    pub key: DedupKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupKey {
    /// The provider's delivery id.
    DeliveryId,
    /// The SHA-256 of the raw body.
    BodySha256,
}

impl Source {
    /// The provider's id for this delivery, if it sent one.
    pub fn delivery_id(&self, headers: &HeaderMap, _body: &Value) -> Option<String> {
        self.provider
            .delivery_header()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .map(str::to_string)
    }

    /// The answer to a provider's handshake request (Slack's `url_verification`), if this is one.
    pub fn challenge(&self, _body: &Value) -> Option<Value> {
        None
    }
}

impl Checker<'_> {
    pub(super) fn source(&mut self, at: &[Seg], name: &str, s: &RawSource) -> Option<Source> {
        let sub = |k: &str| {
            let mut p = at.to_vec();
            p.push(key(k));
            p
        };
        let errors_before = self.errors.len();
        let Some(provider) = Provider::NAMES.iter().find(|(n, _)| *n == s.provider).map(|(_, p)| *p) else {
            let names: Vec<_> = Provider::NAMES.iter().map(|(n, _)| format!("`{n}`")).collect();
            self.error(&sub("provider"), format!("unknown provider `{}`: expected one of {}", s.provider, names.join(", ")));
            return None;
        };
        let unused = |this: &mut Self, field: &str, present: bool| {
            if present {
                this.error(&sub(field), format!("`{field}` is not used by provider `{}`", provider.as_str()));
            }
        };
        let auth = match provider {
            Provider::Github => {
                unused(self, "token", s.token.is_some());
                unused(self, "auth", s.auth.is_some());
                unused(self, "event", s.event.is_some());
                match &s.secret {
                    Some(secret) => self.secret(&sub("secret"), secret).map(|secret| Auth::Hmac {
                        algo: HmacAlgo::Sha256,
                        secret,
                        header: "X-Hub-Signature-256".into(),
                        prefix: "sha256=".into(),
                        encoding: SigEncoding::Hex,
                    }),
                    None => {
                        self.error(at, "provider `github` needs a `secret` (the webhook's secret, used to check `X-Hub-Signature-256`)");
                        None
                    }
                }
            }
            Provider::Gitlab => {
                unused(self, "secret", s.secret.is_some());
                unused(self, "auth", s.auth.is_some());
                unused(self, "event", s.event.is_some());
                match &s.token {
                    Some(token) => self.secret(&sub("token"), token).map(|secret| Auth::Token {
                        secret,
                        header: Some("X-Gitlab-Token".into()),
                        query: None,
                    }),
                    None => {
                        self.error(at, "provider `gitlab` needs a `token` (the webhook's secret token, sent as `X-Gitlab-Token`)");
                        None
                    }
                }
            }
            Provider::Jira => {
                unused(self, "auth", s.auth.is_some());
                unused(self, "event", s.event.is_some());
                match (&s.token, &s.secret) {
                    (Some(token), None) => self.secret(&sub("token"), token).map(|secret| Auth::Token {
                        secret,
                        header: Some("X-Webhook-Token".into()),
                        query: Some("token".into()),
                    }),
                    (None, Some(secret)) => self.secret(&sub("secret"), secret).map(|secret| Auth::Hmac {
                        algo: HmacAlgo::Sha256,
                        secret,
                        header: "X-Hub-Signature".into(),
                        prefix: "sha256=".into(),
                        encoding: SigEncoding::Hex,
                    }),
                    (Some(_), Some(_)) => {
                        self.error(at, "provider `jira` takes a `token` or a `secret`, not both");
                        None
                    }
                    (None, None) => {
                        self.error(at, "provider `jira` needs a `token` (Jira Server: `X-Webhook-Token` header or `?token=`) or a `secret` (Jira Cloud: `X-Hub-Signature`)");
                        None
                    }
                }
            }
            Provider::Generic => {
                unused(self, "secret", s.secret.is_some());
                unused(self, "token", s.token.is_some());
                match &s.auth {
                    None => {
                        self.error(at, "provider `generic` needs `auth`: `none`, `{token: ..., header: ...}` or `{hmac: sha256, secret: ..., header: ...}`");
                        None
                    }
                    Some(auth) => self.generic_auth(&sub("auth"), auth),
                }
            }
        };
        let event = match (provider, &s.event) {
            (Provider::Github, _) => EventSpec::Header("X-GitHub-Event".into()),
            (Provider::Gitlab, _) => EventSpec::Gitlab,
            (Provider::Jira, _) => EventSpec::Jira,
            (Provider::Generic, None) => EventSpec::Fixed,
            (Provider::Generic, Some(e)) => match (&e.header, &e.field) {
                (Some(h), None) if valid_header(h.trim()) => EventSpec::Header(h.trim().to_string()),
                (Some(h), None) => {
                    self.error(&sub("event"), format!("`{h}` is not a valid header name"));
                    EventSpec::Fixed
                }
                (None, Some(f)) => match parse_path(f) {
                    Some(steps) => EventSpec::Field(steps),
                    None => {
                        self.error(&sub("event"), format!("`{f}` is not a body path such as `event.type` or `items[0].kind`"));
                        EventSpec::Fixed
                    }
                },
                _ => {
                    self.error(&sub("event"), "give exactly one of `header` or `field`");
                    EventSpec::Fixed
                }
            },
        };
        let allow_ips = s.allow_ips.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(i, text)| {
                    parse_net(text).map_err(|e| self.error(&[&sub("allow_ips")[..], &[Seg::Index(i)]].concat(), e)).ok()
                })
                .collect()
        });
        let dedup = self.dedup(&sub("dedup"), provider, s.dedup.as_ref());
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Source { name: name.into(), provider, auth: auth?, allow_ips, event, dedup, routes: Routes::default() })
    }

    /// On by default (60 s, on the delivery id) for presets that send a delivery id.
    fn dedup(&mut self, at: &[Seg], provider: Provider, raw: Option<&RawDedup>) -> Option<Dedup> {
        let has_id = provider.delivery_header().is_some();
        let map = match raw {
            Some(RawDedup::Off) => return None,
            None if !has_id => return None,
            None => return Some(Dedup { window: DEFAULT_DEDUP_WINDOW, key: DedupKey::DeliveryId }),
            Some(RawDedup::On(map)) => map,
        };
        let key = match map.key.as_deref() {
            None if has_id => DedupKey::DeliveryId,
            None => DedupKey::BodySha256,
            Some("delivery_id") if has_id => DedupKey::DeliveryId,
            Some("delivery_id") => {
                self.error(at, format!("provider `{}` sends no delivery id; use `key: body_sha256`", provider.as_str()));
                return None;
            }
            Some("body_sha256") => DedupKey::BodySha256,
            Some(other) => {
                self.error(at, format!("unknown dedup key `{other}`: expected `delivery_id` or `body_sha256`"));
                return None;
            }
        };
        let window = map.window.map(|d| d.0).unwrap_or(DEFAULT_DEDUP_WINDOW);
        if window.is_zero() {
            self.error(at, "`window` must be longer than 0 (write `dedup: off` to turn it off)");
            return None;
        }
        Some(Dedup { window, key })
    }

    fn generic_auth(&mut self, at: &[Seg], auth: &RawAuth) -> Option<Auth> {
        let sub = |k: &str| [at, &[key(k)]].concat();
        let m = match auth {
            RawAuth::None => return Some(Auth::None),
            RawAuth::Map(m) => m,
        };
        match (&m.token, &m.hmac) {
            (Some(token), None) => {
                if m.secret.is_some() || m.prefix.is_some() {
                    self.error(at, "token auth takes `token`, `header` and `query`; `secret` and `prefix` belong to hmac auth");
                    return None;
                }
                let secret = self.secret(&sub("token"), token)?;
                let header = m.header.as_ref().map(|h| h.trim().to_string());
                if let Some(h) = header.as_deref().filter(|h| !valid_header(h)) {
                    self.error(&sub("header"), format!("`{h}` is not a valid header name"));
                    return None;
                }
                let query = m.query.clone();
                let header = if header.is_none() && query.is_none() { Some("X-Webhook-Token".to_string()) } else { header };
                Some(Auth::Token { secret, header, query })
            }
            (None, Some(algo)) => {
                let Some(algo) = HmacAlgo::parse(algo) else {
                    self.error(&sub("hmac"), format!("unknown hmac algorithm `{algo}`: expected `sha1`, `sha256` or `sha512`"));
                    return None;
                };
                if m.query.is_some() {
                    self.error(&sub("query"), "hmac auth reads its signature from a header, not the query");
                    return None;
                }
                let Some(secret) = &m.secret else {
                    self.error(at, "hmac auth needs a `secret`");
                    return None;
                };
                let secret = self.secret(&sub("secret"), secret)?;
                let Some(header) = &m.header else {
                    self.error(at, "hmac auth needs the `header` that carries the signature");
                    return None;
                };
                if !valid_header(header.trim()) {
                    self.error(&sub("header"), format!("`{header}` is not a valid header name"));
                    return None;
                }
                Some(Auth::Hmac {
                    algo,
                    secret,
                    header: header.trim().to_string(),
                    prefix: m.prefix.clone().unwrap_or_default(),
                    encoding: SigEncoding::Hex,
                })
            }
            _ => {
                self.error(at, "give exactly one of `token` or `hmac`");
                None
            }
        }
    }

}

//! `sources.<name>`: a source's provider (see `providers/`), its auth from
//! the keys it was given, where it reads event names and delivery ids, its
//! IP allowlist and its dedup window.

use super::answer::{Cors, Reply};
use super::interp::Interp;
use super::locate::Seg;
use super::raw::{RawAuth, RawDedup, RawEvent, RawSource};
use super::units::Dur;
use super::{key, valid_header, Checker};
use crate::auth::timestamp::DEFAULT_TOLERANCE;
use crate::auth::{ip::parse_net, Auth, HmacAlgo, SigEncoding, SigningKey};
use crate::headers::Headers;
use crate::mapping::event::EventSpec;
use crate::mapping::params::parse_path;
use crate::mapping::wanted::Wanted;
use crate::mapping::Routes;
use crate::payload::{Kind, Kinds};
use crate::providers::{Provider, SourceKeys, Written};
use crate::secret::Secret;
use ipnet::IpNet;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A checked `sources.<name>` with its mappings.
#[derive(Debug)]
pub struct Source {
    pub name: Arc<str>,
    pub provider: &'static dyn Provider,
    pub auth: Auth,
    pub allow_ips: Option<Vec<IpNet>>,
    pub event: EventSpec,
    /// Repeats inside the window run nothing; `None` when off.
    pub dedup: Option<Dedup>,
    pub routes: Routes,
    /// The parts of a body judging reads; set once the routes are complete ([`Source::wanted_body`]).
    pub body: Wanted,
    /// The HTTP methods its deliveries may use (`methods`, default `[POST]`).
    pub methods: Vec<String>,
    /// Preflight answers and `Access-Control-Allow-Origin` (`cors`).
    pub cors: Option<Cors>,
    /// How its deliveries are answered (`response`).
    pub reply: Arc<Reply>,
    /// The mapping keys with a `response` of their own, laid over the source's.
    pub replies: HashMap<String, Arc<Reply>>,
    /// The kinds of body it accepts (`bodies`; JSON only by default).
    pub bodies: Kinds,
    /// Used instead of the request's Content-Type to choose the parser (`content_type`).
    pub content_type: Option<String>,
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

/// The longest delivery id taken from a request; longer ones are ignored.
const MAX_ID_LEN: usize = 200;

impl Source {
    /// The provider's id for this delivery, if it sent one.
    pub fn delivery_id(&self, headers: &dyn Headers, body: &Value) -> Option<String> {
        // `.` and `..` cannot be a path segment (`/deliveries/{id}`): a
        // browser or an HTTP client resolves them away before asking.
        let usable = |v: &&str| !v.is_empty() && v.len() <= MAX_ID_LEN && !matches!(*v, "." | "..");
        let from_header = self
            .provider
            .delivery_headers()
            .iter()
            .find_map(|h| headers.get(h).map(str::trim).filter(usable));
        let from_body = || {
            let field = self.provider.delivery_field()?;
            body.get(field).and_then(Value::as_str).map(str::trim).filter(usable)
        };
        from_header.or_else(from_body).map(str::to_string)
    }

    /// The parts of a body that judging a delivery reads: the params' paths,
    /// and what the event spec, the delivery id and the handshake read.
    pub fn wanted_body(&self) -> Wanted {
        let mut w = self.routes.wanted().clone();
        self.event.read_from_body(&mut w);
        if let Some(field) = self.provider.delivery_field() {
            w.add_key(field);
        }
        for key in self.provider.handshake_keys() {
            w.add_key(key);
        }
        w
    }

    /// How a delivery judged under mapping key `mapping` (if any) is answered.
    pub fn reply_for(&self, mapping: Option<&str>) -> &Arc<Reply> {
        mapping.and_then(|m| self.replies.get(m)).unwrap_or(&self.reply)
    }

    /// The answer to a provider's handshake request (Slack's `url_verification`), if this is one.
    pub fn challenge(&self, body: &Value) -> Option<Value> {
        self.provider.handshake(body)
    }
}

/// Whether `text` is a media type: `type/subtype` (HTTP tokens), then any `; parameters`.
fn valid_media_type(text: &str) -> bool {
    let essence = text.split(';').next().unwrap_or("").trim();
    let token = |t: &str| crate::headers::valid_name(t);
    matches!(essence.split_once('/'), Some((t, s)) if token(t) && token(s)) && !text.contains(['\r', '\n', '\0'])
}

/// Every key a source may have, with whether it was written.
fn present_fields(s: &RawSource) -> [(&'static str, bool); 10] {
    [
        ("secret", s.secret.is_some()),
        ("secrets", s.secrets.is_some()),
        ("token", s.token.is_some()),
        ("tokens", s.tokens.is_some()),
        ("signing_secret", s.signing_secret.is_some()),
        ("signing_secrets", s.signing_secrets.is_some()),
        ("allow_sha1", s.allow_sha1.is_some()),
        ("tolerance", s.tolerance.is_some()),
        ("auth", s.auth.is_some()),
        ("event", s.event.is_some()),
    ]
}

/// One config key that may hold secrets: a single value, or a list (rotation).
enum KeyField<'a> {
    One(&'static str, Option<&'a Interp>),
    Many(&'static str, Option<&'a Vec<Interp>>),
}

impl KeyField<'_> {
    fn name(&self) -> &'static str {
        match self {
            KeyField::One(n, _) | KeyField::Many(n, _) => n,
        }
    }
    fn present(&self) -> bool {
        match self {
            KeyField::One(_, v) => v.is_some(),
            KeyField::Many(_, v) => v.is_some(),
        }
    }
}

/// The secret-holding key `name` of a source.
fn key_field<'a>(s: &'a RawSource, name: &'static str) -> KeyField<'a> {
    match name {
        "secret" => KeyField::One(name, s.secret.as_ref()),
        "token" => KeyField::One(name, s.token.as_ref()),
        "signing_secret" => KeyField::One(name, s.signing_secret.as_ref()),
        "secrets" => KeyField::Many(name, s.secrets.as_ref()),
        "tokens" => KeyField::Many(name, s.tokens.as_ref()),
        "signing_secrets" => KeyField::Many(name, s.signing_secrets.as_ref()),
        _ => KeyField::One(name, None),
    }
}

/// One source's keys as its provider reads them; problems go to the checker
/// with the key's position.
struct KeysOf<'c, 'a, 'r> {
    checker: &'c mut Checker<'a>,
    at: &'r [Seg],
    raw: &'r RawSource,
}

impl SourceKeys for KeysOf<'_, '_, '_> {
    fn secrets(&mut self, names: &[&'static str]) -> Written<Vec<Secret>> {
        let fields: Vec<KeyField> = names.iter().map(|n| key_field(self.raw, n)).collect();
        match self.checker.keys(self.at, &fields) {
            Written::Given(given) => Written::Given(given.into_iter().map(|(_, s)| s).collect()),
            Written::Invalid => Written::Invalid,
            Written::Missing => Written::Missing,
        }
    }

    fn signing_keys(&mut self, names: &[&'static str]) -> Written<Vec<SigningKey>> {
        let fields: Vec<KeyField> = names.iter().map(|n| key_field(self.raw, n)).collect();
        match self.checker.keys(self.at, &fields) {
            Written::Given(given) => match self.checker.signing_keys(given) {
                Some(keys) => Written::Given(keys),
                None => Written::Invalid,
            },
            Written::Invalid => Written::Invalid,
            Written::Missing => Written::Missing,
        }
    }

    fn tolerance(&mut self) -> Option<Duration> {
        self.checker.tolerance(self.at, self.raw.tolerance)
    }

    fn flag(&self, name: &str) -> Option<bool> {
        match name {
            "allow_sha1" => self.raw.allow_sha1,
            _ => None,
        }
    }

    fn has(&self, name: &str) -> bool {
        present_fields(self.raw)
            .iter()
            .any(|(n, present)| *n == name && *present)
    }

    fn error(&mut self, key: Option<&str>, message: String) {
        match key {
            None => self.checker.error(self.at, message),
            Some(k) => self.checker.error(&[self.at, &[super::key(k)]].concat(), message),
        }
    }

    fn event(&mut self) -> Written<EventSpec> {
        let Some(e) = &self.raw.event else {
            return Written::Missing;
        };
        let errors = self.checker.errors.len();
        let spec = self.checker.event_spec(&[self.at, &[super::key("event")]].concat(), e);
        if self.checker.errors.len() > errors {
            Written::Invalid
        } else {
            Written::Given(spec)
        }
    }

    fn auth(&mut self) -> Written<Auth> {
        match &self.raw.auth {
            None => Written::Missing,
            Some(auth) => match self
                .checker
                .generic_auth(&[self.at, &[super::key("auth")]].concat(), auth)
            {
                Some(a) => Written::Given(a),
                None => Written::Invalid,
            },
        }
    }
}

impl Checker<'_> {
    pub(super) fn source(&mut self, at: &[Seg], name: &str, s: &RawSource) -> Option<Source> {
        let sub = |k: &str| [at, &[key(k)]].concat();
        let errors_before = self.errors.len();
        let Some(provider) = crate::providers::by_name(&s.provider) else {
            let names: Vec<_> = crate::providers::ALL
                .iter()
                .map(|p| format!("`{}`", p.name()))
                .collect();
            self.error(
                &sub("provider"),
                // The value is not repeated: it may be a secret written here.
                format!("unknown provider: expected one of {}", names.join(", ")),
            );
            return None;
        };
        for (field, present) in present_fields(s) {
            if present && !provider.keys().contains(&field) {
                self.error(
                    &sub(field),
                    format!("`{field}` is not used by provider `{}`", provider.name()),
                );
            }
        }
        let (auth, event) = {
            let mut keys = KeysOf {
                checker: self,
                at,
                raw: s,
            };
            let auth = provider.auth(&mut keys);
            let event = provider.event(&mut keys);
            (auth, event)
        };
        let allow_ips = s.allow_ips.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(i, text)| {
                    parse_net(text)
                        .map_err(|e| self.error(&[&sub("allow_ips")[..], &[Seg::Index(i)]].concat(), e))
                        .ok()
                })
                .collect()
        });
        let tolerance = auth.as_ref().and_then(Auth::tolerance);
        let dedup = self.dedup(&sub("dedup"), provider, tolerance, s.dedup.as_ref());
        let methods = self.methods(&sub("methods"), s.methods.as_ref());
        let cors = s.cors.as_ref().map(|c| self.cors(&sub("cors"), c, &methods));
        let reply = s
            .response
            .as_ref()
            .map(|r| self.reply(&sub("response"), r))
            .unwrap_or_default();
        let bodies = self.bodies(&sub("bodies"), s.bodies.as_deref());
        let content_type = s.content_type.as_ref().map(|ct| ct.trim().to_string());
        if let Some(ct) = &content_type {
            if !valid_media_type(ct) {
                self.error(
                    &sub("content_type"),
                    format!("`{ct}` is not a media type such as `application/json` or `text/plain; charset=utf-8`"),
                );
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Source {
            name: name.into(),
            provider,
            auth: auth?,
            allow_ips,
            event,
            dedup,
            routes: Routes::default(),
            body: Wanted::All,
            methods,
            cors,
            reply: Arc::new(reply),
            replies: HashMap::new(),
            bodies,
            content_type,
        })
    }

    /// `bodies:`: a list of `json`, `form`, `multipart`, `xml`, `text`, or `any` (all five).
    fn bodies(&mut self, at: &[Seg], raw: Option<&[String]>) -> Kinds {
        let Some(words) = raw else {
            return Kinds::JSON;
        };
        if words.is_empty() {
            self.error(at, "must list at least one kind of body");
        }
        let mut kinds = Kinds::default();
        for (i, word) in words.iter().enumerate() {
            match (word.as_str(), Kind::parse(word)) {
                ("any", _) => kinds = Kinds::all(),
                (_, Some(kind)) => kinds = kinds.with(kind),
                (_, None) => self.error(
                    &[at, &[Seg::Index(i)]].concat(),
                    format!(
                        "unknown kind of body `{word}`: expected `json`, `form`, `multipart`, `xml`, `text` or `any`"
                    ),
                ),
            }
        }
        kinds
    }

    fn keys(&mut self, at: &[Seg], fields: &[KeyField]) -> Written<Vec<(Vec<Seg>, Secret)>> {
        let present: Vec<&KeyField> = fields.iter().filter(|f| f.present()).collect();
        let field = match present[..] {
            [] => return Written::Missing,
            [field] => field,
            _ => {
                let names: Vec<String> = present.iter().map(|f| format!("`{}`", f.name())).collect();
                self.error(at, format!("give only one of {}", names.join(", ")));
                return Written::Invalid;
            }
        };
        let errors_before = self.errors.len();
        let path = [at, &[key(field.name())]].concat();
        let mut given = Vec::new();
        match field {
            KeyField::One(_, Some(value)) => given.extend(self.secret(&path, value).map(|s| (path.clone(), s))),
            KeyField::Many(_, Some(list)) => {
                if list.is_empty() {
                    self.error(&path, "must list at least one secret");
                }
                for (i, value) in list.iter().enumerate() {
                    let item = [&path[..], &[Seg::Index(i)]].concat();
                    given.extend(self.secret(&item, value).map(|s| (item, s)));
                }
            }
            _ => {}
        }
        if self.errors.len() > errors_before {
            Written::Invalid
        } else {
            Written::Given(given)
        }
    }

    /// Decodes `whsec_<base64>` secrets into HMAC keys.
    fn signing_keys(&mut self, given: Vec<(Vec<Seg>, Secret)>) -> Option<Vec<SigningKey>> {
        let mut keys = Vec::new();
        let mut valid = true;
        for (path, secret) in given {
            match std::str::from_utf8(secret.expose()).ok().and_then(SigningKey::parse) {
                Some(k) => keys.push(k),
                None => {
                    self.error(&path, "is not a signing secret: expected `whsec_` followed by base64");
                    valid = false;
                }
            }
        }
        valid.then_some(keys)
    }

    /// `tolerance:` of a timestamped scheme; 5 minutes when unset.
    fn tolerance(&mut self, at: &[Seg], raw: Option<Dur>) -> Option<Duration> {
        let tolerance = raw.map(|d| d.0).unwrap_or(DEFAULT_TOLERANCE);
        if tolerance < Duration::from_secs(1) {
            self.error(&[at, &[key("tolerance")]].concat(), "must be at least 1s");
            return None;
        }
        Some(tolerance)
    }

    fn event_spec(&mut self, at: &[Seg], e: &RawEvent) -> EventSpec {
        match (&e.header, &e.field) {
            (Some(h), None) if valid_header(h.trim()) => EventSpec::Header(h.trim().to_string()),
            (Some(h), None) => {
                self.error(at, format!("`{h}` is not a valid header name"));
                EventSpec::Fixed
            }
            (None, Some(f)) => match parse_path(f) {
                Some(steps) => EventSpec::Field(steps),
                None => {
                    self.error(
                        at,
                        format!("`{f}` is not a body path such as `event.type` or `items[0].kind`"),
                    );
                    EventSpec::Fixed
                }
            },
            _ => {
                self.error(at, "give exactly one of `header` or `field`");
                EventSpec::Fixed
            }
        }
    }

    /// On by default for presets that send a delivery id: for 60 s, or for the
    /// signature tolerance when that is longer (a replay inside the tolerance
    /// passes the signature check, so only dedup can stop it).
    fn dedup(
        &mut self,
        at: &[Seg],
        provider: &'static dyn Provider,
        tolerance: Option<Duration>,
        raw: Option<&RawDedup>,
    ) -> Option<Dedup> {
        let has_id = provider.has_delivery_id();
        let default_window = tolerance.map_or(DEFAULT_DEDUP_WINDOW, |t| t.max(DEFAULT_DEDUP_WINDOW));
        let map = match raw {
            Some(RawDedup::Off) => return None,
            None if !has_id => return None,
            None => {
                return Some(Dedup {
                    window: default_window,
                    key: DedupKey::DeliveryId,
                })
            }
            Some(RawDedup::On(map)) => map,
        };
        let key = match map.key.as_deref() {
            None if has_id => DedupKey::DeliveryId,
            None => DedupKey::BodySha256,
            Some("delivery_id") if has_id => DedupKey::DeliveryId,
            Some("delivery_id") => {
                self.error(
                    at,
                    format!(
                        "provider `{}` sends no delivery id; use `key: body_sha256`",
                        provider.name()
                    ),
                );
                return None;
            }
            Some("body_sha256") => DedupKey::BodySha256,
            Some(_) => {
                self.error(
                    at,
                    // Not repeated: it may be a secret written here.
                    "unknown dedup key: expected `delivery_id` or `body_sha256`",
                );
                return None;
            }
        };
        let window = map.window.map(|d| d.0).unwrap_or(default_window);
        if window.is_zero() {
            self.error(at, "`window` must be longer than 0 (write `dedup: off` to turn it off)");
            return None;
        }
        if let Some(tolerance) = tolerance.filter(|t| window < *t) {
            self.error(
                &[at, &[super::key("window")]].concat(),
                format!(
                    "`window` ({}) is shorter than the signature `tolerance` ({}): a delivery replayed inside the tolerance would run again; make it at least {}",
                    humantime::format_duration(window),
                    humantime::format_duration(tolerance),
                    humantime::format_duration(tolerance),
                ),
            );
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
        let is_token = m.token.is_some() || m.tokens.is_some();
        match (is_token, &m.hmac, &m.basic) {
            (true, None, None) => {
                if m.secret.is_some() || m.secrets.is_some() || m.prefix.is_some() || m.encoding.is_some() {
                    self.error(at, "token auth takes `token` (or `tokens`), `header` and `query`; `secret`, `secrets`, `prefix` and `encoding` belong to hmac auth");
                    return None;
                }
                let secrets = match self.keys(
                    at,
                    &[
                        KeyField::One("token", m.token.as_ref()),
                        KeyField::Many("tokens", m.tokens.as_ref()),
                    ],
                ) {
                    Written::Given(given) => given.into_iter().map(|(_, s)| s).collect(),
                    _ => return None,
                };
                let header = m.header.as_ref().map(|h| h.trim().to_string());
                if let Some(h) = header.as_deref().filter(|h| !valid_header(h)) {
                    self.error(&sub("header"), format!("`{h}` is not a valid header name"));
                    return None;
                }
                let query = m.query.clone();
                let header = if header.is_none() && query.is_none() {
                    Some("X-Webhook-Token".to_string())
                } else {
                    header
                };
                Some(Auth::Token { secrets, header, query })
            }
            (false, Some(algo), None) => {
                let Some(algo) = HmacAlgo::parse(algo) else {
                    self.error(
                        &sub("hmac"),
                        // Not repeated: `hmac: <secret>` is an easy slip.
                        "unknown hmac algorithm: expected `sha1`, `sha256` or `sha512`",
                    );
                    return None;
                };
                let encoding = match m.encoding.as_deref() {
                    None | Some("hex") => SigEncoding::Hex,
                    Some("base64") => SigEncoding::Base64,
                    Some(other) => {
                        self.error(
                            &sub("encoding"),
                            format!("unknown encoding `{other}`: expected `hex` or `base64`"),
                        );
                        return None;
                    }
                };
                let secrets = match self.keys(
                    at,
                    &[
                        KeyField::One("secret", m.secret.as_ref()),
                        KeyField::Many("secrets", m.secrets.as_ref()),
                    ],
                ) {
                    Written::Given(given) => given.into_iter().map(|(_, s)| s).collect(),
                    Written::Invalid => return None,
                    Written::Missing => {
                        self.error(at, "hmac auth needs a `secret`");
                        return None;
                    }
                };
                if m.header.is_none() && m.query.is_none() {
                    self.error(
                        at,
                        "hmac auth needs the `header` (or the `query` parameter) that carries the signature",
                    );
                    return None;
                }
                let header = m.header.as_ref().map(|h| h.trim().to_string());
                if let Some(h) = header.as_deref().filter(|h| !valid_header(h)) {
                    self.error(&sub("header"), format!("`{h}` is not a valid header name"));
                    return None;
                }
                let query = m.query.as_ref().map(|q| q.trim().to_string());
                if query.as_deref().is_some_and(str::is_empty) {
                    self.error(&sub("query"), "must name a query parameter");
                    return None;
                }
                Some(Auth::Hmac {
                    algo,
                    secrets,
                    header,
                    query,
                    prefix: m.prefix.clone().unwrap_or_default(),
                    encoding,
                })
            }
            (false, None, Some(basic)) => {
                let others = [
                    m.secret.is_some() || m.secrets.is_some(),
                    m.header.is_some(),
                    m.prefix.is_some(),
                    m.encoding.is_some(),
                    m.query.is_some(),
                ];
                if others.contains(&true) {
                    self.error(at, "basic auth takes only `basic: {user: ..., password: ...}`");
                    return None;
                }
                let basic_at = sub("basic");
                let user = self.secret(&[&basic_at[..], &[key("user")]].concat(), &basic.user);
                let password = self.secret(&[&basic_at[..], &[key("password")]].concat(), &basic.password);
                Some(Auth::Basic {
                    user: user?,
                    password: password?,
                })
            }
            _ => {
                self.error(at, "give exactly one of `token`, `hmac` or `basic`");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Config};
    use std::path::Path;

    fn load(sources: &str) -> Result<Config, String> {
        parse(&format!("sources:\n{sources}"), Path::new("webhook.yaml")).map_err(|e| e.to_string())
    }

    fn source(yaml: &str) -> Arc<Source> {
        let config = load(yaml).unwrap_or_else(|e| panic!("{e}"));
        config.sources.values().next().unwrap().clone()
    }

    #[test]
    fn a_sparse_body_reads_as_the_whole_one_for_event_action_id_and_handshake() {
        use crate::mapping::event::{action_of, event_of};
        let fixture = |p: &str| std::fs::read(format!("{}/tests/fixtures/{p}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "  s:\n    provider: github\n    secret: x\n",
                fixture("github/pull_request.opened.json"),
            ),
            (
                "  s:\n    provider: gitlab\n    token: x\n",
                fixture("gitlab/merge_request.json"),
            ),
            (
                "  s:\n    provider: jira\n    token: x\n",
                fixture("jira/issue_created.json"),
            ),
            (
                "  s:\n    provider: slack\n    secret: x\n",
                br#"{"type":"url_verification","challenge":"c"}"#.to_vec(),
            ),
            (
                "  s:\n    provider: slack\n    secret: x\n",
                br#"{"type":"event_callback","event_id":"E1","event":{"type":"app_mention","text":"hi"}}"#.to_vec(),
            ),
            (
                "  s:\n    provider: slack\n    secret: x\n",
                br#"{"command":"/deploy","text":"app"}"#.to_vec(),
            ),
            (
                "  s:\n    provider: stripe\n    secret: x\n",
                br#"{"id":"evt_1","type":"charge.succeeded","data":{}}"#.to_vec(),
            ),
            (
                "  s:\n    provider: generic\n    auth: none\n    event: {field: meta.kind}\n",
                br#"{"meta":{"kind":"build","n":1},"action":"done","rest":[1,2]}"#.to_vec(),
            ),
        ];
        let headers = crate::headers::HeaderPairs::new();
        for (yaml, body) in cases {
            let source = source(yaml);
            let full: Value = serde_json::from_slice(&body).unwrap();
            let sparse = source.body.parse(&body).unwrap();
            let event = |b: &Value| event_of(&source.event, &headers, b).map(|e| (e.name, e.raw));
            assert_eq!(event(&sparse), event(&full), "{yaml}");
            assert_eq!(action_of(&sparse), action_of(&full), "{yaml}");
            assert_eq!(
                source.delivery_id(&headers, &sparse),
                source.delivery_id(&headers, &full),
                "{yaml}"
            );
            assert_eq!(source.challenge(&sparse), source.challenge(&full), "{yaml}");
        }
    }

    fn error(yaml: &str) -> String {
        load(yaml).map(|_| ()).unwrap_err()
    }

    const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn every_preset_with_a_delivery_id_dedups_by_default() {
        for (provider, extra) in [
            ("github", "secret: s"),
            ("gitlab", "token: t"),
            ("gitea", "secret: s"),
            ("forgejo", "secret: s"),
            ("gogs", "secret: s"),
            ("bitbucket", "secret: s"),
            ("jira", "token: t"),
        ] {
            let s = source(&format!("  s:\n    provider: {provider}\n    {extra}\n"));
            assert_eq!(
                s.dedup,
                Some(Dedup {
                    window: DEFAULT_DEDUP_WINDOW,
                    key: DedupKey::DeliveryId
                }),
                "{provider}"
            );
        }
        // Timestamped schemes: the window covers the tolerance.
        let five_min = Some(Dedup {
            window: Duration::from_secs(300),
            key: DedupKey::DeliveryId,
        });
        for provider in ["slack", "stripe"] {
            let s = source(&format!("  s:\n    provider: {provider}\n    secret: s\n"));
            assert_eq!(s.dedup, five_min, "{provider}");
        }
        let s = source(&format!(
            "  s:\n    provider: standard\n    secret: {WHSEC}\n    tolerance: 10m\n"
        ));
        assert_eq!(
            s.dedup,
            Some(Dedup {
                window: Duration::from_secs(600),
                key: DedupKey::DeliveryId
            })
        );
        let s = source("  s:\n    provider: slack\n    secret: s\n    tolerance: 30s\n");
        assert_eq!(
            s.dedup,
            Some(Dedup {
                window: DEFAULT_DEDUP_WINDOW,
                key: DedupKey::DeliveryId
            })
        );
        let s = source(&format!("  s:\n    provider: gitlab\n    signing_secret: {WHSEC}\n"));
        assert_eq!(s.dedup, five_min);
        assert!(matches!(s.auth, Auth::Standard { .. }));
        let s = source("  s:\n    provider: generic\n    auth: none\n");
        assert_eq!(s.dedup, None);
    }

    #[test]
    fn a_dedup_window_shorter_than_the_tolerance_is_refused() {
        let err = error("  s:\n    provider: stripe\n    secret: s\n    dedup: {window: 2m}\n");
        assert_eq!(
            err,
            "webhook.yaml:5:5: `sources.s.dedup.window`: `window` (2m) is shorter than the signature `tolerance` (5m): a delivery replayed inside the tolerance would run again; make it at least 5m"
        );
        let s = source("  s:\n    provider: stripe\n    secret: s\n    tolerance: 1m\n    dedup: {window: 2m}\n");
        assert_eq!(s.dedup.as_ref().unwrap().window, Duration::from_secs(120));
        assert!(load("  s:\n    provider: slack\n    secret: s\n    dedup: off\n").is_ok());
    }

    #[test]
    fn precise_errors() {
        let cases = [
            ("  s:\n    provider: slack\n", "webhook.yaml:2:3: `sources.s`: provider `slack` needs a `secret` (the app's signing secret, used to check `X-Slack-Signature`)"),
            ("  s:\n    provider: gitea\n    secret: s\n    token: t\n", "webhook.yaml:5:5: `sources.s.token`: `token` is not used by provider `gitea`"),
            ("  s:\n    provider: github\n    secret: a\n    tolerance: 1m\n", "webhook.yaml:5:5: `sources.s.tolerance`: `tolerance` is not used by provider `github`"),
            ("  s:\n    provider: github\n    secret: a\n    secrets: [b]\n", "webhook.yaml:2:3: `sources.s`: give only one of `secret`, `secrets`"),
            ("  s:\n    provider: stripe\n    secrets: []\n", "webhook.yaml:4:5: `sources.s.secrets`: must list at least one secret"),
            ("  s:\n    provider: stripe\n    secrets: [a, '']\n", "webhook.yaml:4:5: `sources.s.secrets[1]`: must not be empty"),
            ("  s:\n    provider: standard\n    secret: whsec_not base64!\n", "webhook.yaml:4:5: `sources.s.secret`: is not a signing secret: expected `whsec_` followed by base64"),
            ("  s:\n    provider: gitlab\n    token: t\n    tolerance: 1m\n", "webhook.yaml:5:5: `sources.s.tolerance`: `tolerance` applies only to GitLab's signing token (`signing_secret`)"),
            ("  s:\n    provider: slack\n    secret: s\n    tolerance: 500ms\n", "webhook.yaml:5:5: `sources.s.tolerance`: must be at least 1s"),
            ("  s:\n    provider: generic\n    auth: {hmac: sha256, secret: s, header: X-Sig, encoding: b32}\n", "webhook.yaml:4:5: `sources.s.auth.encoding`: unknown encoding `b32`: expected `hex` or `base64`"),
            ("  s:\n    provider: generic\n    auth: {basic: {user: u, password: p}, header: X}\n", "webhook.yaml:4:5: `sources.s.auth`: basic auth takes only `basic: {user: ..., password: ...}`"),
            ("  s:\n    provider: generic\n    auth: {basic: {user: u, password: ''}}\n", "webhook.yaml:4:5: `sources.s.auth.basic.password`: must not be empty"),
            ("  s:\n    provider: generic\n    auth: {token: t, hmac: sha256}\n", "webhook.yaml:4:5: `sources.s.auth`: give exactly one of `token`, `hmac` or `basic`"),
        ];
        for (yaml, expected) in cases {
            assert_eq!(error(yaml), expected, "{yaml}");
        }
        // serde refuses unknown keys, in the source and in `basic`.
        assert!(error("  s:\n    provider: slack\n    secret: s\n    signing: x\n").contains("unknown field `signing`"));
        assert!(
            error("  s:\n    provider: generic\n    auth: {basic: {user: u, pass: p}}\n")
                .contains("unknown field `pass`")
        );
    }

    #[test]
    fn secrets_never_reach_errors_or_debug() {
        let s = source("  s:\n    provider: generic\n    auth: {basic: {user: admin, password: hunter2-secret}}\n");
        assert!(!format!("{s:?}").contains("hunter2"));
        let s = source(&format!(
            "  s:\n    provider: gitlab\n    tokens: [tok-one, tok-two]\n    signing_secret: {WHSEC}\n"
        ));
        let debug = format!("{s:?}");
        assert!(!debug.contains("tok-one") && !debug.contains("MfKQ9r8G"), "{debug}");
        let err = error("  s:\n    provider: standard\n    secret: whsec_%%secret%%\n");
        assert!(!err.contains("%%secret%%"), "{err}");
    }

    #[test]
    fn delivery_ids_from_headers_or_body() {
        let h = |pairs: &[(&'static str, &'static str)]| pairs.iter().copied().collect::<crate::headers::HeaderPairs>();
        let none = serde_json::json!({});
        let gitlab = source("  s:\n    provider: gitlab\n    token: t\n");
        assert_eq!(
            gitlab
                .delivery_id(&h(&[("X-Gitlab-Event-UUID", "u")]), &none)
                .as_deref(),
            Some("u")
        );
        assert_eq!(
            gitlab
                .delivery_id(&h(&[("X-Gitlab-Event-UUID", "u"), ("Idempotency-Key", "k")]), &none)
                .as_deref(),
            Some("k")
        );
        let bitbucket = source("  s:\n    provider: bitbucket\n    secret: s\n");
        assert_eq!(
            bitbucket.delivery_id(&h(&[("X-Request-Id", "srv")]), &none).as_deref(),
            Some("srv")
        );
        let slack = source("  s:\n    provider: slack\n    secret: s\n");
        assert_eq!(
            slack
                .delivery_id(&h(&[]), &serde_json::json!({"event_id": "Ev1"}))
                .as_deref(),
            Some("Ev1")
        );
        assert_eq!(slack.delivery_id(&h(&[]), &serde_json::json!({"event_id": 5})), None);
        let github = source("  s:\n    provider: github\n    secret: s\n");
        for unusable in ["", "  ", ".", "..", " .. "] {
            let headers = h(&[("X-GitHub-Delivery", unusable)]);
            assert_eq!(github.delivery_id(&headers, &none), None, "{unusable:?}");
        }
        assert_eq!(
            github
                .delivery_id(&h(&[("X-GitHub-Delivery", "...")]), &none)
                .as_deref(),
            Some("...")
        );
        let stripe = source("  s:\n    provider: stripe\n    secret: s\n");
        assert_eq!(
            stripe
                .delivery_id(&h(&[]), &serde_json::json!({"id": "evt_1"}))
                .as_deref(),
            Some("evt_1")
        );
        let standard = source(&format!("  s:\n    provider: standard\n    secret: {WHSEC}\n"));
        assert_eq!(
            standard.delivery_id(&h(&[("svix-id", "msg_1")]), &none).as_deref(),
            Some("msg_1")
        );
        let long = "x".repeat(201);
        assert_eq!(stripe.delivery_id(&h(&[]), &serde_json::json!({ "id": long })), None);
    }

    #[test]
    fn only_slack_answers_the_url_verification_challenge() {
        let body = serde_json::json!({"type": "url_verification", "challenge": "abc", "token": "t"});
        let slack = source("  s:\n    provider: slack\n    secret: s\n");
        assert_eq!(slack.challenge(&body), Some(serde_json::json!({"challenge": "abc"})));
        assert_eq!(slack.challenge(&serde_json::json!({"type": "event_callback"})), None);
        let generic = source("  s:\n    provider: generic\n    auth: none\n");
        assert_eq!(generic.challenge(&body), None);
    }
}

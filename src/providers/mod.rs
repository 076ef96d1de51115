//! Providers: what `provider:` on a source selects. Each file here knows one
//! sender (or a family of them): which keys of the source it reads and what
//! auth they make, where its deliveries carry their event name and delivery
//! id, and its handshake, if it has one.
//!
//! Adding a provider is one new file implementing [`Provider`] and one line
//! in [`ALL`].

mod bitbucket;
mod generic;
mod gitea;
mod github;
mod gitlab;
mod jira;
mod slack;
mod standard;
mod stripe;

use crate::auth::{Auth, HmacAlgo, SigEncoding, SigningKey};
use crate::headers::Headers;
use crate::mapping::event::{Event, EventSpec};
use crate::secret::Secret;
use serde_json::Value;
use std::time::Duration;

/// One kind of webhook sender.
pub trait Provider: Sync + std::fmt::Debug {
    /// The name written in `provider:`.
    fn name(&self) -> &'static str;

    /// The keys of `sources.<name>` this provider reads, besides those every
    /// source has (`provider`, `allow_ips`, `dedup`).
    fn keys(&self) -> &'static [&'static str];

    /// The source's auth, from its keys. `None` when something is wrong (the
    /// problem was reported through `keys`).
    fn auth(&self, keys: &mut dyn SourceKeys) -> Option<Auth>;

    /// Where a delivery's event name is read.
    fn event(&self, keys: &mut dyn SourceKeys) -> EventSpec;

    /// Headers that may carry the delivery id (the first one sent wins).
    fn delivery_headers(&self) -> &'static [&'static str] {
        &[]
    }

    /// A top-level body field that carries the delivery id.
    fn delivery_field(&self) -> Option<&'static str> {
        None
    }

    /// The answer to a handshake request (Slack's `url_verification`), if this is one.
    fn handshake(&self, _body: &Value) -> Option<Value> {
        None
    }

    /// Top-level body fields [`Provider::handshake`] reads.
    fn handshake_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether a form body without a `payload` field is a delivery made of
    /// its own fields (Slack's slash commands).
    fn plain_forms(&self) -> bool {
        false
    }

    /// The header (and value) that carries `event` when a delivery is made
    /// by `hookrunner send`, for a provider that reads its event its own way.
    fn event_header(&self, _event: &str) -> Option<(&'static str, String)> {
        None
    }

    /// An event name as the provider spells it in its header, in the form
    /// mappings use (GitLab's `Push Hook` → `push`); `None` if it is one already.
    fn normalise_event(&self, _raw: &str) -> Option<String> {
        None
    }

    /// Whether deliveries carry an id (then dedup is on by default).
    fn has_delivery_id(&self) -> bool {
        !self.delivery_headers().is_empty() || self.delivery_field().is_some()
    }
}

/// Every provider, by the name `provider:` takes.
pub static ALL: &[&dyn Provider] = &[
    &github::Github,
    &gitlab::Gitlab,
    &gitea::GITEA,
    &gitea::FORGEJO,
    &gitea::GOGS,
    &bitbucket::Bitbucket,
    &jira::Jira,
    &slack::Slack,
    &standard::Standard,
    &stripe::Stripe,
    &generic::Generic,
];

/// The provider named `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Provider> {
    ALL.iter().copied().find(|p| p.name() == name)
}

/// What a key (or one of a set of keys) of a source gave.
#[derive(Debug)]
pub enum Written<T> {
    /// Not written.
    Missing,
    /// Written, but wrong; already reported.
    Invalid,
    Given(T),
}

/// The keys of one source, as a provider reads them. The config implements
/// it: it knows where each key was written and reports problems there.
pub trait SourceKeys {
    /// The secrets written in whichever one of `names` is present (`secret`
    /// is one value, `secrets` a list; so are `token`/`tokens` and
    /// `signing_secret`/`signing_secrets`). Giving two of them is an error.
    fn secrets(&mut self, names: &[&'static str]) -> Written<Vec<Secret>>;

    /// As [`SourceKeys::secrets`], each decoded as a `whsec_<base64>` signing key.
    fn signing_keys(&mut self, names: &[&'static str]) -> Written<Vec<SigningKey>>;

    /// `tolerance:` of a timestamped scheme (5 minutes when unset; at least 1s).
    fn tolerance(&mut self) -> Option<Duration>;

    /// A boolean key (`allow_sha1`).
    fn flag(&self, name: &str) -> Option<bool>;

    /// Whether `name` was written.
    fn has(&self, name: &str) -> bool;

    /// Reports a problem with the source (`key: None`) or one of its keys.
    fn error(&mut self, key: Option<&str>, message: String);

    /// `event:` as written (`{header: ...}` or `{field: ...}`).
    fn event(&mut self) -> Written<EventSpec>;

    /// `auth:` as written (`none`, token, hmac or basic).
    fn auth(&mut self) -> Written<Auth>;
}

/// The secrets of one of `names`, or the error `needs` when none was written.
fn required(keys: &mut dyn SourceKeys, names: &[&'static str], needs: &str) -> Option<Vec<Secret>> {
    match keys.secrets(names) {
        Written::Given(s) => Some(s),
        Written::Invalid => None,
        Written::Missing => {
            keys.error(None, needs.to_string());
            None
        }
    }
}

/// `X-Hub-Signature: sha256=<hex>` (Bitbucket, Jira Cloud).
fn hub_sha256(secrets: Vec<Secret>) -> Auth {
    Auth::Hmac {
        algo: HmacAlgo::Sha256,
        secrets,
        header: Some("X-Hub-Signature".into()),
        query: None,
        prefix: "sha256=".into(),
        encoding: SigEncoding::Hex,
    }
}

/// A header's trimmed text, if sent and not empty.
fn header<'h>(headers: &'h dyn Headers, name: &str) -> Option<&'h str> {
    headers.get(name).map(str::trim).filter(|v| !v.is_empty())
}

fn plain(name: impl Into<String>) -> Event {
    Event {
        name: name.into(),
        raw: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for p in ALL {
            assert_eq!(by_name(p.name()).map(|f| f.name()), Some(p.name()));
            assert_eq!(ALL.iter().filter(|q| q.name() == p.name()).count(), 1);
        }
        assert!(by_name("nope").is_none());
    }
}

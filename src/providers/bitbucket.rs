//! Bitbucket (Cloud and Server / Data Center): the event in `X-Event-Key`,
//! the delivery id in `X-Request-UUID` (Cloud) or `X-Request-Id` (Server),
//! and `X-Hub-Signature: sha256=<hex>` of the body.

use super::{hub_sha256, required, Provider, SourceKeys};
use crate::auth::Auth;
use crate::mapping::event::EventSpec;

#[derive(Debug)]
pub struct Bitbucket;

impl Provider for Bitbucket {
    fn name(&self) -> &'static str {
        "bitbucket"
    }

    fn keys(&self) -> &'static [&'static str] {
        &["secret", "secrets"]
    }

    fn auth(&self, keys: &mut dyn SourceKeys) -> Option<Auth> {
        let secrets = required(
            keys,
            &["secret", "secrets"],
            "provider `bitbucket` needs a `secret` (the webhook's secret, used to check `X-Hub-Signature`)",
        )?;
        Some(hub_sha256(secrets))
    }

    fn event(&self, _keys: &mut dyn SourceKeys) -> EventSpec {
        EventSpec::Header("X-Event-Key".into())
    }

    fn delivery_headers(&self) -> &'static [&'static str] {
        // Cloud, then Server / Data Center.
        &["X-Request-UUID", "X-Request-Id"]
    }
}

//! GitHub: `X-GitHub-Event`, `X-GitHub-Delivery`, and the HMAC-SHA256 of the
//! body in `X-Hub-Signature-256` (the legacy SHA-1 `X-Hub-Signature` only
//! with `allow_sha1: true`).

use super::{required, Provider, SourceKeys};
use crate::auth::Auth;
use crate::mapping::event::EventSpec;

#[derive(Debug)]
pub struct Github;

impl Provider for Github {
    fn name(&self) -> &'static str {
        "github"
    }

    fn keys(&self) -> &'static [&'static str] {
        &["secret", "secrets", "allow_sha1"]
    }

    fn auth(&self, keys: &mut dyn SourceKeys) -> Option<Auth> {
        let secrets = required(
            keys,
            &["secret", "secrets"],
            "provider `github` needs a `secret` (the webhook's secret, used to check `X-Hub-Signature-256`)",
        )?;
        Some(Auth::Github {
            secrets,
            allow_sha1: keys.flag("allow_sha1").unwrap_or(false),
        })
    }

    fn event(&self, _keys: &mut dyn SourceKeys) -> EventSpec {
        EventSpec::Header("X-GitHub-Event".into())
    }

    fn delivery_headers(&self) -> &'static [&'static str] {
        &["X-GitHub-Delivery"]
    }
}

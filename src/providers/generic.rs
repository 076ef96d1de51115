//! Any other sender: `auth:` says how it proves itself (`none`, a token, an
//! HMAC of the body, HTTP Basic), `event:` where its event name is (a header
//! or a body field; without it every delivery's event is `default`).

use super::{Provider, SourceKeys, Written};
use crate::auth::Auth;
use crate::mapping::event::EventSpec;

#[derive(Debug)]
pub struct Generic;

impl Provider for Generic {
    fn name(&self) -> &'static str {
        "generic"
    }

    fn keys(&self) -> &'static [&'static str] {
        &["auth", "event"]
    }

    fn auth(&self, keys: &mut dyn SourceKeys) -> Option<Auth> {
        match keys.auth() {
            Written::Given(auth) => Some(auth),
            Written::Invalid => None,
            Written::Missing => {
                keys.error(None, "provider `generic` needs `auth`: `none`, `{token: ..., header: ...}`, `{hmac: sha256, secret: ..., header: ...}` or `{basic: {user: ..., password: ...}}`".into());
                None
            }
        }
    }

    fn event(&self, keys: &mut dyn SourceKeys) -> EventSpec {
        match keys.event() {
            Written::Given(spec) => spec,
            Written::Missing | Written::Invalid => EventSpec::Fixed,
        }
    }
}

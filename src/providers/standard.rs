//! Standard Webhooks (and Svix): `webhook-signature: v1,<base64>` over
//! `<id>.<timestamp>.<body>` with a `whsec_` key, the delivery id in
//! `webhook-id` (or `svix-id`), the event in the body's `type` unless
//! `event:` says otherwise.

use super::{Provider, SourceKeys, Written};
use crate::auth::Auth;
use crate::mapping::event::EventSpec;
use crate::mapping::params::Step;

#[derive(Debug)]
pub struct Standard;

impl Provider for Standard {
    fn name(&self) -> &'static str {
        "standard"
    }

    fn keys(&self) -> &'static [&'static str] {
        &["secret", "secrets", "tolerance", "event"]
    }

    fn auth(&self, keys: &mut dyn SourceKeys) -> Option<Auth> {
        match keys.signing_keys(&["secret", "secrets"]) {
            Written::Given(signing) => Some(Auth::Standard {
                keys: signing,
                tolerance: keys.tolerance()?,
            }),
            Written::Invalid => None,
            Written::Missing => {
                keys.error(
                    None,
                    "provider `standard` needs a `secret` (the endpoint's `whsec_...` signing secret, used to check `webhook-signature`)".into(),
                );
                None
            }
        }
    }

    fn event(&self, keys: &mut dyn SourceKeys) -> EventSpec {
        match keys.event() {
            Written::Given(spec) => spec,
            Written::Invalid => EventSpec::Fixed,
            Written::Missing => EventSpec::Field(vec![Step::Key("type".into())]),
        }
    }

    fn delivery_headers(&self) -> &'static [&'static str] {
        &["webhook-id", "svix-id"]
    }
}

//! Stripe: `Stripe-Signature: t=<time>,v1=<hex>` over `<time>.<body>`, the
//! event in the body's `type`, the delivery id in its `id`.

use super::{required, Provider, SourceKeys};
use crate::auth::Auth;
use crate::mapping::event::EventSpec;
use crate::mapping::params::Step;

#[derive(Debug)]
pub struct Stripe;

impl Provider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn keys(&self) -> &'static [&'static str] {
        &["secret", "secrets", "tolerance"]
    }

    fn auth(&self, keys: &mut dyn SourceKeys) -> Option<Auth> {
        let secrets = required(
            keys,
            &["secret", "secrets"],
            "provider `stripe` needs a `secret` (the endpoint's `whsec_...` signing secret, used to check `Stripe-Signature`)",
        )?;
        Some(Auth::Stripe {
            secrets,
            tolerance: keys.tolerance()?,
        })
    }

    fn event(&self, _keys: &mut dyn SourceKeys) -> EventSpec {
        EventSpec::Field(vec![Step::Key("type".into())])
    }

    fn delivery_field(&self) -> Option<&'static str> {
        Some("id")
    }
}

//! Gitea, Forgejo and Gogs: the event in `X-<Name>-Event`, the delivery id
//! in `X-<Name>-Delivery`, and the bare hex HMAC-SHA256 in
//! `X-<Name>-Signature` (over the body, or over the form's `payload` field
//! in form mode, which is what they sign).

use super::{required, Provider, SourceKeys};
use crate::auth::Auth;
use crate::mapping::event::EventSpec;

/// One of the Gitea family; they differ only in their names.
#[derive(Debug)]
pub struct GiteaLike {
    name: &'static str,
    event: &'static str,
    delivery: &'static [&'static str],
    signature: &'static str,
    needs: &'static str,
}

pub static GITEA: GiteaLike = GiteaLike {
    name: "gitea",
    event: "X-Gitea-Event",
    delivery: &["X-Gitea-Delivery"],
    signature: "X-Gitea-Signature",
    needs: "provider `gitea` needs a `secret` (the webhook's secret, used to check `X-Gitea-Signature`)",
};

pub static FORGEJO: GiteaLike = GiteaLike {
    name: "forgejo",
    event: "X-Forgejo-Event",
    delivery: &["X-Forgejo-Delivery"],
    signature: "X-Forgejo-Signature",
    needs: "provider `forgejo` needs a `secret` (the webhook's secret, used to check `X-Forgejo-Signature`)",
};

pub static GOGS: GiteaLike = GiteaLike {
    name: "gogs",
    event: "X-Gogs-Event",
    delivery: &["X-Gogs-Delivery"],
    signature: "X-Gogs-Signature",
    needs: "provider `gogs` needs a `secret` (the webhook's secret, used to check `X-Gogs-Signature`)",
};

impl Provider for GiteaLike {
    fn name(&self) -> &'static str {
        self.name
    }

    fn keys(&self) -> &'static [&'static str] {
        &["secret", "secrets"]
    }

    fn auth(&self, keys: &mut dyn SourceKeys) -> Option<Auth> {
        let secrets = required(keys, &["secret", "secrets"], self.needs)?;
        Some(Auth::Gitea {
            secrets,
            header: self.signature,
        })
    }

    fn event(&self, _keys: &mut dyn SourceKeys) -> EventSpec {
        EventSpec::Header(self.event.into())
    }

    fn delivery_headers(&self) -> &'static [&'static str] {
        self.delivery
    }
}

//! Reloading the config (SIGHUP, SIGUSR1, `server.watch_config`, `POST
//! /-/reload`): the new file is parsed and checked completely first; if
//! anything is wrong the old config stays in force. Tasks already queued or
//! running keep the program definition they started with. Listeners with TLS
//! present the certificate and key read by the reload to the connections made
//! after it; open connections keep theirs.

use crate::config::Listen;
use crate::config::{self, Config, ConfigErrors};
use crate::engine::Engine;
use crate::metrics::Metrics;
use std::path::Path;
use std::sync::Arc;

/// What a reload changes, and where the new config comes from.
pub struct Reloadable<'a> {
    /// The config in force: swapped whole.
    pub config: &'a arc_swap::ArcSwap<Config>,
    pub path: &'a Path,
    /// `--listen`, which a reload keeps.
    pub listen_override: Option<&'a [Listen]>,
    /// The certificates of the listeners with TLS, swapped by a reload.
    pub certs: &'a crate::tls::Certs,
    pub engine: &'a Engine,
    pub metrics: &'a Metrics,
}

/// What a reload did.
#[derive(Debug)]
pub struct Reloaded {
    pub warnings: Vec<String>,
}

/// Why the config was not reloaded (the old one stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
    #[error("{at}: `server.listen` changed from {from} to {to}: a restart is needed to change the listeners")]
    ListenChanged { at: String, from: String, to: String },
    #[error("{at}: `state` changed: a restart is needed to move the store")]
    StateChanged { at: String },
    #[error("{at}: `node` changed: a restart is needed to change the node's name, labels or lease")]
    NodeChanged { at: String },
    #[error("{0}")]
    Node(String),
}

/// Loads the config file again and puts it in force, or says why not.
pub fn reload(r: Reloadable<'_>) -> Result<Reloaded, ReloadError> {
    let result = try_reload(&r);
    r.metrics.reload(result.is_ok());
    match &result {
        Ok(done) => {
            for w in &done.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!(config = %r.path.display(), "config reloaded");
        }
        Err(e) => {
            tracing::error!(config = %r.path.display(), "config not reloaded; the old one stays in force: {e}")
        }
    }
    result
}

fn try_reload(r: &Reloadable<'_>) -> Result<Reloaded, ReloadError> {
    let mut new = config::load(r.path)?;
    let old = r.config.load();
    if let Some(listen) = r.listen_override {
        new.server.listen = listen.to_vec();
    }
    if !config::same_sockets(&new.server.listen, &old.server.listen) {
        return Err(ReloadError::ListenChanged {
            at: config::position_of(r.path, &["server", "listen"]),
            from: describe(&old.server.listen),
            to: describe(&new.server.listen),
        });
    }
    if new.state != old.state {
        return Err(ReloadError::StateChanged {
            at: config::position_of(r.path, &["state"]),
        });
    }
    // `--node-name` and `--node-labels` still hold, and so do the node's checks.
    new.override_node(old.node_override.clone())
        .map_err(ReloadError::Node)?;
    if new.node != old.node {
        return Err(ReloadError::NodeChanged {
            at: config::position_of(r.path, &["node"]),
        });
    }
    // Everything is checked: from here on the new config goes in force.
    swap_certificates(&new.server.listen, r.certs);
    r.engine.set_limits(new.limits.clone());
    let warnings = std::mem::take(&mut new.warnings);
    let new = Arc::new(new);
    r.engine.set_programs(new.programs());
    r.config.store(new);
    Ok(Reloaded { warnings })
}

/// `[a, b (TLS)]`, for messages.
fn describe(listen: &[Listen]) -> String {
    let all: Vec<String> = listen.iter().map(|l| format!("`{l}`")).collect();
    all.join(", ")
}

/// Puts the certificates the new config read in force for the handshakes
/// from now on (the listeners are the same ones: checked before).
fn swap_certificates(listen: &[Listen], certs: &crate::tls::Certs) {
    for (i, l) in listen.iter().enumerate() {
        let (Some(tls), Some(Some(resolver))) = (&l.tls, certs.0.get(i)) else {
            continue;
        };
        if resolver.swap(&tls.pair) {
            tracing::info!(listener = %l.address, cert = %tls.cert.display(), "TLS certificate reloaded: new connections get the new one");
        }
    }
}

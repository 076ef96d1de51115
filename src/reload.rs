//! Reloading the config (SIGHUP, `server.watch_config`, `POST /-/reload`): the
//! new file is parsed and checked completely first; if anything is wrong the
//! old config stays in force. Tasks already queued or running keep the
//! program definition they started with.

use crate::config;
use crate::http::AppState;
use std::sync::Arc;

/// What a reload did.
#[derive(Debug)]
pub struct Reloaded {
    pub warnings: Vec<String>,
}

/// Loads the config file again and puts it in force, or says why not.
pub fn reload(state: &AppState) -> Result<Reloaded, String> {
    let result = try_reload(state);
    state.metrics.reload(result.is_ok());
    match &result {
        Ok(r) => {
            for w in &r.warnings {
                tracing::warn!("{w}");
            }
            tracing::info!(config = %state.config_path.display(), "config reloaded");
        }
        Err(e) => {
            tracing::error!(config = %state.config_path.display(), "config not reloaded; the old one stays in force: {e}")
        }
    }
    result
}

fn try_reload(state: &AppState) -> Result<Reloaded, String> {
    let mut new = config::load(&state.config_path).map_err(|e| e.to_string())?;
    let old = state.config();
    if let Some(listen) = state.listen_override {
        new.server.listen = listen;
    }
    if new.server.listen != old.server.listen {
        return Err(format!(
            "`server.listen` changed from {} to {}: a restart is needed to change the listener",
            old.server.listen, new.server.listen
        ));
    }
    if new.state != old.state {
        return Err("`state.path` changed: a restart is needed to move the store".to_string());
    }
    state.engine.set_limits(new.limits.clone());
    let warnings = std::mem::take(&mut new.warnings);
    state.config.store(Arc::new(new));
    Ok(Reloaded { warnings })
}

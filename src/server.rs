//! Starting and stopping the daemon: bind, serve, and on SIGTERM or SIGINT
//! stop accepting, then drain the task engine.

use crate::config::Config;
use crate::delivery::{DedupCache, DeliveryLog};
use crate::engine::Engine;
use crate::http::{self, AppState};
use actix_web::{web, App, HttpServer};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

/// The HTTP server, bound and ready to run.
pub struct Application {
    server: actix_web::dev::Server,
    addr: SocketAddr,
}

impl Application {
    /// Binds `config.server.listen` (port 0 picks a free port) and builds the server.
    pub fn build(config: Arc<Config>, engine: Engine, store: Option<crate::store::Store>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.server.listen)?;
        let addr = listener.local_addr()?;
        let dedup = DedupCache::default();
        if let Some(store) = &store {
            refill_dedup(&config, store, &dedup);
        }
        let deliveries = DeliveryLog::new(config.deliveries.keep, config.deliveries.body_bytes, store);
        let state = web::Data::new(AppState { config, engine, deliveries, dedup });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(http::configure)
                .default_service(web::to(http::not_found))
        })
        .listen(listener)?
        // Signals are ours: the engine must drain after the server stops.
        .disable_signals()
        .shutdown_timeout(10)
        .run();
        Ok(Application { server, addr })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Remembers the delivery ids received shortly before a restart, so a
/// redelivery inside the window still runs nothing.
fn refill_dedup(config: &Config, store: &crate::store::Store, dedup: &DedupCache) {
    use crate::config::DedupKey;
    let longest = config
        .sources
        .values()
        .filter_map(|s| s.dedup.as_ref().filter(|d| d.key == DedupKey::DeliveryId).map(|d| d.window))
        .max();
    let Some(longest) = longest else { return };
    let now = std::time::SystemTime::now();
    let Ok(recent) = store.recent_deliveries(now - longest) else { return };
    for (source, delivery_id, record_id, received_ms) in recent {
        let Some(window) = config.sources.get(&source).and_then(|s| s.dedup.as_ref()).filter(|d| d.key == DedupKey::DeliveryId) else {
            continue;
        };
        let received = std::time::UNIX_EPOCH + Duration::from_millis(received_ms.max(0) as u64);
        let age = now.duration_since(received).unwrap_or_default();
        dedup.remember(&source, &delivery_id, window.window.saturating_sub(age), &record_id);
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then stops accepting deliveries,
/// lets tasks finish for up to `grace`, stops the rest, and returns.
pub fn serve(config: Config) -> Result<(), String> {
    let grace = config.limits.shutdown_grace;
    // Handlers run here, not on actix's worker runtimes, which are dropped at shutdown.
    let engine_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("hookrunner-engine")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the task runtime: {e}"))?;
    let store = match &config.state {
        Some(path) => {
            let retention = crate::store::Retention {
                tasks: config.limits.keep,
                tasks_for: config.limits.keep_for,
                deliveries: config.deliveries.keep,
                body_bytes: config.deliveries.body_bytes,
            };
            let store = crate::store::Store::open(path, retention).map_err(|e| e.to_string())?;
            tracing::info!(store = %path.display(), "state is kept in the store");
            Some(store)
        }
        None => {
            tracing::warn!("no `state:` in the config: tasks and deliveries live in memory only and are lost on restart");
            None
        }
    };
    let engine = Engine::new(config.limits.clone(), engine_runtime.handle().clone(), store.clone());
    {
        // Recovery spawns timers on the engine runtime.
        let _guard = engine_runtime.enter();
        let found = engine.recover(&config).map_err(|e| e.to_string())?;
        if found.queued + found.interrupted + found.orphaned + found.callbacks > 0 {
            tracing::info!(
                queued = found.queued,
                interrupted = found.interrupted,
                rerun = found.rerun,
                orphaned = found.orphaned,
                callbacks = found.callbacks,
                "recovered unfinished work from the store"
            );
        }
    }
    engine.start_retention(config.limits.keep_for);
    let config = Arc::new(config);

    actix_web::rt::System::new().block_on({
        let engine = engine.clone();
        let store = store.clone();
        async move {
            let listen = config.server.listen;
            let app = Application::build(config, engine, store)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            tracing::info!("listening on http://{}", app.addr());
            let handle = app.server.handle();
            let server = actix_web::rt::spawn(app.server);
            let signal = wait_for_signal().await;
            tracing::info!(
                signal,
                "stopping: no new deliveries; running and queued tasks get up to {} to finish",
                humantime::format_duration(grace)
            );
            handle.stop(true).await;
            let _ = server.await;
            Ok::<(), String>(())
        }
    })?;

    engine_runtime.block_on(engine.shutdown(grace));
    if let Some(store) = &store {
        store.close();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// The default for `tasks.shutdown_grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

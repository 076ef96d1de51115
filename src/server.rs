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
    pub fn build(config: Arc<Config>, engine: Engine) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.server.listen)?;
        let addr = listener.local_addr()?;
        let deliveries = DeliveryLog::new(config.deliveries.keep, config.deliveries.body_bytes);
        let state = web::Data::new(AppState { config, engine, deliveries, dedup: DedupCache::default() });
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
    let engine = Engine::new(config.limits.clone(), engine_runtime.handle().clone());
    engine.start_retention(config.limits.keep_for);
    let config = Arc::new(config);

    actix_web::rt::System::new().block_on({
        let engine = engine.clone();
        async move {
            let listen = config.server.listen;
            let app = Application::build(config, engine)
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

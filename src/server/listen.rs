//! The HTTP server: actix-web's app on actix-http's HTTP/1 service, on the
//! listeners the config asks for.
//!
//! It is assembled here rather than with `HttpServer` so that a connection the
//! HTTP layer refuses (a bad request line, a bad `Content-Length`, headers
//! that are too large, a client that never finishes its request) is logged by
//! us, at warn level, rate-limited, with the client's address; actix-http's
//! own `ERROR` line for it is switched off in the log filter (`cli.rs`).

use crate::http::{self, AppState};
use actix_service::{map_config, Service, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use actix_web::{web, App};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a client may take to send its request head.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the server on `listener`; it starts accepting when awaited.
pub fn server(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<actix_web::dev::Server> {
    let addr = listener.local_addr()?;
    actix_server::Server::build()
        // Signals are ours: the engine drains before the server stops.
        .disable_signals()
        .shutdown_timeout(5)
        .listen("hookrunner-http", listener, move || {
            let state = state.clone();
            let app = App::new()
                .app_data(state)
                .configure(http::configure)
                .default_service(web::to(http::not_found));
            let http = actix_http::HttpService::build()
                .client_request_timeout(REQUEST_HEAD_TIMEOUT)
                .local_addr(addr)
                // `AppConfig` only feeds `ConnectionInfo` and `url_for`, which nothing uses.
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp();
            LogRefusals(http.map_init_err(|_| ()))
        })
        .map(|b| b.run())
}

/// The HTTP service, with each connection's error logged with its client.
pub struct LogRefusals<T>(T);

impl<T> actix_service::ServiceFactory<TcpStream> for LogRefusals<T>
where
    T: actix_service::ServiceFactory<TcpStream, Config = (), Response = (), InitError = ()>,
    T::Error: std::fmt::Display,
    T::Service: 'static,
    T::Future: 'static,
{
    type Response = ();
    type Error = ();
    type Config = ();
    type Service = LogRefusalsService<T::Service>;
    type InitError = ();
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self::Service, ()>>;

    fn new_service(&self, cfg: ()) -> Self::Future {
        let fut = self.0.new_service(cfg);
        Box::pin(async move { fut.await.map(|s| LogRefusalsService(std::rc::Rc::new(s))) })
    }
}

pub struct LogRefusalsService<S>(std::rc::Rc<S>);

impl<S> Service<TcpStream> for LogRefusalsService<S>
where
    S: Service<TcpStream, Response = ()> + 'static,
    S::Error: std::fmt::Display,
{
    type Response = ();
    type Error = ();
    type Future = futures_util::future::LocalBoxFuture<'static, Result<(), ()>>;

    fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), ()>> {
        self.0.poll_ready(cx).map_err(|e| refused(None, &e.to_string()))
    }

    fn call(&self, io: TcpStream) -> Self::Future {
        let peer = io.peer_addr().ok();
        let service = self.0.clone();
        Box::pin(async move { service.call(io).await.map_err(|e| refused(peer, &e.to_string())) })
    }
}

/// At most one line per this long; the rest are counted.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

static LAST_REFUSAL_LOG: Mutex<Option<Instant>> = Mutex::new(None);
static SUPPRESSED_REFUSALS: AtomicU64 = AtomicU64::new(0);

/// Logs a connection the HTTP layer refused: warn, at most once per
/// [`REFUSAL_LOG_EVERY`] (a stranger must not be able to flood the log),
/// with how many were not logged since. A client that just went away is debug.
fn refused(peer: Option<SocketAddr>, error: &str) {
    let client = peer.map_or_else(|| "unknown".to_string(), |p| p.ip().to_string());
    let boring = error.contains("Connection reset")
        || error.contains("Broken pipe")
        || error.starts_with("IO error")
        || error.contains("disconnect");
    if boring {
        tracing::debug!(%client, error, "connection closed with an error");
        return;
    }
    let now = Instant::now();
    let due = {
        let mut last = LAST_REFUSAL_LOG.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY);
        if due {
            *last = Some(now);
        }
        due
    };
    if due {
        let suppressed = SUPPRESSED_REFUSALS.swap(0, Ordering::Relaxed);
        tracing::warn!(%client, error, suppressed, "request refused by the HTTP layer");
    } else {
        SUPPRESSED_REFUSALS.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%client, error, "request refused by the HTTP layer");
    }
}

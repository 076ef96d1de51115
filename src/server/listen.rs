//! The HTTP server: actix-web's app on actix-http's HTTP/1 service, on the
//! sockets [`super::bind`] opened: plain TCP, TCP with TLS (rustls), and Unix
//! sockets.
//!
//! It is assembled here rather than with `HttpServer` so that a connection the
//! HTTP layer refuses (a bad request line, a bad `Content-Length`, headers
//! that are too large, a client that never finishes its request, a failed TLS
//! handshake) is logged by us, at warn level, rate-limited, with the client's
//! address; actix-http's own `ERROR` line for it is switched off in the log
//! filter (`cli.rs`).

use super::bind::{Bound, Socket};
use crate::http::{self, AppState};
use crate::logging::Throttle;
use actix_http::error::DispatchError;
use actix_http::Protocol;
use actix_service::{fn_service, map_config, Service, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::rt::net::{TcpStream, UnixStream};
use actix_web::{web, App};
use std::time::Duration;

/// How long a client may take to send its request head.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The app, and the HTTP/1 service on it for connections of type `$io`,
/// after `$tweak` set what differs between kinds of listener.
macro_rules! http_service {
    ($state:expr, |$b:ident| $tweak:expr) => {{
        let app = App::new()
            .app_data($state)
            .configure(http::configure)
            .default_service(web::to(http::not_found));
        let $b = actix_http::HttpService::build().client_request_timeout(REQUEST_HEAD_TIMEOUT);
        $tweak
            // `AppConfig` only feeds `ConnectionInfo` and `url_for`, which nothing uses.
            .finish(map_config(app, |_| AppConfig::default()))
    }};
}

/// Builds the server on `bound`; it starts accepting when awaited.
pub fn server(bound: Vec<Bound>, state: web::Data<AppState>) -> std::io::Result<actix_web::dev::Server> {
    let mut builder = actix_server::Server::build()
        // Signals are ours: the engine drains before the server stops.
        .disable_signals()
        .shutdown_timeout(5);
    for (i, b) in bound.into_iter().enumerate() {
        let name = format!("hookrunner-http-{i}");
        let state = state.clone();
        builder = match (b.socket, b.tls) {
            (Socket::Tcp(listener), None) => {
                let addr = listener.local_addr()?;
                builder.listen(name, listener, move || {
                    let http = http_service!(state.clone(), |b| b.local_addr(addr)).tcp();
                    LogRefusals(http.map_init_err(|_| ()))
                })?
            }
            (Socket::Tcp(listener), Some(resolver)) => {
                let addr = listener.local_addr()?;
                builder.listen(name, listener, move || {
                    // The resolver is shared: a reload's new pair serves every worker.
                    let http =
                        http_service!(state.clone(), |b| b.local_addr(addr)).rustls_0_23(resolver.server_config());
                    LogRefusals(http.map_init_err(|_| ()))
                })?
            }
            (Socket::Unix(listener), _) => builder.listen_uds(name, listener, move || {
                let http = http_service!(state.clone(), |b| b.on_connect_ext(
                    |_: &UnixStream, data: &mut actix_http::Extensions| {
                        data.insert(http::UnixPeer);
                    }
                ));
                let http =
                    fn_service(|io: UnixStream| async move { Ok::<_, DispatchError>((io, Protocol::Http1, None)) })
                        .and_then(http);
                LogRefusals(http.map_init_err(|_| ()))
            })?,
        };
    }
    Ok(builder.run())
}

/// Who is at the other end of a connection, for the log.
pub trait Peer {
    fn peer(&self) -> String;
}

impl Peer for TcpStream {
    fn peer(&self) -> String {
        self.peer_addr()
            .map_or_else(|_| "unknown".to_string(), |p| p.ip().to_string())
    }
}

impl Peer for UnixStream {
    fn peer(&self) -> String {
        "unix socket".to_string()
    }
}

/// What went wrong with a connection, in words (actix-tls's own `Display`
/// leaves the cause out).
pub trait Describe {
    fn describe(&self) -> String;
    /// A client that went away or never spoke: not worth a warning.
    fn boring(&self) -> bool;
}

impl Describe for DispatchError {
    fn describe(&self) -> String {
        self.to_string()
    }
    fn boring(&self) -> bool {
        let error = self.to_string();
        error.contains("Connection reset")
            || error.contains("Broken pipe")
            || error.starts_with("IO error")
            || error.contains("disconnect")
    }
}

impl Describe for actix_tls::accept::TlsError<std::io::Error, DispatchError> {
    fn describe(&self) -> String {
        use actix_tls::accept::TlsError;
        match self {
            TlsError::Timeout => "TLS handshake timed out".to_string(),
            TlsError::Tls(e) => format!("TLS handshake failed: {e}"),
            TlsError::Service(e) => e.describe(),
        }
    }
    fn boring(&self) -> bool {
        use actix_tls::accept::TlsError;
        use std::io::ErrorKind;
        match self {
            // A port check that connects and leaves.
            TlsError::Tls(e) => matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ),
            TlsError::Timeout => false,
            TlsError::Service(e) => e.boring(),
        }
    }
}

/// The HTTP service, with each connection's error logged with its client.
pub struct LogRefusals<T>(T);

impl<T, Io> actix_service::ServiceFactory<Io> for LogRefusals<T>
where
    Io: Peer + 'static,
    T: actix_service::ServiceFactory<Io, Config = (), Response = (), InitError = ()>,
    T::Error: Describe,
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

impl<S, Io> Service<Io> for LogRefusalsService<S>
where
    Io: Peer + 'static,
    S: Service<Io, Response = ()> + 'static,
    S::Error: Describe,
{
    type Response = ();
    type Error = ();
    type Future = futures_util::future::LocalBoxFuture<'static, Result<(), ()>>;

    fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), ()>> {
        self.0.poll_ready(cx).map_err(|e| refused("unknown", &e))
    }

    fn call(&self, io: Io) -> Self::Future {
        let peer = io.peer();
        let service = self.0.clone();
        Box::pin(async move { service.call(io).await.map_err(|e| refused(&peer, &e)) })
    }
}

/// At most one line per 10 s; the rest are counted.
static REFUSALS: Throttle = Throttle::new(Duration::from_secs(10), 1);

/// Logs a connection the HTTP layer refused: warn, at most once per 10 s (a
/// stranger must not be able to flood the log), with how many were not
/// logged since. A client that just went away is debug.
fn refused(client: &str, error: &impl Describe) {
    let boring = error.boring();
    let error = error.describe();
    if boring {
        tracing::debug!(%client, error, "connection closed with an error");
        return;
    }
    match REFUSALS.admit() {
        Some(suppressed) => tracing::warn!(%client, error, suppressed, "request refused by the HTTP layer"),
        None => tracing::debug!(%client, error, "request refused by the HTTP layer"),
    }
}

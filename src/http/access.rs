//! Who may read the task API: a bearer token from `api.tokens`, or, when
//! none is configured, clients on loopback only, and then only requests a
//! web page elsewhere cannot have made: addressed to a loopback host name
//! (against DNS rebinding) and, when they change something, not sent
//! cross-site (against CSRF). A browser on this machine is a loopback
//! client, so without a token the loopback rule alone would let any page it
//! opens use the API.

use super::error::ApiError;
use super::AppState;
use crate::auth::ip::{client_ip, Client};
use actix_web::http::header;
use actix_web::http::Method;
use actix_web::HttpRequest;
use std::net::{IpAddr, Ipv4Addr};

/// Marks a connection made through a Unix socket (`server.listen: unix:...`):
/// its peer is a process on this machine, as a loopback client is, and the
/// socket file's mode says who may connect.
#[derive(Debug, Clone, Copy)]
pub struct UnixPeer;

/// The connection's peer (a Unix socket's counts as 127.0.0.1).
fn peer_ip(req: &HttpRequest) -> IpAddr {
    match req.peer_addr() {
        Some(a) => a.ip(),
        None if req.conn_data::<UnixPeer>().is_some() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// The client, honouring `X-Forwarded-For` (every line) from trusted proxies only.
pub fn client_addr(req: &HttpRequest, state: &AppState) -> Client {
    let lines = req.headers().get_all("x-forwarded-for").map(|v| v.as_bytes());
    client_ip(peer_ip(req), lines, &state.config().server.trusted_proxies)
}

/// Whether the request says it was forwarded for someone this daemon
/// cannot name: `X-Forwarded-For` from a peer that `server.trusted_proxies`
/// does not list, or `Forwarded` / `X-Real-IP`, which it never reads. A
/// reverse proxy on this machine is a loopback peer, but its clients are not.
fn forwarded_for_someone_unknown(req: &HttpRequest, trusted_proxies: &[ipnet::IpNet]) -> bool {
    let headers = req.headers();
    headers.contains_key("forwarded")
        || headers.contains_key("x-real-ip")
        || (headers.contains_key("x-forwarded-for") && !crate::auth::ip::contains(trusted_proxies, peer_ip(req)))
}

pub fn authorize_api(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let config = state.config();
    let tokens = &config.api_tokens;
    if tokens.is_empty() {
        let client = client_addr(req, state);
        if !client.is_loopback() {
            return Err(ApiError::Forbidden(format!(
                "the task API answers only loopback clients while `api.tokens` is empty, and {client} is not one"
            )));
        }
        if forwarded_for_someone_unknown(req, &config.server.trusted_proxies) {
            return Err(ApiError::Forbidden(
                "the task API answers only loopback clients while `api.tokens` is empty, and this request came through a proxy for a client it cannot name (`X-Forwarded-For` from a proxy not in `server.trusted_proxies`, or `Forwarded` or `X-Real-IP`); set `api.tokens`".into(),
            ));
        }
        if !peer_is_local(req) {
            // A loopback address forwarded by a proxy on another machine is
            // that machine's loopback, not ours.
            return Err(ApiError::Forbidden(
                "the task API answers only loopback clients while `api.tokens` is empty, and this request came through a proxy on another machine".into(),
            ));
        }
        // A Unix socket cannot be reached from a web page; a TCP request can,
        // from any page the browser on this machine opens.
        if req.conn_data::<UnixPeer>().is_none() && !names_loopback_host(req) {
            return Err(ApiError::Forbidden(
                "while `api.tokens` is empty the task API answers only requests addressed to localhost, 127.0.0.1 or [::1] (another host name could be a DNS-rebinding web page); set `api.tokens` to use it by another name".into(),
            ));
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) && sent_cross_site(req) {
            return Err(ApiError::Forbidden(
                "while `api.tokens` is empty the task API takes no request that changes something from another web site (cross-site request forgery); use the dashboard at /ui on this daemon, the CLI, or `api.tokens`".into(),
            ));
        }
        return Ok(());
    }
    // Two tokens where one is read: fail closed rather than pick one.
    if req.headers().get_all(header::AUTHORIZATION).count() > 1 {
        return Err(ApiError::Unauthorized(
            "the `Authorization` header was sent more than once; send one API token".into(),
        ));
    }
    let sent = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::trim);
    let Some(sent) = sent else {
        return Err(ApiError::Unauthorized(
            "send an API token as `Authorization: Bearer <token>`".into(),
        ));
    };
    // Compare against every token so the time taken does not tell which matched.
    let matched = tokens.iter().fold(false, |acc, t| acc | t.matches(sent.as_bytes()));
    if matched {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("the API token is not valid".into()))
    }
}

/// The right a long answer (an event stream) was opened with, kept so the
/// stream can end once a reload withdraws it: a token that `api.tokens` no
/// longer lists, or a token-less loopback client after tokens were set.
pub struct Grant {
    /// The bearer token it was opened with; none under the loopback rule.
    token: Option<Vec<u8>>,
    /// The config it was judged under (while it is in force, nothing changed).
    config: std::sync::Arc<crate::config::Config>,
}

impl Grant {
    /// Whether the config in force still lets this stream go on.
    pub fn holds(&self, state: &AppState) -> bool {
        let now = state.config();
        if std::sync::Arc::ptr_eq(&now, &self.config) {
            return true;
        }
        match (&self.token, now.api_tokens.is_empty()) {
            // Still under the loopback rule; the client is who it was.
            (None, true) => true,
            (Some(sent), false) => now.api_tokens.iter().fold(false, |acc, t| acc | t.matches(sent)),
            // Tokens were set since (it has none), or all were removed
            // (it is judged by the loopback rule when it connects again).
            _ => false,
        }
    }
}

/// [`authorize_api`], keeping what a stream needs to check again later.
pub fn authorize_stream(req: &HttpRequest, state: &AppState) -> Result<Grant, ApiError> {
    authorize_api(req, state)?;
    let config = state.config();
    let token = (!config.api_tokens.is_empty())
        .then(|| {
            req.headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer)
                .map(|t| t.trim().as_bytes().to_vec())
        })
        .flatten();
    Ok(Grant { token, config })
}

/// How often a quiet stream checks that its [`Grant`] still holds.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// `inner`, ended as soon as `grant` no longer holds (checked before every
/// item, and every 2 s while nothing comes).
pub fn guarded<S>(
    inner: S,
    grant: Grant,
    state: actix_web::web::Data<AppState>,
) -> impl futures_util::Stream<Item = S::Item>
where
    S: futures_util::Stream + Unpin,
{
    use futures_util::StreamExt;
    futures_util::stream::unfold((inner, grant, state), |(mut inner, grant, state)| async move {
        loop {
            if !grant.holds(&state) {
                tracing::info!("a stream of the API ended: a reload withdrew the access it was opened with");
                return None;
            }
            tokio::select! {
                item = inner.next() => return item.map(|i| (i, (inner, grant, state))),
                _ = tokio::time::sleep(RECHECK) => {}
            }
        }
    })
}

/// The credentials of `Authorization: Bearer <token>`; the scheme's name
/// in any case (`bearer`, `BEARER`), as HTTP says it is.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest)
}

/// Whether the connection itself comes from this machine (loopback, or a
/// Unix socket), whatever `X-Forwarded-For` says.
fn peer_is_local(req: &HttpRequest) -> bool {
    match req.peer_addr() {
        Some(a) => a.ip().to_canonical().is_loopback(),
        None => req.conn_data::<UnixPeer>().is_some(),
    }
}

/// The authority the request was sent to (`Host`, or HTTP/2's `:authority`).
fn authority(req: &HttpRequest) -> Option<&str> {
    match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok().or(Some("")),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

/// Whether the request names a loopback host: `localhost` (or a name under
/// `.localhost`, which browsers resolve to loopback themselves), an address
/// in 127.0.0.0/8 or `[::1]`, with or without a port. A request naming no
/// host at all (HTTP/1.0) cannot come from a browser and passes.
fn names_loopback_host(req: &HttpRequest) -> bool {
    authority(req).is_none_or(is_loopback_authority)
}

fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        // `[::1]` or `[::1]:9000`
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.strip_prefix(':').is_some_and(is_port) => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
            }
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return false,
            None => authority,
        },
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost") || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(digits: &str) -> bool {
    !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a browser says it sent this request from another page than the
/// daemon's own: `Sec-Fetch-Site` other than `same-origin` or `none` (typed
/// by the user), or, from a browser too old to send it, an `Origin` whose
/// host is not the one the request is addressed to. The CLI and scripts send
/// neither header.
fn sent_cross_site(req: &HttpRequest) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let origin_authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")));
    match (origin_authority, authority(req)) {
        (Some(from), Some(to)) => !from.eq_ignore_ascii_case(to),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::{is_loopback_authority, peer_is_local};
    use actix_web::test::TestRequest;

    #[test]
    fn a_forwarded_loopback_address_needs_a_local_proxy() {
        let through = |peer: &str| {
            let req = TestRequest::default()
                .peer_addr(peer.parse().unwrap())
                .insert_header(("X-Forwarded-For", "127.0.0.1"))
                .to_http_request();
            peer_is_local(&req)
        };
        assert!(through("127.0.0.1:40000"));
        assert!(through("[::1]:40000"));
        assert!(through("[::ffff:127.0.0.1]:40000"));
        assert!(!through("192.0.2.2:40000"));
        assert!(!through("[2001:db8::2]:40000"));
    }

    #[test]
    fn loopback_authorities() {
        for a in [
            "localhost",
            "localhost:9000",
            "LocalHost.:80",
            "app.localhost:3000",
            "127.0.0.1",
            "127.0.0.1:9000",
            "127.9.8.7:1",
            "[::1]",
            "[::1]:9000",
        ] {
            assert!(is_loopback_authority(a), "{a}");
        }
        for a in [
            "",
            "attacker.example",
            "attacker.example:9000",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:9000",
            "[::2]:9000",
            "[::1",
            "[::1]x",
            "localhost:",
            "localhost:99999x",
            "::1",
            "127.0.0.1:9000:1",
        ] {
            assert!(!is_loopback_authority(a), "{a}");
        }
    }
}

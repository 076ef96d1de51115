//! Who may read the task API: a bearer token from `api.tokens`, or, when
//! none is configured, clients on loopback only.

use super::error::ApiError;
use super::AppState;
use crate::auth::ip::{client_ip, Client};
use actix_web::http::header;
use actix_web::HttpRequest;
use std::net::{IpAddr, Ipv4Addr};

/// Marks a connection made through a Unix socket (`server.listen: unix:...`):
/// its peer is a process on this machine, as a loopback client is, and the
/// socket file's mode says who may connect.
#[derive(Debug, Clone, Copy)]
pub struct UnixPeer;

/// The client, honouring `X-Forwarded-For` (every line) from trusted proxies only.
pub fn client_addr(req: &HttpRequest, state: &AppState) -> Client {
    let peer = match req.peer_addr() {
        Some(a) => a.ip(),
        None if req.conn_data::<UnixPeer>().is_some() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let lines = req.headers().get_all("x-forwarded-for").map(|v| v.as_bytes());
    client_ip(peer, lines, &state.config().server.trusted_proxies)
}

pub fn authorize_api(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let config = state.config();
    let tokens = &config.api_tokens;
    if tokens.is_empty() {
        let client = client_addr(req, state);
        return if client.is_loopback() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the task API answers only loopback clients while `api.tokens` is empty, and {client} is not one"
            )))
        };
    }
    let sent = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
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

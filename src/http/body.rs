//! Reading a request body within `server.max_body`.

use crate::intake::Refused;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::time::Duration;

/// How long a sender may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a refused (too large) body is still read, and thrown away,
/// so that a sender that writes its whole body before reading the answer
/// gets the 413 instead of a broken connection; and for how long at most.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads the whole body, refusing more than `limit` bytes (413) before reading it all.
pub async fn read(headers: &HeaderMap, mut payload: web::Payload, limit: usize) -> Result<Bytes, Refused> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // A sender waiting for `100 Continue` has not sent the body: it
        // reads the 413 at once.
        let waits = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !waits && declared.is_some_and(|n| n <= DRAIN_LIMIT) {
            drain(&mut payload, limit as u64).await;
        }
        return Err(Refused::TooLarge { limit });
    }
    let result = read_within(declared, &mut payload, limit).await;
    if matches!(result, Err(Refused::TooLarge { .. })) {
        drain(&mut payload, limit as u64).await;
    }
    result
}

/// Reads and discards the rest of a refused body, up to [`DRAIN_LIMIT`]
/// bytes in all (`read` already had up to `limit`) and [`DRAIN_TIME`].
async fn drain(payload: &mut web::Payload, read: u64) {
    let discard = async {
        let mut seen = read;
        while let Some(Ok(chunk)) = payload.next().await {
            seen += chunk.len() as u64;
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// Why a body could not be read, as one sentence (the library's own text
/// can end in Rust's debug output, `...: None`).
fn unreadable_body(e: &actix_web::error::PayloadError) -> String {
    use actix_web::error::PayloadError as P;
    let why = match e {
        P::Incomplete(_) => "it ended before it was complete (a malformed chunk, or the connection closed)",
        P::EncodingCorrupted => "its content encoding is corrupt",
        P::Overflow => "it is larger than allowed",
        P::UnknownLength => "its length cannot be told",
        _ => "the connection failed while it was read",
    };
    format!("the request body could not be read: {why}")
}

async fn read_within(declared: Option<u64>, payload: &mut web::Payload, limit: usize) -> Result<Bytes, Refused> {
    let capacity = declared.map(|n| n as usize).unwrap_or(8192).min(limit);
    let read_all = async {
        let mut body = BytesMut::with_capacity(capacity);
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| Refused::BadRequest(unreadable_body(&e)))?;
            if body.len() + chunk.len() > limit {
                return Err(Refused::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(BODY_TIMEOUT, read_all)
        .await
        .map_err(|_| Refused::BodyTimeout)?
}

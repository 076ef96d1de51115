//! Reading a request body within `server.max_body`.

use crate::intake::Refused;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::time::Duration;

/// How long a sender may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the whole body, refusing more than `limit` bytes (413) before reading it all.
pub async fn read(headers: &HeaderMap, mut payload: web::Payload, limit: usize) -> Result<Bytes, Refused> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refused::TooLarge { limit });
    }
    let capacity = declared.map(|n| n as usize).unwrap_or(8192).min(limit);
    let read_all = async {
        let mut body = BytesMut::with_capacity(capacity);
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| Refused::BadRequest(format!("the request body could not be read: {e}")))?;
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

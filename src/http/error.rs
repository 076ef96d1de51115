//! Every error answer: the right status and `{"error": "<one sentence>"}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

/// Seconds a sender is asked to wait when the queue is full.
pub const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// The task API's bearer token is missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// A delivery's signature, token or credentials are missing or wrong.
    #[error("{message}")]
    BadCredentials { message: String, basic: bool },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The caller adds `Allow` (what the resource takes).
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the request body is larger than the limit of {limit} bytes (server.max_body)")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Conflict(String),
    /// Understood, but what it asks for cannot be done (a value no process can receive).
    #[error("{0}")]
    Unprocessable(String),
    #[error("the task queue is full; nothing of this delivery was accepted, retry later")]
    QueueFull,
    #[error("the daemon is shutting down; nothing of this delivery was accepted, retry later")]
    ShuttingDown,
    /// A stream asked for while the daemon stops: nothing more will come from this run.
    #[error("the daemon is shutting down; connect again once it is back")]
    Stopping,
    #[error("the store cannot write ({0}); nothing of this delivery was accepted, retry later")]
    StoreUnavailable(String),
    /// The store failed a read, or a change asked of a task (not a delivery).
    #[error("the store cannot be used just now ({0}); retry later")]
    Store(String),
    #[error("{0}")]
    NoNode(String),
    /// Another node of the cluster, which has what was asked for, cannot be reached.
    #[error("{0}")]
    NodeUnavailable(String),
}

impl From<crate::intake::Refused> for ApiError {
    fn from(r: crate::intake::Refused) -> Self {
        use crate::intake::Refused as R;
        match r {
            R::NotFound(m) => ApiError::NotFound(m),
            R::Forbidden(m) => ApiError::Forbidden(m),
            R::TooLarge { limit } => ApiError::PayloadTooLarge { limit },
            R::BodyTimeout => ApiError::BodyTimeout,
            R::BadCredentials { message, basic } => ApiError::BadCredentials { message, basic },
            R::UnsupportedMediaType(m) => ApiError::UnsupportedMediaType(m),
            R::BadRequest(m) => ApiError::BadRequest(m),
            R::Unprocessable(m) => ApiError::Unprocessable(m),
            R::Conflict(m) => ApiError::Conflict(m),
            R::QueueFull => ApiError::QueueFull,
            R::ShuttingDown => ApiError::ShuttingDown,
            R::StoreUnavailable(m) => ApiError::StoreUnavailable(m),
            R::NoNode(m) => ApiError::NoNode(m),
        }
    }
}

impl ApiError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) | ApiError::BadCredentials { .. } => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::PayloadTooLarge { .. } => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::QueueFull => "queue_full",
            ApiError::ShuttingDown | ApiError::Stopping => "shutting_down",
            ApiError::StoreUnavailable(_) | ApiError::Store(_) => "store_unavailable",
            ApiError::NoNode(_) => "no_node",
            ApiError::NodeUnavailable(_) => "node_unavailable",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::BadCredentials { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::QueueFull
            | ApiError::ShuttingDown
            | ApiError::Stopping
            | ApiError::StoreUnavailable(_)
            | ApiError::Store(_)
            | ApiError::NoNode(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NodeUnavailable(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::QueueFull
            | ApiError::ShuttingDown
            | ApiError::Stopping
            | ApiError::StoreUnavailable(_)
            | ApiError::Store(_)
            | ApiError::NoNode(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
            }
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::BadCredentials { basic: true, .. } => {
                response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"hookrunner\""));
            }
            _ => {}
        }
        // One sentence on one line, whatever a request put into it.
        let error = self.to_string();
        response.json(serde_json::json!({ "error": crate::logging::escape(&error) }))
    }
}

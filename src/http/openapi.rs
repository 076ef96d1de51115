//! `GET /openapi.json`: the OpenAPI 3.1 description of this API
//! (`openapi.json` beside this file, which `tests/openapi.rs` checks against
//! the routes and the live daemon), with the hooks under the configured
//! `server.prefix` and this version.

use super::error::ApiError;
use super::{access, AppState};
use actix_web::{web, HttpRequest, HttpResponse};

const DOC: &str = include_str!("openapi.json");

/// `GET /openapi.json` (same access rule as `/tasks`).
pub async fn serve(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    access::authorize_api(&req, &state)?;
    let prefix = state.config().server.prefix.clone();
    let hooks = serde_json::Value::String(format!("{prefix}/{{source}}")).to_string();
    let version = serde_json::Value::String(env!("CARGO_PKG_VERSION").into()).to_string();
    let doc = DOC
        .replacen("\"{prefix}/{source}\"", &hooks, 1)
        .replacen("\"VERSION\"", &version, 1);
    Ok(HttpResponse::Ok().content_type("application/json").body(doc))
}

//! `GET /nodes`: the nodes of the cluster (or this node alone), alive or not.

use super::access::authorize_api;
use super::error::ApiError;
use super::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize_api(&req, &state)?;
    let pg = state
        .engine
        .store()
        .and_then(|s| s.postgres())
        .filter(|_| state.engine.cluster().is_some());
    if let Some(pg) = pg {
        let nodes = pg.nodes().await.map_err(|e| ApiError::Store(e.to_string()))?;
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "clustered": true, "nodes": nodes })));
    }
    let config = state.config();
    let (running, _) = state.engine.counts();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "clustered": false,
        "nodes": [{
            "name": config.node.name,
            "labels": config.node.labels,
            "version": env!("CARGO_PKG_VERSION"),
            "status": "alive",
            "alive": true,
            "running": running,
        }],
    })))
}

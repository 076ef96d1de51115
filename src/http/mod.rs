//! The HTTP API: routes, shared state and error answers.

mod access;
mod body;
mod dashboard;
mod deliveries;
pub mod error;
mod events;
mod follow;
pub(crate) mod hooks;
mod nodes;
mod openapi;
mod proxy;
mod tasks;
mod ui;

pub use access::UnixPeer;
pub use deliveries::{parse_delivery_list_query, DeliveryListQuery};
pub use tasks::{parse_task_list_query, TaskListQuery};

use crate::config::Config;
use crate::delivery::{DedupCache, DeliveryLog};
use crate::engine::Engine;
use actix_web::{web, HttpRequest, HttpResponse};
use error::ApiError;
use std::sync::Arc;

/// What every request handler can reach.
pub struct AppState {
    /// Swapped whole on a reload; a request works with the config it started with.
    pub config: arc_swap::ArcSwap<Config>,
    /// `--listen`, which a reload keeps.
    pub listen_override: Option<Vec<crate::config::Listen>>,
    /// The certificates of the listeners with TLS, which a reload swaps.
    pub certs: crate::tls::Certs,
    /// The config file, for reloads.
    pub config_path: std::path::PathBuf,
    pub engine: Engine,
    pub deliveries: DeliveryLog,
    pub dedup: DedupCache,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// What a reload works with.
    pub fn reloadable(&self) -> crate::reload::Reloadable<'_> {
        crate::reload::Reloadable {
            config: &self.config,
            path: &self.config_path,
            listen_override: self.listen_override.as_deref(),
            certs: &self.certs,
            engine: &self.engine,
            metrics: &self.metrics,
        }
    }

    /// What admission works with, under `config`.
    pub(crate) fn intake<'a>(&'a self, config: &'a Config) -> crate::intake::Intake<'a> {
        crate::intake::Intake {
            config,
            engine: &self.engine,
            deliveries: &self.deliveries,
            dedup: &self.dedup,
            metrics: &self.metrics,
        }
    }

    /// Runs a read on the store; `None` when there is no store.
    pub(crate) async fn read_store<R, F, Fut>(&self, read: F) -> Result<Option<R>, ApiError>
    where
        F: FnOnce(crate::store::Store) -> Fut,
        Fut: std::future::Future<Output = Result<R, crate::store::StoreError>>,
    {
        let Some(store) = self.deliveries.store().cloned() else {
            return Ok(None);
        };
        read(store).await.map(Some).map_err(|e| ApiError::Store(e.to_string()))
    }
}

/// Parses a list endpoint's query string; the error names the filters it takes.
pub(crate) fn parse_query_string<T: serde::de::DeserializeOwned>(
    query_string: &str,
    filters: &str,
) -> Result<T, ApiError> {
    web::Query::<T>::from_query(query_string)
        .map(web::Query::into_inner)
        .map_err(|e| {
            let e = crate::logging::escape(&e.to_string()).into_owned();
            ApiError::BadRequest(format!("invalid query ({e}); filters are {filters}"))
        })
}

/// A list's paging cursor, answered as `next` and taken by `before`: `~`
/// and the sequence number of the oldest row the page read. It names a
/// place in the history, not a row, so it stays good when that row is gone.
pub(crate) fn cursor(seq: u64) -> String {
    format!("~{seq}")
}

/// The digits of `before` when it has a cursor's form (`~` and digits).
pub(crate) fn cursor_form(text: &str) -> Option<&str> {
    text.strip_prefix('~')
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// `before` read as a cursor (`~` and digits), if it is one.
pub(crate) fn parse_cursor(text: &str) -> Option<u64> {
    // Sequence numbers are stored as SQL BIGINT: a cursor past i64::MAX
    // names no place any store has (and would wrap there).
    cursor_form(text)?.parse().ok().filter(|n| i64::try_from(*n).is_ok())
}

/// A `?name=` value that must be one of `all` (by their names).
pub(crate) fn parse_choice<T: Copy>(
    name: &str,
    text: Option<&str>,
    all: &[T],
    as_str: fn(T) -> &'static str,
) -> Result<Option<T>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    match all.iter().copied().find(|c| as_str(*c) == text) {
        Some(c) => Ok(Some(c)),
        None => {
            let names: Vec<&str> = all.iter().map(|c| as_str(*c)).collect();
            Err(ApiError::BadRequest(format!(
                "unknown {name} `{}`: expected one of {}",
                crate::logging::escape(text),
                names.join(", ")
            )))
        }
    }
}

/// Registers every route; the server and the tests use the same function.
/// `docs/API.md` and `src/http/openapi.json` describe each (`tests/openapi.rs` checks).
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The hooks first, under `server.prefix`: a delivery is matched before
    // any other route is tried (`hooks::scope`'s guard leaves the API's paths
    // and `/` to the routes below; the dashboard's patterns cost an ignored
    // delivery ~4,100 instructions when tried first: BENCHMARKS.md).
    cfg.service(hooks::scope());
    cfg.service(
        web::resource("/")
            .route(web::get().to(ui::root))
            .default_service(web::to(ui::method_not_allowed)),
    )
    .service(
        web::resource(["/ui", "/ui/"])
            .route(web::get().to(ui::index))
            .default_service(web::to(ui::method_not_allowed)),
    )
    .service(
        web::resource("/ui/{file}")
            .route(web::get().to(ui::asset))
            .default_service(web::to(ui::method_not_allowed)),
    )
    .service(
        web::resource("/tasks")
            .route(web::get().to(tasks::list))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/tasks/{id}")
            .route(web::get().to(tasks::get))
            .route(web::delete().to(tasks::delete))
            .default_service(not_allowed("GET, DELETE")),
    )
    .service(
        web::resource("/tasks/{id}/output")
            .route(web::get().to(tasks::output))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/tasks/{id}/cancel")
            .route(web::post().to(tasks::cancel))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/tasks/{id}/rerun")
            .route(web::post().to(tasks::rerun))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/deliveries")
            .route(web::get().to(deliveries::list))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/deliveries/{id}")
            .route(web::get().to(deliveries::get))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/deliveries/{id}/body")
            .route(web::get().to(deliveries::body))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/deliveries/{id}/replay")
            .route(web::post().to(deliveries::replay))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/events")
            .route(web::get().to(events::stream))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/openapi.json")
            .route(web::get().to(openapi::serve))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/nodes")
            .route(web::get().to(nodes::list))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/healthz")
            .route(web::get().to(healthz))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/-/overview")
            .route(web::get().to(dashboard::overview))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/-/dry-run")
            .route(web::post().to(dashboard::dry_run))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/-/reload")
            .route(web::post().to(reload))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(metrics))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(readyz))
            .default_service(not_allowed("GET")),
    );
}

/// Answers paths that match no route.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("there is nothing at `{}`", req.path())))
}

/// The answer to a method a resource does not take: `405` with `Allow`
/// listing the ones it does.
fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move |req: HttpRequest| async move {
        let mut response =
            actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed(req.method().to_string()));
        response.headers_mut().insert(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_static(allow),
        );
        response
    })
}

/// `POST /-/reload`: reloads the config file (same access rule as `/tasks`).
async fn reload(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    access::authorize_api(&req, &state)?;
    match crate::reload::reload(state.reloadable()) {
        Ok(r) => Ok(HttpResponse::Ok().json(serde_json::json!({ "reloaded": true, "warnings": r.warnings }))),
        Err(e) => Err(ApiError::BadRequest(format!(
            "the config was not reloaded and the old one stays in force: {e}"
        ))),
    }
}

/// `GET /metrics`: Prometheus text (same access rule as `/tasks`).
async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    access::authorize_api(&req, &state)?;
    let (running, queued) = state.engine.counts();
    // In a cluster, the queue is the cluster's (as last counted).
    let queued = state.engine.cluster().map_or(queued, |c| c.queued());
    state.metrics.running.set(running as i64);
    state.metrics.queued.set(queued as i64);
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render()))
}

/// Ready when the config is loaded and the store (if any) can write. The
/// answer also says how many stored rows could not be read (they are logged
/// with their ids; `hookrunner db check` lists them): the daemon is still
/// ready, but that work needs a look.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let Some(store) = state.deliveries.store() else {
        return HttpResponse::Ok().json(serde_json::json!({ "status": "ready", "store": null }));
    };
    let (unreadable, first) = store.unreadable();
    let detail = serde_json::json!({
        "store": store.describe(),
        "writable": store.healthy(),
        "unreadable_rows": unreadable,
        "unreadable": first.iter().map(|u| serde_json::json!({"table": u.table, "id": u.id, "error": u.error})).collect::<Vec<_>>(),
    });
    if !store.healthy() {
        let why = store.last_error().unwrap_or_else(|| "unknown error".into());
        return HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "unready",
            "error": format!("the store cannot write: {why}"),
            "store": detail,
        }));
    }
    HttpResponse::Ok().json(serde_json::json!({ "status": "ready", "store": detail }))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// actix's header map, as the layers below HTTP read headers.
impl crate::headers::Headers for actix_web::http::header::HeaderMap {
    fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(|v| v.as_bytes())
    }

    fn get_all<'a>(&'a self, name: &str) -> Vec<&'a [u8]> {
        actix_web::http::header::HeaderMap::get_all(self, name)
            .map(|v| v.as_bytes())
            .collect()
    }

    fn each<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a [u8])) {
        for (name, value) in self.iter() {
            f(name.as_str(), value.as_bytes());
        }
    }
}

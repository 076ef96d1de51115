//! The dashboard's files (`GET /ui`, `GET /ui/{file}`) and `GET /` (a
//! redirect to it). The files are built into the binary and hold no data:
//! every value the pages show comes from the API, under the API's access
//! rule, so the files themselves are served to anyone. Every answer here
//! carries a strict Content-Security-Policy (no inline scripts or styles, no
//! other origin), `nosniff`, `no-referrer` and no framing.

use super::error::ApiError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use std::sync::OnceLock;

/// The policy every dashboard answer carries.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The files, by name under `/ui/`.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/app.js"),
    ),
    ("app.css", "text/css; charset=utf-8", include_str!("../../ui/app.css")),
];

/// A validator for the files of this build: they change only with the binary.
fn etag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        // FNV-1a over every file: cheap, and stable for a build.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (_, _, text) in FILES {
            for b in text.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("\"{}-{h:016x}\"", env!("CARGO_PKG_VERSION"))
    })
}

/// The headers of every dashboard answer.
fn harden(response: &mut HttpResponse) {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

fn file(req: &HttpRequest, name: &str) -> HttpResponse {
    let Some((_, kind, text)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        let mut response = ApiError::NotFound(format!("there is nothing at `{}`", req.path())).error_response();
        harden(&mut response);
        return response;
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag()));
    let mut response = if fresh {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok().content_type(*kind).body(*text)
    };
    let h = response.headers_mut();
    // Revalidated on each load (a new binary may bring new files), cheap with the ETag.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, HeaderValue::from_str(etag()).expect("an ASCII tag"));
    harden(&mut response);
    response
}

/// `GET /ui` and `GET /ui/`: the page.
pub async fn index(req: HttpRequest) -> HttpResponse {
    file(&req, "index.html")
}

/// `GET /ui/{file}`: a script or style sheet; `404` for anything else.
pub async fn asset(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    if name.as_str() == "index.html" {
        return file(&req, "index.html");
    }
    file(&req, &name)
}

/// `GET /`: to the dashboard.
pub async fn root() -> HttpResponse {
    let mut response = HttpResponse::build(StatusCode::FOUND)
        .insert_header((header::LOCATION, "/ui"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish();
    harden(&mut response);
    response
}

/// Other methods on the dashboard's paths: `405`, `Allow: GET`, hardened.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed(req.method().to_string()).error_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    harden(&mut response);
    response
}

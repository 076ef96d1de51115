//! How hooks are reached and answered: `server.prefix` (where they are
//! served), a source's `methods` and `cors`, and `response` of a source or a
//! mapping key (statuses, bodies and headers of its answers).

use super::locate::Seg;
use super::raw::{RawCors, RawOrigins, RawResponse};
use super::{key, valid_header, Checker};
use std::time::Duration;

/// Where hooks are served when `server.prefix` says nothing.
pub const DEFAULT_PREFIX: &str = "/hooks";

/// The first path segments the API owns (`/tasks`, `/-/reload`, ...). They
/// take precedence over hooks, so no hook may be served under one.
pub const API_PATHS: &[&str] = &[
    "tasks",
    "deliveries",
    "nodes",
    "healthz",
    "readyz",
    "metrics",
    "-",
    "ui",
    "events",
    "openapi.json",
];

/// The methods a source takes when `methods` says nothing.
pub const DEFAULT_METHODS: &[&str] = &["POST"];

/// How a delivery is answered: `response` of its source, with the `response`
/// of the mapping key that applies laid over it. Unset keys take their
/// defaults through the accessors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// The success status; unset: `202` (`200` once waited-for tasks finished).
    pub status: Option<u16>,
    /// A text body for success, instead of the JSON answer.
    pub body: Option<String>,
    /// Added to every answer of a delivery that got past auth.
    pub headers: Vec<(String, String)>,
    pub no_match: Option<u16>,
    pub no_match_body: Option<String>,
    pub failure: Option<u16>,
    /// A text body for a waited-for failure, instead of the JSON answer.
    pub failure_body: Option<String>,
    pub output: Option<bool>,
    pub output_on_failure: Option<bool>,
}

impl Reply {
    /// The success status: `status`, else `202`, or `200` when the answer
    /// waited for the tasks to finish.
    pub fn success(&self, waited: bool) -> u16 {
        self.status.unwrap_or(if waited { 200 } else { 202 })
    }

    /// The status when no rule matched.
    pub fn no_match(&self) -> u16 {
        self.no_match.unwrap_or(200)
    }

    /// The status when a waited-for task ended other than `succeeded`.
    pub fn failure(&self) -> u16 {
        self.failure.unwrap_or(500)
    }

    /// Whether a waited-for success is answered with the tasks' raw stdout.
    pub fn output(&self) -> bool {
        self.output.unwrap_or(false)
    }

    /// Whether a waited-for failure is answered with the tasks' raw stdout.
    pub fn output_on_failure(&self) -> bool {
        self.output_on_failure.unwrap_or(false)
    }

    /// `over` laid on this one: each key `over` sets wins; `headers` are
    /// merged by name (case-insensitive), `over`'s value winning.
    pub fn with(&self, over: &Reply) -> Reply {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(name, _)| !over.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)))
            .cloned()
            .collect();
        headers.extend(over.headers.iter().cloned());
        Reply {
            status: over.status.or(self.status),
            body: over.body.clone().or_else(|| self.body.clone()),
            headers,
            no_match: over.no_match.or(self.no_match),
            no_match_body: over.no_match_body.clone().or_else(|| self.no_match_body.clone()),
            failure: over.failure.or(self.failure),
            failure_body: over.failure_body.clone().or_else(|| self.failure_body.clone()),
            output: over.output.or(self.output),
            output_on_failure: over.output_on_failure.or(self.output_on_failure),
        }
    }
}

/// `cors:` of a source, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins, lower-case (`https://app.example`); `None`: any (`"*"`).
    pub origins: Option<Vec<String>>,
    /// `Access-Control-Allow-Methods`.
    pub methods: Vec<String>,
    /// `Access-Control-Allow-Headers`.
    pub headers: Vec<String>,
    /// `Access-Control-Max-Age`, if set.
    pub max_age: Option<Duration>,
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`,
    /// if that origin is allowed: `*`, or the origin as sent.
    pub fn allow_origin<'a>(&self, origin: &'a str) -> Option<&'a str> {
        match &self.origins {
            None => Some("*"),
            Some(list) => {
                let sent = origin.trim().trim_end_matches('/');
                list.iter()
                    .any(|o| o.eq_ignore_ascii_case(sent))
                    .then_some(origin.trim())
            }
        }
    }

    /// Whether the answer depends on the request's `Origin` (a list, not `*`).
    pub fn varies(&self) -> bool {
        self.origins.is_some()
    }
}

/// Headers an answer's framing or hookrunner itself owns; `headers` may not set them.
const OWN_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
    "proxy-connection",
    "x-request-id",
];

/// Whether `response.headers` may set header `name` to `value`; why not.
pub(crate) fn settable_header(name: &str, value: &str) -> Result<(), String> {
    if !valid_header(name) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "`{name}` is set by hookrunner (or the HTTP layer) and cannot be set here"
        ));
    }
    if value.trim().bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err("a header value cannot hold control characters (line breaks, NUL, ...)".into());
    }
    Ok(())
}

/// A status a config may choose: a final one (`200` to `599`).
fn valid_status(status: u16) -> bool {
    (200..=599).contains(&status)
}

/// An HTTP method as clients send it: upper-case letters (and digits, `-`, `_`).
fn valid_method(method: &str) -> bool {
    let mut bytes = method.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z'))
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A URL path segment of a prefix: letters, digits and `-._~`, not `.` or `..`.
fn valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

impl Checker<'_> {
    /// `response:` of a source or a mapping key.
    pub(super) fn reply(&mut self, at: &[Seg], raw: &RawResponse) -> Reply {
        let sub = |k: &str| [at, &[key(k)]].concat();
        for (name, value) in [
            ("status", raw.status),
            ("no_match", raw.no_match),
            ("failure", raw.failure),
        ] {
            if let Some(status) = value.filter(|s| !valid_status(*s)) {
                self.error(
                    &sub(name),
                    format!("`{status}` is not a status an answer can have: expected 200 to 599"),
                );
            }
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in &raw.headers.0 {
            let at = [&sub("headers")[..], &[key(name)]].concat();
            let name = name.trim();
            if let Err(e) = settable_header(name, value) {
                self.error(&at, e);
                continue;
            }
            if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                self.error(
                    &at,
                    format!("header `{name}` is given twice (names are case-insensitive)"),
                );
                continue;
            }
            let value = value.trim();
            headers.push((name.to_string(), value.to_string()));
        }
        Reply {
            status: raw.status,
            body: raw.body.clone(),
            headers,
            no_match: raw.no_match,
            no_match_body: raw.no_match_body.clone(),
            failure: raw.failure,
            failure_body: raw.failure_body.clone(),
            output: raw.output,
            output_on_failure: raw.output_on_failure,
        }
    }

    /// A list of methods (`methods`, `cors.methods`): upper-case, each once, not empty.
    fn method_list(&mut self, at: &[Seg], list: &[String]) -> Vec<String> {
        if list.is_empty() {
            self.error(at, "must list at least one method, such as `POST`");
        }
        let mut methods: Vec<String> = Vec::new();
        for (i, m) in list.iter().enumerate() {
            let item = [at, &[Seg::Index(i)]].concat();
            let m = m.trim();
            if !valid_method(m) {
                let hint = if valid_method(&m.to_ascii_uppercase()) {
                    format!(
                        ": write it in upper case (`{}`), as clients send it",
                        m.to_ascii_uppercase()
                    )
                } else {
                    String::new()
                };
                self.error(&item, format!("`{m}` is not an HTTP method{hint}"));
            } else if methods.iter().any(|x| x == m) {
                self.error(&item, format!("method `{m}` is listed twice"));
            } else {
                methods.push(m.to_string());
            }
        }
        methods
    }

    /// `methods:` of a source; `[POST]` when unset.
    pub(super) fn methods(&mut self, at: &[Seg], raw: Option<&Vec<String>>) -> Vec<String> {
        match raw {
            None => DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
            Some(list) => self.method_list(at, list),
        }
    }

    /// `cors:` of a source; its `methods` default to the source's.
    pub(super) fn cors(&mut self, at: &[Seg], raw: &RawCors, methods: &[String]) -> Cors {
        let sub = |k: &str| [at, &[key(k)]].concat();
        let origins = match &raw.origins {
            RawOrigins::Any => None,
            RawOrigins::List(list) if list.len() == 1 && list[0].trim() == "*" => None,
            RawOrigins::List(list) => {
                if list.is_empty() {
                    self.error(
                        &sub("origins"),
                        "must list at least one origin (`https://app.example`), or be `\"*\"`",
                    );
                }
                let mut out = Vec::new();
                for (i, origin) in list.iter().enumerate() {
                    let item = [&sub("origins")[..], &[Seg::Index(i)]].concat();
                    let o = origin.trim().trim_end_matches('/');
                    let host = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
                    // A host a browser could send (`http://:8080` names none).
                    let sane = host.is_some_and(|h| {
                        !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
                    }) && url::Url::parse(o).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()));
                    if o == "*" {
                        self.error(&item, "`*` allows every origin: write `origins: \"*\"` alone");
                    } else if !sane {
                        self.error(
                            &item,
                            format!("`{origin}` is not an origin such as `https://app.example` or `http://localhost:8080` (a scheme and a host, no path)"),
                        );
                    } else {
                        out.push(o.to_ascii_lowercase());
                    }
                }
                Some(out)
            }
        };
        let methods = match &raw.methods {
            Some(list) => self.method_list(&sub("methods"), list),
            None => methods.to_vec(),
        };
        let headers = match &raw.headers {
            None => vec!["Content-Type".to_string()],
            Some(list) => {
                let mut out = Vec::new();
                for (i, h) in list.iter().enumerate() {
                    let h = h.trim();
                    if valid_header(h) {
                        out.push(h.to_string());
                    } else {
                        self.error(
                            &[&sub("headers")[..], &[Seg::Index(i)]].concat(),
                            format!("`{h}` is not a valid header name"),
                        );
                    }
                }
                out
            }
        };
        Cors {
            origins,
            methods,
            headers,
            max_age: raw.max_age.map(|d| d.0),
        }
    }

    /// `server.prefix`: `/hooks` when unset; `""` or `/` for none; otherwise
    /// `/segment(/segment)*`, not under an API path.
    pub(super) fn prefix(&mut self, raw: Option<&str>) -> String {
        let at = [key("server"), key("prefix")];
        let Some(text) = raw else {
            return DEFAULT_PREFIX.to_string();
        };
        let text = text.trim();
        if text.is_empty() || text == "/" {
            return String::new();
        }
        let well_formed = text
            .strip_prefix('/')
            .is_some_and(|rest| rest.split('/').all(valid_segment));
        if !well_formed {
            self.error(
                &at,
                format!("`{text}` is not a path prefix such as `/hooks` or `/api/v1` (it starts with `/`, does not end with one, and its parts are letters, digits and `-._~`), or empty"),
            );
            return DEFAULT_PREFIX.to_string();
        }
        let first = text[1..].split('/').next().unwrap_or_default();
        if API_PATHS.contains(&first) {
            self.error(
                &at,
                format!("`{text}` is under `/{first}`, which the API serves; choose another prefix"),
            );
            return DEFAULT_PREFIX.to_string();
        }
        text.to_string()
    }

    /// With an empty prefix, a source is served at `/<name>`: its first part
    /// must not be one of the API's paths.
    pub(super) fn hook_path(&mut self, at: &[Seg], prefix: &str, name: &str) {
        let first = name.split('/').next().unwrap_or_default();
        if prefix.is_empty() && API_PATHS.contains(&first) {
            self.error(
                at,
                format!("source `{name}` would be served at `/{name}`, under `/{first}`, which the API serves: rename it, or set `server.prefix`"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    fn load(yaml: &str) -> Result<crate::config::Config, String> {
        parse(yaml, Path::new("webhook.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_mapping_key_overrides_the_source_key_by_key_and_headers_by_name() {
        let source = Reply {
            status: Some(201),
            body: Some("ok".into()),
            headers: vec![("X-A".into(), "1".into()), ("X-B".into(), "2".into())],
            failure: Some(502),
            ..Reply::default()
        };
        let mapping = Reply {
            body: Some("mapped".into()),
            headers: vec![("x-b".into(), "3".into())],
            output: Some(true),
            ..Reply::default()
        };
        let merged = source.with(&mapping);
        assert_eq!(merged.success(false), 201);
        assert_eq!(merged.body.as_deref(), Some("mapped"));
        assert_eq!(
            merged.headers,
            vec![
                ("X-A".to_string(), "1".to_string()),
                ("x-b".to_string(), "3".to_string())
            ]
        );
        assert_eq!(
            (merged.failure(), merged.output(), merged.output_on_failure()),
            (502, true, false)
        );
        let none = Reply::default();
        assert_eq!(
            (none.success(false), none.success(true), none.no_match(), none.failure()),
            (202, 200, 200, 500)
        );
    }

    #[test]
    fn cors_origins_compare_without_case_or_trailing_slash() {
        let cors = Cors {
            origins: Some(vec!["https://app.example".into()]),
            methods: vec!["POST".into()],
            headers: vec![],
            max_age: None,
        };
        assert_eq!(cors.allow_origin("https://APP.example/"), Some("https://APP.example/"));
        assert_eq!(cors.allow_origin("https://app.example.evil"), None);
        assert_eq!(cors.allow_origin("http://app.example"), None);
        let any = Cors { origins: None, ..cors };
        assert_eq!(any.allow_origin("https://x"), Some("*"));
    }

    #[test]
    fn precise_errors() {
        let src = |extra: &str| format!("sources:\n  s:\n    provider: generic\n    auth: none\n{extra}");
        let cases = [
            (src("    response: {status: 99}\n"), "webhook.yaml:5:5: `sources.s.response.status`: `99` is not a status an answer can have: expected 200 to 599"),
            (src("    response:\n      failure: 600\n"), "webhook.yaml:6:7: `sources.s.response.failure`: `600` is not a status an answer can have: expected 200 to 599"),
            (src("    response:\n      headers: {\"Bad Name\": x}\n"), "webhook.yaml:6:7: `sources.s.response.headers.\"Bad Name\"`: `Bad Name` is not a valid header name"),
            (src("    response:\n      headers:\n        Content-Length: \"5\"\n"), "webhook.yaml:7:9: `sources.s.response.headers.Content-Length`: `Content-Length` is set by hookrunner (or the HTTP layer) and cannot be set here"),
            (src("    response:\n      headers:\n        X-A: \"a\\nb\"\n"), "webhook.yaml:7:9: `sources.s.response.headers.X-A`: a header value cannot hold control characters (line breaks, NUL, ...)"),
            (src("    methods: [get]\n"), "webhook.yaml:5:5: `sources.s.methods[0]`: `get` is not an HTTP method: write it in upper case (`GET`), as clients send it"),
            (src("    methods: []\n"), "webhook.yaml:5:5: `sources.s.methods`: must list at least one method, such as `POST`"),
            (src("    methods: [POST, POST]\n"), "webhook.yaml:5:5: `sources.s.methods[1]`: method `POST` is listed twice"),
            (src("    cors: {origins: [\"app.example\"]}\n"), "webhook.yaml:5:5: `sources.s.cors.origins[0]`: `app.example` is not an origin such as `https://app.example` or `http://localhost:8080` (a scheme and a host, no path)"),
            (src("    cors: {origins: [\"https://a.example/x\"]}\n"), "webhook.yaml:5:5: `sources.s.cors.origins[0]`: `https://a.example/x` is not an origin such as `https://app.example` or `http://localhost:8080` (a scheme and a host, no path)"),
            (src("    cors: {origins: []}\n"), "webhook.yaml:5:5: `sources.s.cors.origins`: must list at least one origin (`https://app.example`), or be `\"*\"`"),
            (src("    cors: {origins: \"*\", headers: [\"a b\"]}\n"), "webhook.yaml:5:5: `sources.s.cors.headers[0]`: `a b` is not a valid header name"),
            ("server:\n  prefix: hooks\n".to_string(), "webhook.yaml:2:3: `server.prefix`: `hooks` is not a path prefix such as `/hooks` or `/api/v1` (it starts with `/`, does not end with one, and its parts are letters, digits and `-._~`), or empty"),
            ("server:\n  prefix: /api/\n".to_string(), "webhook.yaml:2:3: `server.prefix`: `/api/` is not a path prefix such as `/hooks` or `/api/v1` (it starts with `/`, does not end with one, and its parts are letters, digits and `-._~`), or empty"),
            ("server:\n  prefix: /tasks/in\n".to_string(), "webhook.yaml:2:3: `server.prefix`: `/tasks/in` is under `/tasks`, which the API serves; choose another prefix"),
            (format!("server: {{prefix: \"\"}}\n{}", src("").replace("  s:", "  metrics/x:")), "webhook.yaml:3:3: `sources.metrics/x`: source `metrics/x` would be served at `/metrics/x`, under `/metrics`, which the API serves: rename it, or set `server.prefix`"),
            (format!("{}mappings:\n  s:\n    default:\n      response: {{no_match: 1000}}\n", src("")), "webhook.yaml:8:7: `mappings.s.default.response.no_match`: `1000` is not a status an answer can have: expected 200 to 599"),
        ];
        for (yaml, expected) in cases {
            assert_eq!(load(&yaml).map(|_| ()).unwrap_err(), expected, "{yaml}");
        }
    }

    #[test]
    fn defaults_and_accepted_forms() {
        let c = load("sources:\n  s: {provider: generic, auth: none}\n").unwrap();
        assert_eq!(c.server.prefix, "/hooks");
        let s = &c.sources["s"];
        assert_eq!(s.methods, ["POST"]);
        assert_eq!((s.cors.clone(), (*s.reply).clone()), (None, Reply::default()));
        for (text, prefix) in [("\"\"", ""), ("/", ""), ("/api/v1", "/api/v1"), ("/hooks", "/hooks")] {
            let c = load(&format!("server: {{prefix: {text}}}\n")).unwrap();
            assert_eq!(c.server.prefix, prefix, "{text}");
        }
        let c = load(
            "sources:\n  s:\n    provider: generic\n    auth: none\n    methods: [GET, POST]\n    cors: {origins: [\"https://App.example/\"], max_age: 10m}\n",
        )
        .unwrap();
        let cors = c.sources["s"].cors.clone().unwrap();
        assert_eq!(cors.origins, Some(vec!["https://app.example".to_string()]));
        assert_eq!(cors.methods, ["GET", "POST"]);
        assert_eq!(cors.headers, ["Content-Type"]);
        assert_eq!(cors.max_age, Some(Duration::from_secs(600)));
        let c = load("sources:\n  s:\n    provider: generic\n    auth: none\n    cors: {origins: [\"*\"]}\n").unwrap();
        assert_eq!(c.sources["s"].cors.as_ref().unwrap().origins, None);
    }
}

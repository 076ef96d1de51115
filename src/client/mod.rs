//! The command-line client of the HTTP API (`hookrunner tasks`, `task`,
//! `cancel`, `rerun`, `deliveries`, `delivery`, `replay`, `send`): a blocking
//! HTTP client, the tables and detail views it prints, and a reader for the
//! live output's Server-Sent Events.

pub mod commands;
pub mod hooks;
pub mod import;
pub mod render;
pub mod sign;
pub mod sse;

use crate::config::Config;
use serde_json::Value;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Why a client command failed; printed as `error: <this>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The daemon could not be reached at all: at `url` (masked), found
    /// through `origin` (`--url`, `HOOKRUNNER_URL`, a config's `server.listen`).
    Unreachable {
        url: String,
        origin: String,
        reason: String,
    },
    /// The daemon answered with an error status and its `{"error": ...}` sentence.
    Api { status: u16, message: String },
    /// Anything else (a bad argument, an answer that is not JSON, ...).
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unreachable { url, origin, reason } => {
                write!(
                    f,
                    "cannot reach hookrunner at {url}: {reason} (the address is from {origin})"
                )
            }
            Error::Api { message, .. } => f.write_str(message),
            Error::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

/// The address a client uses for a daemon listening on `listen`: a wildcard
/// address becomes the loopback address of its family.
pub fn client_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The URL a client on this machine uses for a daemon listening on
/// `listen`: its first plain TCP listener, else its first with TLS
/// (`https://`); with neither (Unix sockets, systemd's sockets), the first
/// entry as written, which [`Api`] then says it cannot reach.
pub fn listener_url(listen: &[crate::config::Listen]) -> String {
    use crate::config::ListenAddress;
    let tcp = |tls: bool| {
        listen.iter().find_map(|l| match l.address {
            ListenAddress::Tcp(addr) if l.tls.is_some() == tls => Some(addr),
            _ => None,
        })
    };
    if let Some(addr) = tcp(false) {
        return format!("http://{}", client_addr(addr));
    }
    if let Some(addr) = tcp(true) {
        return format!("https://{}", client_addr(addr));
    }
    listen.first().map_or_else(
        || format!("http://{}", crate::config::DEFAULT_LISTEN),
        |l| l.address.to_string(),
    )
}

/// `--url` as given: `host:port` gets `http://`, a trailing `/` is dropped.
pub fn normalise_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    // Listeners this client cannot use are kept as written, to say so.
    if url.contains("://") || url.starts_with("unix:") || url == "systemd" || url.starts_with("systemd:") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// A daemon's HTTP API.
pub struct Api {
    base: String,
    /// How `base` was found, for messages.
    origin: String,
    token: Option<String>,
    agent: ureq::Agent,
    /// The same, without a read timeout, for streams.
    streaming: ureq::Agent,
}

/// An answer of the daemon: its status and the JSON it sent.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub json: Value,
}

impl Api {
    /// An API at `base` (`http://host:port`), sending `token` as a bearer token.
    pub fn new(base: &str, token: Option<String>) -> Api {
        let build = |read: Option<Duration>| {
            let mut b = ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .redirects(0);
            if let Some(read) = read {
                // Also for the whole answer: a server trickling a byte a
                // second cannot keep a command waiting for ever.
                b = b.timeout_read(read).timeout_write(read).timeout(read);
            }
            b.build()
        };
        Api {
            base: normalise_url(base),
            origin: "--url".into(),
            token: token.filter(|t| !t.is_empty()),
            agent: build(Some(ANSWER_TIME)),
            streaming: build(None),
        }
    }

    /// The API of the daemon `config` describes; `url` and `token` override it.
    pub fn from_config(config: Option<&Config>, url: Option<&str>, token: Option<&str>) -> Api {
        let base = match (url, config) {
            (Some(url), _) => url.to_string(),
            (None, Some(c)) => listener_url(&c.server.listen),
            (None, None) => format!("http://{}", crate::config::DEFAULT_LISTEN),
        };
        let token = token.map(str::to_string).or_else(|| {
            config
                .and_then(|c| c.api_tokens.first())
                .map(|t| String::from_utf8_lossy(t.expose()).into_owned())
        });
        Api::new(&base, token)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Says how the daemon's address was found (`--url`, a config's `server.listen`, ...).
    pub fn from_origin(mut self, origin: &str) -> Api {
        self.origin = origin.to_string();
        self
    }

    fn url(&self, path: &str, query: &[(String, String)]) -> String {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            url.push('?');
            url.push_str(&q.finish());
        }
        url
    }

    fn request(&self, agent: &ureq::Agent, method: &str, path: &str, query: &[(String, String)]) -> ureq::Request {
        let mut req = agent.request(method, &self.url(path, query));
        if let Some(token) = &self.token {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        req
    }

    /// Turns a ureq result into an answer; error statuses become [`Error::Api`].
    fn answer(&self, result: Result<ureq::Response, ureq::Error>) -> Result<Answer, Error> {
        let (ok, resp) = match result {
            Ok(r) => (true, r),
            Err(ureq::Error::Status(_, r)) => (false, r),
            Err(ureq::Error::Transport(t)) => return Err(self.transport(&t)),
        };
        let status = resp.status();
        let location = resp.header("Location").map(str::to_string);
        let mut text = String::new();
        resp.into_reader()
            .take(64 << 20)
            .read_to_string(&mut text)
            .map_err(|e| {
                Error::Other(format!(
                    "reading the answer from {}: {e}",
                    crate::secret::mask_url(&self.base)
                ))
            })?;
        let json: Option<Value> = parse_json(&text);
        // Redirects are not followed (the token would go along): a 3xx is an
        // error, not an empty list.
        if ok && !(200..300).contains(&status) {
            let to = location
                .as_deref()
                .map(|l| format!(" to {}", crate::secret::mask_url(l)))
                .unwrap_or_default();
            return Err(Error::Api {
                status,
                message: format!("the daemon answered {status}{to}, which this client does not follow"),
            });
        }
        if !ok {
            let message = json
                .as_ref()
                .and_then(|j| j["error"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| format!("the daemon answered {status}: {}", text.trim()));
            return Err(Error::Api { status, message });
        }
        match json {
            Some(json) => Ok(Answer { status, location, json }),
            None if text.trim().is_empty() => Ok(Answer {
                status,
                location,
                json: Value::Null,
            }),
            None => Err(Error::Other(format!(
                "the daemon answered {status} with something that is not JSON: {}",
                text.trim()
            ))),
        }
    }

    fn transport(&self, t: &ureq::Transport) -> Error {
        let bad_url = t.kind() == ureq::ErrorKind::InvalidUrl || t.kind() == ureq::ErrorKind::UnknownScheme;
        if bad_url && (self.base.starts_with("unix:") || self.base.starts_with("systemd")) {
            return Error::Other(format!(
                "the daemon listens on `{}` ({}), which this client cannot reach: give --url (or HOOKRUNNER_URL), or add a TCP address such as 127.0.0.1:9000 to `server.listen`",
                self.base, self.origin
            ));
        }
        if bad_url {
            return Error::Other(format!(
                "`{}` is not a URL such as http://127.0.0.1:9000",
                crate::secret::mask_url(&self.base)
            ));
        }
        // The innermost cause says it best ("Connection refused (os error 111)").
        let mut reason = t.message().map(str::to_string).unwrap_or_else(|| t.kind().to_string());
        let mut source = std::error::Error::source(t);
        while let Some(s) = source {
            reason = s.to_string();
            source = s.source();
        }
        Error::Unreachable {
            url: crate::secret::mask_url(&self.base),
            origin: self.origin.clone(),
            reason,
        }
    }

    /// `GET path?query`, as JSON.
    pub fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value, Error> {
        self.answer(self.request(&self.agent, "GET", path, query).call())
            .map(|a| a.json)
    }

    /// `POST path` without a body.
    pub fn post(&self, path: &str) -> Result<Answer, Error> {
        self.answer(self.request(&self.agent, "POST", path, &[]).send_bytes(&[]))
    }

    /// `POST path?query` with `headers` and `body` (a delivery, for `send`);
    /// with `api_token`, the API token too, unless `headers` has an
    /// `Authorization` of the source's own (a dry run needs both rules).
    pub fn post_body(
        &self,
        path: &str,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: &[u8],
        wait: Option<Duration>,
        api_token: bool,
    ) -> Result<Answer, Error> {
        let own_authorization = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        let mut req = if api_token && !own_authorization {
            self.request(&self.agent, "POST", path, query)
        } else {
            self.agent.request("POST", &self.url(path, query))
        };
        if let Some(wait) = wait {
            // The daemon holds the answer up to `wait` (`?wait=`).
            req = req.timeout(wait.saturating_add(ANSWER_TIME));
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        self.answer(req.send_bytes(body))
    }

    /// `GET path` as a stream of Server-Sent Events.
    pub fn events(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<sse::Reader<Box<dyn Read + Send + Sync>>, Error> {
        let req = self
            .request(&self.streaming, "GET", path, query)
            .set("Accept", "text/event-stream");
        match req.call() {
            Ok(resp) => Ok(sse::Reader::new(resp.into_reader())),
            Err(e) => match self.answer(Err(e)) {
                Err(e) => Err(e),
                Ok(_) => Err(Error::Other("unexpected answer".into())),
            },
        }
    }
}

/// Deepest nesting the client reads: answers carry payload values (up to
/// 127 levels deep) a few levels into a task, beyond serde_json's default
/// limit of 128; a limit still keeps a broken answer from exhausting the stack.
const MAX_ANSWER_DEPTH: usize = 1024;

/// How long a whole answer may take (plus `--wait` where it is given).
const ANSWER_TIME: Duration = Duration::from_secs(60);

/// Parses an answer of any sane nesting depth.
pub fn parse_json(text: &str) -> Option<Value> {
    use serde::Deserialize;
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        match (in_string, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') => in_string = false,
            (true, _) => {}
            (false, b'"') => in_string = true,
            (false, b'[' | b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_ANSWER_DEPTH {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let value = Value::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_become_loopback() {
        let addr = |s: &str| client_addr(s.parse().unwrap()).to_string();
        assert_eq!(addr("0.0.0.0:9000"), "127.0.0.1:9000");
        assert_eq!(addr("[::]:9000"), "[::1]:9000");
        assert_eq!(addr("10.1.2.3:80"), "10.1.2.3:80");
    }

    #[test]
    fn urls() {
        assert_eq!(normalise_url("127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(normalise_url("https://hooks.example.com/"), "https://hooks.example.com");
        let api = Api::new("http://h:1", None);
        let q = [
            ("status".to_string(), "failed".to_string()),
            ("source".to_string(), "a b".to_string()),
        ];
        assert_eq!(api.url("/tasks", &q), "http://h:1/tasks?status=failed&source=a+b");
    }

    #[test]
    fn unreachable_daemon() {
        // Port 1 on loopback: nothing listens there.
        let api = Api::new("http://127.0.0.1:1", None);
        match api.get("/tasks", &[]) {
            Err(Error::Unreachable { url, reason, .. }) => {
                assert_eq!(url, "http://127.0.0.1:1");
                assert!(!reason.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}

//! A small HTTP/1.1 server on 127.0.0.1 that stands in for a third-party
//! service (a chat bot, the Feishu Open API, GitLab, GitHub, Gitea): every
//! request is recorded, and a closure decides each answer. One thread per
//! connection; every answer closes its connection.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    /// The query string as sent (still percent-encoded).
    pub raw_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn query(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.raw_query.as_bytes()).into_owned().collect()
    }
    pub fn param(&self, name: &str) -> Option<String> {
        self.query().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
    /// A query parameter's value as sent, before percent-decoding.
    pub fn raw_param(&self, name: &str) -> Option<&str> {
        self.raw_query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("the body is UTF-8")
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())],
            body: body.to_string(),
        }
    }
    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: body.to_string(),
        }
    }
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

pub struct StandIn {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    log: Arc<Mutex<Vec<Req>>>,
}

impl StandIn {
    pub fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<Req>>> = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let sink = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let handler = handler.clone();
                let sink = sink.clone();
                std::thread::spawn(move || serve(stream, &*handler, &sink));
            }
        });
        StandIn { base, log }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    /// Takes the requests recorded so far.
    pub fn take(&self) -> Vec<Req> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// Waits until at least `n` requests arrived (deadline-based), then takes them all.
    pub fn take_at_least(&self, n: usize) -> Vec<Req> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "expected {n} requests, got {:?}",
                self.requests()
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.take()
    }
}

fn serve(mut stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Req>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(req) = read_request(&mut stream) else {
        return;
    };
    let reply = handler(&req);
    log.lock().unwrap().push(req);
    let reason = match reply.status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    ));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(reply.body.as_bytes());
    let _ = stream.flush();
}

fn read_request(stream: &mut TcpStream) -> std::io::Result<Req> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed inside the head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(_version)) = (request_line.next(), request_line.next(), request_line.next())
    else {
        return Err(bad("not an HTTP request line"));
    };
    let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed inside the body"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Req {
        method: method.to_string(),
        path: path.to_string(),
        raw_query: raw_query.to_string(),
        headers,
        body,
    })
}

/// base64(HMAC-SHA256(key, message)), as DingTalk and Feishu sign.
pub fn hmac_sha256_base64(key: &[u8], message: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Every string in a JSON value (keys excluded), joined by newlines: what a
/// person could read in the message, whatever its layout.
pub fn all_text(v: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                // Feishu's `content` of im/v1/messages is itself a JSON string.
                match serde_json::from_str::<Value>(s) {
                    Ok(inner @ (Value::Object(_) | Value::Array(_))) => walk(&inner, out),
                    _ => out.push(s.clone()),
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out.join("\n")
}

/// Whether a DingTalk robot request carries a valid signature for `secret`:
/// `timestamp` (ms, within an hour) and `sign` =
/// urlencode(base64(HMAC-SHA256(secret, "timestamp\nsecret"))), percent-encoded as sent.
pub fn dingtalk_signed(req: &Req, secret: &str) -> bool {
    let (Some(ts), Some(sign)) = (req.param("timestamp"), req.param("sign")) else {
        return false;
    };
    let Ok(ms) = ts.parse::<u64>() else { return false };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expected = hmac_sha256_base64(secret.as_bytes(), format!("{ts}\n{secret}").as_bytes());
    let encoded: String = form_urlencoded::byte_serialize(expected.as_bytes()).collect();
    (now - ms as f64 / 1000.0).abs() < 3600.0 && sign == expected && req.raw_param("sign") == Some(encoded.as_str())
}

/// The Feishu Open API for one app: `tenant_access_token/internal`,
/// `contact/v3/users/batch_get_id` (users known by email) and `im/v1/messages`,
/// with the request shapes and error codes Feishu documents.
pub fn feishu_app(
    app_id: &'static str,
    app_secret: &'static str,
    tenant_token: &'static str,
    known: &'static [(&'static str, &'static str)],
) -> StandIn {
    feishu_app_with(app_id, app_secret, tenant_token, known, |_| None)
}

/// The same, where `first` may answer a request before the normal answers.
pub fn feishu_app_with(
    app_id: &'static str,
    app_secret: &'static str,
    tenant_token: &'static str,
    known: &'static [(&'static str, &'static str)],
    first: impl Fn(&Req) -> Option<Reply> + Send + Sync + 'static,
) -> StandIn {
    use serde_json::json;
    StandIn::start(move |req: &Req| {
        if let Some(reply) = first(req) {
            return reply;
        }
        let authed = req.header("Authorization") == Some(&format!("Bearer {tenant_token}"));
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/open-apis/auth/v3/tenant_access_token/internal") => {
                let b = req.json();
                if b["app_id"] == app_id && b["app_secret"] == app_secret {
                    Reply::json(
                        200,
                        json!({"code": 0, "msg": "ok", "tenant_access_token": tenant_token, "expire": 7200}),
                    )
                } else {
                    Reply::json(400, json!({"code": 10014, "msg": "app secret invalid"}))
                }
            }
            _ if !authed => Reply::json(
                400,
                json!({"code": 99991663, "msg": "Invalid access token for authorization."}),
            ),
            ("POST", "/open-apis/contact/v3/users/batch_get_id")
                if req.param("user_id_type").as_deref() == Some("user_id") =>
            {
                let users: Vec<Value> = req.json()["emails"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| match known.iter().find(|(mail, _)| *mail == e) {
                        Some((_, id)) => json!({"email": e, "user_id": id}),
                        None => json!({"email": e}),
                    })
                    .collect();
                Reply::json(200, json!({"code": 0, "msg": "success", "data": {"user_list": users}}))
            }
            ("POST", "/open-apis/im/v1/messages") if req.param("receive_id_type").as_deref() == Some("user_id") => {
                let b = req.json();
                let content_is_card = b["content"]
                    .as_str()
                    .and_then(|c| serde_json::from_str::<Value>(c).ok())
                    .is_some_and(|c| c.is_object());
                if b["msg_type"] != "interactive" || !content_is_card || !b["receive_id"].is_string() {
                    return Reply::json(400, json!({"code": 230001, "msg": "invalid message content"}));
                }
                Reply::json(
                    200,
                    json!({"code": 0, "msg": "success", "data": {"message_id": "om_dc13264520392913993dd051dba21dcf"}}),
                )
            }
            _ => Reply::json(404, json!({"code": 404, "msg": "not found"})),
        }
    })
}

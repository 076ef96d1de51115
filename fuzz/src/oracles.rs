//! The invariants the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! property tests (`tests/properties.rs`) check: each `check_*` function
//! panics when hookrunner breaks a promise for the input it is given.
//!
//! This file is shared: the fuzz crate includes it as its library, and the
//! property tests include it with `#[path]`, so both check exactly the same
//! invariants. It depends only on hookrunner and hookrunner's own dependencies.

#![allow(dead_code)]

use bytes::Bytes;
use hookrunner::auth::ip::{client_ip, Client};
use hookrunner::config::Source;
use hookrunner::headers::HeaderPairs;
use hookrunner::intake::{parse_body, Accepts, Refused};
use hookrunner::mapping::params::{lookup, Step};
use hookrunner::mapping::wanted::Wanted;
use hookrunner::payload::{Kind, Kinds};
use ipnet::IpNet;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// The body parser: sparse parse (`Wanted::parse`) against a full parse.

/// Builds the tree wanting every path in `paths`.
pub fn wanting(paths: &[Vec<Step>]) -> Wanted {
    let mut wanted = Wanted::default();
    for p in paths {
        wanted.add(p);
    }
    wanted
}

/// Differential: `Wanted::parse` accepts exactly what `serde_json` accepts
/// (with the same error), and every wanted path reads the same in the sparse
/// value as in the full one (duplicate keys included: the last one wins).
pub fn check_body(paths: &[Vec<Step>], body: &[u8]) {
    let wanted = wanting(paths);
    let full = serde_json::from_slice::<Value>(body);
    let sparse = wanted.parse(body);
    match (&full, &sparse) {
        (Ok(full), Ok(sparse)) => {
            for p in paths {
                assert_eq!(
                    lookup(sparse, p),
                    lookup(full, p),
                    "path {p:?} reads differently in the sparse value; body {:?}",
                    String::from_utf8_lossy(body)
                );
            }
            if paths.iter().any(Vec::is_empty) {
                assert_eq!(sparse, full, "the whole body was wanted");
            }
        }
        (Err(f), Err(s)) => assert_eq!(
            f.to_string(),
            s.to_string(),
            "both refuse, with different errors; body {:?}",
            String::from_utf8_lossy(body)
        ),
        _ => panic!(
            "accept/reject differs: full {:?}, sparse {:?}; wanted {paths:?}; body {:?}",
            full.as_ref().map(|_| ()),
            sparse.as_ref().map(|_| ()),
            String::from_utf8_lossy(body)
        ),
    }
}

/// Up to `bytes.len() / 2` paths into `value`, each steered by the bytes:
/// paths that exist (to every depth), paths one step past a scalar or an
/// array's end, and the whole body.
pub fn paths_into(value: &Value, bytes: &[u8]) -> Vec<Vec<Step>> {
    let mut paths = Vec::new();
    for pair in bytes.chunks(2) {
        let (mut pick, depth) = (pair[0] as usize, pair.get(1).copied().unwrap_or(0) as usize % 8);
        let mut steps = Vec::new();
        let mut at = value;
        for _ in 0..depth {
            match at {
                Value::Object(map) if !map.is_empty() => {
                    let (k, v) = map.iter().nth(pick % map.len()).expect("in range");
                    steps.push(Step::Key(k.clone()));
                    at = v;
                }
                Value::Array(items) => {
                    // One past the end sometimes: a wanted index the body lacks.
                    let i = pick % (items.len() + 1);
                    steps.push(Step::Index(i));
                    match items.get(i) {
                        Some(v) => at = v,
                        None => break,
                    }
                }
                // A step into a scalar (or an empty object): wanted, not there.
                _ => {
                    steps.push(if pick % 2 == 0 {
                        Step::Key("x".into())
                    } else {
                        Step::Index(0)
                    });
                    break;
                }
            }
            pick = pick.wrapping_mul(31).wrapping_add(7) % 251;
        }
        paths.push(steps);
    }
    paths
}

// ---------------------------------------------------------------------------
// X-Forwarded-For.

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The rule of `client_ip`'s doc comment, written plainly: the peer when it is
/// not a trusted proxy; otherwise every hop of every line, left to right
/// (a line that is not text is one hop that is not an address), and the
/// client is the right-most hop that is not a trusted proxy; when that hop is
/// not a bare IP address the client is unknown; when every hop is trusted,
/// the left-most hop (the peer when there is none).
pub fn xff_reference(peer: IpAddr, lines: &[&[u8]], trusted: &[IpNet]) -> Client {
    let trusted_ip = |ip: IpAddr| trusted.iter().any(|n| n.contains(&ip));
    let peer = canonical(peer);
    if !trusted_ip(peer) {
        return Client::Addr(peer);
    }
    let mut hops: Vec<Option<IpAddr>> = Vec::new();
    for line in lines {
        match std::str::from_utf8(line) {
            Err(_) => hops.push(None),
            Ok(text) => hops.extend(text.split(',').map(|h| h.trim().parse::<IpAddr>().ok().map(canonical))),
        }
    }
    match hops.iter().rposition(|h| h.is_none_or(|ip| !trusted_ip(ip))) {
        Some(i) => hops[i].map_or(Client::Unknown, Client::Addr),
        None => Client::Addr(hops.first().copied().flatten().unwrap_or(peer)),
    }
}

/// `client_ip` agrees with the reference, and its answer is unknown, the
/// peer, or an address written in the header lines.
pub fn check_xff(peer: IpAddr, lines: &[&[u8]], trusted: &[IpNet]) {
    let got = client_ip(peer, lines.iter().copied(), trusted);
    let want = xff_reference(peer, lines, trusted);
    assert_eq!(got, want, "peer {peer}, lines {lines:?}, trusted {trusted:?}");
    if let Client::Addr(ip) = got {
        let written = lines.iter().any(|l| {
            std::str::from_utf8(l).is_ok_and(|t| {
                t.split(',')
                    .any(|h| h.trim().parse::<IpAddr>().is_ok_and(|h| canonical(h) == ip))
            })
        });
        assert!(ip == canonical(peer) || written, "{ip} is neither the peer nor a hop");
    }
    // Unknown is never loopback and in no list.
    if got == Client::Unknown {
        assert!(!got.is_loopback());
        assert!(!got.is_in(&["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]));
    }
}

// ---------------------------------------------------------------------------
// Body decoding: JSON, form with `payload`, plain form, other types.

fn one_sentence(message: &str) {
    assert!(
        !message.contains(['\n', '\r']),
        "an error message spans lines: {message:?}"
    );
}

/// The rules of a source that accepts `bodies` (JSON only: `Kinds::JSON`).
pub fn accepts<'a>(wanted: &'a Wanted, plain_forms: bool, bodies: Kinds) -> Accepts<'a> {
    Accepts {
        source: "s",
        wanted,
        bodies,
        content_type: None,
        plain_forms,
    }
}

/// `parse_body` for any content type, on a source that takes JSON only: an
/// empty body is `null`; the kind comes from the Content-Type (or, without
/// one, from the content); JSON parses as the sparse parser does; a form's
/// first `payload` field is parsed as JSON; a form without one is a JSON
/// object of its fields (the last value of a repeated name wins, in the
/// order names first appear) with `plain_forms`, and a 415 without; any other
/// kind is a 415. Error messages are one line.
pub fn check_parse_body(content_type: Option<&[u8]>, body: &[u8], paths: &[Vec<Step>], plain_forms: bool) {
    let mut headers = HeaderPairs::new();
    if let Some(ct) = content_type {
        headers.add("Content-Type", ct);
    }
    let wanted = wanting(paths);
    let bytes = Bytes::copy_from_slice(body);
    let got = parse_body(&headers, &bytes, &accepts(&wanted, plain_forms, Kinds::JSON), &|| {
        "/uploads/d".into()
    });
    if let Err(e) = &got {
        one_sentence(&e.to_string());
    }
    if body.is_empty() {
        let parsed = got.unwrap_or_else(|e| panic!("an empty body is refused: {e}"));
        assert_eq!(parsed.json, Value::Null);
        return;
    }
    let kind = match content_type
        .map(String::from_utf8_lossy)
        .filter(|ct| !ct.trim().is_empty())
    {
        Some(ct) => Kind::of_content_type(&ct),
        None => Kind::of_content(body),
    };
    if kind == Kind::Json {
        match (got, serde_json::from_slice::<Value>(body)) {
            (Ok(parsed), Ok(full)) => {
                assert_eq!(&parsed.stdin[..], body, "stdin is the body");
                for p in paths {
                    assert_eq!(lookup(&parsed.json, p), lookup(&full, p), "{p:?}");
                }
            }
            (Err(Refused::BadRequest(_)), Err(_)) => {}
            (got, full) => panic!(
                "JSON body: got {:?}, serde_json {:?}",
                got.map(|p| p.json),
                full.map(|_| ())
            ),
        }
        return;
    }
    if kind != Kind::Form {
        assert!(
            matches!(got, Err(Refused::UnsupportedMediaType(_))),
            "a body of kind {kind} is not refused with 415"
        );
        return;
    }
    let payload = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned());
    match payload {
        Some(payload) => match (got, serde_json::from_str::<Value>(&payload)) {
            (Ok(parsed), Ok(full)) => {
                assert_eq!(&parsed.stdin[..], payload.as_bytes(), "stdin is the payload");
                for p in paths {
                    assert_eq!(lookup(&parsed.json, p), lookup(&full, p), "{p:?}");
                }
            }
            (Err(Refused::BadRequest(_)), Err(_)) => {}
            (got, full) => panic!(
                "form payload: got {:?}, serde_json {:?}",
                got.map(|p| p.json),
                full.map(|_| ())
            ),
        },
        None if plain_forms => {
            let parsed = got.unwrap_or_else(|e| panic!("a plain form is refused: {e}"));
            let mut order: Vec<String> = Vec::new();
            let mut last: BTreeMap<String, String> = BTreeMap::new();
            for (k, v) in form_urlencoded::parse(body) {
                if !last.contains_key(&*k) {
                    order.push(k.to_string());
                }
                last.insert(k.into_owned(), v.into_owned());
            }
            let want: serde_json::Map<String, Value> = order
                .into_iter()
                .map(|k| {
                    let v = Value::String(last[&k].clone());
                    (k, v)
                })
                .collect();
            let want = Value::Object(want);
            assert_eq!(parsed.json, want, "plain form fields");
            // Order too (serde_json's Map equality ignores it).
            assert_eq!(parsed.json.to_string(), want.to_string(), "plain form field order");
            assert_eq!(
                parsed.stdin,
                want.to_string().as_bytes(),
                "stdin is the JSON of the fields"
            );
        }
        None => assert!(
            matches!(got, Err(Refused::UnsupportedMediaType(_))),
            "a form without `payload` is not a 415"
        ),
    }
}

/// A form that carries `json` in its `payload` field among `others` (put
/// before it, after it, or both) parses as that JSON text does.
///
/// (As that text does, not as `json`: serde_json without `float_roundtrip`
/// may read a float it wrote back one unit in the last place off.)
pub fn check_form_payload_round_trip(json: &Value, others: &[(String, String)], split: usize, paths: &[Vec<Step>]) {
    let text = json.to_string();
    let json = &serde_json::from_str::<Value>(&text).expect("serde_json reads what it writes");
    let split = split.min(others.len());
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &others[..split] {
        if k != "payload" {
            form.append_pair(k, v);
        }
    }
    form.append_pair("payload", &text);
    for (k, v) in &others[split..] {
        form.append_pair(k, v);
    }
    let body = form.finish();
    for plain_forms in [false, true] {
        let mut headers = HeaderPairs::new();
        headers.add("Content-Type", "application/x-www-form-urlencoded; charset=utf-8");
        let wanted = wanting(paths);
        let parsed = parse_body(
            &headers,
            &Bytes::from(body.clone()),
            &accepts(&wanted, plain_forms, Kinds::JSON),
            &|| "/d".into(),
        )
        .unwrap_or_else(|e| panic!("a form holding valid JSON is refused: {e}"));
        for p in paths {
            assert_eq!(lookup(&parsed.json, p), lookup(json, p), "{p:?}");
        }
        assert_eq!(parsed.stdin, text.as_bytes());
        let whole = parse_body(
            &headers,
            &Bytes::from(body.clone()),
            &accepts(&Wanted::All, plain_forms, Kinds::JSON),
            &|| "/d".into(),
        )
        .unwrap();
        assert_eq!(&whole.json, json);
    }
}

// ---------------------------------------------------------------------------
// `/tasks` and `/deliveries` query strings.

/// Never a panic; a `limit` is 1 to 1000 (50 when not given); `before` of
/// `/tasks` is a UUID; the filters are the decoded values; an error is a 400.
///
/// Errors should be one line. `strict` checks exactly that; without it, a
/// control character in an error must at least come from the decoded query
/// (it is echoed, not made): today's errors echo the decoded value or name
/// as it is (docs/FUZZING.md, finding 1), so the fuzz target checks the
/// rest and `tests/properties.rs` keeps the strict case as an ignored test.
pub fn check_list_queries(query_string: &str, strict: bool) {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query_string.as_bytes()).into_owned().collect();
    let given = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let one_sentence = |message: &str| {
        if strict {
            one_sentence(message);
        } else {
            for c in message.chars().filter(|c| c.is_control()) {
                assert!(
                    pairs.iter().any(|(k, v)| k.contains(c) || v.contains(c)),
                    "the error has a control character the query did not: {message:?}"
                );
            }
        }
    };
    match hookrunner::http::parse_task_list_query(query_string) {
        Ok(q) => {
            assert!((1..=1000).contains(&q.limit), "limit {}", q.limit);
            if given("limit").is_none() {
                assert_eq!(q.limit, 50);
            }
            assert_eq!(q.status.map(|s| s.as_str()), given("status"));
            assert_eq!(q.source.as_deref(), given("source"));
            assert_eq!(q.event.as_deref(), given("event"));
            assert_eq!(q.program.as_deref(), given("program"));
            assert_eq!(q.node.as_deref(), given("node"));
            assert_eq!(q.id_prefix.is_some(), given("id").is_some_and(|v| !v.is_empty()));
            assert_eq!(q.before.is_some(), given("before").is_some());
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            one_sentence(&e.to_string());
            assert!(matches!(e, hookrunner::http::error::ApiError::BadRequest(_)), "{e:?}");
        }
    }
    match hookrunner::http::parse_delivery_list_query(query_string) {
        Ok(q) => {
            assert!((1..=1000).contains(&q.limit), "limit {}", q.limit);
            if given("limit").is_none() {
                assert_eq!(q.limit, 50);
            }
            assert_eq!(q.outcome.map(|o| o.as_str()), given("outcome"));
            assert_eq!(q.source.as_deref(), given("source"));
            assert_eq!(q.event.as_deref(), given("event"));
            assert_eq!(q.before.as_deref(), given("before"));
        }
        Err(e) => {
            one_sentence(&e.to_string());
            assert!(matches!(e, hookrunner::http::error::ApiError::BadRequest(_)), "{e:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Config loading.

/// Never a panic; every error reads `webhook.yaml:LINE:COL: ...` or
/// `webhook.yaml: ...`, with a line inside the text (as YAML counts lines:
/// a lone CR breaks one too).
pub fn check_config(text: &str) {
    let Err(errors) = hookrunner::config::parse(text, Path::new("webhook.yaml")) else {
        return;
    };
    assert!(!errors.0.is_empty(), "an error without an error");
    // YAML breaks lines at CR, LF, CR LF, NEL, LS and PS: at most this many lines.
    let lines = 1 + text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    for e in &errors.0 {
        let shown = e.to_string();
        let rest = shown
            .strip_prefix("webhook.yaml")
            .unwrap_or_else(|| panic!("error does not start with the file: {shown:?}"));
        let rest = match rest.strip_prefix(':') {
            Some(after) if after.starts_with(|c: char| c.is_ascii_digit()) => {
                let (line, after) = after.split_once(':').expect("line:col");
                let (col, after) = after.split_once(':').expect("col:");
                let (line, col): (usize, usize) = (line.parse().expect("line"), col.parse().expect("column"));
                assert!(line >= 1 && col >= 1, "{shown:?}");
                assert!(line <= lines + 1, "line {line} past the end ({lines} lines): {shown:?}");
                after
            }
            Some(after) => after,
            None => panic!("no `:` after the file: {shown:?}"),
        };
        assert!(rest.starts_with(' ') && rest.len() > 1, "no message: {shown:?}");
    }
}

// ---------------------------------------------------------------------------
// Signatures.

/// Secrets of the sources below; no error message may contain one.
pub const SECRETS: &[&str] = &[
    "whsec_fuzz_stripe_secret",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "8f742231b10e8888abcd99yyyzzz85a5",
    "gh-fuzz-secret",
    "hmac-fuzz-key",
    "gitea-fuzz-secret",
    "gl-fuzz-token",
    "bb-fuzz-secret",
];

/// One source per signature scheme (and rotation lists), as a config defines them.
pub const SIGNED_SOURCES: &str = r#"
sources:
  stripe:
    provider: stripe
    secrets: [whsec_old_stripe, whsec_fuzz_stripe_secret]
  standard:
    provider: standard
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  slack:
    provider: slack
    secret: 8f742231b10e8888abcd99yyyzzz85a5
  github:
    provider: github
    secrets: [gh-old, gh-fuzz-secret]
    allow_sha1: true
  hmac_hex:
    provider: generic
    auth: {hmac: sha256, secret: hmac-fuzz-key, header: X-Sig, prefix: "sha256="}
  hmac_b64:
    provider: generic
    auth: {hmac: sha512, secret: hmac-fuzz-key, header: X-Sig, prefix: "v=", encoding: base64}
  hmac_sha1:
    provider: generic
    auth: {hmac: sha1, secret: hmac-fuzz-key, header: X-Sig}
  gitea:
    provider: gitea
    secret: gitea-fuzz-secret
  gitlab:
    provider: gitlab
    token: gl-fuzz-token
    signing_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  bitbucket:
    provider: bitbucket
    secret: bb-fuzz-secret
"#;

/// The sources of [`SIGNED_SOURCES`], in a fixed order.
pub fn signed_sources() -> &'static [Arc<Source>] {
    static SOURCES: OnceLock<Vec<Arc<Source>>> = OnceLock::new();
    SOURCES.get_or_init(|| {
        let config =
            hookrunner::config::parse(SIGNED_SOURCES, Path::new("webhook.yaml")).unwrap_or_else(|e| panic!("{e}"));
        [
            "stripe",
            "standard",
            "slack",
            "github",
            "hmac_hex",
            "hmac_b64",
            "hmac_sha1",
            "gitea",
            "gitlab",
            "bitbucket",
        ]
        .iter()
        .map(|n| config.sources[*n].clone())
        .collect()
    })
}

/// A time the signature tests are "now" at.
pub const NOW: u64 = 1_700_000_000;

pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Headers the fuzzer wrote: `verify` never panics, never accepts them
/// (nobody without the secret can sign), and its error names no secret.
pub fn check_forged(source: &Source, headers: &HeaderPairs, query: &[(String, String)], body: &[u8], now: SystemTime) {
    let result = hookrunner::auth::verify(&source.auth, headers, query, body, now);
    match result {
        Ok(()) => panic!(
            "source `{}` accepted a delivery nobody signed: {headers:?}",
            source.name
        ),
        Err(e) => {
            let message = e.to_string();
            one_sentence(&message);
            for s in SECRETS {
                assert!(!message.contains(s), "the error shows a secret: {message}");
            }
        }
    }
}

/// What `hookrunner send` signs is accepted, and no longer once any one byte
/// of the body changes (`xor` != 0 is applied at `position`).
pub fn check_round_trip(source: &Source, body: &[u8], now: SystemTime, position: usize, xor: u8) {
    let signed = hookrunner::client::sign::sign(source, "push", body, now)
        .unwrap_or_else(|e| panic!("source `{}` cannot sign: {e}", source.name));
    let mut headers = HeaderPairs::new();
    headers.add("Content-Type", "application/json");
    for (k, v) in &signed.headers {
        headers.add(k, v.as_str());
    }
    let verify = |body: &[u8]| hookrunner::auth::verify(&source.auth, &headers, &signed.query, body, now);
    assert_eq!(
        verify(body),
        Ok(()),
        "source `{}` refuses what it signed: {signed:?}",
        source.name
    );
    if body.is_empty() || xor == 0 {
        return;
    }
    let mut tampered = body.to_vec();
    let at = position % body.len();
    tampered[at] ^= xor;
    let signs_body = !matches!(
        source.auth,
        hookrunner::auth::Auth::None | hookrunner::auth::Auth::Token { .. } | hookrunner::auth::Auth::Basic { .. }
    );
    if signs_body {
        assert!(
            verify(&tampered).is_err(),
            "source `{}` accepts a body with byte {at} changed",
            source.name
        );
    }
}

/// Splits fuzzer text into headers (`Name: value` lines up to an empty line)
/// and the body after it.
pub fn split_request(data: &[u8]) -> (HeaderPairs, &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut headers = HeaderPairs::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&line[..colon]) else {
            continue;
        };
        let mut value = &line[colon + 1..];
        while let [b' ', rest @ ..] = value {
            value = rest;
        }
        headers.add(name.trim(), value);
    }
    (headers, body)
}

// ---------------------------------------------------------------------------
// What a delivery record keeps of a request's headers, and log escaping.

/// The header names whose values a record never keeps (besides a source's own).
const SENSITIVE: &[&str] = &[
    "signature",
    "token",
    "authorization",
    "cookie",
    "secret",
    "api-key",
    "apikey",
    "password",
];

/// `mask_headers` keeps one `name: value` entry per header (names being HTTP
/// tokens), `***` for any credential-carrying name, the value as sent when
/// it is short visible text, else its lossy text cut to 1024 bytes with a
/// note; never a line break. `logging::escape` of any name or value leaves
/// no control character.
pub fn check_record_headers(headers: &HeaderPairs, extra_sensitive: &[&str]) {
    use hookrunner::headers::Headers as _;
    let list = hookrunner::delivery::record::mask_headers(headers, extra_sensitive);
    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
    headers.each(&mut |n, v| sent.push((n.to_string(), v.to_vec())));
    for (n, v) in &sent {
        check_escape(n);
        check_escape(&String::from_utf8_lossy(v));
    }
    if !sent.iter().all(|(n, _)| hookrunner::headers::valid_name(n)) {
        return; // HTTP delivers only token names; others need only not panic.
    }
    let mut want: Vec<(String, String)> = sent
        .iter()
        .map(|(n, v)| {
            let lower = n.to_ascii_lowercase();
            let value = if SENSITIVE.iter().any(|s| lower.contains(s))
                || extra_sensitive.iter().any(|e| e.eq_ignore_ascii_case(n))
            {
                "***".to_string()
            } else {
                match std::str::from_utf8(v) {
                    Ok(t) if t.len() <= 1024 && t.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b)) => {
                        t.to_string()
                    }
                    _ => {
                        let t = String::from_utf8_lossy(v);
                        if t.len() > 1024 {
                            let mut cut = 1024;
                            while !t.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            format!("{}… ({} bytes)", &t[..cut], t.len())
                        } else {
                            t.into_owned()
                        }
                    }
                }
            };
            (n.clone(), value)
        })
        .collect();
    // Sorted by name (then value), kept up to MAX_HEADER_BYTES of
    // `name: value` lines; the rest counted in one last line.
    want.sort();
    let cap = hookrunner::delivery::record::MAX_HEADER_BYTES;
    let (mut used, mut dropped, mut dropped_bytes) = (0usize, 0usize, 0usize);
    want.retain(|(n, v)| {
        let size = n.len() + v.len() + 3;
        if dropped > 0 || used + size > cap {
            dropped += 1;
            dropped_bytes += size;
            return false;
        }
        used += size;
        true
    });
    let mut want: Vec<(String, String)> = want
        .into_iter()
        .map(|(n, v)| (n.replace(['\n', '\r'], " "), v.replace(['\n', '\r'], " ")))
        .collect();
    if dropped > 0 {
        want.push((
            "…".to_string(),
            format!("{dropped} more headers not kept ({dropped_bytes} bytes; a record keeps {cap} bytes of headers)"),
        ));
    }
    let got: Vec<(String, String)> = list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    assert_eq!(got, want, "recorded headers");
}

/// Escaped text has no control character and no line or paragraph
/// separator; text without them is left as it is.
pub fn check_escape(text: &str) {
    let needs = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    let escaped = hookrunner::logging::escape(text);
    assert!(
        !escaped.chars().any(needs),
        "escape left a control character: {escaped:?}"
    );
    if !text.chars().any(needs) {
        assert_eq!(escaped, text);
    }
}

//! Who sent a delivery: IP allowlists, tokens, HTTP Basic and signatures.
//!
//! Every check runs over the exact raw body bytes and compares in constant
//! time. Errors say what was wrong in plain words and never echo a secret.
//! Where a source lists several secrets (key rotation), every one is tried
//! and any may match.

mod basic;
pub mod ip;

mod signature;
pub mod slack;
pub mod standard;
pub mod stripe;
pub mod timestamp;

use crate::headers::Headers;
use crate::secret::Secret;
use std::time::{Duration, SystemTime};

pub use signature::{HmacAlgo, SigEncoding};
pub use standard::SigningKey;

/// How a source proves who sent a delivery.
#[derive(Debug)]
pub enum Auth {
    /// Anyone may send (a generic source with `auth: none`).
    None,
    /// A shared token, in a header (`X-Gitlab-Token`) or a query parameter.
    Token {
        secrets: Vec<Secret>,
        header: Option<String>,
        query: Option<String>,
    },
    /// An HMAC of the raw body in a header (`X-Hub-Signature: sha256=<hex>`)
    /// or a query parameter: the header when sent, else the query parameter.
    /// The value may list several signatures (`sha256=<a>,sha256=<b>`); each
    /// may carry `prefix` or not.
    Hmac {
        algo: HmacAlgo,
        secrets: Vec<Secret>,
        header: Option<String>,
        query: Option<String>,
        prefix: String,
        encoding: SigEncoding,
    },
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>`; the legacy SHA-1
    /// `X-Hub-Signature` only when allowed and no SHA-256 header was sent.
    Github { secrets: Vec<Secret>, allow_sha1: bool },
    /// Gitea, Forgejo, Gogs: the bare hex HMAC-SHA256 in `header`, over the
    /// body, or over the form's `payload` field in form mode (what they sign).
    Gitea { secrets: Vec<Secret>, header: &'static str },
    /// HTTP Basic (`Authorization: Basic ...`).
    Basic { user: Secret, password: Secret },
    /// Slack's `X-Slack-Signature: v0=...` with its request timestamp.
    Slack { secrets: Vec<Secret>, tolerance: Duration },
    /// Standard Webhooks / Svix / GitLab signing tokens: `webhook-signature: v1,...`.
    Standard { keys: Vec<SigningKey>, tolerance: Duration },
    /// Stripe's `Stripe-Signature: t=...,v1=...`.
    Stripe { secrets: Vec<Secret>, tolerance: Duration },
    /// Every one must pass (GitLab with both a token and a signing token).
    All(Vec<Auth>),
}

impl Auth {
    /// How far a signed timestamp may be from our clock, for timestamped schemes.
    pub fn tolerance(&self) -> Option<Duration> {
        match self {
            Auth::Slack { tolerance, .. } | Auth::Standard { tolerance, .. } | Auth::Stripe { tolerance, .. } => {
                Some(*tolerance)
            }
            Auth::All(all) => all.iter().filter_map(Auth::tolerance).max(),
            _ => None,
        }
    }
}

impl Auth {
    /// The header and query-parameter names that carry a secret verbatim
    /// (tokens, HTTP Basic) or a signature under a name that does not say so
    /// (a generic HMAC header such as `X-Sig`), for whoever records requests
    /// to mask them.
    pub fn secret_carriers(&self) -> (Vec<&str>, Vec<&str>) {
        match self {
            Auth::Token { header, query, .. } => (
                header.iter().map(String::as_str).collect(),
                query.iter().map(String::as_str).collect(),
            ),
            Auth::Basic { .. } => (vec!["Authorization"], Vec::new()),
            // Not a secret, but it replays its body: masked like every signature.
            Auth::Hmac { header, query, .. } => (
                header.iter().map(String::as_str).collect(),
                query.iter().map(String::as_str).collect(),
            ),
            Auth::All(all) => {
                all.iter()
                    .map(Auth::secret_carriers)
                    .fold((Vec::new(), Vec::new()), |(mut h, mut q), (h2, q2)| {
                        h.extend(h2);
                        q.extend(q2);
                        (h, q)
                    })
            }
            _ => (Vec::new(), Vec::new()),
        }
    }
}

impl Auth {
    /// Every header and query-parameter name this auth reads, secret or not
    /// (a signature, its timestamp, a token), so that one sent twice can be
    /// refused instead of one of the two being picked.
    pub fn reads(&self) -> (Vec<&str>, Vec<&str>) {
        match self {
            Auth::None => (Vec::new(), Vec::new()),
            Auth::Token { header, query, .. } | Auth::Hmac { header, query, .. } => (
                header.iter().map(String::as_str).collect(),
                query.iter().map(String::as_str).collect(),
            ),
            Auth::Github { .. } => (vec!["X-Hub-Signature-256", "X-Hub-Signature"], Vec::new()),
            Auth::Gitea { header, .. } => (vec![header], Vec::new()),
            Auth::Basic { .. } => (vec!["Authorization"], Vec::new()),
            Auth::Slack { .. } => (vec![slack::SIGNATURE, slack::TIMESTAMP], Vec::new()),
            Auth::Standard { .. } => (
                standard::ID
                    .iter()
                    .chain(&standard::TIMESTAMP)
                    .chain(&standard::SIGNATURE)
                    .copied()
                    .collect(),
                Vec::new(),
            ),
            Auth::Stripe { .. } => (vec![stripe::SIGNATURE], Vec::new()),
            Auth::All(all) => all
                .iter()
                .map(Auth::reads)
                .fold((Vec::new(), Vec::new()), |(mut h, mut q), (h2, q2)| {
                    h.extend(h2);
                    q.extend(q2);
                    (h, q)
                }),
        }
    }
}

/// Why a delivery was refused (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the `{0}` header was sent more than once; send it once")]
    RepeatedHeader(String),
    #[error("the `{0}` query parameter was sent more than once; send it once")]
    RepeatedQuery(String),
    #[error("the `{0}` header is missing")]
    MissingHeader(String),
    #[error("no token was sent (expected {0})")]
    MissingToken(String),
    #[error("the token does not match")]
    TokenMismatch,
    #[error("the `{0}` header is not a well-formed signature")]
    MalformedSignature(String),
    #[error("no signature was sent (expected {0})")]
    MissingSignature(String),
    #[error("the `{0}` query parameter is not a well-formed signature")]
    MalformedQuerySignature(String),
    #[error("the signature does not match")]
    SignatureMismatch,
    #[error(
        "only the legacy SHA-1 `X-Hub-Signature` header was sent; set `allow_sha1: true` on the source to accept it"
    )]
    Sha1NotAllowed,
    #[error("the `{0}` header is not a Unix timestamp")]
    MalformedTimestamp(String),
    #[error("timestamp {age} s old, tolerance {tolerance} s")]
    TooOld { age: u64, tolerance: u64 },
    #[error("timestamp {ahead} s in the future, tolerance {tolerance} s")]
    InFuture { ahead: u64, tolerance: u64 },
    #[error("no HTTP Basic credentials were sent (expected an `Authorization: Basic ...` header)")]
    MissingCredentials,
    #[error("the user name or password does not match")]
    CredentialsMismatch,
}

/// A header's value as text; missing or not text is an error naming it.
pub(crate) fn header_text<'h>(headers: &'h dyn Headers, name: &str) -> Result<&'h str, AuthError> {
    let value = headers
        .get_bytes(name)
        .ok_or_else(|| AuthError::MissingHeader(name.into()))?;
    std::str::from_utf8(value).map_err(|_| AuthError::MalformedSignature(name.into()))
}

/// Whether `sent` equals any of `secrets`; each compared in constant time.
fn any_matches(secrets: &[Secret], sent: &[u8]) -> bool {
    secrets.iter().fold(false, |ok, s| s.matches(sent) | ok)
}

/// Whether `mac` is the HMAC of `body` under any of `secrets`.
fn any_mac(algo: HmacAlgo, secrets: &[Secret], body: &[u8], mac: &[u8]) -> bool {
    secrets
        .iter()
        .fold(false, |ok, s| algo.verify(s.expose(), body, mac) | ok)
}

/// Reads `<prefix><encoded mac>` from `header` and checks it against `body`.
fn check_mac(
    algo: HmacAlgo,
    secrets: &[Secret],
    headers: &dyn Headers,
    header: &str,
    prefix: &str,
    encoding: SigEncoding,
    body: &[u8],
) -> Result<(), AuthError> {
    let malformed = || AuthError::MalformedSignature(header.to_string());
    let text = header_text(headers, header)?.trim();
    let encoded = text.strip_prefix(prefix).ok_or_else(malformed)?;
    let mac = encoding.decode(encoded).ok_or_else(malformed)?;
    if any_mac(algo, secrets, body, &mac) {
        Ok(())
    } else {
        Err(AuthError::SignatureMismatch)
    }
}

/// The most signatures one value may list; more is taken for an attack.
const MAX_SIGNATURES: usize = 16;

/// Checks `auth: {hmac: ...}`: the signature from `header` if sent, else from
/// the `query` parameter; a comma-separated list passes when any entry is the
/// HMAC of `body` under any secret. Each entry is trimmed and may carry
/// `prefix` or not; hex is read in either case.
#[allow(clippy::too_many_arguments)]
fn check_listed_mac(
    algo: HmacAlgo,
    secrets: &[Secret],
    headers: &dyn Headers,
    query: &[(String, String)],
    header: Option<&str>,
    query_name: Option<&str>,
    prefix: &str,
    encoding: SigEncoding,
    body: &[u8],
) -> Result<(), AuthError> {
    let from_header = header.and_then(|h| {
        headers
            .get_bytes(h)
            .map(|v| (v, AuthError::MalformedSignature(h.into())))
    });
    let from_query = || {
        let q = query_name?;
        query
            .iter()
            .find(|(k, _)| k == q)
            .map(|(_, v)| (v.as_bytes(), AuthError::MalformedQuerySignature(q.into())))
    };
    let Some((sent, malformed)) = from_header.or_else(from_query) else {
        let expected = match (header, query_name) {
            (Some(h), Some(q)) => format!("the `{h}` header or the `{q}` query parameter"),
            (Some(h), None) => format!("the `{h}` header"),
            (None, Some(q)) => format!("the `{q}` query parameter"),
            (None, None) => "a signature".to_string(),
        };
        return Err(AuthError::MissingSignature(expected));
    };
    let Ok(text) = std::str::from_utf8(sent) else {
        return Err(malformed);
    };
    let candidates: Vec<Vec<u8>> = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .take(MAX_SIGNATURES + 1)
        .filter_map(|entry| {
            let encoded = if prefix.is_empty() {
                entry
            } else {
                entry.strip_prefix(prefix).unwrap_or(entry)
            };
            encoding.decode(encoded).filter(|mac| !mac.is_empty())
        })
        .collect();
    if candidates.is_empty() || candidates.len() > MAX_SIGNATURES {
        return Err(malformed);
    }
    // Every secret's MAC against every candidate, each in constant time.
    let ok = secrets.iter().fold(false, |ok, s| {
        let mac = algo.sign(s.expose(), body);
        candidates.iter().fold(ok, |ok, c| {
            bool::from(subtle::ConstantTimeEq::ct_eq(mac.as_slice(), c.as_slice())) | ok
        })
    });
    if ok {
        Ok(())
    } else {
        Err(AuthError::SignatureMismatch)
    }
}

/// What Gitea signs: the body, or in form mode the JSON in its `payload`
/// field. Only a form of that one field counts as form mode: any other field
/// beside it would be read by no signature, so then the whole body must be
/// what was signed (and a form Gitea sent never is: it fails the check).
fn gitea_signed(headers: &dyn Headers, body: &[u8]) -> Vec<u8> {
    let content_type = headers.get("content-type").unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        let mut fields = form_urlencoded::parse(body);
        if let (Some((name, payload)), None) = (fields.next(), fields.next()) {
            if name == "payload" {
                return payload.into_owned().into_bytes();
            }
        }
    }
    body.to_vec()
}

/// The first of `names` sent more than once, found in one pass over the
/// headers (a lookup per name costs more: every delivery pays for this).
fn repeated_header<'n>(headers: &dyn Headers, names: &[&'n str]) -> Option<&'n str> {
    if names.is_empty() {
        return None;
    }
    // No allocation for the few names an auth reads (a few more than six
    // only when `all:` combines several).
    let (mut small, mut big) = ([0u8; 16], Vec::new());
    let counts: &mut [u8] = if names.len() <= small.len() {
        &mut small[..names.len()]
    } else {
        big.resize(names.len(), 0);
        &mut big
    };
    headers.each(&mut |name, _| {
        for (i, n) in names.iter().enumerate() {
            if name.eq_ignore_ascii_case(n) {
                counts[i] = counts[i].saturating_add(1);
            }
        }
    });
    counts.iter().position(|c| *c > 1).map(|i| names[i])
}

/// Checks a delivery against its source's auth; `now` is for timestamped schemes.
pub fn verify(
    auth: &Auth,
    headers: &dyn Headers,
    query: &[(String, String)],
    body: &[u8],
    now: SystemTime,
) -> Result<(), AuthError> {
    // Two values where one is read: fail closed rather than pick one.
    let (names, params) = auth.reads();
    if let Some(h) = repeated_header(headers, &names) {
        return Err(AuthError::RepeatedHeader(h.to_string()));
    }
    if let Some(q) = params
        .iter()
        .find(|q| query.iter().filter(|(k, _)| k == *q).count() > 1)
    {
        return Err(AuthError::RepeatedQuery(q.to_string()));
    }
    match auth {
        Auth::None => Ok(()),
        Auth::Token {
            secrets,
            header,
            query: query_name,
        } => {
            let from_header = header.as_deref().and_then(|h| headers.get_bytes(h));
            let from_query = query_name
                .as_deref()
                .and_then(|q| query.iter().find(|(k, _)| k == q))
                .map(|(_, v)| v.as_bytes());
            let Some(sent) = from_header.or(from_query) else {
                let expected = match (header, query_name) {
                    (Some(h), Some(q)) => format!("the `{h}` header or the `{q}` query parameter"),
                    (Some(h), None) => format!("the `{h}` header"),
                    (None, Some(q)) => format!("the `{q}` query parameter"),
                    (None, None) => "a token".to_string(),
                };
                return Err(AuthError::MissingToken(expected));
            };
            if any_matches(secrets, sent) {
                Ok(())
            } else {
                Err(AuthError::TokenMismatch)
            }
        }
        Auth::Hmac {
            algo,
            secrets,
            header,
            query: query_name,
            prefix,
            encoding,
        } => check_listed_mac(
            *algo,
            secrets,
            headers,
            query,
            header.as_deref(),
            query_name.as_deref(),
            prefix,
            *encoding,
            body,
        ),
        Auth::Github { secrets, allow_sha1 } => {
            const SHA256: &str = "X-Hub-Signature-256";
            const SHA1: &str = "X-Hub-Signature";
            if headers.get_bytes(SHA256).is_some() || headers.get_bytes(SHA1).is_none() {
                check_mac(
                    HmacAlgo::Sha256,
                    secrets,
                    headers,
                    SHA256,
                    "sha256=",
                    SigEncoding::Hex,
                    body,
                )
            } else if *allow_sha1 {
                check_mac(HmacAlgo::Sha1, secrets, headers, SHA1, "sha1=", SigEncoding::Hex, body)
            } else {
                Err(AuthError::Sha1NotAllowed)
            }
        }
        Auth::Gitea { secrets, header } => {
            let signed = gitea_signed(headers, body);
            check_mac(
                HmacAlgo::Sha256,
                secrets,
                headers,
                header,
                "",
                SigEncoding::Hex,
                &signed,
            )
        }
        Auth::Basic { user, password } => basic::verify(user, password, headers),
        Auth::Slack { secrets, tolerance } => slack::verify(secrets, *tolerance, headers, body, now),
        Auth::Standard { keys, tolerance } => standard::verify(keys, *tolerance, headers, body, now),
        Auth::Stripe { secrets, tolerance } => stripe::verify(secrets, *tolerance, headers, body, now),
        Auth::All(all) => all.iter().try_for_each(|a| verify(a, headers, query, body, now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> crate::headers::HeaderPairs {
        let mut h = crate::headers::HeaderPairs::new();
        for (k, v) in pairs {
            h.add(k, *v);
        }
        h
    }

    fn check(auth: &Auth, pairs: &[(&str, &str)], body: &[u8]) -> Result<(), AuthError> {
        verify(auth, &headers(pairs), &[], body, SystemTime::now())
    }

    /// GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
    const GH_SECRET: &str = "It's a Secret to Everybody";
    const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_sha256_and_optional_sha1() {
        let strict = Auth::Github {
            secrets: vec![Secret::new(GH_SECRET)],
            allow_sha1: false,
        };
        assert_eq!(
            check(&strict, &[("X-Hub-Signature-256", GH_SIG)], b"Hello, World!"),
            Ok(())
        );
        assert_eq!(
            check(&strict, &[("X-Hub-Signature-256", GH_SIG)], b"Hello, World?"),
            Err(AuthError::SignatureMismatch)
        );
        let sha1 = format!(
            "sha1={}",
            hex::encode(HmacAlgo::Sha1.sign(GH_SECRET.as_bytes(), b"Hello, World!"))
        );
        assert_eq!(
            check(&strict, &[("X-Hub-Signature", &sha1)], b"Hello, World!"),
            Err(AuthError::Sha1NotAllowed)
        );
        assert_eq!(
            check(&strict, &[], b"Hello, World!"),
            Err(AuthError::MissingHeader("X-Hub-Signature-256".into()))
        );
        let lenient = Auth::Github {
            secrets: vec![Secret::new(GH_SECRET)],
            allow_sha1: true,
        };
        assert_eq!(check(&lenient, &[("X-Hub-Signature", &sha1)], b"Hello, World!"), Ok(()));
        // When SHA-256 is sent, it alone decides: a good SHA-1 cannot rescue a bad SHA-256.
        let bad256 = format!("sha256={}", "00".repeat(32));
        assert_eq!(
            check(
                &lenient,
                &[("X-Hub-Signature-256", &bad256), ("X-Hub-Signature", &sha1)],
                b"Hello, World!"
            ),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn rotated_secrets_any_may_match() {
        let auth = Auth::Github {
            secrets: vec![Secret::new("old"), Secret::new(GH_SECRET)],
            allow_sha1: false,
        };
        assert_eq!(
            check(&auth, &[("X-Hub-Signature-256", GH_SIG)], b"Hello, World!"),
            Ok(())
        );
        let tokens = Auth::Token {
            secrets: vec![Secret::new("a"), Secret::new("b")],
            header: Some("X-T".into()),
            query: None,
        };
        assert_eq!(check(&tokens, &[("X-T", "a")], b""), Ok(()));
        assert_eq!(check(&tokens, &[("X-T", "b")], b""), Ok(()));
        assert_eq!(check(&tokens, &[("X-T", "c")], b""), Err(AuthError::TokenMismatch));
    }

    #[test]
    fn gitea_bare_hex_over_body_or_form_payload() {
        let auth = Auth::Gitea {
            secrets: vec![Secret::new(GH_SECRET)],
            header: "X-Gitea-Signature",
        };
        let bare = GH_SIG.trim_start_matches("sha256=");
        assert_eq!(check(&auth, &[("X-Gitea-Signature", bare)], b"Hello, World!"), Ok(()));
        assert_eq!(
            check(&auth, &[("X-Gitea-Signature", GH_SIG)], b"Hello, World!"),
            Err(AuthError::MalformedSignature("X-Gitea-Signature".into()))
        );
        let form = b"payload=Hello%2C+World%21";
        let ct = ("Content-Type", "application/x-www-form-urlencoded");
        assert_eq!(check(&auth, &[ct, ("X-Gitea-Signature", bare)], form), Ok(()));
    }

    #[test]
    fn hmac_base64_and_sha512() {
        let mac = HmacAlgo::Sha512.sign(b"k", b"body");
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&mac);
        let auth = Auth::Hmac {
            algo: HmacAlgo::Sha512,
            secrets: vec![Secret::new("k")],
            header: Some("X-Sig".into()),
            query: None,
            prefix: String::new(),
            encoding: SigEncoding::Base64,
        };
        assert_eq!(check(&auth, &[("X-Sig", &b64)], b"body"), Ok(()));
        assert_eq!(
            check(&auth, &[("X-Sig", &b64)], b"bodY"),
            Err(AuthError::SignatureMismatch)
        );
    }

    fn generic_hmac(header: Option<&str>, query: Option<&str>, prefix: &str) -> Auth {
        Auth::Hmac {
            algo: HmacAlgo::Sha256,
            secrets: vec![Secret::new("old"), Secret::new("k")],
            header: header.map(str::to_string),
            query: query.map(str::to_string),
            prefix: prefix.into(),
            encoding: SigEncoding::Hex,
        }
    }

    #[test]
    fn generic_hmac_takes_lists_bare_or_prefixed_hex_in_either_case() {
        let auth = generic_hmac(Some("X-Sig"), None, "sha256=");
        let good = hex::encode(HmacAlgo::Sha256.sign(b"k", b"body"));
        let bad = "00".repeat(32);
        for sent in [
            format!("sha256={good}"),
            good.clone(),
            good.to_uppercase(),
            format!("sha256={}", good.to_uppercase()),
            format!("sha256={bad},sha256={good}"),
            format!("sha256={bad}, {good}"),
            format!(" {bad} ,sha1=zz,  sha256={good} "),
        ] {
            assert_eq!(check(&auth, &[("X-Sig", &sent)], b"body"), Ok(()), "{sent}");
        }
        for (sent, expected) in [
            (format!("sha256={bad},{bad}"), AuthError::SignatureMismatch),
            (good.clone(), AuthError::SignatureMismatch), // over another body below
            ("sha256=".to_string(), AuthError::MalformedSignature("X-Sig".into())),
            (" , ".to_string(), AuthError::MalformedSignature("X-Sig".into())),
            (
                vec![bad.as_str(); 17].join(","),
                AuthError::MalformedSignature("X-Sig".into()),
            ),
        ] {
            assert_eq!(check(&auth, &[("X-Sig", &sent)], b"bodY"), Err(expected), "{sent}");
        }
        assert_eq!(
            check(&auth, &[], b"body"),
            Err(AuthError::MissingSignature("the `X-Sig` header".into()))
        );
    }

    #[test]
    fn generic_hmac_reads_the_query_when_the_header_is_not_sent() {
        let good = hex::encode(HmacAlgo::Sha256.sign(b"k", b"body"));
        let query = vec![("sig".to_string(), good.clone())];
        let only_query = generic_hmac(None, Some("sig"), "");
        let both = generic_hmac(Some("X-Sig"), Some("sig"), "");
        let now = SystemTime::now();
        assert_eq!(verify(&only_query, &headers(&[]), &query, b"body", now), Ok(()));
        assert_eq!(verify(&both, &headers(&[]), &query, b"body", now), Ok(()));
        // The header comes first: a wrong header is not rescued by the query.
        assert_eq!(
            verify(&both, &headers(&[("X-Sig", "00")]), &query, b"body", now),
            Err(AuthError::SignatureMismatch)
        );
        assert_eq!(
            verify(&both, &headers(&[]), &[], b"body", now),
            Err(AuthError::MissingSignature(
                "the `X-Sig` header or the `sig` query parameter".into()
            ))
        );
        assert_eq!(
            verify(
                &only_query,
                &headers(&[]),
                &[("sig".into(), "xyz".into())],
                b"body",
                now
            ),
            Err(AuthError::MalformedQuerySignature("sig".into()))
        );
    }

    #[test]
    fn an_hmac_over_an_empty_body_verifies() {
        let auth = generic_hmac(Some("X-Sig"), None, "sha256=");
        let empty = format!("sha256={}", hex::encode(HmacAlgo::Sha256.sign(b"k", b"")));
        assert_eq!(check(&auth, &[("X-Sig", &empty)], b""), Ok(()));
        assert_eq!(
            check(&auth, &[("X-Sig", &empty)], b" "),
            Err(AuthError::SignatureMismatch)
        );
        let github = Auth::Github {
            secrets: vec![Secret::new("k")],
            allow_sha1: false,
        };
        assert_eq!(check(&github, &[("X-Hub-Signature-256", &empty)], b""), Ok(()));
    }

    #[test]
    fn all_must_pass_and_errors_never_hold_secrets() {
        let auth = Auth::All(vec![
            Auth::Token {
                secrets: vec![Secret::new("tok-secret")],
                header: Some("X-Gitlab-Token".into()),
                query: None,
            },
            Auth::Basic {
                user: Secret::new("u"),
                password: Secret::new("pw-secret"),
            },
        ]);
        assert_eq!(
            check(&auth, &[("X-Gitlab-Token", "tok-secret")], b""),
            Err(AuthError::MissingCredentials)
        );
        assert_eq!(
            auth.secret_carriers(),
            (vec!["X-Gitlab-Token", "Authorization"], vec![])
        );
        let debug = format!("{auth:?}");
        assert!(!debug.contains("tok-secret") && !debug.contains("pw-secret"), "{debug}");
    }
}

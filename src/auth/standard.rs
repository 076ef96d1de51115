//! Standard Webhooks (also Svix, and GitLab's signing token):
//! `webhook-signature: v1,<base64> [v1,<base64> ...]`, each the HMAC-SHA256 of
//! `"{webhook-id}.{webhook-timestamp}.{body}"` under the base64-decoded secret.

use super::signature::check_keys;
use super::{timestamp, AuthError};
use crate::headers::Headers;
use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use std::fmt;
use std::time::{Duration, SystemTime};

/// The headers, each with its `svix-` alias.
pub const ID: [&str; 2] = ["webhook-id", "svix-id"];
pub const TIMESTAMP: [&str; 2] = ["webhook-timestamp", "svix-timestamp"];
pub const SIGNATURE: [&str; 2] = ["webhook-signature", "svix-signature"];

/// Base64 with or without padding: senders differ.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A decoded `whsec_...` secret: the HMAC key bytes. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// `whsec_<base64>`, or the bare base64; `None` when it does not decode.
    pub fn parse(secret: &str) -> Option<Self> {
        let encoded = secret.trim().strip_prefix("whsec_").unwrap_or(secret.trim());
        LENIENT.decode(encoded).ok().filter(|k| !k.is_empty()).map(SigningKey)
    }
}

impl SigningKey {
    /// A key from a secret: `whsec_<base64>` is decoded, anything else is used as bytes.
    pub fn for_signing(secret: &str) -> Self {
        match secret.trim().strip_prefix("whsec_") {
            Some(_) => SigningKey::parse(secret).unwrap_or_else(|| SigningKey(secret.as_bytes().to_vec())),
            None => SigningKey(secret.as_bytes().to_vec()),
        }
    }

    /// The `webhook-signature` value for a message: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

/// The first of `names` the request carries, as text.
fn first<'h>(headers: &'h dyn Headers, names: &[&str]) -> Result<&'h str, AuthError> {
    match names.iter().find_map(|n| headers.get_bytes(n)) {
        Some(v) => std::str::from_utf8(v).map_err(|_| AuthError::MalformedSignature(names[0].into())),
        None => Err(AuthError::MissingHeader(names[0].into())),
    }
}

pub fn verify(
    keys: &[SigningKey],
    tolerance: Duration,
    headers: &dyn Headers,
    body: &[u8],
    now: SystemTime,
) -> Result<(), AuthError> {
    let id = first(headers, &ID)?.trim();
    let sent_at = first(headers, &TIMESTAMP)?.trim();
    let ts = timestamp::parse(sent_at).ok_or_else(|| AuthError::MalformedTimestamp(TIMESTAMP[0].into()))?;
    let list = first(headers, &SIGNATURE)?;
    // Other versions (`v1a,` asymmetric, future ones) are skipped, not refused.
    let candidates: Vec<Vec<u8>> = list
        .split_ascii_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| general_purpose::STANDARD.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(AuthError::MalformedSignature(SIGNATURE[0].into()));
    }
    timestamp::check(ts, now, tolerance)?;
    let prefix = format!("{id}.{sent_at}.");
    check_keys(keys.iter().map(|k| k.0.as_slice()), &prefix, body, &candidates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderPairs;
    use std::time::UNIX_EPOCH;

    /// The test vector of the Standard Webhooks specification (and its reference libraries).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID_: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const TOL: Duration = Duration::from_secs(300);

    fn headers(prefix: &str, sig: &str) -> HeaderPairs {
        let mut h = HeaderPairs::new();
        for (name, value) in [("id", ID_), ("timestamp", TS), ("signature", sig)] {
            h.set(&format!("{prefix}-{name}"), value);
        }
        h
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1614265330 + 5)
    }

    #[test]
    fn signing_matches_the_specification_vector() {
        let key = SigningKey::for_signing(SECRET);
        assert_eq!(key.sign(ID_, TS.parse().unwrap(), BODY), SIG);
    }

    #[test]
    fn specification_vector() {
        let keys = [SigningKey::parse(SECRET).unwrap()];
        assert_eq!(verify(&keys, TOL, &headers("webhook", SIG), BODY, now()), Ok(()));
        // The svix- aliases.
        assert_eq!(verify(&keys, TOL, &headers("svix", SIG), BODY, now()), Ok(()));
        // Several signatures, other versions ignored: any v1 may match.
        let list = format!("v1a,abcd v1,AAAA {SIG} v2,zzz");
        assert_eq!(verify(&keys, TOL, &headers("webhook", &list), BODY, now()), Ok(()));
        // The secret without its prefix is the same key.
        let bare = [SigningKey::parse(SECRET.trim_start_matches("whsec_")).unwrap()];
        assert_eq!(verify(&bare, TOL, &headers("webhook", SIG), BODY, now()), Ok(()));
        assert_eq!(
            verify(&keys, TOL, &headers("webhook", SIG), br#"{"test": 2432232315}"#, now()),
            Err(AuthError::SignatureMismatch)
        );
        let other = [SigningKey::parse("whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=").unwrap()];
        assert_eq!(
            verify(&other, TOL, &headers("webhook", SIG), BODY, now()),
            Err(AuthError::SignatureMismatch)
        );
        let rotated = [other[0].clone(), keys[0].clone()];
        assert_eq!(verify(&rotated, TOL, &headers("webhook", SIG), BODY, now()), Ok(()));
    }

    #[test]
    fn stale_missing_and_malformed() {
        let keys = [SigningKey::parse(SECRET).unwrap()];
        let late = UNIX_EPOCH + Duration::from_secs(1614265330 + 301);
        let err = verify(&keys, TOL, &headers("webhook", SIG), BODY, late).unwrap_err();
        assert_eq!(err.to_string(), "timestamp 301 s old, tolerance 300 s");
        let err = verify(&keys, TOL, &headers("webhook", "v2,abc"), BODY, now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the `webhook-signature` header is not a well-formed signature"
        );
        let err = verify(&keys, TOL, &HeaderPairs::new(), BODY, now()).unwrap_err();
        assert_eq!(err.to_string(), "the `webhook-id` header is missing");
    }

    #[test]
    fn secrets_that_do_not_decode_are_refused_and_never_printed() {
        assert!(SigningKey::parse("whsec_not base64!").is_none());
        assert!(SigningKey::parse("whsec_").is_none());
        let key = SigningKey::parse(SECRET).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(***)");
    }
}

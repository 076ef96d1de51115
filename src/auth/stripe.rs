//! Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=<hex>][,v0=<hex>]`, each v1
//! the HMAC-SHA256 of `"{t}.{body}"` keyed with the whole `whsec_...` string
//! (its bytes as written, not base64-decoded).

use super::signature::check_keys;
use super::{header_text, timestamp, AuthError};
use crate::headers::Headers;
use crate::secret::Secret;
use std::time::{Duration, SystemTime};

pub const SIGNATURE: &str = "Stripe-Signature";

pub fn verify(
    secrets: &[Secret],
    tolerance: Duration,
    headers: &dyn Headers,
    body: &[u8],
    now: SystemTime,
) -> Result<(), AuthError> {
    let malformed = || AuthError::MalformedSignature(SIGNATURE.into());
    let value = header_text(headers, SIGNATURE)?;
    let mut sent_at = None;
    let mut candidates = Vec::new();
    for item in value.split(',') {
        match item.trim().split_once('=') {
            Some(("t", t)) => sent_at = Some(t),
            // Only v1 is HMAC-SHA256 with the live secret; v0 and others are skipped.
            Some(("v1", sig)) => candidates.extend(hex::decode(sig).ok()),
            _ => {}
        }
    }
    let sent_at = sent_at.ok_or_else(malformed)?;
    let ts = timestamp::parse(sent_at).ok_or_else(malformed)?;
    if candidates.is_empty() {
        return Err(malformed());
    }
    timestamp::check(ts, now, tolerance)?;
    let prefix = format!("{}.", sent_at.trim());
    check_keys(secrets.iter().map(|s| s.expose()), &prefix, body, &candidates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderPairs;
    use std::time::UNIX_EPOCH;

    const TOL: Duration = Duration::from_secs(300);
    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_test_webhook","object":"event","type":"payment_intent.succeeded"}"#;
    /// Stripe publishes no test vector: this one was computed from its documented
    /// algorithm, outside this code, with both
    /// `printf '1492774577.%s' "$BODY" | openssl dgst -sha256 -hmac whsec_test_secret`
    /// and Python's `hmac.new(b"whsec_test_secret", b"1492774577." + body, sha256)`.
    const V1: &str = "add268875c77da0b0493b2ae7deba5dabc736b8c4b5a40755158e5471b4c3fe2";

    fn headers(value: &str) -> HeaderPairs {
        let mut h = HeaderPairs::new();
        h.add("stripe-signature", value);
        h
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn computed_vector() {
        let secrets = [Secret::new(SECRET)];
        let now = at(1492774577 + 30);
        let header =
            format!("t=1492774577,v1={V1},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
        assert_eq!(verify(&secrets, TOL, &headers(&header), BODY, now), Ok(()));
        // Several v1 signatures (during a secret roll on Stripe's side): any may match.
        let header = format!("t=1492774577,v1={},v1={V1}", "00".repeat(32));
        assert_eq!(verify(&secrets, TOL, &headers(&header), BODY, now), Ok(()));
        let header = format!("t=1492774577,v1={V1}");
        assert_eq!(
            verify(&secrets, TOL, &headers(&header), b"{}", now),
            Err(AuthError::SignatureMismatch)
        );
        let wrong = [Secret::new("whsec_other")];
        assert_eq!(
            verify(&wrong, TOL, &headers(&header), BODY, now),
            Err(AuthError::SignatureMismatch)
        );
        let rotated = [Secret::new("whsec_other"), Secret::new(SECRET)];
        assert_eq!(verify(&rotated, TOL, &headers(&header), BODY, now), Ok(()));
        let err = verify(&secrets, TOL, &headers(&header), BODY, at(1492774577 + 412)).unwrap_err();
        assert_eq!(err.to_string(), "timestamp 412 s old, tolerance 300 s");
    }

    #[test]
    fn malformed_headers() {
        let secrets = [Secret::new(SECRET)];
        let now = at(1492774577);
        for bad in [
            format!("v1={V1}"),
            "t=1492774577".to_string(),
            "t=abc,v1=00".to_string(),
            "garbage".to_string(),
        ] {
            let err = verify(&secrets, TOL, &headers(&bad), BODY, now).unwrap_err();
            assert_eq!(
                err.to_string(),
                "the `Stripe-Signature` header is not a well-formed signature",
                "{bad}"
            );
        }
    }
}

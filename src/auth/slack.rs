//! Slack's request signing: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256
//! under the signing secret of `v0:{X-Slack-Request-Timestamp}:{body}`.

use super::signature::check_keys;
use super::{header_text, timestamp, AuthError};
use crate::headers::Headers;
use crate::secret::Secret;
use std::time::{Duration, SystemTime};

pub const SIGNATURE: &str = "X-Slack-Signature";
pub const TIMESTAMP: &str = "X-Slack-Request-Timestamp";

pub fn verify(
    secrets: &[Secret],
    tolerance: Duration,
    headers: &dyn Headers,
    body: &[u8],
    now: SystemTime,
) -> Result<(), AuthError> {
    let sent_at = header_text(headers, TIMESTAMP)?;
    let ts = timestamp::parse(sent_at).ok_or_else(|| AuthError::MalformedTimestamp(TIMESTAMP.into()))?;
    let signature = header_text(headers, SIGNATURE)?;
    let mac = signature
        .trim()
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| AuthError::MalformedSignature(SIGNATURE.into()))?;
    timestamp::check(ts, now, tolerance)?;
    let prefix = format!("v0:{}:", sent_at.trim());
    let candidates = [mac];
    check_keys(secrets.iter().map(|s| s.expose()), &prefix, body, &candidates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderPairs;
    use std::time::UNIX_EPOCH;

    /// The example in Slack's "Verifying requests from Slack" guide.
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn headers(ts: &str, sig: &str) -> HeaderPairs {
        let mut h = HeaderPairs::new();
        h.add("x-slack-request-timestamp", ts);
        h.add("x-slack-signature", sig);
        h
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const TOL: Duration = Duration::from_secs(300);

    #[test]
    fn slack_documented_example() {
        let secrets = [Secret::new(SECRET)];
        let now = at(1531420618 + 10);
        assert_eq!(verify(&secrets, TOL, &headers(TS, SIG), BODY.as_bytes(), now), Ok(()));
        let mut tampered = BODY.as_bytes().to_vec();
        tampered[0] = b'T';
        assert_eq!(
            verify(&secrets, TOL, &headers(TS, SIG), &tampered, now),
            Err(AuthError::SignatureMismatch)
        );
        let wrong = [Secret::new("not-the-secret")];
        assert_eq!(
            verify(&wrong, TOL, &headers(TS, SIG), BODY.as_bytes(), now),
            Err(AuthError::SignatureMismatch)
        );
        // Rotation: any listed secret may match.
        let rotated = [Secret::new("old"), Secret::new(SECRET)];
        assert_eq!(verify(&rotated, TOL, &headers(TS, SIG), BODY.as_bytes(), now), Ok(()));
    }

    #[test]
    fn stale_or_malformed() {
        let secrets = [Secret::new(SECRET)];
        let late = at(1531420618 + 412);
        let err = verify(&secrets, TOL, &headers(TS, SIG), BODY.as_bytes(), late).unwrap_err();
        assert_eq!(err.to_string(), "timestamp 412 s old, tolerance 300 s");
        let now = at(1531420618);
        let err = verify(&secrets, TOL, &headers("soon", SIG), BODY.as_bytes(), now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the `X-Slack-Request-Timestamp` header is not a Unix timestamp"
        );
        let err = verify(&secrets, TOL, &headers(TS, "v1=abcd"), BODY.as_bytes(), now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the `X-Slack-Signature` header is not a well-formed signature"
        );
        let err = verify(&secrets, TOL, &HeaderPairs::new(), BODY.as_bytes(), now).unwrap_err();
        assert_eq!(err.to_string(), "the `X-Slack-Request-Timestamp` header is missing");
    }
}

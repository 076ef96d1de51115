//! The replay window of timestamped schemes (Slack, Standard Webhooks, Stripe).

use super::AuthError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far a signed timestamp may be from our clock when `tolerance` says nothing.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Parses a Unix timestamp in seconds, as the schemes send it.
pub fn parse(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Refuses a timestamp more than `tolerance` away from `now`, either way.
pub fn check(sent: i64, now: SystemTime, tolerance: Duration) -> Result<(), AuthError> {
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    };
    let limit = tolerance.as_secs();
    let age = now.saturating_sub(sent);
    if age.unsigned_abs() <= limit {
        Ok(())
    } else if age > 0 {
        Err(AuthError::TooOld {
            age: age.unsigned_abs(),
            tolerance: limit,
        })
    } else {
        Err(AuthError::InFuture {
            ahead: age.unsigned_abs(),
            tolerance: limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn inside_and_outside_the_window() {
        let tol = Duration::from_secs(300);
        assert_eq!(check(1000, at(1300), tol), Ok(()));
        assert_eq!(check(1300, at(1000), tol), Ok(()));
        let old = check(1000, at(1412), tol).unwrap_err();
        assert_eq!(old.to_string(), "timestamp 412 s old, tolerance 300 s");
        let ahead = check(1412, at(1000), tol).unwrap_err();
        assert_eq!(ahead.to_string(), "timestamp 412 s in the future, tolerance 300 s");
    }

    #[test]
    fn parses_only_plain_seconds() {
        assert_eq!(parse("1531420618"), Some(1531420618));
        assert_eq!(parse(" 12 "), Some(12));
        for bad in ["", "-5", "+5", "1.5", "12a", "99999999999999999999"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

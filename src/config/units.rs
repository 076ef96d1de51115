//! Human units in the config: durations (`500ms`, `10m`, `1h30m`) and sizes (`64KiB`, `1MiB`).

use serde::{de, Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration written as `<number><unit>` parts, units `ms s m h d` (`90s`, `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// A size in bytes written as `<number><unit>`, units `B KiB MiB GiB` (a bare number is bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let err =
        || format!("invalid duration `{text}`: expected a number with a unit (ms, s, m, h, d), e.g. `30s` or `1h30m`");
    let text = text.trim();
    if text.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(err());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        let part = number.checked_mul(millis_per_unit).ok_or_else(err)?;
        total = total.checked_add(Duration::from_millis(part)).ok_or_else(err)?;
    }
    if total > MAX_DURATION {
        return Err(format!(
            "invalid duration `{text}`: longer than 3650d (ten years), the longest a duration may be"
        ));
    }
    Ok(total)
}

/// The longest duration accepted: times this far ahead still have a date
/// (a retry's `next_attempt_at`), and nothing a daemon waits for is longer.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

pub fn parse_size(text: &str) -> Result<u64, String> {
    let err = || format!("invalid size `{text}`: expected a number with a unit (B, KiB, MiB, GiB), e.g. `64KiB`");
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits == 0 {
        return Err(err());
    }
    let number: u64 = text[..digits].parse().map_err(|_| err())?;
    let factor: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(err()),
    };
    number.checked_mul(factor).ok_or_else(err)
}

/// Accepts a string, or a bare integer where `bare_unit` says what it means.
struct UnitVisitor<F> {
    parse: F,
    expecting: &'static str,
}

impl<'de, T, F: Fn(&str) -> Result<T, String>> de::Visitor<'de> for UnitVisitor<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.parse)(&v.to_string()).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.parse)(&v.to_string()).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor {
            parse: |s: &str| parse_duration(s).map(Dur),
            expecting: "a duration such as `30s` or `10m`",
        })
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor {
            parse: |s: &str| parse_size(s).map(Size),
            expecting: "a size such as `64KiB` or `1MiB`",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("3650d").unwrap(), MAX_DURATION);
        assert!(parse_duration("3650d1ms").unwrap_err().contains("longer than 3650d"));
        for bad in [
            "",
            "10",
            "m",
            "5 minutes",
            "-1s",
            "1.5s",
            "6000000d",
            "99999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("512B").unwrap(), 512);
        for bad in ["", "1MB", "KiB", "1.5MiB", "99999999999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad} should be refused");
        }
    }
}

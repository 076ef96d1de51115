//! `application/x-www-form-urlencoded` bodies: `name=value` pairs joined by
//! `&`, `+` for a space and `%XX` for a byte.

use serde_json::{Map, Value};

/// The fields of a form as an object of strings; a repeated field keeps its
/// first value (as adnanh does). A pair without `=` is a field with an empty
/// value. A `%` not followed by two hex digits, or a name or value that is
/// not UTF-8 once decoded, is an error.
pub fn parse(body: &[u8]) -> Result<Map<String, Value>, String> {
    let mut fields = Map::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let name = decode(name)?;
        let value = decode(value)?;
        fields.entry(name).or_insert(Value::String(value));
    }
    Ok(fields)
}

/// Whether a body sent without a Content-Type reads as a form: only the
/// characters URL encoding leaves as they are, every `&`-separated pair a
/// `name=value` with a name, and every `%` escape valid.
pub fn looks_like(body: &[u8]) -> bool {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$'()*+,;=:@/?%&[]".contains(b);
    let mut pairs = body.split(|b| *b == b'&').filter(|p| !p.is_empty()).peekable();
    pairs.peek().is_some()
        && body.iter().all(plain)
        && pairs.all(|p| p.iter().position(|b| *b == b'=').is_some_and(|at| at > 0))
        && parse(body).is_ok()
}

/// One name or value decoded: `+` is a space, `%XX` a byte.
fn decode(text: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("a `%` is not followed by two hex digits")?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "a decoded name or value is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_first_value_wins() {
        let fields = parse(b"a=1&b=two+words&a=2&c=%41%2B&flag&&e=").unwrap();
        assert_eq!(
            Value::Object(fields),
            json!({"a": "1", "b": "two words", "c": "A+", "flag": "", "e": ""})
        );
        assert_eq!(parse(b"").unwrap(), Map::new());
        assert_eq!(parse(b"x=%c3%a9").unwrap()["x"], json!("é"));
    }

    #[test]
    fn bad_escapes_and_bytes_are_errors() {
        assert_eq!(parse(b"a=%zz").unwrap_err(), "a `%` is not followed by two hex digits");
        assert_eq!(parse(b"a=%4").unwrap_err(), "a `%` is not followed by two hex digits");
        assert_eq!(parse(b"a=%ff").unwrap_err(), "a decoded name or value is not UTF-8");
    }

    #[test]
    fn what_looks_like_a_form() {
        for yes in [&b"a=1"[..], b"a=1&b=", b"payload=%7B%7D", b"x[]=1&x[]=2"] {
            assert!(looks_like(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b""[..],
            b"a",
            b"=1",
            b"a=1&b",
            b"a = 1",
            b"a=\"x\"",
            b"a=%g0",
            b"{\"a\":1}",
        ] {
            assert!(!looks_like(no), "{}", String::from_utf8_lossy(no));
        }
    }
}

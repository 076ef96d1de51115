//! Request headers as the layers below HTTP see them: a read-only view
//! that the HTTP layer's header map implements, and that a recorded
//! delivery (replay) or `hookrunner explain` can build without a server.
//! Names are matched case-insensitively.

/// Read access to a request's headers.
pub trait Headers {
    /// The first value of `name`, as bytes.
    fn get_bytes(&self, name: &str) -> Option<&[u8]>;

    /// Every value of `name`, in the order they were sent.
    fn get_all<'a>(&'a self, name: &str) -> Vec<&'a [u8]>;

    /// Every header, in order.
    fn each<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a [u8]));

    /// The first value of `name`, if it is text.
    fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Whether `name` is a valid header name (an HTTP token: letters, digits
/// and ``!#$%&'*+-.^_`|~``).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a header carries a credential (its value is never shown): a
/// name holding `signature`, `token`, `authorization`, `cookie`, `secret`,
/// `api-key`, `apikey`, `api_key` or `password`, or one of `extra` (a source's own).
pub fn is_credential(name: &str, extra: &[&str]) -> bool {
    contains_any(
        name.as_bytes(),
        &[
            b"signature",
            b"token",
            b"authorization",
            b"cookie",
            b"secret",
            b"api-key",
            b"apikey",
            b"api_key",
            b"password",
        ],
    ) || extra.iter().any(|e| e.eq_ignore_ascii_case(name))
}

/// Whether a query parameter carries a credential: a name holding `token`,
/// `secret`, `sig`, `key` or `password`, or one of `extra`.
pub fn is_credential_param(name: &str, extra: &[&str]) -> bool {
    contains_any(name.as_bytes(), &[b"token", b"secret", b"sig", b"key", b"password"])
        || extra.iter().any(|e| e.eq_ignore_ascii_case(name))
}

/// Whether any (lower-case) needle occurs in `hay`, in any case. For a
/// header name and a few short needles a plain scan beats setting up
/// `str::contains`'s searcher per needle.
fn contains_any(hay: &[u8], needles: &[&[u8]]) -> bool {
    // The needles' first bytes as bits: most positions are passed over on one test.
    let firsts = needles
        .iter()
        .filter_map(|n| n.first())
        .fold(0u128, |m, &b| m | 1u128 << (b & 0x7f));
    (0..hay.len()).any(|i| {
        let first = hay[i].to_ascii_lowercase();
        first < 0x80
            && firsts >> first & 1 == 1
            && needles
                .iter()
                .any(|n| hay.len() - i >= n.len() && hay[i..i + n.len()].eq_ignore_ascii_case(n))
    })
}

/// Headers as a list of pairs (names kept lowercase), for requests that did
/// not come over HTTP: replays, `explain`, tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderPairs(Vec<(String, Vec<u8>)>);

impl HeaderPairs {
    pub fn new() -> Self {
        HeaderPairs(Vec::new())
    }

    /// Adds a header (after those already there).
    pub fn add(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.0.push((name.to_ascii_lowercase(), value.into()));
    }

    /// Replaces every value of `name` with `value`.
    pub fn set(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        let name = name.to_ascii_lowercase();
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value.into()));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for HeaderPairs {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Self {
        let mut h = HeaderPairs::new();
        for (n, v) in pairs {
            h.add(n.as_ref(), v.as_ref());
        }
        h
    }
}

impl Headers for HeaderPairs {
    fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn get_all<'a>(&'a self, name: &str) -> Vec<&'a [u8]> {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    fn each<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a [u8])) {
        for (n, v) in &self.0 {
            f(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_in_any_case() {
        let mut h: HeaderPairs = [("X-GitHub-Event", "push"), ("X-Forwarded-For", "a")]
            .into_iter()
            .collect();
        h.add("x-forwarded-for", "b");
        assert_eq!(h.get("x-github-event"), Some("push"));
        assert_eq!(h.get_all("X-FORWARDED-FOR"), [&b"a"[..], &b"b"[..]]);
        h.set("X-Forwarded-For", "c");
        assert_eq!(h.get_all("x-forwarded-for"), [&b"c"[..]]);
        assert_eq!(h.get("missing"), None);
    }

    #[test]
    fn credential_names_are_found_in_any_case_and_place() {
        for name in [
            "X-Hub-Signature-256",
            "x-gitlab-token",
            "Authorization",
            "COOKIE",
            "x-webhook-secret",
            "X-Api-Key",
            "apikey",
            "x-my-password-2",
            "X-Custom",
        ] {
            assert!(is_credential(name, &["x-custom"]), "{name}");
        }
        for name in [
            "X-GitHub-Event",
            "Content-Type",
            "user-agent",
            "x-sig",
            "",
            "s",
            "tokn",
            "X-Customer",
        ] {
            assert!(!is_credential(name, &["x-custom"]), "{name}");
        }
        assert!(is_credential_param("access_TOKEN", &[]) && is_credential_param("sig", &[]));
        assert!(!is_credential_param("ref", &[]) && !is_credential_param("é", &[]));
    }

    #[test]
    fn header_names_are_tokens() {
        for ok in ["X-Event", "x_custom", "A1", "a.b~c"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "X Event", "X:Event", "Ä", "a\n"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}

//! A string that must never be printed: webhook secrets, tokens, API tokens.

use std::fmt;

/// A secret value. `Debug` and `Display` print a placeholder, so a secret
/// cannot reach a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret's bytes, for a MAC key or a constant-time comparison.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Compares `candidate` with the secret in constant time (for equal lengths).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(candidate).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL as hookrunner shows it anywhere (API, answers, logs, errors): the
/// userinfo's password and every query value become `***`, and the fragment
/// is dropped; a query name with escapes or odd characters, or a bare
/// `?name`, becomes `***` whole (it may be the secret).
/// `http://u:pw@host/p?token=t&x=1&T0KEN#f` → `http://u:***@host/p?token=***&x=***&***`.
/// A user name with no password may itself be the credential (a token
/// written as `http://TOKEN@host/`), so it becomes `***` too. A backslash
/// ends the authority as `/` does: the HTTP client reads `\` as `/`.
///
/// Text that is not a URL is masked as a whole only where it could carry a
/// credential: a bare `user:password@host` still loses its password.
pub fn mask_url(url: &str) -> String {
    // A password may hold `/`, `?` or `#` unencoded: PostgreSQL's driver
    // takes everything up to the `@` as the userinfo, and connects (a
    // database URL with two `@` is refused at load). If that text has a
    // `:` and one of those, where the userinfo ends cannot be told, so all
    // of it is masked (the user name too).
    let auth_start = authority_start(url);
    if let Some(at) = url[auth_start..].rfind('@').map(|i| auth_start + i) {
        let info = &url[auth_start..at];
        if info.contains(':') && info.contains(['/', '\\', '?', '#']) {
            let rest = mask_url(&format!("{}{}", &url[..auth_start], &url[at + 1..]));
            return format!("{}***@{}", &url[..auth_start], rest.get(auth_start..).unwrap_or(""));
        }
    }
    let url = url.split('#').next().unwrap_or(url);
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    // The authority runs from after `scheme://` (if any) to the next `/`
    // (or `\`, which the HTTP client reads as `/`).
    let auth_start = authority_start(before_query);
    let auth_end = before_query[auth_start..]
        .find(['/', '\\'])
        .map_or(before_query.len(), |i| auth_start + i);
    let authority = &before_query[auth_start..auth_end];
    let mut out = String::with_capacity(url.len() + 8);
    out.push_str(&before_query[..auth_start]);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                // A user and a password: the user stays readable.
                Some((user, password)) if !password.is_empty() => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                // A user name alone (`TOKEN@`, `TOKEN:@`) is how an API key
                // is often given: masked whole.
                _ => out.push_str("***"),
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    out.push_str(&before_query[auth_end..]);
    if let Some(query) = query {
        out.push('?');
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                // A name is shown when it is plainly one (`token`, `a.b`);
                // one with escapes or odd characters may hide a value.
                Some((k, _))
                    if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
                {
                    format!("{k}=***")
                }
                None if pair.is_empty() => String::new(),
                // A bare `?<token>` is all value.
                _ => "***".to_string(),
            })
            .collect();
        out.push_str(&masked.join("&"));
    }
    out
}

/// Where a URL's authority starts: after `scheme://` when the text opens
/// with a scheme (a letter, then letters, digits, `+`, `-` or `.`), else at
/// the start (text that is not a URL is masked as a whole where it may hold
/// a credential).
fn authority_start(url: &str) -> usize {
    match url.find("://") {
        Some(i)
            if url[..i].starts_with(|c: char| c.is_ascii_alphabetic())
                && url[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            i + 3
        }
        _ => 0,
    }
}

/// `text` with every URL in it (`scheme://…`, up to white space, a quote, a
/// backtick or `<>`, and without the `)`, `]`, `,`, `.`, `:` or `;` that
/// close the sentence after it) masked as [`mask_url`] masks one: for messages that
/// quote a URL among other words (a library's error, a provider's answer).
pub fn mask_urls_in(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") {
        return std::borrow::Cow::Borrowed(text);
    }
    let ends = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        // The scheme: the letters, digits and `+-.` just before `://`.
        let start = rest[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + rest[i..].chars().next().map_or(1, char::len_utf8));
        let mut end = rest[sep..].find(ends).map_or(rest.len(), |i| sep + i);
        // Punctuation that closes the sentence around it, not the URL's own.
        while end > sep + 3 && rest[..end].ends_with([')', ']', ',', '.', ':', ';']) {
            end -= 1;
        }
        out.push_str(&rest[..start]);
        if start == sep {
            // No scheme: not a URL, words that happen to hold `://`.
            out.push_str(&rest[start..end]);
        } else {
            out.push_str(&mask_url(&rest[start..end]));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// A URL whose path may itself be the credential, as an incoming webhook's
/// is (Slack's `/services/T…/B…/<secret>`, Discord's, Teams', Feishu's
/// `/open-apis/bot/v2/hook/<token>`): [`mask_url`], and of the path only its
/// first segment is shown, the rest one `/***`.
/// `https://hooks.slack.com/services/T0/B0/xyz?a=1` → `https://hooks.slack.com/services/***?a=***`.
pub fn mask_webhook_url(url: &str) -> String {
    let masked = mask_url(url);
    let (before_query, query) = match masked.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (masked.as_str(), None),
    };
    let auth_start = authority_start(before_query);
    let Some(path_start) = before_query[auth_start..].find(['/', '\\']).map(|i| auth_start + i) else {
        return masked;
    };
    let path = &before_query[path_start + 1..];
    // A segment ends at `/`, at `\` (the HTTP client reads it as `/`), or
    // at an encoded one of either (`%2F`, `%5C`), which a receiver may
    // decode into the same thing.
    let end = path
        .char_indices()
        .find(|(i, c)| {
            matches!(c, '/' | '\\')
                || path[*i..]
                    .get(..3)
                    .is_some_and(|s| s.eq_ignore_ascii_case("%2f") || s.eq_ignore_ascii_case("%5c"))
        })
        .map_or(path.len(), |(i, _)| i);
    let (first, rest) = path.split_at(end);
    if rest.trim_matches(['/', '\\']).is_empty() {
        return masked;
    }
    let mut out = format!("{}/{first}/***", &before_query[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A URL that may carry credentials (a password in its userinfo, a token in
/// its query). `Debug` and `Display` show it masked ([`mask_url`]); only
/// [`SecretUrl::expose`] gives the real one, to make the request with.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The real URL, credentials and all.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL as it may be shown.
    pub fn masked(&self) -> String {
        mask_url(&self.0)
    }

    /// The URL as it may be shown when its path may be the credential
    /// ([`mask_webhook_url`]): completion callbacks.
    pub fn masked_webhook(&self) -> String {
        mask_webhook_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.masked())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_inside_text_are_masked_and_the_words_around_them_kept() {
        assert_eq!(
            mask_urls_in("gave up after 4 attempts (GET http://u:pw@h:1/api?private_token=t&x=1): Connection refused"),
            "gave up after 4 attempts (GET http://u:***@h:1/api?private_token=***&x=***): Connection refused"
        );
        assert_eq!(
            mask_urls_in("`ftp://a:b@x/?k=v` and \"https://h/p?q=1\""),
            "`ftp://a:***@x/?k=***` and \"https://h/p?q=***\""
        );
        assert_eq!(
            mask_urls_in("no url here: a://b is one, :// is not"),
            "no url here: a://b is one, :// is not"
        );
        // A scheme is ASCII: this is not a URL, and nothing panics on the letters.
        assert_eq!(mask_urls_in("ünï://u:p@h"), "ünï://u:p@h");
        assert!(matches!(mask_urls_in("plain"), std::borrow::Cow::Borrowed("plain")));
    }

    #[test]
    fn webhook_urls_lose_their_path_after_its_first_segment() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T0/B0/pathsecret?x=1#f",
                "https://hooks.slack.com/services/***?x=***",
            ),
            ("https://discord.com/api/webhooks/1/tok", "https://discord.com/api/***"),
            (
                "http://u:pw@ci.example.com/callback",
                "http://u:***@ci.example.com/callback",
            ),
            ("http://ci.example.com/callback/", "http://ci.example.com/callback/"),
            ("http://ci.example.com", "http://ci.example.com"),
            ("http://ci.example.com/", "http://ci.example.com/"),
            ("http://h/a//", "http://h/a//"),
            ("http://h/a%2Fsecret%2FE", "http://h/a/***"),
            ("http://h/a%2f", "http://h/a/***"),
            // The HTTP client reads `\` as `/`.
            (
                r"http://127.0.0.1:9\services\T0\B0\BSLASHSECRET",
                "http://127.0.0.1:9/services/***",
            ),
            (r"http://h/services\T0/x", "http://h/services/***"),
            ("http://h/a%5Csecret", "http://h/a/***"),
            (r"http://h/a\", r"http://h/a\"),
            ("http://TOKSECRET@h/x/y", "http://***@h/x/***"),
        ] {
            assert_eq!(mask_webhook_url(url), shown, "{url}");
        }
    }

    #[test]
    fn urls_lose_passwords_and_query_values() {
        let cases = [
            ("http://host/path", "http://host/path"),
            (
                "https://user:pw@host:8443/p?token=t0k&x=1#frag",
                "https://user:***@host:8443/p?token=***&x=***",
            ),
            // A user name alone may be the credential.
            ("http://TOKSECRET@host/", "http://***@host/"),
            ("http://TOKSECRET:@host/", "http://***@host/"),
            ("postgres://app@db/app", "postgres://***@db/app"),
            (r"http://h\p@x", r"http://h\p@x"),
            (r"http://u:p\w@h/x", "http://***@h/x"),
            ("http://a:b@c@host/x", "http://a:***@host/x"),
            (
                "postgres://root:s3cret@db:5432/app?sslmode=require&password=p",
                "postgres://root:***@db:5432/app?sslmode=***&password=***",
            ),
            // A bare name, or one with escapes, may be the secret itself.
            ("http://host/p?flag", "http://host/p?***"),
            ("http://h/x?SECRET6", "http://h/x?***"),
            ("http://h/x?a=1&a%3DSECRETH", "http://h/x?a=***&***"),
            ("http://h/x?a.b-c_d=1&=2", "http://h/x?a.b-c_d=***&***"),
            ("http://host/p?", "http://host/p?"),
            ("user:pw@host", "user:***@host"),
            ("http://host/a@b:c", "http://host/a@b:c"),
            // Passwords with `/`, `?` or `#` unencoded, as the driver takes them.
            (
                "postgres://postgres:Top/S3cretPW@127.0.0.1:5432/db",
                "postgres://***@127.0.0.1:5432/db",
            ),
            (
                "postgres://postgres:Top?S3cretPW@127.0.0.1:5432/db",
                "postgres://***@127.0.0.1:5432/db",
            ),
            (
                "postgres://postgres:Top#S3cretPW@127.0.0.1:5432/db?sslmode=disable",
                "postgres://***@127.0.0.1:5432/db?sslmode=***",
            ),
            ("postgres://u:a/b?c#d@h/db", "postgres://***@h/db"),
            // A `@` in a query after a port: more is hidden than needed, never less.
            ("http://host:8080/p?mail=a@b", "http://***@b"),
            // Text before `://` that is no scheme is not kept as one.
            ("#://u:p/@", "***@"),
            ("x?token=SECRETQ://u:p/@h", "***@h"),
        ];
        for (url, shown) in cases {
            assert_eq!(mask_url(url), shown, "{url}");
        }
        // Whatever the text (it may come from a flag, a header or a row), an answer.
        let alphabet = ['#', ':', '/', '@', '?', '\\', '='];
        let mut text = Vec::new();
        for n in 0..=7u32 {
            for i in 0..alphabet.len().pow(n) {
                text.clear();
                let mut k = i;
                for _ in 0..n {
                    text.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                let url: String = text.iter().collect();
                mask_url(&url);
                mask_webhook_url(&url);
            }
        }
        let u = SecretUrl::new("http://u:hunter2@h/?k=v");
        assert!(!format!("{u} {u:?}").contains("hunter2"));
        assert_eq!(u.expose(), "http://u:hunter2@h/?k=v");
    }
}

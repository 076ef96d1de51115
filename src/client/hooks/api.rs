//! The HTTP side of `hookrunner hooks`: one provider API, its token, retries
//! (429 waits for `Retry-After`, 5xx backs off), `--dry-run`, and masking of
//! every secret in what is printed.

use super::{exit, Fail};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Attempts in all for one call (429, 5xx, network errors).
const ATTEMPTS: u32 = 4;
/// The first backoff after a 5xx or a network error; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest `Retry-After` honoured; a longer one ends the command.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Pages of a hook list followed (`Link: rel="next"`).
const MAX_PAGES: usize = 20;

/// Replaces secrets (the webhook secret, the API token) in printed text.
#[derive(Clone, Default)]
pub struct Masker {
    secrets: Vec<String>,
}

impl Masker {
    pub fn add(&mut self, secret: &str) {
        // Very short values would mask ordinary text; bodies mask their secret
        // fields by structure anyway (`mask_json`).
        if secret.len() >= 3 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            let encoded: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            if encoded != secret {
                self.secrets.push(encoded);
            }
            // Longest first, so a secret containing another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with the known secrets masked, and every URL in it as
    /// [`crate::secret::mask_url`] masks one (a password in `--api-url`, a
    /// hook URL's token: printed as the daemon's API shows them).
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        crate::secret::mask_urls_in(&out).into_owned()
    }

    /// A copy of `value` with every string equal to `secret` (and every
    /// string containing a known secret) masked.
    pub fn json(&self, value: &Value, secret: Option<&str>) -> Value {
        match value {
            Value::String(s) if Some(s.as_str()) == secret && !s.is_empty() => Value::String("***".into()),
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.json(v, secret)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), self.json(v, secret))).collect()),
            other => other.clone(),
        }
    }
}

/// An HTTP method of the provider APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// An answer: its status, its JSON (Null when empty or not JSON) and its text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub text: String,
    /// The `Link: <...>; rel="next"` URL, for lists.
    pub next: Option<String>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The provider's own words: GitLab `message`/`error`, GitHub and Gitea `message`.
    pub fn message(&self) -> String {
        let from_json = ["message", "error", "error_description"]
            .iter()
            .find_map(|k| match self.json.get(*k) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(v @ (Value::Object(_) | Value::Array(_))) => Some(v.to_string()),
                _ => None,
            });
        let text = from_json.unwrap_or_else(|| self.text.trim().to_string());
        let mut short: String = text.chars().take(300).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        short
    }
}

/// One provider API: its root URL (`https://gitlab.com/api/v4`), how it is
/// authenticated, and whether mutating calls are only printed.
pub struct Api {
    /// Shown in messages: `GitLab`, `GitHub`, `Gitea`.
    pub service: &'static str,
    root: String,
    auth: Option<(&'static str, String)>,
    extra_headers: Vec<(&'static str, &'static str)>,
    agent: ureq::Agent,
    pub dry_run: bool,
    pub mask: Masker,
}

impl Api {
    pub fn new(
        service: &'static str,
        root: String,
        auth: Option<(&'static str, String)>,
        extra_headers: Vec<(&'static str, &'static str)>,
        dry_run: bool,
        mut mask: Masker,
    ) -> Api {
        if let Some((_, value)) = &auth {
            mask.add(value);
            if let Some((_, token)) = value.split_once(' ') {
                mask.add(token);
            }
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            // A redirect could carry the token to another host: never follow one.
            .redirects(0)
            .user_agent(concat!("hookrunner/", env!("CARGO_PKG_VERSION")))
            .build();
        Api {
            service,
            root: root.trim_end_matches('/').to_string(),
            auth,
            extra_headers,
            agent,
            dry_run,
            mask,
        }
    }

    pub fn has_token(&self) -> bool {
        self.auth.is_some()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.root, path)
    }

    /// A GET: sent even under `--dry-run` (it changes nothing).
    pub fn get(&self, path: &str) -> Result<Answer, Fail> {
        if self.dry_run {
            say!(
                "{} {}  (read-only: sent)",
                Method::Get.as_str(),
                self.mask.text(&self.url(path))
            );
        }
        self.call(Method::Get, &self.url(path), None)
    }

    /// Every item of a list, following `Link: rel="next"` on the same host.
    /// The inner error is the first answer that is not a 2xx list.
    pub fn get_all(&self, path: &str) -> Result<Result<Vec<Value>, Answer>, Fail> {
        let mut url = self.url(path);
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            if self.dry_run {
                say!("GET {}  (read-only: sent)", self.mask.text(&url));
            }
            let answer = self.call(Method::Get, &url, None)?;
            match &answer.json {
                Value::Array(page) if answer.ok() => items.extend(page.iter().cloned()),
                _ => return Ok(Err(answer)),
            }
            match answer.next.as_deref() {
                Some(next) if same_origin(next, &self.root) => url = next.to_string(),
                _ => break,
            }
        }
        Ok(Ok(items))
    }

    /// A call that changes something: printed and skipped under `--dry-run`.
    pub fn change(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        secret: Option<&str>,
    ) -> Result<Option<Answer>, Fail> {
        let url = self.url(path);
        if self.dry_run {
            say!("{} {}  (not sent: --dry-run)", method.as_str(), self.mask.text(&url));
            if let Some(body) = body {
                let shown = self.mask.json(body, secret);
                say!("{}", serde_json::to_string_pretty(&shown).unwrap_or_default());
            }
            return Ok(None);
        }
        self.call(method, &url, body).map(Some)
    }

    /// One call with retries: 429 (and GitHub's rate-limit 403) wait for
    /// `Retry-After` or the reset time; 5xx and network errors back off
    /// exponentially; anything else is the caller's to judge.
    fn call(&self, method: Method, url: &str, body: Option<&Value>) -> Result<Answer, Fail> {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let (wait, why) = match self.once(method, url, body) {
                Ok((answer, hint)) => {
                    let limited = answer.status == 429 || (answer.status == 403 && hint.is_some());
                    if limited {
                        let why = format!("{} answered {} (rate limited)", self.service, answer.status);
                        (hint.unwrap_or(backoff), why)
                    } else if answer.status >= 500 {
                        let message = self.mask.text(&answer.message());
                        let why = format!("{} answered {}: {message}", self.service, answer.status);
                        (hint.unwrap_or(backoff), why)
                    } else {
                        return Ok(answer);
                    }
                }
                Err(e) => (
                    backoff,
                    format!("cannot reach {}: {}", self.service, self.mask.text(&e)),
                ),
            };
            if attempt == ATTEMPTS {
                return Err(Fail::new(
                    exit::UNAVAILABLE,
                    format!(
                        "{why}; gave up after {ATTEMPTS} attempts ({} {})",
                        method.as_str(),
                        self.mask.text(url)
                    ),
                ));
            }
            if wait > MAX_WAIT {
                return Err(Fail::new(
                    exit::UNAVAILABLE,
                    format!("{why}; it asks to wait {} s: try again later", wait.as_secs()),
                ));
            }
            complain!(
                "note: {why}; retrying in {} (attempt {} of {ATTEMPTS})",
                humantime::format_duration(Duration::from_millis(wait.as_millis() as u64)),
                attempt + 1
            );
            std::thread::sleep(wait);
            backoff *= 2;
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// One request: the answer and the wait it asks for, or a network error.
    fn once(&self, method: Method, url: &str, body: Option<&Value>) -> Result<(Answer, Option<Duration>), String> {
        let mut req = self
            .agent
            .request(method.as_str(), url)
            .set("Accept", "application/json");
        for (k, v) in &self.extra_headers {
            req = req.set(k, v);
        }
        if let Some((name, value)) = &self.auth {
            req = req.set(name, value);
        }
        let result = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(t.to_string()),
        };
        let status = resp.status();
        let hint = wait_hint(&resp, status);
        let next = resp.header("Link").and_then(next_link);
        if (300..400).contains(&status) {
            let to = resp.header("Location").unwrap_or("?").to_string();
            // The API's address is what `--api-url` takes: the redirect's
            // target without the path of the resource asked for.
            let path = url.strip_prefix(self.root.as_str()).unwrap_or(url);
            let text = match to
                .strip_suffix(path)
                .filter(|base| !base.is_empty() && !path.is_empty())
            {
                Some(base) => format!("redirected to {to}: give {base} as --api-url"),
                None => format!("redirected to {to}: give the address of its API as --api-url"),
            };
            return Ok((
                Answer {
                    status,
                    json: Value::Null,
                    text: self.mask.text(&text),
                    next: None,
                },
                None,
            ));
        }
        let text = resp.into_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((
            Answer {
                status,
                json,
                text,
                next,
            },
            hint,
        ))
    }
}

/// How long an answer asks us to wait: `Retry-After` (seconds or an HTTP
/// date), or for GitHub's rate limit (403/429 with `x-ratelimit-remaining: 0`)
/// until `x-ratelimit-reset`.
fn wait_hint(resp: &ureq::Response, status: u16) -> Option<Duration> {
    if let Some(value) = resp.header("Retry-After").map(str::trim) {
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(when) = httpdate(value) {
            return Some(when.duration_since(SystemTime::now()).unwrap_or_default());
        }
    }
    if matches!(status, 403 | 429) && resp.header("x-ratelimit-remaining").map(str::trim) == Some("0") {
        // Until the reset it names; without one, a minute (as GitHub asks).
        let reset = resp
            .header("x-ratelimit-reset")
            .and_then(|r| r.trim().parse::<u64>().ok());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        return Some(match reset {
            Some(reset) => Duration::from_secs(reset.saturating_sub(now) + 1),
            None => Duration::from_secs(60),
        });
    }
    None
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form `Retry-After` uses.
fn httpdate(text: &str) -> Result<SystemTime, ()> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, clock, "GMT"] = parts.as_slice() else {
        return Err(());
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month).ok_or(())? as u32 + 1;
    let rfc3339 = format!("{year}-{month:02}-{:02}T{clock}Z", day.parse::<u32>().map_err(|_| ())?);
    humantime::parse_rfc3339(&rfc3339).map_err(|_| ())
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        is_next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// Whether `url` has the scheme, host and port of `root`.
fn same_origin(url: &str, root: &str) -> bool {
    fn origin(u: &str) -> Option<&str> {
        let after = u.find("://")? + 3;
        let end = u[after..].find('/').map_or(u.len(), |i| after + i);
        Some(&u[..end])
    }
    origin(url).is_some() && origin(url) == origin(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets_and_their_url_encoding() {
        let mut m = Masker::default();
        m.add("s3cr3t/+x");
        assert_eq!(m.text("a s3cr3t/+x b s3cr3t%2F%2Bx"), "a *** b ***");
        let v = serde_json::json!({"token": "s3cr3t/+x", "n": [1, "x s3cr3t/+x"]});
        assert_eq!(m.json(&v, None), serde_json::json!({"token": "***", "n": [1, "x ***"]}));
        let mut short = Masker::default();
        short.add("ab");
        assert_eq!(
            short.json(&serde_json::json!({"t": "ab"}), Some("ab")),
            serde_json::json!({"t": "***"})
        );
    }

    #[test]
    fn link_headers_and_origins() {
        let h = r#"<https://gitlab.example/api/v4/projects/1/hooks?page=2>; rel="next", <https://gitlab.example/api/v4/projects/1/hooks?page=3>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://gitlab.example/api/v4/projects/1/hooks?page=2")
        );
        assert_eq!(next_link(r#"<https://x/a>; rel="prev""#), None);
        assert!(same_origin(
            "https://gitlab.example/api/v4/x",
            "https://gitlab.example/api/v4"
        ));
        assert!(!same_origin(
            "https://evil.example/api/v4/x",
            "https://gitlab.example/api/v4"
        ));
        assert!(!same_origin("https://gitlab.example.evil/x", "https://gitlab.example"));
    }

    #[test]
    fn retry_after_dates() {
        let t = httpdate("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784111777);
        assert!(httpdate("soon").is_err());
    }
}

//! Logging: `tracing` to stderr, as text for people or one JSON object per line.
//!
//! Two rules hold whatever `RUST_LOG` says:
//! - Values that came from a request can hold anything, newlines included: in
//!   text logs every field (and the message) has its control characters
//!   escaped, so no request can forge a log line. JSON escapes them anyway.
//! - Libraries that would log a secret never get to: ureq's debug lines carry
//!   the callback's URL and signature headers, so it logs warnings only,
//!   whatever `RUST_LOG` says of its modules (`ureq::unit=trace` too); and
//!   actix-http's line for a refused connection is replaced by ours, which
//!   names the client and is rate-limited (`server/listen.rs`).
//!
//! Warnings anyone can cause (a refused connection, a delivery refused
//! before or at auth) go through a [`Throttle`]: a stranger's flood writes a
//! few lines every 10 s, not one per request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Directives added after `RUST_LOG`'s: ureq would log callback URLs (with
/// their credentials) and signature headers, tokio-postgres statements'
/// parameters (bodies, records) at debug and the server's notices at info.
const FORCED: [&str; 3] = ["ureq=warn", "tokio_postgres=warn", "actix_http::h1::dispatcher=off"];

/// The same caps as [`FORCED`], as a filter of their own that every event
/// must also pass: a more specific `RUST_LOG` directive (`ureq::unit=trace`)
/// wins over `ureq=warn` inside an `EnvFilter`, but not over this.
fn capped() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::LevelFilter;
    tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("ureq", LevelFilter::WARN)
        .with_target("tokio_postgres", LevelFilter::WARN)
        .with_target("actix_http::h1::dispatcher", LevelFilter::OFF)
}

fn filter() -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for directive in FORCED {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// At most `burst` lines per window of `every` (from the first line let
/// through); the others are counted, and the count is handed to the next line
/// let through (its `suppressed` field) and starts again from 0.
pub struct Throttle {
    every: Duration,
    burst: u32,
    /// When the current window began, and how many lines it let through.
    window: Mutex<Option<(Instant, u32)>>,
    suppressed: AtomicU64,
}

impl Throttle {
    pub const fn new(every: Duration, burst: u32) -> Throttle {
        Throttle {
            every,
            burst,
            window: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one let through)` if this line
    /// may be written at its level now; `None` (counted) if it is one too many.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let pass = {
            let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *window {
                Some((start, n)) if now.saturating_duration_since(*start) < self.every => {
                    let pass = *n < self.burst;
                    *n += u32::from(pass);
                    pass
                }
                other => {
                    *other = Some((now, 1));
                    self.burst > 0
                }
            }
        };
        if pass {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Whether log lines are JSON (set once by [`init`]).
static JSON: AtomicBool = AtomicBool::new(false);

/// A log field's value from outside (an event name, a delivery id, a
/// source name from the URL): in the text format [`escape`]d, and in
/// double quotes (with `"` and `\` escaped) when it holds a space, `=` or
/// `"`, so that it cannot pass for more `key=value` pairs. In the JSON
/// format as it is: JSON escapes it, and a value quoted twice would not be
/// the value.
pub fn field(text: &str) -> std::borrow::Cow<'_, str> {
    if JSON.load(Ordering::Relaxed) {
        return text.into();
    }
    let escaped = escape(text);
    if !escaped.contains([' ', '=', '"']) {
        return escaped;
    }
    let mut out = String::with_capacity(escaped.len() + 2);
    out.push('"');
    for c in escaped.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out.into()
}

/// `text` with every control character (and Unicode line and paragraph
/// separators) written as an escape, so it stays on one line.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    escape_where(text, |c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

/// `text` with the characters `needs` picks written as escapes: `\n`, `\r`,
/// `\t`, else `\u{..}`; borrowed when there are none.
pub fn escape_where(text: &str, needs: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(&needs) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !needs(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    out.into()
}

/// Where log lines go: stderr, whose failures (closed, full, a journal that
/// went away) lose the line and stop nothing; the daemon goes on.
struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// The first failure to write to stdout other than a reader that went
/// away (`| head`), for the command's exit status.
static STDOUT_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Notes a failed write to stdout (see [`STDOUT_ERROR`]).
pub fn note_stdout_error(e: &std::io::Error) {
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        STDOUT_ERROR
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| e.to_string());
    }
}

/// Why a write to stdout failed, if one did (a closed pipe aside).
pub fn stdout_error() -> Option<String> {
    STDOUT_ERROR.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .log_internal_errors(false)
        .with_writer(|| Stderr);
    match format {
        LogFormat::Text => {
            let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                let text = format!("{value:?}");
                if field.name() == "message" {
                    write!(w, "{}", escape(&text))
                } else {
                    write!(w, "{field}={}", escape(&text))
                }
            })
            .delimited(" ");
            builder
                .fmt_fields(fields)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .finish()
                .with(capped())
                .init()
        }
        // One object per line: timestamp, level, target, fields (with `message`).
        LogFormat::Json => {
            JSON.store(true, Ordering::Relaxed);
            builder
                .json()
                .flatten_event(true)
                .with_ansi(false)
                .with_current_span(false)
                .finish()
                .with(capped())
                .init()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_throttle_lets_a_burst_through_per_window_and_counts_the_rest() {
        use super::Throttle;
        use std::time::{Duration, Instant};
        let t = Throttle::new(Duration::from_secs(10), 3);
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let passed: Vec<Option<u64>> = (0..10).map(|_| t.admit_at(at(1))).collect();
        assert_eq!(passed[..3], [Some(0), Some(0), Some(0)]);
        assert!(passed[3..].iter().all(Option::is_none));
        // Still the same window (it began at the first line).
        assert_eq!(t.admit_at(at(10)), None);
        // The next window's first line says how many were held back.
        assert_eq!(t.admit_at(at(11)), Some(8));
        assert_eq!(t.admit_at(at(12)), Some(0));
        // One line a window, as the HTTP layer's refusals are logged.
        let one = Throttle::new(Duration::from_secs(10), 1);
        assert_eq!((one.admit_at(at(0)), one.admit_at(at(9))), (Some(0), None));
        assert_eq!(one.admit_at(at(10)), Some(1));
    }

    use super::escape;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(escape("\u{1b}[31m"), "\\u{1b}[31m");
        assert_eq!(escape("x\u{2028}y"), "x\\u{2028}y");
        assert_eq!(escape("中文"), "中文");
    }
}

//! adnanh's `{source, name}` arguments as hookrunner params: one param per
//! distinct source, named after it (`head_commit.author.email` →
//! `head_commit_author_email`).
//!
//! adnanh walks a dotted name through the payload trying the whole rest as
//! one key first (`{"a.b": 1}` is reached by `a.b`); hookrunner's paths are
//! fixed, so a dotted payload name is taken as nested keys, a segment of
//! digits as an array index (`commits.0.id` → `commits[0].id`), and a name
//! starting with `root.<n>` as an index into a body that is a JSON array
//! (adnanh wraps such a body as `{"root": [...]}`). Header and query names
//! are always one key (their values are flat), quoted when they hold dots.

use super::hooks::Argument;
use super::rules::canonical_header;
use crate::headers::valid_name;

/// The value an argument gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// A param of the mapping, by name.
    Param(String),
    /// `source: string`: the name itself (template-bearing text).
    Literal(String),
    /// A source adnanh cannot read (the reason); an empty argument there.
    Missing(String),
    /// A value no request can carry (the reason): a header whose name is
    /// not a valid header name. adnanh reads it as not found every time.
    Absent(String),
}

/// The params of one hook's mapping, in the order they were first used.
#[derive(Debug, Clone)]
pub struct Params {
    entries: Vec<(String, String)>,
    /// Short names (`p1`, `p2`, ...) to keep a long condition within limits.
    short: bool,
    /// Headers (canonical names) and query values the hook parses as JSON
    /// (`parse-parameters-as-json`): a dotted name under one reads into it.
    parsed_headers: Vec<String>,
    parsed_query: Vec<String>,
}

/// Names a param cannot have in hookrunner.
const RESERVED: &[&str] = &[
    "source",
    "event",
    "action",
    "task_id",
    "delivery_id",
    "payload",
    "true",
    "false",
];

impl Params {
    pub fn new(short: bool) -> Params {
        Params {
            entries: Vec::new(),
            short,
            parsed_headers: Vec::new(),
            parsed_query: Vec::new(),
        }
    }

    /// The hook's `parse-parameters-as-json` entries: `(source, name)`.
    pub fn parsing(mut self, parsed: &[Argument]) -> Params {
        for a in parsed {
            match a.source.as_str() {
                // One no request carries is never there to parse.
                "header" if valid_name(&a.name) => self.parsed_headers.push(canonical_header(&a.name)),
                "url" | "query" => self.parsed_query.push(a.name.clone()),
                _ => {}
            }
        }
        self
    }

    /// `headers.<name>` or `query.<name>`; a dotted `name` under a value the
    /// hook parses as JSON is a path into it, as adnanh reads it
    /// (`X-Meta.build` → `headers.X-Meta.build`).
    fn whole_or_path(root: &str, name: &str, parsed: &[String]) -> String {
        match parsed_prefix(name, parsed) {
            Some(p) => {
                let mut out = format!("{root}.{}", key(p, true));
                push_segments(&mut out, name[p.len() + 1..].split('.'));
                out
            }
            None => format!("{root}.{}", key(name, true)),
        }
    }

    /// `(name, source)` pairs, as the mapping lists them.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The param for `source` (`payload.ref`), added if new.
    fn param(&mut self, source: String, hint: &str) -> String {
        if let Some((name, _)) = self.entries.iter().find(|(_, s)| *s == source) {
            return name.clone();
        }
        let base = if self.short {
            format!("p{}", self.entries.len() + 1)
        } else {
            identifier(hint)
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.entries.iter().any(|(existing, _)| *existing == name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.entries.push((name.clone(), source));
        name
    }

    /// What `arg` gives, as a param (added if new), a literal or nothing.
    /// An `Err` is a reason the source cannot be had in hookrunner.
    pub fn value(&mut self, arg: &Argument) -> Result<Val, String> {
        let name = &arg.name;
        Ok(match arg.source.as_str() {
            "string" => Val::Literal(name.clone()),
            "header" if !valid_name(name) && parsed_prefix(&canonical_header(name), &self.parsed_headers).is_none() => {
                Val::Absent(format!(
                    "header `{}` is not a valid header name, so no request carries it (adnanh reads it as not found)",
                    name.escape_debug()
                ))
            }
            "header" => {
                let header = canonical_header(name);
                let path = Self::whole_or_path("headers", &header, &self.parsed_headers);
                Val::Param(self.param(path, &format!("header_{header}")))
            }
            "url" | "query" => {
                let path = Self::whole_or_path("query", name, &self.parsed_query);
                Val::Param(self.param(path, &format!("query_{name}")))
            }
            "payload" => Val::Param(self.param(payload_path(name), name)),
            "raw-request-body" => Val::Param(self.param("request.body".into(), "body")),
            "request" => match name.to_lowercase().as_str() {
                "method" => Val::Param(self.param("request.method".into(), "method")),
                "remote-addr" => Val::Param(self.param("request.remote_addr".into(), "remote_addr")),
                _ => Val::Missing(format!(
                    "source `request` has no `{name}` in adnanh (only `method` and `remote-addr`)"
                )),
            },
            "entire-payload" => Val::Param(self.param("payload".into(), "payload_json")),
            "entire-headers" => Val::Param(self.param("headers".into(), "headers_json")),
            "entire-query" => Val::Param(self.param("query".into(), "query_json")),
            "" => Val::Missing("no `source` is given".into()),
            other => Val::Missing(format!("source `{other}` is not one adnanh knows")),
        })
    }
}

/// The longest of `parsed` (names whose values the hook parses as JSON)
/// that `name` is a path into: `X-Meta` for `X-Meta.a b`.
fn parsed_prefix<'p>(name: &str, parsed: &'p [String]) -> Option<&'p String> {
    parsed
        .iter()
        .filter(|p| name.len() > p.len() + 1 && name.starts_with(p.as_str()) && name.as_bytes()[p.len()] == b'.')
        .max_by_key(|p| p.len())
}

/// A param name made of `hint`: letters, digits and `_`, not starting with a digit.
fn identifier(hint: &str) -> String {
    let mut s = String::new();
    for c in hint.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    let s = s.trim_matches('_').to_string();
    let s = if s.is_empty() {
        "p".to_string()
    } else if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("p_{s}")
    } else {
        s
    };
    if RESERVED.contains(&s.as_str()) {
        format!("{s}_value")
    } else {
        s
    }
}

/// One key of a path, quoted (`"a.b"`) when it holds `.`, `[`, `]`, `"`,
/// `\` or white space, or is empty. `whole`: a header or query name.
pub fn key(k: &str, whole: bool) -> String {
    let plain = !k.is_empty()
        && !k
            .chars()
            .any(|c| matches!(c, '.' | '[' | ']' | '"' | '\\') || c.is_whitespace())
        && (whole || !k.bytes().all(|b| b.is_ascii_digit()));
    if plain {
        return k.to_string();
    }
    let mut out = String::from("\"");
    for c in k.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A dotted adnanh payload name as a hookrunner path.
pub fn payload_path(name: &str) -> String {
    let mut segments: Vec<&str> = name.split('.').collect();
    let mut out = String::from("payload");
    // `root.<n>...`: adnanh's wrapper around a body that is a JSON array.
    if segments.len() > 1 && segments[0] == "root" && is_index(segments[1]) {
        segments.remove(0);
        out.push('.');
        let first = segments.remove(0);
        out.push_str(&format!("[{first}]"));
    } else if let Some(first) = segments.first().filter(|s| is_index(s)) {
        // adnanh's payload is an object at the top (an array body is under
        // `root`): a first name of digits is a key, `payload."2024"`.
        out.push('.');
        out.push_str(&key(first, false));
        segments.remove(0);
    }
    push_segments(&mut out, segments);
    out
}

/// Dotted segments as path steps: digits an array index, else a key.
fn push_segments<'a>(out: &mut String, segments: impl IntoIterator<Item = &'a str>) {
    for seg in segments {
        if is_index(seg) {
            out.push_str(&format!("[{seg}]"));
        } else {
            out.push('.');
            out.push_str(&key(seg, false));
        }
    }
}

fn is_index(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<usize>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(source: &str, name: &str) -> Argument {
        Argument {
            source: source.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn dotted_names_under_parsed_headers_and_query_values_read_into_them() {
        let parsed = [arg("header", "x-meta"), arg("url", "q")];
        let mut p = Params::new(false).parsing(&parsed);
        p.value(&arg("header", "X-Meta.b.0")).unwrap();
        p.value(&arg("query", "q.c")).unwrap();
        p.value(&arg("header", "X-Other.b")).unwrap();
        p.value(&arg("header", "X-Meta")).unwrap();
        // A key with a space under a parsed header is a key, not a header name.
        p.value(&arg("header", "X-Meta.a b")).unwrap();
        assert!(matches!(
            p.value(&arg("header", "X-Other.a b")).unwrap(),
            Val::Absent(_)
        ));
        let sources: Vec<&str> = p.entries().iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            sources,
            [
                "headers.X-Meta.b[0]",
                "query.q.c",
                r#"headers."X-Other.b""#,
                "headers.X-Meta",
                r#"headers.X-Meta."a b""#
            ]
        );
    }

    #[test]
    fn payload_names_become_paths() {
        assert_eq!(payload_path("ref"), "payload.ref");
        assert_eq!(payload_path("commits.0.id"), "payload.commits[0].id");
        assert_eq!(payload_path("root.0.event"), "payload.[0].event");
        assert_eq!(payload_path("root"), "payload.root");
        assert_eq!(
            payload_path("app.users.user.0.-name"),
            "payload.app.users.user[0].-name"
        );
        assert_eq!(
            payload_path("app.messages.message.#text"),
            "payload.app.messages.message.#text"
        );
        assert_eq!(payload_path("a..b"), "payload.a.\"\".b");
        // The top level is an object: digits there are a key.
        assert_eq!(payload_path("2024"), "payload.\"2024\"");
        assert_eq!(payload_path("010.x.0"), "payload.\"010\".x[0]");
    }

    #[test]
    fn one_param_per_source_with_readable_names() {
        let mut p = Params::new(false);
        assert_eq!(
            p.value(&arg("payload", "head_commit.id")).unwrap(),
            Val::Param("head_commit_id".into())
        );
        assert_eq!(
            p.value(&arg("payload", "head_commit.id")).unwrap(),
            Val::Param("head_commit_id".into())
        );
        assert_eq!(
            p.value(&arg("header", "x-odd.name")).unwrap(),
            Val::Param("header_x_odd_name".into())
        );
        assert_eq!(
            p.value(&arg("query", "token")).unwrap(),
            Val::Param("query_token".into())
        );
        assert_eq!(p.value(&arg("url", "token")).unwrap(), Val::Param("query_token".into()));
        assert_eq!(
            p.value(&arg("request", "Remote-Addr")).unwrap(),
            Val::Param("remote_addr".into())
        );
        assert_eq!(
            p.value(&arg("payload", "payload")).unwrap(),
            Val::Param("payload_value".into())
        );
        assert_eq!(
            p.value(&arg("payload", "head-commit.id")).unwrap(),
            Val::Param("head_commit_id_2".into())
        );
        assert_eq!(
            p.value(&arg("string", "exit=0")).unwrap(),
            Val::Literal("exit=0".into())
        );
        assert!(matches!(p.value(&arg("request", "path")).unwrap(), Val::Missing(_)));
        assert!(matches!(p.value(&arg("bogus", "x")).unwrap(), Val::Missing(_)));
        let sources: Vec<&str> = p.entries().iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            sources,
            [
                "payload.head_commit.id",
                "headers.\"X-Odd.name\"",
                "query.token",
                "request.remote_addr",
                "payload.payload",
                "payload.head-commit.id"
            ]
        );
        let mut short = Params::new(true);
        assert_eq!(short.value(&arg("payload", "a")).unwrap(), Val::Param("p1".into()));
    }
}

//! Writing the hookrunner config: a small YAML tree with comments, printed
//! in block style, every string that could be read as something else quoted.

use std::fmt::Write;

/// A value of the config being written.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Str(String),
    Int(i64),
    Bool(bool),
    /// A list printed on one line (`[POST, GET]`) when it holds only scalars.
    Seq(Vec<Out>),
    Map(Vec<Entry>),
}

/// `key: value`, with comment lines above it and one at the end of its line.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Out,
    pub above: Vec<String>,
    pub trailing: Option<String>,
}

impl Entry {
    pub fn new(key: impl Into<String>, value: Out) -> Entry {
        Entry {
            key: key.into(),
            value,
            above: Vec::new(),
            trailing: None,
        }
    }

    pub fn above(mut self, comment: impl Into<String>) -> Entry {
        self.above.push(comment.into());
        self
    }

    pub fn trailing(mut self, comment: impl Into<String>) -> Entry {
        self.trailing = Some(comment.into());
        self
    }
}

impl Out {
    pub fn str(s: impl Into<String>) -> Out {
        Out::Str(s.into())
    }

    fn is_scalar(&self) -> bool {
        matches!(self, Out::Str(_) | Out::Int(_) | Out::Bool(_))
    }
}

/// Prints a document: the top-level map's entries at column 0.
pub fn document(entries: &[Entry]) -> String {
    let mut out = String::new();
    map(&mut out, entries, 0);
    out
}

fn map(out: &mut String, entries: &[Entry], indent: usize) {
    let pad = " ".repeat(indent);
    for e in entries {
        for c in &e.above {
            for line in c.split(BREAKS) {
                let _ = writeln!(out, "{pad}# {line}");
            }
        }
        let _ = write!(out, "{pad}{}:", scalar(&e.key));
        let trailing = |out: &mut String| {
            if let Some(t) = &e.trailing {
                let _ = write!(out, "  # {}", one_line(t));
            }
        };
        match &e.value {
            Out::Map(inner) if inner.is_empty() => {
                out.push_str(" {}");
                trailing(out);
                out.push('\n');
            }
            Out::Map(inner) => {
                trailing(out);
                out.push('\n');
                map(out, inner, indent + 2);
            }
            Out::Seq(items) if items.iter().all(Out::is_scalar) => {
                out.push(' ');
                flow(out, items);
                trailing(out);
                out.push('\n');
            }
            Out::Seq(items) => {
                trailing(out);
                out.push('\n');
                seq(out, items, indent + 2);
            }
            v => {
                out.push(' ');
                out.push_str(&value_text(v));
                trailing(out);
                out.push('\n');
            }
        }
    }
}

fn seq(out: &mut String, items: &[Out], indent: usize) {
    let pad = " ".repeat(indent);
    for item in items {
        match item {
            Out::Map(entries) if !entries.is_empty() => {
                // The first entry goes on the dash's line.
                let mut text = String::new();
                map(&mut text, entries, indent + 2);
                let text = text.trim_start_matches(' ');
                let _ = write!(out, "{pad}- {text}");
            }
            Out::Seq(inner) if !inner.iter().all(Out::is_scalar) => {
                let _ = writeln!(out, "{pad}-");
                seq(out, inner, indent + 2);
            }
            other => {
                let _ = write!(out, "{pad}- ");
                match other {
                    Out::Seq(inner) => flow(out, inner),
                    Out::Map(_) => out.push_str("{}"),
                    v => out.push_str(&value_text(v)),
                }
                out.push('\n');
            }
        }
    }
}

fn flow(out: &mut String, items: &[Out]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&value_text(item));
    }
    out.push(']');
}

fn value_text(v: &Out) -> String {
    match v {
        Out::Str(s) => scalar(s),
        Out::Int(i) => i.to_string(),
        Out::Bool(b) => b.to_string(),
        Out::Seq(_) | Out::Map(_) => String::new(),
    }
}

/// What YAML 1.1 (libyaml) takes as a line break, so that a comment holding
/// one would end there and the rest would be read as YAML.
pub const BREAKS: [char; 5] = ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'];

fn one_line(s: &str) -> String {
    s.replace(BREAKS, " ")
}

/// A string as a YAML scalar: plain where nothing could read it as
/// something else (a number, a boolean, null, syntax), else double-quoted.
pub fn scalar(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else if !s.is_empty()
        && s.chars()
            .all(|c| (' '..='~').contains(&c) || (c as u32 >= 0xA0 && c != '\u{FEFF}'))
    {
        // Single quotes read better (conditions hold double quotes): only `'` is doubled.
        format!("'{}'", s.replace('\'', "''"))
    } else {
        quoted(s)
    }
}

fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphanumeric() || first == '/' || first == '_') {
        return false;
    }
    // What YAML 1.1 or 1.2 would read as a number, a boolean or null.
    if first.is_ascii_digit()
        && (super::yaml::resolve_plain(s) != super::yaml::Resolved::Str(s.to_string())
            || s.parse::<f64>().is_ok()
            || s.contains(':'))
    {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@' | '+' | '~' | '='))
    {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    // YAML 1.1 and 1.2 words, and what looks like a number in either.
    !matches!(
        lower.as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | ".inf" | ".nan"
    ) && !lower.starts_with("0x")
}

/// A double-quoted YAML scalar.
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || (0x7F..=0x9F).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_holding_a_line_break_stays_a_comment() {
        for brk in BREAKS {
            let doc = vec![Entry::new("a", Out::str("1"))
                .above(format!("x{brk}b: 2"))
                .trailing(format!("y{brk}c: 3"))];
            let back: serde_yaml::Value = serde_yaml::from_str(&document(&doc)).unwrap();
            let keys: Vec<_> = back.as_mapping().unwrap().keys().cloned().collect();
            assert_eq!(keys, vec![serde_yaml::Value::from("a")], "{brk:?}");
        }
    }

    #[test]
    fn prints_block_yaml_that_reads_back() {
        let doc = vec![
            Entry::new(
                "sources",
                Out::Map(vec![Entry::new(
                    "sendgrid/dir",
                    Out::Map(vec![
                        Entry::new("provider", Out::str("generic")).trailing("a comment"),
                        Entry::new("methods", Out::Seq(vec![Out::str("POST"), Out::str("GET")])),
                        Entry::new("body", Out::str("yes")),
                        Entry::new("no_match", Out::Int(400)),
                        Entry::new("headers", Out::Map(vec![])),
                    ]),
                )
                .above("adnanh hook `sendgrid/dir`")]),
            ),
            Entry::new(
                "rules",
                Out::Seq(vec![Out::Map(vec![
                    Entry::new("if", Out::str("a == \"1\"")),
                    Entry::new("run", Out::str("x")),
                ])]),
            ),
        ];
        let text = document(&doc);
        assert_eq!(
            text,
            "sources:\n  # adnanh hook `sendgrid/dir`\n  sendgrid/dir:\n    provider: generic  # a comment\n    methods: [POST, GET]\n    body: 'yes'\n    no_match: 400\n    headers: {}\nrules:\n  - if: 'a == \"1\"'\n    run: x\n"
        );
        let back: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back["sources"]["sendgrid/dir"]["body"], serde_yaml::Value::from("yes"));
        assert_eq!(back["rules"][0]["if"], serde_yaml::Value::from("a == \"1\""));
    }

    #[test]
    fn quotes_what_could_be_misread() {
        for s in [
            "",
            "1",
            "010",
            "yes",
            "No",
            "null",
            "~",
            "*",
            "a: b",
            "#x",
            "- x",
            "{a}",
            "0x1F",
            "é",
            "it's",
            "a\nb",
            "1h",
            "2001-12-14",
            "1:20",
        ] {
            let text = format!("k: {}\n", scalar(s));
            let back: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            assert_eq!(back["k"], serde_yaml::Value::from(s), "{s}");
        }
        assert_eq!(scalar("refs/heads/master"), "refs/heads/master");
        assert_eq!(quoted("a\u{7f}\n"), "\"a\\x7F\\n\"");
    }
}

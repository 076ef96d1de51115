//! Request bodies that are not JSON, and what kind a body is.
//!
//! A body's [`Kind`] comes from its Content-Type ([`Kind::of_content_type`])
//! or, without one, from its content ([`Kind::of_content`]). The parsers of
//! the kinds that are not JSON live here: [`form`] (URL-encoded fields),
//! [`multipart`] (`multipart/form-data`: fields, JSON parts and files), and
//! [`xml`] (adnanh/mxj's shape). [`uploads`] keeps the files of multipart
//! deliveries on disk for their tasks. Nothing here knows about sources,
//! HTTP or tasks: `intake::body` decides what a source accepts, and the
//! engine asks [`uploads`] for a task's files before it spawns.

pub mod form;
pub mod multipart;
pub mod uploads;
pub mod xml;

use std::fmt;

/// The deepest nesting a parsed body may have (serde_json's own limit, which
/// JSON bodies get; XML elements and JSON parts of a multipart body too).
pub const MAX_DEPTH: usize = 127;

/// What a (non-empty) body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Json,
    Form,
    Multipart,
    Xml,
    Text,
}

impl Kind {
    /// Every kind, in the order `bodies: any` lists them.
    pub const ALL: [Kind; 5] = [Kind::Json, Kind::Form, Kind::Multipart, Kind::Xml, Kind::Text];

    /// The word `bodies:` uses.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Form => "form",
            Kind::Multipart => "multipart",
            Kind::Xml => "xml",
            Kind::Text => "text",
        }
    }

    pub fn parse(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == word)
    }

    /// The kind a Content-Type names (the media type compared in any case,
    /// parameters ignored): `application/json` and `*/*+json` are JSON;
    /// `application/x-www-form-urlencoded` a form; `multipart/form-data` a
    /// multipart body; `application/xml`, `text/xml` and `*/*+xml` XML;
    /// anything else (`text/*`, `application/octet-stream`, ...) text.
    pub fn of_content_type(content_type: &str) -> Kind {
        let essence = essence(content_type);
        let (_, subtype) = essence.split_once('/').unwrap_or(("", ""));
        match essence.as_str() {
            "application/json" => Kind::Json,
            "application/x-www-form-urlencoded" => Kind::Form,
            "multipart/form-data" => Kind::Multipart,
            "application/xml" | "text/xml" => Kind::Xml,
            _ if subtype.ends_with("+json") => Kind::Json,
            _ if subtype.ends_with("+xml") => Kind::Xml,
            _ => Kind::Text,
        }
    }

    /// The kind of a non-empty body sent without a Content-Type, judged by
    /// its content: JSON if its first non-blank byte is `{` or `[` and it
    /// parses; XML if that byte is `<`; a form if it is all `&`-separated
    /// `name=value` pairs in URL encoding; else text.
    pub fn of_content(body: &[u8]) -> Kind {
        let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
        match first {
            Some(b'{' | b'[') if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() => Kind::Json,
            Some(b'<') => Kind::Xml,
            _ if form::looks_like(body) => Kind::Form,
            _ => Kind::Text,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of kinds: what a source accepts (`bodies:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kinds(u8);

impl Kinds {
    /// JSON only: what a source accepts when `bodies` says nothing.
    pub const JSON: Kinds = Kinds(1);

    fn bit(kind: Kind) -> u8 {
        1 << (kind as u8)
    }

    pub fn all() -> Kinds {
        Kind::ALL.into_iter().fold(Kinds(0), Kinds::with)
    }

    pub fn with(self, kind: Kind) -> Kinds {
        Kinds(self.0 | Kinds::bit(kind))
    }

    pub fn contains(self, kind: Kind) -> bool {
        self.0 & Kinds::bit(kind) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Kinds {
    /// `json`, `json and form`, `json, form and xml`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Kind::ALL
            .into_iter()
            .filter(|k| self.contains(*k))
            .map(Kind::name)
            .collect();
        match names.split_last() {
            None => f.write_str("nothing"),
            Some((last, [])) => f.write_str(last),
            Some((last, rest)) => write!(f, "{} and {last}", rest.join(", ")),
        }
    }
}

/// A media type's essence: `type/subtype`, lower-cased, without parameters.
pub fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The value of parameter `name` of a header such as
/// `multipart/form-data; boundary="x"` or `form-data; name="f"`: quoted
/// strings unquoted (`\"` and `\\` inside), names compared in any case.
/// Reads the value in place; only the answer is allocated (three calls a
/// multipart part, so it matters: see BENCHMARKS.md).
pub fn header_param(value: &str, name: &str) -> Option<String> {
    // Skip the value itself (`form-data`, `multipart/form-data`).
    let mut rest = &value[value.find(';')? + 1..];
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if rest.is_empty() {
            return None;
        }
        let end = rest.find(['=', ';']).unwrap_or(rest.len());
        let key = rest[..end].trim();
        rest = &rest[end..];
        let wanted = key.eq_ignore_ascii_case(name);
        let mut val = std::borrow::Cow::Borrowed("");
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            if let Some(quoted) = after.strip_prefix('"') {
                let (text, used) = unquote(quoted);
                val = text;
                // Anything after the closing quote, up to the next `;`, is dropped.
                let tail = &quoted[used..];
                rest = &tail[tail.find(';').unwrap_or(tail.len())..];
            } else {
                let end = after.find(';').unwrap_or(after.len());
                val = std::borrow::Cow::Borrowed(after[..end].trim_end());
                rest = &after[end..];
            }
        }
        if wanted {
            return Some(val.into_owned());
        }
    }
}

/// A quoted string's text (after its opening quote) and the bytes it used,
/// closing quote included; an unclosed string runs to the end.
fn unquote(quoted: &str) -> (std::borrow::Cow<'_, str>, usize) {
    match quoted.find(['"', '\\']) {
        None => (std::borrow::Cow::Borrowed(quoted), quoted.len()),
        Some(i) if quoted.as_bytes()[i] == b'"' => (std::borrow::Cow::Borrowed(&quoted[..i]), i + 1),
        Some(_) => {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => return (std::borrow::Cow::Owned(out), i + 1),
                    '\\' => out.extend(chars.next().map(|(_, c)| c)),
                    c => out.push(c),
                }
            }
            (std::borrow::Cow::Owned(out), quoted.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parser `header_param` replaced (every parameter as owned
    /// strings), kept as the reference it must agree with.
    fn reference(value: &str, name: &str) -> Option<String> {
        let mut out = Vec::new();
        let mut chars = value.chars().peekable();
        for c in chars.by_ref() {
            if c == ';' {
                break;
            }
        }
        loop {
            while chars.next_if(|c| c.is_whitespace() || *c == ';').is_some() {}
            let mut key = String::new();
            while let Some(c) = chars.next_if(|c| *c != '=' && *c != ';') {
                key.push(c);
            }
            if key.is_empty() && chars.peek().is_none() {
                break;
            }
            let mut val = String::new();
            if chars.next_if_eq(&'=').is_some() {
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                if chars.next_if_eq(&'"').is_some() {
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' => val.extend(chars.next()),
                            c => val.push(c),
                        }
                    }
                    while chars.next_if(|c| *c != ';').is_some() {}
                } else {
                    while let Some(c) = chars.next_if(|c| *c != ';') {
                        val.push(c);
                    }
                    val = val.trim_end().to_string();
                }
            }
            out.push((key.trim().to_string(), val));
        }
        out.into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    proptest::proptest! {
        /// Any header text, any of the names multipart asks for: the same
        /// answer as the reference parser.
        #[test]
        fn header_param_agrees_with_the_reference(
            value in "[a-zA-Z /*=;\"\\\\ \t\u{e9}\u{4e2d}-]{0,40}",
            name in proptest::sample::select(vec!["name", "filename", "filename*", "boundary", "NAME", ""]),
        ) {
            proptest::prop_assert_eq!(header_param(&value, name), reference(&value, name));
        }
    }

    #[test]
    fn kinds_from_content_types() {
        let cases = [
            ("application/json", Kind::Json),
            ("Application/JSON; charset=utf-8", Kind::Json),
            ("application/vnd.api+json", Kind::Json),
            ("application/x-www-form-urlencoded", Kind::Form),
            ("multipart/form-data; boundary=x", Kind::Multipart),
            ("application/xml", Kind::Xml),
            ("text/xml; charset=utf-8", Kind::Xml),
            ("application/atom+xml", Kind::Xml),
            ("text/plain", Kind::Text),
            ("application/octet-stream", Kind::Text),
            ("multipart/mixed; boundary=x", Kind::Text),
            ("", Kind::Text),
        ];
        for (ct, kind) in cases {
            assert_eq!(Kind::of_content_type(ct), kind, "{ct}");
        }
    }

    #[test]
    fn kinds_from_content() {
        let cases: [(&[u8], Kind); 9] = [
            (b" {\"a\":1}", Kind::Json),
            (b"[1,2]\n", Kind::Json),
            (b"{not json", Kind::Text),
            (b"<a>1</a>", Kind::Xml),
            (b"a=1&b=two+words&c=%41", Kind::Form),
            (b"flag&x=1", Kind::Text),
            (b"hello world", Kind::Text),
            (b"a=%zz", Kind::Text),
            (b"done", Kind::Text),
        ];
        for (body, kind) in cases {
            assert_eq!(Kind::of_content(body), kind, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn kind_sets_name_themselves() {
        assert_eq!(Kinds::JSON.to_string(), "json");
        assert_eq!(Kinds::JSON.with(Kind::Form).to_string(), "json and form");
        assert_eq!(Kinds::all().to_string(), "json, form, multipart, xml and text");
        assert!(Kinds::all().contains(Kind::Text) && !Kinds::JSON.contains(Kind::Xml));
    }

    #[test]
    fn header_params_quoted_or_not() {
        let v = r#"form-data; name="a \"b\""; filename=x.txt ; Boundary=zz"#;
        assert_eq!(header_param(v, "name").as_deref(), Some(r#"a "b""#));
        assert_eq!(header_param(v, "filename").as_deref(), Some("x.txt"));
        assert_eq!(header_param(v, "boundary").as_deref(), Some("zz"));
        assert_eq!(header_param(v, "missing"), None);
        assert_eq!(header_param("multipart/form-data", "boundary"), None);
        assert_eq!(
            header_param("multipart/form-data; boundary=\"a;b\"", "boundary").as_deref(),
            Some("a;b")
        );
    }
}

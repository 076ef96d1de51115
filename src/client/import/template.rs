//! adnanh's `-template`: the hooks file is run through Go's `text/template`
//! (with no data) before it is parsed. The import evaluates the part of that
//! language hooks files use: `{{ getenv "X" }}`, `{{ cat "/path" }}`,
//! `{{ credential "name" }}`, piped through `js`, `html`, `urlquery` or
//! `print`; `{{ .Field }}` (which renders `<no value>`), comments and the
//! `{{-`/`-}}` trim markers. Anything else (`if`, `range`, variables, ...) is
//! refused with the action named.
//!
//! `getenv`, `cat` and `credential` calls are not pasted in: each becomes a
//! placeholder (two private-use characters around its number) so that where
//! the value lands in a key hookrunner expands, the import can write
//! `${X}`, `${file:/path}` or `${credential:name}` instead of the secret
//! itself. [`Templates::evaluate`] pastes the values where it cannot.

use std::fmt::Write;

const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// The template calls of a file, by placeholder number.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    calls: Vec<Call>,
}

#[derive(Debug, Clone)]
struct Call {
    func: Func,
    /// Piped through `js` (only right inside a double-quoted scalar, where
    /// YAML undoes the escaping).
    js: bool,
    /// The text adnanh would paste in (after the pipeline).
    pasted: String,
    /// `pasted` before `js`: what a double-quoted scalar holds once YAML
    /// has undone the escaping.
    unescaped: String,
    /// The action as written, for messages.
    text: String,
}

#[derive(Debug, Clone)]
enum Func {
    Getenv(String),
    Cat(String),
    Credential(String),
}

/// An action the import cannot evaluate, or a malformed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub line: usize,
    pub message: String,
}

/// One piece of a string that went through the template.
pub enum Piece<'a> {
    Text(&'a str),
    /// A `getenv`/`cat`/`credential` call: its hookrunner reference, if it has one.
    Call {
        reference: Option<String>,
    },
}

impl Templates {
    /// Whether `s` holds a placeholder.
    pub fn has_calls(s: &str) -> bool {
        s.contains(OPEN)
    }

    /// `s` with every call's value pasted in, as adnanh would have it. A
    /// call still here is in a double-quoted scalar (or has no `js`), whose
    /// escaping YAML undoes: its value goes in unescaped.
    pub fn evaluate(&self, s: &str) -> String {
        self.map(s, |call| call.unescaped.clone())
    }

    /// `s` with the calls written as they were in the file (for messages).
    pub fn source_text(s: &str, templates: &Templates) -> String {
        templates.map(s, |call| call.text.clone())
    }

    /// Pastes the values of calls piped through `js`: used for scalars that
    /// were not double-quoted, where the escaping stays in the value.
    pub fn paste_js(&self, s: &str) -> String {
        let mut out = String::new();
        for piece in self.split_raw(s) {
            match piece {
                Ok(text) => out.push_str(text),
                Err((_, call)) if call.js => out.push_str(&call.pasted),
                Err((n, _)) => {
                    let _ = write!(out, "{OPEN}{n}{CLOSE}");
                }
            }
        }
        out
    }

    /// Whether some call in `s` is piped through `js`.
    pub fn has_js(&self, s: &str) -> bool {
        self.split_raw(s).into_iter().any(|p| matches!(p, Err((_, c)) if c.js))
    }

    /// The pieces of `s`. `strict`: a `getenv` of an unset variable should
    /// stop hookrunner from loading (`${X}`), as for secrets; otherwise it is
    /// empty as in adnanh (`${X:-}`).
    pub fn pieces<'s>(&'s self, s: &'s str, strict: bool) -> Vec<Piece<'s>> {
        self.split_raw(s)
            .into_iter()
            .map(|p| match p {
                Ok(text) => Piece::Text(text),
                Err((_, call)) => Piece::Call {
                    reference: call.reference(strict),
                },
            })
            .collect()
    }

    fn map(&self, s: &str, f: impl Fn(&Call) -> String) -> String {
        self.split_raw(s)
            .into_iter()
            .map(|p| match p {
                Ok(text) => text.to_string(),
                Err((_, call)) => f(call),
            })
            .collect()
    }

    fn split_raw<'s>(&'s self, s: &'s str) -> Vec<Result<&'s str, (usize, &'s Call)>> {
        let mut out = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find(OPEN) {
            let after = &rest[start + OPEN.len_utf8()..];
            let Some(end) = after.find(CLOSE) else { break };
            let Some((n, call)) = after[..end]
                .parse::<usize>()
                .ok()
                .and_then(|n| self.calls.get(n).map(|c| (n, c)))
            else {
                break;
            };
            if start > 0 {
                out.push(Ok(&rest[..start]));
            }
            out.push(Err((n, call)));
            rest = &after[end + CLOSE.len_utf8()..];
        }
        if !rest.is_empty() {
            out.push(Ok(rest));
        }
        out
    }
}

impl Call {
    /// `${X}` (or `${X:-}`), `${file:/path}`, `${credential:name}`, where
    /// hookrunner can say the same.
    fn reference(&self, strict: bool) -> Option<String> {
        match &self.func {
            Func::Getenv(name) => {
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                valid.then(|| {
                    if strict {
                        format!("${{{name}}}")
                    } else {
                        format!("${{{name}:-}}")
                    }
                })
            }
            Func::Cat(path) => (!path.is_empty() && !path.contains('}')).then(|| format!("${{file:{path}}}")),
            Func::Credential(name) => {
                (!name.is_empty() && !name.contains(['/', '}'])).then(|| format!("${{credential:{name}}}"))
            }
        }
    }
}

/// Renders `text` as adnanh's `-template` would, with `getenv`, `cat` and
/// `credential` calls as placeholders. `env` reads the environment; notes
/// say what was evaluated at import time.
pub fn render(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Templates, Vec<String>), TemplateError> {
    if text.contains(OPEN) || text.contains(CLOSE) {
        return Err(TemplateError {
            line: 1,
            message: "the file holds the characters U+E000 or U+E001, which the import uses for itself".into(),
        });
    }
    let mut out = String::with_capacity(text.len());
    let mut templates = Templates::default();
    let mut notes = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        if trim_next {
            before = before.trim_start_matches(is_space);
        }
        let body_start = start + 2;
        let trim_left = rest[body_start..].starts_with('-') && rest[body_start + 1..].starts_with(is_space);
        if trim_left {
            before = before.trim_end_matches(is_space);
        }
        out.push_str(before);
        let line = 1 + text[..text.len() - rest.len() + start].matches('\n').count();
        let inner_start = body_start + usize::from(trim_left);
        let close = find_close(&rest[inner_start..]).ok_or_else(|| TemplateError {
            line,
            message: "unclosed action (`{{` without `}}`)".into(),
        })?;
        let mut inner = &rest[inner_start..inner_start + close];
        trim_next = false;
        if inner.ends_with('-') && inner[..inner.len() - 1].ends_with(is_space) {
            inner = &inner[..inner.len() - 1];
            trim_next = true;
        }
        let action = format!("{{{{{}}}}}", &rest[body_start..inner_start + close]);
        rest = &rest[inner_start + close + 2..];
        let inner = inner.trim_matches(is_space);
        if inner.starts_with("/*") && inner.ends_with("*/") {
            continue;
        }
        match action_value(inner, env).map_err(|message| TemplateError {
            line,
            message: format!("`{action}`: {message}"),
        })? {
            Value::Call {
                func,
                js,
                pasted,
                unescaped,
            } => {
                let n = templates.calls.len();
                templates.calls.push(Call {
                    func,
                    js,
                    pasted,
                    unescaped,
                    text: action,
                });
                let _ = write!(out, "{OPEN}{n}{CLOSE}");
            }
            Value::Text(t, note) => {
                if let Some(note) = note {
                    notes.push(format!("`{action}` (line {line}) {note}"));
                }
                out.push_str(&t);
            }
        }
    }
    out.push_str(if trim_next {
        rest.trim_start_matches(is_space)
    } else {
        rest
    });
    Ok((out, templates, notes))
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Where the action's `}}` is, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

enum Value {
    Call {
        func: Func,
        js: bool,
        pasted: String,
        unescaped: String,
    },
    Text(String, Option<String>),
}

/// Evaluates one action's pipeline.
fn action_value(inner: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Value, String> {
    let commands = split_pipeline(inner)?;
    let Some((first, rest)) = commands.split_first() else {
        return Err("an empty action".into());
    };
    let mut source: Option<Func> = None;
    let mut value = match first.as_slice() {
        [Token::Ident(f), Token::Str(arg)] if ["getenv", "cat", "credential"].contains(&f.as_str()) => {
            let func = match f.as_str() {
                "getenv" => Func::Getenv(arg.clone()),
                "cat" => Func::Cat(arg.clone()),
                _ => Func::Credential(arg.clone()),
            };
            let v = match &func {
                Func::Getenv(name) => env(name).unwrap_or_default(),
                Func::Cat(path) => cat(path),
                Func::Credential(name) => match env("CREDENTIALS_DIRECTORY") {
                    Some(dir) if !dir.is_empty() => cat(&format!("{dir}/{name}")),
                    _ => env(name).unwrap_or_default(),
                },
            };
            source = Some(func);
            v
        }
        [Token::Field(_)] => "<no value>".to_string(),
        [Token::Str(s)] => s.clone(),
        [Token::Ident(f), args @ ..] if f == "print" => {
            let mut s = String::new();
            for a in args {
                match a {
                    Token::Str(t) => s.push_str(t),
                    _ => return Err("the import evaluates `print` of string literals only".into()),
                }
            }
            s
        }
        [Token::Ident(f), ..] if is_keyword(f) => {
            return Err(format!(
                "`{f}` cannot be evaluated by the import; render the file with adnanh's template rules yourself and import the result"
            ))
        }
        _ => {
            return Err(
                "the import evaluates `getenv`, `cat`, `credential`, `.Field`, string literals and `print`, piped through `js`, `html`, `urlquery` or `print`".into(),
            )
        }
    };
    let mut js = false;
    let mut other = false;
    let mut unescaped = value.clone();
    for command in rest {
        match command.as_slice() {
            [Token::Ident(f)] if f == "js" => {
                if js || other {
                    other = true;
                } else {
                    js = true;
                    unescaped = value.clone();
                }
                value = js_escape(&value);
            }
            [Token::Ident(f)] if f == "html" => {
                other = true;
                value = html_escape(&value);
            }
            [Token::Ident(f)] if f == "urlquery" => {
                other = true;
                value = percent_encoding::utf8_percent_encode(&value, QUERY)
                    .to_string()
                    .replace("%20", "+");
            }
            [Token::Ident(f)] if f == "print" => {}
            _ => return Err("a pipeline step other than `js`, `html`, `urlquery` or `print`".into()),
        }
    }
    Ok(match source {
        Some(func) if !other => Value::Call {
            func,
            js,
            unescaped: if js { unescaped } else { value.clone() },
            pasted: value,
        },
        Some(_) => Value::Text(
            value,
            Some("was evaluated at import time and its value written into the config (it is escaped, so no `${...}` reference can stand for it)".into()),
        ),
        None if first.first().is_some_and(|t| matches!(t, Token::Field(_))) => Value::Text(
            value,
            Some("renders `<no value>`: adnanh runs templates with no data".into()),
        ),
        None => Value::Text(value, None),
    })
}

/// Bytes `url.QueryEscape` escapes: all but letters, digits and `-_.~`.
const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn is_keyword(f: &str) -> bool {
    matches!(
        f,
        "if" | "else" | "end" | "range" | "with" | "define" | "template" | "block" | "break" | "continue"
    )
}

fn cat(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.strip_suffix('\n').map(str::to_string).unwrap_or(s))
        .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Field(String),
    Other(String),
}

fn split_pipeline(inner: &str) -> Result<Vec<Vec<Token>>, String> {
    let mut commands = vec![Vec::new()];
    let chars: Vec<char> = inner.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_space(c) {
            i += 1;
            continue;
        }
        if c == '|' {
            commands.push(Vec::new());
            i += 1;
            continue;
        }
        let token = if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err("unterminated string".into());
                };
                i += 1;
                match c {
                    '"' => break,
                    '\\' => {
                        let e = *chars.get(i).ok_or("unterminated string")?;
                        i += 1;
                        match e {
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            '\\' => s.push('\\'),
                            '"' => s.push('"'),
                            '\'' => s.push('\''),
                            'a' => s.push('\u{7}'),
                            'b' => s.push('\u{8}'),
                            'f' => s.push('\u{c}'),
                            'v' => s.push('\u{b}'),
                            'x' | 'u' | 'U' => {
                                let n = match e {
                                    'x' => 2,
                                    'u' => 4,
                                    _ => 8,
                                };
                                let hex: String = chars.get(i..i + n).ok_or("bad escape")?.iter().collect();
                                i += n;
                                let v = u32::from_str_radix(&hex, 16).map_err(|_| "bad escape")?;
                                s.push(char::from_u32(v).ok_or("bad escape")?);
                            }
                            other => return Err(format!("the escape `\\{other}` in a string")),
                        }
                    }
                    c => s.push(c),
                }
            }
            Token::Str(s)
        } else if c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err("unterminated raw string".into());
                };
                i += 1;
                if c == '`' {
                    break;
                }
                s.push(c);
            }
            Token::Str(s)
        } else {
            let start = i;
            while i < chars.len() && !is_space(chars[i]) && chars[i] != '|' {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word.starts_with('.') {
                Token::Field(word)
            } else if word.chars().all(|c| c.is_alphanumeric() || c == '_') && !word.is_empty() {
                Token::Ident(word)
            } else {
                Token::Other(word)
            }
        };
        commands.last_mut().expect("one command at least").push(token);
    }
    if commands.iter().any(|c| c.is_empty()) {
        return Err("an empty command in the pipeline".into());
    }
    if commands.iter().flatten().any(|t| matches!(t, Token::Other(_))) {
        return Err("the import evaluates `getenv`, `cat`, `credential`, `.Field`, string literals and `print`, piped through `js`, `html`, `urlquery` or `print`".into());
    }
    Ok(commands)
}

/// Go's `template.JSEscapeString`.
fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u00{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr3t".into()),
            "QUOTE" => Some("a\"b".into()),
            _ => None,
        }
    }

    #[test]
    fn calls_become_placeholders_with_their_references() {
        let (out, t, notes) = render(
            "secret: \"{{ getenv \"SECRET\" | js }}\"\nx: {{cat \"/nope\"}}-{{ credential `db` }}\n",
            &env,
        )
        .unwrap();
        assert!(notes.is_empty());
        assert_eq!(t.evaluate(&out), "secret: \"s3cr3t\"\nx: -\n");
        let refs: Vec<String> = t
            .pieces(&out, true)
            .into_iter()
            .map(|p| match p {
                Piece::Text(s) => s.to_string(),
                Piece::Call { reference, .. } => reference.unwrap(),
            })
            .collect();
        assert_eq!(
            refs.concat(),
            "secret: \"${SECRET}\"\nx: ${file:/nope}-${credential:db}\n"
        );
        assert!(t
            .pieces(&out, false)
            .iter()
            .any(|p| matches!(p, Piece::Call { reference: Some(r), .. } if r == "${SECRET:-}")));
    }

    #[test]
    fn js_escapes_as_go_does_and_other_pipes_are_pasted() {
        let (out, t, _) = render("{{ getenv \"QUOTE\" | js }}", &env).unwrap();
        // A call still in place is in a double-quoted scalar: YAML undoes the escaping.
        assert_eq!(t.evaluate(&out), "a\"b");
        assert!(t.has_js(&out));
        assert_eq!(t.paste_js(&out), "a\\\"b");
        let (out, t, notes) = render("{{ getenv \"QUOTE\" | html }}|{{ \"a b&\" | urlquery }}", &env).unwrap();
        assert!(!Templates::has_calls(&out));
        assert_eq!(out, "a&#34;b|a+b%26");
        assert_eq!(t.evaluate(&out), out);
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn fields_comments_and_trim_markers() {
        let (out, _, notes) = render("a: {{ .Hookecho }}\nb:  {{- /* c */ -}}  x\n", &env).unwrap();
        assert_eq!(out, "a: <no value>\nb:x\n");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("<no value>"));
    }

    #[test]
    fn what_cannot_be_evaluated_is_refused_with_its_line() {
        let e = render("a\n{{ if true }}x{{ end }}", &env).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("`{{ if true }}`"), "{e:?}");
        assert!(render("{{ getenv \"X\"", &env)
            .unwrap_err()
            .message
            .contains("unclosed"));
        assert!(render("{{ $x := 1 }}", &env).is_err());
        assert!(render("{{ len \"abc\" }}", &env).is_err());
        // A `}}` inside a string does not close the action.
        let (out, t, _) = render("{{ getenv \"A}}B\" }}", &env).unwrap();
        assert_eq!(t.evaluate(&out), "");
    }
}

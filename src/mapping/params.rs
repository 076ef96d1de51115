//! Where a param's value comes from (`payload.repository.full_name`,
//! `headers.X-GitHub-Event`, `query.env`, `request.method`, ...) and how it
//! is read from a delivery.

use serde_json::Value;

/// One step into a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// What `request.<field>` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestField {
    /// The method as sent.
    Method,
    /// The path as received (`/hooks/ci`).
    Path,
    /// The TCP peer, `ip:port` (`[v6]:port`).
    RemoteAddr,
    /// The client as judged after `trusted_proxies`.
    ClientIp,
    /// The raw body as text; `null` when it is not UTF-8.
    Body,
}

impl RequestField {
    const ALL: [(&'static str, RequestField); 5] = [
        ("method", RequestField::Method),
        ("path", RequestField::Path),
        ("remote_addr", RequestField::RemoteAddr),
        ("client_ip", RequestField::ClientIp),
        ("body", RequestField::Body),
    ];
}

/// A param's source, parsed once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamFrom {
    /// `payload.a.b[0].c`; an empty path is the whole payload.
    Payload(Vec<Step>),
    /// `headers.<Name>` (lower-cased here, matched in any case), then a path
    /// into its value once `parse_json` has parsed it.
    Header(String, Vec<Step>),
    /// `headers` alone: every header as one object.
    Headers,
    /// `query.<name>`, then a path into its value once `parse_json` has
    /// parsed it. `whole` is the text after `query.` when it could also be
    /// one parameter's name (`query.a.b`, `query.tags[]`): a parameter of
    /// exactly that name is read first.
    Query {
        name: String,
        path: Vec<Step>,
        whole: Option<String>,
    },
    /// `query` alone: every query parameter as one object.
    QueryAll,
    /// `request.<field>`.
    Request(RequestField),
}

impl ParamFrom {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid param source `{text}`: expected `payload.<path>`, `headers.<Name>`, `query.<name>`, `headers`, `query`, `payload` or `request.<field>` (`method`, `path`, `remote_addr`, `client_ip`, `body`)"
            )
        };
        match text {
            "payload" => return Ok(ParamFrom::Payload(Vec::new())),
            "headers" => return Ok(ParamFrom::Headers),
            "query" => return Ok(ParamFrom::QueryAll),
            _ => {}
        }
        if let Some(path) = text.strip_prefix("payload.") {
            return parse_path(path).map(ParamFrom::Payload).ok_or_else(bad);
        }
        if let Some(field) = text.strip_prefix("request.") {
            return RequestField::ALL
                .iter()
                .find(|(name, _)| *name == field)
                .map(|(_, f)| ParamFrom::Request(*f))
                .ok_or_else(bad);
        }
        if let Some(rest) = text.strip_prefix("headers.") {
            let mut steps = parse_path(rest).ok_or_else(bad)?.into_iter();
            let Some(Step::Key(name)) = steps.next() else {
                return Err(bad());
            };
            if !crate::headers::valid_name(&name) {
                return Err(bad());
            }
            return Ok(ParamFrom::Header(name.to_ascii_lowercase(), steps.collect()));
        }
        if let Some(rest) = text.strip_prefix("query.") {
            if rest.is_empty() {
                return Err(bad());
            }
            let plain = !rest.starts_with('"');
            return Ok(match parse_path(rest).map(Vec::into_iter) {
                Some(mut steps) => match steps.next() {
                    Some(Step::Key(name)) => {
                        let path: Vec<Step> = steps.collect();
                        let whole = (plain && !path.is_empty()).then(|| rest.to_string());
                        ParamFrom::Query { name, path, whole }
                    }
                    _ => return Err(bad()),
                },
                // Not a path (`query.tags[]`): one parameter of that name, as written.
                None if plain => ParamFrom::Query {
                    name: rest.to_string(),
                    path: Vec::new(),
                    whole: None,
                },
                None => return Err(bad()),
            });
        }
        Err(bad())
    }
}

/// Parses a path: keys joined by `.`, array items as `[n]` (`a.b[0].c`, and
/// `[0].a` at the start, for a body that is an array). A key in double
/// quotes is one key whatever it holds (`"head_commit.id"`, `a."b.c"[0]`),
/// with `\"` and `\\` inside it.
pub fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut chars = path.chars().peekable();
    let mut first = true;
    loop {
        let quoted = chars.peek() == Some(&'"');
        let mut key = String::new();
        if quoted {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => key.push(chars.next()?),
                    c => key.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != '.' && *c != '[') {
                key.push(c);
            }
        }
        let index_next = chars.peek() == Some(&'[');
        if key.is_empty() && !quoted && !(first && index_next) {
            return None;
        }
        if quoted || !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while chars.next_if_eq(&'[').is_some() {
            let mut digits = String::new();
            while let Some(c) = chars.next_if(|c| *c != ']') {
                digits.push(c);
            }
            chars.next_if_eq(&']')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            steps.push(Step::Index(digits.parse().ok()?));
        }
        match chars.next() {
            None => return Some(steps),
            Some('.') => first = false,
            Some(_) => return None,
        }
    }
}

/// Follows `steps` into `value`; `None` when any step is missing.
pub fn lookup<'v>(value: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    steps.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.as_object()?.get(k),
        Step::Index(i) => v.as_array()?.get(*i),
    })
}

/// Follows `steps` into `value` for changing what is there.
pub fn lookup_mut<'v>(value: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    steps.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.as_object_mut()?.get_mut(k),
        Step::Index(i) => v.as_array_mut()?.get_mut(*i),
    })
}

/// A header name as Go (and so adnanh) writes it: `X-Hub-Signature`,
/// `Content-Type`: the first letter and every letter after a `-` upper-case,
/// the others lower-case.
pub fn canonical_header(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::program::render;
    use serde_json::json;

    fn key(k: &str) -> Step {
        Step::Key(k.into())
    }

    #[test]
    fn parses_sources() {
        assert_eq!(
            ParamFrom::parse("payload.commits[0].id").unwrap(),
            ParamFrom::Payload(vec![key("commits"), Step::Index(0), key("id")])
        );
        assert_eq!(
            ParamFrom::parse("headers.X-GitHub-Event").unwrap(),
            ParamFrom::Header("x-github-event".into(), vec![])
        );
        assert_eq!(
            ParamFrom::parse("headers.X-Meta.sha").unwrap(),
            ParamFrom::Header("x-meta".into(), vec![key("sha")])
        );
        assert_eq!(
            ParamFrom::parse("headers.\"X-Odd.Name\"").unwrap(),
            ParamFrom::Header("x-odd.name".into(), vec![])
        );
        let query = |name: &str, path: Vec<Step>, whole: Option<&str>| ParamFrom::Query {
            name: name.into(),
            path,
            whole: whole.map(str::to_string),
        };
        assert_eq!(ParamFrom::parse("query.env").unwrap(), query("env", vec![], None));
        assert_eq!(
            ParamFrom::parse("query.q.sha").unwrap(),
            query("q", vec![key("sha")], Some("q.sha"))
        );
        assert_eq!(ParamFrom::parse("query.tags[]").unwrap(), query("tags[]", vec![], None));
        assert_eq!(ParamFrom::parse("query.\"a.b\"").unwrap(), query("a.b", vec![], None));
        assert_eq!(ParamFrom::parse("headers").unwrap(), ParamFrom::Headers);
        assert_eq!(ParamFrom::parse("query").unwrap(), ParamFrom::QueryAll);
        assert_eq!(ParamFrom::parse("payload").unwrap(), ParamFrom::Payload(vec![]));
        assert_eq!(
            ParamFrom::parse("request.remote_addr").unwrap(),
            ParamFrom::Request(RequestField::RemoteAddr)
        );
        for bad in [
            "payload.",
            "payload.a..b",
            "payload.a[x]",
            "payload.a[1",
            "payload.\"open",
            "payload.\"a\"b",
            "body.x",
            "headers.",
            "headers.a b",
            "headers.[0]",
            "query.",
            "query.\"open",
            "request.host",
            "request",
        ] {
            assert!(ParamFrom::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quoted_keys_hold_dots_brackets_and_escapes() {
        assert_eq!(parse_path("\"head_commit.id\"").unwrap(), vec![key("head_commit.id")]);
        assert_eq!(
            parse_path("a.\"b.c\"[0]").unwrap(),
            vec![key("a"), key("b.c"), Step::Index(0)]
        );
        assert_eq!(
            parse_path(r#""say \"hi\" \\ [x]".y"#).unwrap(),
            vec![key(r#"say "hi" \ [x]"#), key("y")]
        );
        assert_eq!(parse_path("\"\"").unwrap(), vec![key("")]);
        assert_eq!(parse_path("[1].id").unwrap(), vec![Step::Index(1), key("id")]);
        assert_eq!(parse_path("-id.#text").unwrap(), vec![key("-id"), key("#text")]);
        let body = json!({"head_commit.id": "abc", "a": {"b.c": [7]}});
        assert_eq!(
            lookup(&body, &parse_path("\"head_commit.id\"").unwrap()),
            Some(&json!("abc"))
        );
        assert_eq!(lookup(&body, &parse_path("a.\"b.c\"[0]").unwrap()), Some(&json!(7)));
    }

    #[test]
    fn looks_up_through_arrays_and_missing_keys() {
        let body = json!({"commits": [{"id": "abc"}], "n": 3, "ok": true, "obj": {"a": [1, 2]}});
        let path = |p: &str| parse_path(p).unwrap();
        assert_eq!(lookup(&body, &path("commits[0].id")), Some(&json!("abc")));
        assert_eq!(lookup(&body, &path("commits[5].id")), None);
        assert_eq!(lookup(&body, &path("n.x")), None);
        assert_eq!(render(lookup(&body, &path("n")).unwrap()), "3");
        assert_eq!(render(lookup(&body, &path("ok")).unwrap()), "true");
        assert_eq!(render(lookup(&body, &path("obj")).unwrap()), r#"{"a":[1,2]}"#);
        assert_eq!(render(&Value::Null), "");
    }

    #[test]
    fn header_names_as_go_writes_them() {
        assert_eq!(canonical_header("x-hub-signature"), "X-Hub-Signature");
        assert_eq!(canonical_header("content-TYPE"), "Content-Type");
        assert_eq!(canonical_header("x_odd.name"), "X_odd.name");
    }
}

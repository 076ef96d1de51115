//! Where a param's value comes from (`payload.repository.full_name`,
//! `headers.X-GitHub-Event`, `query.env`) and how it is read from a delivery.

use serde_json::Value;

/// One step into the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A param's source, parsed once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamFrom {
    /// `payload.a.b[0].c`; an empty path is the whole body.
    Payload(Vec<Step>),
    /// `headers.<Name>`, matched case-insensitively.
    Header(String),
    /// `query.<name>`.
    Query(String),
}

impl ParamFrom {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad =
            || format!("invalid param source `{text}`: expected `payload.<path>`, `headers.<Name>` or `query.<name>`");
        if text == "payload" {
            return Ok(ParamFrom::Payload(Vec::new()));
        }
        if let Some(path) = text.strip_prefix("payload.") {
            return parse_path(path).map(ParamFrom::Payload).ok_or_else(bad);
        }
        if let Some(name) = text.strip_prefix("headers.") {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            return valid
                .then(|| ParamFrom::Header(name.to_ascii_lowercase()))
                .ok_or_else(bad);
        }
        if let Some(name) = text.strip_prefix("query.") {
            return (!name.is_empty())
                .then(|| ParamFrom::Query(name.to_string()))
                .ok_or_else(bad);
        }
        Err(bad())
    }
}

/// Parses `a.b[0].c` (also `[0].a` at the start, for a body that is an array).
pub fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    for (n, part) in path.split('.').enumerate() {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if key.is_empty() && (n > 0 || rest.is_empty()) {
            return None;
        }
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        while !rest.is_empty() {
            let inner = rest.strip_prefix('[')?;
            let close = inner.find(']')?;
            steps.push(Step::Index(inner[..close].parse().ok()?));
            rest = &inner[close + 1..];
        }
    }
    Some(steps)
}

/// Follows `steps` into `value`; `None` when any step is missing.
pub fn lookup<'v>(value: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    steps.iter().try_fold(value, |v, step| match step {
        Step::Key(k) => v.as_object()?.get(k),
        Step::Index(i) => v.as_array()?.get(*i),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::program::render;
    use serde_json::json;

    #[test]
    fn parses_sources() {
        assert_eq!(
            ParamFrom::parse("payload.commits[0].id").unwrap(),
            ParamFrom::Payload(vec![
                Step::Key("commits".into()),
                Step::Index(0),
                Step::Key("id".into())
            ])
        );
        assert_eq!(
            ParamFrom::parse("headers.X-GitHub-Event").unwrap(),
            ParamFrom::Header("x-github-event".into())
        );
        assert_eq!(ParamFrom::parse("query.env").unwrap(), ParamFrom::Query("env".into()));
        for bad in [
            "payload.",
            "payload.a..b",
            "payload.a[x]",
            "payload.a[1",
            "body.x",
            "headers.",
            "query.",
        ] {
            assert!(ParamFrom::parse(bad).is_err(), "{bad}");
        }
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
}

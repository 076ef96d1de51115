//! From a delivery to the rules it matches: the event, the mapping keys it
//! selects, the params each mapping extracts, and each rule's condition.

pub mod condition;
pub mod event;
pub mod params;
pub mod wanted;

use crate::headers::Headers;
use crate::process::Program;
use condition::{to_value, Condition, Vars};
use params::{canonical_header, lookup, lookup_mut, ParamFrom, RequestField, Step};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// The variables every condition sees besides the mapping's params.
pub const BUILTIN_VARS: [&str; 3] = ["source", "event", "action"];

/// One `mappings.<source>.<key>` entry.
#[derive(Debug)]
pub struct Mapping {
    pub key: String,
    pub params: Vec<(String, ParamFrom)>,
    /// Values parsed as JSON before params are read (`parse_json`), with the text as written.
    pub parse_json: Vec<(String, ParamFrom)>,
    pub rules: Vec<Rule>,
    /// Which params, then which of [`BUILTIN_VARS`], some condition reads:
    /// only those are converted for evalexpr when a delivery is judged.
    read_by_conditions: Vec<bool>,
}

impl Mapping {
    pub fn new(
        key: String,
        params: Vec<(String, ParamFrom)>,
        parse_json: Vec<(String, ParamFrom)>,
        rules: Vec<Rule>,
    ) -> Self {
        let read = |name: &str| rules.iter().any(|r| r.condition.as_ref().is_some_and(|c| c.uses(name)));
        let read_by_conditions = params
            .iter()
            .map(|(name, _)| name.as_str())
            .chain(BUILTIN_VARS)
            .map(read)
            .collect();
        Mapping {
            key,
            params,
            parse_json,
            rules,
            read_by_conditions,
        }
    }
}

#[derive(Debug)]
pub struct Rule {
    pub index: usize,
    pub condition: Option<Condition>,
    pub program: Arc<Program>,
}

/// A source's mappings by key.
#[derive(Debug, Default)]
pub struct Routes {
    by_key: HashMap<String, Arc<Mapping>>,
    /// Whether any rule runs a program with a `wait` (known at load, asked per delivery).
    waits: bool,
    /// The body paths the mappings' params read.
    wanted: wanted::Wanted,
}

/// What a delivery carries, parsed.
pub struct Delivery<'a> {
    pub source: &'a str,
    pub event: &'a str,
    /// The provider's raw event name when it differs (GitLab's `Push Hook`).
    pub raw_event: Option<&'a str>,
    pub action: &'a str,
    pub body: &'a Value,
    pub headers: &'a dyn Headers,
    pub query: &'a [(String, String)],
    /// The request itself, for `request.*` params.
    pub request: &'a Request,
    /// The body as received, for `request.body`.
    pub raw: &'a [u8],
    /// Headers and query parameters that carry the source's credentials:
    /// `***` in the `headers` and `query` objects.
    pub secret_headers: Vec<&'a str>,
    pub secret_query: Vec<&'a str>,
}

/// What a request was, besides its headers, query and body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path as received (`/hooks/ci`).
    pub path: String,
    /// The TCP peer, `ip:port` or `[v6]:port`; `None` when there is none (a replay, a Unix socket).
    pub remote_addr: Option<String>,
    /// The client as judged after `trusted_proxies`; `None` when it cannot be told.
    pub client_ip: Option<String>,
}

/// A rule that matched, with the params its mapping extracted.
#[derive(Debug)]
pub struct Match {
    pub program: Arc<Program>,
    pub params: Arc<Vec<(String, Value)>>,
    /// Where this rule's verdict stands in [`Judgement::trace`].
    pub trace_index: usize,
}

/// How one rule was judged, for logs and traces.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Matched,
    NotMatched,
    Error(String),
}

impl Routes {
    pub fn insert(&mut self, mapping: Mapping) {
        self.waits |= mapping.rules.iter().any(|r| r.program.wait.is_some());
        for (_, from) in mapping.params.iter().chain(&mapping.parse_json) {
            if let ParamFrom::Payload(steps) = from {
                self.wanted.add(steps);
            }
        }
        self.by_key.insert(mapping.key.clone(), Arc::new(mapping));
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The mapping keys, sorted (`push`, `pull_request.opened`, `Push Hook`, `*`).
    pub fn event_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.by_key.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    /// The body paths the mappings' params read.
    pub fn wanted(&self) -> &wanted::Wanted {
        &self.wanted
    }

    /// Whether any rule runs a program with a `wait`.
    pub fn any_program_waits(&self) -> bool {
        self.waits
    }

    /// A program some rule of these mappings runs.
    pub fn program(&self, name: &str) -> Option<Arc<Program>> {
        self.by_key
            .values()
            .flat_map(|m| &m.rules)
            .find(|r| &*r.program.name == name)
            .map(|r| r.program.clone())
    }

    /// Every program the rules of these mappings run.
    pub fn programs(&self) -> impl Iterator<Item = Arc<Program>> + '_ {
        self.by_key.values().flat_map(|m| &m.rules).map(|r| r.program.clone())
    }

    pub fn rule_count(&self) -> usize {
        self.by_key.values().map(|m| m.rules.len()).sum()
    }

    /// The mappings a delivery selects, most specific first:
    /// `<event>.<action>`, `<event>`, the raw event name, then `*`.
    pub fn select(&self, d: &Delivery<'_>) -> Vec<&Arc<Mapping>> {
        let mut out: Vec<&Arc<Mapping>> = Vec::with_capacity(2);
        let mut add = |key: &str| {
            if let Some(m) = self.by_key.get(key) {
                if !out.iter().any(|o| Arc::ptr_eq(o, m)) {
                    out.push(m);
                }
            }
        };
        if !d.action.is_empty() {
            add(&format!("{}.{}", d.event, d.action));
        }
        add(d.event);
        if let Some(raw) = d.raw_event {
            add(raw);
        }
        add("*");
        out
    }

    /// Evaluates every selected mapping's rules in order.
    pub fn judge(&self, d: &Delivery<'_>) -> Judgement {
        let mut j = Judgement::default();
        for mapping in self.select(d) {
            let mut values = Values::of(d);
            for (text, from) in &mapping.parse_json {
                if let Err(why) = values.parse_json(from) {
                    j.notes.push(format!(
                        "mapping `{}`: parse_json: `{text}` {why}; it is left as it is",
                        mapping.key
                    ));
                }
            }
            let params: Arc<Vec<(String, Value)>> = Arc::new(
                mapping
                    .params
                    .iter()
                    .map(|(name, from)| (name.clone(), values.extract(from)))
                    .collect(),
            );
            let builtins = BUILTIN_VARS.iter().zip([d.source, d.event, d.action]);
            let mut names: Vec<&str> = Vec::new();
            let mut values: Vec<evalexpr::Value> = Vec::new();
            let mut read = mapping.read_by_conditions.iter();
            for (name, value) in params.iter() {
                if read.next() == Some(&true) {
                    names.push(name);
                    values.push(to_value(Some(value)));
                }
            }
            for ((name, value), wanted) in builtins.zip(read) {
                if *wanted {
                    names.push(name);
                    values.push(evalexpr::Value::String(value.to_string()));
                }
            }
            let vars = Vars {
                names: &names,
                values: &values,
            };
            for rule in &mapping.rules {
                let verdict = match &rule.condition {
                    None => Verdict::Matched,
                    Some(c) => match c.eval(&vars) {
                        Ok(true) => Verdict::Matched,
                        Ok(false) => Verdict::NotMatched,
                        Err(e) => Verdict::Error(e),
                    },
                };
                if verdict == Verdict::Matched {
                    j.matches.push(Match {
                        program: rule.program.clone(),
                        params: params.clone(),
                        trace_index: j.trace.len(),
                    });
                }
                j.trace.push(Judged {
                    mapping: mapping.clone(),
                    rule: rule.index,
                    verdict,
                });
            }
            j.params.push((mapping.key.clone(), params));
        }
        j
    }
}

/// A mapping's extracted params, in config order.
pub type Params = Arc<Vec<(String, Value)>>;

/// How a delivery was judged: what matched, and why each rule did or did not.
#[derive(Debug, Default)]
pub struct Judgement {
    pub matches: Vec<Match>,
    pub trace: Vec<Judged>,
    /// The params each selected mapping extracted, by mapping key.
    pub params: Vec<(String, Params)>,
    /// What did not go as written (a `parse_json` value missing or not JSON).
    pub notes: Vec<String>,
}

/// One rule's verdict.
#[derive(Debug)]
pub struct Judged {
    pub mapping: Arc<Mapping>,
    pub rule: usize,
    pub verdict: Verdict,
}

impl Judged {
    pub fn rule(&self) -> &Rule {
        &self.mapping.rules[self.rule]
    }
}

/// A delivery's values as one mapping reads them: after its `parse_json`,
/// which may have replaced some with the JSON they held.
struct Values<'d> {
    d: &'d Delivery<'d>,
    body: Cow<'d, Value>,
    /// Headers (lower-cased names) and query parameters whose value was parsed.
    headers: Vec<(String, Value)>,
    query: Vec<(String, Value)>,
}

impl<'d> Values<'d> {
    fn of(d: &'d Delivery<'d>) -> Self {
        Values {
            d,
            body: Cow::Borrowed(d.body),
            headers: Vec::new(),
            query: Vec::new(),
        }
    }

    /// A header's value: parsed, or as sent.
    fn header(&self, name: &str) -> Option<Value> {
        if let Some((_, v)) = self.headers.iter().find(|(n, _)| n == name) {
            return Some(v.clone());
        }
        let bytes = self.d.headers.get_bytes(name)?;
        Some(Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// A query parameter's value (the first one sent): parsed, or as sent.
    fn query_value(&self, name: &str) -> Option<Value> {
        if let Some((_, v)) = self.query.iter().find(|(n, _)| n == name) {
            return Some(v.clone());
        }
        let (_, v) = self.d.query.iter().find(|(k, _)| k == name)?;
        Some(Value::String(v.clone()))
    }

    /// `query.<name>...`: the parameter named by the whole text first, then the path.
    fn query_param<'p>(&self, name: &'p str, path: &'p [Step], whole: Option<&'p str>) -> (&'p str, &'p [Step]) {
        match whole {
            Some(w) if self.query_value(w).is_some() => (w, &[]),
            _ => (name, path),
        }
    }

    /// Replaces the string at `from` with the JSON it holds.
    fn parse_json(&mut self, from: &ParamFrom) -> Result<(), String> {
        match from {
            ParamFrom::Payload(steps) => {
                let parsed = match lookup(&self.body, steps) {
                    None => return Err("is missing".into()),
                    Some(Value::String(s)) => parse(s)?,
                    Some(_) => return Ok(()),
                };
                if let Some(slot) = lookup_mut(self.body.to_mut(), steps) {
                    *slot = parsed;
                }
                Ok(())
            }
            ParamFrom::Header(name, path) => {
                let value = self.header(name).ok_or("is missing")?;
                let value = parse_at(value, path)?;
                self.headers.retain(|(n, _)| n != name);
                self.headers.push((name.clone(), value));
                Ok(())
            }
            ParamFrom::Query { name, path, whole } => {
                let (name, path) = self.query_param(name, path, whole.as_deref());
                let value = self.query_value(name).ok_or("is missing")?;
                let value = parse_at(value, path)?;
                self.query.retain(|(n, _)| n != name);
                self.query.push((name.to_string(), value));
                Ok(())
            }
            // Refused at load.
            _ => Ok(()),
        }
    }

    /// A param's value from the delivery; a missing one is `null` (shown as "").
    fn extract(&self, from: &ParamFrom) -> Value {
        let found = match from {
            ParamFrom::Payload(steps) => lookup(&self.body, steps).cloned(),
            ParamFrom::Header(name, path) => self.header(name).and_then(|v| lookup(&v, path).cloned()),
            ParamFrom::Query { name, path, whole } => {
                let (name, path) = self.query_param(name, path, whole.as_deref());
                self.query_value(name).and_then(|v| lookup(&v, path).cloned())
            }
            ParamFrom::Headers => Some(self.all_headers()),
            ParamFrom::QueryAll => Some(self.all_query()),
            ParamFrom::Request(field) => {
                let r = self.d.request;
                match field {
                    RequestField::Method => Some(Value::String(r.method.clone())),
                    RequestField::Path => Some(Value::String(r.path.clone())),
                    RequestField::RemoteAddr => r.remote_addr.clone().map(Value::String),
                    RequestField::ClientIp => r.client_ip.clone().map(Value::String),
                    RequestField::Body => std::str::from_utf8(self.d.raw)
                        .ok()
                        .map(|s| Value::String(s.to_string())),
                }
            }
        };
        found.unwrap_or(Value::Null)
    }

    /// Every header, by its canonical name (sorted), with its first value; credentials `***`.
    fn all_headers(&self) -> Value {
        let mut out = std::collections::BTreeMap::new();
        let mut each = |name: &str, value: &[u8]| {
            let key = canonical_header(name);
            if out.contains_key(&key) {
                return;
            }
            let value = if crate::headers::is_credential(name, &self.d.secret_headers) {
                Value::String("***".into())
            } else if let Some((_, parsed)) = self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                parsed.clone()
            } else {
                Value::String(String::from_utf8_lossy(value).into_owned())
            };
            out.insert(key, value);
        };
        self.d.headers.each(&mut each);
        Value::Object(out.into_iter().collect())
    }

    /// Every query parameter with its first value; credentials `***`.
    fn all_query(&self) -> Value {
        let mut out = Map::new();
        for (k, v) in self.d.query {
            if out.contains_key(k) {
                continue;
            }
            let value = if crate::headers::is_credential_param(k, &self.d.secret_query) {
                Value::String("***".into())
            } else if let Some((_, parsed)) = self.query.iter().find(|(n, _)| n == k) {
                parsed.clone()
            } else {
                Value::String(v.clone())
            };
            out.insert(k.clone(), value);
        }
        Value::Object(out)
    }
}

/// The JSON a string holds.
fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("is not valid JSON ({e})"))
}

/// `value` with the string at `path` in it replaced by the JSON it holds.
fn parse_at(mut value: Value, path: &[Step]) -> Result<Value, String> {
    let slot = lookup_mut(&mut value, path).ok_or("is missing")?;
    if let Value::String(s) = slot {
        *slot = parse(s)?;
    }
    Ok(value)
}

//! From a delivery to the rules it matches: the event, the mapping keys it
//! selects, the params each mapping extracts, and each rule's condition.

pub mod condition;
pub mod event;
pub mod params;
pub mod wanted;

use crate::headers::Headers;
use crate::process::Program;
use condition::{to_value, Condition, Vars};
use params::{lookup, ParamFrom};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The variables every condition sees besides the mapping's params.
pub const BUILTIN_VARS: [&str; 3] = ["source", "event", "action"];

/// One `mappings.<source>.<key>` entry.
#[derive(Debug)]
pub struct Mapping {
    pub key: String,
    pub params: Vec<(String, ParamFrom)>,
    pub rules: Vec<Rule>,
    /// Which params, then which of [`BUILTIN_VARS`], some condition reads:
    /// only those are converted for evalexpr when a delivery is judged.
    read_by_conditions: Vec<bool>,
}

impl Mapping {
    pub fn new(key: String, params: Vec<(String, ParamFrom)>, rules: Vec<Rule>) -> Self {
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
        for (_, from) in &mapping.params {
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
            let params: Arc<Vec<(String, Value)>> = Arc::new(
                mapping
                    .params
                    .iter()
                    .map(|(name, from)| (name.clone(), extract(from, d)))
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

/// A param's value from the delivery; a missing one is `null` (shown as "").
fn extract(from: &ParamFrom, d: &Delivery<'_>) -> Value {
    match from {
        ParamFrom::Payload(steps) => lookup(d.body, steps).cloned().unwrap_or(Value::Null),
        ParamFrom::Header(name) => d
            .headers
            .get(name.as_str())
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .unwrap_or(Value::Null),
        ParamFrom::Query(name) => d
            .query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Value::String(v.clone()))
            .unwrap_or(Value::Null),
    }
}

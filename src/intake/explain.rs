//! What a delivery would run, without running it: the dry run's answer
//! (`?dry_run=1`) and `hookrunner explain`.

use crate::config::Source;
use crate::delivery::record::{params_json, rule_traces, ParamsByKey};
use crate::headers::Headers;
use crate::mapping::event::{action_of, Event};
use crate::mapping::{Delivery, Request};
use crate::payload::multipart::File;
use crate::process::program::Invocation;
use bytes::Bytes;
use serde_json::{json, Value};

/// What rules and handlers see of a delivery.
pub struct Parts<'a> {
    pub event: &'a Event,
    pub json: &'a Value,
    /// What handlers get on stdin.
    pub stdin: &'a Bytes,
    pub headers: &'a dyn Headers,
    pub query: &'a [(String, String)],
    /// The method, path and peer, for `request.*` params.
    pub request: &'a Request,
    /// The body as received, for `request.body`.
    pub raw: &'a [u8],
    /// The file parts of a multipart body.
    pub files: &'a [File],
    /// A multipart body's boundary.
    pub boundary: Option<&'a str>,
}

impl Parts<'_> {
    pub(crate) fn delivery<'a>(&'a self, source: &'a Source) -> Delivery<'a> {
        let (secret_headers, secret_query) = source.auth.secret_carriers();
        Delivery {
            source: &source.name,
            event: &self.event.name,
            raw_event: self.event.raw.as_deref(),
            action: action_of(self.json),
            body: self.json,
            headers: self.headers,
            query: self.query,
            request: self.request,
            raw: self.raw,
            secret_headers,
            secret_query,
        }
    }
}

/// The trace of how a delivery would be judged (params in mapping order,
/// every rule's verdict in the order it was judged), with the argv of each match.
pub fn explain(source: &Source, parts: &Parts<'_>, delivery_id: &str) -> Value {
    let delivery = parts.delivery(source);
    let judgement = source.routes.judge(&delivery);
    let params = ParamsByKey(params_json(&judgement.params));
    let mut rules = rule_traces(&judgement);
    for m in &judgement.matches {
        let inv = Invocation {
            source: &source.name,
            event: &parts.event.name,
            task_id: "<task_id>",
            delivery_id,
            request_id: "<request_id>",
            payload: parts.stdin,
            params: &m.params,
        };
        let argv = m.program.argv(&inv);
        if let Err(why) = m.program.check_runnable(&inv, &argv) {
            rules[m.trace_index].result = format!("matched, but cannot run: {why}");
        }
        rules[m.trace_index].argv = Some(argv);
    }
    let mut trace = json!({
        "dry_run": true,
        "delivery_id": delivery_id,
        "source": source.name,
        "event": parts.event.name,
        "action": action_of(parts.json),
        "params": params,
        "rules": rules,
        "would_run": judgement.matches.len(),
    });
    if !judgement.notes.is_empty() {
        trace["notes"] = json!(judgement.notes);
    }
    trace
}

//! One delivery on record: what arrived, how it was judged, what it started.

use crate::engine::task::{timestamp, ParamsView};
use crate::headers::Headers;
use crate::mapping::Verdict;
use crate::store::record::{DeliveryRecord, RuleRecord};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::SystemTime;
use uuid::Uuid;

pub use crate::status::Outcome;

/// How one rule was judged.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RuleTrace {
    pub mapping: String,
    pub rule: usize,
    #[serde(rename = "if")]
    pub condition: Option<String>,
    pub program: String,
    /// `matched`, `not matched`, or `error: <why>`.
    pub result: String,
    /// The argv it would run (dry runs and `explain` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
}

impl RuleTrace {
    pub fn result_of(verdict: &Verdict) -> String {
        match verdict {
            Verdict::Matched => "matched".into(),
            Verdict::NotMatched => "not matched".into(),
            Verdict::Error(e) => format!("error: {e}"),
        }
    }
}

/// A delivery as recorded.
#[derive(Debug)]
pub struct Record {
    /// The record's own id: the provider's delivery id the first time it is
    /// seen, a new UUID otherwise (repeats, rejected requests).
    pub id: String,
    pub delivery_id: String,
    /// `X-Request-Id`, or one made up; carried to tasks and handlers.
    pub request_id: String,
    pub source: String,
    pub event: Option<String>,
    /// The provider's raw event name when it differs (GitLab's `Push Hook`).
    pub raw_event: Option<String>,
    pub received_at: SystemTime,
    pub remote_addr: String,
    /// Request headers; signatures, tokens and credentials masked.
    pub headers: HeaderList,
    /// Query parameters; tokens masked.
    pub query: Vec<(String, String)>,
    pub body_size: usize,
    pub outcome: Outcome,
    pub status: u16,
    pub reason: Option<String>,
    /// Params extracted, per mapping key (shared with the tasks they started).
    pub params: Vec<(String, crate::mapping::Params)>,
    pub rules: Vec<RuleTrace>,
    pub task_ids: Vec<Uuid>,
    pub duplicate_of: Option<String>,
    pub replay_of: Option<String>,
    pub replays: Mutex<Vec<String>>,
    /// What did not go as written while judging (a `parse_json` value missing or not JSON).
    pub notes: Vec<String>,
    /// Already committed to the store (with its tasks).
    pub persisted: bool,
    /// The JSON body, kept for replay within the log's byte budget.
    body: Mutex<Option<Bytes>>,
}

const MAX_HEADER_VALUE: usize = 1024;

/// The most header text (`name: value` lines) a record keeps; the headers
/// past it, in name order, are counted in one last line (`…`). A record is
/// kept for thousands of deliveries, and without this bound a sender's 96
/// headers of 1 KiB would hold ~100 KiB in each (BENCHMARKS.md, memory).
pub const MAX_HEADER_BYTES: usize = 8192;

/// Recorded headers, sorted by name, kept in one string (`name: value` per
/// line): a record is made for every request and kept for thousands more, so
/// one allocation beats two per header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList(String);

impl HeaderList {
    /// From name/value pairs (already masked), sorted by name. Line breaks,
    /// which HTTP does not allow in headers, become spaces.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut pairs: Vec<(N, V)> = pairs.into_iter().collect();
        pairs.sort_by(|a, b| (a.0.as_ref(), a.1.as_ref()).cmp(&(b.0.as_ref(), b.1.as_ref())));
        let len: usize = pairs.iter().map(|(n, v)| n.as_ref().len() + v.as_ref().len() + 3).sum();
        let mut text = String::with_capacity(len.min(MAX_HEADER_BYTES + 128));
        let (mut dropped, mut dropped_bytes) = (0usize, 0usize);
        for (n, v) in &pairs {
            let size = n.as_ref().len() + v.as_ref().len() + 3;
            if dropped > 0 || text.len() + size > MAX_HEADER_BYTES {
                dropped += 1;
                dropped_bytes += size;
                continue;
            }
            for part in [n.as_ref(), ": ", v.as_ref()] {
                let clean = |c: char| if c == '\n' || c == '\r' { ' ' } else { c };
                if part.contains(['\n', '\r']) {
                    text.extend(part.chars().map(clean));
                } else {
                    text.push_str(part);
                }
            }
            text.push('\n');
        }
        if dropped > 0 {
            text.push_str(&format!(
                "…: {dropped} more headers not kept ({dropped_bytes} bytes; a record keeps {MAX_HEADER_BYTES} bytes of headers)\n"
            ));
        }
        HeaderList(text)
    }

    /// The `name: value` lines as kept.
    pub(super) fn as_text(&self) -> &str {
        &self.0
    }

    /// Lines written by [`HeaderList::as_text`].
    pub(super) fn from_text(text: String) -> Self {
        HeaderList(text)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.split_terminator('\n').filter_map(|line| line.split_once(": "))
    }
}

/// Headers as recorded: credentials masked, long values cut.
pub fn mask_headers(headers: &dyn Headers, extra_sensitive: &[&str]) -> HeaderList {
    let mut pairs = Vec::new();
    headers.each(&mut |name, value| pairs.push((name, value)));
    HeaderList::from_pairs(pairs.into_iter().map(|(name, value)| {
        let visible =
            |v: &&str| v.len() <= MAX_HEADER_VALUE && v.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b));
        let value: std::borrow::Cow<'_, str> = if crate::headers::is_credential(name, extra_sensitive) {
            "***".into()
        } else if let Some(v) = std::str::from_utf8(value).ok().filter(visible) {
            v.into()
        } else {
            let v = String::from_utf8_lossy(value);
            if v.len() > MAX_HEADER_VALUE {
                cut(&v, MAX_HEADER_VALUE).into_owned().into()
            } else {
                v
            }
        };
        (name, value)
    }))
}

/// The most query text (names and values, 8 bytes more a pair) a record keeps: as with
/// headers, a record is kept for thousands of deliveries, and a stranger's
/// request line may be tens of KiB long.
pub const MAX_QUERY_BYTES: usize = 2048;

/// `id` as one segment of a URL path: every byte but letters, digits and
/// `-._~:` percent-encoded, so an id a sender chose (`../../tasks`, `a?b`)
/// names its own record and nothing else.
pub fn path_segment(id: &str) -> String {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~:".contains(&b);
    // Ids are UUIDs and provider ids as a rule: nothing to encode.
    if id.bytes().all(unreserved) {
        return id.to_string();
    }
    let mut s = String::with_capacity(id.len() + 8);
    for b in id.bytes() {
        if unreserved(b) {
            s.push(b as char);
        } else {
            let _ = std::fmt::Write::write_fmt(&mut s, format_args!("%{b:02X}"));
        }
    }
    s
}

/// The API path of the delivery record `id`.
pub fn url(id: &str) -> String {
    format!("/deliveries/{}", path_segment(id))
}

/// `text` cut to at most `max` bytes (on a character boundary), saying how
/// long it was.
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len()).into()
}

/// Query parameters as recorded: tokens masked, long values cut, and those
/// past [`MAX_QUERY_BYTES`] counted in one last pair (`…`).
pub fn mask_query(query: &[(String, String)], extra_sensitive: &[&str]) -> Vec<(String, String)> {
    let mut kept = Vec::with_capacity(query.len().min(16));
    let (mut size, mut dropped, mut dropped_bytes) = (0usize, 0usize, 0usize);
    for (k, v) in query {
        let secret = crate::headers::is_credential_param(k, extra_sensitive);
        let value = if secret { "***".into() } else { cut(v, MAX_HEADER_VALUE) };
        let key = cut(k, 256);
        // With what each pair costs besides its text (as JSON: `["",""],`).
        let bytes = key.len() + value.len() + 8;
        if dropped > 0 || size + bytes > MAX_QUERY_BYTES {
            dropped += 1;
            dropped_bytes += k.len() + v.len();
            continue;
        }
        size += bytes;
        kept.push((key.into_owned(), value.into_owned()));
    }
    if dropped > 0 {
        kept.push((
            "…".into(),
            format!("{dropped} more parameters not kept ({dropped_bytes} bytes; a record keeps {MAX_QUERY_BYTES} bytes of query)"),
        ));
    }
    kept
}

impl Record {
    /// A new record, before it is judged.
    pub fn new(source: &str, remote_addr: String, headers: HeaderList, query: Vec<(String, String)>) -> Self {
        let id = Uuid::new_v4().to_string();
        Record::arrived(
            id.clone(),
            id,
            source.to_string(),
            SystemTime::now(),
            remote_addr,
            headers,
            query,
        )
    }

    /// A new record whose ids and arrival are already known.
    pub fn arrived(
        id: String,
        delivery_id: String,
        source: String,
        received_at: SystemTime,
        remote_addr: String,
        headers: HeaderList,
        query: Vec<(String, String)>,
    ) -> Self {
        Record {
            delivery_id,
            request_id: String::new(),
            id,
            source,
            event: None,
            raw_event: None,
            received_at,
            remote_addr,
            headers,
            query,
            body_size: 0,
            outcome: Outcome::Rejected,
            status: 0,
            reason: None,
            params: Vec::new(),
            rules: Vec::new(),
            task_ids: Vec::new(),
            duplicate_of: None,
            replay_of: None,
            replays: Mutex::new(Vec::new()),
            notes: Vec::new(),
            persisted: false,
            body: Mutex::new(None),
        }
    }

    pub fn keep_body(&self, body: Bytes) {
        *self.body.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
    }

    pub fn body(&self) -> Option<Bytes> {
        self.body.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn body_len(&self) -> usize {
        self.body
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, Bytes::len)
    }

    /// A record read back from the store (after a restart).
    pub fn from_record(r: DeliveryRecord, body: Option<Bytes>) -> Record {
        let mut rec = Record::new(&r.source, r.remote_addr, HeaderList::from_pairs(r.headers), r.query);
        rec.id = r.id;
        rec.delivery_id = r.delivery_id;
        rec.request_id = r.request_id;
        rec.event = r.event;
        rec.raw_event = r.raw_event;
        rec.received_at = crate::store::time_of(r.received_ms);
        rec.body_size = r.body_size as usize;
        rec.outcome = r.outcome;
        rec.status = r.status;
        rec.reason = r.reason;
        rec.params = r
            .params
            .into_iter()
            .map(|(key, values)| (key, Arc::new(crate::engine::task::params_of(&values))))
            .collect();
        rec.rules = r
            .rules
            .into_iter()
            .map(|t| RuleTrace {
                mapping: t.mapping,
                rule: t.rule,
                condition: t.condition,
                program: t.program,
                result: t.result,
                argv: None,
            })
            .collect();
        rec.task_ids = r.task_ids;
        rec.duplicate_of = r.duplicate_of;
        rec.replay_of = r.replay_of;
        *rec.replays.lock().unwrap_or_else(|p| p.into_inner()) = r.replays;
        rec.notes = r.notes;
        rec.persisted = true;
        if let Some(b) = body {
            rec.keep_body(b);
        }
        rec
    }

    /// The record as the store keeps it.
    pub fn to_record(&self) -> DeliveryRecord {
        DeliveryRecord {
            v: crate::store::record::VERSION,
            id: self.id.clone(),
            delivery_id: self.delivery_id.clone(),
            request_id: self.request_id.clone(),
            source: self.source.clone(),
            event: self.event.clone(),
            raw_event: self.raw_event.clone(),
            received_ms: crate::store::millis(self.received_at),
            remote_addr: self.remote_addr.clone(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            query: self.query.clone(),
            body_size: self.body_size as u64,
            outcome: self.outcome,
            status: self.status,
            reason: self.reason.clone(),
            params: self
                .params
                .iter()
                .map(|(key, values)| {
                    let values = values.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
                    (key.clone(), values)
                })
                .collect(),
            rules: self
                .rules
                .iter()
                .map(|t| RuleRecord {
                    mapping: t.mapping.clone(),
                    rule: t.rule,
                    condition: t.condition.clone(),
                    program: t.program.clone(),
                    result: t.result.clone(),
                })
                .collect(),
            task_ids: self.task_ids.clone(),
            duplicate_of: self.duplicate_of.clone(),
            replay_of: self.replay_of.clone(),
            replays: self.replays.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            notes: self.notes.clone(),
        }
    }

    /// The store write of this record, with its kept body (never a refused
    /// request's).
    pub fn op(&self) -> crate::store::Op {
        let body = self.body().filter(|_| self.outcome != Outcome::Refused);
        crate::store::Op::PutDelivery(Box::new(self.to_record()), body)
    }

    /// The data of its `delivery.recorded` event.
    pub fn event_data(&self) -> String {
        json!({
            "delivery": self.id,
            "source": self.source,
            "event": self.event,
            "outcome": self.outcome,
            "status": self.status,
            "reason": self.reason,
            "tasks": self.task_ids,
            "received_at": timestamp(self.received_at),
        })
        .to_string()
    }

    pub fn view(&self) -> Value {
        let mut view = json!({
            "id": self.id,
            "delivery_id": self.delivery_id,
            "request_id": self.request_id,
            "source": self.source,
            "event": self.event,
            "raw_event": self.raw_event,
            "received_at": timestamp(self.received_at),
            "remote_addr": self.remote_addr,
            "headers": self.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "query": self.query.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "body_size": self.body_size,
            "body_kept": self.body_len() > 0,
            "outcome": self.outcome,
            "status": self.status,
            "reason": self.reason,
            "params": ParamsByKey(params_json(&self.params)),
            "rules": self.rules,
            "task_ids": self.task_ids,
            "duplicate_of": self.duplicate_of,
            "replay_of": self.replay_of,
            "replays": *self.replays.lock().unwrap_or_else(|p| p.into_inner()),
            "url": url(&self.id),
        });
        if !self.notes.is_empty() {
            view["notes"] = json!(self.notes);
        }
        view
    }
}

/// Params per mapping key, each in mapping order: `{"push": {"ref": "refs/heads/main"}}`.
pub fn params_json(params: &[(String, crate::mapping::Params)]) -> Vec<(String, ParamsView)> {
    params
        .iter()
        .map(|(key, values)| (key.clone(), ParamsView(values.to_vec())))
        .collect()
}

/// Params per mapping key as a JSON object, keys in judging order.
#[derive(Debug, Clone, Default)]
pub struct ParamsByKey(pub Vec<(String, ParamsView)>);

impl Serialize for ParamsByKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The verdict of every rule of a judgement, as recorded.
pub fn rule_traces(j: &crate::mapping::Judgement) -> Vec<RuleTrace> {
    j.trace
        .iter()
        .map(|t| RuleTrace {
            mapping: t.mapping.key.clone(),
            rule: t.rule,
            condition: t.rule().condition.as_ref().map(|c| c.text.clone()),
            program: t.rule().program.name.to_string(),
            result: RuleTrace::result_of(&t.verdict),
            argv: None,
        })
        .collect()
}

/// Recorded headers, read as a request's (a replay judges them again).
impl crate::headers::Headers for HeaderList {
    fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }

    fn get_all<'a>(&'a self, name: &str) -> Vec<&'a [u8]> {
        self.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
            .collect()
    }

    fn each<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a [u8])) {
        for (k, v) in self.iter() {
            f(k, v.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderPairs;

    #[test]
    fn a_record_keeps_a_bounded_amount_of_headers() {
        let mut h = HeaderPairs::new();
        h.add("x-github-event", "push");
        for i in 0..40 {
            h.add(&format!("x-pad-{i:02}"), vec![b'v'; 1000]);
        }
        let list = mask_headers(&h, &[]);
        assert!(list.0.len() <= MAX_HEADER_BYTES + 128, "{}", list.0.len());
        let pairs: Vec<(&str, &str)> = list.iter().collect();
        assert_eq!(
            pairs[0],
            ("x-github-event", "push"),
            "those first in name order are kept"
        );
        assert_eq!(pairs[1].0, "x-pad-00");
        let (name, value) = pairs.last().unwrap();
        assert_eq!(*name, "…");
        assert!(value.starts_with("32 more headers not kept (32352 bytes"), "{value}");
        // Ordinary headers are kept whole.
        let mut few = HeaderPairs::new();
        few.add("content-type", "application/json");
        few.add("x-github-event", "push");
        assert_eq!(mask_headers(&few, &[]).iter().count(), 2);
    }

    #[test]
    fn headers_are_recorded_sorted_masked_and_cut() {
        let mut h = HeaderPairs::new();
        let mut add = |k: &'static str, v: &[u8]| h.add(k, v);
        add("x-github-event", b"push");
        add("x-hub-signature-256", b"sha256=abc");
        add("x-custom-key", b"k");
        add("accept", b"a: b");
        add("x-long", &[b'v'; 2000]);
        add("x-latin1", b"caf\xe9");
        let list = mask_headers(&h, &["X-Custom-Key"]);
        let pairs: Vec<(&str, &str)> = list.iter().collect();
        assert_eq!(pairs[0], ("accept", "a: b"), "a value may hold `: `");
        assert_eq!(pairs[1], ("x-custom-key", "***"), "a source's own carrier is masked");
        assert_eq!(pairs[2], ("x-github-event", "push"));
        assert_eq!(pairs[3], ("x-hub-signature-256", "***"));
        assert_eq!(pairs[4], ("x-latin1", "caf\u{fffd}"));
        assert!(pairs[5].1.ends_with("… (2000 bytes)") && pairs[5].1.len() < 1100);
        assert_eq!(pairs.len(), 6);
    }

    #[test]
    fn header_lists_survive_odd_pairs() {
        let list = HeaderList::from_pairs([("b", ""), ("a", "line\nbreak\r")]);
        assert_eq!(list.iter().collect::<Vec<_>>(), [("a", "line break "), ("b", "")]);
        assert_eq!(HeaderList::default().iter().count(), 0);
    }

    #[test]
    fn a_records_query_is_bounded_and_says_what_it_dropped() {
        let long = "b".repeat(64_000);
        let query: Vec<(String, String)> = [("q", long.as_str()), ("token", "hunter2"), ("ref", "main")]
            .into_iter()
            .chain(std::iter::repeat_n(("k", "v"), 2000))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let kept = mask_query(&query, &[]);
        let size: usize = kept.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(size <= MAX_QUERY_BYTES + 200, "{size}");
        assert_eq!(kept[0].0, "q");
        assert!(kept[0].1.ends_with("… (64000 bytes)"), "{}", &kept[0].1[1000..]);
        assert_eq!(kept[1], ("token".to_string(), "***".to_string()));
        assert_eq!(kept[2], ("ref".to_string(), "main".to_string()));
        let (k, v) = kept.last().unwrap();
        assert_eq!(k, "…");
        let dropped = 2000 - kept.iter().filter(|(k, _)| k == "k").count();
        assert!(dropped > 1000, "{dropped}");
        assert_eq!(
            v,
            &format!(
                "{dropped} more parameters not kept ({} bytes; a record keeps 2048 bytes of query)",
                dropped * 2
            )
        );
        // A short query is kept as it came.
        let short = vec![("a".to_string(), "1".to_string())];
        assert_eq!(mask_query(&short, &[]), short);
    }
}

//! A delivery record as the log keeps it: its fields' bytes in one
//! allocation, read back into a [`Record`] when asked for.
//!
//! The log holds thousands of records and evicts the oldest on every
//! delivery. As a [`Record`] each is ~27 separate allocations, all long out
//! of the cache when it is freed: at the default `deliveries.keep` that cost
//! 36 L2 misses a delivery and up to half the user CPU of an ignored one.
//! Frozen, a record is four allocations and half the bytes: 16 misses
//! (BENCHMARKS.md, "third pass: the delivery log's working set").

use super::record::{HeaderList, Record, RuleTrace};
use crate::status::Outcome;
use bytes::Bytes;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use uuid::Uuid;

/// One record in the log.
pub struct Frozen {
    pub id: Box<str>,
    pub outcome: Outcome,
    persisted: bool,
    /// Every other field, in the order [`Frozen::of`] writes them.
    bytes: Box<[u8]>,
    /// The body, kept for replay within the log's byte budget.
    body: Mutex<Option<Bytes>>,
    /// Replays linked since (the only field that changes).
    replays: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Frozen {
    pub fn of(r: &Record) -> Frozen {
        let mut w = Writer(Vec::with_capacity(256 + r.headers.as_text().len()));
        // The two fields `GET /deliveries` filters on come first.
        w.str(&r.source);
        w.opt(r.event.as_deref());
        w.str(&r.delivery_id);
        w.str(&r.request_id);
        w.opt(r.raw_event.as_deref());
        let since = r.received_at.duration_since(UNIX_EPOCH).unwrap_or_default();
        w.num(since.as_secs());
        w.num(u64::from(since.subsec_nanos()));
        w.str(&r.remote_addr);
        w.str(r.headers.as_text());
        w.num(r.query.len() as u64);
        for (k, v) in &r.query {
            w.str(k);
            w.str(v);
        }
        w.num(r.body_size as u64);
        w.num(u64::from(r.status));
        w.opt(r.reason.as_deref());
        w.num(r.params.len() as u64);
        for (key, values) in &r.params {
            w.str(key);
            w.num(values.len() as u64);
            for (name, value) in values.iter() {
                w.str(name);
                w.json(value);
            }
        }
        w.num(r.rules.len() as u64);
        for t in &r.rules {
            w.str(&t.mapping);
            w.num(t.rule as u64);
            w.opt(t.condition.as_deref());
            w.str(&t.program);
            w.str(&t.result);
            match &t.argv {
                None => w.0.push(0),
                Some(argv) => {
                    w.0.push(1);
                    w.num(argv.len() as u64);
                    for a in argv {
                        w.str(a);
                    }
                }
            }
        }
        w.num(r.task_ids.len() as u64);
        for id in &r.task_ids {
            w.0.extend_from_slice(id.as_bytes());
        }
        w.opt(r.duplicate_of.as_deref());
        w.opt(r.replay_of.as_deref());
        w.num(r.notes.len() as u64);
        for n in &r.notes {
            w.str(n);
        }
        Frozen {
            id: r.id.as_str().into(),
            outcome: r.outcome,
            persisted: r.persisted,
            bytes: w.0.into_boxed_slice(),
            body: Mutex::new(r.body()),
            replays: Mutex::new(lock(&r.replays).clone()),
        }
    }

    /// The source and event, read without the rest.
    pub fn source_and_event(&self) -> (&str, Option<&str>) {
        let mut r = Reader(&self.bytes);
        match (r.str(), r.opt()) {
            (Some(source), Some(event)) => (source, event),
            _ => ("", None),
        }
    }

    pub fn body_len(&self) -> usize {
        lock(&self.body).as_ref().map_or(0, Bytes::len)
    }

    pub fn drop_body(&self) {
        lock(&self.body).take();
    }

    pub fn add_replay(&self, id: String) {
        lock(&self.replays).push(id);
    }

    /// The record again; `None` only if these bytes were not written by
    /// [`Frozen::of`] (a bug, logged).
    pub fn thaw(&self) -> Option<Record> {
        let record = self.read(&mut Reader(&self.bytes));
        if record.is_none() {
            tracing::error!(delivery = %self.id, "a delivery record kept in memory could not be read back");
        }
        record
    }

    fn read(&self, r: &mut Reader<'_>) -> Option<Record> {
        let source = r.str()?.to_string();
        let event = r.opt()?.map(str::to_string);
        let delivery_id = r.str()?.to_string();
        let request_id = r.str()?.to_string();
        let raw_event = r.opt()?.map(str::to_string);
        let secs = r.num()?;
        let nanos = u32::try_from(r.num()?).ok()?;
        let received_at = UNIX_EPOCH.checked_add(Duration::new(secs, nanos))?;
        let remote_addr = r.str()?.to_string();
        let headers = HeaderList::from_text(r.str()?.to_string());
        let query = (0..r.num()?)
            .map(|_| Some((r.str()?.to_string(), r.str()?.to_string())))
            .collect::<Option<Vec<_>>>()?;
        let mut rec = Record::arrived(
            self.id.to_string(),
            delivery_id,
            source,
            received_at,
            remote_addr,
            headers,
            query,
        );
        rec.request_id = request_id;
        rec.event = event;
        rec.raw_event = raw_event;
        rec.body_size = usize::try_from(r.num()?).ok()?;
        rec.status = u16::try_from(r.num()?).ok()?;
        rec.reason = r.opt()?.map(str::to_string);
        rec.params = (0..r.num()?)
            .map(|_| {
                let key = r.str()?.to_string();
                let values = (0..r.num()?)
                    .map(|_| Some((r.str()?.to_string(), r.json()?)))
                    .collect::<Option<Vec<_>>>()?;
                Some((key, Arc::new(values)))
            })
            .collect::<Option<Vec<_>>>()?;
        rec.rules = (0..r.num()?)
            .map(|_| {
                Some(RuleTrace {
                    mapping: r.str()?.to_string(),
                    rule: usize::try_from(r.num()?).ok()?,
                    condition: r.opt()?.map(str::to_string),
                    program: r.str()?.to_string(),
                    result: r.str()?.to_string(),
                    argv: match r.byte()? {
                        0 => None,
                        _ => Some(
                            (0..r.num()?)
                                .map(|_| r.str().map(str::to_string))
                                .collect::<Option<_>>()?,
                        ),
                    },
                })
            })
            .collect::<Option<Vec<_>>>()?;
        rec.task_ids = (0..r.num()?)
            .map(|_| Some(Uuid::from_bytes(r.take(16)?.try_into().ok()?)))
            .collect::<Option<Vec<_>>>()?;
        rec.duplicate_of = r.opt()?.map(str::to_string);
        rec.replay_of = r.opt()?.map(str::to_string);
        rec.notes = (0..r.num()?)
            .map(|_| r.str().map(str::to_string))
            .collect::<Option<Vec<_>>>()?;
        if !r.0.is_empty() {
            return None;
        }
        rec.outcome = self.outcome;
        rec.persisted = self.persisted;
        *lock(&rec.replays) = lock(&self.replays).clone();
        if let Some(body) = lock(&self.body).clone() {
            rec.keep_body(body);
        }
        Some(rec)
    }
}

struct Writer(Vec<u8>);

impl Writer {
    /// LEB128: lengths and counts are mostly one byte.
    fn num(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn str(&mut self, s: &str) {
        self.num(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt(&mut self, s: Option<&str>) {
        match s {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
        }
    }

    /// A value as its JSON text, behind a 4-byte length.
    fn json(&mut self, v: &Value) {
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        // Writing a `Value` to a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut self.0, v);
        let len = (self.0.len() - at - 4) as u32;
        self.0[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn num(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(n);
            }
        }
        None
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.num()?).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn opt(&mut self) -> Option<Option<&'a str>> {
        match self.byte()? {
            0 => Some(None),
            _ => self.str().map(Some),
        }
    }

    fn json(&mut self) -> Option<Value> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        serde_json::from_slice(self.take(len)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::record::HeaderList;
    use serde_json::json;

    /// A record with every field set, some to awkward values.
    fn full() -> Record {
        let headers = HeaderList::from_pairs([("X-GitHub-Event", "push"), ("X-Hub-Signature-256", "***")]);
        let query = vec![
            ("token".to_string(), "***".to_string()),
            ("é".to_string(), String::new()),
        ];
        let mut r = Record::arrived(
            "id-1".into(),
            "d-1".into(),
            "github".into(),
            UNIX_EPOCH + Duration::new(1_764_460_800, 123_456_789),
            "127.0.0.1".into(),
            headers,
            query,
        );
        r.request_id = "req-1".into();
        r.event = Some("push".into());
        r.raw_event = Some("Push Hook".into());
        r.body_size = 300_000;
        r.outcome = Outcome::Accepted;
        r.status = 202;
        r.reason = Some("ünïcode ✓ and \"quotes\"".into());
        let values = vec![
            ("ref".to_string(), json!("refs/heads/main")),
            ("n".to_string(), json!(1.5e300)),
            ("deep".to_string(), json!({"a": [1, null, true, {"b": "c"}]})),
            ("missing".to_string(), Value::Null),
        ];
        r.params = vec![("push".into(), Arc::new(values)), ("*".into(), Arc::new(Vec::new()))];
        r.rules = vec![
            RuleTrace {
                mapping: "push".into(),
                rule: 0,
                condition: Some("ref == \"refs/heads/main\"".into()),
                program: "deploy".into(),
                result: "matched".into(),
                argv: Some(vec!["deploy.sh".into(), String::new(), "a b".into()]),
            },
            RuleTrace {
                mapping: "*".into(),
                rule: 300,
                condition: None,
                program: "log".into(),
                result: "error: x".into(),
                argv: None,
            },
        ];
        r.task_ids = vec![Uuid::new_v4(), Uuid::nil()];
        r.duplicate_of = Some("d-0".into());
        r.replay_of = None;
        r.replays.lock().unwrap().push("r-1".into());
        r.notes = vec!["`x` is not JSON".into()];
        r.persisted = true;
        r.keep_body(Bytes::from_static(b"{\"ref\":\"refs/heads/main\"}"));
        r
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        for record in [
            full(),
            Record::new("s", String::new(), HeaderList::default(), Vec::new()),
        ] {
            let frozen = Frozen::of(&record);
            let back = frozen.thaw().expect("reads back");
            assert_eq!(back.view(), record.view());
            assert_eq!(back.received_at, record.received_at);
            assert_eq!(back.persisted, record.persisted);
            assert_eq!(back.body(), record.body());
            assert_eq!(
                frozen.source_and_event(),
                (record.source.as_str(), record.event.as_deref())
            );
        }
    }

    #[test]
    fn replays_and_a_dropped_body_show_in_what_reads_back() {
        let frozen = Frozen::of(&full());
        frozen.add_replay("r-2".into());
        frozen.drop_body();
        let back = frozen.thaw().unwrap();
        assert_eq!(*back.replays.lock().unwrap(), ["r-1", "r-2"]);
        assert_eq!((back.body(), frozen.body_len()), (None, 0));
    }

    #[test]
    fn cut_or_damaged_bytes_read_back_as_nothing_not_a_panic() {
        let good = Frozen::of(&full());
        for cut in 0..good.bytes.len() {
            let mut bad = Frozen::of(&full());
            bad.bytes = good.bytes[..cut].into();
            assert!(bad.thaw().is_none(), "cut at {cut}");
        }
        let mut longer = Frozen::of(&full());
        longer.bytes = [&good.bytes[..], &[0]].concat().into();
        assert!(longer.thaw().is_none());
    }
}

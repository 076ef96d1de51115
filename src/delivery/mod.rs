//! Deliveries on record: every request to `/hooks/{source}` and how it was
//! judged, kept in memory (bounded by count, bodies bounded by bytes), plus
//! the dedup cache that keeps a redelivered webhook from running twice.

pub mod dedup;
pub mod record;

pub use dedup::DedupCache;
pub use record::{Outcome, Record, RuleTrace};

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Which deliveries `GET /deliveries` wants.
#[derive(Debug, Default)]
pub struct Filter {
    pub source: Option<String>,
    pub event: Option<String>,
    pub outcome: Option<Outcome>,
    pub limit: usize,
}

/// The delivery log: newest last, evicted oldest first.
pub struct DeliveryLog {
    inner: Mutex<Log>,
    keep: usize,
    body_bytes: usize,
    store: Option<crate::store::Store>,
}

#[derive(Default)]
struct Log {
    order: VecDeque<Arc<Record>>,
    by_id: HashMap<String, Arc<Record>>,
    /// Bytes of the bodies still kept.
    body_bytes: usize,
    /// Records whose body is still kept, oldest first.
    with_body: VecDeque<Arc<Record>>,
}

impl DeliveryLog {
    pub fn new(keep: usize, body_bytes: usize, store: Option<crate::store::Store>) -> Self {
        DeliveryLog {
            inner: Mutex::new(Log::default()),
            keep: keep.max(1),
            body_bytes,
            store,
        }
    }

    pub fn store(&self) -> Option<&crate::store::Store> {
        self.store.as_ref()
    }

    /// Writes a record to the store (in the next batch), e.g. after a replay links to it.
    pub fn persist(&self, record: &Record) {
        if let Some(store) = &self.store {
            store.write(vec![record.op()]);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a record with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().by_id.contains_key(id)
    }

    /// Adds a record; `persisted` says it was already committed to the store.
    pub fn insert(&self, record: Record, persisted: bool) -> Arc<Record> {
        if !persisted {
            self.persist(&record);
        }
        let record = Arc::new(record);
        let mut log = self.lock();
        log.by_id.insert(record.id.clone(), record.clone());
        log.order.push_back(record.clone());
        let size = record.body_len();
        if size > 0 {
            log.body_bytes += size;
            log.with_body.push_back(record.clone());
        }
        while log.order.len() > self.keep {
            if let Some(old) = log.order.pop_front() {
                if log.by_id.get(&old.id).is_some_and(|r| Arc::ptr_eq(r, &old)) {
                    log.by_id.remove(&old.id);
                }
                // Both queues are in arrival order: an evicted record with a body
                // is at the front of `with_body`, and must not live on there.
                if log.with_body.front().is_some_and(|r| Arc::ptr_eq(r, &old)) {
                    log.with_body.pop_front();
                    log.body_bytes -= old.drop_body();
                }
            }
        }
        while log.body_bytes > self.body_bytes {
            let Some(old) = log.with_body.pop_front() else { break };
            log.body_bytes -= old.drop_body();
        }
        record
    }

    pub fn get(&self, id: &str) -> Option<Arc<Record>> {
        self.lock().by_id.get(id).cloned()
    }

    /// Records matching `filter`, newest first, older than the record
    /// `before` if given; `None` if there is no record `before`.
    pub fn list(&self, filter: &Filter, before: Option<&str>) -> Option<Vec<Arc<Record>>> {
        let log = self.lock();
        let skip = match before {
            None => 0,
            Some(id) => log.order.iter().rev().position(|r| r.id == id)? + 1,
        };
        Some(
            log.order
                .iter()
                .rev()
                .skip(skip)
                .filter(|r| {
                    filter.source.as_deref().is_none_or(|s| r.source == s)
                        && filter.event.as_deref().is_none_or(|e| r.event.as_deref() == Some(e))
                        && filter.outcome.is_none_or(|o| r.outcome == o)
                })
                .take(filter.limit)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        let r = Record::new("s", "127.0.0.1".into(), Default::default(), Vec::new());
        r.keep_body(bytes::Bytes::from(vec![b'x'; n]));
        r
    }

    #[test]
    fn evicted_records_take_their_bodies_with_them() {
        let log = DeliveryLog::new(2, 1 << 20, None);
        let first = log.insert(record(100), false);
        log.insert(record(100), false);
        log.insert(record(100), false);
        // The first record left the log: nothing holds it any more.
        assert_eq!(Arc::strong_count(&first), 1);
        assert_eq!(log.lock().body_bytes, 200);
    }

    #[test]
    fn bodies_beyond_the_byte_budget_are_dropped_oldest_first() {
        let log = DeliveryLog::new(10, 250, None);
        let a = log.insert(record(100), false);
        let b = log.insert(record(100), false);
        log.insert(record(100), false);
        assert_eq!((a.body_len(), b.body_len()), (0, 100));
        assert!(log.get(&a.id).is_some(), "the record stays, only its body goes");
    }
}

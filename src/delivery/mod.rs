//! Deliveries on record: every request to `/hooks/{source}` and how it was
//! judged, kept in memory (bounded by count, bodies bounded by bytes), plus
//! the dedup cache that keeps a redelivered webhook from running twice.

pub mod dedup;
mod frozen;
pub mod record;

pub use dedup::DedupCache;
pub use record::{Outcome, Record, RuleTrace};

use frozen::Frozen;
use std::borrow::Borrow;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Which deliveries `GET /deliveries` wants.
#[derive(Debug, Default)]
pub struct Filter {
    pub source: Option<String>,
    pub event: Option<String>,
    pub outcome: Option<Outcome>,
    pub limit: usize,
}

/// The delivery log: newest last, evicted oldest first. Records are kept
/// frozen (`frozen.rs`: one allocation of bytes each) and read back into a
/// [`Record`] when asked for.
pub struct DeliveryLog {
    inner: Mutex<Log>,
    keep: usize,
    body_bytes: usize,
    store: Option<crate::store::Store>,
}

#[derive(Default)]
struct Log {
    order: VecDeque<Arc<Frozen>>,
    by_id: HashSet<ById>,
    /// Bytes of the bodies still kept.
    body_bytes: usize,
    /// Records whose body is still kept, oldest first.
    with_body: VecDeque<Arc<Frozen>>,
}

/// A record found by its id, without a second copy of the id as the key.
struct ById(Arc<Frozen>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl Hash for ById {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // As `str` hashes, so that lookups by `&str` find it.
        (*self.0.id).hash(h);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

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

    /// Writes a record to the store (in the next batch).
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
        self.lock().by_id.contains(id)
    }

    /// Adds a record (the log keeps a frozen copy); `persisted` says it was
    /// already committed to the store.
    pub fn insert(&self, record: &Record, persisted: bool) {
        if !persisted {
            self.persist(record);
        }
        let frozen = Arc::new(Frozen::of(record));
        let size = frozen.body_len();
        // What leaves the log is freed after the lock is let go: evicted
        // records are thousands of deliveries old, out of the cache, and the
        // other worker would wait for that.
        let mut evicted = Vec::new();
        {
            let mut log = self.lock();
            log.by_id.replace(ById(frozen.clone()));
            log.order.push_back(frozen.clone());
            if size > 0 {
                log.body_bytes += size;
                log.with_body.push_back(frozen);
            }
            while log.order.len() > self.keep {
                let Some(old) = log.order.pop_front() else { break };
                if log.by_id.get(&*old.id).is_some_and(|r| Arc::ptr_eq(&r.0, &old)) {
                    log.by_id.remove(&*old.id);
                }
                // Both queues are in arrival order: an evicted record with a body
                // is at the front of `with_body`, and must not live on there.
                if log.with_body.front().is_some_and(|r| Arc::ptr_eq(r, &old)) {
                    log.with_body.pop_front();
                    log.body_bytes -= old.body_len();
                }
                evicted.push(old);
            }
            while log.body_bytes > self.body_bytes {
                let Some(old) = log.with_body.pop_front() else { break };
                log.body_bytes -= old.body_len();
                // Still in the log, without its body.
                old.drop_body();
            }
        }
        drop(evicted);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Record>> {
        let frozen = self.lock().by_id.get(id).map(|r| r.0.clone())?;
        frozen.thaw().map(Arc::new)
    }

    /// Links a replay to the record it replayed, in the log and in the
    /// store; `original` is used when the log no longer holds it.
    pub fn add_replay(&self, original: &Record, replay_id: String) {
        let kept = self.lock().by_id.get(original.id.as_str()).map(|r| r.0.clone());
        match kept {
            Some(frozen) => {
                frozen.add_replay(replay_id);
                if let Some(record) = frozen.thaw() {
                    self.persist(&record);
                }
            }
            None => {
                original
                    .replays
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(replay_id);
                self.persist(original);
            }
        }
    }

    /// Records matching `filter`, newest first, older than the record
    /// `before` if given; `None` if there is no record `before`.
    pub fn list(&self, filter: &Filter, before: Option<&str>) -> Option<Vec<Arc<Record>>> {
        let found: Vec<Arc<Frozen>> = {
            let log = self.lock();
            let skip = match before {
                None => 0,
                Some(id) => log.order.iter().rev().position(|r| &*r.id == id)? + 1,
            };
            log.order
                .iter()
                .rev()
                .skip(skip)
                .filter(|r| {
                    let (source, event) = r.source_and_event();
                    filter.source.as_deref().is_none_or(|s| source == s)
                        && filter.event.as_deref().is_none_or(|e| event == Some(e))
                        && filter.outcome.is_none_or(|o| r.outcome == o)
                })
                .take(filter.limit)
                .cloned()
                .collect()
        };
        Some(found.iter().filter_map(|f| f.thaw().map(Arc::new)).collect())
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
        let body = bytes::Bytes::from(vec![b'x'; 100]);
        let first = Record::new("s", "127.0.0.1".into(), Default::default(), Vec::new());
        first.keep_body(body.clone());
        log.insert(&first, false);
        drop(first);
        assert!(!body.is_unique(), "the log holds the body");
        log.insert(&record(100), false);
        log.insert(&record(100), false);
        // The first record left the log: nothing holds its body any more.
        assert!(body.is_unique());
        let inner = log.lock();
        assert_eq!((inner.body_bytes, inner.order.len(), inner.by_id.len()), (200, 2, 2));
    }

    #[test]
    fn bodies_beyond_the_byte_budget_are_dropped_oldest_first() {
        let log = DeliveryLog::new(10, 250, None);
        let (a, b) = (record(100), record(100));
        log.insert(&a, false);
        log.insert(&b, false);
        log.insert(&record(100), false);
        let len = |id: &str| log.get(id).map(|r| r.body_len());
        assert_eq!(
            (len(&a.id), len(&b.id)),
            (Some(0), Some(100)),
            "the record stays, only its body goes"
        );
        assert_eq!(log.lock().body_bytes, 200);
    }

    #[test]
    fn a_record_is_found_by_id_and_listed_as_it_was_inserted() {
        let log = DeliveryLog::new(10, 1 << 20, None);
        let mut r = record(10);
        r.event = Some("push".into());
        log.insert(&r, false);
        log.insert(
            &Record::new("other", String::new(), Default::default(), Vec::new()),
            false,
        );
        assert_eq!(log.get(&r.id).unwrap().view(), r.view());
        let push = Filter {
            event: Some("push".into()),
            limit: 10,
            ..Default::default()
        };
        let listed = log.list(&push, None).unwrap();
        assert_eq!(
            listed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
            [r.id.as_str()]
        );
        let other = Filter {
            source: Some("other".into()),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(log.list(&other, None).unwrap().len(), 1);
        assert!(log.list(&push, Some("no-such-id")).is_none());
        log.add_replay(&r, "r-1".into());
        assert_eq!(*log.get(&r.id).unwrap().replays.lock().unwrap(), ["r-1"]);
    }
}

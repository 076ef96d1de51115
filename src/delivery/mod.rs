//! Deliveries on record: every request to `/hooks/{source}` and how it was
//! judged, kept in memory (bounded by count, bodies bounded by bytes), plus
//! the dedup cache that keeps a redelivered webhook from running twice.

pub mod dedup;
mod frozen;
pub mod record;

pub use dedup::DedupCache;
pub use record::{Outcome, Record, RuleTrace};

use frozen::Frozen;
use hashbrown::hash_table::{Entry, HashTable};
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
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
    /// Hashes ids for `by_id` (keyed per log: ids come from senders).
    ids: RandomState,
    keep: usize,
    body_bytes: usize,
    store: Option<crate::store::Store>,
    /// The log holds every record the store does (no store; or an SQLite
    /// store empty at start, and nothing evicted since): then a delivery id
    /// the log does not have is new, without asking the store.
    complete: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Log {
    /// Every record with its id's hash, oldest first.
    order: VecDeque<(u64, Arc<Frozen>)>,
    /// The records by id, each beside its id's hash: the table grows and an
    /// evicted record leaves it without reading the record itself (it is
    /// thousands of deliveries old, out of the cache).
    by_id: HashTable<(u64, Arc<Frozen>)>,
    /// Bytes of the bodies still kept.
    body_bytes: usize,
    /// Records whose body is still kept, oldest first.
    with_body: VecDeque<Arc<Frozen>>,
    /// The hashes of provider ids claimed by deliveries still being judged
    /// (see [`Claim`]): a handful at a time, so a list. Two ids with the
    /// same hash only cost the second its own UUID record id.
    claimed: Vec<u64>,
}

/// A provider's delivery id reserved as the id of a record about to be
/// made, so that two deliveries judged at once with the same id do not both
/// take it (the second record would replace the first). It ends when dropped,
/// after the record was inserted.
pub struct Claim<'a> {
    log: &'a DeliveryLog,
    hash: u64,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut log = self.log.lock();
        if let Some(i) = log.claimed.iter().position(|h| *h == self.hash) {
            log.claimed.swap_remove(i);
        }
    }
}

impl Log {
    fn find(&self, hash: u64, id: &str) -> Option<&Arc<Frozen>> {
        self.by_id
            .find(hash, |(h, r)| *h == hash && &*r.id == id)
            .map(|(_, r)| r)
    }
}

impl DeliveryLog {
    pub fn new(keep: usize, body_bytes: usize, store: Option<crate::store::Store>) -> Self {
        let complete = match &store {
            None => true,
            // A cluster's store holds the other nodes' records too.
            Some(s) => s.sqlite().is_some_and(|s| s.has_deliveries().is_ok_and(|any| !any)),
        };
        DeliveryLog {
            complete: complete.into(),
            inner: Mutex::new(Log::default()),
            ids: RandomState::new(),
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
        let hash = self.ids.hash_one(id);
        self.lock().find(hash, id).is_some()
    }

    /// Whether the store may hold a record the log does not.
    pub fn store_has_more(&self) -> bool {
        !self.complete.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Claims `id` for a new record, unless a record in the log has it or
    /// another delivery claimed it; the caller still asks the store about
    /// records the log no longer (or not yet, after a restart) holds.
    pub fn claim(&self, id: &str) -> Option<Claim<'_>> {
        let hash = self.ids.hash_one(id);
        let mut log = self.lock();
        if log.find(hash, id).is_some() || log.claimed.contains(&hash) {
            return None;
        }
        log.claimed.push(hash);
        Some(Claim { log: self, hash })
    }

    /// Adds a record (the log keeps a frozen copy); `persisted` says it was
    /// already committed to the store.
    pub fn insert(&self, record: &Record, persisted: bool) {
        if !persisted {
            self.persist(record);
        }
        let frozen = Arc::new(Frozen::of(record));
        let size = frozen.body_len();
        let hash = self.ids.hash_one(&*frozen.id);
        // What leaves the log is freed after the lock is let go: evicted
        // records are thousands of deliveries old, out of the cache, and the
        // other worker would wait for that.
        let mut evicted = Vec::new();
        {
            let mut log = self.lock();
            let kept = (hash, frozen.clone());
            match log
                .by_id
                .entry(hash, |(h, r)| *h == hash && r.id == frozen.id, |(h, _)| *h)
            {
                Entry::Occupied(mut same) => *same.get_mut() = kept,
                Entry::Vacant(absent) => {
                    absent.insert(kept);
                }
            }
            log.order.push_back((hash, frozen.clone()));
            if size > 0 {
                log.body_bytes += size;
                log.with_body.push_back(frozen);
            }
            while log.order.len() > self.keep {
                let Some((hash, old)) = log.order.pop_front() else {
                    break;
                };
                // Unless a newer record of the same id took its place.
                if let Ok(entry) = log.by_id.find_entry(hash, |(_, r)| Arc::ptr_eq(r, &old)) {
                    entry.remove();
                }
                // Both queues are in arrival order: an evicted record with a body
                // is at the front of `with_body`, and must not live on there.
                if log.with_body.front().is_some_and(|r| Arc::ptr_eq(r, &old)) {
                    log.with_body.pop_front();
                    log.body_bytes -= old.body_len();
                }
                evicted.push(old);
            }
            if !evicted.is_empty() {
                self.complete.store(false, std::sync::atomic::Ordering::Relaxed);
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
        let hash = self.ids.hash_one(id);
        let frozen = self.lock().find(hash, id).cloned()?;
        frozen.thaw().map(Arc::new)
    }

    /// Links a replay to the record it replayed, in the log and in the
    /// store; `original` is used when the log no longer holds it.
    pub fn add_replay(&self, original: &Record, replay_id: String) {
        let hash = self.ids.hash_one(original.id.as_str());
        let kept = self.lock().find(hash, &original.id).cloned();
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
                Some(id) => log.order.iter().rev().position(|(_, r)| &*r.id == id)? + 1,
            };
            log.order
                .iter()
                .rev()
                .map(|(_, r)| r)
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
    fn a_claimed_id_is_taken_until_its_record_is_in_and_an_eviction_sends_lookups_to_the_store() {
        let log = DeliveryLog::new(2, 1 << 20, None);
        let r = Record::new("s", "127.0.0.1".into(), Default::default(), Vec::new());
        let claim = log.claim(&r.id).expect("a new id");
        assert!(log.claim(&r.id).is_none(), "claimed by the first");
        log.insert(&r, false);
        drop(claim);
        assert!(log.claim(&r.id).is_none(), "now in the log");
        drop(log.claim("never-inserted"));
        assert!(log.claim("never-inserted").is_some(), "a dropped claim frees its id");
        assert!(!log.store_has_more());
        log.insert(&record(1), false);
        assert!(!log.store_has_more());
        log.insert(&record(1), false);
        assert!(log.store_has_more(), "an evicted record may still be stored");
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
    fn a_record_inserted_again_is_found_as_its_newest_copy_until_that_leaves() {
        let log = DeliveryLog::new(3, 1 << 20, None);
        let first = record(1);
        log.insert(&first, false);
        let mut again = record(2);
        again.id = first.id.clone();
        let size = |r: Arc<Record>| r.body().map(|b| b.len());
        log.insert(&again, false);
        assert_eq!(size(log.get(&first.id).unwrap()), Some(2));
        // The older copy leaves first; the newer one stays found.
        log.insert(&record(3), false);
        log.insert(&record(4), false);
        assert!(log.contains(&first.id));
        assert_eq!(size(log.get(&first.id).unwrap()), Some(2));
        log.insert(&record(5), false);
        assert!(!log.contains(&first.id), "both copies left the log");
        // Many more: the index holds exactly what the log lists.
        let ids: Vec<String> = (0..1000)
            .map(|n| {
                let r = record(n % 7);
                log.insert(&r, false);
                r.id.clone()
            })
            .collect();
        let inner = log.lock();
        assert_eq!((inner.order.len(), inner.by_id.len()), (3, 3));
        drop(inner);
        assert!(ids[..997].iter().all(|id| !log.contains(id)));
        assert!(ids[997..].iter().all(|id| log.get(id).is_some_and(|r| &r.id == id)));
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

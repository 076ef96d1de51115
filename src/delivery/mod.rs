//! Deliveries on record: every request to `/hooks/{source}` and how it was
//! judged, kept in memory (bounded by count, bodies bounded by bytes), plus
//! the dedup cache that keeps a redelivered webhook from running twice.
//!
//! Records of requests refused before or at their source's auth
//! ([`Outcome::Refused`]: anyone can send those) are counted apart, within
//! `deliveries.keep_refused`, and never keep a body: a stranger's flood
//! evicts only the records of other strangers' requests, never those of
//! requests that passed auth (`deliveries.keep`, `deliveries.body_bytes`).

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

/// The delivery log: newest last, evicted oldest first, refused records
/// apart from the others. Records are kept frozen (`frozen.rs`: one
/// allocation of bytes each) and read back into a [`Record`] when asked for.
pub struct DeliveryLog {
    inner: Mutex<Log>,
    /// Hashes ids for `by_id` (keyed per log: ids come from senders).
    ids: RandomState,
    /// Records of requests that passed auth.
    keep: usize,
    /// Records of requests refused before or at auth (0: none are kept).
    keep_refused: usize,
    body_bytes: usize,
    store: Option<crate::store::Store>,
    /// The log holds every record the store does (no store; or an SQLite
    /// store empty at start, and nothing but refused records evicted since):
    /// then a delivery id the log does not have is new, without asking the
    /// store.
    complete: std::sync::atomic::AtomicBool,
}

/// A record in one of the log's two queues: its arrival number in the log
/// (so the two queues list as one), its id's hash, the record.
struct Kept {
    n: u64,
    hash: u64,
    record: Arc<Frozen>,
}

#[derive(Default)]
struct Log {
    /// The records of requests that passed auth, oldest first.
    order: VecDeque<Kept>,
    /// The records of requests refused before or at auth, oldest first.
    refused: VecDeque<Kept>,
    /// The arrival number of the next record.
    next: u64,
    /// The records by id, each beside its id's hash: the table grows and an
    /// evicted record leaves it without reading the record itself (it is
    /// thousands of deliveries old, out of the cache).
    by_id: HashTable<(u64, Arc<Frozen>)>,
    /// Bytes of the bodies still kept.
    body_bytes: usize,
    /// Records whose body is still kept, oldest first (all in `order`: a
    /// refused record keeps no body).
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

    /// The records of both queues (or only those `outcome` names), newest first.
    fn newest_first(&self, outcome: Option<Outcome>) -> impl Iterator<Item = &Kept> {
        let refused = match outcome {
            None | Some(Outcome::Refused) => self.refused.range(..),
            Some(_) => self.refused.range(0..0),
        };
        let others = match outcome {
            Some(Outcome::Refused) => self.order.range(0..0),
            _ => self.order.range(..),
        };
        let (mut a, mut b) = (others.rev().peekable(), refused.rev().peekable());
        std::iter::from_fn(move || {
            let first = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.n > y.n,
                (first, _) => first.is_some(),
            };
            if first {
                a.next()
            } else {
                b.next()
            }
        })
    }
}

impl DeliveryLog {
    pub fn new(keep: usize, keep_refused: usize, body_bytes: usize, store: Option<crate::store::Store>) -> Self {
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
            keep_refused,
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
    /// already committed to the store. A refused record is kept without its
    /// body, and with `keep_refused: 0` not at all (nor written).
    pub fn insert(&self, record: &Record, persisted: bool) {
        let refused = record.outcome == Outcome::Refused;
        if refused && self.keep_refused == 0 {
            return;
        }
        if !persisted {
            self.persist(record);
        }
        let frozen = Arc::new(Frozen::of(record));
        if refused {
            frozen.drop_body();
        }
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
            let n = log.next;
            log.next += 1;
            let kept = Kept {
                n,
                hash,
                record: frozen.clone(),
            };
            let (queue, keep) = if refused {
                (&mut log.refused, self.keep_refused)
            } else {
                (&mut log.order, self.keep)
            };
            queue.push_back(kept);
            let mut gone = Vec::new();
            while queue.len() > keep {
                gone.extend(queue.pop_front());
            }
            if size > 0 {
                log.body_bytes += size;
                log.with_body.push_back(frozen);
            }
            for Kept { hash, record: old, .. } in gone {
                // Unless a newer record of the same id took its place.
                if let Ok(entry) = log.by_id.find_entry(hash, |(_, r)| Arc::ptr_eq(r, &old)) {
                    entry.remove();
                }
                // `order` and `with_body` are both in arrival order: an evicted
                // record with a body is at the front of `with_body`, and must
                // not live on there.
                if log.with_body.front().is_some_and(|r| Arc::ptr_eq(r, &old)) {
                    log.with_body.pop_front();
                    log.body_bytes -= old.body_len();
                }
                evicted.push(old);
            }
            // A refused record's id is never a provider's (those are read
            // after auth), so the store holding one the log no longer does
            // makes no provider id look taken: a stranger's flood does not
            // send every sender's delivery id to the store to be checked.
            if !evicted.is_empty() && !refused {
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
        self.page(filter, before.map(Below::Record)).map(|(records, _)| records)
    }

    /// Records matching `filter`, newest first, below `before`; with the
    /// log's number of the last one when more follow (where the next page
    /// starts: `Below::Seq`). `None` if there is no record `before`.
    pub fn page(&self, filter: &Filter, before: Option<Below<'_>>) -> Option<(Vec<Arc<Record>>, Option<u64>)> {
        let (found, last): (Vec<Arc<Frozen>>, Option<u64>) = {
            let log = self.lock();
            let below = match before {
                None => u64::MAX,
                Some(Below::Seq(n)) => n,
                Some(Below::Record(id)) => log.newest_first(None).find(|k| &*k.record.id == id)?.n,
            };
            let mut taken: Vec<&Kept> = log
                .newest_first(filter.outcome)
                .skip_while(|k| k.n >= below)
                .filter(|k| {
                    let r = &k.record;
                    let (source, event) = r.source_and_event();
                    filter.source.as_deref().is_none_or(|s| source == s)
                        && filter.event.as_deref().is_none_or(|e| event == Some(e))
                        && filter.outcome.is_none_or(|o| r.outcome == o)
                })
                .take(filter.limit.saturating_add(1))
                .collect();
            let more = taken.len() > filter.limit;
            taken.truncate(filter.limit);
            let last = taken.last().map(|k| k.n).filter(|_| more);
            (taken.iter().map(|k| k.record.clone()).collect(), last)
        };
        Some((found.iter().filter_map(|f| f.thaw().map(Arc::new)).collect(), last))
    }
}

/// Where a page of the log starts: below a record, or below a number of
/// the log's (a `next` cursor, good after its record was dropped).
#[derive(Debug, Clone, Copy)]
pub enum Below<'a> {
    Record(&'a str),
    Seq(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Record {
        let mut r = Record::new("s", "127.0.0.1".into(), Default::default(), Vec::new());
        r.outcome = Outcome::Accepted;
        r.keep_body(bytes::Bytes::from(vec![b'x'; n]));
        r
    }

    #[test]
    fn a_claimed_id_is_taken_until_its_record_is_in_and_an_eviction_sends_lookups_to_the_store() {
        let log = DeliveryLog::new(2, 2, 1 << 20, None);
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
        let log = DeliveryLog::new(2, 2, 1 << 20, None);
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

    fn refused() -> Record {
        let mut r = Record::new("s", "203.0.113.9".into(), Default::default(), Vec::new());
        r.outcome = Outcome::Refused;
        r.status = 401;
        r
    }

    #[test]
    fn refused_records_have_their_own_budget_and_push_out_no_other_record_or_body() {
        let log = DeliveryLog::new(3, 2, 250, None);
        let kept: Vec<Record> = (0..3).map(|_| record(100)).collect();
        for r in &kept {
            log.insert(r, false);
        }
        let strangers: Vec<Record> = (0..1000).map(|_| refused()).collect();
        for r in &strangers {
            log.insert(r, false);
        }
        // Every record that passed auth is there, with the bodies the byte
        // budget holds; of the refused ones, the newest two.
        assert_eq!(
            kept.iter()
                .map(|r| log.get(&r.id).map(|r| r.body_len()))
                .collect::<Vec<_>>(),
            [Some(0), Some(100), Some(100)]
        );
        assert!(strangers[..998].iter().all(|r| !log.contains(&r.id)));
        assert!(strangers[998..].iter().all(|r| log.contains(&r.id)));
        let inner = log.lock();
        assert_eq!(
            (
                inner.order.len(),
                inner.refused.len(),
                inner.by_id.len(),
                inner.body_bytes
            ),
            (3, 2, 5, 200)
        );
        drop(inner);
        // A refused record's body is never kept.
        let with_body = refused();
        with_body.keep_body(bytes::Bytes::from_static(b"stranger's bytes"));
        log.insert(&with_body, false);
        assert_eq!(log.get(&with_body.id).unwrap().body_len(), 0);
        assert_eq!(log.lock().body_bytes, 200);
        // Listed as one log, newest first, and by outcome apart; pages run
        // across both.
        let newer = record(1);
        log.insert(&newer, false);
        let ids = |filter: &Filter, before: Option<&str>| -> Vec<String> {
            log.list(filter, before).unwrap().iter().map(|r| r.id.clone()).collect()
        };
        let all = Filter {
            limit: 10,
            ..Default::default()
        };
        let expected = [&newer, &with_body, &strangers[999], &kept[2], &kept[1]];
        assert_eq!(
            ids(&all, None),
            expected.iter().map(|r| r.id.clone()).collect::<Vec<_>>()
        );
        let by = |o| Filter {
            outcome: Some(o),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(
            ids(&by(Outcome::Refused), None),
            [with_body.id.clone(), strangers[999].id.clone()]
        );
        assert_eq!(
            ids(&by(Outcome::Accepted), None),
            [newer.id.clone(), kept[2].id.clone(), kept[1].id.clone()]
        );
        assert_eq!(ids(&by(Outcome::Rejected), None), Vec::<String>::new());
        assert_eq!(
            ids(&all, Some(&with_body.id)),
            [strangers[999].id.clone(), kept[2].id.clone(), kept[1].id.clone()]
        );
        assert_eq!(ids(&by(Outcome::Refused), Some(&kept[2].id)), Vec::<String>::new());
    }

    #[test]
    fn evicting_a_refused_record_sends_no_delivery_id_to_the_store() {
        let log = DeliveryLog::new(3, 1, 250, None);
        log.insert(&refused(), false);
        log.insert(&refused(), false);
        assert!(!log.store_has_more(), "a refused record's id is never a provider's");
    }

    #[test]
    fn with_keep_refused_0_no_refused_record_is_kept() {
        let log = DeliveryLog::new(3, 0, 250, None);
        let r = refused();
        log.insert(&r, false);
        assert!(!log.contains(&r.id));
        assert!(!log.store_has_more(), "nothing was evicted");
    }

    #[test]
    fn a_record_inserted_again_is_found_as_its_newest_copy_until_that_leaves() {
        let log = DeliveryLog::new(3, 3, 1 << 20, None);
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
        let log = DeliveryLog::new(10, 10, 250, None);
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
        let log = DeliveryLog::new(10, 10, 1 << 20, None);
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

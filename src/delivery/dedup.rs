//! Remembers recent delivery keys per source, so a redelivery inside the
//! window is answered as a duplicate and runs nothing. Memory stays bounded:
//! expired keys are dropped as new ones arrive, and each source keeps at most
//! `MAX_KEYS` keys.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_KEYS: usize = 100_000;

#[derive(Default)]
pub struct DedupCache {
    sources: Mutex<HashMap<String, Window>>,
}

#[derive(Default)]
struct Window {
    /// key → (expiry, the first delivery's record id)
    seen: HashMap<String, (Instant, String)>,
    /// Keys in the order they expire (one window per source, so arrival order).
    order: VecDeque<(Instant, String)>,
}

/// What the cache says about a delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// New: the key is now held for `record_id`.
    First,
    /// Seen inside the window; the first delivery's record id.
    Repeat(String),
}

impl DedupCache {
    /// Checks `key` and, when new, remembers it for `window` under `record_id`.
    pub fn check(&self, source: &str, key: &str, window: Duration, record_id: &str) -> Seen {
        let now = Instant::now();
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let w = sources.entry(source.to_string()).or_default();
        while let Some((expiry, k)) = w.order.front() {
            if *expiry > now && w.order.len() < MAX_KEYS {
                break;
            }
            if w.seen.get(k).is_some_and(|(e, _)| e == expiry) {
                w.seen.remove(k);
            }
            w.order.pop_front();
        }
        if let Some((expiry, first)) = w.seen.get(key) {
            if *expiry > now {
                return Seen::Repeat(first.clone());
            }
        }
        let expiry = now + window;
        w.seen.insert(key.to_string(), (expiry, record_id.to_string()));
        w.order.push_back((expiry, key.to_string()));
        Seen::First
    }

    /// Remembers a key seen before a restart, for what is left of its window.
    pub fn remember(&self, source: &str, key: &str, remaining: Duration, record_id: &str) {
        if !remaining.is_zero() {
            self.check(source, key, remaining, record_id);
        }
    }

    /// Forgets `key` (its delivery was not accepted after all, so a retry must run).
    pub fn forget(&self, source: &str, key: &str) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = sources.get_mut(source) {
            // Its place in the order goes too: a key forgotten and checked
            // again and again (a sender retrying while the store cannot
            // write) must not fill the order and push out live keys.
            if let Some((expiry, _)) = w.seen.remove(key) {
                if let Some(at) = w.order.iter().rposition(|(e, k)| *e == expiry && k == key) {
                    w.order.remove(at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_inside_the_window_and_not_after() {
        let cache = DedupCache::default();
        let w = Duration::from_millis(50);
        assert_eq!(cache.check("gh", "a", w, "r1"), Seen::First);
        assert_eq!(cache.check("gh", "a", w, "r2"), Seen::Repeat("r1".into()));
        assert_eq!(cache.check("gl", "a", w, "r3"), Seen::First, "sources are separate");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.check("gh", "a", w, "r4"), Seen::First);
        cache.forget("gh", "a");
        assert_eq!(cache.check("gh", "a", w, "r5"), Seen::First);
    }

    #[test]
    fn a_key_forgotten_leaves_no_place_behind() {
        let cache = DedupCache::default();
        let w = Duration::from_secs(3600);
        assert_eq!(cache.check("gh", "live", w, "r0"), Seen::First);
        for i in 0..1000 {
            assert_eq!(cache.check("gh", "retried", w, &format!("r{i}")), Seen::First);
            cache.forget("gh", "retried");
        }
        let sources = cache.sources.lock().unwrap();
        assert_eq!(sources["gh"].order.len(), 1);
        assert!(sources["gh"].seen.contains_key("live"));
    }

    #[test]
    fn expired_keys_are_evicted() {
        let cache = DedupCache::default();
        let w = Duration::from_millis(1);
        for i in 0..1000 {
            cache.check("gh", &i.to_string(), w, "r");
        }
        std::thread::sleep(Duration::from_millis(5));
        cache.check("gh", "last", w, "r");
        let sources = cache.sources.lock().unwrap();
        assert_eq!(sources["gh"].seen.len(), 1);
    }
}

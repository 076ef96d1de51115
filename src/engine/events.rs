//! The event hub: what happens to tasks and deliveries on this node, as
//! numbered events for `GET /events`. The last [`KEPT`] events stay in a
//! ring, so a client that reconnects with the last id it saw gets what it
//! missed; every listener reads the ring at its own pace (a slow one never
//! slows a publisher or the others), woken by a watch of the newest id.
//!
//! The engine publishes the task events, intake the delivery events. An
//! event costs a lock and a push; its JSON is built by the publisher. What
//! happens on every request and is worth nothing to a resuming client
//! (deliveries that started no task, output growth) is published only while
//! someone listens ([`Hub::listening`]).
//!
//! In a cluster the hub also relays: while another node's stream has
//! listeners, the events of this node's work (all but `task.output`) are
//! handed to the cluster ([`Hub::relay_to`]), and the events other nodes
//! relay come in through [`Hub::publish_relayed`], numbered by this hub.
//! When relayed events may have been missed, [`Hub::reset`] tells every
//! listener to reload.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{mpsc, watch, Notify};

/// How many events the ring keeps.
pub const KEPT: usize = 4096;

/// The kinds of event relayed between the nodes of a cluster: all but
/// `task.output` (output growth is read from the node that runs the task).
const RELAYED: [&str; 4] = ["task.created", "task.started", "task.finished", "delivery.recorded"];

/// One event: its id (increasing; see [`Hub::new`] for where a daemon's
/// ids start), kind and JSON data.
#[derive(Debug)]
pub struct Event {
    pub id: u64,
    pub kind: &'static str,
    pub data: String,
}

/// The hub (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    ring: Mutex<Ring>,
    /// The newest id, for listeners to wait on.
    newest: watch::Sender<u64>,
    listeners: AtomicUsize,
    /// Set when the daemon stops: listeners get what is left, then `Closed`.
    closed: AtomicBool,
    /// Woken when the first listener arrives (the output watcher waits for it).
    first_listener: Notify,
    /// Where events go to reach the other nodes of a cluster.
    relay: OnceLock<mpsc::Sender<Arc<Event>>>,
    /// Whether another node listens now (set by the cluster).
    relaying: AtomicBool,
    /// Events the relay could not take (it was full), for the cluster to report.
    dropped: AtomicBool,
}

struct Ring {
    next: u64,
    events: VecDeque<Arc<Event>>,
    /// Counts [`Hub::reset`]s: a listener that saw an older one is told to reload.
    epoch: u64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

/// What a listener gets next.
#[derive(Debug)]
pub enum Next {
    /// The events it asked for are gone: `oldest` is the oldest kept id
    /// (or the next one, if none is kept), `newest` the id it goes on after.
    Reset { oldest: u64, newest: u64 },
    /// Events, in id order.
    Events(Vec<Arc<Event>>),
    /// The daemon is stopping: nothing more will come.
    Closed,
}

impl Hub {
    /// A hub whose first id is this start's time in milliseconds since the
    /// epoch times 1000: ids keep growing across restarts, so an id a client
    /// kept from an earlier run is below this run's first and gets a reset,
    /// never a resume at the wrong place (an earlier run would have had to
    /// give a thousand events a millisecond, all its life, to reach this
    /// run's ids). Below 2^53, so JavaScript reads them exactly.
    pub fn new() -> Hub {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Hub::starting_at(ms.saturating_mul(1000).max(1))
    }

    /// A hub whose first event gets the id `first` (at least 1).
    pub fn starting_at(first: u64) -> Hub {
        let first = first.max(1);
        Hub {
            inner: Arc::new(HubInner {
                ring: Mutex::new(Ring {
                    next: first,
                    events: VecDeque::with_capacity(KEPT),
                    epoch: 0,
                }),
                newest: watch::Sender::new(first - 1),
                listeners: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                first_listener: Notify::new(),
                relay: OnceLock::new(),
                relaying: AtomicBool::new(false),
                dropped: AtomicBool::new(false),
            }),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anyone reads the stream now.
    pub fn listening(&self) -> bool {
        self.inner.listeners.load(Ordering::Relaxed) > 0
    }

    /// Publishes an event; returns its id.
    pub fn publish(&self, kind: &'static str, data: String) -> u64 {
        let event = self.push(kind, data);
        if self.inner.relaying.load(Ordering::Relaxed) && RELAYED.contains(&kind) {
            if let Some(relay) = self.inner.relay.get() {
                if relay.try_send(event.clone()).is_err() {
                    self.inner.dropped.store(true, Ordering::Relaxed);
                }
            }
        }
        event.id
    }

    /// Publishes an event for this node's listeners only, never relayed
    /// (what comes in numbers and is worth little elsewhere).
    pub fn publish_here(&self, kind: &'static str, data: String) -> u64 {
        self.push(kind, data).id
    }

    /// Publishes an event another node relayed (not relayed again); an
    /// unknown kind is ignored.
    pub fn publish_relayed(&self, kind: &str, data: String) {
        if let Some(kind) = RELAYED.iter().find(|k| **k == kind) {
            self.push(kind, data);
        }
    }

    fn push(&self, kind: &'static str, data: String) -> Arc<Event> {
        let event = {
            let mut ring = self.ring();
            let id = ring.next;
            ring.next += 1;
            if ring.events.len() == KEPT {
                ring.events.pop_front();
            }
            let event = Arc::new(Event { id, kind, data });
            ring.events.push_back(event.clone());
            event
        };
        self.inner.newest.send_replace(event.id);
        event
    }

    /// Hands the events published from now on, while [`Hub::set_relaying`]
    /// says so, to `relay` (at most `room` waiting; more are dropped and
    /// [`Hub::take_dropped`] says so). Once per hub.
    pub fn relay_to(&self, room: usize) -> Option<mpsc::Receiver<Arc<Event>>> {
        let (tx, rx) = mpsc::channel(room);
        self.inner.relay.set(tx).ok().map(|_| rx)
    }

    /// Whether the events of this node's work go to the relay.
    pub fn set_relaying(&self, on: bool) {
        self.inner.relaying.store(on, Ordering::Relaxed);
    }

    /// Whether events were dropped because the relay was full, since last asked.
    pub fn take_dropped(&self) -> bool {
        self.inner.dropped.swap(false, Ordering::Relaxed)
    }

    /// Tells every listener to reload what it shows (`reset`): events it
    /// should have had may be missing (another node's were lost on the way).
    pub fn reset(&self) {
        let newest = {
            let mut ring = self.ring();
            ring.epoch += 1;
            ring.next - 1
        };
        self.inner.newest.send_replace(newest);
    }

    /// Publishes an event only while someone listens; `data` is not built otherwise.
    pub fn publish_if_listening(&self, kind: &'static str, data: impl FnOnce() -> String) {
        if self.listening() {
            self.publish(kind, data());
        }
    }

    /// Ends every listener's stream once it has had what was published
    /// (the daemon is stopping: open streams must not hold the HTTP server up).
    /// Whether the daemon is stopping (no more events will come).
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }

    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        let newest = *self.inner.newest.borrow();
        self.inner.newest.send_replace(newest);
    }

    /// Waits until someone listens.
    pub async fn wait_for_listener(&self) {
        loop {
            let notified = self.inner.first_listener.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.listening() {
                return;
            }
            notified.await;
        }
    }

    /// A listener: with `since`, it first gets the kept events after that
    /// id (or a reset, when some are gone), then live ones; without, live
    /// ones only.
    pub fn subscribe(&self, since: Option<u64>) -> Listener {
        if self.inner.listeners.fetch_add(1, Ordering::Relaxed) == 0 {
            self.inner.first_listener.notify_waiters();
        }
        let rx = self.inner.newest.subscribe();
        let (last, reset, epoch) = {
            let ring = self.ring();
            let newest = ring.next - 1;
            let oldest = ring.events.front().map_or(ring.next, |e| e.id);
            let (last, reset) = match since {
                None => (newest, None),
                // Every event after `n` is still kept.
                Some(n) if n <= newest && n + 1 >= oldest => (n, None),
                // Older than what is kept, or from before this daemon started.
                Some(_) => (newest, Some(Next::Reset { oldest, newest })),
            };
            (last, reset, ring.epoch)
        };
        Listener {
            hub: self.clone(),
            last,
            rx,
            reset,
            epoch,
        }
    }
}

/// One reader of the stream; dropping it stops listening.
pub struct Listener {
    hub: Hub,
    /// The id of the last event handed out.
    last: u64,
    rx: watch::Receiver<u64>,
    reset: Option<Next>,
    /// The ring's epoch this listener has seen.
    epoch: u64,
}

impl Listener {
    /// The next events, waiting for some. Cancel-safe: nothing is lost when
    /// the future is dropped before it is ready.
    pub async fn next(&mut self) -> Next {
        if let Some(reset) = self.reset.take() {
            return reset;
        }
        loop {
            self.rx.borrow_and_update();
            {
                let ring = self.hub.ring();
                let oldest = ring.events.front().map_or(ring.next, |e| e.id);
                if self.epoch != ring.epoch {
                    // Told to reload: what came before now is not sent.
                    self.epoch = ring.epoch;
                    let newest = ring.next - 1;
                    self.last = newest;
                    return Next::Reset { oldest, newest };
                }
                if self.last + 1 < oldest {
                    // It fell behind more than the ring keeps.
                    let newest = ring.next - 1;
                    self.last = newest;
                    return Next::Reset { oldest, newest };
                }
                let skip = (self.last + 1 - oldest) as usize;
                if skip < ring.events.len() {
                    let events: Vec<Arc<Event>> = ring.events.iter().skip(skip).cloned().collect();
                    self.last = events.last().map_or(self.last, |e| e.id);
                    return Next::Events(events);
                }
            }
            if self.hub.inner.closed.load(Ordering::Relaxed) {
                return Next::Closed;
            }
            if self.rx.changed().await.is_err() {
                // The hub is gone: nothing more will come.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.hub.inner.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(next: Next) -> Vec<u64> {
        match next {
            Next::Events(e) => e.iter().map(|e| e.id).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn resumes_after_an_id_and_resets_when_it_is_gone() {
        let hub = Hub::starting_at(1);
        assert!(!hub.listening());
        hub.publish_if_listening("x", || unreachable!());
        for _ in 0..3 {
            hub.publish("a", "{}".into());
        }
        let mut live = hub.subscribe(None);
        assert!(hub.listening());
        let mut resumed = hub.subscribe(Some(1));
        assert_eq!(ids(resumed.next().await), vec![2, 3]);
        hub.publish("a", "{}".into());
        assert_eq!(ids(live.next().await), vec![4]);
        assert_eq!(ids(resumed.next().await), vec![4]);
        for _ in 0..=KEPT {
            hub.publish("a", "{}".into());
        }
        let mut old = hub.subscribe(Some(2));
        assert!(matches!(old.next().await, Next::Reset { oldest: 6, newest } if newest == 5 + KEPT as u64));
        // The one that fell behind is told too, and goes on from the newest.
        assert!(matches!(live.next().await, Next::Reset { .. }));
        let mut future = hub.subscribe(Some(1_000_000));
        assert!(matches!(future.next().await, Next::Reset { .. }));
        hub.publish("last", "{}".into());
        hub.close();
        assert_eq!(ids(future.next().await).len(), 1);
        assert!(matches!(future.next().await, Next::Closed));
        drop((live, resumed, old, future));
        assert!(!hub.listening());
    }

    #[tokio::test]
    async fn relays_while_asked_and_resets_listeners_on_demand() {
        let hub = Hub::starting_at(1);
        let mut relay = hub.relay_to(2).unwrap();
        assert!(hub.relay_to(2).is_none());
        hub.publish("task.created", "{}".into());
        assert!(relay.try_recv().is_err(), "nobody elsewhere listens yet");
        hub.set_relaying(true);
        hub.publish("task.started", "{\"a\":1}".into());
        hub.publish("task.output", "{}".into());
        let sent = relay.try_recv().unwrap();
        assert_eq!((sent.kind, sent.data.as_str()), ("task.started", "{\"a\":1}"));
        assert!(relay.try_recv().is_err(), "output growth stays on its node");
        // More than the relay holds: dropped, and said so once.
        for _ in 0..3 {
            hub.publish("task.finished", "{}".into());
        }
        assert!(hub.take_dropped());
        assert!(!hub.take_dropped());

        let mut live = hub.subscribe(None);
        hub.publish_relayed("task.finished", "{\"b\":2}".into());
        hub.publish_relayed("task.output", "{}".into());
        hub.publish_relayed("nonsense", "{}".into());
        let Next::Events(got) = live.next().await else { panic!() };
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].kind, got[0].data.as_str()), ("task.finished", "{\"b\":2}"));
        while relay.try_recv().is_ok() {}
        hub.publish_relayed("task.created", "{}".into());
        assert!(relay.try_recv().is_err(), "a relayed event is not relayed again");
        let _ = live.next().await;
        hub.reset();
        assert!(matches!(live.next().await, Next::Reset { .. }));
        hub.publish_here("task.created", "{}".into());
        assert!(relay.try_recv().is_err(), "published for this node only");
        assert!(matches!(live.next().await, Next::Events(e) if e.len() == 1));
    }
}

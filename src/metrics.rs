//! `GET /metrics`: Prometheus text from prometheus-client. Counters move as
//! deliveries and tasks do; the running and queued gauges are read at scrape.
//!
//! Every label value comes from the config (source and program names, which
//! the config restricts to safe characters) or from our own fixed words
//! (outcomes, statuses, reasons); nothing a request sends becomes a label.
//! prometheus-client does not escape label values, and each new value would
//! be a new series held forever. A request for a source that does not exist
//! is counted under [`UNKNOWN_SOURCE`].

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use std::sync::Arc;

/// The `source` label of requests to a source that is not in the config.
pub const UNKNOWN_SOURCE: &str = "(unknown)";

/// A source or program name from the config, as a label value.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Name(Arc<str>);

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOutcome {
    source: Name,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramStatus {
    program: Name,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabel {
    program: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    deliveries: Family<SourceOutcome, Counter>,
    rejections: Family<Reason, Counter>,
    dedup_hits: Family<SourceLabel, Counter>,
    tasks: Family<ProgramStatus, Counter>,
    task_duration: Family<ProgramLabel, Histogram>,
    queue_wait: Histogram,
    pub running: Gauge,
    pub queued: Gauge,
    store_write: Histogram,
    reloads: Family<ResultLabel, Counter>,
    unknown_source: Name,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hookrunner");
        let deliveries = Family::<SourceOutcome, Counter>::default();
        registry.register(
            "deliveries",
            "Deliveries received, by source and outcome",
            deliveries.clone(),
        );
        let rejections = Family::<Reason, Counter>::default();
        registry.register("rejections", "Deliveries refused, by reason", rejections.clone());
        let dedup_hits = Family::<SourceLabel, Counter>::default();
        registry.register(
            "dedup_hits",
            "Repeated deliveries answered as duplicates",
            dedup_hits.clone(),
        );
        let tasks = Family::<ProgramStatus, Counter>::default();
        registry.register("tasks", "Tasks finished, by program and status", tasks.clone());
        let task_duration =
            Family::<ProgramLabel, Histogram>::new_with_constructor(seconds_histogram as fn() -> Histogram);
        registry.register(
            "task_duration_seconds",
            "How long handlers ran, by program",
            task_duration.clone(),
        );
        let queue_wait = seconds_histogram();
        registry.register(
            "task_queue_wait_seconds",
            "Time from acceptance to start",
            queue_wait.clone(),
        );
        let running = Gauge::default();
        registry.register("tasks_running", "Tasks running now", running.clone());
        let queued = Gauge::default();
        registry.register(
            "tasks_queued",
            "Tasks waiting now (queued or between attempts)",
            queued.clone(),
        );
        let store_write = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "store_write_seconds",
            "Time to commit one batch to the store",
            store_write.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register("config_reloads", "Config reloads, by result", reloads.clone());
        registry.register(
            "build",
            "The running hookrunner",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_string())]),
        );
        Metrics {
            registry,
            deliveries,
            rejections,
            dedup_hits,
            tasks,
            task_duration,
            queue_wait,
            running,
            queued,
            store_write,
            reloads,
            unknown_source: Name(UNKNOWN_SOURCE.into()),
        }
    }

    /// A delivery to `source` (`None`: not a source in the config).
    pub fn delivery(&self, source: Option<&Arc<str>>, outcome: &'static str) {
        let source = source.map_or_else(|| self.unknown_source.clone(), |s| Name(s.clone()));
        self.deliveries.get_or_create(&SourceOutcome { source, outcome }).inc();
    }

    pub fn rejection(&self, reason: &'static str) {
        self.rejections.get_or_create(&Reason { reason }).inc();
    }

    pub fn dedup_hit(&self, source: &Arc<str>) {
        self.dedup_hits
            .get_or_create(&SourceLabel {
                source: Name(source.clone()),
            })
            .inc();
    }

    pub fn task_finished(&self, program: &Arc<str>, status: &'static str, ran: Option<Duration>) {
        let program = Name(program.clone());
        self.tasks
            .get_or_create(&ProgramStatus {
                program: program.clone(),
                status,
            })
            .inc();
        if let Some(d) = ran {
            self.task_duration
                .get_or_create(&ProgramLabel { program })
                .observe(d.as_secs_f64());
        }
    }

    pub fn task_started(&self, waited: Duration) {
        self.queue_wait.observe(waited.as_secs_f64());
    }

    pub fn store_written(&self, took: Duration) {
        self.store_write.observe(took.as_secs_f64());
    }

    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

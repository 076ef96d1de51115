//! `GET /metrics`: Prometheus text from prometheus-client. Counters move as
//! deliveries and tasks do; the running and queued gauges are read at scrape.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    deliveries: Family<Labels, Counter>,
    rejections: Family<Labels, Counter>,
    dedup_hits: Family<Labels, Counter>,
    tasks: Family<Labels, Counter>,
    task_duration: Family<Labels, Histogram>,
    queue_wait: Histogram,
    pub running: Gauge,
    pub queued: Gauge,
    store_write: Histogram,
    reloads: Family<Labels, Counter>,
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
        let deliveries = Family::<Labels, Counter>::default();
        registry.register(
            "deliveries",
            "Deliveries received, by source and outcome",
            deliveries.clone(),
        );
        let rejections = Family::<Labels, Counter>::default();
        registry.register("rejections", "Deliveries refused, by reason", rejections.clone());
        let dedup_hits = Family::<Labels, Counter>::default();
        registry.register(
            "dedup_hits",
            "Repeated deliveries answered as duplicates",
            dedup_hits.clone(),
        );
        let tasks = Family::<Labels, Counter>::default();
        registry.register("tasks", "Tasks finished, by program and status", tasks.clone());
        let task_duration = Family::<Labels, Histogram>::new_with_constructor(seconds_histogram as fn() -> Histogram);
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
        let reloads = Family::<Labels, Counter>::default();
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
        }
    }

    pub fn delivery(&self, source: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&vec![("source", source.to_string()), ("outcome", outcome.to_string())])
            .inc();
    }

    pub fn rejection(&self, reason: &'static str) {
        self.rejections
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    pub fn dedup_hit(&self, source: &str) {
        self.dedup_hits
            .get_or_create(&vec![("source", source.to_string())])
            .inc();
    }

    pub fn task_finished(&self, program: &str, status: &str, ran: Option<Duration>) {
        self.tasks
            .get_or_create(&vec![("program", program.to_string()), ("status", status.to_string())])
            .inc();
        if let Some(d) = ran {
            self.task_duration
                .get_or_create(&vec![("program", program.to_string())])
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
            .get_or_create(&vec![("result", if ok { "ok" } else { "failed" }.to_string())])
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

//! Admission: from a request to `/hooks/<source>` to tasks on the queue, and
//! the one record of how it went.
//!
//! [`admit`] runs every step in order: the source (404), its `allow_ips`
//! (403), the body (413, 408), the signature or token (401), the content type
//! and body (415, 400), a handshake, the event (400), a dry run, dedup, the
//! rules, whether each match can be run at all (422), and the queue (503).
//! A delivery's tasks are queued all together or not at all; with a store,
//! only once they and the delivery's record are on disk. Replays and reruns
//! ([`replay`]) enter at the rules, and `hookrunner explain` uses
//! [`explain`] offline. Nothing here knows HTTP: the caller turns an
//! [`Answer`] or a [`Refused`] into a response.
//!
//! Every request leaves a record in the delivery log (dry runs excepted),
//! built once from what was learnt ([`Facts`]) when the outcome is known.

mod body;
mod explain;
mod replay;

pub use body::{parse as parse_body, Accepts, Parsed};
pub use explain::{explain, Parts};
pub use replay::{replay, rerun};

use crate::auth::{self, ip::Client, Auth};
use crate::config::{Config, DedupKey, Reply, Source};
use crate::delivery::dedup::Seen;
use crate::delivery::record::{mask_headers, mask_query, rule_traces, HeaderList, Record, RuleTrace};
use crate::delivery::{DedupCache, DeliveryLog, Outcome};
use crate::engine::task::TaskView;
use crate::engine::{Engine, NewTask, SubmitError};
use crate::headers::Headers;
use crate::mapping::event::{event_of, Event};
use crate::mapping::{Params, Verdict};
use crate::metrics::Metrics;
use crate::process::program::Invocation;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// What admitting a delivery works with.
#[derive(Clone, Copy)]
pub struct Intake<'a> {
    pub config: &'a Config,
    pub engine: &'a Engine,
    pub deliveries: &'a DeliveryLog,
    pub dedup: &'a DedupCache,
    pub metrics: &'a Metrics,
}

/// A request to `/hooks/<source>`, as the caller read it.
pub struct Arrival<'a> {
    /// The source's name, from the path.
    pub source: &'a str,
    pub client: Client,
    pub headers: &'a dyn Headers,
    pub query: &'a [(String, String)],
    /// `X-Request-Id`, or one made up; on the record, the tasks and every log line.
    pub request_id: String,
    /// The method, path and peer, for `request.*` params.
    pub request: crate::mapping::Request,
}

/// Why a delivery (or a replay, a rerun) was refused. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the request body is larger than the limit of {limit} bytes (server.max_body)")]
    TooLarge { limit: usize },
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// The signature, token or credentials are missing or wrong.
    #[error("{message}")]
    BadCredentials { message: String, basic: bool },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    BadRequest(String),
    /// Understood, but what it asks for cannot be done (a value no process can receive).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the task queue is full; nothing of this delivery was accepted, retry later")]
    QueueFull,
    #[error("the daemon is shutting down; nothing of this delivery was accepted, retry later")]
    ShuttingDown,
    #[error("the store cannot write ({0}); nothing of this delivery was accepted, retry later")]
    StoreUnavailable(String),
    /// No live node of the cluster may run it now.
    #[error("{0}")]
    NoNode(String),
}

impl Refused {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Refused::NotFound(_) => 404,
            Refused::Forbidden(_) => 403,
            Refused::TooLarge { .. } => 413,
            Refused::BodyTimeout => 408,
            Refused::BadCredentials { .. } => 401,
            Refused::UnsupportedMediaType(_) => 415,
            Refused::BadRequest(_) => 400,
            Refused::Unprocessable(_) => 422,
            Refused::Conflict(_) => 409,
            Refused::QueueFull | Refused::ShuttingDown | Refused::StoreUnavailable(_) | Refused::NoNode(_) => 503,
        }
    }

    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::NotFound(_) => "not_found",
            Refused::Forbidden(_) => "forbidden",
            Refused::TooLarge { .. } => "too_large",
            Refused::BodyTimeout => "body_timeout",
            Refused::BadCredentials { .. } => "unauthorized",
            Refused::UnsupportedMediaType(_) => "unsupported_media_type",
            Refused::BadRequest(_) => "bad_request",
            Refused::Unprocessable(_) => "unprocessable",
            Refused::Conflict(_) => "conflict",
            Refused::QueueFull => "queue_full",
            Refused::ShuttingDown => "shutting_down",
            Refused::StoreUnavailable(_) => "store_unavailable",
            Refused::NoNode(_) => "no_node",
        }
    }
}

impl From<SubmitError> for Refused {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::QueueFull => Refused::QueueFull,
            SubmitError::ShuttingDown => Refused::ShuttingDown,
        }
    }
}

/// A task queued for a delivery, as its answer names it.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: Uuid,
    pub program: Arc<str>,
}

/// How an admitted delivery is answered.
#[derive(Debug)]
pub enum Answer {
    /// Tasks were queued (202).
    Accepted { about: About, tasks: Vec<Queued> },
    /// `?wait=`: tasks were queued and have finished (200), or one of them
    /// ended other than `succeeded` (`failed`, 500). `output`: their raw
    /// stdout, one after the other, when the reply asks for it.
    Finished {
        about: About,
        tasks: Vec<TaskView>,
        failed: bool,
        output: Option<Bytes>,
    },
    /// No rule matched (200): `message` for the sender, `why` for the record.
    Ignored { about: About, message: String, why: String },
    /// Already received inside the dedup window (200).
    Duplicate {
        about: About,
        first: String,
        tasks: Vec<Uuid>,
    },
    /// A provider's handshake, answered with this JSON (200).
    Handshake(serde_json::Value),
    /// `?dry_run=1`: the trace and what would run (200).
    DryRun(serde_json::Value),
}

impl Answer {
    /// The status without a `response` (the default of every key).
    pub fn status(&self) -> u16 {
        self.status_under(&Reply::default())
    }

    /// The status under the source's (and mapping key's) `response`.
    pub fn status_under(&self, reply: &Reply) -> u16 {
        match self {
            Answer::Accepted { .. } => reply.success(false),
            Answer::Finished { failed: false, .. } => reply.success(true),
            Answer::Finished { failed: true, .. } => reply.failure(),
            Answer::Ignored { .. } => reply.no_match(),
            _ => 200,
        }
    }

    /// The text body that replaces the JSON answer under `reply`, if any: a
    /// waited-for task's raw output, `body` on success, `failure_body`,
    /// `no_match_body`.
    pub fn text_under(&self, reply: &Reply) -> Option<Bytes> {
        let text = |t: &Option<String>| t.as_ref().map(|t| Bytes::from(t.clone()));
        match self {
            Answer::Accepted { .. } => text(&reply.body),
            Answer::Finished { output: Some(out), .. } => Some(out.clone()),
            Answer::Finished { failed: false, .. } => text(&reply.body),
            Answer::Finished { failed: true, .. } => text(&reply.failure_body),
            Answer::Ignored { .. } => text(&reply.no_match_body),
            _ => None,
        }
    }
}

/// What [`admit_shaped`] returns: the answer or refusal, and how the source
/// shapes it.
#[derive(Debug)]
pub struct Admitted {
    pub result: Result<Answer, Refused>,
    /// The source's `response` (laid under the mapping key's that applied);
    /// `None` when the delivery did not get past auth.
    pub reply: Option<Arc<Reply>>,
}

/// What every judged answer names.
#[derive(Debug, Clone)]
pub struct About {
    pub delivery_id: String,
    pub source: Arc<str>,
    pub event: String,
    /// The record's id, for `/deliveries/<id>`.
    pub record: String,
}

/// What is learnt about a delivery as it goes through admission; it becomes
/// its record, once, when the outcome is known.
#[derive(Clone)]
pub(crate) struct Facts {
    /// The record's own id: the provider's delivery id the first time it is
    /// seen, a new UUID otherwise (repeats, refused requests).
    id: String,
    delivery_id: String,
    request_id: String,
    source: String,
    received_at: SystemTime,
    remote_addr: String,
    headers: HeaderList,
    query: Vec<(String, String)>,
    body_size: usize,
    event: Option<Event>,
    params: Vec<(String, Params)>,
    rules: Vec<RuleTrace>,
    task_ids: Vec<Uuid>,
    duplicate_of: Option<String>,
    replay_of: Option<String>,
    /// The body, kept for replay.
    body: Option<Bytes>,
    /// How the answer is shaped, once the delivery got past auth.
    reply: Option<Arc<Reply>>,
    /// It got past its source's `allow_ips` and auth: a refusal from here on
    /// is `rejected`, one before it `refused` (which anyone can send).
    passed_auth: bool,
    /// What did not go as written while judging.
    notes: Vec<String>,
}

impl Facts {
    fn new(
        source: &str,
        remote_addr: String,
        headers: HeaderList,
        query: Vec<(String, String)>,
        request_id: String,
    ) -> Facts {
        let id = Uuid::new_v4().to_string();
        Facts {
            delivery_id: id.clone(),
            id,
            request_id,
            source: source.to_string(),
            received_at: SystemTime::now(),
            remote_addr,
            headers,
            query,
            body_size: 0,
            event: None,
            params: Vec::new(),
            rules: Vec::new(),
            task_ids: Vec::new(),
            duplicate_of: None,
            replay_of: None,
            body: None,
            reply: None,
            passed_auth: false,
            notes: Vec::new(),
        }
    }

    /// The record of how it went.
    fn record(&self, outcome: Outcome, status: u16, reason: Option<String>) -> Record {
        self.clone().into_record(outcome, status, reason)
    }

    /// The record of how it went, made of the facts themselves (no copies:
    /// a record is made for every request).
    fn into_record(self, outcome: Outcome, status: u16, reason: Option<String>) -> Record {
        let mut r = Record::arrived(
            self.id,
            self.delivery_id,
            self.source,
            self.received_at,
            self.remote_addr,
            self.headers,
            self.query,
        );
        r.request_id = self.request_id;
        if let Some(event) = self.event {
            r.event = Some(event.name);
            r.raw_event = event.raw;
        }
        r.body_size = self.body_size;
        r.outcome = outcome;
        r.status = status;
        r.reason = reason;
        r.params = self.params;
        r.rules = self.rules;
        r.task_ids = self.task_ids;
        r.duplicate_of = self.duplicate_of;
        r.replay_of = self.replay_of;
        r.notes = self.notes;
        if let Some(body) = self.body {
            r.keep_body(body);
        }
        r
    }

    fn about(&self, source: &Arc<str>) -> About {
        About {
            delivery_id: self.delivery_id.clone(),
            source: source.clone(),
            event: self.event.as_ref().map(|e| e.name.clone()).unwrap_or_default(),
            record: self.id.clone(),
        }
    }
}

/// The longest `?wait=` accepted.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Whether the query turns `name` on (`1`, `true`, `yes` or no value) or
/// off (`0`, `false`, `no`; or absent), in any case. Any other value is an
/// error, never taken for off: `?dry_run=on` must not run a delivery.
pub fn query_flag(query: &[(String, String)], name: &str) -> Result<bool, String> {
    let mut on = false;
    for (_, v) in query.iter().filter(|(k, _)| k == name) {
        match v.to_ascii_lowercase().as_str() {
            "" | "1" | "true" | "yes" => on = true,
            "0" | "false" | "no" => {}
            _ => {
                return Err(format!(
                    "`{name}` is `{}`: it may be 1, true, yes, 0, false or no",
                    crate::logging::escape(&crate::delivery::record::cut(v, 32))
                ))
            }
        }
    }
    Ok(on)
}

/// Admits a delivery: judges it, queues its tasks (all or none), and records
/// how it went. `body` reads the request body; it is awaited only once the
/// source and the client's address have been checked.
pub async fn admit(
    at: Intake<'_>,
    arrival: &Arrival<'_>,
    body: impl Future<Output = Result<Bytes, Refused>>,
) -> Result<Answer, Refused> {
    admit_shaped(at, arrival, body).await.result
}

/// [`admit`], with the `response` that shapes the answer.
pub async fn admit_shaped(
    at: Intake<'_>,
    arrival: &Arrival<'_>,
    body: impl Future<Output = Result<Bytes, Refused>>,
) -> Admitted {
    let (dry_run, bad_flag) = match query_flag(arrival.query, "dry_run") {
        Ok(on) => (on, None),
        Err(e) => (false, Some(e)),
    };
    let source = at.config.sources.get(arrival.source);
    // Mask whatever carries this source's secrets, besides the usual names.
    let (secret_headers, secret_query) = source.map(|s| s.auth.secret_carriers()).unwrap_or_default();
    // An unknown source's name is whatever the path said: kept short.
    let named = match source {
        Some(_) => arrival.source.into(),
        None => crate::delivery::record::cut(arrival.source, 128),
    };
    let mut facts = Facts::new(
        &named,
        arrival.client.text(),
        mask_headers(arrival.headers, &secret_headers),
        mask_query(arrival.query, &secret_query),
        arrival.request_id.clone(),
    );
    // The provider's id, once claimed for this record, stays claimed until
    // the record is in the log (dropped last).
    let mut claim = None;
    let result = match source {
        None => Err(Refused::NotFound(format!(
            "there is no source named `{}`",
            crate::logging::escape(&named)
        ))),
        Some(source) => {
            let flag = bad_flag.map_or(Ok(dry_run), Err);
            admit_to(at, arrival, source, body, flag, &mut facts, &mut claim).await
        }
    };
    let reply = facts.reply.clone();
    let (outcome, status, reason) = match &result {
        // The record of an accepted delivery was committed with its tasks.
        Ok((_, None)) => {
            return Admitted {
                result: result.map(|(answer, _)| answer),
                reply,
            }
        }
        Ok((answer, Some(outcome))) => (
            *outcome,
            answer.status_under(reply.as_deref().unwrap_or(&Reply::default())),
            reason_of(answer),
        ),
        Err(e) => {
            let reason = e.to_string();
            let outcome = if facts.passed_auth {
                Outcome::Rejected
            } else {
                Outcome::Refused
            };
            log_refusal(outcome, &named, arrival, &reason);
            at.metrics.rejection(e.reason());
            (outcome, e.status(), Some(reason))
        }
    };
    if !dry_run {
        at.metrics.delivery(source.map(|s| &s.name), outcome.as_str());
        if outcome == Outcome::Duplicate {
            if let Some(s) = source {
                at.metrics.dedup_hit(&s.name);
            }
        }
        record_delivery(at, facts.into_record(outcome, status, reason), false);
    }
    Admitted {
        result: result.map(|(answer, _)| answer),
        reply,
    }
}

/// Warnings of deliveries refused before or at auth: anyone can cause them,
/// so a few lines every 10 s at warn, the rest at debug (counted in the next
/// warn line's `suppressed`).
static REFUSED_LOG: crate::logging::Throttle = crate::logging::Throttle::new(Duration::from_secs(10), 5);

/// Deliveries refused because the store cannot write: logged once in 10 s.
static STORE_REFUSED_LOG: crate::logging::Throttle = crate::logging::Throttle::new(Duration::from_secs(10), 1);

/// Logs a refused delivery: at warn, rate-limited when it never got past
/// auth (a stranger's); a sender's refusal after auth, every time.
fn log_refusal(outcome: Outcome, source: &str, arrival: &Arrival<'_>, reason: &str) {
    let (source, client, request_id, reason) = (
        crate::logging::field(source),
        &arrival.client,
        crate::logging::field(&arrival.request_id),
        crate::logging::field(reason),
    );
    if outcome != Outcome::Refused {
        tracing::warn!(%source, %client, %request_id, %reason, "delivery refused");
        return;
    }
    match REFUSED_LOG.admit() {
        Some(suppressed) => {
            tracing::warn!(%source, %client, %request_id, %reason, suppressed, "delivery refused")
        }
        None => tracing::debug!(%source, %client, %request_id, %reason, "delivery refused"),
    }
}

fn reason_of(answer: &Answer) -> Option<String> {
    match answer {
        Answer::Ignored { why, .. } => Some(why.clone()),
        Answer::Duplicate { first, .. } => Some(format!(
            "already received inside the dedup window as delivery `{first}`; nothing was run"
        )),
        Answer::Handshake(_) => Some("handshake answered; nothing to run".into()),
        _ => None,
    }
}

/// A dry run asked for through the task API (`POST /-/dry-run`, the
/// dashboard's "Try a payload"): `raw` with the given headers and query,
/// judged by the source as a delivery would be, after its body and event
/// checks but without its `allow_ips` and auth (the API's caller may already
/// replay any recorded delivery unchecked). Nothing runs or is recorded.
pub fn dry_run(
    at: Intake<'_>,
    source: &str,
    headers: &crate::headers::HeaderPairs,
    query: &[(String, String)],
    raw: Bytes,
) -> Result<serde_json::Value, Refused> {
    let source =
        at.config.sources.get(source).ok_or_else(|| {
            Refused::NotFound(format!("there is no source named `{}`", crate::logging::escape(source)))
        })?;
    let limit = at.config.server.max_body;
    if raw.len() > limit {
        return Err(Refused::TooLarge { limit });
    }
    let id = Uuid::new_v4().to_string();
    let accepts = Accepts::of(source);
    let parsed = body::parse(headers, &raw, &accepts, &|| {
        std::path::PathBuf::from("<uploads>").join(&id)
    })?;
    if let Some(answer) = source.challenge(&parsed.json) {
        return Ok(serde_json::json!({
            "dry_run": true, "delivery_id": id, "source": source.name, "handshake": answer,
            "rules": [], "would_run": 0,
        }));
    }
    let event = event_of(&source.event, headers, &parsed.json).map_err(Refused::BadRequest)?;
    let delivery_id = source.delivery_id(headers, &parsed.json).unwrap_or(id);
    let prefix = &at.config.server.prefix;
    let request = crate::mapping::Request {
        method: "POST".into(),
        path: format!("{prefix}/{}", source.name),
        remote_addr: None,
        client_ip: None,
    };
    let parts = Parts {
        event: &event,
        json: &parsed.json,
        stdin: &parsed.stdin,
        headers,
        query,
        request: &request,
        raw: &raw,
        files: &parsed.files,
        boundary: parsed.boundary.as_deref(),
    };
    Ok(explain(source, &parts, &delivery_id))
}

/// The steps after the source is known. The outcome to record with the
/// answer, or `None` when nothing more is recorded (an accepted delivery's
/// record went into the log with its tasks; a dry run leaves none).
/// `dry_run` is the `?dry_run=` flag, or why its value is neither on nor off
/// (refused after auth, as a bad `?wait=` is: a stranger learns nothing).
async fn admit_to<'a>(
    at: Intake<'a>,
    arrival: &Arrival<'_>,
    source: &Arc<Source>,
    body: impl Future<Output = Result<Bytes, Refused>>,
    dry_run: Result<bool, String>,
    facts: &mut Facts,
    claim: &mut Option<crate::delivery::Claim<'a>>,
) -> Result<(Answer, Option<Outcome>), Refused> {
    if let Some(allowed) = &source.allow_ips {
        if !arrival.client.is_in(allowed) {
            return Err(Refused::Forbidden(format!(
                "address {} is not in `allow_ips` of source `{}`",
                arrival.client, source.name
            )));
        }
    }
    let raw = body.await?;
    facts.body_size = raw.len();
    auth::verify(&source.auth, arrival.headers, arrival.query, &raw, SystemTime::now()).map_err(|e| {
        Refused::BadCredentials {
            message: e.to_string(),
            basic: matches!(source.auth, Auth::Basic { .. }),
        }
    })?;
    facts.reply = Some(source.reply.clone());
    facts.passed_auth = true;
    let dry_run = dry_run.map_err(Refused::BadRequest)?;
    let accepts = Accepts::of(source);
    let uploads = at.engine.uploads();
    let dir_of = |record_id: &str| match uploads {
        Some(u) => u.dir_for(record_id),
        None => std::path::PathBuf::from("<uploads>").join(record_id),
    };
    let mut parsed = body::parse(arrival.headers, &raw, &accepts, &|| dir_of(&facts.id))?;
    if let Some(answer) = source.challenge(&parsed.json) {
        return Ok((Answer::Handshake(answer), Some(Outcome::Ignored)));
    }
    let event = event_of(&source.event, arrival.headers, &parsed.json).map_err(Refused::BadRequest)?;
    facts.event = Some(event.clone());
    let provider_id = source.delivery_id(arrival.headers, &parsed.json);
    if let Some(id) = &provider_id {
        facts.delivery_id = id.clone();
        // The record takes the provider's id unless a record has it already:
        // one in the log, one being made now, or one only in the store (from
        // before a restart, or evicted from the log).
        let claimed = match at.deliveries.claim(id) {
            Some(c) if !dry_run && stored_delivery(at, id).await => {
                drop(c);
                None
            }
            c => c,
        };
        if let Some(c) = claimed {
            *claim = Some(c);
            facts.id = id.clone();
            if !parsed.files.is_empty() {
                // File parts go in the directory of the record's own id.
                parsed = body::parse(arrival.headers, &raw, &accepts, &|| dir_of(&facts.id))?;
            }
        }
    }
    let parts = Parts {
        event: &event,
        json: &parsed.json,
        stdin: &parsed.stdin,
        headers: arrival.headers,
        query: arrival.query,
        request: &arrival.request,
        raw: &raw,
        files: &parsed.files,
        boundary: parsed.boundary.as_deref(),
    };
    if dry_run {
        return Ok((Answer::DryRun(explain(source, &parts, &facts.delivery_id)), None));
    }
    let wait = wait_for(arrival.query, source, &parts)?;

    let dedup_key = source.dedup.as_ref().and_then(|d| {
        let key = match d.key {
            DedupKey::DeliveryId => provider_id.clone()?,
            DedupKey::BodySha256 => hex::encode(Sha256::digest(&raw)),
        };
        Some((key, d.window))
    });
    if let Some((key, window)) = &dedup_key {
        if let Seen::Repeat(first) = seen(at, &source.name, key, *window, &facts.id).await? {
            facts.duplicate_of = Some(first.clone());
            let tasks = match at.deliveries.get(&first) {
                Some(r) => r.task_ids.clone(),
                // Received by another node of a cluster, or before a restart.
                None => match at.deliveries.store() {
                    Some(store) => store
                        .delivery(&first)
                        .await
                        .ok()
                        .flatten()
                        .map(|(r, _)| r.task_ids)
                        .unwrap_or_default(),
                    None => Vec::new(),
                },
            };
            tracing::info!(source = %source.name, delivery_id = %crate::logging::field(&facts.delivery_id), request_id = %crate::logging::field(&facts.request_id), first = %crate::logging::field(&first), "duplicate delivery: nothing run");
            return Ok((
                Answer::Duplicate {
                    about: facts.about(&source.name),
                    first,
                    tasks,
                },
                Some(Outcome::Duplicate),
            ));
        }
    }
    let judged = judge_and_queue(at, source, &parts, facts).await;
    match &judged {
        Err(_) => {
            // Not accepted after all: a retry must run.
            if let Some((key, _)) = &dedup_key {
                forget(at, &source.name, key).await;
            }
        }
        Ok((Answer::Ignored { .. }, _)) => facts.body = Some(parsed.stdin.clone()),
        _ => {}
    }
    let (answer, outcome) = judged?;
    if let (Some(wait), Answer::Accepted { about, tasks }) = (wait, &answer) {
        let ids: Vec<Uuid> = tasks.iter().map(|t| t.id).collect();
        if at.engine.wait_finished(&ids, tokio::time::Instant::now() + wait).await {
            let mut tasks: Vec<TaskView> = Vec::with_capacity(ids.len());
            for id in &ids {
                tasks.extend(at.engine.task_anywhere(id).await);
            }
            let failed = tasks.iter().any(|t| t.status != crate::status::Status::Succeeded);
            let reply = facts.reply.clone().unwrap_or_default();
            let wants_output = if failed {
                reply.output_on_failure()
            } else {
                reply.output()
            };
            let output = if wants_output {
                Some(raw_stdout(at.engine, &tasks).await)
            } else {
                None
            };
            return Ok((
                Answer::Finished {
                    about: about.clone(),
                    tasks,
                    failed,
                    output,
                },
                outcome,
            ));
        }
    }
    Ok((answer, outcome))
}

/// The raw stdout of `tasks`, one after the other: of each, the last
/// `max(tasks.output_limit, 1 MiB)` bytes of its file (what the daemon keeps
/// of a running task's file), else the tail its record kept.
async fn raw_stdout(engine: &Engine, tasks: &[TaskView]) -> Bytes {
    let outputs = engine.outputs().clone();
    let cap = usize::try_from(crate::engine::output_kept(&engine.limits())).unwrap_or(usize::MAX);
    let wanted: Vec<(Uuid, u32, String)> = tasks.iter().map(|t| (t.id, t.attempt, t.stdout.clone())).collect();
    let read = move || {
        let mut out = Vec::new();
        for (id, attempt, tail) in wanted {
            match outputs.read_last(id, attempt, crate::process::output::Stream::Stdout, cap) {
                Some((bytes, _)) => out.extend_from_slice(&bytes),
                None => out.extend_from_slice(tail.as_bytes()),
            }
        }
        Bytes::from(out)
    };
    tokio::task::spawn_blocking(read).await.unwrap_or_default()
}

/// Checks a delivery key: in this node's cache, or a cluster's database.
async fn seen(at: Intake<'_>, source: &str, key: &str, window: Duration, record_id: &str) -> Result<Seen, Refused> {
    let shared = at
        .engine
        .store()
        .and_then(|s| s.postgres())
        .filter(|_| at.engine.cluster().is_some());
    let Some(pg) = shared else {
        return Ok(at.dedup.check(source, key, window, record_id));
    };
    match pg.dedup_check(source, key, window.as_millis() as i64, record_id).await {
        Ok(None) => Ok(Seen::First),
        Ok(Some(first)) => Ok(Seen::Repeat(first)),
        Err(e) => Err(Refused::StoreUnavailable(e.to_string())),
    }
}

/// Forgets a delivery key (its delivery was not accepted after all).
async fn forget(at: Intake<'_>, source: &str, key: &str) {
    match at
        .engine
        .store()
        .and_then(|s| s.postgres())
        .filter(|_| at.engine.cluster().is_some())
    {
        Some(pg) => {
            if let Err(e) = pg.dedup_forget(source, key).await {
                tracing::warn!(error = %e, "could not forget a delivery key; a retry inside the window will be taken for a duplicate");
            }
        }
        None => at.dedup.forget(source, key),
    }
}

/// How long to hold the answer: `?wait=30s`, else the longest `wait` of the programs that would run.
fn wait_for(query: &[(String, String)], source: &Source, parts: &Parts<'_>) -> Result<Option<Duration>, Refused> {
    if let Some((_, text)) = query.iter().find(|(k, _)| k == "wait") {
        let wait = crate::config::parse_duration(text).map_err(|e| Refused::BadRequest(format!("`wait`: {e}")))?;
        if wait > MAX_WAIT {
            return Err(Refused::BadRequest(format!(
                "`wait` may be at most {}",
                humantime::format_duration(MAX_WAIT)
            )));
        }
        return Ok(Some(wait));
    }
    if !source.routes.any_program_waits() {
        return Ok(None);
    }
    let judgement = source.routes.judge(&parts.delivery(source));
    Ok(judgement.matches.iter().filter_map(|m| m.program.wait).max())
}

/// Judges a delivery and queues its tasks. Accepted: the record went to the
/// store with the tasks and into the log, and the outcome is `None`.
pub(crate) async fn judge_and_queue(
    at: Intake<'_>,
    source: &Arc<Source>,
    parts: &Parts<'_>,
    facts: &mut Facts,
) -> Result<(Answer, Option<Outcome>), Refused> {
    let judgement = source.routes.judge(&parts.delivery(source));
    facts.notes = judgement.notes.clone();
    for t in &judgement.trace {
        if let Verdict::Error(e) = &t.verdict {
            tracing::warn!(delivery_id = %crate::logging::field(&facts.delivery_id), request_id = %crate::logging::field(&facts.request_id), mapping = %t.mapping.key, rule = t.rule, error = %e,
                "condition could not be evaluated; counted as not matched");
        }
    }
    facts.params = judgement.params.clone();
    facts.rules = rule_traces(&judgement);
    let event = &parts.event.name;
    if tracing::enabled!(tracing::Level::DEBUG) {
        for rule in &facts.rules {
            tracing::debug!(source = %source.name, event = %crate::logging::field(event), request_id = %crate::logging::field(&facts.request_id), mapping = %rule.mapping, rule = rule.rule, condition = rule.condition.as_deref().unwrap_or("(always)"), program = %rule.program, result = %rule.result, "rule judged");
        }
    }
    // The most specific mapping key judged (no match), or of the first match.
    let mapping = match judgement.matches.first() {
        Some(m) => judgement.trace.get(m.trace_index),
        None => judgement.trace.first(),
    };
    if let Some(t) = mapping {
        facts.reply = Some(source.reply_for(Some(&t.mapping.key)).clone());
    }
    if judgement.matches.is_empty() {
        let why = if judgement.trace.is_empty() {
            format!(
                "no mapping of source `{}` has a key for event `{}`",
                source.name,
                crate::logging::escape(event)
            )
        } else {
            "no rule matched".to_string()
        };
        let message = format!(
            "no rule matched event `{}` of source `{}`; nothing was run (see {})",
            crate::logging::escape(event),
            source.name,
            crate::delivery::record::url(&facts.id)
        );
        tracing::debug!(source = %source.name, event = %crate::logging::field(event), request_id = %crate::logging::field(&facts.request_id), "delivery ignored: no rule matched");
        return Ok((
            Answer::Ignored {
                about: facts.about(&source.name),
                message,
                why,
            },
            Some(Outcome::Ignored),
        ));
    }

    let shared_delivery: Arc<str> = facts.delivery_id.as_str().into();
    let shared_event: Arc<str> = event.as_str().into();
    let shared_request: Arc<str> = facts.request_id.as_str().into();
    let mut tasks = Vec::with_capacity(judgement.matches.len());
    let mut queued = Vec::with_capacity(judgement.matches.len());
    for m in judgement.matches {
        let id = Uuid::new_v4();
        let task_id = id.to_string();
        let inv = Invocation {
            source: &source.name,
            event,
            task_id: &task_id,
            delivery_id: &facts.delivery_id,
            request_id: &facts.request_id,
            payload: parts.stdin,
            params: &m.params,
        };
        let argv = m.program.argv(&inv);
        // A `fan_out` program runs once on each live node that may run it.
        let nodes: Vec<Option<String>> = if m.program.fan_out {
            let nodes = at.engine.fan_out_nodes(&m.program.run_on).await;
            if nodes.is_empty() {
                let t = &mut facts.rules[m.trace_index];
                t.result = "matched, but no live node may run it".to_string();
                return Err(Refused::NoNode(format!(
                    "rule {} of mapping `{}` matched, but no live node has the labels [{}] that program `{}` (fan_out) runs on; nothing of this delivery was queued",
                    t.rule,
                    t.mapping,
                    m.program.run_on.join(", "),
                    t.program
                )));
            }
            nodes.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        if let Err(why) = m.program.check_runnable(&inv, &argv) {
            // Nothing of the delivery is queued; the trace says which rule could not run.
            let t = &mut facts.rules[m.trace_index];
            t.result = format!("matched, but cannot run: {why}");
            return Err(Refused::Unprocessable(format!(
                "rule {} of mapping `{}` matched, but program `{}` cannot be run: {why}; nothing of this delivery was queued",
                t.rule, t.mapping, t.program
            )));
        }
        let key = m.program.key(&inv);
        for (i, pinned_node) in nodes.into_iter().enumerate() {
            // Each node's task of a fan-out has its own id (the argv names the first's).
            let id = if i == 0 { id } else { Uuid::new_v4() };
            queued.push(Queued {
                id,
                program: m.program.name.clone(),
            });
            tasks.push(NewTask {
                id,
                delivery_id: shared_delivery.clone(),
                request_id: shared_request.clone(),
                source: source.name.clone(),
                event: shared_event.clone(),
                key: key.clone(),
                argv: argv.clone(),
                params: m.params.to_vec(),
                program: m.program.clone(),
                body: parts.stdin.clone(),
                boundary: parts.boundary.filter(|_| !parts.files.is_empty()).map(String::from),
                record_id: Some(facts.id.clone()),
                rerun_of: None,
                pinned_node,
            });
        }
    }
    facts.task_ids = tasks.iter().map(|t| t.id).collect();
    facts.body = Some(parts.stdin.clone());
    // The files of a multipart body that the tasks' params point at, on disk
    // before anything can start.
    let uploads = at.engine.uploads().filter(|_| !parts.files.is_empty());
    if let Some(uploads) = uploads {
        let params: Vec<&[(String, serde_json::Value)]> = tasks.iter().map(|t| &t.params[..]).collect();
        if let Err(e) = uploads.write(parts.stdin, parts.files, &params) {
            uploads.remove(&facts.id);
            tracing::error!(error = %e, request_id = %crate::logging::field(&facts.request_id), "delivery refused: its files could not be saved");
            return Err(Refused::StoreUnavailable(format!(
                "the delivery's files could not be saved in `{}`: {e}",
                uploads.root().display()
            )));
        }
    }
    // The record is committed with the tasks, before the answer exists.
    let status = facts.reply.as_ref().map_or(202, |r| r.success(false));
    let record = facts.record(Outcome::Accepted, status, None);
    if let Err(e) = queue(at, tasks, Some(record)).await {
        if let Some(uploads) = uploads {
            uploads.remove(&facts.id);
        }
        return Err(e);
    }
    at.metrics.delivery(Some(&source.name), Outcome::Accepted.as_str());
    tracing::info!(source = %source.name, event = %crate::logging::field(event), delivery_id = %crate::logging::field(&facts.delivery_id), request_id = %crate::logging::field(&facts.request_id), tasks = queued.len(), "delivery accepted");
    Ok((
        Answer::Accepted {
            about: facts.about(&source.name),
            tasks: queued,
        },
        None,
    ))
}

/// Whether the store holds a delivery record with this id; when the store
/// cannot tell, it is taken to (the new record then gets an id of its own).
async fn stored_delivery(at: Intake<'_>, id: &str) -> bool {
    let Some(store) = at.deliveries.store().filter(|_| at.deliveries.store_has_more()) else {
        return false;
    };
    match store.delivery_seq(id).await {
        Ok(seq) => seq.is_some(),
        Err(e) => {
            tracing::warn!(error = %e, "could not ask the store whether a delivery id is new; the record gets an id of its own");
            true
        }
    }
}

/// Queues tasks; with a store, only once they (and the delivery record, if
/// any) are on disk, so a `202` is never answered for work a crash could
/// lose. The record then goes into the delivery log.
pub(crate) async fn queue(at: Intake<'_>, tasks: Vec<NewTask>, record: Option<Record>) -> Result<(), Refused> {
    let reserved = at.engine.reserve(tasks)?;
    let mut persisted = false;
    if let Some(store) = at.deliveries.store() {
        let mut ops = reserved.ops();
        if let Some(r) = &record {
            ops.insert(0, r.op());
        }
        if let Err(e) = store.commit(ops).await {
            // One line in 10 s, however many senders retry meanwhile.
            if let Some(suppressed) = STORE_REFUSED_LOG.admit() {
                let request_id = record.as_ref().map_or("", |r| r.request_id.as_str());
                tracing::error!(error = %e, request_id = %crate::logging::field(request_id), suppressed, "delivery refused: the store cannot write");
            }
            return Err(Refused::StoreUnavailable(e.to_string()));
        }
        persisted = true;
    }
    at.engine.start(reserved);
    if let Some(r) = record {
        record_delivery(at, r, persisted);
    }
    Ok(())
}

/// Puts a delivery's record in the log and announces it (`delivery.recorded`):
/// always when it started tasks; otherwise (ignored, refused, duplicate)
/// only while someone listens to this node's events, so a flood of them costs nothing more.
pub(crate) fn record_delivery(at: Intake<'_>, record: Record, persisted: bool) {
    at.deliveries.insert(&record, persisted);
    let hub = at.engine.events();
    if !record.task_ids.is_empty() {
        hub.publish("delivery.recorded", record.event_data());
    } else if hub.listening() {
        // Not relayed to the other nodes of a cluster: a flood of these would be theirs too.
        hub.publish_here("delivery.recorded", record.event_data());
    }
}

#[cfg(test)]
mod tests;

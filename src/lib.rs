//! hookrunner: a webhook receiver that runs the handler scripts each delivery
//! should trigger, and keeps track of every task it starts.
//!
//! # Layout
//! The modules follow one delivery through the daemon:
//!
//! - [`http`]: `POST /hooks/{source}` reads the body and answers; `GET /tasks` reads tasks.
//! - [`intake`]: admission: a delivery checked, judged, queued (all or nothing) and recorded; replays and reruns.
//! - [`providers`]: one file per kind of sender: its keys, auth, event name, delivery id, handshake.
//! - [`auth`]: IP allowlists, tokens and HMAC signatures over the raw body.
//! - [`payload`]: what kind a body is, and the form, multipart and XML parsers; files of multipart deliveries.
//! - [`mapping`]: the event name, the mappings it selects, params and rule conditions.
//! - [`delivery`]: the delivery log (every request and how it was judged) and dedup.
//! - [`engine`]: the bounded queue, the concurrency limit, the scheduler, and the cluster's claims.
//! - [`process`]: spawning a handler in its own process group, its output and timeout.
//! - [`store`]: the durable store, SQLite for one node or PostgreSQL for a cluster: group commit, history, recovery.
//! - [`status`]: the names of task statuses and delivery outcomes, shared by every layer.
//! - [`config`]: `webhook.yaml`, checked at load into the types above.
//! - [`logging`]: text or JSON log lines; request values escaped, noisy libraries muted.
//! - [`metrics`]: Prometheus counters and histograms for `/metrics`.
//! - [`reload`]: putting a changed config in force without a restart.
//! - [`server`]: binding (TCP, Unix sockets, systemd's sockets), signals and graceful shutdown.
//! - [`tls`]: listeners' certificates, swapped on a reload without dropping connections.
//! - [`cli`]: the command line.
//! - [`client`]: the command-line client of the HTTP API (`hookrunner tasks`, `send`, ...).
//!
//! `docs/ARCHITECTURE.md` walks through one delivery and draws the task states.

/// `eprintln!` to a stderr that may be closed or full (`2>/dev/full`, a
/// reader that went away): the line is lost, the program goes on.
macro_rules! complain {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// `println!` to a stdout that may be closed or full: a reader that
/// stopped early (`hookrunner explain ... | head -1`) had what it wanted;
/// any other failure (`> /dev/full`) is noted, and the command exits 1
/// ([`logging::stdout_error`]). Never a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::logging::note_stdout_error(&e);
        }
    }};
}

pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod headers;
pub mod http;
pub mod intake;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod payload;
pub mod process;
pub mod providers;
pub mod reload;
pub mod secret;
pub mod server;
pub mod status;
pub mod store;
pub mod tls;

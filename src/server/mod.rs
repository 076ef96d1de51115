//! Starting and stopping the daemon: open the store, recover, bind, serve;
//! reload on SIGHUP (or a changed file); on SIGTERM or SIGINT refuse new
//! deliveries, let running tasks finish within the grace (the API stays up
//! meanwhile), then stop the HTTP server and flush the store. systemd is told
//! each step (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=`, watchdog).

use crate::config::{Config, State};
use crate::delivery::{DedupCache, DeliveryLog};
use crate::engine::Engine;
mod bind;
mod listen;

use crate::http::AppState;
use actix_web::web;
use sd_notify::NotifyState;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Why the daemon could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot start the task runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot use `{dir}` for task output: {source}")]
    Output {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on `{address}`: {reason}")]
    Socket { address: String, reason: String },
    #[error("cannot serve: {0}")]
    Listen(#[source] std::io::Error),
    #[error("`node.url` is needed: this node listens on no TCP address that other nodes could reach")]
    NodeUrl,
    #[error("{0}")]
    Join(#[from] crate::store::postgres::cluster::JoinError),
    #[error("cannot listen for {signal}: {source}")]
    Signals {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The HTTP server, bound and ready to run.
pub struct Application {
    server: actix_web::dev::Server,
    /// How each listener is named in the log, in `server.listen` order.
    urls: Vec<String>,
    /// The first TCP listener's URL: `node.url`'s default.
    first_tcp: Option<String>,
    state: web::Data<AppState>,
    /// Removed when the application goes.
    _socket_files: bind::SocketFiles,
}

impl Application {
    /// Opens `config.server.listen` (port 0 picks a free port; systemd's
    /// sockets come from `passed`) and builds the server.
    pub fn build(
        config: Arc<Config>,
        engine: Engine,
        store: Option<crate::store::Store>,
        listen_override: Option<Vec<crate::config::Listen>>,
        passed: bind::Passed,
    ) -> Result<Self, ServeError> {
        let (bound, certs, socket_files) = bind::bind(&config.server.listen, passed)?;
        let urls: Vec<String> = bound
            .iter()
            .map(|b| match &b.systemd {
                Some(name) => format!("{} (from systemd, `{name}`)", b.url),
                None => b.url.clone(),
            })
            .collect();
        let first_tcp = bound
            .iter()
            .find_map(|b| b.tcp.map(|addr| (addr, b.tls.is_some())))
            .map(|(addr, tls)| {
                let scheme = if tls { "https" } else { "http" };
                format!("{scheme}://{}", crate::client::client_addr(addr))
            });
        let dedup = DedupCache::default();
        if let Some(store) = &store {
            refill_dedup(&config, store, &dedup);
        }
        let deliveries = DeliveryLog::new(
            config.deliveries.keep,
            config.deliveries.keep_refused,
            config.deliveries.body_bytes,
            store,
        );
        let metrics = engine.metrics().clone();
        let config_path = config.path.clone();
        let state = web::Data::new(AppState {
            config: arc_swap::ArcSwap::new(config),
            listen_override,
            certs,
            config_path,
            engine,
            deliveries,
            dedup,
            metrics,
        });
        let server = listen::server(bound, state.clone()).map_err(ServeError::Listen)?;
        Ok(Application {
            server,
            urls,
            first_tcp,
            state,
            _socket_files: socket_files,
        })
    }
}

/// Remembers the delivery ids received shortly before a restart, so a
/// redelivery inside the window still runs nothing.
fn refill_dedup(config: &Config, store: &crate::store::Store, dedup: &DedupCache) {
    use crate::config::DedupKey;
    let longest = config
        .sources
        .values()
        .filter_map(|s| {
            s.dedup
                .as_ref()
                .filter(|d| d.key == DedupKey::DeliveryId)
                .map(|d| d.window)
        })
        .max();
    let Some(longest) = longest else { return };
    let now = std::time::SystemTime::now();
    let Ok(recent) = store.recent_deliveries(now - longest) else {
        return;
    };
    for crate::store::RecentDelivery {
        source,
        delivery_id,
        record_id,
        received_ms,
    } in recent
    {
        let Some(window) = config
            .sources
            .get(&source)
            .and_then(|s| s.dedup.as_ref())
            .filter(|d| d.key == DedupKey::DeliveryId)
        else {
            continue;
        };
        let received = std::time::UNIX_EPOCH + Duration::from_millis(received_ms.max(0) as u64);
        let age = now.duration_since(received).unwrap_or_default();
        dedup.remember(&source, &delivery_id, window.window.saturating_sub(age), &record_id);
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then stops accepting deliveries,
/// lets tasks finish for up to `grace`, stops the rest, and returns.
pub fn serve(config: Config, listen_override: Option<Vec<crate::config::Listen>>) -> Result<(), ServeError> {
    // Before any other thread starts: this clears `LISTEN_*` from the environment.
    let passed = bind::Passed::take();
    let closed = crate::process::inherited::close();
    if closed > 0 {
        tracing::info!(
            descriptors = closed,
            "closed the descriptors this process inherited without close-on-exec, so that no handler gets them"
        );
    }
    // Handlers run here, not on actix's worker runtimes, which are dropped at shutdown.
    let engine_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("hookrunner-engine")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let retention = crate::store::Retention {
        tasks: config.limits.keep,
        tasks_for: config.limits.keep_for,
        deliveries: config.deliveries.keep,
        refused: config.deliveries.keep_refused,
        body_bytes: config.deliveries.body_bytes,
    };
    let store = match &config.state {
        Some(State::Sqlite(path)) => {
            let store = crate::store::Store::open(path, retention, metrics.clone())?;
            tracing::info!(store = %path.display(), "state is kept in the store");
            Some(store)
        }
        Some(State::Postgres { url, connections }) => {
            let store =
                crate::store::Store::open_postgres(url, *connections, engine_runtime.handle().clone(), retention)?;
            tracing::info!(store = %store.describe(), node = %config.node.name, "state is kept in the cluster's database");
            Some(store)
        }
        None => {
            tracing::warn!(
                "no `state:` in the config: tasks and deliveries live in memory only and are lost on restart"
            );
            None
        }
    };
    // Handlers write their output into files: beside the store, or (in
    // memory only) in a directory of this process that goes when it stops.
    let (output_dir, temporary) = match &config.output_dir {
        Some(dir) => (dir.clone(), false),
        None => {
            // In the background: a big leftover must not hold up the start.
            let _ = std::thread::Builder::new()
                .name("hookrunner-sweep".into())
                .spawn(sweep_stale_output_dirs);
            (
                std::env::temp_dir().join(format!("hookrunner-{}-output", std::process::id())),
                true,
            )
        }
    };
    let outputs = crate::process::OutputDir::open(&output_dir).map_err(|source| ServeError::Output {
        dir: output_dir.clone(),
        source,
    })?;
    let engine = Engine::new(
        config.limits.clone(),
        engine_runtime.handle().clone(),
        store.clone(),
        metrics.clone(),
        outputs,
        crate::engine::NodeId {
            name: config.node.name.clone(),
            labels: config.node.labels.clone(),
        },
    );
    // The files of multipart deliveries: beside the store, or (in memory
    // only) in a directory of this process that goes when it stops.
    let uploads_dir = config
        .uploads_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("hookrunner-{}-uploads", std::process::id())));
    engine.set_uploads(crate::payload::uploads::Uploads::new(uploads_dir.clone()));
    let config = Arc::new(config);
    engine.set_programs(config.programs());
    {
        // Recovery spawns timers on the engine runtime.
        let _guard = engine_runtime.enter();
        let found = engine.recover(&|name| config.program(name))?;
        if found.unreadable > 0 {
            tracing::error!(
                unreadable = found.unreadable,
                "some unfinished tasks in the store cannot be read and were not run; each is logged above with its id (`hookrunner db check` lists them)"
            );
        }
        if found.queued + found.interrupted + found.orphaned + found.callbacks > 0 {
            tracing::info!(
                queued = found.queued,
                interrupted = found.interrupted,
                rerun = found.rerun,
                orphaned = found.orphaned,
                callbacks = found.callbacks,
                "recovered unfinished work from the store"
            );
        }
    }
    engine.start_retention(config.limits.keep_for);
    if let Some(store) = store.clone().filter(|s| s.sqlite().is_some()) {
        // Finished rows too, once, beside the serving: one that cannot be
        // read is logged with its id and shows in `/readyz` from now on.
        let scan = move || {
            match store.scan() {
            Ok((_, 0)) => {}
            Ok((read, bad)) => tracing::error!(
                rows = read,
                unreadable = bad,
                "some stored rows cannot be read; each is logged above with its id and left as it is (`hookrunner db check` lists them)"
            ),
            Err(e) => tracing::warn!(error = %e, "could not read the stored rows through once"),
        }
        };
        if let Err(e) = std::thread::Builder::new().name("hookrunner-scan".into()).spawn(scan) {
            tracing::warn!(error = %e, "could not start the read of the stored rows");
        }
    }

    let engine_handle = engine_runtime.handle().clone();
    actix_web::rt::System::new().block_on({
        let engine = engine.clone();
        let store = store.clone();
        async move {
            // Before anything can be started: a SIGTERM must never hit the default handler.
            let mut signals = Signals::new()?;
            let watch = config.server.watch_config;
            let node = config.node.clone();
            let clustered = matches!(config.state, Some(State::Postgres { .. }));
            let app = Application::build(config, engine.clone(), store.clone(), listen_override, passed)?;
            if clustered {
                // Joined before the first delivery is taken: its address is known now.
                let url = match (&node.url, &app.first_tcp) {
                    (Some(url), _) => url.clone(),
                    (None, Some(url)) => url.clone(),
                    (None, None) => return Err(ServeError::NodeUrl),
                };
                let info = crate::store::postgres::cluster::NodeInfo {
                    url,
                    name: node.name.clone(),
                    labels: node.labels.clone(),
                    lease_ms: node.lease.as_millis() as i64,
                };
                engine.join_cluster(info).await?;
                tracing::info!(node = %node.name, labels = ?node.labels, "joined the cluster");
            }
            for url in &app.urls {
                tracing::info!("listening on {url}");
            }
            let state = app.state.clone();
            let handle = app.server.handle();
            let server = actix_web::rt::spawn(app.server);
            let socket_files = app._socket_files;
            notify(&[NotifyState::Ready]);
            let _watcher = if watch { watch_config(state.clone()) } else { None };
            actix_web::rt::spawn(status_and_watchdog(state.clone(), engine_handle.clone()));
            let signal = loop {
                match signals.next().await {
                    Signal::Reload(name) => {
                        tracing::info!(signal = name, "reloading the config");
                        notify_reloading();
                        let _ = crate::reload::reload(state.reloadable());
                        notify(&[NotifyState::Ready]);
                    }
                    Signal::Stop(name) => break name,
                }
            };
            notify(&[NotifyState::Stopping]);
            // The grace in force now: a reload may have changed it.
            let grace = state.config().limits.shutdown_grace;
            tracing::info!(
                signal,
                "stopping: deliveries are refused; running tasks get up to {} to finish",
                humantime::format_duration(grace)
            );
            // Drain on the engine's runtime while the API keeps answering.
            let drained = engine_handle.spawn({
                let engine = engine.clone();
                async move { engine.shutdown(grace).await }
            });
            let _ = drained.await;
            // The event streams end after the drain's last events.
            engine.events().close();
            handle.stop(true).await;
            let _ = server.await;
            drop(socket_files);
            Ok::<(), ServeError>(())
        }
    })?;

    if let Some(store) = &store {
        store.close();
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&output_dir);
        let _ = std::fs::remove_dir_all(&uploads_dir);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Tells systemd (when it started us with `NOTIFY_SOCKET`); silent otherwise.
fn notify(states: &[NotifyState]) {
    let _ = sd_notify::notify(false, states);
}

fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// Every few seconds: `STATUS=` with the counts; and watchdog pings (every
/// 5 s, or at half of a shorter `WatchdogSec`), sent only while the engine
/// runtime answers. A store that cannot write (a full disk, a database out
/// of reach) is no reason for systemd to restart the daemon: it refuses
/// deliveries with 503 meanwhile, running tasks go on, and it recovers by
/// itself once the store writes again (`/readyz` says so).
async fn status_and_watchdog(state: web::Data<AppState>, engine_runtime: tokio::runtime::Handle) {
    let watchdog = watchdog_interval().map(|d| d / 2);
    let every = watchdog.unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    let mut last_status = String::new();
    loop {
        tick.tick().await;
        let (running, queued) = state.engine.counts();
        let status = format!("{running} running, {queued} queued");
        if status != last_status {
            notify(&[NotifyState::Status(&status)]);
            last_status = status;
        }
        if watchdog.is_some() {
            let runtime_alive = tokio::time::timeout(Duration::from_secs(2), engine_runtime.spawn(async {}))
                .await
                .is_ok();
            if runtime_alive {
                notify(&[NotifyState::Watchdog]);
            } else {
                tracing::error!("skipping the watchdog ping: the task runtime does not answer");
            }
        }
    }
}

/// `WATCHDOG_USEC`, for this process: as sd_watchdog_enabled(3) reads it, a
/// `WATCHDOG_PID` that is set must be ours.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => (usec > 0).then(|| Duration::from_micros(usec)),
    }
}

/// Watches the config's directory (so editors' rename-over-save, `git pull`
/// and ConfigMap symlink swaps are seen) and reloads after changes settle.
fn watch_config(state: web::Data<AppState>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let path: PathBuf = state.config_path.clone();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name()?.to_os_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            // Our file, or a `..data`-style symlink swap in the same directory.
            let relevant = event.paths.iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| n == name.as_os_str() || n.to_string_lossy().starts_with(".."))
            });
            if relevant && !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|e| tracing::error!("cannot watch the config: {e}"))
    .ok()?;
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::error!("cannot watch `{}`: {e}", dir.display());
        return None;
    }
    actix_web::rt::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: editors write in several steps.
            tokio::time::sleep(Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
            notify_reloading();
            let _ = crate::reload::reload(state.reloadable());
            notify(&[NotifyState::Ready]);
        }
    });
    tracing::info!(dir = %dir.display(), "watching the config for changes");
    Some(watcher)
}

enum Signal {
    Reload(&'static str),
    Stop(&'static str),
}

/// The signals the daemon handles, registered once for its whole life:
/// SIGTERM, SIGINT and SIGQUIT stop it gracefully; SIGHUP and SIGUSR1 (which
/// adnanh/webhook users send) reload the config; every other signal whose
/// default action would kill the daemon is logged and ignored. (SIGPIPE is
/// ignored by the Rust runtime already; SIGKILL and SIGSTOP cannot be caught.)
struct Signals {
    stop: Vec<(&'static str, tokio::signal::unix::Signal)>,
    reload: Vec<(&'static str, tokio::signal::unix::Signal)>,
    ignore: Vec<(&'static str, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Result<Self, ServeError> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |list: &[(&'static str, i32)]| {
            list.iter()
                .map(|(name, n)| {
                    signal(SignalKind::from_raw(*n))
                        .map(|s| (*name, s))
                        .map_err(|source| ServeError::Signals { signal: name, source })
                })
                .collect::<Result<Vec<_>, ServeError>>()
        };
        use nix::sys::signal::Signal as S;
        let n = |s: S| s as i32;
        Ok(Signals {
            stop: listen(&[
                ("SIGTERM", n(S::SIGTERM)),
                ("SIGINT", n(S::SIGINT)),
                ("SIGQUIT", n(S::SIGQUIT)),
            ])?,
            reload: listen(&[("SIGHUP", n(S::SIGHUP)), ("SIGUSR1", n(S::SIGUSR1))])?,
            ignore: listen(&[
                ("SIGUSR2", n(S::SIGUSR2)),
                ("SIGALRM", n(S::SIGALRM)),
                ("SIGVTALRM", n(S::SIGVTALRM)),
                ("SIGPROF", n(S::SIGPROF)),
                ("SIGIO", n(S::SIGIO)),
                ("SIGPWR", n(S::SIGPWR)),
                ("SIGXCPU", n(S::SIGXCPU)),
                ("SIGXFSZ", n(S::SIGXFSZ)),
                ("SIGSTKFLT", n(S::SIGSTKFLT)),
                ("SIGPIPE", n(S::SIGPIPE)),
                ("SIGWINCH", n(S::SIGWINCH)),
            ])?,
        })
    }

    async fn next(&mut self) -> Signal {
        loop {
            let (kind, name) = {
                let all = self
                    .stop
                    .iter_mut()
                    .map(|(n, s)| (0u8, *n, s))
                    .chain(self.reload.iter_mut().map(|(n, s)| (1u8, *n, s)))
                    .chain(self.ignore.iter_mut().map(|(n, s)| (2u8, *n, s)))
                    .map(|(kind, name, s)| Box::pin(async move { s.recv().await.map(|_| (kind, name)) }));
                match futures_util::future::select_all(all).await.0 {
                    Some(got) => got,
                    None => continue,
                }
            };
            match kind {
                0 => return Signal::Stop(name),
                1 => return Signal::Reload(name),
                // One per handler that exits without reading all of its
                // stdin (the write to its pipe fails): routine, not news.
                _ if name == "SIGPIPE" => tracing::debug!(signal = name, "signal ignored"),
                _ => tracing::info!(signal = name, "signal ignored"),
            }
        }
    }
}

/// Removes the temporary output directories (`hookrunner-<pid>-output`) of
/// daemons that were killed before they could remove their own: ours (same
/// user), whose process is gone.
fn sweep_stale_output_dirs() {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    // This process's user: the owner of its /proc entry.
    let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hookrunner-"))
            .and_then(|n| n.strip_suffix("-output"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let ours = entry
            .path()
            .symlink_metadata()
            .is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours
            && pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(
            count = removed,
            "removed the output directories of daemons that were killed"
        );
    }
}

//! Spawning a handler and waiting for it to end.

use super::kill::{signal_name, stop_group};
use super::output::{capture, Output, Stream};
use bytes::Bytes;
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::{sleep, timeout_at};

/// Everything needed to start one handler process.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub argv: Vec<String>,
    /// The complete environment; nothing else of the daemon's is passed.
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    pub timeout: Duration,
    pub kill_grace: Duration,
}

/// A request to stop a running handler, with the reason the task will show.
pub type Stop = watch::Receiver<Option<String>>;

/// How a handler ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by a signal we did not send.
    Signaled { signal: i32, name: String },
    /// It ran past its timeout; its group was stopped.
    TimedOut,
    /// It was stopped on request (shutdown, cancel); its group was stopped.
    Stopped(String),
    /// It could not be started; the OS reason.
    SpawnFailed(String),
}

/// How long to keep reading output after the handler exits: a background
/// process it left behind may hold the pipes open forever.
const OUTPUT_DRAIN: Duration = Duration::from_millis(250);

/// Runs one handler to its end. `on_start` gets the pid once it is running.
pub async fn run(
    spec: &RunSpec,
    stdin: Bytes,
    output: Arc<Output>,
    mut stop: Stop,
    on_start: impl FnOnce(u32),
) -> Ending {
    let mut command = Command::new(&spec.argv[0]);
    command
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.working_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout can stop everything it started.
        // `process_group` keeps std on the posix_spawn path (no pre_exec).
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Ending::SpawnFailed(format!("could not start `{}`: {e}", spec.argv[0])),
    };
    let Some(pid) = child.id() else {
        return Ending::SpawnFailed(format!("`{}` exited before it could be tracked", spec.argv[0]));
    };
    on_start(pid);
    let pgid = Pid::from_raw(pid as i32);

    let mut readers = Vec::with_capacity(3);
    if let Some(mut pipe) = child.stdin.take() {
        // A handler that never reads stdin is fine: the write fails or is abandoned.
        readers.push(tokio::spawn(async move {
            let _ = pipe.write_all(&stdin).await;
        }));
    }
    if let Some(pipe) = child.stdout.take() {
        let out = output.clone();
        readers.push(tokio::spawn(async move { capture(pipe, &out, Stream::Stdout).await }));
    }
    if let Some(pipe) = child.stderr.take() {
        let out = output.clone();
        readers.push(tokio::spawn(async move { capture(pipe, &out, Stream::Stderr).await }));
    }

    let ending = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => Ending::Exited(code),
                (None, Some(signal)) => Ending::Signaled { signal, name: signal_name(signal) },
                (None, None) => Ending::Exited(-1),
            },
            Err(e) => Ending::SpawnFailed(format!("waiting for `{}` failed: {e}", spec.argv[0])),
        },
        _ = sleep(spec.timeout) => {
            stop_group(&mut child, pgid, spec.kill_grace).await;
            Ending::TimedOut
        }
        reason = stop_requested(&mut stop) => {
            stop_group(&mut child, pgid, spec.kill_grace).await;
            Ending::Stopped(reason)
        }
    };

    let drain_until = tokio::time::Instant::now() + OUTPUT_DRAIN;
    for reader in readers {
        let abort = reader.abort_handle();
        if timeout_at(drain_until, reader).await.is_err() {
            abort.abort();
        }
    }
    ending
}

async fn stop_requested(stop: &mut Stop) -> String {
    loop {
        if let Some(reason) = stop.borrow_and_update().clone() {
            return reason;
        }
        if stop.changed().await.is_err() {
            // The sender is gone: nobody can ask any more.
            std::future::pending::<()>().await;
        }
    }
}

//! Spawning a handler and waiting for it to end.

use super::kill::{signal_name, stop_group};
use super::output::trim;
use bytes::Bytes;
use nix::unistd::Pid;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::{sleep, timeout};

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

/// Where a handler's output goes: its own stdout and stderr are these files.
pub struct OutputFiles {
    pub stdout: File,
    pub stderr: File,
    /// While it runs, disk space before the last `keep` bytes of each is freed.
    pub keep: u64,
}

/// How often a running handler's output files are trimmed.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// How long to wait for stdin to be written after the handler exits.
const STDIN_DRAIN: Duration = Duration::from_millis(250);

/// Runs one handler to its end. `on_start` gets the pid once it is running.
pub async fn run(
    spec: &RunSpec,
    stdin: Bytes,
    output: OutputFiles,
    mut stop: Stop,
    on_start: impl FnOnce(u32),
) -> Ending {
    let (Ok(stdout), Ok(stderr)) = (output.stdout.try_clone(), output.stderr.try_clone()) else {
        return Ending::SpawnFailed("could not set up the output files".into());
    };
    // A program missing from the config in force has no command at all.
    let Some(program) = spec.argv.first() else {
        return Ending::SpawnFailed("the program has no command (it is not in the config in force)".into());
    };
    // Stopped (a cancel, the shutdown) while the task made its way here:
    // its handler does not start at all.
    if let Some(reason) = stop.borrow_and_update().clone() {
        return Ending::Stopped(reason);
    }
    let mut command = Command::new(program);
    command
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.working_dir)
        // Nothing to read: no pipe (and no writer) at all.
        .stdin(if stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        // Its own group, so a timeout can stop everything it started.
        // `process_group` keeps std on the posix_spawn path (no pre_exec).
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        // `No such file or directory` may be about the directory, not the program.
        Err(e) if !spec.working_dir.is_dir() => {
            return Ending::SpawnFailed(format!(
                "could not start `{}`: its working directory `{}` does not exist ({e})",
                spec.argv[0],
                spec.working_dir.display()
            ))
        }
        Err(e) => return Ending::SpawnFailed(format!("could not start `{}`: {e}", spec.argv[0])),
    };
    let Some(pid) = child.id() else {
        return Ending::SpawnFailed(format!("`{}` exited before it could be tracked", spec.argv[0]));
    };
    on_start(pid);
    let pgid = Pid::from_raw(pid as i32);

    // The daemon's copies of the files are only kept for trimming.
    let writer = child.stdin.take().map(|mut pipe| {
        // A handler that never reads stdin is fine: the write fails or is abandoned.
        tokio::spawn(async move {
            let _ = pipe.write_all(&stdin).await;
        })
    });

    let deadline = sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut trim_tick = tokio::time::interval_at(tokio::time::Instant::now() + TRIM_EVERY, TRIM_EVERY);
    let mut punched = (0, 0);
    let ending = loop {
        tokio::select! {
            status = child.wait() => break match status {
                Ok(status) => match (status.code(), status.signal()) {
                    (Some(code), _) => Ending::Exited(code),
                    // Killed while a stop was asked for (a stop and a kill in
                    // one instant, as a fenced node sends them): stopped, as asked.
                    (None, Some(signal)) => match stop.borrow().clone() {
                        Some(reason) => Ending::Stopped(reason),
                        None => Ending::Signaled { signal, name: signal_name(signal) },
                    },
                    (None, None) => Ending::Exited(-1),
                },
                Err(e) => Ending::SpawnFailed(format!("waiting for `{}` failed: {e}", spec.argv[0])),
            },
            _ = &mut deadline => {
                stop_group(&mut child, pgid, spec.kill_grace).await;
                break Ending::TimedOut;
            }
            reason = stop_requested(&mut stop) => {
                stop_group(&mut child, pgid, spec.kill_grace).await;
                break Ending::Stopped(reason);
            }
            _ = trim_tick.tick() => {
                trim(&output.stdout, output.keep, &mut punched.0);
                trim(&output.stderr, output.keep, &mut punched.1);
            }
        }
    };
    if let Some(writer) = writer {
        let abort = writer.abort_handle();
        if timeout(STDIN_DRAIN, writer).await.is_err() {
            abort.abort();
        }
    }
    trim(&output.stdout, output.keep, &mut punched.0);
    trim(&output.stderr, output.keep, &mut punched.1);
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

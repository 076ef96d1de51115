//! Stopping a process group: SIGTERM, a grace period, then SIGKILL.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::time::Duration;
use tokio::process::Child;
use tokio::time::{sleep, Instant};

/// Whether any process of the group is still alive (zombies included).
fn group_alive(pgid: Pid) -> bool {
    killpg(pgid, None).is_ok()
}

/// Sends SIGTERM to the group, waits up to `grace` for the leader and every
/// other member to exit, then SIGKILLs whatever is left and reaps the leader.
/// Nothing of the group survives this.
pub async fn stop_group(child: &mut Child, pgid: Pid, grace: Duration) {
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    let mut leader_done = false;
    while Instant::now() < deadline {
        if !leader_done {
            tokio::select! {
                _ = child.wait() => leader_done = true,
                _ = sleep(Duration::from_millis(20)) => {}
            }
        } else if group_alive(pgid) {
            sleep(Duration::from_millis(20)).await;
        } else {
            return;
        }
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait().await;
}

/// After the leader exits on its own, processes it left behind in its group
/// are left alone (a deploy may start a server in the background); only a
/// timeout or a stop kills the group.
pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

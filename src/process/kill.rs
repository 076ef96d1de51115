//! Stopping a process group: SIGTERM, a grace period, then SIGKILL.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::time::Duration;
use tokio::process::Child;
use tokio::time::{sleep, Instant};

/// Whether any process of the group is still running. A zombie does not
/// count: it has exited, and once its parent (the leader) is gone, only the
/// system's init reaps it, which in some containers takes a second or more.
/// Where `/proc` cannot be read, any member, zombie or not, counts.
pub fn group_alive(pgid: Pid) -> bool {
    killpg(pgid, None).is_ok() && running_member(pgid.as_raw()).unwrap_or(true)
}

/// Whether `/proc` lists a process of group `pgid` that is not a zombie.
fn running_member(pgid: i32) -> Option<bool> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        // A process may exit between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(ProcStat { state, group, .. }) = parse_stat(&stat) {
            if group == pgid && state != 'Z' && state != 'X' {
                return Some(true);
            }
        }
    }
    Some(false)
}

/// What hookrunner reads of a `/proc/<pid>/stat` line: `pid (comm) state
/// ppid pgrp ... starttime` (its 22nd field), where comm may hold spaces and `)`.
#[derive(Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub parent: u32,
    pub group: i32,
    /// When it started, in clock ticks after boot (absent from a cut line).
    pub start_ticks: Option<u64>,
}

pub fn parse_stat(stat: &str) -> Option<ProcStat> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    Some(ProcStat {
        state: fields.next()?.chars().next()?,
        parent: fields.next()?.parse().ok()?,
        group: fields.next()?.parse().ok()?,
        start_ticks: fields.nth(16).and_then(|f| f.parse().ok()),
    })
}

/// Kills process group `pgid` at once (SIGKILL), for a stop that cannot
/// wait out a grace; its leader is reaped by whoever spawned it. A group
/// id under 2 is left alone (to `killpg`, 0 is the caller's own group).
pub fn kill_group(pgid: u32) {
    if let Ok(raw @ 2..) = i32::try_from(pgid) {
        let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_state_and_group_even_with_odd_names() {
        let state_and_group = |line: &str| parse_stat(line).map(|s| (s.state, s.group));
        assert_eq!(state_and_group("42 (sleep) Z 1 40 40 0 -1"), Some(('Z', 40)));
        assert_eq!(state_and_group("42 (a) b (c)) S 7 41 41 0"), Some(('S', 41)));
        assert_eq!(state_and_group("42 (sleep"), None);
        // The parent, and the start time where the line has it (field 22).
        let full = "42 (a b) S 7 41 41 0 -1 4194560 1 0 0 0 3 1 0 0 20 0 1 0 98765 1 2";
        let stat = parse_stat(full).unwrap();
        assert_eq!((stat.parent, stat.start_ticks), (7, Some(98765)));
        assert_eq!(parse_stat("42 (a) S 7 41 41 0").unwrap().start_ticks, None);
    }

    #[test]
    fn this_process_is_a_running_member_of_its_group() {
        let group = nix::unistd::getpgrp().as_raw();
        assert_eq!(running_member(group), Some(true));
        assert!(group_alive(Pid::from_raw(group)));
    }

    #[test]
    fn a_group_of_only_a_zombie_has_ended() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("/bin/true")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = Pid::from_raw(child.id() as i32);
        // Not reaped yet: a zombie, still a member for killpg.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while running_member(pgid.as_raw()) != Some(false) {
            assert!(std::time::Instant::now() < deadline, "the child never exited");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(killpg(pgid, None).is_ok());
        assert!(!group_alive(pgid));
        child.wait().unwrap();
        assert!(!group_alive(pgid));
    }
}

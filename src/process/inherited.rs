//! Descriptors the daemon was started with, open and without close-on-exec
//! (a shell's `exec 7<file`, a supervisor's leftovers): every handler would
//! get them too, since spawning passes on all such descriptors. They are
//! noted before the daemon opens anything and closed once it has adopted
//! systemd's sockets (`LISTEN_FDS`, which are kept).

use std::sync::OnceLock;

static NOTED: OnceLock<Vec<i32>> = OnceLock::new();

/// Notes the inherited descriptors that would leak into handlers. Call
/// first, before anything is opened and before `LISTEN_*` is read.
pub fn note() {
    let _ = NOTED.set(scan());
}

/// Closes what [`note`] found; returns how many. Nothing of the daemon's
/// own can have one of those numbers: they were taken when it started.
pub fn close() -> usize {
    let fds = NOTED.get().map(Vec::as_slice).unwrap_or_default();
    for &fd in fds {
        let _ = nix::unistd::close(fd);
    }
    fds.len()
}

fn scan() -> Vec<i32> {
    let listen = systemd_fds();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let open: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    // The listing's own descriptor is closed by now (and was close-on-exec).
    open.into_iter()
        .filter(|fd| *fd > 2 && !listen.contains(fd) && inheritable(*fd))
        .collect()
}

/// The descriptors systemd passed to this process (`LISTEN_PID`, `LISTEN_FDS`).
fn systemd_fds() -> std::ops::Range<i32> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<i32>().ok())
        .filter(|_| ours)
        .unwrap_or(0);
    3..3 + n.clamp(0, 4096)
}

/// Whether `fd` is open without close-on-exec (`flags:` in `/proc/self/fdinfo`, octal).
fn inheritable(fd: i32) -> bool {
    const O_CLOEXEC: u32 = 0o2000000;
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        })
        .is_some_and(|flags| flags & O_CLOEXEC == 0)
}

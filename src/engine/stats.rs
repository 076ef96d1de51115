//! Engine counters, for `/metrics`: tasks by final status, and run time per program.

use super::task::Status;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Stats {
    pub submitted: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub timed_out: AtomicU64,
    pub cancelled: AtomicU64,
    pub interrupted: AtomicU64,
    pub retries: AtomicU64,
    /// program → (finished tasks, total run time)
    per_program: Mutex<HashMap<String, ProgramStats>>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProgramStats {
    pub finished: u64,
    pub run_time: Duration,
    pub by_status: [u64; 5],
}

fn index(status: Status) -> Option<usize> {
    match status {
        Status::Succeeded => Some(0),
        Status::Failed => Some(1),
        Status::TimedOut => Some(2),
        Status::Cancelled => Some(3),
        Status::Interrupted => Some(4),
        Status::Queued | Status::Running => None,
    }
}

impl Stats {
    pub fn finished(&self, program: &str, status: Status, run_time: Option<Duration>) {
        let counter = match status {
            Status::Succeeded => &self.succeeded,
            Status::Failed => &self.failed,
            Status::TimedOut => &self.timed_out,
            Status::Cancelled => &self.cancelled,
            Status::Interrupted => &self.interrupted,
            Status::Queued | Status::Running => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut per = self.per_program.lock().unwrap_or_else(|p| p.into_inner());
        let entry = per.entry(program.to_string()).or_default();
        entry.finished += 1;
        entry.run_time += run_time.unwrap_or_default();
        if let Some(i) = index(status) {
            entry.by_status[i] += 1;
        }
    }

    pub fn per_program(&self) -> Vec<(String, ProgramStats)> {
        let per = self.per_program.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = per.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_program() {
        let s = Stats::default();
        s.finished("deploy", Status::Succeeded, Some(Duration::from_millis(300)));
        s.finished("deploy", Status::Failed, Some(Duration::from_millis(200)));
        s.finished("notify", Status::Cancelled, None);
        assert_eq!(s.succeeded.load(Ordering::Relaxed), 1);
        assert_eq!(s.failed.load(Ordering::Relaxed), 1);
        let per = s.per_program();
        assert_eq!(per[0].0, "deploy");
        assert_eq!(per[0].1.finished, 2);
        assert_eq!(per[0].1.run_time, Duration::from_millis(500));
        assert_eq!(per[1].1.by_status, [0, 0, 0, 1, 0]);
    }
}

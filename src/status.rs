//! The names every layer shares: a task's status and a delivery's outcome.
//! The config (`when:` of a callback), the HTTP API, the CLI and the store
//! all use these enums and their one spelling each.

use serde::{Deserialize, Serialize};

/// Where a task stands. `queued` and `running` are not final; the rest are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Interrupted,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::TimedOut,
        Status::Cancelled,
        Status::Interrupted,
    ];

    /// The statuses a task can end in.
    pub const FINAL: [Status; 5] = [
        Status::Succeeded,
        Status::Failed,
        Status::TimedOut,
        Status::Cancelled,
        Status::Interrupted,
    ];

    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
            Status::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a delivery was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Tasks were queued (202).
    Accepted,
    /// Authenticated and parsed, but no rule matched (200).
    Ignored,
    /// Seen inside the dedup window; nothing ran (200).
    Duplicate,
    /// Passed its source's auth, then refused (400, 415, 422, 503); `reason` says why.
    Rejected,
    /// Refused before or at its source's auth (unknown source 404,
    /// `allow_ips` 403, a body too large or too slow 413/408, bad or missing
    /// credentials 401): anyone can send these, so their records have a
    /// budget of their own (`deliveries.keep_refused`) and never push out
    /// the others.
    Refused,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Accepted,
        Outcome::Ignored,
        Outcome::Duplicate,
        Outcome::Rejected,
        Outcome::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Ignored => "ignored",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::Refused => "refused",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_each_in_text_and_json() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        assert_eq!(Status::FINAL.iter().filter(|s| s.is_final()).count(), 5);
    }
}

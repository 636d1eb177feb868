//! The unit book: per workload, the start backoff, the last error, the
//! journal tail read for the current failure, and what was last published
//! (for events).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use convoy_proto::Health;

use super::Desired;
use crate::reconcile::backoff;

/// Per workload: start backoff, the last error, and what was last
/// published (for events).
#[derive(Debug, Default)]
pub struct UnitBook {
    pub(super) entries: HashMap<String, Entry>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Entry {
    pub(super) spec_hash: String,
    /// Starts that did not bring the unit up yet: the backoff exponent.
    pub(super) failures: u32,
    /// No start before this.
    pub(super) not_before: Option<Instant>,
    /// A start or restart was asked for and did not reach systemd.
    pub(super) pending_start: bool,
    /// Why the last action failed; cleared once the unit is as wanted.
    pub(super) error: Option<String>,
    /// The journal tail of the failure it was read for
    /// (StateChangeTimestamp).
    pub(super) journal: Option<(u64, Vec<String>)>,
    /// What the last publish said, for events.
    pub(super) seen: Option<Seen>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Seen {
    pub(super) health: Health,
    pub(super) restarts: u32,
    /// The reason, while failed.
    pub(super) failure: Option<String>,
}

impl UnitBook {
    /// Forgets workloads that left the plan and resets those with a new spec.
    pub fn observe(&mut self, desired: &[Desired]) {
        let ids: HashSet<&str> = desired.iter().map(|d| d.workload.id.as_str()).collect();
        self.entries.retain(|id, _| ids.contains(id.as_str()));
        for d in desired {
            let entry = self.entries.entry(d.workload.id.clone()).or_default();
            if entry.spec_hash != d.workload.spec_hash {
                *entry = Entry {
                    spec_hash: d.workload.spec_hash.clone(),
                    seen: entry.seen.take(),
                    ..Entry::default()
                };
            }
        }
    }

    pub(super) fn blocked(&self, workload_id: &str, now: Instant) -> bool {
        self.entries
            .get(workload_id)
            .and_then(|e| e.not_before)
            .is_some_and(|t| t > now)
    }

    pub(super) fn pending_start(&self, workload_id: &str) -> bool {
        self.entries
            .get(workload_id)
            .is_some_and(|e| e.pending_start)
    }

    pub fn error(&self, workload_id: &str) -> Option<&str> {
        self.entries
            .get(workload_id)
            .and_then(|e| e.error.as_deref())
    }

    /// A start or restart reached systemd: the next one waits a backoff
    /// unless the unit comes up (`settled`).
    pub(super) fn record_start(&mut self, workload_id: &str, now: Instant) {
        let entry = self.entries.entry(workload_id.to_string()).or_default();
        entry.not_before = Some(now + backoff(entry.failures));
        entry.failures = entry.failures.saturating_add(1);
        entry.pending_start = false;
    }

    /// Records a failed action; returns whether the reason is new.
    pub(super) fn record_error(&mut self, workload_id: &str, reason: String, start: bool) -> bool {
        let entry = self.entries.entry(workload_id.to_string()).or_default();
        if start {
            entry.pending_start = true;
        }
        let new = entry.error.as_deref() != Some(reason.as_str());
        entry.error = Some(reason);
        new
    }

    /// The unit is as wanted: errors and backoff are over.
    pub(super) fn settled(&mut self, workload_id: &str, up: bool) {
        if let Some(entry) = self.entries.get_mut(workload_id) {
            entry.error = None;
            if up {
                entry.failures = 0;
                entry.not_before = None;
            }
        }
    }

    pub(super) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| e.not_before)
            .filter(|t| *t > now)
            .min()
    }
}

//! The restart book: per workload, the restarts made and the backoff that
//! gates the next create or start (Docker's restart policy, done by Convoy).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use convoy_proto::Workload;

use super::decide::keeper;
use crate::runtime::{ContainerState, Observed};

/// First restart delay; it doubles per consecutive failure.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A run at least this long resets the backoff.
pub const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// Per workload: restarts made, and the backoff that gates the next attempt.
#[derive(Debug, Default)]
pub struct RestartBook {
    entries: HashMap<String, RestartEntry>,
}

#[derive(Clone, Debug, Default)]
struct RestartEntry {
    spec_hash: String,
    /// Restarts the agent made for this spec (reported; bounds max_attempts).
    restarts: u32,
    /// Consecutive failures (short runs, failed creates): the backoff exponent.
    failures: u32,
    /// The exit (container + finish time) the current deadline belongs to.
    exit_key: Option<String>,
    /// Nothing is created or started for this workload before this.
    not_before: Option<Instant>,
    /// The delay that set `not_before`.
    delay: Duration,
    /// Why the last create or start failed; cleared by a success.
    error: Option<String>,
    /// A container of this spec was created once: a new one is a restart.
    created: bool,
    /// Why its container is not created yet (`depends_on`).
    waiting: Option<String>,
}

/// `1 s * 2^failures`, at most 5 min.
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_START
        .checked_mul(1u32.checked_shl(failures).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX)
}

impl RestartBook {
    /// Restarts made for a workload's current spec.
    pub fn restarts(&self, workload_id: &str) -> u32 {
        self.entries.get(workload_id).map_or(0, |e| e.restarts)
    }

    /// Brings the book up to date with a fresh observation: forgets workloads
    /// that left the plan, resets on a new spec, and schedules one backoff
    /// deadline per container exit. Call before `decide`.
    pub fn observe(&mut self, desired: &[Workload], observed: &[Observed], now: Instant) {
        let ids: HashSet<&str> = desired.iter().map(|w| w.id.as_str()).collect();
        self.entries.retain(|id, _| ids.contains(id.as_str()));
        for w in desired {
            self.observe_one(w, observed, now);
        }
    }

    /// `observe` for one workload, leaving the others' entries alone (a
    /// reconcile of one workload).
    pub fn observe_one(&mut self, w: &Workload, observed: &[Observed], now: Instant) {
        let entry = self.entries.entry(w.id.clone()).or_default();
        if entry.spec_hash != w.spec_hash {
            *entry = RestartEntry {
                spec_hash: w.spec_hash.clone(),
                ..RestartEntry::default()
            };
        }
        let containers: Vec<&Observed> =
            observed.iter().filter(|o| o.workload_id == w.id).collect();
        let Some(k) = keeper(w, &containers) else {
            return;
        };
        if k.state != ContainerState::Exited {
            return;
        }
        let key = k.exit_key();
        if entry.exit_key.as_deref() == Some(key.as_str()) {
            return;
        }
        if k.ran_for().is_some_and(|ran| ran >= HEALTHY_RUN) {
            entry.failures = 0;
        }
        entry.delay = backoff(entry.failures);
        entry.not_before = Some(now + entry.delay);
        entry.failures = entry.failures.saturating_add(1);
        entry.exit_key = Some(key);
    }

    /// Why the last create or start of the workload failed, until one works.
    pub fn error(&self, workload_id: &str) -> Option<&str> {
        self.entries
            .get(workload_id)
            .and_then(|e| e.error.as_deref())
    }

    /// Why the workload's container waits to be created (`depends_on`).
    pub fn waiting(&self, workload_id: &str) -> Option<&str> {
        self.entries
            .get(workload_id)
            .and_then(|e| e.waiting.as_deref())
    }

    /// Sets or clears why the workload waits; returns whether it changed.
    pub(crate) fn set_waiting(&mut self, workload_id: &str, why: Option<String>) -> bool {
        let entry = self.entries.entry(workload_id.to_string()).or_default();
        let changed = entry.waiting != why;
        entry.waiting = why;
        changed
    }

    /// The delay of the workload's current restart backoff.
    pub fn delay(&self, workload_id: &str) -> Option<Duration> {
        self.entries.get(workload_id).map(|e| e.delay)
    }

    /// The pending deadline of one workload.
    pub fn deadline(&self, workload_id: &str, now: Instant) -> Option<Instant> {
        self.blocked_until(workload_id, now)
    }

    pub(crate) fn blocked_until(&self, workload_id: &str, now: Instant) -> Option<Instant> {
        self.entries
            .get(workload_id)
            .and_then(|e| e.not_before)
            .filter(|t| *t > now)
    }

    /// Records a failed create or start; returns whether the reason is new.
    pub(crate) fn record_failure(
        &mut self,
        workload_id: &str,
        reason: String,
        now: Instant,
    ) -> bool {
        let entry = self.entries.entry(workload_id.to_string()).or_default();
        entry.delay = backoff(entry.failures);
        entry.not_before = Some(now + entry.delay);
        entry.failures = entry.failures.saturating_add(1);
        let new = entry.error.as_deref() != Some(reason.as_str());
        entry.error = Some(reason);
        new
    }

    /// Records a container that now runs; returns whether it counts as a
    /// restart.
    pub(crate) fn record_running(&mut self, workload_id: &str, restarted: bool) -> bool {
        let entry = self.entries.entry(workload_id.to_string()).or_default();
        let restart = restarted || entry.created;
        if restart {
            entry.restarts = entry.restarts.saturating_add(1);
        }
        entry.created = true;
        entry.error = None;
        entry.not_before = None;
        restart
    }

    /// The earliest pending deadline, for the loop's next wake-up.
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| e.not_before)
            .filter(|t| *t > now)
            .min()
    }
}

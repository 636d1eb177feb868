//! The pure half of the probes: one probe's health from its consecutive
//! results, and the health of an instance from all of its checks.

use std::time::Duration;

use convoy_proto::Health;

use super::config::ProbeConfig;

/// One probe's health, from its consecutive results: starting until it
/// passes `success_threshold` times in a row, unhealthy after
/// `failure_threshold` failures in a row, healthy again after
/// `success_threshold` passes. Failures while starting inside the start
/// period do not count (Docker's `start_period`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeState {
    pub health: Health,
    pub successes: u32,
    pub failures: u32,
    /// The last run's output or error.
    pub output: String,
}

impl Default for ProbeState {
    fn default() -> Self {
        ProbeState {
            health: Health::Starting,
            successes: 0,
            failures: 0,
            output: String::new(),
        }
    }
}

impl ProbeState {
    /// Records one run that ended `since_start` after the container
    /// started. Returns whether the health changed.
    pub fn record(
        &mut self,
        config: &ProbeConfig,
        passed: bool,
        output: String,
        since_start: Duration,
    ) -> bool {
        let before = self.health;
        self.output = output;
        if passed {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.successes >= config.success_threshold {
                self.health = Health::Healthy;
            }
        } else {
            self.successes = 0;
            if self.health == Health::Starting && since_start < config.start_period {
                self.failures = 0;
            } else {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= config.failure_threshold {
                    self.health = Health::Unhealthy;
                }
            }
        }
        self.health != before
    }
}

/// One check's health, as `combine` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckView {
    pub name: String,
    pub health: Health,
    pub output: String,
}

/// An instance's health as statuses carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Combined {
    pub health: Health,
    /// While unhealthy: the first failing check, and its last output.
    pub failing_probe: String,
    pub output: String,
}

/// Unhealthy if any check is, starting if any is, healthy if all are;
/// unspecified without checks.
pub fn combine(checks: &[CheckView]) -> Combined {
    if let Some(failing) = checks.iter().find(|c| c.health == Health::Unhealthy) {
        return Combined {
            health: Health::Unhealthy,
            failing_probe: failing.name.clone(),
            output: failing.output.clone(),
        };
    }
    let health = if checks.is_empty() {
        Health::Unspecified
    } else if checks.iter().any(|c| c.health != Health::Healthy) {
        Health::Starting
    } else {
        Health::Healthy
    };
    Combined {
        health,
        ..Combined::default()
    }
}

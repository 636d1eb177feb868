//! The fake runtime of a simulated agent: the instances its plans hold,
//! their states, and the status reports they make.

use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

use convoy_proto as pb;
use rand::Rng;

/// The fake runtime: what "runs" on the simulated host. It outlives
/// sessions, as containers outlive an agent's reconnects.
#[derive(Default)]
pub(super) struct Sim {
    pub(super) running: BTreeMap<String, pb::WorkloadStatus>,
    pub(super) generation: u64,
    flip: bool,
}

impl Sim {
    /// Takes a plan: returns the report of what changed (new instances
    /// starting or running, removed ones gone).
    pub(super) fn apply(
        &mut self,
        plan: &pb::NodePlan,
        state: pb::WorkloadState,
    ) -> Option<pb::StatusReport> {
        self.generation = plan.generation;
        let now = unix_ms();
        let mut changed = Vec::new();
        for w in &plan.workloads {
            let same = self
                .running
                .get(&w.id)
                .is_some_and(|s| s.revision == w.revision && s.spec_hash == w.spec_hash);
            if same {
                continue;
            }
            let status = pb::WorkloadStatus {
                id: w.id.clone(),
                revision: w.revision,
                spec_hash: w.spec_hash.clone(),
                state: state as i32,
                container_id: format!("sim{:016x}", rand::rng().random::<u64>()),
                container_name: format!("{}-{}", w.service, w.index),
                updated_unix_ms: now,
                ..Default::default()
            };
            self.running.insert(w.id.clone(), status.clone());
            changed.push(status);
        }
        let removed: Vec<String> = self
            .running
            .keys()
            .filter(|id| !plan.workloads.iter().any(|w| &w.id == *id))
            .cloned()
            .collect();
        for id in &removed {
            self.running.remove(id);
        }
        (!changed.is_empty() || !removed.is_empty()).then_some(pb::StatusReport {
            full_snapshot: false,
            workloads: changed,
            removed,
        })
    }

    /// Instances still starting are now running.
    pub(super) fn started(&mut self) -> Option<pb::StatusReport> {
        let now = unix_ms();
        let mut changed = Vec::new();
        for s in self.running.values_mut() {
            if s.state == pb::WorkloadState::Starting as i32 {
                s.state = pb::WorkloadState::Running as i32;
                s.updated_unix_ms = now;
                changed.push(s.clone());
            }
        }
        (!changed.is_empty()).then_some(pb::StatusReport {
            full_snapshot: false,
            workloads: changed,
            removed: Vec::new(),
        })
    }

    /// One instance's health flipped: a report that is one health event.
    pub(super) fn flip_health(&mut self) -> Option<pb::StatusReport> {
        let s = self.running.values_mut().next()?;
        self.flip = !self.flip;
        s.health = if self.flip {
            pb::Health::Unhealthy
        } else {
            pb::Health::Healthy
        } as i32;
        s.failing_probe = if self.flip {
            "bench".into()
        } else {
            String::new()
        };
        s.updated_unix_ms = unix_ms();
        Some(pb::StatusReport {
            full_snapshot: false,
            workloads: vec![s.clone()],
            removed: Vec::new(),
        })
    }

    pub(super) fn snapshot(&self) -> pb::StatusReport {
        pb::StatusReport {
            full_snapshot: true,
            workloads: self.running.values().cloned().collect(),
            removed: Vec::new(),
        }
    }
}

pub(super) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

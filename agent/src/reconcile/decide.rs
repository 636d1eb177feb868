//! The pure half of the container reconciler: from the plan's workloads
//! and the containers freshly observed to the actions that close the gap.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use convoy_proto::restart_policy::Condition;
use convoy_proto::{workload, Health, Workload};

use super::book::RestartBook;
use crate::runtime::{ContainerState, Observed};

/// How long to wait for a container Docker is busy removing.
pub const REMOVING_WAIT: Duration = Duration::from_secs(1);

/// One step towards the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// No container of this workload exists yet.
    Create(Workload),
    /// Start an existing container of the right spec; `after_exit` is the
    /// exit code when this restarts a container that ran and exited.
    Start {
        workload_id: String,
        container_id: String,
        after_exit: Option<i64>,
    },
    /// Stop and remove the old containers, then create the new one.
    Replace {
        workload: Workload,
        old: Vec<String>,
    },
    Remove {
        container_id: String,
        workload_id: String,
        why: RemoveReason,
    },
    /// Nothing to do for this workload before `until` (backoff).
    Wait { workload_id: String, until: Instant },
}

impl Action {
    /// The workload the action is for (an orphan's own workload id).
    pub fn workload_id(&self) -> &str {
        match self {
            Self::Create(w) | Self::Replace { workload: w, .. } => &w.id,
            Self::Start { workload_id, .. }
            | Self::Remove { workload_id, .. }
            | Self::Wait { workload_id, .. } => workload_id,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveReason {
    /// A second container of the same spec.
    Duplicate,
    /// An older spec of a workload that already runs the current one.
    Outdated,
    /// Its workload is not in the plan.
    NotInPlan,
}

/// Ranks containers of one spec: the one to keep is the most alive, then the
/// newest.
fn rank(state: ContainerState) -> u8 {
    match state {
        ContainerState::Running => 4,
        ContainerState::Paused | ContainerState::Restarting => 3,
        ContainerState::Created => 2,
        ContainerState::Exited => 1,
        ContainerState::Dead | ContainerState::Removing => 0,
    }
}

/// The container of the workload's current spec to keep, if any.
pub(crate) fn keeper<'a>(w: &Workload, containers: &[&'a Observed]) -> Option<&'a Observed> {
    containers
        .iter()
        .copied()
        .filter(|c| c.spec_hash == w.spec_hash)
        .filter(|c| !matches!(c.state, ContainerState::Dead | ContainerState::Removing))
        .max_by(|a, b| {
            (rank(a.state), a.created_unix, &a.id).cmp(&(rank(b.state), b.created_unix, &b.id))
        })
}

fn restart_condition(w: &Workload) -> (Condition, u32) {
    match &w.runtime {
        Some(workload::Runtime::Container(spec)) => {
            let policy = spec.restart.unwrap_or_default();
            let condition = Condition::try_from(policy.condition).unwrap_or(Condition::Any);
            (condition, policy.max_attempts)
        }
        Some(workload::Runtime::Unit(_) | workload::Runtime::Swarm(_)) | None => {
            (Condition::Any, 0)
        }
    }
}

/// Compose `depends_on: {restart: true}`: whether an instance on this node
/// of a service `w` depends on that way has a container of its current
/// spec made after `k` (it was replaced since `k` was created).
fn restarted_dependency(
    w: &Workload,
    k: &Observed,
    desired: &[Workload],
    observed: &HashMap<&str, Vec<&Observed>>,
) -> bool {
    let Some(workload::Runtime::Container(spec)) = &w.runtime else {
        return false;
    };
    spec.depends_on.iter().filter(|dep| dep.restart).any(|dep| {
        desired
            .iter()
            .filter(|d| d.env == w.env && d.service == dep.service && d.id != w.id)
            .any(|d| {
                observed
                    .get(d.id.as_str())
                    .and_then(|containers| keeper(d, containers))
                    .is_some_and(|dk| dk.created_unix > k.created_unix)
            })
    })
}

/// Whether an exited container is to be restarted; `Err` says why not.
pub(crate) fn restart_allowed(
    w: &Workload,
    exited: &Observed,
    restarts: u32,
) -> Result<(), String> {
    let (condition, max_attempts) = restart_condition(w);
    let failed = exited.oom_killed || exited.exit_code != Some(0);
    match condition {
        Condition::None => return Err("restart policy `none`".to_string()),
        Condition::OnFailure if !failed => {
            return Err("restart policy `on-failure` does not restart a clean exit".to_string())
        }
        Condition::OnFailure | Condition::Any | Condition::Unspecified => {}
    }
    if max_attempts > 0 && restarts >= max_attempts {
        return Err(format!("gave up after {restarts} restarts (max_attempts)"));
    }
    Ok(())
}

/// The actions that bring `observed` towards `desired`. Pure: the same
/// inputs give the same actions. `observed` must hold this node's containers
/// only, and `restarts` must have seen `observed` (`RestartBook::observe`).
pub fn decide(
    desired: &[Workload],
    observed: &[Observed],
    restarts: &RestartBook,
    now: Instant,
) -> Vec<Action> {
    decide_among(desired, observed, desired, observed, restarts, now)
}

/// [`decide`] for some of the plan's workloads (`desired`, with their
/// containers `observed`), where `plan` and `everything` are the whole plan
/// and every container of the node: what `depends_on: {restart: true}`
/// compares with.
pub fn decide_among(
    desired: &[Workload],
    observed: &[Observed],
    plan: &[Workload],
    everything: &[Observed],
    restarts: &RestartBook,
    now: Instant,
) -> Vec<Action> {
    let mut by_workload: HashMap<&str, Vec<&Observed>> = HashMap::new();
    for o in observed {
        by_workload
            .entry(o.workload_id.as_str())
            .or_default()
            .push(o);
    }
    // Every workload's containers, for `depends_on: {restart: true}`.
    let mut all: HashMap<&str, Vec<&Observed>> = HashMap::new();
    for o in everything {
        all.entry(o.workload_id.as_str()).or_default().push(o);
    }
    let mut actions = Vec::new();
    for w in desired {
        let containers = by_workload.remove(w.id.as_str()).unwrap_or_default();
        let keep = keeper(w, &containers);
        let stale: Vec<&Observed> = containers
            .iter()
            .copied()
            .filter(|c| Some(c.id.as_str()) != keep.map(|k| k.id.as_str()))
            .filter(|c| c.state != ContainerState::Removing)
            .collect();
        let blocked = restarts.blocked_until(&w.id, now);
        let wait = |until| Action::Wait {
            workload_id: w.id.clone(),
            until,
        };
        let Some(k) = keep else {
            if containers
                .iter()
                .any(|c| c.state == ContainerState::Removing)
            {
                actions.push(wait(now + REMOVING_WAIT));
            } else if let Some(until) = blocked {
                // The old containers keep serving while the new spec waits.
                actions.push(wait(until));
            } else if stale.is_empty() || starts_beside(w, &stale) {
                // start-first: the old containers keep serving until the
                // new one is up (see below).
                actions.push(Action::Create(w.clone()));
            } else {
                actions.push(Action::Replace {
                    workload: w.clone(),
                    old: stale.iter().map(|c| c.id.clone()).collect(),
                });
            }
            continue;
        };
        let new_is_up = k.state == ContainerState::Running
            && k.health
                .as_ref()
                .is_none_or(|h| h.status == Health::Healthy);
        for s in &stale {
            if w.start_first && s.spec_hash != w.spec_hash && s.state.is_up() && !new_is_up {
                continue;
            }
            actions.push(Action::Remove {
                container_id: s.id.clone(),
                workload_id: w.id.clone(),
                why: if s.spec_hash == w.spec_hash {
                    RemoveReason::Duplicate
                } else {
                    RemoveReason::Outdated
                },
            });
        }
        if k.state.is_up() && blocked.is_none() && restarted_dependency(w, k, plan, &all) {
            // Compose `restart: true`: the dependency was replaced after
            // this container was made; `gate` holds the replacement until
            // the dependency meets its condition again.
            actions.push(Action::Replace {
                workload: w.clone(),
                old: vec![k.id.clone()],
            });
            continue;
        }
        let start = |after_exit| Action::Start {
            workload_id: w.id.clone(),
            container_id: k.id.clone(),
            after_exit,
        };
        match k.state {
            ContainerState::Created => match blocked {
                Some(until) => actions.push(wait(until)),
                None => actions.push(start(None)),
            },
            ContainerState::Exited if restart_allowed(w, k, restarts.restarts(&w.id)).is_ok() => {
                match blocked {
                    Some(until) => actions.push(wait(until)),
                    None => actions.push(start(Some(k.exit_code.unwrap_or(-1)))),
                }
            }
            _ => {}
        }
    }
    // What is left belongs to no desired workload.
    let mut orphans: Vec<&Observed> = by_workload.into_values().flatten().collect();
    orphans.sort_by(|a, b| a.id.cmp(&b.id));
    for o in orphans {
        if o.state != ContainerState::Removing {
            actions.push(Action::Remove {
                container_id: o.id.clone(),
                workload_id: o.workload_id.clone(),
                why: RemoveReason::NotInPlan,
            });
        }
    }
    actions
}

/// start-first: the new container can start beside the old ones (their
/// names differ, as they carry the revision).
fn starts_beside(w: &Workload, stale: &[&Observed]) -> bool {
    let name = crate::runtime::container_name(w);
    w.start_first && stale.iter().all(|s| s.name.trim_start_matches('/') != name)
}

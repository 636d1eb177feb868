//! A Swarm service's status as one workload: pure, from what one pass read
//! (the service, its tasks, the nodes' hostnames).

use std::collections::{BTreeMap, HashMap};

use bollard::models::{Service, Task, TaskState};
use convoy_proto::{Health, SwarmServiceSpec, SwarmTask, Workload, WorkloadState, WorkloadStatus};

use super::{label, update_state};
use crate::runtime::labels;

/// Most task slots reported per service.
pub const MAX_TASKS: usize = 1024;

/// What a pass saw of one Swarm service.
pub struct Observed<'a> {
    pub workload: &'a Workload,
    pub spec: &'a SwarmServiceSpec,
    /// `None`: not in Swarm (yet).
    pub service: Option<&'a Service>,
    /// All its tasks Swarm keeps (the history of each slot included).
    pub tasks: &'a [Task],
    /// Swarm node ID → hostname.
    pub hostnames: &'a HashMap<String, String>,
    /// Swarm gave up on the plan's spec (`super::gave_up`).
    pub given_up: bool,
    /// What failed in this pass, if anything.
    pub error: Option<&'a str>,
}

/// A task slot's key: the slot number, or (global services) the node.
pub fn task_key(t: &SwarmTask) -> String {
    if t.slot > 0 {
        t.slot.to_string()
    } else if t.node_hostname.is_empty() {
        t.node_id.clone()
    } else {
        t.node_hostname.clone()
    }
}

fn state_word(s: Option<TaskState>) -> String {
    s.map(|s| s.to_string()).unwrap_or_default()
}

fn unix_ms(text: Option<&String>) -> i64 {
    text.and_then(|t| convoy_api::clock::parse_rfc3339(t))
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One task as the wire reports it.
fn swarm_task(t: &Task, hostnames: &HashMap<String, String>) -> SwarmTask {
    let status = t.status.as_ref();
    let node_id = t.node_id.clone().unwrap_or_default();
    SwarmTask {
        task_id: t.id.clone().unwrap_or_default(),
        slot: t.slot.and_then(|s| u32::try_from(s).ok()).unwrap_or(0),
        node_hostname: hostnames.get(&node_id).cloned().unwrap_or_default(),
        node_id,
        state: state_word(status.and_then(|s| s.state)),
        desired_state: state_word(t.desired_state),
        error: status.and_then(|s| s.err.clone()).unwrap_or_default(),
        message: status.and_then(|s| s.message.clone()).unwrap_or_default(),
        container_id: status
            .and_then(|s| s.container_status.as_ref())
            .and_then(|c| c.container_id.clone())
            .unwrap_or_default(),
        revision: t
            .spec
            .as_ref()
            .and_then(|s| s.container_spec.as_ref())
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(labels::REVISION))
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        updated_unix_ms: unix_ms(
            status
                .and_then(|s| s.timestamp.as_ref())
                .or(t.updated_at.as_ref()),
        ),
    }
}

/// The current task of each slot (replicated) or node (global), in slot
/// order, at most [`MAX_TASKS`]: the one Swarm wants running, else the
/// newest (Swarm bumps a task's version on every change of its status, so
/// an old task being shut down may be "newer" than its replacement).
pub fn newest_tasks(tasks: &[Task], hostnames: &HashMap<String, String>) -> Vec<SwarmTask> {
    // (slot, node) → ((wanted running, version), task)
    type Rank = (bool, u64);
    let mut newest: BTreeMap<(u32, String), (Rank, &Task)> = BTreeMap::new();
    for t in tasks {
        let slot = t.slot.and_then(|s| u32::try_from(s).ok()).unwrap_or(0);
        let node = if slot > 0 {
            String::new()
        } else {
            t.node_id.clone().unwrap_or_default()
        };
        let wanted = t.desired_state == Some(TaskState::RUNNING);
        let version = (
            wanted,
            t.version.as_ref().and_then(|v| v.index).unwrap_or(0),
        );
        match newest.get(&(slot, node.clone())) {
            Some((v, _)) if *v >= version => {}
            _ => {
                newest.insert((slot, node), (version, t));
            }
        }
    }
    newest
        .into_values()
        .take(MAX_TASKS)
        .map(|(_, t)| swarm_task(t, hostnames))
        .collect()
}

/// The workload's status: FAILED when Swarm gave up on the plan's spec;
/// RUNNING when no update is under way and every wanted task runs the
/// service's current revision; else STARTING, saying how many run.
pub fn derive_status(o: Observed<'_>) -> WorkloadStatus {
    let w = o.workload;
    let Some(svc) = o.service else {
        return WorkloadStatus {
            id: w.id.clone(),
            revision: w.revision,
            state: WorkloadState::Pending as i32,
            reason: o
                .error
                .map(str::to_string)
                .unwrap_or_else(|| format!("creating Swarm service {}", o.spec.name)),
            ..Default::default()
        };
    };
    let hash = label(svc, labels::SPEC_HASH).to_string();
    let revision: u64 = label(svc, labels::REVISION).parse().unwrap_or(0);
    let update = update_state(svc);
    let message = svc
        .update_status
        .as_ref()
        .and_then(|u| u.message.clone())
        .unwrap_or_default();
    let tasks = newest_tasks(o.tasks, o.hostnames);
    let desired_running = |t: &&SwarmTask| t.desired_state == "running";
    let wanted = if o.spec.global {
        tasks.iter().filter(desired_running).count()
    } else {
        o.spec.replicas as usize
    };
    let running = tasks
        .iter()
        .filter(desired_running)
        .filter(|t| t.state == "running" && t.revision == revision)
        .count();
    let in_progress = matches!(update.as_str(), "updating" | "rollback_started");
    let (state, reason) = if o.given_up {
        (WorkloadState::Failed, format!("Swarm {update}: {message}"))
    } else if let Some(e) = o.error {
        (WorkloadState::Starting, e.to_string())
    } else if !in_progress && running == wanted && hash == w.spec_hash {
        (WorkloadState::Running, String::new())
    } else {
        let mut why = format!("{running}/{wanted} tasks running");
        if in_progress {
            why = format!("Swarm {update}: {why}");
        }
        if let Some(err) = tasks.iter().rev().map(|t| &t.error).find(|e| !e.is_empty()) {
            why.push_str(": ");
            why.push_str(err);
        }
        (WorkloadState::Starting, why)
    };
    let has_check = o
        .spec
        .container
        .as_ref()
        .and_then(|c| c.healthcheck.as_ref())
        .is_some_and(|h| !h.disable && h.test.first().is_none_or(|t| t != "NONE"));
    let failed_tasks = o
        .tasks
        .iter()
        .filter(|t| {
            matches!(
                t.status.as_ref().and_then(|s| s.state),
                Some(TaskState::FAILED | TaskState::REJECTED)
            )
        })
        .count();
    WorkloadStatus {
        id: w.id.clone(),
        revision,
        spec_hash: hash,
        state: state as i32,
        reason,
        restarts: u32::try_from(failed_tasks).unwrap_or(u32::MAX),
        // The newest task's change (a pass that sees nothing new publishes
        // nothing new).
        updated_unix_ms: tasks.iter().map(|t| t.updated_unix_ms).max().unwrap_or(0),
        health: if state == WorkloadState::Running && has_check {
            Health::Healthy as i32
        } else {
            Health::Unspecified as i32
        },
        swarm_tasks: tasks,
        swarm_update_state: update,
        swarm_update_message: message,
        ..Default::default()
    }
}

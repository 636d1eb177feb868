//! Compose `depends_on` on the node: a workload's container is created (on
//! first deploy, or to replace it) only once every instance on this node of
//! each service it depends on meets the condition, as the agent reports
//! them. Dependencies running on other nodes are not checked here.

use std::collections::BTreeMap;
use std::time::Duration;

use convoy_proto::dependency::Condition;
use convoy_proto::{workload, Health, Workload, WorkloadState, WorkloadStatus};

/// How long a workload waits before its dependencies are looked at again
/// (besides the sync a container event brings).
pub const DEPENDS_WAIT: Duration = Duration::from_secs(1);

/// What `unmet` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    /// Why the workload waits: the first dependency not met; `None`: go.
    pub waiting: Option<String>,
    /// Dependencies with no instance on this node (not checked).
    pub elsewhere: Vec<String>,
}

/// Checks `w`'s dependencies against the other workloads of its environment
/// in `plan` and their last reported `statuses`. A status of another spec
/// than the plan's (an instance being replaced) does not count.
pub fn unmet(w: &Workload, plan: &[Workload], statuses: &BTreeMap<String, WorkloadStatus>) -> Gate {
    let mut gate = Gate::default();
    let Some(workload::Runtime::Container(spec)) = &w.runtime else {
        return gate;
    };
    for dep in &spec.depends_on {
        let instances: Vec<&Workload> = plan
            .iter()
            .filter(|d| d.env == w.env && d.service == dep.service && d.id != w.id)
            .collect();
        if instances.is_empty() {
            gate.elsewhere.push(dep.service.clone());
            continue;
        }
        let condition = Condition::try_from(dep.condition).unwrap_or(Condition::Started);
        let met = |d: &&Workload| {
            let Some(status) = statuses.get(&d.id).filter(|s| s.spec_hash == d.spec_hash) else {
                return false;
            };
            let state = WorkloadState::try_from(status.state).unwrap_or(WorkloadState::Unspecified);
            let health = Health::try_from(status.health).unwrap_or(Health::Unspecified);
            match condition {
                Condition::Unspecified | Condition::Started => state == WorkloadState::Running,
                Condition::Healthy => state == WorkloadState::Running && health == Health::Healthy,
                Condition::CompletedSuccessfully => {
                    state == WorkloadState::Exited && status.exit_code == 0
                }
            }
        };
        if !instances.iter().all(met) {
            let what = match condition {
                Condition::Unspecified | Condition::Started => "start",
                Condition::Healthy => "be healthy",
                Condition::CompletedSuccessfully => "complete successfully",
            };
            gate.waiting = Some(format!(
                "waiting for `{}` to {what} (depends_on)",
                dep.service
            ));
            break;
        }
    }
    gate
}

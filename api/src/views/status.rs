//! `convoy status -o json`: each service, its instances and rollout, and
//! the control plane (coordinators and store).

use std::collections::BTreeMap;

use convoy_proto as pb;
use pb::WorkloadState;
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq)]
pub struct StatusJson {
    pub services: Vec<ServiceStatusJson>,
    /// The coordinators and the store; absent from old coordinators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlaneJson>,
}

/// The coordinators sharing one store, who leads, and how the store is.
#[derive(Debug, Serialize, PartialEq)]
pub struct ControlPlaneJson {
    pub coordinators: Vec<CoordinatorJson>,
    /// The leading coordinator's id; empty while nobody leads.
    pub leader: String,
    pub store: StoreHealthJson,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CoordinatorJson {
    pub id: String,
    pub hostname: String,
    pub api: String,
    pub agents: String,
    pub http: String,
    pub version: String,
    pub started_unix_ms: i64,
    pub leader: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct StoreHealthJson {
    pub backend: String,
    pub location: String,
    pub healthy: bool,
    pub members: Vec<String>,
    pub error: String,
}

impl From<&pb::ControlPlane> for ControlPlaneJson {
    fn from(p: &pb::ControlPlane) -> Self {
        let pb::ControlPlane {
            coordinators,
            leader,
            store,
        } = p;
        Self {
            coordinators: coordinators
                .iter()
                .map(|c| {
                    let pb::CoordinatorInfo {
                        id,
                        hostname,
                        api,
                        agents,
                        http,
                        version,
                        started_unix_ms,
                        leader,
                    } = c;
                    CoordinatorJson {
                        id: id.clone(),
                        hostname: hostname.clone(),
                        api: api.clone(),
                        agents: agents.clone(),
                        http: http.clone(),
                        version: version.clone(),
                        started_unix_ms: *started_unix_ms,
                        leader: *leader,
                    }
                })
                .collect(),
            leader: leader.clone(),
            store: store
                .as_ref()
                .map(|s| {
                    let pb::StoreHealth {
                        backend,
                        location,
                        healthy,
                        members,
                        error,
                    } = s;
                    StoreHealthJson {
                        backend: backend.clone(),
                        location: location.clone(),
                        healthy: *healthy,
                        members: members.clone(),
                        error: error.clone(),
                    }
                })
                .unwrap_or(StoreHealthJson {
                    backend: String::new(),
                    location: String::new(),
                    healthy: false,
                    members: Vec::new(),
                    error: String::new(),
                }),
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ServiceStatusJson {
    pub name: String,
    pub env: String,
    pub revision: u64,
    pub desired: u32,
    pub running: u32,
    /// Instances of the current revision running and passing their checks.
    pub healthy: u32,
    pub has_checks: bool,
    pub image: String,
    pub instances: Vec<InstanceStatusJson>,
    /// The current or last rollout.
    pub rollout: Option<RolloutJson>,
    /// Compose `deploy.labels`: the service's own labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub deploy_labels: BTreeMap<String, String>,
    /// Swarm services only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmServiceJson>,
}

/// A Swarm service's cluster, driver and Swarm's update state.
#[derive(Debug, Serialize, PartialEq)]
pub struct SwarmServiceJson {
    pub cluster: String,
    pub service_name: String,
    /// The node whose agent drives the cluster; empty: none.
    pub driver: String,
    pub driver_connected: bool,
    pub update_state: String,
    pub update_message: String,
}

impl From<&pb::SwarmServiceInfo> for SwarmServiceJson {
    fn from(info: &pb::SwarmServiceInfo) -> Self {
        let pb::SwarmServiceInfo {
            cluster,
            driver,
            driver_connected,
            update_state,
            update_message,
            service_name,
        } = info;
        Self {
            cluster: cluster.clone(),
            service_name: service_name.clone(),
            driver: driver.clone(),
            driver_connected: *driver_connected,
            update_state: update_state.clone(),
            update_message: update_message.clone(),
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct RolloutJson {
    pub from_revision: u64,
    pub to_revision: u64,
    /// running, paused, waiting-promotion, succeeded, failed, rolled-back.
    pub state: String,
    pub strategy: String,
    pub updated: u32,
    pub healthy: u32,
    pub failed: u32,
    pub total: u32,
    pub reason: String,
    pub started_unix_ms: i64,
    pub updated_unix_ms: i64,
    pub is_rollback: bool,
    pub promoted: bool,
    pub summary: String,
}

impl From<&pb::RolloutInfo> for RolloutJson {
    fn from(r: &pb::RolloutInfo) -> Self {
        let pb::RolloutInfo {
            from_revision,
            to_revision,
            state,
            strategy,
            updated,
            healthy,
            failed,
            total,
            reason,
            started_unix_ms,
            updated_unix_ms,
            is_rollback,
            promoted,
            summary,
        } = r.clone();
        Self {
            from_revision,
            to_revision,
            state,
            strategy,
            updated,
            healthy,
            failed,
            total,
            reason,
            started_unix_ms,
            updated_unix_ms,
            is_rollback,
            promoted,
            summary,
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct InstanceStatusJson {
    pub id: String,
    pub index: u32,
    pub node: String,
    pub node_connected: bool,
    pub revision: u64,
    pub state: &'static str,
    pub reason: String,
    pub restarts: u32,
    pub container_id: String,
    pub container_name: String,
    /// "none" (no checks), "starting", "healthy" or "unhealthy".
    pub health: &'static str,
    pub health_output: String,
    pub failing_probe: String,
    /// The last run's exit code: while exited, or failed with a non-zero code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Units only: the last lines of the journal when the unit failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub journal_tail: Vec<String>,
    /// Swarm services: the task's Swarm node and task IDs.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub swarm_node_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub swarm_task_id: String,
}

impl From<&pb::StatusResponse> for StatusJson {
    fn from(response: &pb::StatusResponse) -> Self {
        let pb::StatusResponse {
            services,
            control_plane,
        } = response;
        Self {
            services: services.iter().map(ServiceStatusJson::from).collect(),
            control_plane: control_plane.as_ref().map(ControlPlaneJson::from),
        }
    }
}

impl From<&pb::ServiceStatus> for ServiceStatusJson {
    fn from(status: &pb::ServiceStatus) -> Self {
        let pb::ServiceStatus {
            name,
            env,
            revision,
            desired,
            running,
            instances,
            updated_unix_ms: _,
            image,
            healthy,
            has_checks,
            rollout,
            deploy_labels,
            swarm,
        } = status;
        Self {
            name: name.clone(),
            env: env.clone(),
            revision: *revision,
            desired: *desired,
            running: *running,
            healthy: *healthy,
            has_checks: *has_checks,
            rollout: rollout.as_ref().map(RolloutJson::from),
            image: image.clone(),
            instances: instances.iter().map(InstanceStatusJson::from).collect(),
            deploy_labels: deploy_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            swarm: swarm.as_ref().map(SwarmServiceJson::from),
        }
    }
}

impl From<&pb::InstanceStatus> for InstanceStatusJson {
    fn from(status: &pb::InstanceStatus) -> Self {
        let pb::InstanceStatus {
            id,
            index,
            node,
            node_connected,
            revision,
            state,
            reason,
            restarts,
            container_id,
            container_name,
            updated_unix_ms: _,
            health,
            health_output,
            failing_probe,
            exit_code,
            journal_tail,
            swarm_node_id,
            swarm_task_id,
        } = status;
        // An exited instance's code, and a failed one's when it ran and
        // exited non-zero (a failure to start has no code of its own).
        let ended = match workload_state(*state) {
            WorkloadState::Exited => true,
            WorkloadState::Failed => *exit_code != 0,
            _ => false,
        };
        Self {
            id: id.clone(),
            index: *index,
            node: node.clone(),
            node_connected: *node_connected,
            revision: *revision,
            state: workload_state_word(*state),
            reason: reason.clone(),
            restarts: *restarts,
            container_id: container_id.clone(),
            container_name: container_name.clone(),
            health: health_word(*health),
            health_output: health_output.clone(),
            failing_probe: failing_probe.clone(),
            exit_code: ended.then_some(*exit_code),
            journal_tail: journal_tail.clone(),
            swarm_node_id: swarm_node_id.clone(),
            swarm_task_id: swarm_task_id.clone(),
        }
    }
}

pub fn health_word(value: i32) -> &'static str {
    match pb::Health::try_from(value).unwrap_or(pb::Health::Unspecified) {
        pb::Health::Unspecified => "none",
        pb::Health::Starting => "starting",
        pb::Health::Healthy => "healthy",
        pb::Health::Unhealthy => "unhealthy",
    }
}

pub fn workload_state(value: i32) -> WorkloadState {
    WorkloadState::try_from(value).unwrap_or(WorkloadState::Unspecified)
}

pub fn workload_state_word(value: i32) -> &'static str {
    match workload_state(value) {
        WorkloadState::Unspecified => "unspecified",
        WorkloadState::Pending => "pending",
        WorkloadState::Starting => "starting",
        WorkloadState::Running => "running",
        WorkloadState::Failed => "failed",
        WorkloadState::Exited => "exited",
        WorkloadState::Lost => "lost",
    }
}

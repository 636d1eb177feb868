//! The JSON documents of INTERFACES.md: what `convoy ... -o json` prints and
//! what the dashboard's `/api/` serves. One definition, shared by the CLI and
//! the coordinator, so a change to one is a change to the documented shape.

use std::collections::BTreeMap;

use convoy_proto as pb;
use pb::{ChangeAction, NodeState, WorkloadState};
use serde::Serialize;

use crate::clock::rfc3339_ms;
use crate::env::DEFAULT_ENV;

// ---- JSON shapes (INTERFACES.md) ----

#[derive(Debug, Serialize, PartialEq)]
pub struct ApplyJson {
    pub dry_run: bool,
    pub warnings: Vec<String>,
    pub services: Vec<ServiceChangeJson>,
    /// What the apply did to the spec's secrets (never values); left out
    /// when the spec has none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretChangeJson>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SecretChangeJson {
    pub env: String,
    pub name: String,
    /// created, generated, rotated, unchanged, external.
    pub action: String,
    pub version: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ServiceChangeJson {
    pub service: String,
    pub env: String,
    pub action: &'static str,
    pub revision: u64,
    pub previous_revision: u64,
    pub changed_fields: Vec<String>,
    /// Unified diff of the previous and new spec (updates only).
    pub diff: String,
    pub instances: Vec<InstanceChangeJson>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct InstanceChangeJson {
    pub instance_id: String,
    pub node: String,
    pub action: &'static str,
}

impl From<&pb::ApplyResponse> for ApplyJson {
    fn from(response: &pb::ApplyResponse) -> Self {
        let pb::ApplyResponse {
            services,
            warnings,
            dry_run,
            secrets,
        } = response;
        Self {
            dry_run: *dry_run,
            warnings: warnings.clone(),
            services: services.iter().map(ServiceChangeJson::from).collect(),
            secrets: secrets
                .iter()
                .map(|s| SecretChangeJson {
                    env: s.env.clone(),
                    name: s.name.clone(),
                    action: s.action.clone(),
                    version: s.version,
                })
                .collect(),
        }
    }
}

impl From<&pb::ServiceChange> for ServiceChangeJson {
    fn from(change: &pb::ServiceChange) -> Self {
        let pb::ServiceChange {
            service,
            env,
            action,
            revision,
            previous_revision,
            instances,
            changed_fields,
            diff,
        } = change;
        Self {
            service: service.clone(),
            env: env.clone(),
            action: change_action_word(*action),
            revision: *revision,
            previous_revision: *previous_revision,
            changed_fields: changed_fields.clone(),
            diff: diff.clone(),
            instances: instances
                .iter()
                .map(|i| {
                    let pb::InstanceChange {
                        instance_id,
                        node,
                        action,
                    } = i;
                    InstanceChangeJson {
                        instance_id: instance_id.clone(),
                        node: node.clone(),
                        action: change_action_word(*action),
                    }
                })
                .collect(),
        }
    }
}

pub fn change_action(value: i32) -> ChangeAction {
    ChangeAction::try_from(value).unwrap_or(ChangeAction::Unspecified)
}

pub fn change_action_word(value: i32) -> &'static str {
    match change_action(value) {
        ChangeAction::Unspecified => "unspecified",
        ChangeAction::Create => "create",
        ChangeAction::Update => "update",
        ChangeAction::Unchanged => "unchanged",
        ChangeAction::Remove => "remove",
        ChangeAction::Replace => "replace",
        ChangeAction::Pending => "pending",
    }
}

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

#[derive(Debug, Serialize, PartialEq)]
pub struct NodesJson {
    pub nodes: Vec<NodeJson>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct NodeJson {
    pub name: String,
    pub state: &'static str,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub docker_version: String,
    pub labels: BTreeMap<String, String>,
    /// Roots under which the node allows bind mounts of host paths
    /// (`convoy-agent run --allow-bind PATH`).
    pub allowed_bind_paths: Vec<String>,
    /// The kinds of host access the node's admin granted
    /// (`--allow-host-access`); absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_host_access: Vec<String>,
    /// The node's GPUs, in index order; empty without any.
    pub gpus: Vec<GpuJson>,
    /// The engine's Docker Swarm membership; absent when it is in none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmJson>,
    pub agent_version: String,
    pub connected_since_unix_ms: i64,
    pub last_heartbeat_unix_ms: i64,
    pub plan_generation: u64,
    pub acked_generation: u64,
    pub workloads: u32,
    pub certificate_expires_unix_ms: i64,
    /// The latest heartbeat's host metrics (absent before the first).
    pub metrics: Option<HostMetricsJson>,
    /// `active`, `cordoned` (takes no new instance), `draining`, or
    /// `drained` (a drain finished; still cordoned).
    pub scheduling: &'static str,
    pub cordoned: bool,
    pub draining: bool,
    /// While draining: instances no other node can take, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drain_blocked: Vec<String>,
    /// While draining: what the drain waits for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drain_waiting: Vec<String>,
}

/// A node's scheduling state, as `convoy nodes` shows it.
pub fn scheduling_word(node: &pb::Node) -> &'static str {
    if node.draining {
        "draining"
    } else if node.cordoned && node.drained {
        "drained"
    } else if node.cordoned {
        "cordoned"
    } else {
        "active"
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct HostMetricsJson {
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub containers: u32,
    /// One per GPU, by `index`; empty without any.
    pub gpus: Vec<GpuSampleJson>,
}

/// One GPU of a node (`nodes -o json`).
#[derive(Debug, Serialize, PartialEq)]
pub struct GpuJson {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_total_bytes: u64,
    /// "enabled", "disabled", or "" where the GPU has no MIG.
    pub mig_mode: String,
    pub driver_version: String,
    pub cuda_version: String,
    pub compute_capability: String,
}

impl From<&pb::GpuDevice> for GpuJson {
    fn from(g: &pb::GpuDevice) -> Self {
        let pb::GpuDevice {
            index,
            uuid,
            name,
            memory_total_bytes,
            mig_mode,
            driver_version,
            cuda_version,
            compute_capability,
        } = g;
        Self {
            index: *index,
            uuid: uuid.clone(),
            name: name.clone(),
            memory_total_bytes: *memory_total_bytes,
            mig_mode: mig_mode.clone(),
            driver_version: driver_version.clone(),
            cuda_version: cuda_version.clone(),
            compute_capability: compute_capability.clone(),
        }
    }
}

/// A node's Docker Swarm membership (`nodes -o json`).
#[derive(Debug, Serialize, PartialEq)]
pub struct SwarmJson {
    /// "manager" or "worker".
    pub role: &'static str,
    pub node_id: String,
    /// The swarm's ID; on a worker, that of a manager node listed beside
    /// it ("" when none of its managers has an agent).
    pub cluster_id: String,
    pub manager_reachable: bool,
    /// Docker's LocalNodeState: "active", "pending", "error", "locked".
    pub state: String,
    /// Docker's error for the node; "" when none.
    pub error: String,
    pub manager_node_ids: Vec<String>,
    pub node_addr: String,
}

impl From<&pb::SwarmFacts> for SwarmJson {
    fn from(f: &pb::SwarmFacts) -> Self {
        let pb::SwarmFacts {
            role: _,
            node_id,
            cluster_id,
            manager_reachable,
            local_node_state,
            error,
            manager_node_ids,
            node_addr,
        } = f;
        Self {
            role: swarm_role_word(f),
            node_id: node_id.clone(),
            cluster_id: cluster_id.clone(),
            manager_reachable: *manager_reachable,
            state: local_node_state.clone(),
            error: error.clone(),
            manager_node_ids: manager_node_ids.clone(),
            node_addr: node_addr.clone(),
        }
    }
}

/// "manager" or "worker" (an unknown role reads as a worker).
pub fn swarm_role_word(f: &pb::SwarmFacts) -> &'static str {
    match pb::SwarmRole::try_from(f.role) {
        Ok(pb::SwarmRole::Manager) => "manager",
        _ => "worker",
    }
}

/// What `convoy nodes` shows in its SWARM column: `manager`, `worker`,
/// `worker (pending)` or `worker (unreachable)` when it reaches no manager,
/// or `-` outside a swarm.
pub fn swarm_summary(swarm: Option<&pb::SwarmFacts>) -> String {
    let Some(f) = swarm else {
        return "-".to_owned();
    };
    let role = swarm_role_word(f);
    if f.manager_reachable {
        role.to_owned()
    } else if f.local_node_state.is_empty() || f.local_node_state == "active" {
        format!("{role} (unreachable)")
    } else {
        format!("{role} ({})", f.local_node_state)
    }
}

/// A GPU's figures from the latest heartbeat.
#[derive(Debug, Serialize, PartialEq)]
pub struct GpuSampleJson {
    pub index: u32,
    /// 0-100.
    pub utilization_percent: f64,
    pub memory_used_bytes: u64,
    pub temperature_c: f64,
    pub power_w: f64,
}

impl From<&pb::GpuSample> for GpuSampleJson {
    fn from(s: &pb::GpuSample) -> Self {
        let pb::GpuSample {
            index,
            utilization_percent,
            memory_used_bytes,
            temperature_c,
            power_w,
        } = *s;
        Self {
            index,
            utilization_percent,
            memory_used_bytes,
            temperature_c,
            power_w,
        }
    }
}

/// What `convoy nodes` shows of a node's GPUs: `2× NVIDIA H100 80GB HBM3`,
/// models counted in index order (`1× A100, 1× T4` on a mixed box), or `-`.
pub fn gpus_summary(gpus: &[pb::GpuDevice]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for g in gpus {
        let name = if g.name.is_empty() {
            "GPU"
        } else {
            g.name.as_str()
        };
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name, 1)),
        }
    }
    if counts.is_empty() {
        return "-".to_owned();
    }
    counts
        .iter()
        .map(|(name, count)| format!("{count}× {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<&pb::HostMetrics> for HostMetricsJson {
    fn from(m: &pb::HostMetrics) -> Self {
        let pb::HostMetrics {
            load1,
            memory_used_bytes,
            memory_total_bytes,
            containers,
            cpu_percent,
            disk_used_bytes,
            disk_total_bytes,
            load5,
            load15,
            ref gpus,
        } = *m;
        Self {
            cpu_percent,
            memory_used_bytes,
            memory_total_bytes,
            disk_used_bytes,
            disk_total_bytes,
            load1,
            load5,
            load15,
            containers,
            gpus: gpus.iter().map(GpuSampleJson::from).collect(),
        }
    }
}

/// One cluster event (`convoy events -o json`, one object per line).
#[derive(Debug, Serialize, PartialEq)]
pub struct EventJson {
    pub seq: u64,
    pub unix_ms: i64,
    /// RFC 3339, UTC.
    pub time: String,
    pub kind: String,
    pub env: String,
    pub service: String,
    pub instance: String,
    pub node: String,
    pub message: String,
    pub fields: BTreeMap<String, String>,
}

impl From<&pb::ClusterEvent> for EventJson {
    fn from(ev: &pb::ClusterEvent) -> Self {
        let pb::ClusterEvent {
            seq,
            unix_ms,
            kind,
            env,
            service,
            instance,
            node,
            message,
            fields,
        } = ev;
        Self {
            seq: *seq,
            unix_ms: *unix_ms,
            time: rfc3339_ms(*unix_ms),
            kind: kind.clone(),
            env: env.clone(),
            service: service.clone(),
            instance: instance.clone(),
            node: node.clone(),
            message: message.clone(),
            fields: fields.clone().into_iter().collect(),
        }
    }
}

impl From<&pb::ListNodesResponse> for NodesJson {
    fn from(response: &pb::ListNodesResponse) -> Self {
        let pb::ListNodesResponse { nodes } = response;
        Self {
            nodes: nodes.iter().map(NodeJson::from).collect(),
        }
    }
}

impl From<&pb::Node> for NodeJson {
    fn from(node: &pb::Node) -> Self {
        let pb::Node {
            name,
            state,
            facts,
            agent_version,
            connected_since_unix_ms,
            last_heartbeat_unix_ms,
            plan_generation,
            acked_generation,
            workloads,
            metrics,
            address: _,
            certificate_expires_unix_ms,
            cordoned,
            draining,
            drain_blocked,
            drain_waiting,
            drained: _,
        } = node;
        let pb::NodeFacts {
            hostname,
            os,
            kernel,
            arch,
            cpus,
            memory_bytes,
            docker_version,
            labels,
            platform_os: _,
            allowed_bind_paths,
            allowed_host_access,
            gpus,
            swarm,
        } = facts.clone().unwrap_or_default();
        Self {
            name: name.clone(),
            state: node_state_word(*state),
            hostname,
            os,
            kernel,
            arch,
            cpus,
            memory_bytes,
            docker_version,
            labels: labels.into_iter().collect(),
            allowed_bind_paths,
            allowed_host_access,
            gpus: gpus.iter().map(GpuJson::from).collect(),
            swarm: swarm.as_ref().map(SwarmJson::from),
            agent_version: agent_version.clone(),
            connected_since_unix_ms: *connected_since_unix_ms,
            last_heartbeat_unix_ms: *last_heartbeat_unix_ms,
            plan_generation: *plan_generation,
            acked_generation: *acked_generation,
            workloads: *workloads,
            certificate_expires_unix_ms: *certificate_expires_unix_ms,
            metrics: metrics.as_ref().map(HostMetricsJson::from),
            scheduling: scheduling_word(node),
            cordoned: *cordoned,
            draining: *draining,
            drain_blocked: drain_blocked.clone(),
            drain_waiting: drain_waiting.clone(),
        }
    }
}

pub fn node_state_word(value: i32) -> &'static str {
    match NodeState::try_from(value).unwrap_or(NodeState::Unspecified) {
        NodeState::Unspecified => "unspecified",
        NodeState::Ready => "ready",
        NodeState::Lost => "lost",
        NodeState::Removed => "removed",
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct DeleteJson {
    pub service: String,
    pub env: String,
    pub removed_instances: u32,
    pub last_revision: u64,
}

impl DeleteJson {
    /// The answer does not repeat the service, so the request supplies it.
    pub fn new(service: &str, env: &str, response: &pb::DeleteResponse) -> Self {
        let pb::DeleteResponse {
            removed_instances,
            last_revision,
        } = response;
        Self {
            service: service.to_owned(),
            env: if env.is_empty() { DEFAULT_ENV } else { env }.to_owned(),
            removed_instances: *removed_instances,
            last_revision: *last_revision,
        }
    }
}

/// `convoy verify -o json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct VerifyJson {
    pub healthy: bool,
    pub results: Vec<VerifyResultJson>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct VerifyResultJson {
    pub service: String,
    pub instance: String,
    pub node: String,
    pub probe: String,
    pub healthy: bool,
    pub output: String,
    pub duration_ms: u64,
}

impl From<&pb::VerifyResponse> for VerifyJson {
    fn from(r: &pb::VerifyResponse) -> Self {
        Self {
            healthy: r.healthy,
            results: r
                .results
                .iter()
                .map(|v| VerifyResultJson {
                    service: v.service.clone(),
                    instance: v.instance.clone(),
                    node: v.node.clone(),
                    probe: v.probe.clone(),
                    healthy: v.healthy,
                    output: v.output.clone(),
                    duration_ms: v.duration_ms,
                })
                .collect(),
        }
    }
}

// ---- Secrets (`convoy secret ...`; never a value) ----

/// A secret as `convoy secret set|generate|rotate|rm|list -o json` show it.
#[derive(Debug, Serialize, PartialEq)]
pub struct SecretJson {
    pub env: String,
    pub name: String,
    /// The current version.
    pub version: u64,
    /// When the current version was made (RFC 3339, UTC) and by which token.
    pub updated: String,
    pub updated_unix_ms: i64,
    pub updated_by: String,
    /// `set` or `generated (LENGTH CHARSET)`.
    pub origin: String,
    /// How many versions are kept.
    pub versions: u32,
    /// Each service or unit of its environment that uses it, by name;
    /// `NAME (vN)` when it runs another version than the current.
    pub used_by: Vec<String>,
}

impl From<pb::SecretInfo> for SecretJson {
    fn from(info: pb::SecretInfo) -> Self {
        let pb::SecretInfo {
            env,
            name,
            version,
            updated_unix_ms,
            updated_by,
            versions,
            used_by,
            origin,
        } = info;
        Self {
            env,
            name,
            version,
            updated: rfc3339_ms(updated_unix_ms),
            updated_unix_ms,
            updated_by,
            origin,
            versions,
            used_by,
        }
    }
}

/// `convoy secret list -o json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct SecretListJson {
    pub secrets: Vec<SecretJson>,
}

/// `convoy secret history -o json`: the kept versions, oldest first.
#[derive(Debug, Serialize, PartialEq)]
pub struct SecretHistoryJson {
    pub env: String,
    pub name: String,
    pub versions: Vec<SecretVersionJson>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SecretVersionJson {
    pub version: u64,
    pub created: String,
    pub created_unix_ms: i64,
    pub created_by: String,
    pub origin: String,
    pub current: bool,
}

impl From<pb::SecretVersionInfo> for SecretVersionJson {
    fn from(v: pb::SecretVersionInfo) -> Self {
        let pb::SecretVersionInfo {
            version,
            created_unix_ms,
            created_by,
            origin,
            current,
        } = v;
        Self {
            version,
            created: rfc3339_ms(created_unix_ms),
            created_unix_ms,
            created_by,
            origin,
            current,
        }
    }
}

//! What the state layer's reads return: services with their instances and
//! rollouts, nodes, revision history. Plain domain values; `api/convert.rs`
//! maps them to the wire, the dashboard and `/metrics` read them.

use std::collections::BTreeMap;

use crate::{
    report::{Health, HostMetrics, InstanceState},
    rollout::RolloutState,
    spec::Strategy,
};

use super::records::Facts;

/// [`super::Coordinator::status`]: the services asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusView {
    pub services: Vec<ServiceView>,
}

/// One service: its revision, instances and rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceView {
    pub name: String,
    pub env: String,
    pub revision: u64,
    pub desired: u32,
    pub running: u32,
    pub instances: Vec<InstanceStatusView>,
    pub updated_unix_ms: i64,
    pub image: String,
    /// Instances of the current spec running and healthy (or running with
    /// no checks).
    pub healthy: u32,
    pub has_checks: bool,
    /// The current or last rollout; none before the first.
    pub rollout: Option<RolloutView>,
    /// Compose `deploy.labels`.
    pub deploy_labels: BTreeMap<String, String>,
    /// Swarm services only.
    pub swarm: Option<SwarmServiceView>,
}

/// One instance (for a Swarm service: one task slot).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceStatusView {
    pub id: String,
    pub index: u32,
    /// Empty while pending placement.
    pub node: String,
    pub node_connected: bool,
    pub revision: u64,
    pub state: InstanceState,
    pub reason: String,
    pub restarts: u32,
    pub container_id: String,
    pub container_name: String,
    pub updated_unix_ms: i64,
    pub health: Health,
    pub health_output: String,
    pub failing_probe: String,
    pub exit_code: i64,
    pub journal_tail: Vec<String>,
    pub swarm_node_id: String,
    pub swarm_task_id: String,
}

/// A Swarm service's cluster, driver and Swarm's update state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SwarmServiceView {
    pub cluster: String,
    /// Empty: no driver.
    pub driver: String,
    pub driver_connected: bool,
    pub update_state: String,
    pub update_message: String,
    pub service_name: String,
}

/// A rollout's progress.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutView {
    pub from_revision: u64,
    pub to_revision: u64,
    pub state: RolloutState,
    pub strategy: Strategy,
    /// Instances switched to the new revision / past their health gate /
    /// failed it / in the service.
    pub updated: u32,
    pub healthy: u32,
    pub failed: u32,
    pub total: u32,
    pub reason: String,
    pub started_unix_ms: i64,
    pub updated_unix_ms: i64,
    pub is_rollback: bool,
    pub promoted: bool,
    /// One line: "rollout r1 → r2: running (...)".
    pub summary: String,
}

/// [`super::Coordinator::nodes`]: every node, removed ones included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodesView {
    pub nodes: Vec<NodeView>,
}

/// Whether a node's agent is with us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Ready,
    /// Its stream closed, or its heartbeats stopped.
    Lost,
    /// `convoy node remove`: its certificates are refused.
    Removed,
}

impl NodeState {
    /// The word `/metrics` labels use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Lost => "lost",
            Self::Removed => "removed",
        }
    }
}

/// One node: its facts, session and plan.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub state: NodeState,
    pub facts: std::sync::Arc<Facts>,
    pub agent_version: String,
    pub connected_since_unix_ms: i64,
    pub last_heartbeat_unix_ms: i64,
    pub plan_generation: u64,
    pub acked_generation: u64,
    /// Instances placed on it.
    pub workloads: u32,
    pub metrics: Option<HostMetrics>,
    pub address: String,
    pub certificate_expires_unix_ms: i64,
    pub cordoned: bool,
    pub draining: bool,
    /// While draining: instances it cannot move, and why.
    pub drain_blocked: Vec<String>,
    /// While draining: what it waits for.
    pub drain_waiting: Vec<String>,
    pub drained: bool,
}

/// [`super::Coordinator::history`]: a service's revisions, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryView {
    pub revisions: Vec<RevisionView>,
    /// The current revision.
    pub current: u64,
}

/// One revision of a service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RevisionView {
    pub revision: u64,
    pub created_unix_ms: i64,
    pub created_by: String,
    /// The spec file, or "rollback of rN to rM".
    pub source: String,
    pub image: String,
    pub spec_hash: String,
    /// "", succeeded, failed: REASON, rolled back, superseded.
    pub outcome: String,
    /// Spec fields that differ from the previous revision.
    pub changed_fields: Vec<String>,
    /// The revision as JSON (for `convoy diff`).
    pub spec_json: String,
}

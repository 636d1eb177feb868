//! `convoy nodes -o json`: each node's facts, GPUs, Swarm membership,
//! metrics and scheduling state, and the words and summaries of its columns.

use std::collections::BTreeMap;

use convoy_proto as pb;
use pb::NodeState;
use serde::Serialize;

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

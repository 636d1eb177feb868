//! What agents tell the coordinator, as domain types: the state layer
//! takes these, never the wire messages. [`proto`] converts at the
//! boundary (`impl TryFrom<pb::AgentMessage> for AgentReport`), destructuring
//! every message whole so that a field added to the wire cannot be ignored
//! by accident, and refusing malformed ones with an [`InvalidReport`].

mod ack;
mod hello;
mod metrics;
pub mod proto;
mod workload;

pub use ack::{CommandAck, ProbeResult};
pub use hello::AgentHello;
pub use metrics::{GpuSample, HostMetrics};
pub use workload::{Health, InstanceState, SwarmTaskReport, WorkloadReport, MAX_SWARM_TASKS};

/// One message of an agent's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentReport {
    Heartbeat(Option<HostMetrics>),
    /// The agent applied (or refused, with its reason) a plan.
    PlanAck {
        generation: u64,
        result: Result<(), String>,
    },
    CommandAck(CommandAck),
    Status {
        /// This report replaces everything known of the node's workloads.
        full_snapshot: bool,
        workloads: Vec<WorkloadReport>,
        /// Ids of workloads gone from the node.
        removed: Vec<String>,
    },
    Event {
        workload_id: String,
        kind: String,
        message: String,
    },
    /// Answered by the session itself; counts as a sign of life here.
    Pong,
    /// Answered by the session itself; counts as a sign of life here.
    Renew,
    /// A second Hello on one stream (ignored).
    Hello,
    /// The node's proxy figures (cumulative).
    ProxyStats(crate::proxy_stats::ProxyReport),
}

/// Why an agent's message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReport {
    #[error("an agent message with nothing in it")]
    Empty,
    #[error("an ack names neither a plan generation nor a command")]
    AckWithoutTarget,
    #[error("a workload status without an id")]
    MissingWorkloadId,
    #[error("workload `{id}`: unknown {field} {value}")]
    UnknownEnum {
        id: String,
        field: &'static str,
        value: i32,
    },
    #[error("an event without a kind")]
    EventWithoutKind,
    #[error(transparent)]
    ProxyStats(#[from] crate::proxy_stats::InvalidProxyStats),
}

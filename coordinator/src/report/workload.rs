//! Workload status as agents report it: an instance's state and health,
//! and the task slots of a Swarm service.

/// An instance's state as its agent sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InstanceState {
    /// The agent did not say (reported as `unknown`).
    #[default]
    Unknown,
    Pending,
    Starting,
    Running,
    Failed,
    Exited,
    Lost,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Failed => "failed",
            Self::Exited => "exited",
            Self::Lost => "lost",
        }
    }
}

/// An instance's health: the combined verdict of its checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Health {
    /// No checks.
    #[default]
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// One workload's status as its agent reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadReport {
    pub id: String,
    pub revision: u64,
    pub spec_hash: String,
    pub state: InstanceState,
    /// Why it is failed, exited or pending, in words a user can act on.
    pub reason: String,
    pub exit_code: i64,
    pub restarts: u32,
    pub container_id: String,
    pub container_name: String,
    pub updated_unix_ms: i64,
    pub health: Health,
    pub health_output: String,
    pub failing_probe: String,
    /// Units only: the last lines of the journal when the unit failed.
    pub journal_tail: Vec<String>,
    /// Swarm services only: the newest task of each slot (at most
    /// [`MAX_SWARM_TASKS`]), and Swarm's update state and message.
    pub swarm_tasks: Vec<SwarmTaskReport>,
    pub swarm_update_state: String,
    pub swarm_update_message: String,
}

/// How many task slots of one Swarm service a report may hold; the rest is
/// dropped (bounded input from the network).
pub const MAX_SWARM_TASKS: usize = 1024;

/// One task slot of a Swarm service (domain copy of `pb::SwarmTask`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwarmTaskReport {
    pub task_id: String,
    /// Replicated: the slot (1-based); global: 0.
    pub slot: u32,
    pub node_id: String,
    pub node_hostname: String,
    /// Swarm's task state (`running`, `failed`, `rejected`, ...).
    pub state: String,
    pub desired_state: String,
    pub error: String,
    pub message: String,
    pub container_id: String,
    pub revision: u64,
    pub updated_unix_ms: i64,
}

//! The answer to a command, with the checks' outcomes of `RunProbes`.

/// One check's outcome, from a `RunProbes` command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeResult {
    pub workload_id: String,
    pub probe: String,
    pub healthy: bool,
    pub output: String,
    pub duration_ms: u64,
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandAck {
    pub id: String,
    /// `Err` with the agent's reason when the command failed.
    pub result: Result<(), String>,
    pub probe_results: Vec<ProbeResult>,
    /// For ListVolumes and RemoveVolumes: the volumes on the node.
    pub volumes: Vec<convoy_proto::VolumeInfo>,
}

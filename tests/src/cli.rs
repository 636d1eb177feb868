//! The `convoy -o json` documents (docs/INTERFACES.md), typed. Only the
//! fields the tests read are declared; each of those must be present, so a
//! drift from the contract fails loudly.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct ApplyReport {
    pub dry_run: bool,
    pub warnings: Vec<String>,
    pub services: Vec<ServiceChange>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceChange {
    pub service: String,
    pub env: String,
    pub action: String,
    pub revision: u64,
    pub previous_revision: u64,
    pub changed_fields: Vec<String>,
    pub instances: Vec<InstanceChange>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InstanceChange {
    pub instance_id: String,
    pub node: String,
    pub action: String,
}

impl ApplyReport {
    /// The change to one service; panics if the report does not mention it.
    pub fn service(&self, name: &str) -> &ServiceChange {
        self.services
            .iter()
            .find(|s| s.service == name)
            .unwrap_or_else(|| panic!("apply report does not mention {name}: {self:#?}"))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusReport {
    pub services: Vec<ServiceStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub env: String,
    pub revision: u64,
    pub desired: u32,
    pub running: u32,
    /// Instances of the current revision running and passing their checks.
    #[serde(default)]
    pub healthy: u32,
    #[serde(default)]
    pub has_checks: bool,
    pub image: String,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InstanceStatus {
    pub id: String,
    pub index: u32,
    pub node: String,
    pub node_connected: bool,
    pub revision: u64,
    pub state: String,
    pub reason: String,
    pub restarts: u32,
    pub container_id: String,
    pub container_name: String,
    /// none, starting, healthy or unhealthy.
    #[serde(default)]
    pub health: String,
    #[serde(default)]
    pub health_output: String,
    #[serde(default)]
    pub failing_probe: String,
}

impl ServiceStatus {
    pub fn instance(&self, index: u32) -> Option<&InstanceStatus> {
        self.instances.iter().find(|i| i.index == index)
    }

    /// One line per instance, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} rev {}: {}/{} running",
            self.name, self.revision, self.running, self.desired
        );
        for i in &self.instances {
            s += &format!(
                "\n  {} on {:?} rev {} {} health={} restarts={} container={} {} {}",
                i.id,
                i.node,
                i.revision,
                i.state,
                i.health,
                i.restarts,
                i.container_id,
                i.reason,
                i.health_output
            );
        }
        s
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeList {
    pub nodes: Vec<NodeInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub state: String,
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub docker_version: String,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    pub connected_since_unix_ms: i64,
    pub last_heartbeat_unix_ms: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeleteReport {
    pub service: String,
    pub env: String,
    pub removed_instances: u32,
    pub last_revision: u64,
}

/// Docker ids are 64 hex digits; Convoy may report them shortened.
pub fn same_container_id(reported: &str, docker_id: &str) -> bool {
    reported.len() >= 12 && docker_id.starts_with(reported)
}

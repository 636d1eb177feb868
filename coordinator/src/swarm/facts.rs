//! A node's Swarm membership (domain copy of `pb::SwarmFacts`), stored in
//! its record's facts, and the cluster ID of workers filled in from their
//! managers' facts.

use std::collections::HashMap;

use convoy_proto as pb;
use serde::{Deserialize, Serialize};

/// Longest ID, address or error kept, in characters.
const MAX_TEXT: usize = 512;
/// Most manager IDs kept of one report.
const MAX_MANAGERS: usize = 32;

/// What the node is in its swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwarmRole {
    Worker,
    Manager,
}

/// The engine's Swarm state as its agent last said Hello with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmFacts {
    pub role: SwarmRole,
    pub node_id: String,
    /// Empty on workers (Docker tells only managers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_id: String,
    pub manager_reachable: bool,
    /// Docker's LocalNodeState ("active", "pending", "error", "locked").
    pub local_node_state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manager_node_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_addr: String,
}

pub(crate) fn bounded(s: String) -> String {
    if s.chars().count() <= MAX_TEXT {
        s
    } else {
        s.chars().take(MAX_TEXT).collect()
    }
}

impl From<pb::SwarmFacts> for SwarmFacts {
    fn from(f: pb::SwarmFacts) -> Self {
        let pb::SwarmFacts {
            role,
            node_id,
            cluster_id,
            manager_reachable,
            local_node_state,
            error,
            manager_node_ids,
            node_addr,
        } = f;
        // From the agent: bounded, like every string it sends. Anything but
        // a manager is a worker (it runs tasks, and drives nothing).
        Self {
            role: match pb::SwarmRole::try_from(role) {
                Ok(pb::SwarmRole::Manager) => SwarmRole::Manager,
                _ => SwarmRole::Worker,
            },
            node_id: bounded(node_id),
            cluster_id: bounded(cluster_id),
            manager_reachable,
            local_node_state: bounded(local_node_state),
            error: bounded(error),
            manager_node_ids: manager_node_ids
                .into_iter()
                .take(MAX_MANAGERS)
                .map(bounded)
                .collect(),
            node_addr: bounded(node_addr),
        }
    }
}

impl From<&SwarmFacts> for pb::SwarmFacts {
    fn from(f: &SwarmFacts) -> Self {
        let SwarmFacts {
            role,
            node_id,
            cluster_id,
            manager_reachable,
            local_node_state,
            error,
            manager_node_ids,
            node_addr,
        } = f;
        pb::SwarmFacts {
            role: match role {
                SwarmRole::Worker => pb::SwarmRole::Worker,
                SwarmRole::Manager => pb::SwarmRole::Manager,
            } as i32,
            node_id: node_id.clone(),
            cluster_id: cluster_id.clone(),
            manager_reachable: *manager_reachable,
            local_node_state: local_node_state.clone(),
            error: error.clone(),
            manager_node_ids: manager_node_ids.clone(),
            node_addr: node_addr.clone(),
        }
    }
}

/// Gives each worker without a cluster ID the cluster of a listed manager
/// whose node ID is among the worker's managers. A worker none of whose
/// managers has an agent keeps it empty.
pub fn fill_worker_clusters<'a>(members: impl IntoIterator<Item = &'a mut SwarmFacts>) {
    let mut members: Vec<&mut SwarmFacts> = members.into_iter().collect();
    let clusters: HashMap<String, String> = members
        .iter()
        .filter(|s| s.role == SwarmRole::Manager && !s.cluster_id.is_empty())
        .map(|s| (s.node_id.clone(), s.cluster_id.clone()))
        .collect();
    if clusters.is_empty() {
        return;
    }
    for s in members.iter_mut() {
        if s.cluster_id.is_empty() {
            if let Some(cluster) = s.manager_node_ids.iter().find_map(|id| clusters.get(id)) {
                s.cluster_id = cluster.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, swarm: Option<pb::SwarmFacts>) -> (String, Option<SwarmFacts>) {
        (name.to_string(), swarm.map(SwarmFacts::from))
    }

    fn member(role: pb::SwarmRole, id: &str, cluster: &str, managers: &[&str]) -> pb::SwarmFacts {
        pb::SwarmFacts {
            role: role as i32,
            node_id: id.into(),
            cluster_id: cluster.into(),
            manager_reachable: true,
            local_node_state: "active".into(),
            manager_node_ids: managers.iter().map(|m| m.to_string()).collect(),
            ..pb::SwarmFacts::default()
        }
    }

    fn cluster_of(nodes: &[(String, Option<SwarmFacts>)], name: &str) -> String {
        let (_, swarm) = nodes.iter().find(|(n, _)| n == name).unwrap();
        swarm.as_ref().unwrap().cluster_id.clone()
    }

    #[test]
    fn workers_take_the_cluster_of_their_listed_manager() {
        let mut nodes = vec![
            node(
                "w1",
                Some(member(pb::SwarmRole::Worker, "W1", "", &["M1", "M2"])),
            ),
            node(
                "m2",
                Some(member(pb::SwarmRole::Manager, "M2", "C", &["M1", "M2"])),
            ),
            node("plain", None),
            node(
                "w2",
                Some(member(pb::SwarmRole::Worker, "W2", "", &["OTHER"])),
            ),
        ];
        fill_worker_clusters(nodes.iter_mut().filter_map(|(_, s)| s.as_mut()));
        assert_eq!(cluster_of(&nodes, "w1"), "C");
        assert_eq!(cluster_of(&nodes, "m2"), "C");
        // None of its managers has an agent: unknown.
        assert_eq!(cluster_of(&nodes, "w2"), "");
    }

    #[test]
    fn swarm_facts_round_trip_and_unknown_roles_are_workers() {
        let wire = member(pb::SwarmRole::Manager, "M1", "C", &["M1"]);
        let facts = SwarmFacts::from(wire.clone());
        let stored = serde_json::to_string(&facts).unwrap();
        assert_eq!(
            stored,
            r#"{"role":"manager","node_id":"M1","cluster_id":"C","manager_reachable":true,"local_node_state":"active","manager_node_ids":["M1"]}"#
        );
        let read: SwarmFacts = serde_json::from_str(&stored).unwrap();
        assert_eq!(pb::SwarmFacts::from(&read), wire);
        let odd = pb::SwarmFacts { role: 7, ..wire };
        assert_eq!(SwarmFacts::from(odd).role, SwarmRole::Worker);
    }
}

//! The engine's Swarm membership, read from `docker info`'s Swarm section
//! for NodeFacts (docs/SWARM.md).

use bollard::models::{LocalNodeState, SwarmInfo};
use convoy_proto::{SwarmFacts, SwarmRole};

/// Longest ID, address or error kept, in characters.
const MAX_TEXT: usize = 512;
/// Most manager IDs kept (Docker advises at most 7 managers).
const MAX_MANAGERS: usize = 32;

fn bounded(s: Option<&String>) -> String {
    s.map(|s| s.chars().take(MAX_TEXT).collect())
        .unwrap_or_default()
}

/// `None` when the engine is in no swarm (LocalNodeState inactive or
/// empty); otherwise its role, IDs and whether it reaches a manager.
pub(super) fn facts(info: &SwarmInfo) -> Option<SwarmFacts> {
    let state = info.local_node_state.unwrap_or(LocalNodeState::EMPTY);
    if matches!(state, LocalNodeState::EMPTY | LocalNodeState::INACTIVE) {
        return None;
    }
    let manager = info.control_available.unwrap_or(false);
    let error = bounded(info.error.as_ref());
    let manager_node_ids: Vec<String> = info
        .remote_managers
        .iter()
        .flatten()
        .filter_map(|peer| peer.node_id.as_ref())
        .take(MAX_MANAGERS)
        .map(|id| bounded(Some(id)))
        .collect();
    let manager_reachable = state == LocalNodeState::ACTIVE
        && error.is_empty()
        && (manager || !manager_node_ids.is_empty());
    Some(SwarmFacts {
        role: if manager {
            SwarmRole::Manager
        } else {
            SwarmRole::Worker
        } as i32,
        node_id: bounded(info.node_id.as_ref()),
        // Docker sends the cluster only to managers.
        cluster_id: bounded(info.cluster.as_ref().and_then(|c| c.id.as_ref())),
        manager_reachable,
        local_node_state: state.to_string(),
        error,
        manager_node_ids,
        node_addr: bounded(info.node_addr.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docker info`'s Swarm section as Docker 20.10 printed it for a
    /// manager and a worker of one swarm (trimmed).
    const MANAGER: &str = r#"{"NodeID":"1a1pfotpjp2i23ci1rep5vvio","NodeAddr":"127.77.1.1","LocalNodeState":"active","ControlAvailable":true,"Error":"","RemoteManagers":[{"NodeID":"1a1pfotpjp2i23ci1rep5vvio","Addr":"127.77.1.1:2377"}],"Nodes":2,"Managers":1,"Cluster":{"ID":"ox4vwk4py9xyygyaz07p1p6ej","Version":{"Index":10}}}"#;
    const WORKER: &str = r#"{"NodeID":"r9lkasmileq8vk9b3p9ttrxa6","NodeAddr":"127.77.1.2","LocalNodeState":"active","ControlAvailable":false,"Error":"","RemoteManagers":[{"NodeID":"1a1pfotpjp2i23ci1rep5vvio","Addr":"127.77.1.1:2377"}]}"#;

    fn read(json: &str) -> Option<SwarmFacts> {
        facts(&serde_json::from_str::<SwarmInfo>(json).unwrap())
    }

    #[test]
    fn a_manager_reports_its_cluster_and_reaches_itself() {
        let f = read(MANAGER).unwrap();
        assert_eq!(f.role, SwarmRole::Manager as i32);
        assert_eq!(f.node_id, "1a1pfotpjp2i23ci1rep5vvio");
        assert_eq!(f.cluster_id, "ox4vwk4py9xyygyaz07p1p6ej");
        assert!(f.manager_reachable);
        assert_eq!(f.local_node_state, "active");
        assert_eq!(f.manager_node_ids, ["1a1pfotpjp2i23ci1rep5vvio"]);
        assert_eq!(f.node_addr, "127.77.1.1");
    }

    #[test]
    fn a_worker_knows_its_managers_but_not_the_cluster() {
        let f = read(WORKER).unwrap();
        assert_eq!(f.role, SwarmRole::Worker as i32);
        assert_eq!(f.node_id, "r9lkasmileq8vk9b3p9ttrxa6");
        assert_eq!(f.cluster_id, "");
        assert!(f.manager_reachable);
        assert_eq!(f.manager_node_ids, ["1a1pfotpjp2i23ci1rep5vvio"]);
    }

    #[test]
    fn an_engine_in_no_swarm_reports_none() {
        assert_eq!(
            read(
                r#"{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false,"Error":"","RemoteManagers":null}"#
            ),
            None
        );
        assert_eq!(read("{}"), None);
    }

    #[test]
    fn a_worker_without_managers_or_with_an_error_reaches_none() {
        let lonely = WORKER.replace(
            r#"[{"NodeID":"1a1pfotpjp2i23ci1rep5vvio","Addr":"127.77.1.1:2377"}]"#,
            "null",
        );
        assert!(!read(&lonely).unwrap().manager_reachable);
        let failing = WORKER.replace(
            r#""Error":"""#,
            r#""Error":"rpc error: context deadline exceeded""#,
        );
        let f = read(&failing).unwrap();
        assert!(!f.manager_reachable);
        assert_eq!(f.error, "rpc error: context deadline exceeded");
        let pending = WORKER.replace(r#""active""#, r#""pending""#);
        let f = read(&pending).unwrap();
        assert!(!f.manager_reachable);
        assert_eq!(f.local_node_state, "pending");
    }
}

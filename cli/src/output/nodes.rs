//! What `nodes` and `node remove` print: one row of facts per node, and
//! what a removal revoked and lost.

use convoy_api::views::{gpus_summary, node_state_word, scheduling_word, swarm_summary};
use convoy_proto as pb;
use serde::Serialize;

use super::cells::{ago, expires_in, format_gib, or_dash, plural, table};

pub fn nodes_table(response: &pb::ListNodesResponse, now_ms: i64) -> String {
    if response.nodes.is_empty() {
        return "no nodes\n".to_owned();
    }
    let rows: Vec<Vec<String>> = response
        .nodes
        .iter()
        .map(|node| {
            let facts = node.facts.clone().unwrap_or_default();
            let docker = match (&node.facts, facts.docker_version.as_str()) {
                (None, _) => "-".to_owned(),
                (Some(_), "") => "unreachable".to_owned(),
                (Some(_), version) => version.to_owned(),
            };
            vec![
                node.name.clone(),
                // `ready`, or `ready,cordoned` / `,draining` / `,drained`.
                match scheduling_word(node) {
                    "active" => node_state_word(node.state).to_owned(),
                    scheduling => format!("{},{scheduling}", node_state_word(node.state)),
                },
                or_dash(&facts.hostname).to_owned(),
                or_dash(&facts.os).to_owned(),
                or_dash(&facts.kernel).to_owned(),
                if facts.cpus == 0 {
                    "-".to_owned()
                } else {
                    facts.cpus.to_string()
                },
                format_gib(facts.memory_bytes),
                gpus_summary(&facts.gpus),
                docker,
                swarm_summary(facts.swarm.as_ref()),
                ago(node.connected_since_unix_ms, now_ms, "-"),
                ago(node.last_heartbeat_unix_ms, now_ms, "never"),
                node.workloads.to_string(),
                expires_in(node.certificate_expires_unix_ms, now_ms),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATE",
            "HOSTNAME",
            "OS",
            "KERNEL",
            "CPUS",
            "MEMORY",
            "GPUS",
            "DOCKER",
            "SWARM",
            "CONNECTED",
            "HEARTBEAT",
            "WORKLOADS",
            "CERT EXPIRES",
        ],
        &rows,
    )
}

#[derive(Debug, Serialize, PartialEq)]
pub struct NodeRemovedJson {
    pub node: String,
    pub lost_instances: u32,
    pub revoked_certificates: u32,
}

impl NodeRemovedJson {
    pub fn new(node: &str, response: &pb::RemoveNodeResponse) -> Self {
        let pb::RemoveNodeResponse {
            lost_instances,
            revoked_certificates,
        } = response;
        Self {
            node: node.to_owned(),
            lost_instances: *lost_instances,
            revoked_certificates: *revoked_certificates,
        }
    }
}

pub fn node_removed_line(removed: &NodeRemovedJson) -> String {
    format!(
        "removed node {}: {} revoked, {} lost\n",
        removed.node,
        plural(removed.revoked_certificates as usize, "certificate"),
        plural(removed.lost_instances as usize, "instance")
    )
}

#[cfg(test)]
mod tests {
    use convoy_api::views::NodesJson;
    use pb::NodeState;
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn nodes_response() -> pb::ListNodesResponse {
        pb::ListNodesResponse {
            nodes: vec![
                pb::Node {
                    name: "node-a".into(),
                    state: NodeState::Ready as i32,
                    facts: Some(pb::NodeFacts {
                        hostname: "host-a".into(),
                        os: "Ubuntu 24.04".into(),
                        kernel: "6.8.0".into(),
                        arch: "x86_64".into(),
                        cpus: 8,
                        memory_bytes: 16 * (1 << 30),
                        docker_version: "27.3.1".into(),
                        labels: [
                            ("zone".to_owned(), "a".to_owned()),
                            ("gpu".to_owned(), "no".to_owned()),
                        ]
                        .into_iter()
                        .collect(),
                        platform_os: "linux".into(),
                        allowed_bind_paths: Vec::new(),
                        allowed_host_access: Vec::new(),
                        gpus: Vec::new(),
                        swarm: None,
                    }),
                    agent_version: "0.1.0".into(),
                    connected_since_unix_ms: NOW - 3 * 60_000,
                    last_heartbeat_unix_ms: NOW - 2_000,
                    plan_generation: 3,
                    acked_generation: 3,
                    workloads: 2,
                    metrics: None,
                    address: "10.0.0.1:4242".into(),
                    certificate_expires_unix_ms: NOW + 23 * 3_600_000,
                    ..pb::Node::default()
                },
                pb::Node {
                    name: "node-b".into(),
                    state: NodeState::Lost as i32,
                    facts: None,
                    last_heartbeat_unix_ms: NOW - 2 * 3_600_000,
                    certificate_expires_unix_ms: NOW - 1_000,
                    ..pb::Node::default()
                },
            ],
        }
    }

    #[test]
    fn nodes_table_shows_facts_ages_and_memory_in_gib() {
        assert_eq!(
            nodes_table(&nodes_response(), NOW),
            "NAME     STATE   HOSTNAME   OS             KERNEL   CPUS   MEMORY     GPUS   DOCKER   SWARM   CONNECTED   HEARTBEAT   WORKLOADS   CERT EXPIRES\n\
             node-a   ready   host-a     Ubuntu 24.04   6.8.0    8      16.0 GiB   -      27.3.1   -       3m ago      2s ago      2           in 23h\n\
             node-b   lost    -          -              -        -      -          -      -        -       -           2h ago      0           expired\n"
        );
    }

    fn h100(index: u32) -> pb::GpuDevice {
        pb::GpuDevice {
            index,
            uuid: format!("GPU-{index}"),
            name: "NVIDIA H100 80GB HBM3".into(),
            memory_total_bytes: 85_520_809_984,
            mig_mode: "disabled".into(),
            driver_version: "550.54.15".into(),
            cuda_version: "12.4".into(),
            compute_capability: "9.0".into(),
        }
    }

    /// A node with two H100s, sampled once.
    fn gpu_node() -> pb::ListNodesResponse {
        let mut response = nodes_response();
        let node = &mut response.nodes[0];
        node.facts.as_mut().unwrap().gpus = vec![h100(0), h100(1)];
        node.metrics = Some(pb::HostMetrics {
            gpus: vec![pb::GpuSample {
                index: 1,
                utilization_percent: 87.5,
                memory_used_bytes: 1 << 30,
                temperature_c: 66.0,
                power_w: 512.25,
            }],
            ..pb::HostMetrics::default()
        });
        response
    }

    #[test]
    fn the_state_says_cordoned_draining_and_drained() {
        let mut response = nodes_response();
        response.nodes[0].cordoned = true;
        let table = nodes_table(&response, NOW);
        assert!(table.contains("node-a   ready,cordoned   "), "{table}");
        response.nodes[0].draining = true;
        let table = nodes_table(&response, NOW);
        assert!(table.contains("node-a   ready,draining   "), "{table}");
        response.nodes[0].draining = false;
        response.nodes[0].drained = true;
        let table = nodes_table(&response, NOW);
        assert!(table.contains("node-a   ready,drained   "), "{table}");
        let json = serde_json::to_value(NodesJson::from(&response)).unwrap();
        assert_eq!(json["nodes"][0]["scheduling"], "drained");
        assert_eq!(json["nodes"][0]["cordoned"], true);
        assert_eq!(json["nodes"][1]["scheduling"], "active");
    }

    #[test]
    fn gpus_column_counts_models() {
        let table = nodes_table(&gpu_node(), NOW);
        let row = table.lines().nth(1).unwrap();
        assert!(row.contains("   2× NVIDIA H100 80GB HBM3   "), "{table}");
        let mixed = [
            pb::GpuDevice {
                name: "Tesla T4".into(),
                ..h100(2)
            },
            h100(0),
            h100(1),
        ];
        assert_eq!(
            gpus_summary(&mixed),
            "1× Tesla T4, 2× NVIDIA H100 80GB HBM3"
        );
        assert_eq!(gpus_summary(&[]), "-");
    }

    #[test]
    fn nodes_json_lists_gpus_and_their_samples() {
        let value = serde_json::to_value(NodesJson::from(&gpu_node())).unwrap();
        let node = &value["nodes"][0];
        assert_eq!(
            node["gpus"][1],
            json!({
                "index": 1,
                "uuid": "GPU-1",
                "name": "NVIDIA H100 80GB HBM3",
                "memory_total_bytes": 85_520_809_984u64,
                "mig_mode": "disabled",
                "driver_version": "550.54.15",
                "cuda_version": "12.4",
                "compute_capability": "9.0",
            })
        );
        assert_eq!(
            node["metrics"]["gpus"],
            json!([{
                "index": 1,
                "utilization_percent": 87.5,
                "memory_used_bytes": 1073741824u64,
                "temperature_c": 66.0,
                "power_w": 512.25,
            }])
        );
        assert_eq!(value["nodes"][1]["gpus"], json!([]));
    }

    /// node-a a worker that reaches its manager, node-b a manager.
    fn swarm_nodes() -> pb::ListNodesResponse {
        let mut response = nodes_response();
        response.nodes[0].facts.as_mut().unwrap().swarm = Some(pb::SwarmFacts {
            role: pb::SwarmRole::Worker as i32,
            node_id: "w1".into(),
            cluster_id: "c1".into(),
            manager_reachable: true,
            local_node_state: "active".into(),
            error: String::new(),
            manager_node_ids: vec!["m1".into()],
            node_addr: "10.0.0.1".into(),
        });
        response.nodes[1].facts = Some(pb::NodeFacts {
            swarm: Some(pb::SwarmFacts {
                role: pb::SwarmRole::Manager as i32,
                node_id: "m1".into(),
                cluster_id: "c1".into(),
                manager_reachable: true,
                local_node_state: "active".into(),
                ..pb::SwarmFacts::default()
            }),
            ..pb::NodeFacts::default()
        });
        response
    }

    #[test]
    fn swarm_column_shows_the_role_and_a_lost_manager() {
        let table = nodes_table(&swarm_nodes(), NOW);
        let rows: Vec<&str> = table.lines().collect();
        assert!(rows[1].contains(" 27.3.1        worker "), "{table}");
        assert!(rows[2].contains(" manager "), "{table}");
        let mut lost = swarm_nodes().nodes[0].facts.clone().unwrap().swarm.unwrap();
        lost.manager_reachable = false;
        assert_eq!(swarm_summary(Some(&lost)), "worker (unreachable)");
        lost.local_node_state = "pending".into();
        assert_eq!(swarm_summary(Some(&lost)), "worker (pending)");
        assert_eq!(swarm_summary(None), "-");
    }

    #[test]
    fn nodes_json_has_a_swarm_object_only_in_a_swarm() {
        let value = serde_json::to_value(NodesJson::from(&swarm_nodes())).unwrap();
        assert_eq!(
            value["nodes"][0]["swarm"],
            json!({
                "role": "worker",
                "node_id": "w1",
                "cluster_id": "c1",
                "manager_reachable": true,
                "state": "active",
                "error": "",
                "manager_node_ids": ["m1"],
                "node_addr": "10.0.0.1",
            })
        );
        assert_eq!(value["nodes"][1]["swarm"]["role"], "manager");
        let plain = serde_json::to_value(NodesJson::from(&nodes_response())).unwrap();
        assert!(plain["nodes"][0].get("swarm").is_none());
    }

    #[test]
    fn nodes_json_uses_contract_names() {
        let value = serde_json::to_value(NodesJson::from(&nodes_response())).unwrap();
        assert_eq!(
            value["nodes"][0],
            json!({
                "name": "node-a",
                "state": "ready",
                "hostname": "host-a",
                "os": "Ubuntu 24.04",
                "kernel": "6.8.0",
                "arch": "x86_64",
                "cpus": 8,
                "memory_bytes": 17179869184u64,
                "docker_version": "27.3.1",
                "labels": {"gpu": "no", "zone": "a"},
                "allowed_bind_paths": [],
                "gpus": [],
                "agent_version": "0.1.0",
                "connected_since_unix_ms": NOW - 180_000,
                "last_heartbeat_unix_ms": NOW - 2_000,
                "plan_generation": 3,
                "acked_generation": 3,
                "workloads": 2,
                "certificate_expires_unix_ms": NOW + 23 * 3_600_000,
                "metrics": null,
                "scheduling": "active",
                "cordoned": false,
                "draining": false,
            })
        );
        assert_eq!(value["nodes"][1]["state"], "lost");
        assert_eq!(value["nodes"][1]["labels"], json!({}));
    }
}

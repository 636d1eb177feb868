//! Swarm facts (issue 17, first increment): two extra Docker engines form a
//! swarm of the test's own (`SwarmPair`: a manager and a worker, beside the
//! machine's main engine), with one Convoy agent on each (`DOCKER_HOST`).
//! `convoy nodes` shows one manager and one worker of the same cluster,
//! each with its engine's node ID, both reaching a manager; once the worker
//! leaves the swarm its agent says Hello again and the node shows none.

use std::time::Duration;

use anyhow::{ensure, Context};
use convoy_tests::swarm::SwarmPair;
use convoy_tests::{skip_without_docker, wait_until, Cluster};
use serde_json::Value;

/// The agent compares its engine's Swarm state every 10 s.
const REFRESH: Duration = Duration::from_secs(30);

fn node<'a>(nodes: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    nodes["nodes"]
        .as_array()
        .context("no nodes array")?
        .iter()
        .find(|n| n["name"] == name)
        .with_context(|| format!("{name} not listed in {nodes}"))
}

#[test]
fn nodes_show_each_engines_swarm_role_until_the_worker_leaves() {
    skip_without_docker!();
    // Declared first, dropped last: after the agents are gone.
    let pair = SwarmPair::start();
    let mut c = Cluster::start();
    let manager = c.add_agent_with_env(&[("DOCKER_HOST", &pair.manager.host())]);
    let worker = c.add_agent_with_env(&[("DOCKER_HOST", &pair.worker.host())]);
    c.wait_nodes_ready(&[manager.clone(), worker.clone()]);
    let manager_id = pair.manager.node_id().unwrap();
    let worker_id = pair.worker.node_id().unwrap();
    assert!(!pair.cluster_id.is_empty());

    let nodes: Value = c.cli_json(&["nodes"]);
    let m = &node(&nodes, &manager).unwrap()["swarm"];
    assert_eq!(m["role"], "manager", "{nodes}");
    assert_eq!(m["node_id"], manager_id.as_str());
    assert_eq!(m["cluster_id"], pair.cluster_id.as_str());
    assert_eq!(m["manager_reachable"], true);
    assert_eq!(m["state"], "active");
    let w = &node(&nodes, &worker).unwrap()["swarm"];
    assert_eq!(w["role"], "worker", "{nodes}");
    assert_eq!(w["node_id"], worker_id.as_str());
    // Docker tells only managers the cluster: filled in from the manager.
    assert_eq!(w["cluster_id"], pair.cluster_id.as_str());
    assert_eq!(w["manager_reachable"], true);
    assert_eq!(w["manager_node_ids"], serde_json::json!([manager_id]));

    let table = String::from_utf8_lossy(&c.cli(&["nodes"]).stdout).into_owned();
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name} in\n{table}"))
            .to_string()
    };
    assert!(table.lines().next().unwrap().contains(" SWARM "), "{table}");
    assert!(row(&manager).contains(" manager "), "{table}");
    assert!(row(&worker).contains(" worker "), "{table}");

    pair.worker_leaves().unwrap();
    wait_until(
        "the worker's node shows no swarm",
        REFRESH,
        Duration::from_millis(500),
        || {
            let nodes: Value = c.try_cli_json(&["nodes"])?;
            let w = node(&nodes, &worker)?;
            ensure!(w["state"] == "ready", "{w}");
            ensure!(w.get("swarm").is_none(), "{w}");
            Ok(())
        },
    );
    let table = String::from_utf8_lossy(&c.cli(&["nodes"]).stdout).into_owned();
    let row = table.lines().find(|l| l.starts_with(&worker)).unwrap();
    assert!(!row.contains(" worker "), "{table}");
    // The manager still is one, of a swarm of one.
    let nodes: Value = c.cli_json(&["nodes"]);
    assert_eq!(node(&nodes, &manager).unwrap()["swarm"]["role"], "manager");
    c.assert_healthy();
}

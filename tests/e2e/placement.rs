//! Where instances go: global services, placement constraints on the labels
//! agents declare, instances no node can take.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::ensure;
use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, wait_until, Cluster, ServiceSpec, SETTLE};

fn nodes_running(c: &Cluster, svc: &str) -> anyhow::Result<Vec<String>> {
    let cts = c.containers_of(svc)?;
    ensure!(
        cts.iter().all(|ct| ct.state.running),
        "not all running: {cts:#?}"
    );
    let mut nodes: Vec<String> = cts
        .iter()
        .map(|ct| ct.must_label("io.convoy.node").to_string())
        .collect();
    nodes.sort();
    Ok(nodes)
}

#[test]
fn global_service_runs_once_on_every_node_including_one_that_joins_later() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let svc = c.service_name("everywhere");
    let spec = ServiceSpec::new(&svc, &c.image()).global();
    let file = c.write_spec("global.yaml", &compose(&[&spec]));
    c.apply(&file);
    let expect = |c: &Cluster| {
        let mut names = c.node_names();
        names.sort();
        wait_until(
            format!("{svc} runs once on each of {names:?}"),
            SETTLE,
            Duration::from_millis(250),
            || {
                let nodes = nodes_running(c, &svc)?;
                ensure!(nodes == names, "runs on {nodes:?}");
                let status = c.try_service_status(&svc)?;
                ensure!(
                    status.running as usize == names.len(),
                    "convoy status says {}",
                    status.describe()
                );
                Ok(())
            },
        )
    };
    expect(&c);
    c.add_agent();
    c.wait_nodes_ready(&c.node_names());
    expect(&c);
    c.assert_healthy();
}

#[test]
fn placement_constraint_keeps_instances_on_nodes_with_the_label() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let gpu = c.add_agent_with_args(&["--label", "role=gpu"]);
    let plain = c.add_agent();
    let nodes = c.wait_nodes_ready(&[gpu.clone(), plain.clone()]);
    let gpu_node = nodes.iter().find(|n| n.name == gpu).unwrap();
    assert_eq!(
        gpu_node.labels.get("role").map(String::as_str),
        Some("gpu"),
        "{gpu_node:#?}"
    );

    let svc = c.service_name("gpu");
    let nowhere = c.service_name("nowhere");
    let image = c.image();
    let spec = ServiceSpec::new(&svc, &image)
        .replicas(3)
        .deploy("placement:")
        .deploy("  constraints: [\"node.labels.role == gpu\"]");
    let nowhere_spec = ServiceSpec::new(&nowhere, &image)
        .deploy("placement:")
        .deploy("  constraints: [\"node.labels.role == tpu\"]");
    let file = c.write_spec("gpu.yaml", &compose(&[&spec, &nowhere_spec]));
    let report = c.apply(&file);
    let pending: BTreeSet<&str> = report
        .service(&nowhere)
        .instances
        .iter()
        .map(|i| i.action.as_str())
        .collect();
    assert_eq!(pending, BTreeSet::from(["pending"]), "{report:#?}");

    let cts = c.wait_service_running(&svc, 3, 1);
    assert!(
        cts.iter().all(|ct| ct.must_label("io.convoy.node") == gpu),
        "an instance left the gpu node: {:#?}",
        cts.iter().map(|ct| ct.describe()).collect::<Vec<_>>()
    );
    let status = c.service_status(&nowhere);
    assert!(
        status
            .instances
            .iter()
            .all(|i| i.state == "pending" && i.node.is_empty()),
        "{}",
        status.describe()
    );
    assert!(c.containers_of(&nowhere).unwrap().is_empty());
    c.assert_healthy();
}

/// Issue 14: `deploy.resources.reservations` are set aside per node: on a
/// node with room for two, the third instance waits, saying what it needs
/// and the most any node has free; the two that fit really run, with
/// Docker's soft limit.
#[test]
fn reservations_keep_one_more_instance_pending_on_a_full_node_with_the_reason() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let node = c.node_names()[0].clone();
    let nodes: serde_json::Value = c.cli_json(&["nodes"]);
    let memory = nodes["nodes"][0]["memory_bytes"].as_u64().unwrap();
    assert!(memory > 0, "the node reports its memory: {nodes}");
    // 40 % of the node each: two fit, the third does not.
    let mib = memory * 2 / 5 / (1 << 20);
    let svc = c.service_name("big");
    let spec = ServiceSpec::new(&svc, &c.image())
        .replicas(3)
        .deploy(&format!("resources: {{reservations: {{memory: {mib}M}}}}"));
    let file = c.write_spec("big.yaml", &compose(&[&spec]));
    c.apply(&file);
    let reason = wait_until(
        format!("two instances of {svc} run and one waits"),
        SETTLE,
        Duration::from_millis(250),
        || {
            let status = c.try_service_status(&svc)?;
            let running = nodes_running(&c, &svc)?;
            ensure!(running.len() == 2, "docker runs {running:?}");
            ensure!(
                status.running == 2,
                "convoy status says {}",
                status.describe()
            );
            let pending: Vec<_> = status
                .instances
                .iter()
                .filter(|i| i.node.is_empty())
                .collect();
            ensure!(
                pending.len() == 1,
                "convoy status says {}",
                status.describe()
            );
            Ok(pending[0].reason.clone())
        },
    );
    assert!(
        reason.starts_with("needs ")
            && reason.contains(" memory reserved; most free is ")
            && reason.ends_with(&format!(" on {node}")),
        "{reason}"
    );
    for ct in c.containers_of(&svc).unwrap() {
        let soft = convoy_tests::docker::docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.MemoryReservation}}",
            &ct.id,
        ])
        .unwrap();
        assert_eq!(soft.trim(), (mib << 20).to_string());
    }
    c.assert_healthy();
}

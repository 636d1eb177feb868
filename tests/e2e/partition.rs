//! Agents cut off from the coordinator, and nodes going away.

use std::time::Duration;

use anyhow::{anyhow, ensure};
use convoy_tests::spec::compose;
use convoy_tests::{docker, skip_without_docker, wait_until, Cluster, ServiceSpec, SETTLE};

#[test]
fn agent_keeps_enforcing_its_plan_while_the_coordinator_is_away() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let node = c.node_names()[0].clone();
    let svc = c.service_name("alone");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2);
    let file = c.write_spec("alone.yaml", &compose(&[&spec]));
    c.apply(&file);
    let before = c.wait_service_running(&svc, 2, 1);
    assert!(
        c.agent(&node).data_dir.join("plan.pb").is_file(),
        "the agent keeps no plan.pb in its data dir"
    );

    c.kill_coordinator();
    // The agent restarts a killed container on its own...
    docker::kill(&before[0].id).unwrap();
    let restarted = |what: &str| {
        wait_until(
            format!("instance 1 of {svc} runs again {what}"),
            SETTLE,
            Duration::from_millis(250),
            || {
                let cts = c.containers_of(&svc)?;
                let shown: Vec<String> = cts.iter().map(|ct| ct.describe()).collect();
                let first = cts
                    .iter()
                    .find(|ct| ct.label("io.convoy.instance") == Some("1"))
                    .ok_or_else(|| anyhow!("no instance 1: {shown:#?}"))?;
                ensure!(
                    cts.len() == 2
                        && first.state.running
                        && first.state.started_at != before[0].state.started_at,
                    "docker has {shown:#?}"
                );
                Ok(())
            },
        )
    };
    restarted("while convoyd is down");

    // ...and after its own restart, from plan.pb, without redeploying.
    c.stop_agent(&node);
    let snapshot = |c: &Cluster| -> Vec<(String, String)> {
        let mut v: Vec<_> = c
            .containers_of(&svc)
            .unwrap()
            .into_iter()
            .map(|ct| (ct.id, ct.state.started_at))
            .collect();
        v.sort();
        v
    };
    let held = snapshot(&c);
    c.start_agent(&node);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(snapshot(&c), held, "the agent redeployed from plan.pb");
    assert!(
        c.agent_exited(&node).is_none(),
        "the agent gave up without a coordinator"
    );

    c.start_coordinator();
    c.wait_nodes_ready(&[node]);
    c.wait_service_running(&svc, 2, 1);
    assert_eq!(snapshot(&c), held);
    c.assert_healthy();
}

#[test]
fn stopped_agent_shows_its_node_lost_and_its_instances_disconnected() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let svc = c.service_name("down");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2);
    let file = c.write_spec("down.yaml", &compose(&[&spec]));
    c.apply(&file);
    let before = c.wait_service_running(&svc, 2, 1);
    let node = before[0].must_label("io.convoy.node").to_string();

    c.stop_agent(&node);
    wait_until(
        format!("{node} is down and its instance disconnected"),
        SETTLE,
        Duration::from_millis(250),
        || {
            let nodes = c.try_nodes()?;
            let n = nodes
                .iter()
                .find(|n| n.name == node)
                .ok_or_else(|| anyhow!("{node} is no longer listed"))?;
            ensure!(n.state == "lost", "{node} is {}", n.state);
            let status = c.try_service_status(&svc)?;
            ensure!(
                status
                    .instances
                    .iter()
                    .filter(|i| i.node == node)
                    .all(|i| !i.node_connected),
                "convoy status says {}",
                status.describe()
            );
            Ok(())
        },
    );
    // Its container still runs: the agent leaves containers when it stops.
    let ct = docker::find(&before[0].id)
        .unwrap()
        .expect("container gone");
    assert!(ct.state.running, "{}", ct.describe());

    c.start_agent(&node);
    c.wait_nodes_ready(&c.node_names());
    let after = c.wait_service_running(&svc, 2, 1);
    assert_eq!(after[0].id, before[0].id);
    c.assert_healthy();
}

#[test]
fn published_port_is_reachable_on_an_ephemeral_host_port() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("port");
    let spec = ServiceSpec::new(&svc, &c.image())
        .port("8080")
        .env("GREETING", "published");
    let file = c.write_spec("port.yaml", &compose(&[&spec]));
    c.apply(&file);
    let cts = c.wait_service_running(&svc, 1, 1);
    let mapped = docker::docker(&["port", &cts[0].id, "8080/tcp"]).unwrap();
    let port: u16 = mapped
        .lines()
        .find_map(|l| l.rsplit(':').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("8080/tcp is not published: {mapped:?}"));
    assert_ne!(port, 0);
    let (code, body) = wait_until(
        format!("127.0.0.1:{port} answers"),
        Duration::from_secs(20),
        Duration::from_millis(200),
        || convoy_tests::http::get(([127, 0, 0, 1], port).into(), "/"),
    );
    assert_eq!(code, 200);
    assert!(body.contains("published"), "{body:?}");
}

//! The coordinator going away (stopped, or killed) and coming back: nothing
//! is lost, agents reconnect on their own, nothing is redeployed.

use std::collections::BTreeMap;
use std::time::Duration;

use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, Cluster, ServiceSpec};

/// Container id → StartedAt of the service's containers.
fn snapshot(c: &Cluster, svc: &str, replicas: usize) -> BTreeMap<String, String> {
    c.wait_service_running(svc, replicas, 1)
        .into_iter()
        .map(|ct| (ct.id, ct.state.started_at))
        .collect()
}

fn assert_survives(c: &mut Cluster, how: &str, svc: &str, before: &BTreeMap<String, String>) {
    // Agents keep their containers while the coordinator is away.
    std::thread::sleep(Duration::from_secs(2));
    let meanwhile: BTreeMap<String, String> = c
        .containers_of(svc)
        .unwrap()
        .into_iter()
        .filter(|ct| ct.state.running)
        .map(|ct| (ct.id, ct.state.started_at))
        .collect();
    assert_eq!(
        &meanwhile, before,
        "containers changed while convoyd was down ({how})"
    );

    c.start_coordinator();
    c.wait_nodes_ready(&c.node_names());
    let after = snapshot(c, svc, 3);
    assert_eq!(&after, before, "containers were redeployed after {how}");
    let status = c.service_status(svc);
    assert_eq!(status.revision, 1, "{}", status.describe());
    assert!(
        status
            .instances
            .iter()
            .all(|i| i.node_connected && i.restarts == 0),
        "{}",
        status.describe()
    );
}

#[test]
fn coordinator_restart_keeps_services_and_redeploys_nothing() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let svc = c.service_name("keep");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(3);
    let file = c.write_spec("keep.yaml", &compose(&[&spec]));
    c.apply(&file);
    let before = snapshot(&c, &svc, 3);

    let exit = c.stop_coordinator();
    assert!(exit.success(), "convoyd exited with {exit} on SIGTERM");
    assert_survives(&mut c, "SIGTERM", &svc, &before);

    c.kill_coordinator();
    assert_survives(&mut c, "SIGKILL", &svc, &before);

    // The stored spec is intact: the same file is still "unchanged".
    let report = c.apply(&file);
    let change = report.service(&svc);
    assert_eq!(change.action, "unchanged", "{report:#?}");
    assert_eq!(change.revision, 1);
    assert_eq!(snapshot(&c, &svc, 3), before);
    c.assert_healthy();
}

#[test]
fn agent_restart_adopts_its_running_containers() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let svc = c.service_name("adopt");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2);
    let file = c.write_spec("adopt.yaml", &compose(&[&spec]));
    c.apply(&file);
    let before: BTreeMap<String, String> = c
        .wait_service_running(&svc, 2, 1)
        .into_iter()
        .map(|ct| (ct.id, ct.state.started_at))
        .collect();
    let node = c.node_names()[0].clone();

    let exit = c.stop_agent(&node);
    assert!(exit.success(), "the agent exited with {exit} on SIGTERM");
    // Stopping the agent leaves the containers running.
    let meanwhile: BTreeMap<String, String> = c
        .containers_of(&svc)
        .unwrap()
        .into_iter()
        .filter(|ct| ct.state.running)
        .map(|ct| (ct.id, ct.state.started_at))
        .collect();
    assert_eq!(
        meanwhile, before,
        "stopping the agent touched its containers"
    );

    c.start_agent(&node);
    c.wait_nodes_ready(&c.node_names());
    let after: BTreeMap<String, String> = c
        .wait_service_running(&svc, 2, 1)
        .into_iter()
        .map(|ct| (ct.id, ct.state.started_at))
        .collect();
    assert_eq!(after, before, "the restarted agent redeployed");
    c.assert_healthy();
}

//! What an agent may touch: its own node's managed containers, and nothing
//! else on the (shared) Docker daemon.

use std::time::Duration;

use convoy_tests::spec::compose;
use convoy_tests::{docker, skip_without_docker, Cluster, ServiceSpec};

#[test]
fn delete_removes_the_services_containers_and_only_those() {
    skip_without_docker!();
    let c = Cluster::with_agents(2);
    let gone = c.service_name("gone");
    let kept = c.service_name("kept");
    let image = c.image();
    let file = c.write_spec(
        "two.yaml",
        &compose(&[
            &ServiceSpec::new(&gone, &image).replicas(2),
            &ServiceSpec::new(&kept, &image).replicas(1),
        ]),
    );
    c.apply(&file);
    c.wait_service_running(&gone, 2, 1);
    let kept_before = c.wait_service_running(&kept, 1, 1);

    let report = c.delete(&gone);
    assert_eq!(report.service, gone);
    assert_eq!(report.env, "default");
    assert_eq!(report.removed_instances, 2);
    assert_eq!(report.last_revision, 1);

    c.wait_service_gone(&gone);
    let services = c.try_status().unwrap();
    assert!(
        services.iter().all(|s| s.name != gone),
        "`convoy status` still lists {gone}"
    );
    let kept_after = c.wait_service_running(&kept, 1, 1);
    assert_eq!(kept_before[0].id, kept_after[0].id);
    assert_eq!(
        kept_before[0].state.started_at,
        kept_after[0].state.started_at
    );
}

#[test]
fn containers_the_node_does_not_own_are_never_touched() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let svc = c.service_name("own");
    let image = c.image();
    let node_a = c.node_names()[0].clone();
    let cmd = ["/convoy-testapp", "--listen", "0.0.0.0:8080"];

    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push(&image);
        all.extend_from_slice(&cmd);
        let id = docker::run_detached(&all).expect("docker run");
        c.track_container(&id);
        id
    };
    // Started by hand, named like Convoy's, no labels at all.
    let look_alike_name = format!("convoy-default-{svc}-9-r1");
    let look_alike = run(&["--name", &look_alike_name]);
    // Managed, but by a node that is not in this cluster.
    let other_node = format!("{}-elsewhere", c.id);
    let other_node_labels = [
        "--label".to_string(),
        "io.convoy.managed=true".to_string(),
        "--label".to_string(),
        format!("io.convoy.node={other_node}"),
        "--label".to_string(),
        "io.convoy.env=default".to_string(),
        "--label".to_string(),
        format!("io.convoy.service={svc}"),
        "--label".to_string(),
        "io.convoy.instance=1".to_string(),
        "--label".to_string(),
        format!("io.convoy.workload=default/{svc}/1"),
        "--label".to_string(),
        "io.convoy.revision=1".to_string(),
    ];
    let args: Vec<&str> = other_node_labels.iter().map(String::as_str).collect();
    let other_nodes = run(&args);
    // Carries our node's label but not io.convoy.managed.
    let unmanaged = run(&[
        "--label",
        &format!("io.convoy.node={node_a}"),
        "--label",
        &format!("io.convoy.service={svc}"),
    ]);
    let foreign = [look_alike, other_nodes, unmanaged];
    let before: Vec<docker::Container> = foreign
        .iter()
        .map(|id| docker::find(id).unwrap().expect("just started"))
        .collect();

    // Create, replace and delete the service next to them.
    let spec = ServiceSpec::new(&svc, &image).replicas(2);
    let file = c.write_spec("own.yaml", &compose(&[&spec]));
    c.apply(&file);
    c.wait_service_running(&svc, 2, 1);
    c.write_spec("own.yaml", &compose(&[&spec.clone().env("GREETING", "v2")]));
    c.apply(&file);
    c.wait_service_running(&svc, 2, 2);
    c.delete(&svc);
    c.wait_service_gone(&svc);
    // And a while for the agents' periodic reconcile to run.
    std::thread::sleep(Duration::from_secs(5));

    for old in &before {
        let now = docker::find(&old.id)
            .unwrap()
            .unwrap_or_else(|| panic!("{} was removed", old.describe()));
        assert!(now.state.running, "{} was stopped", now.describe());
        assert_eq!(
            now.state.started_at,
            old.state.started_at,
            "{} was restarted",
            now.describe()
        );
        assert_eq!(now.name(), old.name(), "{} was renamed", old.describe());
    }
    c.assert_healthy();
}

//! Applying services: placement over nodes, labels, revisions, replacement,
//! idempotence, and what `convoy nodes` knows of the agents.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use convoy_tests::cli::same_container_id;
use convoy_tests::spec::compose;
use convoy_tests::{docker, http, skip_without_docker, wait_until, Cluster, ServiceSpec};

#[test]
fn applied_service_runs_three_replicas_spread_over_both_nodes() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let svc = c.service_name("web");
    let spec = ServiceSpec::new(&svc, &c.image())
        .replicas(3)
        .env("GREETING", "bonjour");
    let file = c.write_spec("web.yaml", &compose(&[&spec]));

    let report = c.apply(&file);
    assert!(!report.dry_run);
    let change = report.service(&svc);
    assert_eq!(change.action, "create", "{report:#?}");
    assert_eq!(change.env, "default");
    assert_eq!(change.revision, 1);
    assert_eq!(change.instances.len(), 3, "{report:#?}");

    let containers = c.wait_service_running(&svc, 3, 1);
    let nodes = c.node_names();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut indexes = BTreeSet::new();
    for ct in &containers {
        let node = ct.must_label("io.convoy.node").to_string();
        let index = ct.must_label("io.convoy.instance").to_string();
        assert!(
            nodes.contains(&node),
            "{} is on unknown node {node}",
            ct.name()
        );
        assert_eq!(ct.must_label("io.convoy.managed"), "true");
        assert_eq!(ct.must_label("io.convoy.service"), svc);
        assert_eq!(ct.must_label("io.convoy.env"), "default");
        assert_eq!(ct.must_label("io.convoy.revision"), "1");
        assert_eq!(
            ct.must_label("io.convoy.workload"),
            format!("default/{svc}/{index}")
        );
        assert_eq!(ct.name(), format!("convoy-default-{svc}-{index}-r1"));
        assert_eq!(ct.config.image, c.image());
        assert_eq!(ct.env_var("GREETING"), Some("bonjour"));
        *per_node.entry(node).or_default() += 1;
        indexes.insert(index);
    }
    assert_eq!(
        indexes,
        BTreeSet::from(["1".to_string(), "2".to_string(), "3".to_string()])
    );
    assert_eq!(
        per_node.len(),
        2,
        "3 replicas should be spread over both nodes, got {per_node:?}"
    );

    // The containers really serve, with the spec's environment.
    for ct in &containers {
        let addr = ct.addr(8080).unwrap();
        let (code, body) = wait_until(
            format!("{} answers HTTP", ct.name()),
            Duration::from_secs(20),
            Duration::from_millis(200),
            || http::get(addr, "/"),
        );
        assert_eq!(code, 200);
        assert!(body.contains("bonjour"), "GET / said {body:?}");
    }

    // Convoy's report agrees with Docker, instance by instance.
    let status = c.service_status(&svc);
    assert_eq!((status.desired, status.running, status.revision), (3, 3, 1));
    assert_eq!(status.image, c.image());
    for inst in &status.instances {
        let ct = containers
            .iter()
            .find(|ct| same_container_id(&inst.container_id, &ct.id))
            .unwrap_or_else(|| panic!("no container for {}", status.describe()));
        assert_eq!(inst.id, format!("default/{svc}/{}", inst.index));
        assert_eq!(inst.node, ct.must_label("io.convoy.node"));
        assert_eq!(inst.index.to_string(), ct.must_label("io.convoy.instance"));
        assert_eq!(inst.container_name, ct.name());
        assert!(inst.node_connected, "{}", status.describe());
        assert_eq!(inst.restarts, 0, "{}", status.describe());
    }
    c.assert_healthy();
}

#[test]
fn nodes_lists_both_agents_ready_with_their_facts() {
    skip_without_docker!();
    let c = Cluster::with_agents(2);
    let docker_version = docker::server_version().unwrap();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();

    let nodes = c.wait_nodes_ready(&c.node_names());
    let ours: Vec<_> = nodes.iter().filter(|n| n.name.starts_with(&c.id)).collect();
    assert_eq!(ours.len(), 2, "{nodes:#?}");
    let now = Cluster::now_unix_ms();
    for node in ours {
        assert_eq!(node.state, "ready", "{node:#?}");
        assert_eq!(node.hostname, hostname, "{node:#?}");
        assert!(!node.os.is_empty(), "os is empty: {node:#?}");
        assert!(!node.kernel.is_empty(), "kernel is empty: {node:#?}");
        assert!(!node.arch.is_empty(), "arch is empty: {node:#?}");
        assert!(node.cpus > 0, "{node:#?}");
        assert!(node.memory_bytes > 0, "{node:#?}");
        assert_eq!(node.docker_version, docker_version, "{node:#?}");
        assert!(!node.agent_version.is_empty(), "{node:#?}");
        assert!(node.connected_since_unix_ms > 0, "{node:#?}");
        assert!(
            (now - node.last_heartbeat_unix_ms).abs() < 30_000,
            "last heartbeat {} ms ago: {node:#?}",
            now - node.last_heartbeat_unix_ms
        );
    }
}

#[test]
fn changing_image_command_and_env_replaces_every_container_at_revision_two() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let svc = c.service_name("upd");
    let v1 = ServiceSpec::new(&svc, "convoy-testapp:latest")
        .replicas(3)
        .env("GREETING", "one");
    let file = c.write_spec("upd.yaml", &compose(&[&v1]));
    c.apply(&file);
    let old = c.wait_service_running(&svc, 3, 1);
    let old_ids: BTreeSet<String> = old.iter().map(|ct| ct.id.clone()).collect();

    // Same content under another reference: an image change to Convoy.
    let v2 = v1
        .clone()
        .image(&c.image())
        .command(&["/convoy-testapp", "--listen", "0.0.0.0:8081"])
        .env("GREETING", "two");
    c.write_spec("upd.yaml", &compose(&[&v2]));
    let report = c.apply(&file);
    let change = report.service(&svc);
    assert_eq!(change.action, "update", "{report:#?}");
    assert_eq!((change.revision, change.previous_revision), (2, 1));
    for field in ["image", "command"] {
        assert!(
            change.changed_fields.iter().any(|f| f == field),
            "changed_fields lacks {field}: {:?}",
            change.changed_fields
        );
    }
    assert!(
        change.changed_fields.iter().any(|f| f.contains("env")),
        "changed_fields lacks the environment: {:?}",
        change.changed_fields
    );
    assert!(
        change.instances.iter().all(|i| i.action == "replace"),
        "{report:#?}"
    );

    let new = c.wait_service_running(&svc, 3, 2);
    for ct in &new {
        assert!(
            !old_ids.contains(&ct.id),
            "{} was not replaced",
            ct.describe()
        );
        assert_eq!(ct.must_label("io.convoy.revision"), "2");
        assert_eq!(ct.config.image, c.image());
        assert_eq!(
            ct.config.cmd.as_deref().unwrap_or_default(),
            ["/convoy-testapp", "--listen", "0.0.0.0:8081"]
        );
        assert_eq!(ct.env_var("GREETING"), Some("two"));
        assert!(ct.name().ends_with("-r2"), "{}", ct.name());
        let addr = ct.addr(8081).unwrap();
        let (_, body) = wait_until(
            format!("{} answers on 8081", ct.name()),
            Duration::from_secs(20),
            Duration::from_millis(200),
            || http::get(addr, "/"),
        );
        assert!(body.contains("two"), "GET / said {body:?}");
    }
    for id in &old_ids {
        assert!(
            docker::find(id).unwrap().is_none(),
            "old container {id} is still there"
        );
    }
    let status = c.service_status(&svc);
    assert_eq!(status.revision, 2);
    assert!(status.instances.iter().all(|i| i.revision == 2));
    c.assert_healthy();
}

#[test]
fn reapplying_the_same_file_changes_nothing() {
    skip_without_docker!();
    let c = Cluster::with_agents(2);
    let svc = c.service_name("same");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2);
    let file = c.write_spec("same.yaml", &compose(&[&spec]));
    c.apply(&file);
    let before = c.wait_service_running(&svc, 2, 1);

    let report = c.apply(&file);
    let change = report.service(&svc);
    assert_eq!(change.action, "unchanged", "{report:#?}");
    assert_eq!(change.revision, 1);
    assert!(change.changed_fields.is_empty(), "{report:#?}");

    // Give the agents time to do something wrong.
    std::thread::sleep(Duration::from_secs(3));
    let after = c.wait_service_running(&svc, 2, 1);
    let started = |cts: &[docker::Container]| -> BTreeMap<String, String> {
        cts.iter()
            .map(|ct| (ct.id.clone(), ct.state.started_at.clone()))
            .collect()
    };
    assert_eq!(started(&before), started(&after), "containers changed");
    assert_eq!(c.service_status(&svc).revision, 1);
}

#[test]
fn dry_run_plans_without_storing_or_starting_anything() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("dry");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2);
    let file = c.write_spec("dry.yaml", &compose(&[&spec]));
    let report: convoy_tests::ApplyReport =
        c.cli_json(&["apply", "-f", file.to_str().unwrap(), "--dry-run"]);
    assert!(report.dry_run);
    assert_eq!(report.service(&svc).action, "create");
    std::thread::sleep(Duration::from_secs(2));
    assert!(docker::of_service(&svc).unwrap().is_empty());
    let stored = c.try_status().unwrap();
    assert!(
        stored.iter().all(|s| s.name != svc),
        "the dry run stored {svc}"
    );
    // Then for real.
    c.apply(&file);
    c.wait_service_running(&svc, 2, 1);
}

#[test]
fn spec_labels_and_working_dir_reach_the_container() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("labels");
    let spec = ServiceSpec::new(&svc, &c.image())
        .extra("labels:")
        .extra("  team: payments")
        .extra("working_dir: /tmp");
    let file = c.write_spec("labels.yaml", &compose(&[&spec]));
    c.apply(&file);
    let cts = c.wait_service_running(&svc, 1, 1);
    assert_eq!(cts[0].label("team"), Some("payments"));
    assert_eq!(cts[0].config.working_dir, "/tmp");
    assert_eq!(cts[0].must_label("io.convoy.managed"), "true");
}

#[test]
fn applying_again_mid_rollout_ends_at_the_last_revision() {
    skip_without_docker!();
    let c = Cluster::with_agents(2);
    let svc = c.service_name("rapid");
    let base = ServiceSpec::new(&svc, &c.image()).replicas(3);
    let file = c.write_spec("rapid.yaml", &compose(&[&base]));
    c.apply(&file);
    c.wait_service_running(&svc, 3, 1);
    for (revision, greeting) in [(2, "second"), (3, "third")] {
        c.write_spec(
            "rapid.yaml",
            &compose(&[&base.clone().env("GREETING", greeting)]),
        );
        assert_eq!(c.apply(&file).service(&svc).revision, revision);
    }
    let cts = c.wait_service_running(&svc, 3, 3);
    assert!(cts.iter().all(|ct| ct.env_var("GREETING") == Some("third")));
}

#[test]
fn deleting_and_applying_again_at_once_runs_the_service_again() {
    skip_without_docker!();
    let c = Cluster::with_agents(2);
    let svc = c.service_name("again");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2);
    let file = c.write_spec("again.yaml", &compose(&[&spec]));
    c.apply(&file);
    let first = c.wait_service_running(&svc, 2, 1);
    c.delete(&svc);
    let report = c.apply(&file);
    let change = report.service(&svc);
    assert_eq!(change.action, "create", "{report:#?}");
    let second = c.wait_service_running(&svc, 2, change.revision);
    for ct in &second {
        assert!(
            first.iter().all(|old| old.id != ct.id),
            "{} survived the delete",
            ct.describe()
        );
    }
}

//! Swarm services (issue 17): a Compose service with `x-convoy.swarm`
//! deployed to a two-engine swarm of the test's own through the manager's
//! Convoy agent, under Convoy's history: the replicas spread over both
//! engines; a task killed by hand is replaced and shows as an event; an
//! update with a missing image is rolled back by Swarm
//! (`failure_action: rollback`) and by Convoy, with Swarm's words in
//! `history`; with the manager's agent stopped the service keeps running
//! and `status` says the driver is unreachable; `delete` leaves no Swarm
//! object of Convoy's behind.

use std::time::Duration;

use anyhow::{ensure, Context};
use convoy_tests::events::EventWatch;
use convoy_tests::spec::{compose, ServiceSpec};
use convoy_tests::swarm::{Engine, SwarmPair};
use convoy_tests::systemd::{bridge_gateway, enroll_systemd_host, HOST_NAME};
use convoy_tests::Cluster;
use convoy_tests::{skip_without_docker, wait_until};
use serde_json::Value;

const SETTLE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(500);

/// The running containers of Swarm service `name` on `engine`.
fn tasks_on(engine: &Engine, name: &str) -> anyhow::Result<Vec<String>> {
    let out = engine.docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={name}"),
    ])?;
    Ok(out.lines().map(str::to_string).collect())
}

fn status(c: &Cluster, svc: &str) -> anyhow::Result<Value> {
    let all: Value = c.try_cli_json(&["status", svc])?;
    all["services"]
        .as_array()
        .and_then(|s| s.first())
        .cloned()
        .with_context(|| format!("no service in {all}"))
}

/// How many of a status's instances are running (of `revision`, if given).
fn running(s: &Value, revision: Option<u64>) -> anyhow::Result<usize> {
    Ok(s["instances"]
        .as_array()
        .context("no instances")?
        .iter()
        .filter(|i| i["state"] == "running" && revision.is_none_or(|r| i["revision"] == r))
        .count())
}

/// The service runs `n` tasks of `revision` (status), and Docker on the
/// two engines runs `n` containers of it.
fn wait_running(c: &Cluster, pair: &SwarmPair, svc: &str, name: &str, n: usize, revision: u64) {
    wait_until(
        format!("{n} tasks of r{revision} running"),
        SETTLE,
        POLL,
        || {
            let s = status(c, svc)?;
            ensure!(running(&s, Some(revision))? == n, "{s:#}");
            let docker = tasks_on(&pair.manager, name)?.len() + tasks_on(&pair.worker, name)?.len();
            ensure!(docker == n, "{docker} containers in Docker; {s:#}");
            Ok(())
        },
    );
}

#[test]
fn a_compose_service_runs_on_swarm_with_convoys_history_and_rollback() {
    skip_without_docker!();
    // Declared first, dropped last: after the agents are gone.
    let pair = SwarmPair::start();
    let mut c = Cluster::start();
    let manager = c.add_agent_with_env(&[("DOCKER_HOST", &pair.manager.host())]);
    let worker = c.add_agent_with_env(&[("DOCKER_HOST", &pair.worker.host())]);
    c.wait_nodes_ready(&[manager.clone(), worker.clone()]);
    let svc = c.service_name("sw");
    let name = format!("default_{svc}");
    let update = "update_config: { parallelism: 1, monitor: 2s, failure_action: rollback }";
    let good = ServiceSpec::new(&svc, &c.image())
        .replicas(3)
        .env("GREETING", "good")
        .deploy(update)
        .extra(&format!("x-convoy: {{ swarm: {} }}", pair.cluster_id))
        .extra("secrets: [db_pw]")
        .extra("configs: [app_conf]");
    // A secret from a file and a config, as Swarm secrets of the tasks.
    let pw_file = c.write_spec("db_pw.txt", "swarm-s3cret");
    let extras = format!(
        "secrets:\n  db_pw:\n    file: {}\nconfigs:\n  app_conf:\n    content: \"port=80\"\n",
        pw_file.display()
    );
    let file = c.write_spec("sw.yaml", &(compose(&[&good]) + &extras));
    let out = c.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert!(
        out.status.success(),
        "apply --wait: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Three tasks over both engines; the service is the manager's agent's.
    wait_running(&c, &pair, &svc, &name, 3, 1);
    let on_manager = tasks_on(&pair.manager, &name).unwrap().len();
    let on_worker = tasks_on(&pair.worker, &name).unwrap().len();
    assert!(
        on_manager >= 1 && on_worker >= 1,
        "{on_manager} + {on_worker}"
    );
    let s = status(&c, &svc).unwrap();
    assert_eq!(s["swarm"]["driver"], manager.as_str(), "{s:#}");
    assert_eq!(s["swarm"]["driver_connected"], true);
    assert_eq!(s["swarm"]["service_name"], name.as_str());
    let nodes: std::collections::BTreeSet<&str> = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["swarm_node_id"].as_str().unwrap_or_default())
        .collect();
    let ids = [
        pair.manager.node_id().unwrap(),
        pair.worker.node_id().unwrap(),
    ];
    assert_eq!(
        nodes,
        ids.iter().map(String::as_str).collect(),
        "one task slot per instance, on both engines: {s:#}"
    );
    // Each task reads the secret and the config where the spec says.
    let task = tasks_on(&pair.worker, &name).unwrap()[0].clone();
    let cat = |path: &str| {
        pair.worker
            .docker(&["exec", &task, "/convoy-testapp", "--cat", path])
            .unwrap()
    };
    assert_eq!(cat("/run/secrets/db_pw").trim(), "swarm-s3cret");
    assert_eq!(cat("/app_conf").trim(), "port=80");
    let secrets = pair
        .manager
        .docker(&["secret", "ls", "--format", "{{.Name}}"])
        .unwrap();
    assert!(secrets.contains("convoy_default_db_pw_v1"), "{secrets}");
    let labels = pair
        .manager
        .docker(&[
            "service",
            "inspect",
            "--format",
            "{{json .Spec.Labels}}",
            &name,
        ])
        .unwrap();
    assert!(
        labels.contains("\"io.convoy.managed\":\"true\""),
        "{labels}"
    );

    // A task killed by hand: Swarm replaces it, and it shows as an event.
    let watch = EventWatch::start(c.cli_command(), &["--service", &svc]).unwrap();
    let victim = tasks_on(&pair.worker, &name).unwrap()[0].clone();
    pair.worker.docker(&["kill", &victim]).unwrap();
    watch
        .wait_for("an event of the killed task", SETTLE, |e| {
            e.kind.starts_with("instance.task-") && e.kind != "instance.task-running"
        })
        .unwrap_or_else(|e| panic!("{e:#}: {:?}", watch.events()));
    wait_running(&c, &pair, &svc, &name, 3, 1);
    assert!(!tasks_on(&pair.worker, &name).unwrap().contains(&victim));

    // An image no engine has: Swarm rolls the update back, and so does
    // Convoy, with Swarm's message as the reason.
    let bad = good.clone().image("convoy-missing:nope");
    let file = c.write_spec("sw.yaml", &(compose(&[&bad]) + &extras));
    let out = c.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        "revision 2 failed with Swarm's reason",
        SETTLE,
        POLL,
        || {
            let h: Value = c.try_cli_json(&["history", &svc])?;
            let r2 = h["revisions"]
                .as_array()
                .context("no revisions")?
                .iter()
                .find(|r| r["revision"] == 2)
                .with_context(|| format!("no r2 in {h:#}"))?
                .clone();
            let outcome = r2["outcome"].as_str().unwrap_or_default();
            if !outcome.contains("Swarm") {
                let update = pair.manager.docker(&[
                    "service",
                    "inspect",
                    "--format",
                    "{{json .UpdateStatus}}",
                    &name,
                ])?;
                let ps = pair
                    .manager
                    .docker(&["service", "ps", "--no-trunc", &name])?;
                anyhow::bail!(
                    "r2: {r2:#}\nSwarm's update: {update}\n{ps}\n{:#}",
                    status(&c, &svc)?
                );
            }
            Ok(())
        },
    );
    wait_until(
        "the service runs the good image again",
        SETTLE,
        POLL,
        || {
            let image = pair.manager.docker(&[
                "service",
                "inspect",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                &name,
            ])?;
            ensure!(image.trim().starts_with(&c.image()), "{image}");
            let s = status(&c, &svc)?;
            ensure!(running(&s, None)? == 3, "{s:#}");
            Ok(())
        },
    );

    // The manager's agent stops: Swarm keeps the service, status says the
    // driver is unreachable.
    c.stop_agent(&manager);
    wait_until(
        "status says the driver is unreachable",
        SETTLE,
        POLL,
        || {
            let s = status(&c, &svc)?;
            ensure!(s["swarm"]["driver_connected"] == false, "{s:#}");
            Ok(())
        },
    );
    let table = String::from_utf8_lossy(&c.cli(&["status", &svc]).stdout).into_owned();
    assert!(table.contains("UNREACHABLE"), "{table}");
    // Swarm, without the agent, settles at three tasks (a rollback may
    // still be finishing) and keeps them.
    wait_until(
        "Swarm runs the service 3/3 on its own",
        SETTLE,
        POLL,
        || {
            let replicas = pair.manager.docker(&[
                "service",
                "ls",
                "--filter",
                &format!("name={name}"),
                "--format",
                "{{.Replicas}}",
            ])?;
            ensure!(replicas.trim() == "3/3", "{replicas}");
            let docker =
                tasks_on(&pair.manager, &name)?.len() + tasks_on(&pair.worker, &name)?.len();
            ensure!(docker == 3, "{docker} containers");
            Ok(())
        },
    );
    c.start_agent(&manager);
    c.wait_nodes_ready(std::slice::from_ref(&manager));

    // Delete: no service or network of Convoy's is left in the swarm.
    c.delete(&svc);
    wait_until("no Swarm object of Convoy's is left", SETTLE, POLL, || {
        let services = pair.manager.docker(&[
            "service",
            "ls",
            "-q",
            "--filter",
            "label=io.convoy.managed=true",
        ])?;
        ensure!(services.trim().is_empty(), "services left: {services}");
        let networks = pair.manager.docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=io.convoy.managed=true",
        ])?;
        ensure!(networks.trim().is_empty(), "networks left: {networks}");
        let secrets = pair.manager.docker(&[
            "secret",
            "ls",
            "-q",
            "--filter",
            "label=io.convoy.managed=true",
        ])?;
        ensure!(secrets.trim().is_empty(), "secrets left: {secrets}");
        Ok(())
    });
    c.assert_healthy();
}

/// One file, three kinds: a container on a plain node, a systemd unit in
/// the systemd container and a Swarm service, applied in one `apply`,
/// updated together, and rolled back together with one `convoy rollback`:
/// each runs its first revision's environment again (checked in Docker,
/// in systemd and in the Swarm service's spec).
#[test]
fn a_mixed_spec_of_container_unit_and_swarm_service_is_applied_and_rolled_back_as_one() {
    skip_without_docker!();
    let pair = SwarmPair::start();
    let gateway = bridge_gateway().unwrap_or_else(|e| panic!("{e:#}"));
    let mut c = Cluster::start_for_containers(&[HOST_NAME, &gateway]);
    let (host, sd_node) = enroll_systemd_host(&c);
    let plain = c.add_agent();
    let manager = c.add_agent_with_env(&[("DOCKER_HOST", &pair.manager.host())]);
    c.wait_nodes_ready(&[plain.clone(), manager.clone()]);
    let (web, sw, tick) = (
        c.service_name("web"),
        c.service_name("sw"),
        c.service_name("tick"),
    );
    let spec = |greeting: &str| {
        let container = ServiceSpec::new(&web, &c.image())
            .env("GREETING", greeting)
            .deploy(&format!(
                "placement: {{ constraints: [\"node.name == {plain}\"] }}"
            ));
        let swarm = ServiceSpec::new(&sw, &c.image())
            .replicas(2)
            .env("GREETING", greeting)
            .extra(&format!("x-convoy: {{ swarm: {} }}", pair.cluster_id));
        format!(
            "{}units:\n  {tick}:\n    exec_start: /bin/sleep 1001\n    environment: {{ GREETING: {greeting} }}\n    deploy:\n      placement:\n        constraints: [\"node.name == {sd_node}\"]\n",
            compose(&[&container, &swarm])
        )
    };
    let greeting_of_all = |want: &str| -> anyhow::Result<()> {
        let containers = c.containers_of(&web)?;
        ensure!(containers.len() == 1, "{containers:?}");
        let env = containers[0].config.env.clone().unwrap_or_default();
        ensure!(
            env.iter().any(|e| e == &format!("GREETING={want}")),
            "{env:?}"
        );
        let shown = host.show(
            &format!("convoy-{tick}.service"),
            &["ActiveState", "Environment"],
        )?;
        ensure!(shown["ActiveState"] == "active", "{shown:?}");
        ensure!(
            shown["Environment"].contains(&format!("GREETING={want}")),
            "{shown:?}"
        );
        let env = pair.manager.docker(&[
            "service",
            "inspect",
            "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
            &format!("default_{sw}"),
        ])?;
        ensure!(env.contains(&format!("GREETING={want}")), "{env}");
        let s = status(&c, &sw)?;
        ensure!(running(&s, None)? == 2, "{s:#}");
        Ok(())
    };
    let file = c.write_spec("mixed.yaml", &spec("one"));
    let report = c.apply(&file);
    for name in [&web, &sw, &tick] {
        assert_eq!(report.service(name).action, "create", "{report:#?}");
    }
    wait_until("all three run r1", SETTLE, POLL, || greeting_of_all("one"));

    let file = c.write_spec("mixed.yaml", &spec("two"));
    c.apply(&file);
    wait_until("all three run r2", SETTLE, POLL, || greeting_of_all("two"));

    let out = c.cli(&["rollback", &web, &sw, &tick]);
    assert!(
        out.status.success(),
        "rollback: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("all three run r1's spec again", SETTLE, POLL, || {
        greeting_of_all("one")
    });
    for name in [&web, &sw, &tick] {
        let h: Value = c.cli_json(&["history", name]);
        let revs = h["revisions"].as_array().unwrap();
        assert_eq!(revs.len(), 3, "{h:#}");
        assert_eq!(revs[2]["source"], "rollback of r2 to r1", "{h:#}");
    }
    c.delete(&sw);
    drop(host);
}

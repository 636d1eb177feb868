//! Issue 19: rescheduling off a lost node, cordon, and drain, on real
//! Docker. The agents of a test share one Docker engine, and an instance's
//! container name does not carry its node, so a moved instance's new
//! container can start only once the old one is gone from the engine (on
//! separate hosts it starts at once); the tests assert what Docker runs.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use convoy_tests::spec::compose;
use convoy_tests::{docker, skip_without_docker, wait_until, Cluster, ServiceSpec};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid} failed");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Running containers of `svc` per Docker, by the node label.
fn running_on(c: &Cluster, svc: &str) -> Vec<String> {
    let mut nodes: Vec<String> = c
        .containers_of(svc)
        .unwrap_or_default()
        .into_iter()
        .filter(|ct| ct.state.running)
        .map(|ct| ct.must_label("io.convoy.node").to_string())
        .collect();
    nodes.sort();
    nodes
}

/// The node's entry in `convoy nodes -o json`.
fn node_json(c: &Cluster, node: &str) -> Value {
    let v: Value = c.cli_json(&["nodes"]);
    v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == node)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits until Docker runs `svc`'s containers on exactly these nodes.
fn wait_running_on(c: &Cluster, svc: &str, nodes: &[&str]) {
    wait_until(
        format!("{svc} runs on {nodes:?}"),
        WAIT,
        Duration::from_millis(250),
        || {
            let now = running_on(c, svc);
            ensure!(now == nodes, "running on {now:?}");
            Ok(())
        },
    );
}

/// Healthy containers of `svc`, per Docker.
fn docker_healthy(svc: &str) -> usize {
    docker::docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=io.convoy.service={svc}"),
        "--filter",
        "health=healthy",
    ])
    .map(|out| out.lines().filter(|l| !l.trim().is_empty()).count())
    .unwrap_or(0)
}

/// (a) A frozen node's instances are placed on the other node once it has
/// been lost for `reschedule_after`; when it thaws, its agent removes the
/// stale copies.
#[test]
fn instances_of_a_node_lost_past_reschedule_after_move_and_the_stale_copy_goes() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let names = c.node_names();
    c.wait_nodes_ready(&names);
    let svc = c.service_name("resched");
    let spec = ServiceSpec::new(&svc, &c.image())
        .replicas(2)
        .extra("x-convoy: { reschedule_after: 2s }");
    let file = c.write_spec("resched.yaml", &compose(&[&spec]));
    c.apply(&file);
    c.wait_service_running(&svc, 2, 1);
    let before = running_on(&c, &svc);
    assert_eq!(before, [names[0].clone(), names[1].clone()], "spread");

    let frozen = names[1].clone();
    let pid = c.agent_pid(&frozen).unwrap();
    signal(pid, "-STOP");
    // Lost after 2.5 s of silence, moved 2 s later: Convoy places the
    // instance on the other node.
    wait_until(
        format!("the instance on {frozen} is placed on {}", names[0]),
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let s: Value = c.cli_json(&["status", &svc]);
            let nodes: Vec<&str> = s["services"][0]["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["node"].as_str())
                .collect();
            ensure!(nodes == [names[0].as_str(), names[0].as_str()], "{s}");
            Ok(())
        },
    );
    // While cut off, the frozen node's copy still runs (its agent keeps
    // its last plan): Docker still has it.
    assert!(running_on(&c, &svc).contains(&frozen));

    signal(pid, "-CONT");
    // Back, its plan no longer holds the instance: its agent removes it,
    // and the moved copy runs on the other node.
    wait_until(
        format!(
            "no container of {svc} is left on {frozen}, both run on {}",
            names[0]
        ),
        WAIT,
        Duration::from_millis(250),
        || {
            let on_frozen: Vec<_> = c
                .containers_of(&svc)?
                .into_iter()
                .filter(|ct| ct.label("io.convoy.node") == Some(frozen.as_str()))
                .map(|ct| ct.describe())
                .collect();
            ensure!(on_frozen.is_empty(), "still on {frozen}: {on_frozen:?}");
            let now = running_on(&c, &svc);
            ensure!(
                now == [names[0].clone(), names[0].clone()],
                "running on {now:?}"
            );
            Ok(())
        },
    );
    assert!(
        c.coordinator_log().contains("rescheduled"),
        "{}",
        c.coordinator_log()
    );
    c.assert_healthy();
}

/// (b) Draining the node that runs all three instances keeps two or more
/// healthy throughout (sampled in Docker every 200 ms) and ends with the
/// node empty and cordoned; `--wait` prints plain progress lines.
#[test]
fn draining_a_node_keeps_two_of_three_healthy_and_leaves_it_empty_and_cordoned() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let first = c.node_names()[0].clone();
    c.wait_nodes_ready(std::slice::from_ref(&first));
    let svc = c.service_name("drain");
    let spec = ServiceSpec::new(&svc, &c.image())
        .replicas(3)
        .deploy("update_config: { parallelism: 1, monitor: 1s }")
        .extra(
            "healthcheck: { test: [\"CMD\", \"/convoy-testapp\", \"--probe\", \"http://127.0.0.1:8080/healthz\"], interval: 1s, timeout: 2s, retries: 1 }",
        );
    let file = c.write_spec("drain.yaml", &compose(&[&spec]));
    c.apply(&file);
    c.wait_service_running(&svc, 3, 1);
    wait_until(
        format!("3 healthy containers of {svc}"),
        WAIT,
        Duration::from_millis(250),
        || {
            let n = docker_healthy(&svc);
            ensure!(n == 3, "{n} healthy");
            Ok(())
        },
    );
    let second = c.add_agent();
    c.wait_nodes_ready(&[first.clone(), second.clone()]);

    // Sample Docker every 200 ms while the drain runs.
    let stop = Arc::new(AtomicBool::new(false));
    let least = Arc::new(AtomicUsize::new(usize::MAX));
    let samples = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, least, samples, svc) =
            (stop.clone(), least.clone(), samples.clone(), svc.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                least.fetch_min(docker_healthy(&svc), Ordering::Relaxed);
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let out = c.cli(&["node", "drain", &first, "--wait", "--timeout", "120s"]);
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let (so, se) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "drain --wait failed:\n{so}\n{se}");
    assert!(
        so.contains(&format!(
            "draining node {first}: cordoned; 3 instances to move"
        )),
        "{so}"
    );
    assert!(so.contains(&format!("node {first} drained")), "{so}");
    // Plain progress lines (no terminal here), the last one all healthy.
    assert!(
        se.contains(&format!("{svc}: 3/3 healthy (3 left on {first})")),
        "{se}"
    );
    assert!(
        se.contains(&format!("{svc}: 3/3 healthy\n"))
            || se.ends_with(&format!("{svc}: 3/3 healthy")),
        "{se}"
    );
    let least = least.load(Ordering::Relaxed);
    let samples = samples.load(Ordering::Relaxed);
    assert!(samples > 5, "only {samples} samples");
    assert!(
        least >= 2,
        "only {least} healthy at one point ({samples} samples)"
    );

    // The node is empty in Docker and cordoned.
    wait_until(
        format!("no container of {svc} is left on {first}"),
        WAIT,
        Duration::from_millis(250),
        || {
            let left: Vec<_> = c
                .containers_of(&svc)?
                .into_iter()
                .filter(|ct| ct.label("io.convoy.node") == Some(first.as_str()))
                .map(|ct| ct.describe())
                .collect();
            ensure!(left.is_empty(), "{left:?}");
            Ok(())
        },
    );
    assert_eq!(running_on(&c, &svc), vec![second.clone(); 3]);
    let n = node_json(&c, &first);
    assert_eq!(n["cordoned"], true, "{n}");
    assert_eq!(n["draining"], false, "{n}");
    assert_eq!(n["scheduling"], "drained", "{n}");
    let table = stdout(&c.cli(&["nodes"]));
    assert!(table.contains("ready,drained"), "{table}");
    c.assert_healthy();
}

/// (c) A cordoned node gets nothing new (a new service, a scale-up);
/// uncordoned, it does. A drain no other node can take fails `--wait`,
/// naming the instance.
#[test]
fn a_cordoned_node_takes_nothing_new_until_uncordoned() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let names = c.node_names();
    c.wait_nodes_ready(&names);
    let (a, b) = (names[0].clone(), names[1].clone());
    let out = c.cli(&["node", "cordon", &b]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("node {b} cordoned")),
        "{}",
        stdout(&out)
    );
    assert_eq!(node_json(&c, &b)["scheduling"], "cordoned");

    let svc = c.service_name("cordon");
    let spec = |n| ServiceSpec::new(&svc, &c.image()).replicas(n);
    let file = c.write_spec("cordon.yaml", &compose(&[&spec(2)]));
    c.apply(&file);
    c.wait_service_running(&svc, 2, 1);
    assert_eq!(running_on(&c, &svc), [a.clone(), a.clone()]);
    // A scale-up while cordoned: still nothing on `b`.
    let file = c.write_spec("cordon.yaml", &compose(&[&spec(3)]));
    c.apply(&file);
    // (A new revision, but no container restarts: instances keep r1.)
    wait_running_on(&c, &svc, &[&a, &a, &a]);

    let out = c.cli(&["node", "uncordon", &b]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(node_json(&c, &b)["scheduling"], "active");
    let file = c.write_spec("cordon.yaml", &compose(&[&spec(5)]));
    c.apply(&file);
    let (a3, b2) = (a.as_str(), b.as_str());
    wait_running_on(&c, &svc, &[a3, a3, a3, b2, b2]);

    // A service pinned to `a`: draining `a` cannot move it.
    let pinned = c.service_name("pinned");
    let p = ServiceSpec::new(&pinned, &c.image()).deploy(&format!(
        "placement: {{ constraints: [\"node.name == {a}\"] }}"
    ));
    let file = c.write_spec("pinned.yaml", &compose(&[&p]));
    c.apply(&file);
    wait_until(
        format!("{pinned} runs on {a}"),
        WAIT,
        Duration::from_millis(250),
        || {
            let on = running_on(&c, &pinned);
            ensure!(on == [a.clone()], "{on:?}");
            Ok(())
        },
    );
    let out = c.cli(&["node", "drain", &a, "--wait", "--timeout", "60s"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "node `{a}` cannot be drained now: default/{pinned}/1: cannot move:"
        )),
        "{err}"
    );
    // It still runs there; uncordon stops the drain.
    assert_eq!(running_on(&c, &pinned), [a.as_str()]);
    let out = c.cli(&["node", "uncordon", &a]);
    assert!(
        stdout(&out).contains("its drain stopped"),
        "{}",
        stdout(&out)
    );
    c.assert_healthy();
}

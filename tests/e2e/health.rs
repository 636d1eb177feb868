//! Health you can watch: Convoy's probes and Docker's healthcheck on real
//! containers, `convoy verify` exit codes, and `convoy events` telling the
//! story of a deployment in order.

use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use convoy_tests::events::{Event, EventWatch};
use convoy_tests::spec::compose;
use convoy_tests::{docker, http, skip_without_docker, wait_until, Cluster, ServiceSpec};
use serde_json::Value;

const HEALTH_WAIT: Duration = Duration::from_secs(30);

/// Waits until the instance's reported health is `want`.
fn wait_health(c: &Cluster, svc: &str, index: u32, want: &str) -> convoy_tests::InstanceStatus {
    wait_until(
        format!("{svc}/{index} is {want}"),
        HEALTH_WAIT,
        Duration::from_millis(200),
        || {
            let s = c.try_service_status(svc)?;
            let i = s
                .instance(index)
                .ok_or_else(|| anyhow!("no instance {index}: {}", s.describe()))?;
            if i.health == want {
                Ok(i.clone())
            } else {
                Err(anyhow!("{}", s.describe()))
            }
        },
    )
}

fn verify(c: &Cluster, svc: &str) -> (Output, Value) {
    let out = c.cli(&["-o", "json", "verify", "--service", svc, "--timeout", "10s"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "convoy verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

/// The container of instance `index` of `svc`.
fn container(svc: &str, index: u32) -> docker::Container {
    docker::of_service(svc)
        .unwrap()
        .into_iter()
        .find(|ct| ct.label("io.convoy.instance") == Some(&index.to_string()))
        .unwrap_or_else(|| panic!("no container for {svc}/{index}"))
}

fn seq_of(events: &[Event], what: &str, pred: impl Fn(&Event) -> bool) -> u64 {
    events
        .iter()
        .find(|e| pred(e))
        .map(|e| e.seq)
        .unwrap_or_else(|| panic!("no event {what} in:\n{events:#?}"))
}

#[test]
fn http_probe_follows_the_app_and_verify_and_events_follow_it() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("probed");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2).extra(
        "x-convoy: { probes: [ { http: { port: 8080, path: /healthz }, interval: 500ms, timeout: 1s, failure_threshold: 2 } ] }",
    );
    let watch = EventWatch::start(c.cli_command(), &["--service", &svc]).unwrap();
    let file = c.write_spec("probed.yaml", &compose(&[&spec]));
    c.apply(&file);
    c.wait_service_running(&svc, 2, 1);
    wait_health(&c, &svc, 1, "healthy");
    wait_health(&c, &svc, 2, "healthy");
    let status = c.service_status(&svc);
    assert!(status.has_checks, "{}", status.describe());
    assert_eq!(status.healthy, 2, "{}", status.describe());

    let (out, json) = verify(&c, &svc);
    assert!(
        out.status.success(),
        "verify failed while healthy: {json:#}"
    );
    assert_eq!(json["healthy"], true);
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{json:#}");
    assert!(results.iter().all(|r| r["probe"] == "http"), "{json:#}");

    // Switch instance 1's health endpoint to failing.
    let app = container(&svc, 1).addr(8080).unwrap();
    let (code, _) = http::request(app, "POST", "/fail").unwrap();
    assert_eq!(code, 200);
    let sick = wait_health(&c, &svc, 1, "unhealthy");
    assert_eq!(sick.failing_probe, "http");
    assert!(
        sick.health_output.contains("500"),
        "the failing probe's output should carry the status: {sick:?}"
    );
    assert_eq!(c.service_status(&svc).healthy, 1);
    assert_eq!(wait_health(&c, &svc, 2, "healthy").state, "running");

    let (out, json) = verify(&c, &svc);
    assert_eq!(out.status.code(), Some(1), "verify must fail: {json:#}");
    assert_eq!(json["healthy"], false);
    let failing: Vec<&Value> = results_of(&json)
        .into_iter()
        .filter(|r| r["healthy"] == false)
        .collect();
    assert_eq!(failing.len(), 1, "{json:#}");
    assert_eq!(failing[0]["instance"], format!("default/{svc}/1"));
    // The table form says so too, and exits 1.
    let table = c.cli(&["verify", "--service", &svc]);
    assert_eq!(table.status.code(), Some(1));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("FAIL") && text.contains("1 of 2 checks failed"),
        "{text}"
    );

    let (code, _) = http::request(app, "POST", "/recover").unwrap();
    assert_eq!(code, 200);
    wait_health(&c, &svc, 1, "healthy");
    let (out, json) = verify(&c, &svc);
    assert!(out.status.success(), "verify after recovery: {json:#}");

    // The event stream told the story, in order.
    watch
        .wait_for("instance 1 healthy again", HEALTH_WAIT, |e| {
            e.kind == "instance.health"
                && e.instance.ends_with("/1")
                && e.field("health") == "healthy"
                && e.field("previous") == "unhealthy"
        })
        .unwrap();
    let events = watch.events();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "events out of order: {seqs:?}"
    );
    assert!(events.iter().all(|e| e.service == svc), "{events:#?}");
    let id1 = format!("default/{svc}/1");
    let deployed = seq_of(&events, "service.deployed", |e| {
        e.kind == "service.deployed"
    });
    let placed = seq_of(&events, "instance 1 placed", |e| {
        e.kind == "instance.placed" && e.instance == id1
    });
    let running = seq_of(&events, "instance 1 running", |e| {
        e.kind == "instance.state" && e.instance == id1 && e.field("state") == "running"
    });
    let healthy = seq_of(&events, "instance 1 healthy", |e| {
        e.kind == "instance.health" && e.instance == id1 && e.field("health") == "healthy"
    });
    let unhealthy = seq_of(&events, "instance 1 unhealthy", |e| {
        e.kind == "instance.health" && e.instance == id1 && e.field("health") == "unhealthy"
    });
    let recovered = seq_of(&events, "instance 1 recovered", |e| {
        e.kind == "instance.health"
            && e.instance == id1
            && e.field("health") == "healthy"
            && e.field("previous") == "unhealthy"
    });
    assert!(
        deployed < placed && placed < running && running < healthy,
        "deployment events out of order:\n{}",
        watch.describe()
    );
    assert!(
        healthy < unhealthy && unhealthy < recovered,
        "health events out of order:\n{}",
        watch.describe()
    );
    let sick_event = events.iter().find(|e| e.seq == unhealthy).unwrap();
    assert_eq!(sick_event.field("probe"), "http");
    assert!(sick_event.field("output").contains("500"), "{sick_event:?}");
}

fn results_of(json: &Value) -> Vec<&Value> {
    json["results"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

#[test]
fn docker_healthcheck_is_read_and_a_missing_probe_command_is_unhealthy_with_the_error() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let checked = c.service_name("dockerhc");
    let broken = c.service_name("noexec");
    let a = ServiceSpec::new(&checked, &c.image()).extra(
        "healthcheck: { test: [\"CMD\", \"/convoy-testapp\", \"--probe\", \"http://127.0.0.1:8080/healthz\"], interval: 1s, timeout: 2s, retries: 1 }",
    );
    let b = ServiceSpec::new(&broken, &c.image()).extra(
        "x-convoy: { probes: [ { exec: [\"/no/such/probe\"], interval: 1s, failure_threshold: 1 } ] }",
    );
    let file = c.write_spec("hc.yaml", &compose(&[&a, &b]));
    c.apply(&file);

    // Docker runs the healthcheck; Convoy reports what Docker says.
    wait_health(&c, &checked, 1, "healthy");
    let ct = container(&checked, 1);
    let docker_health =
        docker::docker(&["inspect", "-f", "{{.State.Health.Status}}", ct.name()]).unwrap();
    assert_eq!(docker_health.trim(), "healthy");

    let sick = wait_health(&c, &broken, 1, "unhealthy");
    assert_eq!(sick.state, "running", "the container itself runs: {sick:?}");
    assert!(
        sick.health_output.contains("/no/such/probe"),
        "the error should name the missing command: {sick:?}"
    );

    // Docker's healthcheck follows the app.
    let (code, _) = http::request(ct.addr(8080).unwrap(), "POST", "/fail").unwrap();
    assert_eq!(code, 200);
    let sick = wait_health(&c, &checked, 1, "unhealthy");
    assert_eq!(sick.failing_probe, "docker", "{sick:?}");
    let (out, json) = verify(&c, &checked);
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    assert_eq!(results_of(&json)[0]["probe"], "docker", "{json:#}");
    let (out, json) = verify(&c, &broken);
    assert_eq!(out.status.code(), Some(1), "{json:#}");
}

#[test]
fn a_hanging_probe_is_bounded_by_its_timeout() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("hang");
    // The exec probe starts a server that never exits: it hangs.
    let spec = ServiceSpec::new(&svc, &c.image()).extra(
        "x-convoy: { probes: [ { name: stuck, exec: [\"/convoy-testapp\", \"--listen\", \"127.0.0.1:0\"], interval: 1s, timeout: 1s, failure_threshold: 1 } ] }",
    );
    let file = c.write_spec("hang.yaml", &compose(&[&spec]));
    c.apply(&file);
    let sick = wait_health(&c, &svc, 1, "unhealthy");
    assert_eq!(sick.failing_probe, "stuck");
    assert!(
        sick.health_output.contains("within 1s"),
        "the output should say the probe did not finish within its timeout: {sick:?}"
    );
    let started = Instant::now();
    let (out, json) = verify(&c, &svc);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{json:#}");
    assert!(
        took < Duration::from_secs(8),
        "verify should be bounded by the 1 s probe timeout, took {took:?}"
    );
    let r = results_of(&json)[0];
    assert_eq!(r["probe"], "stuck");
    assert!(
        r["output"].as_str().unwrap().contains("within 1s"),
        "{json:#}"
    );
}

#[test]
fn node_loss_and_return_are_events() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let node = c.node_names()[0].clone();
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let watch = EventWatch::start(c.cli_command(), &["--node", &node]).unwrap();
    let pid = c.agent_pid(&node).unwrap();
    let kill = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    kill("-STOP");
    let lost = watch
        .wait_for("node.lost", Duration::from_secs(10), |e| {
            e.kind == "node.lost"
        })
        .unwrap();
    kill("-CONT");
    let ready = watch
        .wait_for("node.ready", Duration::from_secs(10), |e| {
            e.kind == "node.ready"
        })
        .unwrap();
    assert_eq!(lost.node, node);
    assert_eq!(lost.field("reason"), "heartbeat");
    assert!(lost.seq < ready.seq);
    assert!(watch.events().iter().all(|e| e.node == node));
    // Replay: a late watcher sees what happened before it connected.
    let late = EventWatch::start(c.cli_command(), &["--node", &node, "--replay"]).unwrap();
    let replayed = late
        .wait_for("the replayed node.lost", Duration::from_secs(5), |e| {
            e.kind == "node.lost"
        })
        .unwrap();
    assert_eq!(replayed.seq, lost.seq);
    assert!(watch.other().is_empty(), "{:?}", watch.other());
}

#[test]
fn status_watch_redraws_when_instances_change() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;

    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("watched");
    let mut child = c
        .cli_command()
        .args(["-o", "json", "status", "--watch", &svc])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    // The first document is drawn at once: nothing deployed yet.
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(first["services"].as_array().unwrap().len(), 0, "{first}");

    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2);
    c.apply(&c.write_spec("w.yaml", &compose(&[&spec])));
    // Redraws follow until both instances run, with no polling by the CLI.
    let deadline = Instant::now() + HEALTH_WAIT;
    let mut redraws = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let doc = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no redraw showing 2 running after {redraws} redraws"));
        redraws += 1;
        if doc["services"][0]["running"] == 2 {
            break;
        }
    }
    // Nothing changes now: no redraw comes for a while (it is not a timer).
    assert!(
        rx.recv_timeout(Duration::from_secs(3)).is_err(),
        "status --watch redrew with nothing changing"
    );
    let _ = child.kill();
    let _ = child.wait();
}

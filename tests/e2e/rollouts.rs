//! Rollouts on real Docker: rolling updates gated by health, automatic
//! rollback of a bad revision, canary promotion, history and rollback to
//! any revision, and a coordinator killed mid-rollout.

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure};
use convoy_tests::events::EventWatch;
use convoy_tests::spec::compose;
use convoy_tests::{docker, skip_without_docker, wait_until, Cluster, ServiceSpec};
use serde_json::Value;

const ROLLOUT_WAIT: Duration = Duration::from_secs(60);

/// The testapp with Docker's own healthcheck (so Docker can be asked which
/// containers are healthy), greeting `greeting`.
fn app(c: &Cluster, svc: &str, replicas: u32, greeting: &str) -> ServiceSpec {
    ServiceSpec::new(svc, &c.image())
        .replicas(replicas)
        .env("GREETING", greeting)
        .extra(
            "healthcheck: { test: [\"CMD\", \"/convoy-testapp\", \"--probe\", \"http://127.0.0.1:8080/healthz\"], interval: 1s, timeout: 2s, retries: 1 }",
        )
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

/// Instance index → (revision label, GREETING) of the running containers.
fn running(c: &Cluster, svc: &str) -> BTreeMap<u32, (String, String)> {
    c.containers_of(svc)
        .unwrap()
        .into_iter()
        .filter(|ct| ct.state.running)
        .map(|ct| {
            (
                ct.must_label("io.convoy.instance").parse().unwrap(),
                (
                    ct.must_label("io.convoy.revision").to_string(),
                    ct.env_var("GREETING").unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

/// Waits until every instance runs `greeting` and is healthy per Docker.
fn wait_all(c: &Cluster, svc: &str, replicas: usize, greeting: &str) {
    wait_until(
        format!("{replicas} healthy instances of {svc} greet {greeting}"),
        ROLLOUT_WAIT,
        Duration::from_millis(250),
        || {
            let now = running(c, svc);
            ensure!(
                now.len() == replicas && now.values().all(|(_, g)| g == greeting),
                "running: {now:?}"
            );
            ensure!(docker_healthy(svc) == replicas, "not all healthy yet");
            Ok(())
        },
    );
}

fn rollout_of(c: &Cluster, svc: &str) -> Value {
    let v: Value = c.cli_json(&["status", svc]);
    v["services"][0]["rollout"].clone()
}

fn wait_rollout_state(c: &Cluster, svc: &str, state: &str) -> Value {
    wait_until(
        format!("the rollout of {svc} is {state}"),
        ROLLOUT_WAIT,
        Duration::from_millis(200),
        || {
            let r = rollout_of(c, svc);
            if r["state"] == state {
                Ok(r)
            } else {
                Err(anyhow!("rollout: {r}"))
            }
        },
    )
}

/// `convoy apply -f FILE --wait`, which must succeed.
fn apply_wait(c: &Cluster, file: &std::path::Path) {
    let out = c.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(out.status.success(), "apply --wait: {}", stderr(&out));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn rolling_update_one_at_a_time_keeps_three_of_four_healthy() {
    skip_without_docker!();
    let c = Cluster::with_agents(2);
    let svc = c.service_name("roll");
    let v1 = app(&c, &svc, 4, "v1").deploy("update_config: { parallelism: 1, monitor: 1s }");
    let file = c.write_spec("roll.yaml", &compose(&[&v1]));
    let out = c.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(out.status.success(), "apply --wait of r1: {}", stderr(&out));
    wait_all(&c, &svc, 4, "v1");

    // Sample Docker's view all through the rollout.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let svc = svc.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push(docker_healthy(&svc));
                std::thread::sleep(Duration::from_millis(150));
            }
            samples
        })
    };
    let v2 = app(&c, &svc, 4, "v2").deploy("update_config: { parallelism: 1, monitor: 1s }");
    let file = c.write_spec("roll.yaml", &compose(&[&v2]));
    let started = Instant::now();
    let out = c.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "90s",
    ]);
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    assert!(out.status.success(), "apply --wait of r2: {}", stderr(&out));
    assert!(
        stderr(&out).contains("rollout complete"),
        "{}",
        stderr(&out)
    );

    assert!(samples.len() > 10, "too few samples: {samples:?}");
    let min = samples.iter().copied().min().unwrap();
    assert!(
        min >= 3,
        "healthy containers dropped to {min} during a one-at-a-time rollout: {samples:?}"
    );
    wait_all(&c, &svc, 4, "v2");
    let now = running(&c, &svc);
    assert!(now.values().all(|(rev, _)| rev == "2"), "{now:?}");
    let r = rollout_of(&c, &svc);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(
        (r["updated"].as_u64(), r["healthy"].as_u64()),
        (Some(4), Some(4))
    );
    eprintln!("4-replica rolling update (parallelism 1, monitor 1s) took {took:?}");
}

#[test]
fn a_bad_revision_is_rolled_back_and_apply_wait_fails() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("bad");
    let update = "update_config: { parallelism: 1, monitor: 1s }";
    let good = app(&c, &svc, 3, "good").deploy(update);
    let file = c.write_spec("bad.yaml", &compose(&[&good]));
    apply_wait(&c, &file);
    wait_all(&c, &svc, 3, "good");
    let before: BTreeMap<u32, String> = c
        .containers_of(&svc)
        .unwrap()
        .into_iter()
        .map(|ct| (ct.must_label("io.convoy.instance").parse().unwrap(), ct.id))
        .collect();

    let watch = EventWatch::start(c.cli_command(), &["--service", &svc]).unwrap();
    // r2's health endpoint is on a port nothing listens on.
    let bad = ServiceSpec::new(&svc, &c.image())
        .replicas(3)
        .env("GREETING", "bad")
        .deploy(update)
        .extra(
            "healthcheck: { test: [\"CMD\", \"/convoy-testapp\", \"--probe\", \"http://127.0.0.1:9/healthz\"], interval: 1s, timeout: 2s, retries: 1 }",
        )
        .extra("x-convoy: { update: { healthy_deadline: 4s } }");
    let file = c.write_spec("bad.yaml", &compose(&[&bad]));
    let out = c.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "apply --wait must fail: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("rollout.failed") && err.contains("healthy deadline"),
        "the error should give the reason: {err}"
    );
    assert!(
        err.contains("rolling back"),
        "the rollback is announced: {err}"
    );

    // The previous spec comes back (as r3); instances 2 and 3 were never
    // touched.
    wait_all(&c, &svc, 3, "good");
    let after: BTreeMap<u32, String> = c
        .containers_of(&svc)
        .unwrap()
        .into_iter()
        .map(|ct| (ct.must_label("io.convoy.instance").parse().unwrap(), ct.id))
        .collect();
    assert_eq!(before[&2], after[&2], "instance 2 was replaced");
    assert_eq!(before[&3], after[&3], "instance 3 was replaced");
    assert_ne!(before[&1], after[&1], "instance 1 was the one tried");
    let r = wait_rollout_state(&c, &svc, "succeeded");
    assert_eq!(r["is_rollback"], true, "{r}");
    assert_eq!(r["to_revision"], 3, "{r}");

    // The events tell the story, in order.
    let failed = watch
        .wait_for("rollout.failed", ROLLOUT_WAIT, |e| {
            e.kind == "rollout.failed"
        })
        .unwrap();
    let back = watch
        .wait_for("rollout.rolled_back", ROLLOUT_WAIT, |e| {
            e.kind == "rollout.rolled_back"
        })
        .unwrap();
    let done = watch
        .wait_for("the rollback succeeded", ROLLOUT_WAIT, |e| {
            e.kind == "rollout.succeeded" && e.field("rollback") == "true"
        })
        .unwrap();
    assert!(
        failed.seq < back.seq && back.seq < done.seq,
        "{}",
        watch.describe()
    );
    assert_eq!(failed.field("revision"), "2");

    let h: Value = c.cli_json(&["history", &svc]);
    let revs = h["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 3, "{h:#}");
    assert!(
        revs[1]["outcome"].as_str().unwrap().starts_with("failed"),
        "{h:#}"
    );
    assert_eq!(revs[2]["source"], "rollback of r2 to r1", "{h:#}");
    assert_eq!(revs[2]["spec_hash"], revs[0]["spec_hash"], "{h:#}");
    assert_eq!(revs[2]["outcome"], "succeeded", "{h:#}");
}

#[test]
fn history_rollback_to_any_revision_and_diff() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("hist");
    for greeting in ["a", "b", "c"] {
        let spec = app(&c, &svc, 2, greeting);
        let file = c.write_spec("hist.yaml", &compose(&[&spec]));
        let out = c.cli(&["apply", "-f", file.to_str().unwrap(), "--wait"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    wait_all(&c, &svc, 2, "c");
    let h: Value = c.cli_json(&["history", &svc]);
    assert_eq!(h["current"], 3);
    let revs = h["revisions"].as_array().unwrap();
    assert_eq!(revs.len(), 3);
    assert!(revs.iter().all(|r| r["outcome"] == "succeeded"), "{h:#}");
    assert_eq!(
        revs[1]["changed_fields"],
        serde_json::json!(["environment"])
    );
    let table = c.cli(&["history", &svc]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("REV") && text.contains("3 *"), "{text}");

    let diff = c.cli(&["diff", &svc, "1", "3"]);
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.contains("-    \"GREETING\": \"a\"") && text.contains("+    \"GREETING\": \"c\""),
        "{text}"
    );

    // Bad input: a revision that does not exist.
    let out = c.cli(&["rollback", &svc, "--to", "99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has no revision 99 (it has r1, r2, r3)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(c.service_status(&svc).revision, 3, "nothing changed");

    let out = c.cli(&["rollback", &svc, "--to", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_all(&c, &svc, 2, "a");
    let h: Value = c.cli_json(&["history", &svc]);
    assert_eq!(h["current"], 4);
    assert_eq!(h["revisions"][3]["source"], "rollback of r3 to r1");
    assert_eq!(
        h["revisions"][3]["spec_hash"],
        h["revisions"][0]["spec_hash"]
    );
}

#[test]
fn canary_waits_for_promote_and_a_second_apply_supersedes_it() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("canary");
    let canary = "x-convoy: { update: { strategy: canary, canaries: 1, max_parallel: 2, min_healthy_time: 1s } }";
    let v1 = app(&c, &svc, 4, "v1").extra(canary);
    apply_wait(&c, &c.write_spec("canary.yaml", &compose(&[&v1])));
    wait_all(&c, &svc, 4, "v1");

    let v2 = app(&c, &svc, 4, "v2").extra(canary);
    let file = c.write_spec("canary.yaml", &compose(&[&v2]));
    c.apply(&file);
    let r = wait_rollout_state(&c, &svc, "waiting-promotion");
    assert_eq!(r["updated"], 1, "{r}");
    // Exactly one new instance runs, and it stays that way.
    for _ in 0..3 {
        let now = running(&c, &svc);
        let new = now.values().filter(|(_, g)| g == "v2").count();
        assert_eq!((now.len(), new), (4, 1), "{now:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    let status = c.cli(&["rollout", "status", &svc]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("waiting-promotion") && text.contains("convoy promote"),
        "{text}"
    );

    // Another change meanwhile supersedes it: the canary goes straight to
    // the newest revision, the others stay where they were.
    let v3 = app(&c, &svc, 4, "v3").extra(canary);
    let other = c.write_spec("canary-v3.yaml", &compose(&[&v3]));
    let out = c.cli(&["apply", "-f", other.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(c.service_status(&svc).revision, 3);
    wait_until(
        "the canary runs v3".to_string(),
        ROLLOUT_WAIT,
        Duration::from_millis(200),
        || {
            let now = running(&c, &svc);
            let v3 = now.values().filter(|(_, g)| g == "v3").count();
            let v1 = now.values().filter(|(_, g)| g == "v1").count();
            ensure!((v3, v1) == (1, 3), "running: {now:?}");
            Ok(())
        },
    );
    let r = wait_rollout_state(&c, &svc, "waiting-promotion");
    assert_eq!(
        (r["to_revision"].as_u64(), r["from_revision"].as_u64()),
        (Some(3), Some(1)),
        "{r}"
    );
    let h: Value = c.cli_json(&["history", &svc]);
    assert_eq!(h["revisions"][1]["outcome"], "superseded by r3", "{h:#}");

    let out = c.cli(&["promote", &svc]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_all(&c, &svc, 4, "v3");
    wait_rollout_state(&c, &svc, "succeeded");
    let out = c.cli(&["promote", &svc]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nothing to promote"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_coordinator_killed_mid_rollout_finishes_it_after_restart() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let svc = c.service_name("resume");
    let update = "update_config: { parallelism: 1, monitor: 2s }";
    let v1 = app(&c, &svc, 4, "v1").deploy(update);
    apply_wait(&c, &c.write_spec("resume.yaml", &compose(&[&v1])));
    wait_all(&c, &svc, 4, "v1");

    let v2 = app(&c, &svc, 4, "v2").deploy(update);
    c.apply(&c.write_spec("resume.yaml", &compose(&[&v2])));
    // Kill it once the second instance is being updated.
    wait_until(
        "two instances switched".to_string(),
        ROLLOUT_WAIT,
        Duration::from_millis(100),
        || {
            let r = rollout_of(&c, &svc);
            ensure!(r["updated"].as_u64() >= Some(2), "rollout: {r}");
            Ok(())
        },
    );
    c.kill_coordinator();
    std::thread::sleep(Duration::from_secs(1));
    c.start_coordinator();
    wait_rollout_state(&c, &svc, "succeeded");
    wait_all(&c, &svc, 4, "v2");
    // No instance lost, none duplicated: one container per index, each at r2.
    let all = c.containers_of(&svc).unwrap();
    let mut per_index: BTreeMap<String, usize> = BTreeMap::new();
    for ct in &all {
        *per_index
            .entry(ct.must_label("io.convoy.instance").to_string())
            .or_default() += 1;
        assert_eq!(
            ct.must_label("io.convoy.revision"),
            "2",
            "{}",
            ct.describe()
        );
    }
    assert_eq!(per_index.len(), 4, "{per_index:?}");
    assert!(per_index.values().all(|n| *n == 1), "{per_index:?}");
    let h: Value = c.cli_json(&["history", &svc]);
    assert_eq!(
        h["revisions"].as_array().unwrap().len(),
        2,
        "no revision skipped or added"
    );
}

/// Container id → GREETING of the running containers of `svc`.
fn ids(c: &Cluster, svc: &str) -> BTreeMap<String, String> {
    c.containers_of(svc)
        .unwrap()
        .into_iter()
        .filter(|ct| ct.state.running)
        .map(|ct| {
            let g = ct.env_var("GREETING").unwrap_or_default().to_string();
            (ct.id, g)
        })
        .collect()
}

#[test]
fn blue_green_runs_both_sets_rolls_back_instantly_and_scales_the_old_set_down_after_promote() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("bg");
    let bg = "x-convoy: { update: { strategy: blue-green, min_healthy_time: 1s, scale_down_delay: 3s } }";
    let blue = app(&c, &svc, 2, "blue").extra(bg);
    apply_wait(&c, &c.write_spec("bg.yaml", &compose(&[&blue])));
    wait_all(&c, &svc, 2, "blue");
    let blue_ids = ids(&c, &svc);

    // The green set starts beside the blue one.
    let green = app(&c, &svc, 2, "green").extra(bg);
    let file = c.write_spec("bg.yaml", &compose(&[&green]));
    c.apply(&file);
    let r = wait_rollout_state(&c, &svc, "waiting-promotion");
    assert_eq!(r["strategy"], "blue-green", "{r}");
    let both = ids(&c, &svc);
    let greens = both.values().filter(|g| *g == "green").count();
    assert_eq!((both.len(), greens), (4, 2), "both sets run: {both:?}");
    assert!(
        blue_ids.keys().all(|id| both.contains_key(id)),
        "blue untouched"
    );

    // Rolling back now is instant: the blue containers take over, none is
    // created, the green ones go.
    let out = c.cli(&["rollback", &svc]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until(
        "only the blue set runs".to_string(),
        ROLLOUT_WAIT,
        Duration::from_millis(200),
        || {
            let now = ids(&c, &svc);
            ensure!(now == blue_ids, "running: {now:?}, blue was {blue_ids:?}");
            Ok(())
        },
    );
    let all_ever = c.containers_of(&svc).unwrap();
    assert!(
        all_ever.iter().all(|ct| blue_ids.contains_key(&ct.id)),
        "no container besides the blue ones: {:?}",
        all_ever.iter().map(|c| c.describe()).collect::<Vec<_>>()
    );
    let r = rollout_of(&c, &svc);
    assert_eq!(
        (r["state"].as_str(), r["is_rollback"].as_bool()),
        (Some("succeeded"), Some(true)),
        "{r}"
    );

    // Again, and promote: after scale_down_delay only green runs.
    c.apply(&file);
    wait_rollout_state(&c, &svc, "waiting-promotion");
    let out = c.cli(&["promote", &svc]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Within the delay both sets still run.
    assert_eq!(ids(&c, &svc).len(), 4);
    wait_rollout_state(&c, &svc, "succeeded");
    wait_all(&c, &svc, 2, "green");
    let status = c.service_status(&svc);
    assert_eq!(
        (status.desired, status.running),
        (2, 2),
        "{}",
        status.describe()
    );
}

#[test]
fn start_first_keeps_every_old_instance_until_its_replacement_is_healthy() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("sf");
    let update = "update_config: { parallelism: 1, monitor: 1s, order: start-first }";
    let v1 = app(&c, &svc, 3, "v1").deploy(update);
    apply_wait(&c, &c.write_spec("sf.yaml", &compose(&[&v1])));
    wait_all(&c, &svc, 3, "v1");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let svc = svc.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push(docker_healthy(&svc));
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };
    let v2 = app(&c, &svc, 3, "v2").deploy(update);
    apply_wait(&c, &c.write_spec("sf.yaml", &compose(&[&v2])));
    wait_all(&c, &svc, 3, "v2");
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let min = samples.iter().copied().min().unwrap();
    let max = samples.iter().copied().max().unwrap();
    assert!(
        min >= 3,
        "a healthy instance went missing during a start-first rollout: {samples:?}"
    );
    assert!(
        max >= 4,
        "the new container never ran beside the old one: {samples:?}"
    );
}

#[test]
fn canary_with_auto_promote_goes_on_after_min_healthy_time() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("auto");
    let canary = "x-convoy: { update: { strategy: canary, canaries: 1, auto_promote: true, min_healthy_time: 3s, max_parallel: 3 } }";
    let v1 = app(&c, &svc, 4, "v1").extra(canary);
    apply_wait(&c, &c.write_spec("auto.yaml", &compose(&[&v1])));
    wait_all(&c, &svc, 4, "v1");

    let watch = EventWatch::start(c.cli_command(), &["--service", &svc]).unwrap();
    let v2 = app(&c, &svc, 4, "v2").extra(canary);
    c.apply(&c.write_spec("auto.yaml", &compose(&[&v2])));
    // The canary becomes healthy; for min_healthy_time it is the only one.
    wait_until(
        "the canary runs".to_string(),
        ROLLOUT_WAIT,
        Duration::from_millis(100),
        || {
            let now = running(&c, &svc);
            let new = now.values().filter(|(_, g)| g == "v2").count();
            ensure!(new == 1 && docker_healthy(&svc) == 4, "running: {now:?}");
            Ok(())
        },
    );
    std::thread::sleep(Duration::from_millis(1500));
    let new = running(&c, &svc)
        .values()
        .filter(|(_, g)| g == "v2")
        .count();
    assert_eq!(new, 1, "the others waited for min_healthy_time");
    // Then it promotes itself, with no `convoy promote`.
    let promoted = watch
        .wait_for("rollout.promoted", ROLLOUT_WAIT, |e| {
            e.kind == "rollout.promoted"
        })
        .unwrap();
    assert_eq!(promoted.field("revision"), "2");
    wait_rollout_state(&c, &svc, "succeeded");
    wait_all(&c, &svc, 4, "v2");
    assert!(
        !watch
            .events()
            .iter()
            .any(|e| e.kind == "rollout.awaiting_promotion"),
        "{}",
        watch.describe()
    );
}

/// Issue 13: a timed-out `apply --wait` exited 1, like a failed rollout; it
/// now exits 3 and says the rollout goes on.
#[test]
fn apply_wait_that_times_out_exits_three_not_one() {
    skip_without_docker!();
    let c = Cluster::start();
    // No node: the instance stays pending and the rollout never ends.
    let svc = c.service_name("waitout");
    let file = c.write_spec("w.yaml", &compose(&[&ServiceSpec::new(&svc, &c.image())]));
    let out = c.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "2s",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "apply --wait: {err}");
    assert!(
        err.contains("timed out after") && err.contains("it goes on"),
        "{err}"
    );
}

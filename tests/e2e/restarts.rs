//! Containers that die: killed by hand, or crashing again and again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure};
use convoy_tests::spec::compose;
use convoy_tests::{docker, skip_without_docker, wait_until, Cluster, ServiceSpec, SETTLE};

#[test]
fn container_killed_by_hand_comes_back_as_the_same_instance() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let svc = c.service_name("kill");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2);
    let file = c.write_spec("kill.yaml", &compose(&[&spec]));
    c.apply(&file);
    let before = c.wait_service_running(&svc, 2, 1);
    let victim = before[0].clone();
    let bystander = before[1].clone();
    let index = victim.must_label("io.convoy.instance").to_string();
    let node = victim.must_label("io.convoy.node").to_string();

    docker::kill(&victim.id).unwrap();

    let back = wait_until(
        format!("instance {index} of {svc} runs again after docker kill"),
        SETTLE,
        Duration::from_millis(250),
        || {
            let mine: Vec<docker::Container> = c
                .containers_of(&svc)?
                .into_iter()
                .filter(|ct| ct.label("io.convoy.instance") == Some(index.as_str()))
                .collect();
            let shown: Vec<String> = mine.iter().map(|ct| ct.describe()).collect();
            ensure!(mine.len() == 1, "instance {index} has {shown:#?}");
            let ct = &mine[0];
            ensure!(
                ct.state.running && ct.state.started_at != victim.state.started_at,
                "not restarted yet: {shown:#?}"
            );
            let status = c.try_service_status(&svc)?;
            let inst = status
                .instance(index.parse()?)
                .ok_or_else(|| anyhow!("no instance {index}: {}", status.describe()))?;
            ensure!(
                inst.state == "running" && inst.restarts >= 1,
                "convoy status says {}",
                status.describe()
            );
            Ok(ct.clone())
        },
    );
    assert_eq!(
        back.must_label("io.convoy.node"),
        node,
        "moved to another node"
    );
    assert_eq!(back.must_label("io.convoy.revision"), "1");
    assert_eq!(
        back.must_label("io.convoy.workload"),
        format!("default/{svc}/{index}")
    );

    let still = docker::find(&bystander.id)
        .unwrap()
        .expect("the other instance's container is gone");
    assert_eq!(still.state.started_at, bystander.state.started_at);
    let status = c.service_status(&svc);
    let other = status
        .instances
        .iter()
        .find(|i| i.index.to_string() != index)
        .unwrap();
    assert_eq!(other.restarts, 0, "{}", status.describe());
    c.assert_healthy();
}

/// Every start of the instance seen in Docker, and Convoy's restart counts
/// over time.
struct CrashLog {
    starts: Vec<(Instant, String)>,
    restarts: Vec<(Instant, u32)>,
}

#[test]
fn crashing_container_is_restarted_with_growing_backoff() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let svc = c.service_name("crash");
    let spec = ServiceSpec::new(&svc, &c.image()).command(&[
        "/convoy-testapp",
        "--listen",
        "0.0.0.0:8080",
        "--exit-after",
        "1",
    ]);
    let file = c.write_spec("crash.yaml", &compose(&[&spec]));
    c.apply(&file);

    // Backoff 1 s, 2 s, 4 s, 8 s after runs of 1 s: starts near 0, 2, 5,
    // 10 and 19 s. A tight loop would start it twenty times or more.
    let window = Duration::from_secs(26);
    let mut log = CrashLog {
        starts: Vec::new(),
        restarts: Vec::new(),
    };
    let began = Instant::now();
    let mut first_seen: Option<Instant> = None;
    while first_seen.is_none_or(|t| t.elapsed() < window) {
        assert!(
            began.elapsed() < window + SETTLE,
            "the crashing instance never started"
        );
        let now = Instant::now();
        let containers = c.containers_of(&svc).unwrap();
        assert!(
            containers.len() <= 1,
            "more than one container for one instance: {:#?}",
            containers
                .iter()
                .map(|ct| ct.describe())
                .collect::<Vec<_>>()
        );
        for ct in &containers {
            let key = format!("{} {}", ct.id, ct.state.started_at);
            let started = !ct.state.started_at.starts_with("0001-");
            if started && log.starts.last().is_none_or(|(_, last)| *last != key) {
                first_seen.get_or_insert(now);
                log.starts.push((now, key));
            }
        }
        if let Ok(status) = c.try_service_status(&svc) {
            if let Some(inst) = status.instance(1) {
                log.restarts.push((now, inst.restarts));
            }
        }
        std::thread::sleep(Duration::from_millis(150));
    }

    let t0 = log.starts[0].0;
    let at: Vec<f64> = log
        .starts
        .iter()
        .map(|(t, _)| t.duration_since(t0).as_secs_f64())
        .collect();
    let gaps: Vec<f64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    let shown = format!("starts seen at {at:.1?} s, gaps {gaps:.1?} s");
    assert!(
        log.starts.len() >= 4,
        "expected at least 3 restarts in {window:?}: {shown}"
    );
    assert!(
        log.starts.len() <= 8,
        "restarted in a tight loop, not with backoff: {shown}"
    );
    assert!(
        gaps.iter().all(|g| *g >= 1.5),
        "a restart came sooner than run time plus 1 s backoff: {shown}"
    );
    let (first, last) = (gaps[0], gaps[gaps.len() - 1]);
    assert!(last >= first + 1.5, "backoff does not grow: {shown}");

    // Convoy counts them, and never counts down.
    let counts: Vec<u32> = log.restarts.iter().map(|(_, n)| *n).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "restarts went down: {counts:?}"
    );
    let final_count = *counts
        .last()
        .expect("convoy status never listed the instance");
    assert!(
        final_count as usize + 1 >= log.starts.len() - 1,
        "convoy status counts {final_count} restarts, Docker saw {}: {shown}",
        log.starts.len()
    );
    let by_count: BTreeMap<u32, f64> = log
        .restarts
        .iter()
        .map(|(t, n)| (*n, t.duration_since(t0).as_secs_f64()))
        .rev()
        .collect();
    eprintln!("{shown}; first seen restart counts at {by_count:.1?}");
    c.assert_healthy();
}

//! Restart policies: when a container that exits is (not) started again.

use std::time::Duration;

use anyhow::{anyhow, ensure};
use convoy_tests::spec::compose;
use convoy_tests::{docker, skip_without_docker, wait_until, Cluster, ServiceSpec, SETTLE};

/// Waits until the only instance of `svc` is `state` in convoy status and
/// its container has exited with `exit_code` in Docker; returns the restarts.
fn wait_exited(c: &Cluster, svc: &str, state: &str, exit_code: i64) -> (u32, docker::Container) {
    wait_until(
        format!("{svc} stays down ({state}, exit code {exit_code})"),
        SETTLE,
        Duration::from_millis(250),
        || {
            let cts = c.containers_of(svc)?;
            let shown: Vec<String> = cts.iter().map(|ct| ct.describe()).collect();
            ensure!(
                cts.len() == 1
                    && !cts[0].state.running
                    && cts[0].state.exit_code == exit_code
                    && !cts[0].state.started_at.starts_with("0001-"),
                "docker has {shown:#?}"
            );
            let status = c.try_service_status(svc)?;
            let inst = status
                .instance(1)
                .ok_or_else(|| anyhow!("no instance: {}", status.describe()))?;
            ensure!(
                inst.state == state,
                "convoy status says {}",
                status.describe()
            );
            Ok((inst.restarts, cts[0].clone()))
        },
    )
}

/// Nothing starts it again for a while.
fn assert_stays_down(c: &Cluster, svc: &str, ct: &docker::Container, restarts: u32) {
    std::thread::sleep(Duration::from_secs(6));
    let now = docker::find(&ct.id)
        .unwrap()
        .expect("the container was removed");
    assert!(!now.state.running, "{} was started again", now.describe());
    assert_eq!(
        now.state.started_at,
        ct.state.started_at,
        "{} was restarted",
        now.describe()
    );
    assert_eq!(c.containers_of(svc).unwrap().len(), 1);
    let status = c.service_status(svc);
    assert_eq!(
        status.instance(1).unwrap().restarts,
        restarts,
        "{}",
        status.describe()
    );
    assert_eq!(status.running, 0, "{}", status.describe());
}

#[test]
fn restart_no_leaves_an_exited_container_exited() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let svc = c.service_name("once");
    let spec = ServiceSpec::new(&svc, &c.image())
        .command(&["/convoy-testapp", "--exit-after", "1"])
        .extra("restart: \"no\"");
    let file = c.write_spec("once.yaml", &compose(&[&spec]));
    c.apply(&file);
    let (restarts, ct) = wait_exited(&c, &svc, "exited", 3);
    assert_eq!(restarts, 0);
    assert_stays_down(&c, &svc, &ct, 0);
    c.assert_healthy();
}

#[test]
fn on_failure_ignores_a_clean_exit() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let svc = c.service_name("clean");
    // `--version` prints and exits 0.
    let spec = ServiceSpec::new(&svc, &c.image())
        .command(&["/convoy-testapp", "--version"])
        .extra("restart: on-failure");
    let file = c.write_spec("clean.yaml", &compose(&[&spec]));
    c.apply(&file);
    let (restarts, ct) = wait_exited(&c, &svc, "exited", 0);
    assert_eq!(restarts, 0);
    assert_stays_down(&c, &svc, &ct, 0);
    c.assert_healthy();
}

#[test]
fn on_failure_with_max_attempts_gives_up_after_them() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let svc = c.service_name("tries");
    let spec = ServiceSpec::new(&svc, &c.image())
        .command(&["/convoy-testapp", "--exit-after", "0.5"])
        .deploy("restart_policy:")
        .deploy("  condition: on-failure")
        .deploy("  max_attempts: 2");
    let file = c.write_spec("tries.yaml", &compose(&[&spec]));
    c.apply(&file);
    // Two restarts (after 1 s and 2 s of backoff), then it stays down.
    let ct = wait_until(
        format!("{svc} was restarted twice and stays down"),
        SETTLE,
        Duration::from_millis(250),
        || {
            let status = c.try_service_status(&svc)?;
            let inst = status
                .instance(1)
                .ok_or_else(|| anyhow!("no instance: {}", status.describe()))?;
            ensure!(
                inst.restarts == 2 && inst.state != "running" && inst.state != "starting",
                "convoy status says {}",
                status.describe()
            );
            let cts = c.containers_of(&svc)?;
            ensure!(
                cts.len() == 1 && !cts[0].state.running,
                "docker has {cts:#?}"
            );
            Ok(cts[0].clone())
        },
    );
    assert_eq!(ct.state.exit_code, 3);
    assert_stays_down(&c, &svc, &ct, 2);
    c.assert_healthy();
}

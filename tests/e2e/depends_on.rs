//! Compose `depends_on` on real containers: a service that depends on
//! another's health starts only once Docker reports that one healthy, and
//! waits, pending with the reason, until then.

use std::time::Duration;

use anyhow::{anyhow, ensure};
use convoy_tests::spec::compose;
use convoy_tests::{docker, skip_without_docker, wait_until, Cluster, ServiceSpec};
use serde_json::Value;

/// A Docker timestamp (`2026-01-02T03:04:05.123456789Z`, the fraction
/// without trailing zeros) as a string that orders by time.
fn sortable(stamp: &str) -> String {
    let (seconds, rest) = stamp.split_once('.').unwrap_or((stamp, "Z"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let zone = &rest[digits.len()..];
    assert_eq!(zone, "Z", "a UTC time from Docker: {stamp}");
    format!("{seconds}.{digits:0<9}")
}

fn state_of(container_id: &str) -> Value {
    let out = docker::docker(&["inspect", "-f", "{{json .State}}", container_id]).unwrap();
    serde_json::from_str(out.trim()).unwrap()
}

/// Issue 14: `web` depends on `db: {condition: service_healthy}`.
#[test]
fn a_service_starts_only_once_the_service_it_depends_on_is_healthy() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let db = c.service_name("db");
    let web = c.service_name("web");
    // The first check runs `interval` after the start: db is healthy ~3 s in.
    let db_spec = ServiceSpec::new(&db, &c.image()).extra(
        "healthcheck: { test: [\"CMD\", \"/convoy-testapp\", \"--probe\", \
         \"http://127.0.0.1:8080/healthz\"], interval: 3s, timeout: 2s, retries: 1 }",
    );
    let web_spec = ServiceSpec::new(&web, &c.image()).extra(&format!(
        "depends_on: {{ {db}: {{ condition: service_healthy }} }}"
    ));
    let file = c.write_spec("depends.yaml", &compose(&[&db_spec, &web_spec]));
    c.apply(&file);

    // While db's check has not passed, web is pending and says why.
    let waiting = format!("waiting for `{db}` to be healthy (depends_on)");
    wait_until(
        format!("{web} waits for {db}"),
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let s = c.try_service_status(&web)?;
            let i = s
                .instance(1)
                .ok_or_else(|| anyhow!("no instance: {}", s.describe()))?;
            ensure!(
                i.state == "pending" && i.reason == waiting,
                "{}",
                s.describe()
            );
            ensure!(
                docker::of_service(&web)?.is_empty(),
                "web has a container already"
            );
            Ok(())
        },
    );

    let db_container = c.wait_service_running(&db, 1, 1).remove(0);
    let web_container = c.wait_service_running(&web, 1, 1).remove(0);

    // Docker's own record: web started after db's first passing check.
    let db_state = state_of(&db_container.id);
    let web_state = state_of(&web_container.id);
    let healthy_at = db_state["Health"]["Log"]
        .as_array()
        .and_then(|log| log.iter().find(|check| check["ExitCode"] == 0))
        .and_then(|check| check["End"].as_str())
        .unwrap_or_else(|| panic!("no passing check in db's health log: {db_state}"))
        .to_owned();
    let db_started = db_state["StartedAt"].as_str().unwrap().to_owned();
    let web_started = web_state["StartedAt"].as_str().unwrap().to_owned();
    assert!(
        sortable(&db_started) < sortable(&healthy_at),
        "db started {db_started}, healthy {healthy_at}"
    );
    assert!(
        sortable(&healthy_at) < sortable(&web_started),
        "web started at {web_started}, before db's first passing check ended at {healthy_at}"
    );
}

/// Issue 14: `depends_on: {db: {restart: true}}`: a new revision of `db`
/// replaces `web`'s container on the node too (a new container, web's
/// revision unchanged); a service depending on `db` without `restart` keeps
/// its container.
#[test]
fn a_dependency_updated_restarts_the_services_that_ask_for_it() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let db = c.service_name("db");
    let web = c.service_name("web");
    let api = c.service_name("api");
    let db_spec = |greeting: &str| ServiceSpec::new(&db, &c.image()).env("GREETING", greeting);
    let web_spec = ServiceSpec::new(&web, &c.image()).extra(&format!(
        "depends_on: {{ {db}: {{ condition: service_started, restart: true }} }}"
    ));
    let api_spec = ServiceSpec::new(&api, &c.image()).extra(&format!(
        "depends_on: {{ {db}: {{ condition: service_started }} }}"
    ));
    let file = c.write_spec(
        "restart.yaml",
        &compose(&[&db_spec("one"), &web_spec, &api_spec]),
    );
    c.apply(&file);
    c.wait_service_running(&db, 1, 1);
    let web_before = c.wait_service_running(&web, 1, 1).remove(0);
    let api_before = c.wait_service_running(&api, 1, 1).remove(0);
    // Containers are ordered by creation time in whole seconds: let db's
    // next container be made in a later second than web's.
    std::thread::sleep(Duration::from_millis(1100));

    let file = c.write_spec(
        "restart.yaml",
        &compose(&[&db_spec("two"), &web_spec, &api_spec]),
    );
    c.apply(&file);
    c.wait_service_running(&db, 1, 2);
    let web_after = wait_until(
        format!("{web} gets a new container after {db}'s update"),
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let now = c.wait_service_running(&web, 1, 1).remove(0);
            ensure!(now.id != web_before.id, "still {}", web_before.id);
            Ok(now)
        },
    );
    assert!(web_after.state.running);
    assert_eq!(c.wait_service_running(&api, 1, 1)[0].id, api_before.id);
    // And it stays: no second replacement.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.wait_service_running(&web, 1, 1)[0].id, web_after.id);
}

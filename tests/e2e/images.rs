//! Images: the tests' own, and one that exists nowhere.

use std::time::Duration;

use anyhow::{anyhow, ensure};
use convoy_tests::image::ensure_test_image;
use convoy_tests::spec::compose;
use convoy_tests::{docker, http, skip_without_docker, wait_until, Cluster, ServiceSpec, SETTLE};

/// Checks the harness itself: the image builds FROM scratch and serves.
#[test]
fn test_image_serves_its_greeting_and_health() {
    skip_without_docker!();
    let image = ensure_test_image();
    let id = docker::run_detached(&[
        "--rm",
        "--label",
        "io.convoy.test-smoke=true",
        "-e",
        "GREETING=hi there",
        // The image's default command serves on :8080.
        &image,
    ])
    .unwrap();
    let result = std::panic::catch_unwind(|| {
        let ct = docker::find(&id).unwrap().expect("just started");
        let addr = ct.addr(8080).unwrap();
        let (code, body) = wait_until(
            "the test app answers",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || http::get(addr, "/"),
        );
        assert_eq!(code, 200);
        assert!(body.contains("hi there"), "{body:?}");
        assert_eq!(http::get(addr, "/healthz").unwrap(), (200, "ok\n".into()));
        http::request(addr, "POST", "/fail").unwrap();
        assert_eq!(http::get(addr, "/healthz").unwrap().0, 500);
    });
    docker::remove_force(&[id]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn missing_image_fails_the_instance_and_spares_other_services() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let good = c.service_name("fine");
    let bad = c.service_name("noimg");
    let good_spec = ServiceSpec::new(&good, &c.image());
    let file = c.write_spec("fine.yaml", &compose(&[&good_spec]));
    c.apply(&file);
    let before = c.wait_service_running(&good, 1, 1);

    let missing = format!("convoy-testapp:missing-{}", c.id);
    let bad_spec = ServiceSpec::new(&bad, &missing);
    let file = c.write_spec("both.yaml", &compose(&[&good_spec, &bad_spec]));
    let report = c.apply(&file);
    assert_eq!(report.service(&good).action, "unchanged");
    assert_eq!(report.service(&bad).action, "create");

    let node = c.node_names()[0].clone();
    let reason = wait_until(
        format!("the instance of {bad} is failed for its missing image"),
        SETTLE + Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let status = c.try_service_status(&bad)?;
            let inst = status
                .instance(1)
                .ok_or_else(|| anyhow!("no instance: {}", status.describe()))?;
            ensure!(
                inst.state == "failed"
                    && inst
                        .reason
                        .contains(&format!("pulling `{missing}` on node")),
                "convoy status says {}",
                status.describe()
            );
            Ok(inst.reason.clone())
        },
    );
    assert!(
        reason.contains(&missing),
        "reason does not name the image: {reason}"
    );
    assert!(
        reason.contains(&node),
        "reason does not name the node: {reason}"
    );
    let running: Vec<_> = c
        .containers_of(&bad)
        .unwrap()
        .into_iter()
        .filter(|ct| ct.state.running)
        .map(|ct| ct.describe())
        .collect();
    assert!(running.is_empty(), "something runs for {bad}: {running:?}");

    let after = c.wait_service_running(&good, 1, 1);
    assert_eq!(after[0].id, before[0].id);
    assert_eq!(after[0].state.started_at, before[0].state.started_at);
    c.assert_healthy();
}

#[test]
fn fixing_a_missing_image_gets_the_instance_running() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("fixed");
    let broken = ServiceSpec::new(&svc, &format!("convoy-testapp:missing-{}", c.id));
    let file = c.write_spec("fixed.yaml", &compose(&[&broken]));
    c.apply(&file);
    wait_until(
        format!("{svc} fails for its image"),
        SETTLE + Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let status = c.try_service_status(&svc)?;
            ensure!(
                status.instances.iter().any(|i| i.state == "failed"),
                "convoy status says {}",
                status.describe()
            );
            Ok(())
        },
    );
    c.write_spec("fixed.yaml", &compose(&[&broken.clone().image(&c.image())]));
    c.apply(&file);
    c.wait_service_running(&svc, 1, 2);
}

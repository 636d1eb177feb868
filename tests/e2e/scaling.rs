//! Changing only the number of replicas: instances come and go, the ones
//! that stay are left alone.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::ensure;
use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, wait_until, Cluster, ServiceSpec, SETTLE};

/// Instance index → (container id, StartedAt) of the service's running
/// containers, once there are exactly `n` and convoy status agrees.
fn running_instances(
    c: &Cluster,
    svc: &str,
    n: usize,
    revision: u64,
) -> BTreeMap<String, (String, String)> {
    wait_until(
        format!("{n} instances of {svc} run (service revision {revision})"),
        SETTLE,
        Duration::from_millis(250),
        || {
            let cts = c.containers_of(svc)?;
            let shown: Vec<String> = cts.iter().map(|ct| ct.describe()).collect();
            ensure!(
                cts.len() == n && cts.iter().all(|ct| ct.state.running),
                "docker has {shown:#?}"
            );
            let status = c.try_service_status(svc)?;
            ensure!(
                status.revision == revision
                    && status.desired as usize == n
                    && status.running as usize == n
                    && status.instances.len() == n
                    && status.instances.iter().all(|i| i.state == "running"),
                "convoy status says {}",
                status.describe()
            );
            Ok(cts
                .into_iter()
                .map(|ct| {
                    (
                        ct.must_label("io.convoy.instance").to_string(),
                        (ct.id.clone(), ct.state.started_at.clone()),
                    )
                })
                .collect())
        },
    )
}

#[test]
fn scaling_adds_and_removes_instances_without_replacing_the_others() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let svc = c.service_name("scale");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2);
    let file = c.write_spec("scale.yaml", &compose(&[&spec]));
    c.apply(&file);
    let two = running_instances(&c, &svc, 2, 1);

    c.write_spec("scale.yaml", &compose(&[&spec.clone().replicas(4)]));
    let report = c.apply(&file);
    let change = report.service(&svc);
    assert_eq!(change.action, "update", "{report:#?}");
    assert!(
        change.changed_fields.len() == 1 && change.changed_fields[0].ends_with("replicas"),
        "only the replicas changed: {report:#?}"
    );
    let actions: Vec<&str> = change.instances.iter().map(|i| i.action.as_str()).collect();
    assert_eq!(actions, ["unchanged", "unchanged", "create", "create"]);
    let four = running_instances(&c, &svc, 4, change.revision);
    for (index, old) in &two {
        assert_eq!(four.get(index), Some(old), "instance {index} was replaced");
    }
    assert_eq!(
        four.keys().cloned().collect::<Vec<_>>(),
        ["1", "2", "3", "4"]
    );

    c.write_spec("scale.yaml", &compose(&[&spec.clone().replicas(1)]));
    let report = c.apply(&file);
    let change = report.service(&svc);
    let one = running_instances(&c, &svc, 1, change.revision);
    assert_eq!(
        one.get("1"),
        two.get("1"),
        "scaling down should keep instance 1 as it was"
    );
    c.assert_healthy();
}

//! Networks on a host (issue 14): the services of an environment on one
//! node reach each other by service name and `aliases` on user-defined
//! networks the agent creates (`convoy-ENV`, `convoy-ENV-NAME`), with the
//! spec's `hostname`, `extra_hosts` and `expose` on the container; a
//! network goes with its last container; a stack split across nodes is
//! warned about.

use std::time::Duration;

use convoy_tests::{docker, skip_without_docker, wait_until, Cluster};
use serde_json::Value;

/// Removes a network only this test uses, whatever happened: with the
/// containers still on it (the cluster, declared before, is dropped after).
struct RemoveNetwork(String);

impl Drop for RemoveNetwork {
    fn drop(&mut self) {
        let format = "{{range $id, $_ := .Containers}}{{$id}} {{end}}";
        if let Ok(ids) = docker::docker(&["network", "inspect", "-f", format, &self.0]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = docker::docker(&[&["rm", "-f"][..], &ids].concat());
            }
        }
        let _ = docker::docker(&["network", "rm", &self.0]);
    }
}

/// `docker inspect` of one object, as JSON.
fn inspect(args: &[&str]) -> Value {
    let out = docker::docker(args).unwrap_or_else(|e| panic!("docker {args:?}: {e:#}"));
    let mut all: Vec<Value> = serde_json::from_str(&out).unwrap();
    all.remove(0)
}

/// The aliases of container `id` on `network`; panics if it is not on it.
fn aliases_on(id: &str, network: &str) -> Vec<String> {
    let ct = inspect(&["inspect", id]);
    let endpoint = &ct["NetworkSettings"]["Networks"][network];
    assert!(
        endpoint.is_object(),
        "container {id} is not on {network}: {}",
        ct["NetworkSettings"]["Networks"]
    );
    serde_json::from_value(endpoint["Aliases"].clone()).unwrap_or_default()
}

/// GETs `url` from inside container `id` (the test app's `--probe`, which
/// resolves names as any program in the container would).
fn probe_from(id: &str, url: &str) -> Result<String, String> {
    docker::docker(&["exec", id, "/convoy-testapp", "--probe", url]).map_err(|e| format!("{e:#}"))
}

#[test]
fn services_on_one_node_reach_each_other_by_name_and_alias_on_convoy_networks() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let node = c.add_agent();
    c.wait_nodes_ready(&[node]);
    let web = c.service_name("web");
    let db = c.service_name("db");
    let store = c.service_name("store");
    let back = c.service_name("back");
    let back_net = format!("convoy-default-{back}");
    let _cleanup = RemoveNetwork(back_net.clone());
    let image = c.image();
    // `web` has no `networks:`: the environment's network. `db` joins that
    // one and `back`, where it also answers to `store`.
    let yaml = format!(
        "services:\n  {web}:\n    image: {image}\n  {db}:\n    image: {image}\n    \
         hostname: db-host\n    extra_hosts:\n      - \"gateway.test:10.9.8.7\"\n    \
         expose: [9000]\n    networks:\n      default:\n      {back}:\n        \
         aliases: [{store}]\nnetworks:\n  {back}:\n    labels:\n      team: data\n"
    );
    let file = c.write_spec("net.yaml", &yaml);
    let report = c.apply(&file);
    assert!(
        !report.warnings.iter().any(|w| w.contains("split")),
        "one node: no split warning: {:?}",
        report.warnings
    );
    let web_ct = c.wait_service_running(&web, 1, 1).remove(0);
    let db_ct = c.wait_service_running(&db, 1, 1).remove(0);

    // Docker's view: both on `convoy-default` under their service names;
    // `db` on `back` as `db` and `store`; its hostname, hosts and port.
    // (Docker adds the short container id as an alias of its own.)
    assert!(aliases_on(&web_ct.id, "convoy-default").contains(&web));
    assert!(aliases_on(&db_ct.id, "convoy-default").contains(&db));
    let on_back = aliases_on(&db_ct.id, &back_net);
    assert!(
        on_back.contains(&db) && on_back.contains(&store),
        "{on_back:?}"
    );
    let db_inspect = inspect(&["inspect", &db_ct.id]);
    assert_eq!(db_inspect["Config"]["Hostname"], "db-host");
    assert_eq!(
        db_inspect["HostConfig"]["ExtraHosts"],
        serde_json::json!(["gateway.test:10.9.8.7"])
    );
    assert!(
        db_inspect["Config"]["ExposedPorts"]["9000/tcp"].is_object(),
        "{}",
        db_inspect["Config"]["ExposedPorts"]
    );
    let web_inspect = inspect(&["inspect", &web_ct.id]);
    assert!(
        web_inspect["NetworkSettings"]["Networks"][&back_net].is_null(),
        "web did not ask for {back_net}"
    );
    let net = inspect(&["network", "inspect", &back_net]);
    assert_eq!(net["Driver"], "bridge");
    assert_eq!(net["Labels"]["io.convoy.managed"], "true");
    assert_eq!(net["Labels"]["io.convoy.env"], "default");
    assert_eq!(net["Labels"]["team"], "data");

    // A real request by service name, from `web` to `db`, through Docker's
    // DNS; an unknown name fails the same way, so the check can fail.
    let answer = wait_until(
        format!("{web} reaches {db} by name"),
        Duration::from_secs(20),
        Duration::from_millis(250),
        || probe_from(&web_ct.id, &format!("http://{db}:8080/")).map_err(anyhow::Error::msg),
    );
    assert!(answer.contains("200"), "{answer}");
    let unknown = probe_from(&web_ct.id, &format!("http://nobody-{db}:8080/"));
    assert!(unknown.is_err(), "an unknown name answered: {unknown:?}");
    // `store` is an alias on `back`, where `web` is not: from a container
    // there it answers, from `web` it does not resolve.
    let on_back_answer = docker::docker(&[
        "run",
        "--rm",
        "--network",
        &back_net,
        &image,
        "/convoy-testapp",
        "--probe",
        &format!("http://{store}:8080/"),
    ])
    .unwrap_or_else(|e| panic!("`{store}` on {back_net}: {e:#}"));
    assert!(on_back_answer.contains("200"), "{on_back_answer}");
    assert!(probe_from(&web_ct.id, &format!("http://{store}:8080/")).is_err());

    // `back` goes with its last container; `convoy-default` is shared with
    // the other tests, so only `back` is checked.
    c.delete(&db);
    c.wait_service_gone(&db);
    wait_until(
        format!("{back_net} is removed with its last container"),
        Duration::from_secs(20),
        Duration::from_millis(250),
        || match docker::docker(&["network", "inspect", &back_net]) {
            Ok(_) => Err(anyhow::anyhow!("{back_net} is still there")),
            Err(_) => Ok(()),
        },
    );
}

#[test]
fn a_stack_split_across_nodes_is_applied_with_one_warning_naming_the_services() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let a = c.add_agent_with_args(&["--label", "netsplit=a"]);
    let b = c.add_agent_with_args(&["--label", "netsplit=b"]);
    c.wait_nodes_ready(&[a.clone(), b.clone()]);
    let web = c.service_name("web");
    let db = c.service_name("db");
    let image = c.image();
    let on = |label: &str| {
        format!("    deploy:\n      placement:\n        constraints: [\"node.labels.netsplit == {label}\"]\n")
    };
    let yaml = format!(
        "services:\n  {web}:\n    image: {image}\n{}  {db}:\n    image: {image}\n{}",
        on("a"),
        on("b")
    );
    let file = c.write_spec("split.yaml", &yaml);
    let report = c.apply(&file);
    let split: Vec<&String> = report
        .warnings
        .iter()
        .filter(|w| w.contains("split across nodes"))
        .collect();
    assert_eq!(split.len(), 1, "{:?}", report.warnings);
    assert!(
        split[0].contains(&format!("`{db}` on {b}"))
            && split[0].contains(&format!("`{web}` on {a}")),
        "{}",
        split[0]
    );
    assert!(split[0].contains("not supported yet"), "{}", split[0]);
    // It is a warning: both run, each on its node's network.
    let web_ct = c.wait_service_running(&web, 1, 1).remove(0);
    let db_ct = c.wait_service_running(&db, 1, 1).remove(0);
    assert_eq!(web_ct.must_label("io.convoy.node"), a);
    assert_eq!(db_ct.must_label("io.convoy.node"), b);
    assert!(aliases_on(&db_ct.id, "convoy-default").contains(&db));
}

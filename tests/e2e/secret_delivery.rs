//! Secrets delivered to containers (issue 15), on real Docker with two
//! agents: a Compose `file:` secret reaches the container that uses it at
//! `/run/secrets/db` (served by the test app), and only the node that runs
//! it; a rotation rolls exactly that service onto the new value and a
//! rollback brings the old one back; the agent restarts the killed
//! consumer, with its secret, while the coordinator is down; and the
//! canary values are searched for after the whole scenario in every CLI
//! output (table and JSON), every log, `/metrics`, the dashboard's API,
//! `docker inspect` and every file of the coordinator's and the agents'
//! data directories: never found.

use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context as _};
use convoy_tests::canary::{contains, files_under, text, Seen};
use convoy_tests::{docker, http, skip_without_docker, wait_until, Cluster, SETTLE};

const CANARY: &str = "cAnArY-delivery-3f9e-first";
const CANARY2: &str = "cAnArY-delivery-8b21-rotated";

/// What the test app in `ct` serves at `/secret/db`.
fn served(ct: &docker::Container) -> anyhow::Result<String> {
    let addr = ct.addr(8080)?;
    let (code, body) = http::get(addr, "/secret/db")?;
    ensure!(code == 200, "GET /secret/db answered {code}: {body}");
    Ok(body)
}

/// Waits until `service` runs one container at `revision` serving `value`.
fn wait_serving(c: &Cluster, service: &str, revision: u64, value: &str) -> docker::Container {
    let ct = c.wait_service_running(service, 1, revision).remove(0);
    wait_until(
        format!("{service} r{revision} serves its secret"),
        SETTLE,
        Duration::from_millis(250),
        || {
            let body = served(&ct)?;
            ensure!(
                body == value,
                "it serves another value ({} bytes)",
                body.len()
            );
            Ok(())
        },
    );
    ct
}

#[test]
fn a_secret_reaches_only_its_consumer_rotates_through_a_rollout_and_is_never_seen_elsewhere() {
    skip_without_docker!();
    let mut c = Cluster::start_with_env(&[("RUST_LOG", "debug")]);
    let n1 = c.add_agent();
    let n2 = c.add_agent();
    c.wait_nodes_ready(&[n1.clone(), n2.clone()]);
    let mut seen = Seen::default();
    let (web, plain, other) = (
        c.service_name("web"),
        c.service_name("plain"),
        c.service_name("other"),
    );
    let image = c.image();
    // The spec and its secret's file live outside the cluster's directory,
    // which is searched for the canaries at the end.
    let user = tempfile::tempdir().unwrap();
    std::fs::write(user.path().join("db.txt"), CANARY).unwrap();
    let on = |node: &str| {
        format!(
            "    ports: [\"8080\"]\n    deploy:\n      placement:\n        \
             constraints: [\"node.name == {node}\"]\n"
        )
    };
    let yaml = format!(
        "services:\n  {web}:\n    image: {image}\n    secrets:\n      - source: db\n        \
         target: db\n{}  {plain}:\n    image: {image}\n{}  {other}:\n    image: {image}\n{}\
         secrets:\n  db:\n    file: ./db.txt\n",
        on(&n1),
        on(&n1),
        on(&n2)
    );
    let file = user.path().join("stack.yaml");
    std::fs::write(&file, yaml).unwrap();
    let file = file.to_str().unwrap().to_string();

    let out = c.cli(&["plan", "-f", &file]);
    seen.add("plan", &out);
    assert!(out.status.success(), "plan: {}", text(&out));
    let out = c.cli(&["-o", "json", "apply", "-f", &file]);
    seen.add("apply", &out);
    assert!(out.status.success(), "apply: {}", text(&out));
    let applied: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(applied["secrets"][0]["action"], "created", "{applied}");
    assert_eq!(applied["secrets"][0]["version"], 1, "{applied}");

    let web_ct = wait_serving(&c, &web, 1, CANARY);
    let plain_ct = c.wait_service_running(&plain, 1, 1).remove(0);
    let other_ct = c.wait_service_running(&other, 1, 1).remove(0);
    assert_eq!(web_ct.must_label("io.convoy.node"), n1);
    assert_eq!(other_ct.must_label("io.convoy.node"), n2);
    // A read-only bind of a file on the agent's tmpfs.
    let mounts = docker::docker(&["inspect", "-f", "{{json .Mounts}}", &web_ct.id]).unwrap();
    let mounts: Vec<serde_json::Value> = serde_json::from_str(mounts.trim()).unwrap();
    let mount = mounts
        .iter()
        .find(|m| m["Destination"] == "/run/secrets/db")
        .unwrap_or_else(|| panic!("no mount at /run/secrets/db: {mounts:?}"));
    assert_eq!(mount["RW"], false, "{mount}");
    let source = mount["Source"].as_str().unwrap().to_string();
    assert!(
        source.starts_with(c.agent_secrets_dir(&n1).to_str().unwrap()),
        "{source}"
    );
    // The node that runs no consumer holds nothing on its tmpfs.
    let n2_files = files_under(&c.agent_secrets_dir(&n2));
    for f in &n2_files {
        let bytes = std::fs::read(f).unwrap_or_default();
        assert!(
            !contains(&bytes, CANARY),
            "{} on {n2} holds the value",
            f.display()
        );
    }

    // Rotation: web rolls onto version 2; plain and other keep their
    // containers.
    let out = c.cli_with_input(
        &["--env", "default", "secret", "rotate", "db"],
        CANARY2.as_bytes(),
    );
    seen.add("rotate", &out);
    assert!(out.status.success(), "rotate: {}", text(&out));
    assert!(
        text(&out).contains(&format!("rolling out to {web}")),
        "{}",
        text(&out)
    );
    let web_ct2 = wait_serving(&c, &web, 2, CANARY2);
    assert_ne!(web_ct2.id, web_ct.id, "web's container is replaced");
    for (svc, before) in [(&plain, &plain_ct), (&other, &other_ct)] {
        let now = c.wait_service_running(svc, 1, 1).remove(0);
        assert_eq!(now.id, before.id, "{svc} was touched by the rotation");
    }
    let out = c.cli(&["-o", "json", "secret", "list"]);
    seen.add("list json", &out);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.to_string().contains(&web), "{listed}");
    let out = c.cli(&["secret", "list"]);
    seen.add("list", &out);
    let out = c.cli(&["secret", "rm", "db"]);
    seen.add("rm refused", &out);
    assert!(!out.status.success(), "rm of a used secret: {}", text(&out));
    assert!(text(&out).contains(&web), "{}", text(&out));

    // Rollback: the revision before, and so version 1's value.
    let out = c.cli(&["rollback", &web]);
    seen.add("rollback", &out);
    assert!(out.status.success(), "rollback: {}", text(&out));
    let web_ct3 = wait_serving(&c, &web, 3, CANARY);

    // The coordinator is away; the agent restarts, and the consumer is
    // killed: the agent brings it back with its secret from its tmpfs.
    c.stop_coordinator();
    c.stop_agent(&n1);
    docker::kill(&web_ct3.id).unwrap();
    c.start_agent(&n1);
    wait_until(
        "web runs again, with its secret, while the coordinator is down",
        SETTLE,
        Duration::from_millis(250),
        || {
            let cts = c.containers_of(&web)?;
            ensure!(cts.len() == 1, "{} containers", cts.len());
            let ct = docker::find(&cts[0].id)?.context("gone")?;
            ensure!(
                ct.state.running && ct.state.started_at != web_ct3.state.started_at,
                "not restarted yet: {}",
                ct.describe()
            );
            let body = served(&ct)?;
            ensure!(body == CANARY, "it serves another value");
            Ok(())
        },
    );
    c.start_coordinator();
    c.wait_nodes_ready(&[n1.clone(), n2.clone()]);

    // Every view, in both formats.
    for args in [
        &["status"][..],
        &["-o", "json", "status"],
        &["history", &web],
        &["-o", "json", "history", &web],
        &["-o", "json", "secret", "history", "db"],
        &["events", "--limit", "500"],
        &["audit"],
        &["-o", "json", "audit"],
        &["diff", "-f", &file],
        &["-o", "json", "plan", "-f", &file],
    ] {
        let out = c.cli(args);
        seen.add(&format!("{args:?}"), &out);
    }
    for ct in [&web_ct.id, &web_ct2.id, &web_ct3.id] {
        if let Ok(inspect) = docker::docker(&["inspect", ct]) {
            seen.add_text(&format!("docker inspect {ct}"), inspect);
        }
    }
    let admin = c.admin_token();
    for path in ["/metrics", "/api/services", "/api/nodes", "/api/events"] {
        let (code, body) = http::get_with_token(c.http_addr, path, &admin).unwrap();
        assert_eq!(code, 200, "{path}: {body}");
        seen.add_text(path, body);
    }

    // Deleting the service takes its files off the node's tmpfs.
    c.delete(&web);
    c.wait_service_gone(&web);
    wait_until(
        "the secret's files leave n1's tmpfs with its last consumer",
        SETTLE,
        Duration::from_millis(250),
        || {
            let left: Vec<_> = files_under(&c.agent_secrets_dir(&n1))
                .into_iter()
                .filter(|f| {
                    std::fs::read(f)
                        .map(|b| contains(&b, CANARY) || contains(&b, CANARY2))
                        .unwrap_or(false)
                })
                .collect();
            ensure!(left.is_empty(), "still there: {left:?}");
            Ok(())
        },
    );

    c.stop_agent(&n1);
    c.stop_agent(&n2);
    c.stop_coordinator();
    seen.add_text("coordinator log", c.coordinator_log());
    for n in [&n1, &n2] {
        seen.add_text(&format!("agent {n} log"), c.agent_log(n));
    }
    seen.add_files(c.root());
    let hits = seen.hits(&[CANARY, CANARY2]);
    assert!(hits.is_empty(), "a secret value was seen in: {hits:#?}");
    assert!(seen.0.len() > 20, "searched only {} outputs", seen.0.len());
}

/// The environment-variable opt-in (`x-convoy.secret_env`): the container
/// gets the value as a variable, and only as one when it has no file mount;
/// as documented, this is weaker: `docker inspect` shows it.
#[test]
fn a_secret_given_as_an_environment_variable_reaches_the_process_and_shows_in_inspect() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let node = c.add_agent();
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let svc = c.service_name("envsecret");
    let image = c.image();
    let value = "env-secret-5c7d";
    let yaml = format!(
        "services:\n  {svc}:\n    image: {image}\n    ports: [\"8080\"]\n    x-convoy:\n      \
         secret_env:\n        API_TOKEN: token\nsecrets:\n  token:\n    environment: TOKEN_SOURCE\n"
    );
    let file = c.write_spec("envsecret.yaml", &yaml);
    let out = output_of(c.cli_command().env("TOKEN_SOURCE", value).args([
        "apply",
        "-f",
        file.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "apply: {}", text(&out));
    let ct = c.wait_service_running(&svc, 1, 1).remove(0);
    let addr = ct.addr(8080).unwrap();
    wait_until(
        "the process sees API_TOKEN",
        SETTLE,
        Duration::from_millis(250),
        || {
            let (code, body) = http::get(addr, "/env/API_TOKEN")?;
            ensure!(code == 200 && body == value, "{code}: {body}");
            Ok(())
        },
    );
    assert_eq!(ct.env_var("API_TOKEN"), Some(value), "docker inspect's Env");
    // No file: the variable is all it asked for.
    let (code, _) = http::get(addr, "/secret/token").unwrap();
    assert_eq!(code, 404);
}

fn output_of(cmd: &mut std::process::Command) -> Output {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("cannot run convoy")
}

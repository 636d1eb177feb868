//! Host access is an admin's decision (issue 14): a deployer's spec may
//! bind-mount a host path only where an admin started the agent with
//! `--allow-bind` covering it; elsewhere the apply is refused, saying how
//! to allow it, and nothing is stored or started.

use std::fs::{self, File};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use convoy_tests::bins::bin;
use convoy_tests::cluster::free_port;
use convoy_tests::docker::docker;
use convoy_tests::process::{output_within, signal, wait_within};
use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, wait_until, Cluster, ServiceSpec};
use serde_json::Value;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A refused apply: exit 1, one line naming the file, the path and the flag.
fn assert_refused(out: &Output, file: &str, path: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "the apply was allowed: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    for needle in [
        file,
        "services.",
        ".volumes[0]",
        &format!("host path `{path}`"),
        &format!("`--allow-bind {path}`"),
    ] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

fn allowed_bind_paths(c: &Cluster, node: &str) -> Vec<String> {
    let v: Value = c.cli_json(&["nodes"]);
    let node = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .unwrap_or_else(|| panic!("{node} not in {v}"))
        .clone();
    serde_json::from_value(node["allowed_bind_paths"].clone())
        .unwrap_or_else(|e| panic!("allowed_bind_paths of {node}: {e}"))
}

#[test]
fn a_deployer_binds_a_host_path_only_on_nodes_an_admin_allowed() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let plain = c.node_names()[0].clone();
    let v: Value = c.cli_json(&["token", "create", "--name", "dep", "--role", "deployer"]);
    let deployer = v["token"].as_str().expect("a token").to_string();

    let host_dir = c.root().join("host-data");
    fs::create_dir_all(&host_dir).unwrap();
    fs::write(host_dir.join("marker"), "from the host").unwrap();
    let host_dir = host_dir.to_str().unwrap().to_string();
    let svc = c.service_name("bind");
    let image = c.image();
    let spec_with = |volume: &str| {
        compose(
            &[&ServiceSpec::new(&svc, &image).replicas(2).extra(&format!(
                "volumes: [{}]",
                serde_json::to_string(volume).unwrap()
            ))],
        )
    };

    // No node allows host paths: the deployer's bind of `/` (root on the
    // host) and of the temp dir are both refused, and nothing is stored.
    for (name, source) in [("root.yaml", "/"), ("bind.yaml", host_dir.as_str())] {
        let file = c.write_spec(name, &spec_with(&format!("{source}:/data:ro")));
        let out = c.cli_with_token(&deployer, &["apply", "-f", file.to_str().unwrap()]);
        assert_refused(&out, name, source);
    }
    assert!(c.try_status().unwrap().iter().all(|s| s.name != svc));
    assert!(c.containers_of(&svc).unwrap().is_empty());
    assert_eq!(allowed_bind_paths(&c, &plain), Vec::<String>::new());

    // An admin allows the temp dir on a new node: it says so in its facts,
    // and every instance goes there, with the bind.
    let allowing = c.add_agent_with_args(&["--allow-bind", &format!("{host_dir}/")]);
    c.wait_nodes_ready(&[plain.clone(), allowing.clone()]);
    assert_eq!(allowed_bind_paths(&c, &allowing), vec![host_dir.clone()]);
    let file = c.write_spec("bind.yaml", &spec_with(&format!("{host_dir}:/data:ro")));
    let out = c.cli_with_token(&deployer, &["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    let containers = c.wait_service_running(&svc, 2, 1);
    for container in &containers {
        assert_eq!(container.must_label("io.convoy.node"), allowing);
        let binds =
            docker(&["inspect", "-f", "{{json .HostConfig.Binds}}", &container.id]).unwrap();
        let binds: Vec<String> = serde_json::from_str(binds.trim()).unwrap();
        assert_eq!(binds, vec![format!("{host_dir}:/data:ro")]);
        let mounts = docker(&["inspect", "-f", "{{json .Mounts}}", &container.id]).unwrap();
        let mounts: Value = serde_json::from_str(mounts.trim()).unwrap();
        assert_eq!(mounts[0]["Source"], host_dir.as_str(), "{mounts}");
        assert_eq!(mounts[0]["Destination"], "/data", "{mounts}");
        assert_eq!(mounts[0]["RW"], false, "{mounts}");
    }

    // Allowing the temp dir is not allowing `/`.
    let file = c.write_spec("root.yaml", &spec_with("/:/data:ro"));
    let out = c.cli_with_token(&deployer, &["apply", "-f", file.to_str().unwrap()]);
    assert_refused(&out, "root.yaml", "/");
    c.assert_healthy();
}

/// Issue 14: `cap_add`, `pid: host` and the other host access run only on a
/// node whose admin granted them (`--allow-host-access`); without one the
/// deployer's apply is refused naming the flag, and nothing starts.
#[test]
fn a_deployer_gets_host_access_only_on_nodes_an_admin_granted_it() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let plain = c.node_names()[0].clone();
    let v: Value = c.cli_json(&["token", "create", "--name", "dep", "--role", "deployer"]);
    let deployer = v["token"].as_str().expect("a token").to_string();
    let svc = c.service_name("caps");
    let yaml = compose(&[&ServiceSpec::new(&svc, &c.image())
        .replicas(2)
        .extra("cap_add: [NET_ADMIN]")
        .extra("pid: host")]);
    let file = c.write_spec("caps.yaml", &yaml);

    let out = c.cli_with_token(&deployer, &["apply", "-f", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "the apply was allowed: {err}");
    for needle in ["caps.yaml:", ".cap_add", "`--allow-host-access cap_add`"] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    assert!(c.containers_of(&svc).unwrap().is_empty());

    // A node granting both: it says so in its facts, and both instances go
    // there, with the capability and the host's PID namespace.
    let granting = c.add_agent_with_args(&["--allow-host-access", "cap_add,pid"]);
    c.wait_nodes_ready(&[plain, granting.clone()]);
    let nodes: Value = c.cli_json(&["nodes"]);
    let facts = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == granting.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        facts["allowed_host_access"],
        serde_json::json!(["cap_add", "pid"])
    );
    let out = c.cli_with_token(&deployer, &["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
    for container in c.wait_service_running(&svc, 2, 1) {
        assert_eq!(container.must_label("io.convoy.node"), granting);
        let seen = docker(&[
            "inspect",
            "-f",
            "{{json .HostConfig.CapAdd}} {{.HostConfig.PidMode}}",
            &container.id,
        ])
        .unwrap();
        assert_eq!(seen.trim(), "[\"NET_ADMIN\"] host");
    }
    c.assert_healthy();
}

/// `convoyd dev --allow-bind DIR --allow-host-access KINDS` hands the grants
/// to its agent, whose node then reports them: a developer can bind a source
/// tree, or give a container a capability, on their machine.
#[test]
fn convoyd_dev_passes_allow_bind_to_its_agent() {
    skip_without_docker!();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let log_path = dir.path().join("convoyd.log");
    let log = File::create(&log_path).unwrap();
    let root = dir.path().join("src").to_str().unwrap().to_string();
    let node = format!("dev-bind-{}", std::process::id());
    let mut convoyd = Command::new(bin("convoyd"))
        .arg("dev")
        .arg("--data-dir")
        .arg(dir.path().join("dev"))
        .args(["--allow-bind", &format!("{root}//")])
        .args(["--allow-host-access", "cap_add,pid"])
        .arg("--api-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--agent-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--node-name")
        .arg(&node)
        .env("CONVOY_CONFIG", &config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let allowed = wait_until(
        "the dev node reports its allowed bind roots",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let out = output_within(
                Command::new(bin("convoy"))
                    .args(["nodes", "-o", "json"])
                    .env("CONVOY_CONFIG", &config)
                    .env_remove("CONVOY_ADDR")
                    .env_remove("CONVOY_TOKEN_FILE")
                    .env_remove("CONVOY_CA"),
                Duration::from_secs(20),
            )?;
            anyhow::ensure!(out.status.success(), "convoy nodes: {}", stderr(&out));
            let v: Value = serde_json::from_slice(&out.stdout)?;
            let me = v["nodes"]
                .as_array()
                .and_then(|nodes| nodes.iter().find(|n| n["name"] == node.as_str()))
                .ok_or_else(|| anyhow::anyhow!("no node {node} yet: {v}"))?;
            anyhow::ensure!(me["state"] == "ready", "node: {me}");
            Ok((
                me["allowed_bind_paths"].clone(),
                me["allowed_host_access"].clone(),
            ))
        },
    );
    signal(convoyd.id(), "TERM").unwrap();
    let stopped = wait_within(&mut convoyd, Duration::from_secs(40)).unwrap();
    assert_eq!(allowed.0, serde_json::json!([root]));
    assert_eq!(allowed.1, serde_json::json!(["cap_add", "pid"]));
    assert!(stopped.is_some(), "convoyd did not exit within 40 s");
}

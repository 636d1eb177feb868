//! Enrolment with join tokens: an agent with nothing but a token and the
//! CA's fingerprint makes its own key, gets a certificate naming its node,
//! takes the token's labels, and runs workloads. Tokens are used up, expire,
//! and a wrong fingerprint makes the agent refuse the coordinator.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use convoy_tests::spec::compose;
use convoy_tests::systemd::join_token;
use convoy_tests::{skip_without_docker, wait_until, Cluster, ServiceSpec};

/// Waits for an agent that must give up, and returns its log.
fn failed_join(c: &mut Cluster, node: &str) -> String {
    let status = wait_until(
        format!("agent {node} gives up"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            c.agent_exited(node)
                .ok_or_else(|| anyhow::anyhow!("still running"))
        },
    );
    assert!(!status.success(), "agent {node} exited with {status}");
    let nodes = c.try_nodes().unwrap();
    assert!(
        nodes.iter().all(|n| n.name != node),
        "{node} is listed: {nodes:#?}"
    );
    c.agent_log(node)
}

#[test]
fn agent_joins_with_a_token_takes_its_labels_and_runs_workloads() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let (token, fp) = join_token(&c, &["--ttl", "1h", "--labels", "role=gpu,zone=eu"]);
    let node = c.join_agent(&token, &fp);
    let nodes = c.wait_nodes_ready(std::slice::from_ref(&node));
    let me = nodes.iter().find(|n| n.name == node).unwrap();
    assert_eq!(
        me.labels.get("role").map(String::as_str),
        Some("gpu"),
        "{me:#?}"
    );
    assert_eq!(
        me.labels.get("zone").map(String::as_str),
        Some("eu"),
        "{me:#?}"
    );

    // The key was made here and is private; the certificate names the node.
    let pki = c.agent(&node).pki_dir.clone();
    let mode = std::fs::metadata(pki.join("agent.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let cert = std::fs::read_to_string(pki.join("agent.pem")).unwrap();
    assert!(cert.contains("BEGIN CERTIFICATE"));
    // The private key and the join token appear in no log.
    let key = std::fs::read_to_string(pki.join("agent.key")).unwrap();
    let key_body = key.lines().nth(1).unwrap().to_string();
    for log in [c.agent_log(&node), c.coordinator_log()] {
        assert!(!log.contains(&key_body), "a log holds the agent's key");
        assert!(!log.contains(&token), "a log holds the join token");
    }

    // Placement sees the token's labels.
    let svc = c.service_name("joined");
    let spec = ServiceSpec::new(&svc, &c.image())
        .replicas(1)
        .deploy("placement:")
        .deploy("  constraints: [\"node.labels.role == gpu\"]");
    let file = c.write_spec("joined.yaml", &compose(&[&spec]));
    c.apply(&file);
    let running = c.wait_service_running(&svc, 1, 1);
    assert_eq!(running[0].label("io.convoy.node"), Some(node.as_str()));

    // One use only: the same token cannot enrol a second host.
    let second = c.join_agent(&token, &fp);
    let log = failed_join(&mut c, &second);
    assert!(log.contains("used up"), "{log}");
    assert!(
        c.agent_exited(&node).is_none(),
        "the enrolled agent stopped"
    );
}

#[test]
fn wrong_ca_fingerprint_makes_the_agent_refuse_the_coordinator() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let (token, _fp) = join_token(&c, &[]);
    let wrong = format!("sha256:{}", "00".repeat(32));
    let node = c.join_agent(&token, &wrong);
    let log = failed_join(&mut c, &node);
    assert!(log.contains("did not present the CA"), "{log}");
    assert!(!c.agent(&node).pki_dir.join("agent.pem").exists());
    // The refusal happened before the token was used: it still works.
    let (_, fp) = join_token(&c, &[]);
    let ok = c.join_agent(&token, &fp);
    c.wait_nodes_ready(&[ok]);
}

#[test]
fn expired_join_token_is_refused() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let (token, fp) = join_token(&c, &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2500));
    let node = c.join_agent(&token, &fp);
    let log = failed_join(&mut c, &node);
    assert!(log.contains("expired"), "{log}");
}

/// `convoy nodes -o json` entry of one node, as raw JSON.
fn node_json(c: &Cluster, node: &str) -> serde_json::Value {
    let all: serde_json::Value = c.cli_json(&["nodes"]);
    all["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == node).cloned())
        .unwrap_or_else(|| panic!("{node} not in {all}"))
}

#[test]
fn certificate_renews_over_the_live_stream_without_dropping_it() {
    skip_without_docker!();
    // Joined agents get 24 s certificates: renewal is due after 16 s.
    let mut c = Cluster::start_with_env(&[("CONVOY_AGENT_CERT_TTL", "24s")]);
    let (token, fp) = join_token(&c, &[]);
    let node = c.join_agent(&token, &fp);
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let before = node_json(&c, &node);
    let since = before["connected_since_unix_ms"].as_i64().unwrap();
    let first_expiry = before["certificate_expires_unix_ms"].as_i64().unwrap();
    assert!(first_expiry > Cluster::now_unix_ms(), "{before}");
    let cert_path = c.agent(&node).pki_dir.join("agent.pem");
    let key_path = c.agent(&node).pki_dir.join("agent.key");
    let first_cert = std::fs::read(&cert_path).unwrap();
    let first_key = std::fs::read(&key_path).unwrap();

    // A deployment goes on while the certificate is renewed.
    let svc = c.service_name("renew");
    let file = c.write_spec(
        "renew.yaml",
        &compose(&[&ServiceSpec::new(&svc, &c.image()).replicas(2)]),
    );
    c.apply(&file);
    c.wait_service_running(&svc, 2, 1);

    wait_until(
        "the agent installs a renewed certificate",
        Duration::from_secs(40),
        Duration::from_millis(250),
        || {
            let now = std::fs::read(&cert_path)?;
            if now != first_cert {
                Ok(())
            } else {
                Err(anyhow::anyhow!("agent.pem is unchanged"))
            }
        },
    );
    // A new key too, still private.
    assert_ne!(std::fs::read(&key_path).unwrap(), first_key);
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Same stream: connected since the same moment; the coordinator knows
    // the new expiry.
    let after = node_json(&c, &node);
    assert_eq!(after["state"], "ready", "{after}");
    assert_eq!(
        after["connected_since_unix_ms"].as_i64().unwrap(),
        since,
        "{after}"
    );
    assert!(
        after["certificate_expires_unix_ms"].as_i64().unwrap() > first_expiry,
        "{after}"
    );

    // Past the first certificate's expiry, a restarted agent connects with
    // the renewed one and finds its containers running.
    let wait_ms = first_expiry + 1_000 - Cluster::now_unix_ms();
    if wait_ms > 0 {
        std::thread::sleep(Duration::from_millis(wait_ms as u64));
    }
    let exit = c.stop_agent(&node);
    assert!(exit.success(), "agent exited with {exit}");
    c.start_agent(&node);
    c.wait_nodes_ready(std::slice::from_ref(&node));
    c.wait_service_running(&svc, 2, 1);
    c.assert_healthy();
}

#[test]
fn join_token_for_one_node_name_refuses_a_csr_asking_for_another() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let (token, fp) = join_token(&c, &["--node", "someone-else", "--uses", "2"]);
    let node = c.join_agent(&token, &fp);
    let log = failed_join(&mut c, &node);
    assert!(
        log.contains(&format!("is for node `someone-else`, not `{node}`")),
        "{log}"
    );
    let audit: serde_json::Value = c.cli_json(&["audit"]);
    let refused =
        audit["entries"].as_array().unwrap().iter().any(|e| {
            e["action"] == "node.join" && e["target"] == node.as_str() && e["result"] != "ok"
        });
    assert!(refused, "the refused join is not audited: {audit}");
}

/// Issue 13: the `convoy-agent join` line printed by `token create --join`
/// lacked `--pki-dir`/`--data-dir` (so it could not run as printed) and put
/// the secret token on the command line. It now reads the token from a file
/// and names every directory; run with those paths moved into this test's
/// directory (and this cluster's agent port), it enrols a node.
#[test]
fn the_printed_join_line_runs_as_printed_and_holds_no_secret() {
    skip_without_docker!();
    let c = Cluster::start();
    let created: serde_json::Value = c.cli_json(&["token", "create", "--join"]);
    let token = created["token"].as_str().unwrap().to_string();
    let line = created["join_command"].as_str().unwrap().to_string();
    assert!(
        !line.contains(&token),
        "the join line holds the secret: {line}"
    );
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&words[..2], ["convoy-agent", "join"], "{line}");
    for flag in [
        "--token-file",
        "--pki-dir",
        "--data-dir",
        "--ca-fingerprint",
        "--coordinator",
    ] {
        assert!(words.contains(&flag), "{flag} missing from: {line}");
    }
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("join.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let node = format!("{}-printed", c.next_node_name());
    let moved = |flag: &str| -> String {
        match flag {
            "--token-file" => token_file.display().to_string(),
            "--pki-dir" => dir.path().join("pki").display().to_string(),
            "--data-dir" => dir.path().join("data").display().to_string(),
            "--coordinator" => c.agent_addr.to_string(),
            _ => unreachable!(),
        }
    };
    let mut args: Vec<String> = Vec::new();
    let mut i = 2;
    while i < words.len() {
        let w = words[i];
        args.push(w.to_string());
        if matches!(
            w,
            "--token-file" | "--pki-dir" | "--data-dir" | "--coordinator"
        ) {
            args.push(moved(w));
            i += 2;
        } else {
            i += 1;
        }
    }
    args.extend(["--node-name".to_string(), node.clone()]);
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut agent = std::process::Command::new(convoy_tests::bins::bin("convoy-agent"))
        .arg("join")
        .args(&args)
        .env_remove("CONVOY_JOIN_TOKEN")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            format!("node {node} joins with the printed line"),
            Duration::from_secs(60),
            Duration::from_millis(250),
            || {
                let nodes = c.try_nodes()?;
                anyhow::ensure!(
                    nodes.iter().any(|n| n.name == node && n.state == "ready"),
                    "nodes: {:?}",
                    nodes
                        .iter()
                        .map(|n| (&n.name, &n.state))
                        .collect::<Vec<_>>()
                );
                Ok(())
            },
        )
    }));
    let _ = agent.kill();
    let _ = agent.wait();
    if let Err(e) = joined {
        let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
        panic!("{e:?}\nagent log:\n{log}");
    }
}

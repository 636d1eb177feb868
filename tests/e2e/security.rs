//! Who may join: only agents whose certificate chains to this cluster's CA.

use std::time::Duration;

use convoy_tests::{skip_without_docker, wait_until, Cluster};

#[test]
fn agent_with_certificate_from_another_ca_is_refused() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    // Another coordinator's CA, asked for a certificate with a fresh name.
    let other = Cluster::start();
    let intruder = format!("{}-intruder", c.id);
    let pki = c.root().join("intruder-pki");
    std::fs::create_dir_all(&pki).unwrap();
    other.issue_cert(&intruder, &pki);
    drop(other);
    // It trusts the real coordinator (so the refusal is the coordinator's,
    // not the agent's), but its own certificate is from the other CA.
    std::fs::copy(c.data_dir.join("pki/ca.pem"), pki.join("ca.pem")).unwrap();

    c.add_agent_with_pki(&intruder, &pki);

    let said = wait_until(
        "the coordinator logs that it refused the intruder",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let log = c.coordinator_log().to_lowercase();
            log.lines()
                .find(|l| l.contains("refus") || l.contains("reject"))
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("convoyd's log says nothing of a refusal"))
        },
    );
    eprintln!("convoyd said: {said}");

    // It keeps trying; it must still not be let in.
    for _ in 0..8 {
        let nodes = c.try_nodes().unwrap();
        assert!(
            nodes.iter().all(|n| n.name != intruder),
            "the intruder is listed: {nodes:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let first = c.node_names()[0].clone();
    c.wait_nodes_ready(&[first]);
}

#[test]
fn cli_with_a_wrong_token_is_refused_and_changes_nothing() {
    let c = Cluster::start();
    let token = c.root().join("wrong.token");
    std::fs::write(&token, "not-the-admin-token\n").unwrap();
    let svc = c.service_name("nope");
    let file = c.write_spec(
        "nope.yaml",
        &format!("services:\n  {svc}:\n    image: convoy-testapp:latest\n"),
    );
    let out = convoy_tests::process::output_within(
        c.cli_command().args([
            "--token-file",
            token.to_str().unwrap(),
            "apply",
            "-f",
            file.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("token"),
        "the error does not say the token is wrong: {stderr}"
    );
    assert!(c.try_status().unwrap().iter().all(|s| s.name != svc));
}

#[test]
fn expired_agent_certificate_is_refused_at_the_handshake() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let node = format!("{}-expired", c.id);
    let pki = c.root().join("expired-pki");
    let out = std::process::Command::new(convoy_tests::bins::bin("convoyd"))
        .arg("issue-cert")
        .arg("--data-dir")
        .arg(&c.data_dir)
        .args(["--node", &node, "--ttl", "1s", "--out"])
        .arg(&pki)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(2500));
    c.add_agent_with_pki(&node, &pki);
    let said = wait_until(
        "the coordinator refuses the expired certificate",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            c.coordinator_log()
                .lines()
                .find(|l| l.contains("refused TLS connection") && l.contains("certificate expired"))
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("no refusal of an expired certificate yet"))
        },
    );
    eprintln!("convoyd said: {said}");
    for _ in 0..4 {
        let nodes = c.try_nodes().unwrap();
        assert!(nodes.iter().all(|n| n.name != node), "{nodes:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn garbage_on_the_tls_ports_is_refused_and_serving_goes_on() {
    skip_without_docker!();
    use std::io::{Read, Write};
    let mut c = Cluster::with_agents(1);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for addr in [c.agent_addr, c.api_addr] {
        for round in 0..20 {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // Random bytes, and one round that looks like a TLS record header.
            let mut junk: Vec<u8> = (0..(64 + round * 97))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            if round == 0 {
                junk[..5].copy_from_slice(&[0x16, 0x03, 0x01, 0xff, 0xff]);
            }
            let _ = s.write_all(&junk);
            let mut buf = [0u8; 256];
            // The server answers with an alert or closes; it never hangs on us.
            let _ = s.read(&mut buf);
        }
    }
    // Still serving: the CLI works and the agent stays connected.
    let names = c.node_names();
    c.wait_nodes_ready(&names);
    let log = c.coordinator_log();
    assert!(log.contains("refused TLS connection"), "{log}");
    c.assert_healthy();
}

/// SHA-256 fingerprint of the certificate a TLS server presents (openssl).
fn presented_cert(addr: std::net::SocketAddr) -> String {
    let script = format!(
        "openssl s_client -connect {addr} -servername coordinator.convoy </dev/null 2>/dev/null \
         | openssl x509 -noout -fingerprint -sha256"
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(text.contains("Fingerprint"), "openssl said: {text}");
    text
}

#[test]
fn coordinator_certificate_rotates_live_without_re_enrolling_agents() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let before = presented_cert(c.api_addr);
    assert_eq!(presented_cert(c.agent_addr), before);

    let out = std::process::Command::new(convoy_tests::bins::bin("convoyd"))
        .arg("rotate-cert")
        .arg("--data-dir")
        .arg(&c.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        "convoyd installs the rotated certificate",
        Duration::from_secs(15),
        Duration::from_millis(200),
        || {
            if c.coordinator_log().contains("server certificate reloaded") {
                Ok(())
            } else {
                Err(anyhow::anyhow!("not yet"))
            }
        },
    );
    let after = presented_cert(c.api_addr);
    assert_ne!(after, before, "the API still presents the old certificate");
    assert_eq!(presented_cert(c.agent_addr), after);

    // Same CA: the CLI and the agents go on with what they have.
    let node = c.node_names()[0].clone();
    c.try_nodes().unwrap();
    let exit = c.stop_agent(&node);
    assert!(exit.success(), "agent exited with {exit}");
    c.start_agent(&node);
    c.wait_nodes_ready(std::slice::from_ref(&node));
    c.assert_healthy();
}

#[test]
fn coordinator_refuses_to_start_with_a_world_readable_ca_key() {
    skip_without_docker!();
    use std::os::unix::fs::PermissionsExt;
    let mut c = Cluster::start();
    let exit = c.stop_coordinator();
    assert!(exit.success(), "convoyd exited with {exit}");
    let key = c.data_dir.join("pki/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(convoy_tests::bins::bin("convoyd"))
        .arg("serve")
        .arg("--data-dir")
        .arg(&c.data_dir)
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--agent-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "convoyd started with an open CA key");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by other users"), "{err}");
    assert!(err.contains("ca.key"), "{err}");
    // Fixed, it starts again.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    c.start_coordinator();
    c.try_nodes().unwrap();
}

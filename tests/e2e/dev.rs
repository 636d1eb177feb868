//! `convoyd dev`: a coordinator plus the `convoy-agent` binary beside it,
//! run as a child process with its own certificate (issue 13: `convoyd` no
//! longer links the agent).

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use convoy_tests::bins::bin;
use convoy_tests::cli::NodeList;
use convoy_tests::cluster::free_port;
use convoy_tests::process::{output_within, signal, wait_within};
use convoy_tests::{skip_without_docker, wait_until};

/// The pids of `pid`'s children (every thread's), from /proc.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Alive and not a zombie.
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn convoyd_dev_runs_the_agent_binary_as_a_child_and_stops_it_on_shutdown() {
    skip_without_docker!();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let config = dir.path().join("config.yaml");
    let log_path = dir.path().join("convoyd.log");
    let log = File::create(&log_path).unwrap();
    let node = format!("dev-e2e-{}", std::process::id());
    let mut convoyd = Command::new(bin("convoyd"))
        .arg("dev")
        .arg("--data-dir")
        .arg(&data)
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
    let pid = convoyd.id();
    let log_text = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    wait_until(
        "convoyd dev is ready",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let text = log_text(&log_path);
            anyhow::ensure!(text.contains("convoyd ready:"), "log so far:\n{text}");
            Ok(())
        },
    );

    // The agent is the convoy-agent binary, a child of convoyd.
    let agent = wait_until(
        "convoyd has a convoy-agent child",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let kids = children(pid);
            kids.iter()
                .copied()
                .find(|c| comm(*c) == "convoy-agent")
                .ok_or_else(|| anyhow::anyhow!("children: {kids:?}"))
        },
    );
    let cmdline = fs::read(format!("/proc/{agent}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(args.iter().any(|a| a == "run"), "{args:?}");
    assert!(args.iter().any(|a| a == "env=*"), "{args:?}");

    // Its node joins, and the CLI context written by dev reaches it with no flags.
    wait_until(
        "the dev node is ready, seen through the `dev` context",
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
            anyhow::ensure!(
                out.status.success(),
                "convoy nodes: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let nodes: NodeList = serde_json::from_slice(&out.stdout)?;
            let me = nodes
                .nodes
                .iter()
                .find(|n| n.name == node)
                .ok_or_else(|| anyhow::anyhow!("no node {node} yet"))?;
            anyhow::ensure!(me.state == "ready", "node state {}", me.state);
            Ok(())
        },
    );

    // SIGTERM to convoyd stops the agent too.
    signal(pid, "TERM").unwrap();
    let status = wait_within(&mut convoyd, Duration::from_secs(40)).unwrap();
    assert!(status.is_some(), "convoyd did not exit within 40 s");
    wait_until(
        "the agent child has exited",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            anyhow::ensure!(!running(agent), "convoy-agent {agent} still runs");
            Ok(())
        },
    );
    let text = log_text(&log_path);
    assert!(text.contains("dev agent started"), "{text}");
}

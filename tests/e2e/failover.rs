//! Several coordinators' addresses (issue 18): the CLI and the agent are
//! given a list, skip the addresses where nobody listens, and follow the
//! coordinator when it comes back on another address; when every address
//! is dead the CLI says why for each.

use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use convoy_tests::cluster::free_port;
use convoy_tests::process::output_within;
use convoy_tests::{skip_without_docker, wait_until, Cluster};

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `convoy --addr ADDRS -o json nodes`, timed.
fn nodes_via(c: &Cluster, addrs: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = output_within(
        c.cli_command()
            .args(["--addr", addrs, "-o", "json", "nodes"]),
        Duration::from_secs(60),
    )
    .unwrap();
    (out, started.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_cli_skips_a_dead_address_and_reaches_the_coordinator_behind_it() {
    // No Docker needed: no agent.
    let c = Cluster::start();
    let dead = loopback(free_port());
    let addrs = format!("{dead}, https://{}", c.api_addr);

    let (out, took) = nodes_via(&c, &addrs);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(nodes["nodes"].is_array(), "{nodes}");
    // Refused at once: no backoff before the live address.
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // The same list from the environment, on a command that writes.
    let out = output_within(
        c.cli_command()
            .env("CONVOY_ADDR", &addrs)
            .args(["token", "create", "--name", "via-list", "--role", "viewer"]),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let listed = c.cli(&["-o", "json", "token", "list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("via-list"),
        "the token created through the list is not listed: {}",
        String::from_utf8_lossy(&listed.stdout)
    );
}

#[test]
fn the_cli_given_only_dead_addresses_names_each_and_why() {
    let c = Cluster::start();
    let first = loopback(free_port());
    let second = loopback(free_port());
    let (out, took) = nodes_via(&c, &format!("{first},{second}"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    for addr in [first, second] {
        assert!(
            err.contains(&format!("https://{addr}: connection refused")),
            "stderr does not say why {addr} failed: {err}"
        );
    }
    assert!(
        err.contains("cannot reach the coordinator at any of its 2 addresses"),
        "{err}"
    );
    // Rounds with backoff for about 15 s, not one try and not forever.
    assert!(
        took > Duration::from_secs(8) && took < Duration::from_secs(25),
        "took {took:?}"
    );

    // An empty entry is refused before anything is dialed, naming the list.
    let list = format!("{first},,https://{}", c.api_addr);
    let (out, took) = nodes_via(&c, &list);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(&format!("`{list}`")), "{err}");
    assert!(err.contains("empty entry"), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn the_agent_and_the_cli_follow_the_coordinator_to_its_second_address() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let (api_a, agent_a) = (c.api_addr, c.agent_addr);
    let (api_b, agent_b) = (loopback(free_port()), loopback(free_port()));
    let api_list = format!("{api_a},{api_b}");

    // The agent is given A (by the harness) then B.
    let node = c.add_agent_with_args(&["--coordinator", &agent_b.to_string()]);
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let (out, _) = nodes_via(&c, &api_list);
    assert!(out.status.success(), "stderr: {}", stderr(&out));

    // The coordinator dies and comes back on B's addresses, as a standby
    // elsewhere would take over.
    c.kill_coordinator();
    c.api_addr = api_b;
    c.agent_addr = agent_b;
    c.start_coordinator();
    let restarted = Instant::now();

    let opened = format!("session open with the coordinator at {agent_b}");
    wait_until(
        format!("the agent opens a session with {agent_b}"),
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            anyhow::ensure!(c.agent_log(&node).contains(&opened), "not yet");
            Ok(())
        },
    );
    // The backoff after rounds lost while no coordinator ran is at most a
    // few seconds at this point, not 30.
    assert!(
        restarted.elapsed() < Duration::from_secs(10),
        "took {:?}",
        restarted.elapsed()
    );
    assert!(
        c.agent_log(&node)
            .contains(&format!("cannot reach the coordinator at {agent_a}")),
        "the agent did not try A first: {}",
        c.agent_log(&node)
    );
    c.wait_nodes_ready(std::slice::from_ref(&node));

    // The CLI given A then B reaches B.
    let (out, took) = nodes_via(&c, &api_list);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes["nodes"][0]["name"], node.as_str(), "{nodes}");
    assert_eq!(nodes["nodes"][0]["state"], "ready", "{nodes}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    c.assert_healthy();
}

//! Node loss by silence: an agent whose process is frozen (SIGSTOP: its TCP
//! connection stays open, no FIN) stops heartbeating and its node is marked
//! lost within 3 s (2.5 s of silence by default); it is ready again once it resumes. A busy
//! host is not marked lost.

use std::process::Command;
use std::time::{Duration, Instant};

use convoy_tests::{skip_without_docker, wait_until, Cluster};

fn state_of(c: &Cluster, node: &str) -> String {
    c.try_nodes()
        .unwrap()
        .into_iter()
        .find(|n| n.name == node)
        .map(|n| n.state)
        .unwrap_or_default()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid} failed");
}

#[test]
fn frozen_agent_is_marked_lost_within_the_bound_and_ready_after_it_resumes() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let names = c.node_names();
    let frozen = names[1].clone();
    c.wait_nodes_ready(&names);
    let pid = c.agent_pid(&frozen).unwrap();

    signal(pid, "-STOP");
    let stopped = Instant::now();
    wait_until(
        format!("{frozen} is marked lost"),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || match state_of(&c, &frozen).as_str() {
            "lost" => Ok(()),
            other => Err(anyhow::anyhow!("state {other}")),
        },
    );
    let took = stopped.elapsed();
    // 2.5 s of silence by default, checked 10 times a second, plus the CLI's
    // own time: well under 5 s.
    assert!(took < Duration::from_secs(5), "lost only after {took:?}");
    // The other node is unaffected.
    assert_eq!(state_of(&c, &names[0]), "ready");

    signal(pid, "-CONT");
    wait_until(
        format!("{frozen} is ready again"),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || match state_of(&c, &frozen).as_str() {
            "ready" => Ok(()),
            other => Err(anyhow::anyhow!("state {other}")),
        },
    );
    assert!(c.coordinator_log().contains("node lost: no heartbeat"));
    assert!(c.coordinator_log().contains("node ready again"));
    c.assert_healthy();
}

#[test]
fn busy_host_is_not_marked_lost() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let node = c.node_names()[0].clone();
    c.wait_nodes_ready(std::slice::from_ref(&node));
    // Load both cores for a while: the agent is slow, not gone.
    let mut burners: Vec<_> = (0..4)
        .map(|_| {
            Command::new("sh")
                .args([
                    "-c",
                    "end=$(($(date +%s)+8)); while [ $(date +%s) -lt $end ]; do :; done",
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(8);
    let mut checks = 0;
    while Instant::now() < until {
        assert_eq!(state_of(&c, &node), "ready", "marked lost while only busy");
        checks += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    for b in &mut burners {
        let _ = b.wait();
    }
    assert!(checks > 5);
    assert!(
        !c.coordinator_log().contains("node lost"),
        "{}",
        c.coordinator_log()
    );
}

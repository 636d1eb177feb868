//! `convoy node remove`: the node's stream ends at once, its certificate is
//! refused from then on (even across a coordinator restart), and its
//! instances are reported lost.

use std::time::Duration;

use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, wait_until, Cluster, ServiceSpec};

fn node_state(c: &Cluster, node: &str) -> anyhow::Result<String> {
    c.try_nodes()?
        .into_iter()
        .find(|n| n.name == node)
        .map(|n| n.state)
        .ok_or_else(|| anyhow::anyhow!("node {node} is not listed"))
}

fn refusals_of_revoked(log: &str) -> usize {
    log.lines()
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("refused tls connection") && l.contains("revoked")
        })
        .count()
}

#[test]
fn removed_node_is_cut_off_refused_after_and_its_instances_are_lost() {
    skip_without_docker!();
    // Two agents enrolled with one two-use join token.
    let mut c = Cluster::start();
    let created: serde_json::Value = c.cli_json(&["token", "create", "--join", "--uses", "2"]);
    let token = created["token"].as_str().unwrap().to_string();
    let fp = created["ca_fingerprint"].as_str().unwrap().to_string();
    let keep = c.join_agent(&token, &fp);
    let gone = c.join_agent(&token, &fp);
    c.wait_nodes_ready(&[keep.clone(), gone.clone()]);
    let svc = c.service_name("revoke");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2);
    let file = c.write_spec("revoke.yaml", &compose(&[&spec]));
    c.apply(&file);
    c.wait_service_running(&svc, 2, 1);

    let out = c.cli(&["-o", "json", "node", "remove", &gone]);
    assert!(
        out.status.success(),
        "node remove failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let removed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(removed["node"], gone.as_str(), "{removed}");
    assert_eq!(removed["lost_instances"], 1, "{removed}");
    assert_eq!(removed["revoked_certificates"], 1, "{removed}");

    // Listed as removed; its instance was rescheduled at once onto the
    // other node (issue 19), where the other one still runs. (On this
    // test's shared engine the moved copy starts only once the cut-off
    // agent's container, same name, is gone.)
    assert_eq!(node_state(&c, &gone).unwrap(), "removed");
    let status = c.service_status(&svc);
    assert_eq!(status.instances.len(), 2, "{}", status.describe());
    assert!(
        status.instances.iter().all(|i| i.node == keep),
        "{}",
        status.describe()
    );
    assert!(
        status.instances.iter().any(|i| i.state == "running"),
        "{}",
        status.describe()
    );

    // Its agent was cut off and every attempt to come back is refused at
    // the TLS handshake as revoked.
    wait_until(
        "convoyd refuses the removed node's certificate as revoked",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || match refusals_of_revoked(&c.coordinator_log()) {
            0 => Err(anyhow::anyhow!("no refusal of a revoked certificate yet")),
            n => Ok(n),
        },
    );
    for _ in 0..6 {
        assert_eq!(node_state(&c, &gone).unwrap(), "removed");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Revocation is durable: after a restart the node is still refused.
    let before = refusals_of_revoked(&c.coordinator_log());
    let exit = c.stop_coordinator();
    assert!(exit.success(), "convoyd exited with {exit}");
    c.start_coordinator();
    c.wait_nodes_ready(std::slice::from_ref(&keep));
    wait_until(
        "convoyd still refuses the removed node after a restart",
        Duration::from_secs(40),
        Duration::from_millis(250),
        || {
            let now = refusals_of_revoked(&c.coordinator_log());
            if now > before {
                Ok(now)
            } else {
                Err(anyhow::anyhow!("no new refusal since the restart"))
            }
        },
    );
    assert_eq!(node_state(&c, &gone).unwrap(), "removed");

    // An unknown node is a clear error.
    let out = c.cli(&["node", "remove", "no-such-node"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node `no-such-node` not found"), "{err}");
    c.assert_healthy();
}

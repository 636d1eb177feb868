//! What `status`, `verify` and `events` print: a table of instances per
//! service with the reason for any trouble, one line per check, one line
//! per event.

use std::fmt::Write as _;

use convoy_api::clock::rfc3339_ms;
use convoy_api::views::{health_word, workload_state, workload_state_word};
use convoy_proto as pb;
use pb::WorkloadState;

use super::cells::{format_age, or_dash, qualified, table};

/// One line per check, then a verdict.
pub fn verify_table(r: &pb::VerifyResponse) -> String {
    if r.results.is_empty() {
        return "nothing to verify: no instances\n".to_owned();
    }
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|v| {
            vec![
                v.instance.clone(),
                or_dash(&v.node).to_owned(),
                or_dash(&v.probe).to_owned(),
                if v.healthy { "ok" } else { "FAIL" }.to_owned(),
                format!("{}ms", v.duration_ms),
                or_dash(v.output.trim().lines().next().unwrap_or_default()).to_owned(),
            ]
        })
        .collect();
    let mut out = table(
        &["INSTANCE", "NODE", "CHECK", "RESULT", "TIME", "OUTPUT"],
        &rows,
    );
    let failed = r.results.iter().filter(|v| !v.healthy).count();
    if failed == 0 {
        let _ = writeln!(out, "healthy: all {} checks passed", r.results.len());
    } else {
        let _ = writeln!(
            out,
            "unhealthy: {failed} of {} checks failed",
            r.results.len()
        );
    }
    out
}

/// Where several coordinators share an etcd store: who leads and how the
/// store is, then a blank line. Nothing for one coordinator on sled.
pub fn control_plane_lines(plane: &pb::ControlPlane) -> String {
    let store = plane.store.clone().unwrap_or_default();
    if store.backend != "etcd" && plane.coordinators.len() <= 1 {
        return String::new();
    }
    let mut out = String::new();
    let coordinators: Vec<String> = plane
        .coordinators
        .iter()
        .map(|c| {
            if c.leader {
                format!("{} (leader, {})", c.id, c.api)
            } else {
                c.id.clone()
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "coordinators: {}{}",
        if coordinators.is_empty() {
            "-".to_string()
        } else {
            coordinators.join(", ")
        },
        if plane.leader.is_empty() {
            "  NO LEADER"
        } else {
            ""
        }
    );
    let health = if store.healthy {
        "healthy".to_string()
    } else {
        format!("UNHEALTHY: {}", store.error)
    };
    let _ = writeln!(
        out,
        "store: {} at {}: {health}",
        or_dash(&store.backend),
        or_dash(&store.location)
    );
    for m in &store.members {
        let _ = writeln!(out, "  {m}");
    }
    out.push('\n');
    out
}

/// `TIME  KIND  WHERE  MESSAGE`, one event per line.
pub fn event_line(ev: &pb::ClusterEvent) -> String {
    let time = rfc3339_ms(ev.unix_ms);
    let time = time.get(11..23).unwrap_or(&time);
    format!("{time}  {:<16}  {}\n", ev.kind, ev.message)
}

pub fn status_table(response: &pb::StatusResponse, now_ms: i64) -> String {
    let plane = response
        .control_plane
        .as_ref()
        .map(control_plane_lines)
        .unwrap_or_default();
    if response.services.is_empty() {
        return format!("{plane}no services\n");
    }
    let mut out = plane;
    for (i, service) in response.services.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let health = if service.has_checks {
            format!("  {}/{} healthy", service.healthy, service.desired)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{}  rev {}  {}/{} running{health}  image {}",
            qualified(&service.env, &service.name),
            service.revision,
            service.running,
            service.desired,
            or_dash(&service.image)
        );
        if let Some(swarm) = &service.swarm {
            out.push_str(&swarm_line(swarm));
        }
        let rows: Vec<Vec<String>> = service
            .instances
            .iter()
            .map(|instance| {
                vec![
                    instance.id.clone(),
                    or_dash(&instance.node).to_owned(),
                    instance.revision.to_string(),
                    workload_state_word(instance.state).to_owned(),
                    match health_word(instance.health) {
                        "none" => "-".to_owned(),
                        word => word.to_owned(),
                    },
                    instance.restarts.to_string(),
                    age_or_reason(instance, now_ms),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "INSTANCE",
                "NODE",
                "REV",
                "STATE",
                "HEALTH",
                "RESTARTS",
                "AGE/REASON",
            ],
            &rows,
        ));
    }
    out
}

/// The line under a Swarm service's header: its Swarm name and cluster,
/// the driver (and whether it is reachable) and Swarm's update state.
fn swarm_line(swarm: &pb::SwarmServiceInfo) -> String {
    let driver = match (swarm.driver.as_str(), swarm.driver_connected) {
        ("", _) => "no driver".to_owned(),
        (d, true) => format!("driven by {d}"),
        (d, false) => format!(
            "driver {d} UNREACHABLE: Swarm keeps the service running; tasks as last reported"
        ),
    };
    let update = match swarm.update_state.as_str() {
        "" | "completed" => String::new(),
        state if swarm.update_message.is_empty() => format!("  update {state}"),
        state => format!("  update {state}: {}", swarm.update_message),
    };
    format!(
        "  swarm service {} on cluster {}, {driver}{update}\n",
        or_dash(&swarm.service_name),
        or_dash(&swarm.cluster)
    )
}

fn age_or_reason(instance: &pb::InstanceStatus, now_ms: i64) -> String {
    let reason = instance.reason.trim();
    if !instance.node.is_empty() && !instance.node_connected {
        return if reason.is_empty() {
            "(node down)".to_owned()
        } else {
            format!("(node down) {reason}")
        };
    }
    let explains = matches!(
        workload_state(instance.state),
        WorkloadState::Failed | WorkloadState::Exited | WorkloadState::Pending
    );
    if explains && !reason.is_empty() {
        return reason.to_owned();
    }
    if instance.health == pb::Health::Unhealthy as i32 {
        let output = instance.health_output.trim();
        let first = output.lines().next().unwrap_or_default();
        return format!("{}: {}", or_dash(&instance.failing_probe), or_dash(first));
    }
    if instance.updated_unix_ms > 0 {
        format_age(now_ms - instance.updated_unix_ms)
    } else {
        "-".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use convoy_api::views::StatusJson;
    use serde_json::json;

    use super::super::json;
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn instance(
        index: u32,
        node: &str,
        connected: bool,
        state: WorkloadState,
        reason: &str,
    ) -> pb::InstanceStatus {
        pb::InstanceStatus {
            id: format!("default/hello/{index}"),
            index,
            node: node.into(),
            node_connected: connected,
            revision: 2,
            state: state as i32,
            reason: reason.into(),
            restarts: index - 1,
            container_id: format!("c{index}"),
            container_name: format!("convoy-default-hello-{index}-r2"),
            updated_unix_ms: NOW - 3 * 60_000,
            ..Default::default()
        }
    }

    fn status_response() -> pb::StatusResponse {
        pb::StatusResponse {
            services: vec![pb::ServiceStatus {
                name: "hello".into(),
                env: "default".into(),
                revision: 2,
                desired: 4,
                running: 1,
                image: "convoy-testapp:latest".into(),
                updated_unix_ms: NOW,
                healthy: 0,
                has_checks: false,
                rollout: None,
                deploy_labels: [("team".to_string(), "web".to_string())].into(),
                swarm: None,
                instances: vec![
                    instance(1, "node-a", true, WorkloadState::Running, ""),
                    instance(
                        2,
                        "node-a",
                        true,
                        WorkloadState::Failed,
                        "image `x:1` not found on node `node-a`",
                    ),
                    instance(3, "node-b", false, WorkloadState::Running, ""),
                    instance(4, "", false, WorkloadState::Pending, "no node has room"),
                ],
            }],
            control_plane: None,
        }
    }

    #[test]
    fn a_swarm_service_says_its_cluster_driver_and_update_state() {
        let mut response = status_response();
        response.services[0].swarm = Some(pb::SwarmServiceInfo {
            cluster: "prod".into(),
            driver: "mgr-1".into(),
            driver_connected: false,
            update_state: "rollback_completed".into(),
            update_message: "update rolled back due to failure".into(),
            service_name: "default_hello".into(),
        });
        let out = status_table(&response, NOW);
        assert!(
            out.contains(
                "  swarm service default_hello on cluster prod, driver mgr-1 UNREACHABLE: Swarm \
                 keeps the service running; tasks as last reported  update rollback_completed: \
                 update rolled back due to failure\n"
            ),
            "{out}"
        );
        response.services[0].swarm = Some(pb::SwarmServiceInfo {
            cluster: "prod".into(),
            driver: "mgr-1".into(),
            driver_connected: true,
            update_state: "completed".into(),
            service_name: "default_hello".into(),
            ..Default::default()
        });
        let out = status_table(&response, NOW);
        assert!(
            out.contains("  swarm service default_hello on cluster prod, driven by mgr-1\n"),
            "{out}"
        );
    }

    #[test]
    fn status_table_has_a_header_per_service_and_reasons_for_trouble() {
        assert_eq!(
            status_table(&status_response(), NOW),
            "hello  rev 2  1/4 running  image convoy-testapp:latest\n\
             INSTANCE          NODE     REV   STATE     HEALTH   RESTARTS   AGE/REASON\n\
             default/hello/1   node-a   2     running   -        0          3m\n\
             default/hello/2   node-a   2     failed    -        1          image `x:1` not found on node `node-a`\n\
             default/hello/3   node-b   2     running   -        2          (node down)\n\
             default/hello/4   -        2     pending   -        3          no node has room\n"
        );
    }

    #[test]
    fn status_of_nothing_says_so() {
        let empty = pb::StatusResponse {
            services: vec![],
            control_plane: None,
        };
        assert_eq!(status_table(&empty, NOW), "no services\n");
        assert_eq!(
            json(&StatusJson::from(&empty)),
            "{\n  \"services\": []\n}\n"
        );
    }

    #[test]
    fn control_plane_shows_only_for_several_coordinators_or_etcd() {
        let alone = pb::ControlPlane {
            coordinators: vec![pb::CoordinatorInfo {
                id: "c1".into(),
                leader: true,
                ..Default::default()
            }],
            leader: "c1".into(),
            store: Some(pb::StoreHealth {
                backend: "sled".into(),
                location: "/var/lib/convoy/store".into(),
                healthy: true,
                ..Default::default()
            }),
        };
        assert_eq!(control_plane_lines(&alone), "");
        let three = pb::ControlPlane {
            coordinators: ["c1", "c2", "c3"]
                .iter()
                .map(|id| pb::CoordinatorInfo {
                    id: id.to_string(),
                    api: format!("https://{id}:7400"),
                    leader: *id == "c2",
                    ..Default::default()
                })
                .collect(),
            leader: "c2".into(),
            store: Some(pb::StoreHealth {
                backend: "etcd".into(),
                location: "http://e1:2379,http://e2:2379".into(),
                healthy: false,
                members: vec!["e1 at http://e1:2379: unreachable (refused)".into()],
                error: "1 of 2 members unreachable".into(),
            }),
        };
        let text = control_plane_lines(&three);
        assert_eq!(
            text,
            "coordinators: c1, c2 (leader, https://c2:7400), c3\n\
             store: etcd at http://e1:2379,http://e2:2379: UNHEALTHY: 1 of 2 members unreachable\n  \
             e1 at http://e1:2379: unreachable (refused)\n\n"
        );
        let empty = pb::StatusResponse {
            services: vec![],
            control_plane: Some(three),
        };
        assert!(status_table(&empty, NOW).ends_with("\n\nno services\n"));
        assert!(json(&StatusJson::from(&empty)).contains("\"leader\": \"c2\""));
    }

    #[test]
    fn status_json_uses_contract_names_and_lowercase_states() {
        let value = serde_json::to_value(StatusJson::from(&status_response())).unwrap();
        let service = &value["services"][0];
        assert_eq!(service["name"], "hello");
        assert_eq!(service["env"], "default");
        assert_eq!(service["revision"], 2);
        assert_eq!(service["desired"], 4);
        assert_eq!(service["running"], 1);
        assert_eq!(service["image"], "convoy-testapp:latest");
        assert_eq!(
            service["instances"][1],
            json!({
                "id": "default/hello/2",
                "index": 2,
                "node": "node-a",
                "node_connected": true,
                "revision": 2,
                "state": "failed",
                "reason": "image `x:1` not found on node `node-a`",
                "restarts": 1,
                "container_id": "c2",
                "container_name": "convoy-default-hello-2-r2",
                "health": "none",
                "health_output": "",
                "failing_probe": "",
            })
        );
        assert_eq!(service["healthy"], 0);
        assert_eq!(service["has_checks"], false);
        assert_eq!(service["rollout"], serde_json::Value::Null);
        assert_eq!(service["deploy_labels"], json!({"team": "web"}));
        assert_eq!(service.as_object().unwrap().len(), 11);
    }
}

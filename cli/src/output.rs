//! What the commands print: kubectl-style tables for people and the JSON
//! documents of INTERFACES.md for scripts, both built from the proto answers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use convoy_proto as pb;
use pb::{ChangeAction, WorkloadState};
use serde::Serialize;

pub use convoy_api::clock::rfc3339_ms;
pub use convoy_api::env::DEFAULT_ENV;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// One JSON document and a newline.
pub fn json<T: Serialize>(value: &T) -> String {
    // Plain structs of strings and numbers: serialising cannot fail.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

pub use convoy_api::views::*;

// ---- tables ----

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

/// `TIME  KIND  WHERE  MESSAGE`, one event per line.
pub fn event_line(ev: &pb::ClusterEvent) -> String {
    let time = rfc3339_ms(ev.unix_ms);
    let time = time.get(11..23).unwrap_or(&time);
    format!("{time}  {:<16}  {}\n", ev.kind, ev.message)
}

/// `warning: ...` lines, for stderr.
pub fn apply_warnings(response: &pb::ApplyResponse) -> String {
    response
        .warnings
        .iter()
        .map(|w| format!("warning: {w}\n"))
        .collect()
}

pub fn apply_table(response: &pb::ApplyResponse) -> String {
    let mut out = String::new();
    if response.services.is_empty() {
        out.push_str("no services in the spec\n");
    }
    for change in &response.services {
        let name = qualified(&change.env, &change.service);
        let summary = service_change_summary(change, response.dry_run);
        let _ = writeln!(out, "service {name}: {summary}");
        for instance in &change.instances {
            let action = change_action(instance.action);
            let sign = match action {
                ChangeAction::Create => '+',
                ChangeAction::Replace => '~',
                ChangeAction::Remove => '-',
                ChangeAction::Unchanged => '=',
                ChangeAction::Pending => '?',
                ChangeAction::Update | ChangeAction::Unspecified => ' ',
            };
            let place = if action == ChangeAction::Pending && instance.node.is_empty() {
                " (no node can take it yet)".to_owned()
            } else if instance.node.is_empty() {
                String::new()
            } else {
                format!(" on {}", instance.node)
            };
            let _ = writeln!(out, "  {sign} {}{place}", instance.instance_id);
        }
        if response.dry_run && !change.diff.is_empty() {
            for line in change.diff.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    if response.dry_run {
        out.push_str(&per_node_summary(response));
        out.push_str("dry run: nothing was stored\n");
    }
    out
}

/// `node N: 2 to create, 1 to replace, ...`, one line per node.
fn per_node_summary(response: &pb::ApplyResponse) -> String {
    let mut per_node: BTreeMap<&str, BTreeMap<&'static str, usize>> = BTreeMap::new();
    for change in &response.services {
        for i in &change.instances {
            let word = match change_action(i.action) {
                ChangeAction::Create => "to create",
                ChangeAction::Replace => "to replace",
                ChangeAction::Remove => "to remove",
                ChangeAction::Unchanged => "unchanged",
                ChangeAction::Pending => "pending",
                ChangeAction::Update | ChangeAction::Unspecified => continue,
            };
            let node = if i.node.is_empty() {
                "(none)"
            } else {
                i.node.as_str()
            };
            *per_node.entry(node).or_default().entry(word).or_default() += 1;
        }
    }
    let mut out = String::new();
    for (node, counts) in per_node {
        let parts: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
        let _ = writeln!(out, "node {node}: {}", parts.join(", "));
    }
    out
}

fn service_change_summary(change: &pb::ServiceChange, dry_run: bool) -> String {
    let count = |wanted: fn(ChangeAction) -> bool| {
        change
            .instances
            .iter()
            .filter(|i| wanted(change_action(i.action)))
            .count()
    };
    let verb = |done: &str, planned: &str| {
        if dry_run {
            format!("would {planned}")
        } else {
            done.to_owned()
        }
    };
    match change_action(change.action) {
        ChangeAction::Create => {
            let n = count(|a| a != ChangeAction::Remove);
            format!(
                "{} revision {} ({})",
                verb("created", "create"),
                change.revision,
                plural(n, "instance")
            )
        }
        ChangeAction::Update => {
            let fields = if change.changed_fields.is_empty() {
                String::new()
            } else {
                format!(" ({})", change.changed_fields.join(", "))
            };
            format!(
                "{} revision {} -> {}{fields}",
                verb("updated", "update"),
                change.previous_revision,
                change.revision
            )
        }
        ChangeAction::Unchanged => format!("unchanged (revision {})", change.revision),
        ChangeAction::Remove => {
            let n = count(|a| a == ChangeAction::Remove);
            format!(
                "{} ({} removed)",
                verb("removed", "remove"),
                plural(n, "instance")
            )
        }
        ChangeAction::Replace | ChangeAction::Pending | ChangeAction::Unspecified => {
            format!("revision {}", change.revision)
        }
    }
}

pub fn status_table(response: &pb::StatusResponse, now_ms: i64) -> String {
    if response.services.is_empty() {
        return "no services\n".to_owned();
    }
    let mut out = String::new();
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

pub fn nodes_table(response: &pb::ListNodesResponse, now_ms: i64) -> String {
    if response.nodes.is_empty() {
        return "no nodes\n".to_owned();
    }
    let rows: Vec<Vec<String>> = response
        .nodes
        .iter()
        .map(|node| {
            let facts = node.facts.clone().unwrap_or_default();
            let docker = match (&node.facts, facts.docker_version.as_str()) {
                (None, _) => "-".to_owned(),
                (Some(_), "") => "unreachable".to_owned(),
                (Some(_), version) => version.to_owned(),
            };
            vec![
                node.name.clone(),
                node_state_word(node.state).to_owned(),
                or_dash(&facts.hostname).to_owned(),
                or_dash(&facts.os).to_owned(),
                or_dash(&facts.kernel).to_owned(),
                if facts.cpus == 0 {
                    "-".to_owned()
                } else {
                    facts.cpus.to_string()
                },
                format_gib(facts.memory_bytes),
                docker,
                ago(node.connected_since_unix_ms, now_ms, "-"),
                ago(node.last_heartbeat_unix_ms, now_ms, "never"),
                node.workloads.to_string(),
                expires_in(node.certificate_expires_unix_ms, now_ms),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATE",
            "HOSTNAME",
            "OS",
            "KERNEL",
            "CPUS",
            "MEMORY",
            "DOCKER",
            "CONNECTED",
            "HEARTBEAT",
            "WORKLOADS",
            "CERT EXPIRES",
        ],
        &rows,
    )
}

#[derive(Debug, Serialize, PartialEq)]
pub struct NodeRemovedJson {
    pub node: String,
    pub lost_instances: u32,
    pub revoked_certificates: u32,
}

impl NodeRemovedJson {
    pub fn new(node: &str, response: &pb::RemoveNodeResponse) -> Self {
        let pb::RemoveNodeResponse {
            lost_instances,
            revoked_certificates,
        } = response;
        Self {
            node: node.to_owned(),
            lost_instances: *lost_instances,
            revoked_certificates: *revoked_certificates,
        }
    }
}

pub fn node_removed_line(removed: &NodeRemovedJson) -> String {
    format!(
        "removed node {}: {} revoked, {} lost\n",
        removed.node,
        plural(removed.revoked_certificates as usize, "certificate"),
        plural(removed.lost_instances as usize, "instance")
    )
}

pub fn delete_line(deleted: &DeleteJson) -> String {
    format!(
        "deleted service {} ({} removed)\n",
        qualified(&deleted.env, &deleted.service),
        plural(deleted.removed_instances as usize, "instance")
    )
}

/// `NAME`, or `ENV/NAME` outside the default env.
fn qualified(env: &str, name: &str) -> String {
    if env.is_empty() || env == DEFAULT_ENV {
        name.to_owned()
    } else {
        format!("{env}/{name}")
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// A duration as kubectl shows ages: `45s`, `3m`, `5h`, `2d`.
pub fn format_age(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 60 * 60 => format!("{}m", s / 60),
        s if s < 24 * 60 * 60 => format!("{}h", s / (60 * 60)),
        s => format!("{}d", s / (24 * 60 * 60)),
    }
}

/// `3m ago` for a timestamp, `unset` when it is zero.
fn ago(unix_ms: i64, now_ms: i64, unset: &str) -> String {
    if unix_ms <= 0 {
        unset.to_owned()
    } else {
        format!("{} ago", format_age(now_ms - unix_ms))
    }
}

/// `in 23h` for a future timestamp, `expired` for a past one.
fn expires_in(unix_ms: i64, now_ms: i64) -> String {
    if unix_ms <= 0 {
        "-".to_owned()
    } else if unix_ms <= now_ms {
        "expired".to_owned()
    } else {
        format!("in {}", format_age(unix_ms - now_ms))
    }
}

fn format_gib(bytes: u64) -> String {
    if bytes == 0 {
        return "-".to_owned();
    }
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Left-aligned columns three spaces apart; the last one is not padded.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count() + 3;
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use pb::NodeState;

    const NOW: i64 = 1_700_000_000_000;

    fn apply_response(dry_run: bool) -> pb::ApplyResponse {
        pb::ApplyResponse {
            dry_run,
            warnings: vec!["service `hello` has no health check".into()],
            services: vec![
                pb::ServiceChange {
                    service: "hello".into(),
                    env: "default".into(),
                    action: ChangeAction::Create as i32,
                    revision: 1,
                    previous_revision: 0,
                    changed_fields: vec![],
                    diff: String::new(),
                    instances: vec![
                        pb::InstanceChange {
                            instance_id: "default/hello/1".into(),
                            node: "node-a".into(),
                            action: ChangeAction::Create as i32,
                        },
                        pb::InstanceChange {
                            instance_id: "default/hello/2".into(),
                            node: String::new(),
                            action: ChangeAction::Pending as i32,
                        },
                    ],
                },
                pb::ServiceChange {
                    service: "web".into(),
                    env: "default".into(),
                    action: ChangeAction::Update as i32,
                    revision: 2,
                    previous_revision: 1,
                    changed_fields: vec!["image".into(), "environment".into()],
                    diff: String::new(),
                    instances: vec![
                        pb::InstanceChange {
                            instance_id: "default/web/1".into(),
                            node: "node-a".into(),
                            action: ChangeAction::Replace as i32,
                        },
                        pb::InstanceChange {
                            instance_id: "default/web/2".into(),
                            node: "node-b".into(),
                            action: ChangeAction::Remove as i32,
                        },
                    ],
                },
                pb::ServiceChange {
                    service: "db".into(),
                    env: "staging".into(),
                    action: ChangeAction::Unchanged as i32,
                    revision: 2,
                    previous_revision: 2,
                    changed_fields: vec![],
                    diff: String::new(),
                    instances: vec![pb::InstanceChange {
                        instance_id: "staging/db/1".into(),
                        node: "node-b".into(),
                        action: ChangeAction::Unchanged as i32,
                    }],
                },
            ],
        }
    }

    #[test]
    fn apply_table_shows_each_service_and_instance_change() {
        assert_eq!(
            apply_table(&apply_response(false)),
            "service hello: created revision 1 (2 instances)\n\
             \x20 + default/hello/1 on node-a\n\
             \x20 ? default/hello/2 (no node can take it yet)\n\
             service web: updated revision 1 -> 2 (image, environment)\n\
             \x20 ~ default/web/1 on node-a\n\
             \x20 - default/web/2 on node-b\n\
             service staging/db: unchanged (revision 2)\n\
             \x20 = staging/db/1 on node-b\n"
        );
    }

    #[test]
    fn dry_run_says_nothing_was_stored() {
        let text = apply_table(&apply_response(true));
        assert!(text.starts_with("service hello: would create revision 1 (2 instances)\n"));
        assert!(text.contains("service web: would update revision 1 -> 2 (image, environment)\n"));
        assert!(text.contains("\nnode node-a: "), "{text}");
        assert!(text.ends_with("dry run: nothing was stored\n"));
    }

    #[test]
    fn apply_warnings_are_prefixed_lines() {
        assert_eq!(
            apply_warnings(&apply_response(false)),
            "warning: service `hello` has no health check\n"
        );
    }

    #[test]
    fn apply_json_uses_contract_names_and_lowercase_actions() {
        let value = serde_json::to_value(ApplyJson::from(&apply_response(true))).unwrap();
        assert_eq!(value["dry_run"], json!(true));
        assert_eq!(
            value["warnings"],
            json!(["service `hello` has no health check"])
        );
        assert_eq!(
            value["services"][1],
            json!({
                "service": "web",
                "env": "default",
                "action": "update",
                "revision": 2,
                "previous_revision": 1,
                "changed_fields": ["image", "environment"],
                "diff": "",
                "instances": [
                    {"instance_id": "default/web/1", "node": "node-a", "action": "replace"},
                    {"instance_id": "default/web/2", "node": "node-b", "action": "remove"},
                ],
            })
        );
        assert_eq!(value["services"][0]["instances"][1]["action"], "pending");
        assert_eq!(value["services"][2]["action"], "unchanged");
    }

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
        }
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
        let empty = pb::StatusResponse { services: vec![] };
        assert_eq!(status_table(&empty, NOW), "no services\n");
        assert_eq!(
            json(&StatusJson::from(&empty)),
            "{\n  \"services\": []\n}\n"
        );
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
        assert_eq!(service.as_object().unwrap().len(), 10);
    }

    fn nodes_response() -> pb::ListNodesResponse {
        pb::ListNodesResponse {
            nodes: vec![
                pb::Node {
                    name: "node-a".into(),
                    state: NodeState::Ready as i32,
                    facts: Some(pb::NodeFacts {
                        hostname: "host-a".into(),
                        os: "Ubuntu 24.04".into(),
                        kernel: "6.8.0".into(),
                        arch: "x86_64".into(),
                        cpus: 8,
                        memory_bytes: 16 * (1 << 30),
                        docker_version: "27.3.1".into(),
                        labels: [
                            ("zone".to_owned(), "a".to_owned()),
                            ("gpu".to_owned(), "no".to_owned()),
                        ]
                        .into_iter()
                        .collect(),
                        platform_os: "linux".into(),
                    }),
                    agent_version: "0.1.0".into(),
                    connected_since_unix_ms: NOW - 3 * 60_000,
                    last_heartbeat_unix_ms: NOW - 2_000,
                    plan_generation: 3,
                    acked_generation: 3,
                    workloads: 2,
                    metrics: None,
                    address: "10.0.0.1:4242".into(),
                    certificate_expires_unix_ms: NOW + 23 * 3_600_000,
                },
                pb::Node {
                    name: "node-b".into(),
                    state: NodeState::Lost as i32,
                    facts: None,
                    last_heartbeat_unix_ms: NOW - 2 * 3_600_000,
                    certificate_expires_unix_ms: NOW - 1_000,
                    ..pb::Node::default()
                },
            ],
        }
    }

    #[test]
    fn nodes_table_shows_facts_ages_and_memory_in_gib() {
        assert_eq!(
            nodes_table(&nodes_response(), NOW),
            "NAME     STATE   HOSTNAME   OS             KERNEL   CPUS   MEMORY     DOCKER   CONNECTED   HEARTBEAT   WORKLOADS   CERT EXPIRES\n\
             node-a   ready   host-a     Ubuntu 24.04   6.8.0    8      16.0 GiB   27.3.1   3m ago      2s ago      2           in 23h\n\
             node-b   lost    -          -              -        -      -          -        -           2h ago      0           expired\n"
        );
    }

    #[test]
    fn nodes_json_uses_contract_names() {
        let value = serde_json::to_value(NodesJson::from(&nodes_response())).unwrap();
        assert_eq!(
            value["nodes"][0],
            json!({
                "name": "node-a",
                "state": "ready",
                "hostname": "host-a",
                "os": "Ubuntu 24.04",
                "kernel": "6.8.0",
                "arch": "x86_64",
                "cpus": 8,
                "memory_bytes": 17179869184u64,
                "docker_version": "27.3.1",
                "labels": {"gpu": "no", "zone": "a"},
                "agent_version": "0.1.0",
                "connected_since_unix_ms": NOW - 180_000,
                "last_heartbeat_unix_ms": NOW - 2_000,
                "plan_generation": 3,
                "acked_generation": 3,
                "workloads": 2,
                "certificate_expires_unix_ms": NOW + 23 * 3_600_000,
                "metrics": null,
            })
        );
        assert_eq!(value["nodes"][1]["state"], "lost");
        assert_eq!(value["nodes"][1]["labels"], json!({}));
    }

    #[test]
    fn delete_line_and_json_name_the_service() {
        let response = pb::DeleteResponse {
            removed_instances: 2,
            last_revision: 3,
        };
        let deleted = DeleteJson::new("hello", "", &response);
        assert_eq!(
            delete_line(&deleted),
            "deleted service hello (2 instances removed)\n"
        );
        assert_eq!(
            serde_json::to_value(&deleted).unwrap(),
            json!({"service": "hello", "env": "default", "removed_instances": 2, "last_revision": 3})
        );
        let one = pb::DeleteResponse {
            removed_instances: 1,
            last_revision: 1,
        };
        assert_eq!(
            delete_line(&DeleteJson::new("web", "", &one)),
            "deleted service web (1 instance removed)\n"
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(-5_000), "0s");
        assert_eq!(format_age(59_999), "59s");
        assert_eq!(format_age(60_000), "1m");
        assert_eq!(format_age(3 * 60_000 + 59_000), "3m");
        assert_eq!(format_age(3_600_000), "1h");
        assert_eq!(format_age(23 * 3_600_000), "23h");
        assert_eq!(format_age(3 * 86_400_000), "3d");
        assert_eq!(ago(0, NOW, "never"), "never");
        assert_eq!(ago(NOW - 42_000, NOW, "never"), "42s ago");
    }

    #[test]
    fn memory_is_shown_in_gib_with_one_decimal() {
        assert_eq!(format_gib(0), "-");
        assert_eq!(format_gib(8_192 * (1 << 20)), "8.0 GiB");
        assert_eq!(format_gib(1_610_612_736), "1.5 GiB");
    }

    #[test]
    fn unknown_enum_values_read_as_unspecified() {
        assert_eq!(change_action_word(99), "unspecified");
        assert_eq!(workload_state_word(-1), "unspecified");
        assert_eq!(node_state_word(7), "unspecified");
    }
}

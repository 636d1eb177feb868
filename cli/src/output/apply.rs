//! What `apply`, `plan` and `delete` print: one line per secret the spec
//! uses (name, what happened, version: never a value), one per service
//! change, one per instance, and for a dry run the diff and a per-node
//! summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use convoy_api::views::{change_action, DeleteJson};
use convoy_proto as pb;
use pb::ChangeAction;

use super::cells::{plural, qualified};

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
    for secret in &response.secrets {
        let name = qualified(&secret.env, &secret.name);
        let summary = secret_change_summary(secret, response.dry_run);
        let _ = writeln!(out, "secret {name}: {summary}");
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

/// `created (v1)`, `would be rotated to v3`, `unchanged (v2)`, ...
fn secret_change_summary(change: &pb::SecretChange, dry_run: bool) -> String {
    let version = change.version;
    let would = |done: &str| {
        if dry_run {
            format!("would be {done}")
        } else {
            done.to_owned()
        }
    };
    match change.action.as_str() {
        "created" => format!("{} (v{version})", would("created")),
        "generated" => format!("{} (v{version})", would("generated")),
        "rotated" => format!("{} to v{version}", would("rotated")),
        "unchanged" => format!("unchanged (v{version})"),
        "external" => format!("external (v{version})"),
        other => format!("{other} (v{version})"),
    }
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

pub fn delete_line(deleted: &DeleteJson) -> String {
    format!(
        "deleted service {} ({} removed)\n",
        qualified(&deleted.env, &deleted.service),
        plural(deleted.removed_instances as usize, "instance")
    )
}

#[cfg(test)]
mod tests {
    use convoy_api::views::ApplyJson;
    use serde_json::json;

    use super::*;

    fn apply_response(dry_run: bool) -> pb::ApplyResponse {
        pb::ApplyResponse {
            dry_run,
            secrets: Vec::new(),
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
    fn secret_changes_are_shown_by_name_and_version() {
        let mut response = apply_response(false);
        response.services.truncate(1);
        let change = |env: &str, name: &str, action: &str, version| pb::SecretChange {
            env: env.into(),
            name: name.into(),
            action: action.into(),
            version,
        };
        response.secrets = vec![
            change("default", "db", "created", 1),
            change("default", "session", "generated", 1),
            change("prod", "api", "rotated", 3),
            change("default", "tls", "unchanged", 2),
            change("default", "ca", "external", 4),
        ];
        let text = apply_table(&response);
        assert!(
            text.starts_with(
                "secret db: created (v1)\n\
                 secret session: generated (v1)\n\
                 secret prod/api: rotated to v3\n\
                 secret tls: unchanged (v2)\n\
                 secret ca: external (v4)\n\
                 service hello: created revision 1"
            ),
            "{text}"
        );
        response.dry_run = true;
        let text = apply_table(&response);
        assert!(
            text.contains("secret db: would be created (v1)\n"),
            "{text}"
        );
        assert!(
            text.contains("secret session: would be generated (v1)\n"),
            "{text}"
        );
        assert!(
            text.contains("secret prod/api: would be rotated to v3\n"),
            "{text}"
        );
        assert!(text.contains("secret tls: unchanged (v2)\n"), "{text}");
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
}

//! The apply warnings for a stack split across nodes: services reach each
//! other by name on their node's network only (issue 14), so a service
//! whose instances run where another of the stack does not cannot reach it
//! by name yet; and an agent checks `depends_on` only against its own
//! node, so a service placed where its dependency is not starts unchecked.

use std::collections::{BTreeMap, BTreeSet};

use super::{ChangeAction, ServiceChange};

/// One warning when the container services of one apply (one file, one
/// environment) do not all run on every node that runs any of them; `None`
/// when they do (one node, or every service on each node). `units` are
/// left out: systemd services join no network.
pub(super) fn split_warning(
    filename: &str,
    changes: &[ServiceChange],
    units: &BTreeSet<String>,
) -> Option<String> {
    let mut nodes_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for change in changes.iter().filter(|c| !units.contains(&c.service)) {
        let nodes = change
            .instances
            .iter()
            .filter(|i| i.action != ChangeAction::Remove && !i.node.is_empty())
            .map(|i| i.node.as_str());
        nodes_of
            .entry(change.service.as_str())
            .or_default()
            .extend(nodes);
    }
    nodes_of.retain(|_, nodes| !nodes.is_empty());
    let all: BTreeSet<&str> = nodes_of.values().flatten().copied().collect();
    // A service missing from a node that runs another: (there, missing).
    let (node, missing) = all.iter().find_map(|node| {
        nodes_of
            .iter()
            .find(|(_, nodes)| !nodes.contains(node))
            .map(|(service, _)| (*node, *service))
    })?;
    let present = nodes_of
        .iter()
        .find(|(_, nodes)| nodes.contains(node))
        .map(|(service, _)| *service)?;
    let show = |service: &str| {
        let nodes: Vec<&str> = nodes_of[service].iter().copied().collect();
        format!("`{service}` on {}", nodes.join(", "))
    };
    Some(format!(
        "{filename}: the stack is split across nodes ({}, {}): services reach each other \
         by name only on the same node, so `{present}` on node `{node}` cannot reach \
         `{missing}` by name; reaching services on other nodes by name is not supported yet \
         (constrain the stack to one node with `deploy.placement.constraints`, or use a \
         published port and the node's address)",
        show(present),
        show(missing),
    ))
}

/// One warning when a service runs on a node where a service it depends on
/// (`depends_on`) has no instance: the agent there checks only what runs on
/// its own node, so it starts the service without waiting. `None` when each
/// dependency runs wherever its dependents do.
pub(super) fn depends_on_warning(
    filename: &str,
    changes: &[ServiceChange],
    depends_on: &[(String, Vec<String>)],
) -> Option<String> {
    let nodes_of = |service: &str| -> BTreeSet<&str> {
        changes
            .iter()
            .filter(|c| c.service == service)
            .flat_map(|c| c.instances.iter())
            .filter(|i| i.action != ChangeAction::Remove && !i.node.is_empty())
            .map(|i| i.node.as_str())
            .collect()
    };
    depends_on.iter().find_map(|(service, deps)| {
        let mine = nodes_of(service);
        deps.iter().find_map(|dep| {
            let theirs = nodes_of(dep);
            let node = mine.iter().find(|n| !theirs.contains(*n))?;
            Some(format!(
                "{filename}: `{service}` depends on `{dep}` (depends_on), but runs on node \
                 `{node}` where `{dep}` has no instance: depends_on across nodes is not \
                 checked yet, so `{service}` starts there without waiting (constrain both \
                 to the same nodes with `deploy.placement.constraints`)"
            ))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::InstanceChange;

    fn change(service: &str, nodes: &[&str]) -> ServiceChange {
        ServiceChange {
            service: service.into(),
            instances: nodes
                .iter()
                .map(|node| InstanceChange {
                    instance_id: String::new(),
                    node: node.to_string(),
                    action: ChangeAction::Create,
                })
                .collect(),
            env: String::new(),
            action: ChangeAction::Create,
            revision: 0,
            previous_revision: 0,
            changed_fields: Vec::new(),
            diff: String::new(),
        }
    }

    #[test]
    fn a_stack_on_one_node_or_on_every_node_is_not_split() {
        let none = BTreeSet::new();
        let one = [change("web", &["n1", "n1"]), change("db", &["n1"])];
        assert_eq!(split_warning("app.yaml", &one, &none), None);
        let everywhere = [change("web", &["n1", "n2"]), change("db", &["n2", "n1"])];
        assert_eq!(split_warning("app.yaml", &everywhere, &none), None);
        assert_eq!(
            split_warning("app.yaml", &[change("web", &["n1", "n2"])], &none),
            None
        );
    }

    #[test]
    fn a_service_missing_from_a_node_of_another_is_named_in_one_warning() {
        let changes = [change("web", &["n1", "n2"]), change("db", &["n1"])];
        let warning = split_warning("app.yaml", &changes, &BTreeSet::new()).unwrap();
        assert!(
            warning.starts_with("app.yaml: the stack is split across nodes"),
            "{warning}"
        );
        assert!(
            warning.contains("`web` on node `n2` cannot reach `db` by name"),
            "{warning}"
        );
        assert!(warning.contains("`web` on n1, n2"), "{warning}");
        assert!(warning.contains("`db` on n1"), "{warning}");
        assert!(warning.contains("not supported yet"), "{warning}");
    }

    #[test]
    fn a_dependency_missing_from_a_node_of_its_dependent_is_warned_about() {
        let deps = [("web".to_string(), vec!["db".to_string()])];
        let together = [change("web", &["n1", "n1"]), change("db", &["n1"])];
        assert_eq!(depends_on_warning("app.yaml", &together, &deps), None);
        let apart = [change("web", &["n1", "n2"]), change("db", &["n1"])];
        let warning = depends_on_warning("app.yaml", &apart, &deps).unwrap();
        assert!(
            warning
                .starts_with("app.yaml: `web` depends on `db` (depends_on), but runs on node `n2`"),
            "{warning}"
        );
        assert!(
            warning.contains("depends_on across nodes is not checked yet"),
            "{warning}"
        );
        // The dependency may run where nothing depends on it.
        let wider = [change("web", &["n1"]), change("db", &["n1", "n2"])];
        assert_eq!(depends_on_warning("app.yaml", &wider, &deps), None);
    }

    #[test]
    fn removed_and_unplaced_instances_and_units_do_not_split_a_stack() {
        let mut web = change("web", &["n1", "n2"]);
        web.instances[1].action = ChangeAction::Remove;
        let db = change("db", &["n1", ""]);
        let units = BTreeSet::from(["agent".to_string()]);
        let changes = [web, db, change("agent", &["n3"])];
        assert_eq!(split_warning("app.yaml", &changes, &units), None);
    }
}

//! Which node's agent drives a Swarm cluster for Convoy: one connected
//! manager of the cluster, kept while it stays eligible, else the
//! lowest-named eligible one. A pure function of the nodes' facts and
//! liveness, recomputed by placement whenever it runs; stored only as the
//! assignment of the Swarm services' single instance (docs/SWARM.md).

use crate::placement::Candidate;
use crate::spec::SWARM_LABEL;

/// Whether `facts` are those of a manager of `cluster` (named by its
/// Swarm cluster ID, or by the `convoy.swarm` label of its agent), whether
/// or not it answers now.
pub fn manages(facts: &crate::facts::Facts, cluster: &str) -> bool {
    let Some(swarm) = facts.swarm.as_ref() else {
        return false;
    };
    swarm.role == crate::swarm::SwarmRole::Manager
        && !cluster.is_empty()
        && (swarm.cluster_id == cluster
            || facts.labels.get(SWARM_LABEL).is_some_and(|l| l == cluster))
}

/// Whether `c` may drive `cluster` now: a connected manager of it whose
/// engine is active and reaches the swarm's managers.
pub fn may_drive(c: &Candidate<'_>, cluster: &str) -> bool {
    c.connected
        && manages(c.facts, cluster)
        && c.facts
            .swarm
            .as_ref()
            .is_some_and(|s| s.manager_reachable && s.local_node_state == "active")
}

/// The node whose agent drives `cluster`: `current` while it may, else the
/// lowest-named node that may. When none may, `current` stays while it is
/// still a known manager of the cluster (its agent is only away: Swarm
/// keeps the services running, and status says the driver is
/// unreachable); otherwise none (the services wait, pending).
pub fn pick(cluster: &str, current: Option<&str>, nodes: &[Candidate<'_>]) -> Option<String> {
    if let Some(cur) = current {
        if nodes.iter().any(|c| c.name == cur && may_drive(c, cluster)) {
            return Some(cur.to_string());
        }
    }
    if let Some(best) = nodes
        .iter()
        .filter(|c| may_drive(c, cluster))
        .map(|c| c.name)
        .min()
    {
        return Some(best.to_string());
    }
    current
        .filter(|cur| {
            nodes
                .iter()
                .any(|c| c.name == *cur && manages(c.facts, cluster))
        })
        .map(str::to_string)
}

/// Why a Swarm service has no driver, for `status`.
pub fn pending_reason(cluster: &str) -> String {
    format!(
        "no connected manager agent of Swarm cluster `{cluster}` (its cluster ID, or the \
         `{SWARM_LABEL}` label of a manager's agent)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use convoy_proto as pb;

    fn facts(role: pb::SwarmRole, cluster: &str, label: Option<&str>) -> crate::facts::Facts {
        crate::facts::Facts::from(pb::NodeFacts {
            labels: label
                .map(|l| [(SWARM_LABEL.to_string(), l.to_string())].into())
                .unwrap_or_default(),
            swarm: Some(pb::SwarmFacts {
                role: role as i32,
                node_id: "n".into(),
                cluster_id: cluster.into(),
                manager_reachable: true,
                local_node_state: "active".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn the_driver_is_kept_while_it_may_and_replaced_by_the_lowest_named_manager() {
        let m = facts(pb::SwarmRole::Manager, "C1", None);
        let w = facts(pb::SwarmRole::Worker, "", None);
        let other = facts(pb::SwarmRole::Manager, "C2", None);
        let node = |name, facts, connected| Candidate {
            name,
            facts,
            connected,
            cordoned: false,
        };
        // Workers and managers of other clusters never drive.
        let nodes = [
            node("a-worker", &w, true),
            node("b-other", &other, true),
            node("m2", &m, true),
            node("m1", &m, true),
        ];
        assert_eq!(pick("C1", None, &nodes).as_deref(), Some("m1"));
        // A driver that may drive stays, even when a lower name could.
        assert_eq!(pick("C1", Some("m2"), &nodes).as_deref(), Some("m2"));
        // The driver's agent is lost: the next manager takes over.
        let nodes = [node("m1", &m, true), node("m2", &m, false)];
        assert_eq!(pick("C1", Some("m2"), &nodes).as_deref(), Some("m1"));
        // No manager connected: the lost driver stays (status says it is
        // unreachable); with none known, nothing drives.
        let nodes = [node("m1", &m, false), node("m2", &m, false)];
        assert_eq!(pick("C1", Some("m2"), &nodes).as_deref(), Some("m2"));
        assert_eq!(pick("C1", None, &nodes), None);
        assert_eq!(pick("C3", None, &nodes), None);
        // A current driver that left the cluster is not kept.
        let nodes = [node("m2", &w, false)];
        assert_eq!(pick("C1", Some("m2"), &nodes), None);
    }

    #[test]
    fn a_cluster_is_named_by_its_id_or_by_the_managers_label() {
        let labelled = facts(pb::SwarmRole::Manager, "C1", Some("prod"));
        let c = Candidate {
            name: "m",
            facts: &labelled,
            connected: true,
            cordoned: false,
        };
        assert!(may_drive(&c, "C1"));
        assert!(may_drive(&c, "prod"));
        assert!(!may_drive(&c, "staging"));
        assert!(!may_drive(&c, ""));
        // A manager that reaches no quorum, or whose engine is not active,
        // drives nothing.
        let mut cut = facts(pb::SwarmRole::Manager, "C1", None);
        cut.swarm.as_mut().unwrap().manager_reachable = false;
        let c = Candidate {
            name: "m",
            facts: &cut,
            connected: true,
            cordoned: false,
        };
        assert!(!may_drive(&c, "C1"));
        assert!(manages(&cut, "C1"));
    }
}

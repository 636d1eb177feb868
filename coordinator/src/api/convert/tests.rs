use super::*;
use crate::{
    report::{Health, InstanceState},
    rollout::RolloutState,
    state::{Facts, SecretAction},
};

#[test]
fn change_actions_map_to_their_wire_numbers() {
    for (action, wire) in [
        (ChangeAction::Create, pb::ChangeAction::Create),
        (ChangeAction::Update, pb::ChangeAction::Update),
        (ChangeAction::Unchanged, pb::ChangeAction::Unchanged),
        (ChangeAction::Remove, pb::ChangeAction::Remove),
        (ChangeAction::Replace, pb::ChangeAction::Replace),
        (ChangeAction::Pending, pb::ChangeAction::Pending),
    ] {
        assert_eq!(pb::ChangeAction::from(action), wire);
    }
    let change = pb::InstanceChange::from(InstanceChange {
        instance_id: "default/web/1".into(),
        node: "n1".into(),
        action: ChangeAction::Replace,
    });
    assert_eq!(change.action, 5);
}

#[test]
fn node_states_map_to_their_wire_numbers() {
    assert_eq!(pb::NodeState::from(NodeState::Ready) as i32, 1);
    assert_eq!(pb::NodeState::from(NodeState::Lost) as i32, 2);
    assert_eq!(pb::NodeState::from(NodeState::Removed) as i32, 3);
}

#[test]
fn secret_actions_keep_their_words() {
    let wire = pb::SecretChange::from(SecretChange {
        env: "prod".into(),
        name: "db".into(),
        action: SecretAction::Generated,
        version: 2,
    });
    assert_eq!(wire.action, "generated");
    assert_eq!(SecretAction::Created.as_str(), "created");
    assert_eq!(SecretAction::Rotated.as_str(), "rotated");
    assert_eq!(SecretAction::Unchanged.as_str(), "unchanged");
    assert_eq!(SecretAction::External.as_str(), "external");
}

#[test]
fn a_service_view_maps_with_its_instances_rollout_and_swarm_info() {
    let view = StatusView {
        services: vec![ServiceView {
            name: "web".into(),
            env: "prod".into(),
            revision: 3,
            desired: 2,
            running: 1,
            instances: vec![InstanceStatusView {
                id: "prod/web/1".into(),
                index: 1,
                node: "n1".into(),
                node_connected: true,
                revision: 3,
                state: InstanceState::Running,
                health: Health::Healthy,
                journal_tail: vec!["line".into()],
                swarm_task_id: "t1".into(),
                ..InstanceStatusView::default()
            }],
            updated_unix_ms: 7,
            image: "web:1".into(),
            healthy: 1,
            has_checks: true,
            rollout: Some(RolloutView {
                from_revision: 2,
                to_revision: 3,
                state: RolloutState::WaitingPromotion,
                strategy: Strategy::BlueGreen,
                updated: 1,
                healthy: 1,
                failed: 0,
                total: 2,
                reason: String::new(),
                started_unix_ms: 5,
                updated_unix_ms: 6,
                is_rollback: false,
                promoted: false,
                summary: "rollout r2 → r3".into(),
            }),
            deploy_labels: [("team".to_string(), "a".to_string())].into(),
            swarm: Some(SwarmServiceView {
                cluster: "c".into(),
                driver: "n1".into(),
                driver_connected: true,
                update_state: "updating".into(),
                update_message: String::new(),
                service_name: "convoy-prod-web".into(),
            }),
        }],
    };
    let wire = pb::StatusResponse::from(view);
    assert_eq!(wire.control_plane, None);
    let s = &wire.services[0];
    assert_eq!(
        (s.name.as_str(), s.env.as_str(), s.revision),
        ("web", "prod", 3)
    );
    assert_eq!(
        (s.desired, s.running, s.healthy, s.has_checks),
        (2, 1, 1, true)
    );
    assert_eq!(s.deploy_labels.get("team").map(String::as_str), Some("a"));
    let i = &s.instances[0];
    assert_eq!(i.state, pb::WorkloadState::Running as i32);
    assert_eq!(i.health, pb::Health::Healthy as i32);
    assert_eq!(i.journal_tail, ["line"]);
    assert_eq!(i.swarm_task_id, "t1");
    let r = s.rollout.as_ref().unwrap();
    assert_eq!(r.state, "waiting-promotion");
    assert_eq!(r.strategy, "blue-green");
    assert_eq!((r.from_revision, r.to_revision, r.total), (2, 3, 2));
    assert_eq!(s.swarm.as_ref().unwrap().service_name, "convoy-prod-web");
}

#[test]
fn a_node_view_maps_with_its_facts_and_state() {
    let view = NodesView {
        nodes: vec![NodeView {
            name: "n1".into(),
            state: NodeState::Removed,
            facts: Facts {
                hostname: "host-1".into(),
                cpus: 4,
                ..Facts::default()
            }
            .into(),
            agent_version: "1.0".into(),
            connected_since_unix_ms: 1,
            last_heartbeat_unix_ms: 2,
            plan_generation: 3,
            acked_generation: 3,
            workloads: 4,
            metrics: None,
            address: "10.0.0.1:1".into(),
            certificate_expires_unix_ms: 5,
            cordoned: true,
            draining: true,
            drain_blocked: vec!["blocked".into()],
            drain_waiting: vec!["waiting".into()],
            drained: false,
        }],
    };
    let wire = pb::ListNodesResponse::from(view);
    let n = &wire.nodes[0];
    assert_eq!(n.state, pb::NodeState::Removed as i32);
    let facts = n.facts.as_ref().unwrap();
    assert_eq!((facts.hostname.as_str(), facts.cpus), ("host-1", 4));
    assert_eq!(n.metrics, None);
    assert_eq!((n.workloads, n.cordoned, n.draining), (4, true, true));
    assert_eq!(n.drain_blocked, ["blocked"]);
    assert_eq!(n.drain_waiting, ["waiting"]);
}

#[test]
fn an_apply_outcome_maps_every_service_and_secret() {
    let outcome = ApplyOutcome {
        services: vec![ServiceChange {
            service: "web".into(),
            env: "default".into(),
            action: ChangeAction::Update,
            revision: 2,
            previous_revision: 1,
            instances: vec![InstanceChange {
                instance_id: "default/web/1".into(),
                node: String::new(),
                action: ChangeAction::Pending,
            }],
            changed_fields: vec!["image".into()],
            diff: "-a\n+b\n".into(),
        }],
        warnings: vec!["careful".into()],
        dry_run: true,
        secrets: vec![SecretChange {
            env: "default".into(),
            name: "db".into(),
            action: SecretAction::Rotated,
            version: 4,
        }],
    };
    let wire = pb::ApplyResponse::from(outcome);
    assert!(wire.dry_run);
    assert_eq!(wire.warnings, ["careful"]);
    let s = &wire.services[0];
    assert_eq!(s.action, pb::ChangeAction::Update as i32);
    assert_eq!(s.instances[0].action, pb::ChangeAction::Pending as i32);
    assert_eq!((s.revision, s.previous_revision), (2, 1));
    assert_eq!(s.changed_fields, ["image"]);
    assert_eq!(wire.secrets[0].action, "rotated");
    assert_eq!(wire.secrets[0].version, 4);
}

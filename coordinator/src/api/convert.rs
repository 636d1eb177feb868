//! The one place the state layer's views and outcomes become wire types.
//! Each conversion destructures its view in full, so a field added to a
//! view is a compile error here until it is mapped.

use convoy_proto as pb;

use crate::{
    spec::Strategy,
    state::{
        ApplyOutcome, ChangeAction, Cordoned, Deleted, DrainStarted, HistoryView, InstanceChange,
        InstanceStatusView, NodeRemoved, NodeState, NodeView, NodeVolume, NodesView, RevisionView,
        RolloutView, SecretChange, ServiceChange, ServiceView, StatusView, SwarmServiceView,
        VerifyReport, VerifyResult, VolumesView,
    },
};

// ---- reads -----------------------------------------------------------

/// Without the control plane, which the handler adds.
impl From<StatusView> for pb::StatusResponse {
    fn from(v: StatusView) -> Self {
        let StatusView { services } = v;
        pb::StatusResponse {
            services: services.into_iter().map(Into::into).collect(),
            control_plane: None,
        }
    }
}

impl From<ServiceView> for pb::ServiceStatus {
    fn from(v: ServiceView) -> Self {
        let ServiceView {
            name,
            env,
            revision,
            desired,
            running,
            instances,
            updated_unix_ms,
            image,
            healthy,
            has_checks,
            rollout,
            deploy_labels,
            swarm,
        } = v;
        pb::ServiceStatus {
            name,
            env,
            revision,
            desired,
            running,
            instances: instances.into_iter().map(Into::into).collect(),
            updated_unix_ms,
            image,
            healthy,
            has_checks,
            rollout: rollout.map(Into::into),
            deploy_labels: deploy_labels.into_iter().collect(),
            swarm: swarm.map(Into::into),
        }
    }
}

impl From<InstanceStatusView> for pb::InstanceStatus {
    fn from(v: InstanceStatusView) -> Self {
        let InstanceStatusView {
            id,
            index,
            node,
            node_connected,
            revision,
            state,
            reason,
            restarts,
            container_id,
            container_name,
            updated_unix_ms,
            health,
            health_output,
            failing_probe,
            exit_code,
            journal_tail,
            swarm_node_id,
            swarm_task_id,
        } = v;
        pb::InstanceStatus {
            id,
            index,
            node,
            node_connected,
            revision,
            state: pb::WorkloadState::from(state) as i32,
            reason,
            restarts,
            container_id,
            container_name,
            updated_unix_ms,
            health: pb::Health::from(health) as i32,
            health_output,
            failing_probe,
            exit_code,
            journal_tail,
            swarm_node_id,
            swarm_task_id,
        }
    }
}

impl From<SwarmServiceView> for pb::SwarmServiceInfo {
    fn from(v: SwarmServiceView) -> Self {
        let SwarmServiceView {
            cluster,
            driver,
            driver_connected,
            update_state,
            update_message,
            service_name,
        } = v;
        pb::SwarmServiceInfo {
            cluster,
            driver,
            driver_connected,
            update_state,
            update_message,
            service_name,
        }
    }
}

impl From<RolloutView> for pb::RolloutInfo {
    fn from(v: RolloutView) -> Self {
        let RolloutView {
            from_revision,
            to_revision,
            state,
            strategy,
            updated,
            healthy,
            failed,
            total,
            reason,
            started_unix_ms,
            updated_unix_ms,
            is_rollback,
            promoted,
            summary,
        } = v;
        pb::RolloutInfo {
            from_revision,
            to_revision,
            state: state.word().to_string(),
            strategy: strategy_word(strategy).to_string(),
            updated,
            healthy,
            failed,
            total,
            reason,
            started_unix_ms,
            updated_unix_ms,
            is_rollback,
            promoted,
            summary,
        }
    }
}

/// The strategy's word on the wire, as spec files spell it.
fn strategy_word(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Rolling => "rolling",
        Strategy::Canary => "canary",
        Strategy::BlueGreen => "blue-green",
    }
}

impl From<NodesView> for pb::ListNodesResponse {
    fn from(v: NodesView) -> Self {
        let NodesView { nodes } = v;
        pb::ListNodesResponse {
            nodes: nodes.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<NodeState> for pb::NodeState {
    fn from(s: NodeState) -> Self {
        match s {
            NodeState::Ready => Self::Ready,
            NodeState::Lost => Self::Lost,
            NodeState::Removed => Self::Removed,
        }
    }
}

impl From<NodeView> for pb::Node {
    fn from(v: NodeView) -> Self {
        let NodeView {
            name,
            state,
            facts,
            agent_version,
            connected_since_unix_ms,
            last_heartbeat_unix_ms,
            plan_generation,
            acked_generation,
            workloads,
            metrics,
            address,
            certificate_expires_unix_ms,
            cordoned,
            draining,
            drain_blocked,
            drain_waiting,
            drained,
        } = v;
        pb::Node {
            name,
            state: pb::NodeState::from(state) as i32,
            facts: Some(pb::NodeFacts::from(&*facts)),
            agent_version,
            connected_since_unix_ms,
            last_heartbeat_unix_ms,
            plan_generation,
            acked_generation,
            workloads,
            metrics: metrics.map(pb::HostMetrics::from),
            address,
            certificate_expires_unix_ms,
            cordoned,
            draining,
            drain_blocked,
            drain_waiting,
            drained,
        }
    }
}

impl From<HistoryView> for pb::HistoryResponse {
    fn from(v: HistoryView) -> Self {
        let HistoryView { revisions, current } = v;
        pb::HistoryResponse {
            revisions: revisions.into_iter().map(Into::into).collect(),
            current,
        }
    }
}

impl From<RevisionView> for pb::RevisionInfo {
    fn from(v: RevisionView) -> Self {
        let RevisionView {
            revision,
            created_unix_ms,
            created_by,
            source,
            image,
            spec_hash,
            outcome,
            changed_fields,
            spec_json,
        } = v;
        pb::RevisionInfo {
            revision,
            created_unix_ms,
            created_by,
            source,
            image,
            spec_hash,
            outcome,
            changed_fields,
            spec_json,
        }
    }
}

// ---- commands --------------------------------------------------------

impl From<ApplyOutcome> for pb::ApplyResponse {
    fn from(v: ApplyOutcome) -> Self {
        let ApplyOutcome {
            services,
            warnings,
            dry_run,
            secrets,
        } = v;
        pb::ApplyResponse {
            services: services.into_iter().map(Into::into).collect(),
            warnings,
            dry_run,
            secrets: secrets.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<ChangeAction> for pb::ChangeAction {
    fn from(a: ChangeAction) -> Self {
        match a {
            ChangeAction::Create => Self::Create,
            ChangeAction::Update => Self::Update,
            ChangeAction::Unchanged => Self::Unchanged,
            ChangeAction::Remove => Self::Remove,
            ChangeAction::Replace => Self::Replace,
            ChangeAction::Pending => Self::Pending,
        }
    }
}

impl From<ServiceChange> for pb::ServiceChange {
    fn from(v: ServiceChange) -> Self {
        let ServiceChange {
            service,
            env,
            action,
            revision,
            previous_revision,
            instances,
            changed_fields,
            diff,
        } = v;
        pb::ServiceChange {
            service,
            env,
            action: pb::ChangeAction::from(action) as i32,
            revision,
            previous_revision,
            instances: instances.into_iter().map(Into::into).collect(),
            changed_fields,
            diff,
        }
    }
}

impl From<InstanceChange> for pb::InstanceChange {
    fn from(v: InstanceChange) -> Self {
        let InstanceChange {
            instance_id,
            node,
            action,
        } = v;
        pb::InstanceChange {
            instance_id,
            node,
            action: pb::ChangeAction::from(action) as i32,
        }
    }
}

impl From<SecretChange> for pb::SecretChange {
    fn from(v: SecretChange) -> Self {
        let SecretChange {
            env,
            name,
            action,
            version,
        } = v;
        pb::SecretChange {
            env,
            name,
            action: action.as_str().to_string(),
            version,
        }
    }
}

impl From<Deleted> for pb::DeleteResponse {
    fn from(v: Deleted) -> Self {
        let Deleted {
            removed_instances,
            last_revision,
        } = v;
        pb::DeleteResponse {
            removed_instances,
            last_revision,
        }
    }
}

impl From<Cordoned> for pb::CordonNodeResponse {
    fn from(v: Cordoned) -> Self {
        let Cordoned {
            was_cordoned,
            drain_stopped,
        } = v;
        pb::CordonNodeResponse {
            was_cordoned,
            drain_stopped,
        }
    }
}

impl From<DrainStarted> for pb::DrainNodeResponse {
    fn from(v: DrainStarted) -> Self {
        let DrainStarted { instances, staying } = v;
        pb::DrainNodeResponse { instances, staying }
    }
}

impl From<NodeRemoved> for pb::RemoveNodeResponse {
    fn from(v: NodeRemoved) -> Self {
        let NodeRemoved {
            lost_instances,
            revoked_certificates,
        } = v;
        pb::RemoveNodeResponse {
            lost_instances,
            revoked_certificates,
        }
    }
}

impl From<VerifyReport> for pb::VerifyResponse {
    fn from(v: VerifyReport) -> Self {
        let VerifyReport { healthy, results } = v;
        pb::VerifyResponse {
            healthy,
            results: results.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<VerifyResult> for pb::VerifyResult {
    fn from(v: VerifyResult) -> Self {
        let VerifyResult {
            service,
            instance,
            node,
            probe,
            healthy,
            output,
            duration_ms,
        } = v;
        pb::VerifyResult {
            service,
            instance,
            node,
            probe,
            healthy,
            output,
            duration_ms,
        }
    }
}

impl From<VolumesView> for pb::ListVolumesResponse {
    fn from(v: VolumesView) -> Self {
        let VolumesView {
            volumes,
            unreachable,
        } = v;
        pb::ListVolumesResponse {
            volumes: volumes.into_iter().map(Into::into).collect(),
            unreachable,
        }
    }
}

impl From<NodeVolume> for pb::NodeVolume {
    fn from(v: NodeVolume) -> Self {
        let NodeVolume {
            node,
            name,
            env,
            key,
            anonymous,
            used_by,
            error,
        } = v;
        pb::NodeVolume {
            node,
            name,
            env,
            key,
            anonymous,
            used_by,
            error,
        }
    }
}

#[cfg(test)]
mod tests;

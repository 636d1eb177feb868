//! The kinds of cluster events (`convoy events`, the dashboard's feed, the
//! `convoy_events_total` metric): one list, shared by the coordinator that
//! emits them and the CLI and load test that wait for them.

/// A cluster event's kind; [`EventKind::as_str`] is its name on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    ServiceDeployed,
    ServiceDeleted,
    InstancePlaced,
    InstanceState,
    InstanceHealth,
    /// Forwarded from the agent (`instance.` + the agent event's kind).
    InstanceRestarted,
    NodeJoined,
    NodeReady,
    NodeLost,
    NodeRemoved,
    RolloutProgress,
    RolloutAwaitingPromotion,
    RolloutPromoted,
    RolloutPaused,
    RolloutResumed,
    RolloutSucceeded,
    RolloutFailed,
    RolloutRolledBack,
    /// A rollout of a new revision began (`apply`, a secret's rotation).
    RolloutStarted,
    /// A secret got a new version (`convoy secret rotate`).
    SecretRotated,
    /// An instance on a node lost past its service's `reschedule_after`
    /// (or on a removed or draining node) moved to another node.
    InstanceRescheduled,
    NodeCordoned,
    NodeUncordoned,
    NodeDraining,
    NodeDrained,
}

impl EventKind {
    /// Every kind, in the order of the docs.
    pub const ALL: &'static [EventKind] = &[
        Self::ServiceDeployed,
        Self::ServiceDeleted,
        Self::InstancePlaced,
        Self::InstanceState,
        Self::InstanceHealth,
        Self::InstanceRestarted,
        Self::NodeJoined,
        Self::NodeReady,
        Self::NodeLost,
        Self::NodeRemoved,
        Self::RolloutProgress,
        Self::RolloutAwaitingPromotion,
        Self::RolloutPromoted,
        Self::RolloutPaused,
        Self::RolloutResumed,
        Self::RolloutSucceeded,
        Self::RolloutFailed,
        Self::RolloutRolledBack,
        Self::RolloutStarted,
        Self::SecretRotated,
        Self::InstanceRescheduled,
        Self::NodeCordoned,
        Self::NodeUncordoned,
        Self::NodeDraining,
        Self::NodeDrained,
    ];

    /// Rollout events that end a wait for the rollout (`apply --wait`).
    pub const ROLLOUT_FINAL: &'static [EventKind] = &[
        Self::RolloutSucceeded,
        Self::RolloutFailed,
        Self::RolloutPaused,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ServiceDeployed => "service.deployed",
            Self::ServiceDeleted => "service.deleted",
            Self::InstancePlaced => "instance.placed",
            Self::InstanceState => "instance.state",
            Self::InstanceHealth => "instance.health",
            Self::InstanceRestarted => "instance.restarted",
            Self::NodeJoined => "node.joined",
            Self::NodeReady => "node.ready",
            Self::NodeLost => "node.lost",
            Self::NodeRemoved => "node.removed",
            Self::RolloutProgress => "rollout.progress",
            Self::RolloutAwaitingPromotion => "rollout.awaiting_promotion",
            Self::RolloutPromoted => "rollout.promoted",
            Self::RolloutPaused => "rollout.paused",
            Self::RolloutResumed => "rollout.resumed",
            Self::RolloutSucceeded => "rollout.succeeded",
            Self::RolloutFailed => "rollout.failed",
            Self::RolloutRolledBack => "rollout.rolled_back",
            Self::RolloutStarted => "rollout.started",
            Self::SecretRotated => "secret.rotated",
            Self::InstanceRescheduled => "instance.rescheduled",
            Self::NodeCordoned => "node.cordoned",
            Self::NodeUncordoned => "node.uncordoned",
            Self::NodeDraining => "node.draining",
            Self::NodeDrained => "node.drained",
        }
    }

    /// The kind named `name`, if it is one of these.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// Whether `name` is this kind.
    pub fn is(self, name: &str) -> bool {
        self.as_str() == name
    }
}

impl AsRef<str> for EventKind {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(EventKind::parse("rollout.nope"), None);
    }
}

//! What the state layer's commands return: what an apply or rollback
//! changed, what a delete, cordon, drain or node removal did, checks run,
//! volumes found. Plain domain values; `api/convert.rs` maps them to the
//! wire.

/// An apply (or a rollback): what it did, or would do, to each service and
/// to the secrets they use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyOutcome {
    pub services: Vec<ServiceChange>,
    pub warnings: Vec<String>,
    pub dry_run: bool,
    /// Never values.
    pub secrets: Vec<SecretChange>,
}

/// What happens to a service, or to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeAction {
    Create,
    Update,
    Unchanged,
    Remove,
    Replace,
    /// No node can take the instance yet.
    Pending,
}

/// One service of an apply.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceChange {
    pub service: String,
    pub env: String,
    pub action: ChangeAction,
    /// The revision after the apply (the current one when unchanged).
    pub revision: u64,
    pub previous_revision: u64,
    pub instances: Vec<InstanceChange>,
    /// Spec fields that differ from the previous revision.
    pub changed_fields: Vec<String>,
    /// A unified diff of the previous and the new spec (updates only).
    pub diff: String,
}

/// One instance of a [`ServiceChange`].
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceChange {
    pub instance_id: String,
    /// Empty while pending.
    pub node: String,
    pub action: ChangeAction,
}

/// What an apply did to one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretAction {
    /// The first version, from the spec's `file:` or `environment:`.
    Created,
    /// Made by `x-convoy.generate`.
    Generated,
    /// The file's or variable's value changed: a new version.
    Rotated,
    Unchanged,
    /// `external: true`: used as it is.
    External,
}

impl SecretAction {
    /// The word on the wire and in the CLI's output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Generated => "generated",
            Self::Rotated => "rotated",
            Self::Unchanged => "unchanged",
            Self::External => "external",
        }
    }
}

/// One secret of an apply.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretChange {
    pub env: String,
    pub name: String,
    pub action: SecretAction,
    /// The version the services pin after the apply.
    pub version: u64,
}

/// [`super::Coordinator::delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub removed_instances: u32,
    pub last_revision: u64,
}

/// [`super::Coordinator::cordon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cordoned {
    /// Whether the node was cordoned before.
    pub was_cordoned: bool,
    /// Whether an uncordon ended a drain in progress.
    pub drain_stopped: bool,
}

/// [`super::Coordinator::drain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainStarted {
    /// Instances the drain moves.
    pub instances: u32,
    /// Units and Swarm services' drivers, which stay.
    pub staying: u32,
}

/// [`super::Coordinator::remove_node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRemoved {
    /// Instances that were placed on the node and are now lost.
    pub lost_instances: u32,
    /// Certificates of the node now refused.
    pub revoked_certificates: u32,
}

/// [`super::Coordinator::verify`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    /// Every instance running and every check passed.
    pub healthy: bool,
    pub results: Vec<VerifyResult>,
}

/// One check of one instance, or why it could not be checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyResult {
    pub service: String,
    pub instance: String,
    pub node: String,
    /// Empty when the instance could not be checked.
    pub probe: String,
    pub healthy: bool,
    /// The check's output, or why it could not run.
    pub output: String,
    pub duration_ms: u64,
}

/// Volumes listed (or removed) on the connected nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumesView {
    pub volumes: Vec<NodeVolume>,
    /// Nodes that did not answer, with why.
    pub unreachable: Vec<String>,
}

/// One volume on one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeVolume {
    pub node: String,
    pub name: String,
    pub env: String,
    pub key: String,
    pub anonymous: bool,
    pub used_by: Vec<String>,
    /// Removal: why it stays (empty: removed).
    pub error: String,
}

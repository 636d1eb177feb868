//! `x-convoy.swarm`: a service that runs as a Docker Swarm service, created
//! and updated by the Convoy agent of one of its cluster's managers
//! (docs/SWARM.md). What Swarm takes differently from a plain container
//! (placement constraints in Swarm's own syntax, restart policy, update and
//! rollback config, port modes) is kept here as written.

use serde::{Deserialize, Serialize};

/// The node label that names a Swarm cluster on its managers' agents
/// (`convoy-agent --label convoy.swarm=prod`): `x-convoy.swarm: prod`
/// targets the cluster whose manager agents carry it.
pub const SWARM_LABEL: &str = "convoy.swarm";

/// A service's `x-convoy.swarm` (or the file's top-level one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SwarmFields {
    /// The cluster: its Swarm cluster ID, or the value of the
    /// [`SWARM_LABEL`] label of its managers' agents.
    pub cluster: String,
}

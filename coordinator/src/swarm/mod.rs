//! Docker Swarm (issue 17; docs/SWARM.md): what each node's agent reports
//! of its engine's Swarm membership, kept in the node's facts; the cluster
//! of workers, which Docker tells only managers; and which manager's agent
//! drives a cluster's Swarm services.

pub mod driver;
pub(crate) mod facts;

pub use facts::{fill_worker_clusters, SwarmFacts, SwarmRole};

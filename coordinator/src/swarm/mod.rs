//! Docker Swarm (issue 17; docs/SWARM.md). So far: what each node's agent
//! reports of its engine's Swarm membership, kept in the node's facts, and
//! the cluster of workers, which Docker tells only managers.

pub(crate) mod facts;

pub use facts::{fill_worker_clusters, SwarmFacts, SwarmRole};

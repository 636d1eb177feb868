//! Convoy's wire definitions: the agent stream and the CLI's control API,
//! generated from `proto/`. Wire types only; domain types live in the crates
//! that own them.

pub mod codec;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("convoy.v1");
}

pub use v1::*;

/// The TLS server name every Convoy client verifies on the coordinator's
/// certificate, whatever address it dialed (as Nomad's `server.<region>.nomad`).
pub const COORDINATOR_SERVER_NAME: &str = "coordinator.convoy";

/// The Hello capability of an agent that decodes
/// `CoordinatorMessage.encoded_plan`.
pub const CAPABILITY_ENCODED_PLAN: &str = "encoded-plan";

/// Metadata key carrying the CLI's bearer token.
pub const AUTHORIZATION: &str = "authorization";

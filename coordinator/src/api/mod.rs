//! gRPC handlers: thin adapters that decode, call the state, and map errors
//! to `tonic::Status`.

pub mod agent;
pub mod auth;
pub mod control;
mod convert;
pub mod enroll;
pub mod rbac;
mod watch;

use tonic::Status;

use crate::state::StateError;

impl From<StateError> for Status {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Spec(e) => Status::invalid_argument(e.to_string()),
            e @ (StateError::ServiceNotFound { .. }
            | StateError::NodeNotFound(_)
            | StateError::RegistryNotFound(_)
            | StateError::SecretNotFound { .. }
            | StateError::NotifierNotFound(_)) => Status::not_found(e.to_string()),
            e @ (StateError::Revoked(_) | StateError::NotAllowed(_)) => {
                Status::permission_denied(e.to_string())
            }
            e @ (StateError::Rollout(_)
            | StateError::SecretConflict(_)
            | StateError::PreDeploy(_)) => Status::failed_precondition(e.to_string()),
            e @ StateError::Invalid(_) => Status::invalid_argument(e.to_string()),
            StateError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                Status::unavailable(format!("the coordinator's store failed: {e}"))
            }
            StateError::Secrets(e) => {
                tracing::error!(error = %e, "secrets failure");
                Status::internal(e.to_string())
            }
        }
    }
}

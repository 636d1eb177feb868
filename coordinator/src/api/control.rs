//! `ControlService`: what the CLI calls. Authentication happens before these
//! handlers, in [`super::auth`]; each handler first checks what the caller's
//! role may do ([`authorize`]) and audits every mutating call, refused or
//! not.

use std::{sync::Arc, time::Duration};

use convoy_proto as pb;
use tonic::{Request, Response, Status};

use super::auth::Caller;
use super::rbac::{authorize, Action};
use super::watch::{watch_stream, WatchStream};
use crate::{
    audit::Audit,
    events::Filter,
    secrets::Secret,
    state::{Coordinator, RegistryInfo, RolloutCommand, SecretAction, VolumesView, DEFAULT_ENV},
    tokens::{NewJoinToken, NewToken, Role, TokenError, Tokens},
};

/// `Apply` and `Delete`.
mod apply;
/// `Exec` and `Run` (issue 19).
mod exec;
/// `Logs` (issue 19), and the access path the dashboard shares.
pub mod logs;
/// `CordonNode` and `DrainNode` (issue 19), and `RemoveNode`.
mod nodes;
/// `convoy notify ...` handlers (webhook notifiers).
mod notify;
/// `Watch`, `Verify`, `Status`, `ListNodes` and `ListAudit`.
mod reads;
/// `SetRegistryAuth`, `ListRegistryAuth` and `RemoveRegistryAuth`.
mod registry;
/// `Promote`, `PauseRollout`, `ResumeRollout`, `History` and `Rollback`.
mod rollouts;
/// `convoy secret ...` handlers.
mod secrets;
/// `Snapshot`: the store's dump for `convoyd snapshot save`.
mod snapshot;
/// `CreateToken`, `ListTokens`, `RevokeToken` and `CreateJoinToken`.
mod tokens;
/// `ListVolumes`, `RemoveVolumes` and `delete --volumes`.
mod volumes;

pub struct ControlApi {
    coord: Arc<Coordinator>,
    tokens: Arc<Tokens>,
    audit: Arc<Audit>,
    /// `sha256:HEX` of the CA certificate, handed out with join tokens.
    ca_fingerprint: String,
    /// The delivery engine, for `convoy notify ls|test`.
    notifier: Option<Arc<crate::notify::Notifier>>,
}

impl ControlApi {
    pub fn new(
        coord: Arc<Coordinator>,
        tokens: Arc<Tokens>,
        audit: Arc<Audit>,
        ca_fingerprint: String,
    ) -> Self {
        Self {
            coord,
            tokens,
            audit,
            ca_fingerprint,
            notifier: None,
        }
    }

    /// With the delivery engine of this term (`convoy notify ...`).
    pub fn with_notifier(mut self, notifier: Arc<crate::notify::Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Checks the caller may do `action`; a refusal of a mutating action is
    /// audited.
    async fn allow(
        &self,
        caller: &Caller,
        action: Action<'_>,
        target: &str,
        audited: bool,
    ) -> Result<(), Status> {
        let audit = audited.then_some(&*self.audit);
        allow(audit, caller, action, target)
            .await
            .map_err(Status::permission_denied)
    }

    async fn audited<T>(
        &self,
        caller: &Caller,
        action: Action<'_>,
        target: &str,
        result: &Result<T, Status>,
    ) {
        let outcome = match result {
            Ok(_) => "ok".to_string(),
            Err(s) => s.message().to_string(),
        };
        self.audit
            .record(&caller.who(), action.audit_name(), target, &outcome)
            .await;
    }
}

/// Checks `caller` may do `action`; a refusal is logged, and recorded in
/// `audit` when given. Shared by these handlers and the HTTP port's
/// `/api/logs`.
pub(crate) async fn allow(
    audit: Option<&Audit>,
    caller: &Caller,
    action: Action<'_>,
    target: &str,
) -> Result<(), String> {
    if let Err(msg) = authorize(caller, action) {
        tracing::info!(who = caller.who(), action = action.name(), target, reason = %msg, "refused");
        if let Some(audit) = audit {
            audit
                .record(&caller.who(), action.audit_name(), target, &msg)
                .await;
        }
        return Err(msg);
    }
    Ok(())
}

/// The request's environment, `default` when it names none.
fn env_or_default(env: String) -> String {
    if env.is_empty() {
        DEFAULT_ENV.to_string()
    } else {
        env
    }
}

fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
}

#[tonic::async_trait]
impl pb::control_service_server::ControlService for ControlApi {
    async fn add_notifier(
        &self,
        req: Request<pb::AddNotifierRequest>,
    ) -> Result<Response<pb::NotifierInfo>, Status> {
        self.notifier_add(req).await
    }

    async fn list_notifiers(
        &self,
        req: Request<pb::ListNotifiersRequest>,
    ) -> Result<Response<pb::ListNotifiersResponse>, Status> {
        self.notifier_list(req).await
    }

    async fn remove_notifier(
        &self,
        req: Request<pb::RemoveNotifierRequest>,
    ) -> Result<Response<pb::NotifierInfo>, Status> {
        self.notifier_remove(req).await
    }

    async fn test_notifier(
        &self,
        req: Request<pb::TestNotifierRequest>,
    ) -> Result<Response<pb::TestNotifierResponse>, Status> {
        self.notifier_test(req).await
    }

    async fn set_secret(
        &self,
        req: Request<pb::SetSecretRequest>,
    ) -> Result<Response<pb::SecretInfo>, Status> {
        self.secret_set(req).await
    }

    async fn generate_secret(
        &self,
        req: Request<pb::GenerateSecretRequest>,
    ) -> Result<Response<pb::SecretInfo>, Status> {
        self.secret_generate(req).await
    }

    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        self.secret_list(req).await
    }

    async fn secret_history(
        &self,
        req: Request<pb::SecretHistoryRequest>,
    ) -> Result<Response<pb::SecretHistoryResponse>, Status> {
        self.secret_versions(req).await
    }

    async fn remove_secret(
        &self,
        req: Request<pb::RemoveSecretRequest>,
    ) -> Result<Response<pb::SecretInfo>, Status> {
        self.secret_remove(req).await
    }

    async fn apply(
        &self,
        req: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        self.apply_spec(req).await
    }

    type WatchStream = WatchStream;
    type SnapshotStream = snapshot::SnapshotStream;

    async fn snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.store_snapshot(req).await
    }

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.watch_events(req).await
    }

    async fn promote(
        &self,
        req: Request<pb::RolloutRequest>,
    ) -> Result<Response<pb::RolloutInfo>, Status> {
        self.rollout_command(req, RolloutCommand::Promote, "rollout.promote")
            .await
    }

    async fn pause_rollout(
        &self,
        req: Request<pb::RolloutRequest>,
    ) -> Result<Response<pb::RolloutInfo>, Status> {
        self.rollout_command(req, RolloutCommand::Pause, "rollout.pause")
            .await
    }

    async fn resume_rollout(
        &self,
        req: Request<pb::RolloutRequest>,
    ) -> Result<Response<pb::RolloutInfo>, Status> {
        self.rollout_command(req, RolloutCommand::Resume, "rollout.resume")
            .await
    }

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        self.service_history(req).await
    }

    async fn rollback(
        &self,
        req: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        self.service_rollback(req).await
    }

    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        self.verify_checks(req).await
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.cluster_status(req).await
    }

    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        self.nodes_list(req).await
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.delete_service(req).await
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        self.node_remove(req).await
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        self.token_create(req).await
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        self.token_list(req).await
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        self.token_revoke(req).await
    }

    async fn create_join_token(
        &self,
        req: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::CreateJoinTokenResponse>, Status> {
        self.join_token_create(req).await
    }

    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        self.audit_list(req).await
    }

    async fn set_registry_auth(
        &self,
        req: Request<pb::SetRegistryAuthRequest>,
    ) -> Result<Response<pb::RegistryAuthInfo>, Status> {
        self.registry_set(req).await
    }

    async fn list_registry_auth(
        &self,
        req: Request<pb::ListRegistryAuthRequest>,
    ) -> Result<Response<pb::ListRegistryAuthResponse>, Status> {
        self.registry_list(req).await
    }

    async fn list_volumes(
        &self,
        req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        self.volumes_list(req).await
    }

    async fn remove_volumes(
        &self,
        req: Request<pb::RemoveVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        self.volumes_remove(req).await
    }

    async fn remove_registry_auth(
        &self,
        req: Request<pb::RemoveRegistryAuthRequest>,
    ) -> Result<Response<pb::RegistryAuthInfo>, Status> {
        self.registry_remove(req).await
    }

    async fn cordon_node(
        &self,
        req: Request<pb::CordonNodeRequest>,
    ) -> Result<Response<pb::CordonNodeResponse>, Status> {
        self.cordon(req).await
    }

    async fn drain_node(
        &self,
        req: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        self.drain(req).await
    }

    type LogsStream = logs::LogsStream;

    async fn logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        self.stream_logs(req).await
    }

    type ExecStream = exec::ExecStream;
    type RunStream = exec::ExecStream;

    async fn exec(
        &self,
        req: Request<tonic::Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        self.interactive(req, crate::state::Interactive::Exec).await
    }

    async fn run(
        &self,
        req: Request<tonic::Streaming<pb::ExecInput>>,
    ) -> Result<Response<Self::RunStream>, Status> {
        self.interactive(req, crate::state::Interactive::Run).await
    }
}

/// How long `verify` waits for agents when the request names no timeout.
pub const VERIFY_DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `verify` may wait: each check holds an agent command.
pub const VERIFY_MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// The request's timeout; one over [`VERIFY_MAX_TIMEOUT`] is refused with
/// the limit (it used to be cut to it silently).
fn verify_timeout(timeout_ms: u64) -> Result<Duration, Status> {
    match timeout_ms {
        0 => Ok(VERIFY_DEFAULT_TIMEOUT),
        ms if Duration::from_millis(ms) > VERIFY_MAX_TIMEOUT => {
            Err(Status::invalid_argument(format!(
                "verify timeout {} s is over the limit of {} s: ask for {} s or less",
                ms / 1000,
                VERIFY_MAX_TIMEOUT.as_secs(),
                VERIFY_MAX_TIMEOUT.as_secs()
            )))
        }
        ms => Ok(Duration::from_millis(ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: `verify --timeout` over five minutes was cut silently.
    #[test]
    fn a_verify_timeout_over_the_limit_is_refused_not_cut() {
        assert_eq!(verify_timeout(0).unwrap(), VERIFY_DEFAULT_TIMEOUT);
        assert_eq!(verify_timeout(300_000).unwrap(), VERIFY_MAX_TIMEOUT);
        assert_eq!(verify_timeout(1500).unwrap(), Duration::from_millis(1500));
        let err = verify_timeout(600_000).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("600 s is over the limit of 300 s"),
            "{}",
            err.message()
        );
    }
}

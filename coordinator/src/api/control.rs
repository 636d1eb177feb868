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

/// `Exec` and `Run` (issue 19).
mod exec;
/// `Logs` (issue 19), and the access path the dashboard shares.
pub mod logs;
/// `CordonNode` and `DrainNode` (issue 19).
mod nodes;
/// `convoy secret ...` handlers.
mod notify;
mod secrets;
/// `Snapshot`: the store's dump for `convoyd snapshot save`.
mod snapshot;

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

    /// Promote, pause, resume: deployer rights in the service's env, audited.
    async fn rollout_command(
        &self,
        req: Request<pb::RolloutRequest>,
        command: RolloutCommand,
        audit_action: &str,
    ) -> Result<Response<pb::RolloutInfo>, Status> {
        let caller = caller(&req)?;
        let pb::RolloutRequest { service, env } = req.into_inner();
        let env = env_or_default(env);
        let target = format!("{env}/{service}");
        self.allow(&caller, Action::Apply { env: &env }, &target, true)
            .await?;
        let resp = self
            .coord
            .rollout_command(&service, &env, command)
            .await
            .map_err(Status::from);
        let outcome = match &resp {
            Ok(_) => "ok".to_string(),
            Err(s) => s.message().to_string(),
        };
        self.audit
            .record(&caller.who(), audit_action, &target, &outcome)
            .await;
        Ok(Response::new(resp?.into()))
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

/// The request's environment, `default` when it names none.
/// The most Compose profiles one apply enables.
const MAX_PROFILES: usize = 64;

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

impl From<TokenError> for Status {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::NotFound(_) => Status::not_found(e.to_string()),
            TokenError::Invalid(_) => Status::invalid_argument(e.to_string()),
            TokenError::Store(_) | TokenError::AdminFile { .. } => {
                tracing::error!(error = %e, "token store failure");
                Status::unavailable(format!("the coordinator's store failed: {e}"))
            }
            TokenError::Unknown
            | TokenError::Expired { .. }
            | TokenError::UsedUp(_)
            | TokenError::Revoked { .. }
            | TokenError::JoinTokenAsCli(_) => Status::permission_denied(e.to_string()),
        }
    }
}

fn ttl_ms(seconds: u64) -> Result<i64, Status> {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .ok_or_else(|| Status::invalid_argument("the TTL is too long"))
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
        let caller = caller(&req)?;
        let who = caller.who();
        let pb::ApplyRequest {
            filename,
            content,
            dry_run,
            env,
            profiles,
            env_files,
            config_files,
            config_env,
            secret_files,
            secret_env,
        } = req.into_inner();
        if profiles.len() > MAX_PROFILES || profiles.iter().any(|p| p.len() > 64) {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_PROFILES} profiles of at most 64 characters each"
            )));
        }
        let env = env_or_default(env);
        let filename = if filename.is_empty() {
            "<spec>".to_string()
        } else {
            filename
        };
        let action = Action::Apply { env: &env };
        self.allow(&caller, action, &filename, !dry_run).await?;
        let resp = self
            .coord
            .apply_with(
                &env,
                &filename,
                &content,
                &crate::state::ApplyOptions {
                    profiles,
                    env_files: env_files
                        .into_iter()
                        .map(|(path, file)| (path, file.vars.into_iter().collect()))
                        .collect(),
                    may_run_units: caller.role == Role::Admin,
                    configs: crate::spec::ConfigInputs {
                        files: config_files,
                        env: config_env,
                    },
                    secrets: crate::spec::SecretInputs {
                        files: secret_files
                            .into_iter()
                            .map(|(k, v)| (k, crate::secrets::Secret::new(v)))
                            .collect(),
                        env: secret_env
                            .into_iter()
                            .map(|(k, v)| (k, crate::secrets::Secret::new(v)))
                            .collect(),
                    },
                },
                dry_run,
                &who,
            )
            .await
            .map_err(Status::from);
        match &resp {
            Ok(r) if !dry_run => {
                tracing::info!(who, file = %filename, services = r.services.len(), "apply");
                let names: Vec<_> = r.services.iter().map(|s| s.service.as_str()).collect();
                let target = format!("{filename}: {}", names.join(", "));
                self.audited(&caller, action, &target, &resp).await;
                // Each secret version the apply made is audited on its own,
                // by name and version, as `convoy secret` writes are.
                for s in &r.secrets {
                    let write = match s.action {
                        SecretAction::Created => Action::SecretSet { env: &s.env },
                        SecretAction::Generated => Action::SecretGenerate { env: &s.env },
                        SecretAction::Rotated => Action::SecretRotate { env: &s.env },
                        SecretAction::Unchanged | SecretAction::External => continue,
                    };
                    let target = format!("{}/{} v{} ({filename})", s.env, s.name, s.version);
                    self.audited(&caller, write, &target, &resp).await;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::info!(who, file = %filename, error = %e.message(), "apply refused");
                if !dry_run {
                    self.audited(&caller, action, &filename, &resp).await;
                }
            }
        }
        Ok(Response::new(resp?.into()))
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
        let caller = caller(&req)?;
        self.allow(&caller, Action::Watch, "", false).await?;
        let pb::WatchRequest {
            service,
            node,
            env,
            replay,
        } = req.into_inner();
        let filter = Filter { service, node, env };
        let (backlog, rx) = if replay {
            self.coord.events().subscribe_with_replay()
        } else {
            (Vec::new(), self.coord.events().subscribe())
        };
        Ok(Response::new(watch_stream(
            self.coord.clone(),
            filter,
            backlog,
            rx,
        )))
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
        let caller = caller(&req)?;
        self.allow(&caller, Action::History, "", false).await?;
        let pb::HistoryRequest { service, env } = req.into_inner();
        Ok(Response::new(
            self.coord.history(&service, &env).await?.into(),
        ))
    }

    async fn rollback(
        &self,
        req: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let caller = caller(&req)?;
        let pb::RollbackRequest {
            service,
            env,
            to_revision,
            also,
        } = req.into_inner();
        let env = env_or_default(env);
        let action = Action::Apply { env: &env };
        let target = if also.is_empty() {
            format!("{env}/{service} to r{to_revision}")
        } else {
            format!(
                "{env}/{service},{} to their previous revisions",
                also.join(",")
            )
        };
        self.allow(&caller, action, &target, true).await?;
        let resp = if also.is_empty() {
            self.coord
                .rollback(&service, &env, to_revision, &caller.who())
                .await
        } else if to_revision != 0 {
            Err(crate::state::StateError::Invalid(
                "--to goes with one service only: several services each go back to their previous revision".into(),
            ))
        } else {
            let mut services = vec![service];
            services.extend(also);
            self.coord
                .rollback_together(&services, &env, &caller.who())
                .await
        }
        .map_err(Status::from);
        self.audit
            .record(
                &caller.who(),
                "rollback",
                &target,
                &match &resp {
                    Ok(_) => "ok".to_string(),
                    Err(s) => s.message().to_string(),
                },
            )
            .await;
        Ok(Response::new(resp?.into()))
    }

    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let caller = caller(&req)?;
        self.allow(&caller, Action::Verify, "", false).await?;
        let pb::VerifyRequest {
            service,
            env,
            timeout_ms,
        } = req.into_inner();
        let timeout = verify_timeout(timeout_ms)?;
        let report = self.coord.verify(&service, &env, timeout).await?;
        Ok(Response::new(report.into()))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let caller = caller(&req)?;
        self.allow(&caller, Action::Status, "", false).await?;
        let pb::StatusRequest { service, env } = req.into_inner();
        let mut status = pb::StatusResponse::from(self.coord.status(&service, &env).await);
        status.control_plane = self
            .coord
            .control_plane()
            .await
            .as_ref()
            .map(pb::ControlPlane::from);
        Ok(Response::new(status))
    }

    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let caller = caller(&req)?;
        self.allow(&caller, Action::ListNodes, "", false).await?;
        Ok(Response::new(self.coord.nodes().await.into()))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let caller = caller(&req)?;
        let pb::DeleteRequest {
            service,
            env,
            volumes,
        } = req.into_inner();
        let env = env_or_default(env);
        let action = Action::Delete { env: &env };
        let target = format!("{env}/{service}");
        self.allow(&caller, action, &target, true).await?;
        // Read before the delete: what only this service mounts.
        let volume_keys = if volumes {
            self.coord.volumes_only_of(&env, &service).await
        } else {
            Vec::new()
        };
        let resp = self
            .coord
            .delete(&service, &env)
            .await
            .map_err(Status::from);
        self.audited(&caller, action, &target, &resp).await;
        let resp = resp?;
        tracing::info!(
            who = caller.who(),
            service,
            removed = resp.removed_instances,
            "delete"
        );
        if !volume_keys.is_empty() {
            self.delete_volumes(&caller, &env, &service, &volume_keys)
                .await?;
        }
        Ok(Response::new(resp.into()))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let caller = caller(&req)?;
        let pb::RemoveNodeRequest { node } = req.into_inner();
        self.allow(&caller, Action::RemoveNode, &node, true).await?;
        let resp = self.coord.remove_node(&node).await.map_err(Status::from);
        self.audited(&caller, Action::RemoveNode, &node, &resp)
            .await;
        let resp = resp?;
        tracing::info!(
            who = caller.who(),
            node,
            lost = resp.lost_instances,
            "node remove"
        );
        Ok(Response::new(resp.into()))
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = caller(&req)?;
        let pb::CreateTokenRequest {
            name,
            role,
            envs,
            ttl_seconds,
        } = req.into_inner();
        let target = if name.is_empty() {
            format!("({role})")
        } else {
            format!("{name} ({role})")
        };
        self.allow(&caller, Action::CreateToken, &target, true)
            .await?;
        let made = async {
            let new = NewToken {
                name,
                role: Role::parse_cli(&role)?,
                envs,
                ttl_ms: ttl_ms(ttl_seconds)?,
            };
            Ok::<_, Status>(self.tokens.create(new, &caller.who()).await?)
        }
        .await;
        let target = match &made {
            Ok((rec, _)) => format!("{} ({}, {})", rec.id, rec.name, rec.role),
            Err(_) => target,
        };
        self.audited(&caller, Action::CreateToken, &target, &made)
            .await;
        let (rec, token) = made?;
        tracing::info!(who = caller.who(), id = rec.id, role = %rec.role, "token created");
        Ok(Response::new(pb::CreateTokenResponse {
            info: Some(rec.info()),
            token,
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let caller = caller(&req)?;
        self.allow(&caller, Action::ListTokens, "", false).await?;
        let pb::ListTokensRequest {} = req.into_inner();
        Ok(Response::new(pb::ListTokensResponse {
            tokens: self.tokens.list().iter().map(|r| r.info()).collect(),
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = caller(&req)?;
        let pb::RevokeTokenRequest { id } = req.into_inner();
        self.allow(&caller, Action::RevokeToken, &id, true).await?;
        let done = self.tokens.revoke(&id).await.map_err(Status::from);
        self.audited(&caller, Action::RevokeToken, &id, &done).await;
        let rec = done?;
        tracing::info!(who = caller.who(), id, "token revoked");
        Ok(Response::new(pb::RevokeTokenResponse {
            info: Some(rec.info()),
        }))
    }

    async fn create_join_token(
        &self,
        req: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::CreateJoinTokenResponse>, Status> {
        let caller = caller(&req)?;
        let pb::CreateJoinTokenRequest {
            ttl_seconds,
            labels,
            uses,
            node,
        } = req.into_inner();
        if !node.is_empty() {
            crate::pki::validate_node_name(&node)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        self.allow(&caller, Action::CreateJoinToken, "", true)
            .await?;
        let made = async {
            let new = NewJoinToken {
                ttl_ms: ttl_ms(ttl_seconds)?,
                labels: labels.into_iter().collect(),
                uses,
                node,
            };
            Ok::<_, Status>(self.tokens.create_join(new, &caller.who()).await?)
        }
        .await;
        let target = match &made {
            Ok((rec, _)) => rec.id.clone(),
            Err(_) => String::new(),
        };
        self.audited(&caller, Action::CreateJoinToken, &target, &made)
            .await;
        let (rec, token) = made?;
        tracing::info!(
            who = caller.who(),
            id = rec.id,
            uses = rec.uses_left,
            "join token created"
        );
        Ok(Response::new(pb::CreateJoinTokenResponse {
            info: Some(rec.info()),
            token,
            ca_fingerprint: self.ca_fingerprint.clone(),
        }))
    }

    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let caller = caller(&req)?;
        self.allow(&caller, Action::ListAudit, "", false).await?;
        let pb::ListAuditRequest { since_unix_ms } = req.into_inner();
        let entries = self.audit.list(since_unix_ms).await.map_err(|e| {
            tracing::error!(error = %e, "store failure");
            Status::unavailable(format!("the coordinator's store failed: {e}"))
        })?;
        Ok(Response::new(pb::ListAuditResponse {
            entries: entries.into_iter().map(Into::into).collect(),
        }))
    }

    async fn set_registry_auth(
        &self,
        req: Request<pb::SetRegistryAuthRequest>,
    ) -> Result<Response<pb::RegistryAuthInfo>, Status> {
        let caller = caller(&req)?;
        let pb::SetRegistryAuthRequest {
            server,
            username,
            password,
        } = req.into_inner();
        let password = Secret::new(password);
        // Audited as server and user: the password is in no record or log.
        let target = format!("{server} (user {username})");
        self.allow(&caller, Action::RegistryLogin, &target, true)
            .await?;
        let done = self
            .coord
            .set_registry_auth(&server, &username, password, &caller.who())
            .await
            .map_err(Status::from);
        self.audited(&caller, Action::RegistryLogin, &target, &done)
            .await;
        let info = done?;
        tracing::info!(
            who = caller.who(),
            server = info.server,
            username = info.username,
            "registry login set"
        );
        Ok(Response::new(registry_info(info)))
    }

    async fn list_registry_auth(
        &self,
        req: Request<pb::ListRegistryAuthRequest>,
    ) -> Result<Response<pb::ListRegistryAuthResponse>, Status> {
        let caller = caller(&req)?;
        self.allow(&caller, Action::RegistryList, "", false).await?;
        let pb::ListRegistryAuthRequest {} = req.into_inner();
        let registries = self.coord.registry_auths().await;
        Ok(Response::new(pb::ListRegistryAuthResponse {
            registries: registries.into_iter().map(registry_info).collect(),
        }))
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
        let caller = caller(&req)?;
        let pb::RemoveRegistryAuthRequest { server } = req.into_inner();
        self.allow(&caller, Action::RegistryLogout, &server, true)
            .await?;
        let done = self
            .coord
            .remove_registry_auth(&server)
            .await
            .map_err(Status::from);
        self.audited(&caller, Action::RegistryLogout, &server, &done)
            .await;
        let info = done?;
        tracing::info!(
            who = caller.who(),
            server = info.server,
            "registry login removed"
        );
        Ok(Response::new(registry_info(info)))
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

/// `convoy volumes`, `convoy volumes rm` and `delete --volumes`: as
/// `delete`, a deployer of the environment may.
impl ControlApi {
    /// `delete --volumes`, after the delete: removes `keys`' volumes once
    /// the service's containers are gone; an error names each volume that
    /// stays (the service is deleted either way).
    async fn delete_volumes(
        &self,
        caller: &Caller,
        env: &str,
        service: &str,
        keys: &[String],
    ) -> Result<(), Status> {
        let removal = self
            .coord
            .remove_volumes_when_free(env, keys, DELETE_VOLUMES_WAIT)
            .await;
        let mut stays: Vec<String> = removal
            .volumes
            .iter()
            .filter(|v| !v.error.is_empty())
            .map(|v| format!("`{}` on node `{}`: {}", v.name, v.node, v.error))
            .collect();
        stays.extend(removal.unreachable.iter().cloned());
        let target = format!("{env}/volume {}", keys.join(","));
        let result = if stays.is_empty() {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "{env}/{service} is deleted, but volumes stay: {}; remove them with \
                 `convoy volumes rm KEY --env {env}` once no container uses them",
                stays.join("; ")
            )))
        };
        self.audited(caller, Action::Delete { env }, &target, &result)
            .await;
        result
    }

    async fn volumes_list(
        &self,
        req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let caller = caller(&req)?;
        let pb::ListVolumesRequest { env } = req.into_inner();
        let env = env_or_default(env);
        self.allow(&caller, Action::Delete { env: &env }, &env, false)
            .await?;
        Ok(Response::new(self.coord.list_volumes(&env).await.into()))
    }

    async fn volumes_remove(
        &self,
        req: Request<pb::RemoveVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let caller = caller(&req)?;
        let pb::RemoveVolumesRequest { env, key } = req.into_inner();
        let env = env_or_default(env);
        let action = Action::Delete { env: &env };
        let target = format!("{env}/volume {key}");
        self.allow(&caller, action, &target, true).await?;
        if key.is_empty() {
            return Err(Status::invalid_argument(
                "name the volume's key under the spec's top-level `volumes:`",
            ));
        }
        let resp = self.coord.remove_volumes(&env, &key).await;
        let result: Result<&VolumesView, Status> = Ok(&resp);
        self.audited(&caller, action, &target, &result).await;
        tracing::info!(
            who = caller.who(),
            env,
            key,
            tried = resp.volumes.len(),
            "volumes removed"
        );
        Ok(Response::new(resp.into()))
    }
}

/// How long `delete --volumes` waits for the service's containers to go
/// before it gives up removing their volumes.
const DELETE_VOLUMES_WAIT: Duration = Duration::from_secs(30);

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

fn registry_info(info: RegistryInfo) -> pb::RegistryAuthInfo {
    let RegistryInfo {
        server,
        username,
        set_by,
        set_unix_ms,
    } = info;
    pb::RegistryAuthInfo {
        server,
        username,
        set_by,
        set_unix_ms,
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

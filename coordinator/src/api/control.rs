//! `ControlService`: what the CLI calls. Authentication happens before these
//! handlers, in [`super::auth`]; each handler first checks what the caller's
//! role may do ([`authorize`]) and audits every mutating call, refused or
//! not.

use std::{sync::Arc, time::Duration};

use convoy_proto as pb;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use super::auth::Caller;
use crate::{
    audit::Audit,
    events::Filter,
    state::{Coordinator, RolloutCommand, DEFAULT_ENV},
    tokens::{NewJoinToken, NewToken, Role, TokenError, Tokens},
};

pub struct ControlApi {
    coord: Arc<Coordinator>,
    tokens: Arc<Tokens>,
    audit: Arc<Audit>,
    /// `sha256:HEX` of the CA certificate, handed out with join tokens.
    ca_fingerprint: String,
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
        }
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
        if let Err(msg) = authorize(caller, action) {
            tracing::info!(who = caller.who(), action = action.name(), target, reason = %msg, "refused");
            if audited {
                self.audit
                    .record(&caller.who(), action.audit_name(), target, &msg)
                    .await;
            }
            return Err(Status::permission_denied(msg));
        }
        Ok(())
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
        Ok(Response::new(resp?))
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

/// An RPC as far as authorization is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    Status,
    ListNodes,
    Watch,
    Verify,
    History,
    Apply { env: &'a str },
    Delete { env: &'a str },
    RemoveNode,
    CreateToken,
    ListTokens,
    RevokeToken,
    CreateJoinToken,
    ListAudit,
}

impl Action<'_> {
    /// The CLI command, for messages.
    fn name(self) -> &'static str {
        match self {
            Action::Status => "status",
            Action::ListNodes => "nodes",
            Action::Watch => "events",
            Action::Verify => "verify",
            Action::History => "history",
            Action::Apply { .. } => "apply",
            Action::Delete { .. } => "delete",
            Action::RemoveNode => "node remove",
            Action::CreateToken => "token create",
            Action::ListTokens => "token list",
            Action::RevokeToken => "token revoke",
            Action::CreateJoinToken => "token create --join",
            Action::ListAudit => "audit",
        }
    }

    /// The `action` of audit entries.
    fn audit_name(self) -> &'static str {
        match self {
            Action::Status => "status",
            Action::ListNodes => "nodes",
            Action::Watch => "events",
            Action::Verify => "verify",
            Action::History => "history",
            Action::Apply { .. } => "apply",
            Action::Delete { .. } => "delete",
            Action::RemoveNode => "node.remove",
            Action::CreateToken => "token.create",
            Action::ListTokens => "token.list",
            Action::RevokeToken => "token.revoke",
            Action::CreateJoinToken => "join-token.create",
            Action::ListAudit => "audit.list",
        }
    }
}

/// The role matrix. viewer: status and nodes. deployer: also apply and
/// delete, in its environments only (all when it has none). admin:
/// everything. Join tokens never get this far (the interceptor refuses them).
/// The error is the user-facing refusal.
pub fn authorize(caller: &Caller, action: Action<'_>) -> Result<(), String> {
    let read = matches!(
        action,
        Action::Status | Action::ListNodes | Action::Watch | Action::Verify | Action::History
    );
    let deploy = matches!(action, Action::Apply { .. } | Action::Delete { .. });
    let token = format!("token `{}` ({})", caller.name, caller.role_desc());
    match caller.role {
        Role::Admin => Ok(()),
        Role::Viewer if read => Ok(()),
        Role::Viewer => Err(format!(
            "{token} may only read (status, nodes, events, verify, history); `{}` needs a {} token",
            action.name(),
            if deploy { "deployer or admin" } else { "admin" }
        )),
        Role::Deployer if read => Ok(()),
        Role::Deployer if deploy => {
            let (Action::Apply { env } | Action::Delete { env }) = action else {
                unreachable!("deploy actions carry an environment");
            };
            if caller.envs.is_empty() || caller.envs.iter().any(|e| e == env) {
                Ok(())
            } else {
                Err(format!("{token} may not touch environment `{env}`"))
            }
        }
        Role::Deployer => Err(format!(
            "{token} may read, apply and delete services; `{}` needs an admin token",
            action.name()
        )),
        Role::Join => Err(format!(
            "{token} is a join token: it enrols agents and cannot be used with the CLI"
        )),
    }
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
        } = req.into_inner();
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
            .apply_in(&env, &filename, &content, dry_run, &who)
            .await
            .map_err(Status::from);
        match &resp {
            Ok(r) if !dry_run => {
                tracing::info!(who, file = %filename, services = r.services.len(), "apply");
                let names: Vec<_> = r.services.iter().map(|s| s.service.as_str()).collect();
                let target = format!("{filename}: {}", names.join(", "));
                self.audited(&caller, action, &target, &resp).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::info!(who, file = %filename, error = %e.message(), "apply refused");
                if !dry_run {
                    self.audited(&caller, action, &filename, &resp).await;
                }
            }
        }
        Ok(Response::new(resp?))
    }

    type WatchStream = WatchStream;

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
        Ok(Response::new(self.coord.history(&service, &env).await?))
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
        } = req.into_inner();
        let env = env_or_default(env);
        let action = Action::Apply { env: &env };
        let target = format!("{env}/{service} to r{to_revision}");
        self.allow(&caller, action, &target, true).await?;
        let resp = self
            .coord
            .rollback(&service, &env, to_revision, &caller.who())
            .await
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
        Ok(Response::new(resp?))
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
        let resp = self.coord.verify(&service, &env, timeout).await?;
        Ok(Response::new(resp))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let caller = caller(&req)?;
        self.allow(&caller, Action::Status, "", false).await?;
        let pb::StatusRequest { service, env } = req.into_inner();
        Ok(Response::new(self.coord.status(&service, &env).await))
    }

    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let caller = caller(&req)?;
        self.allow(&caller, Action::ListNodes, "", false).await?;
        Ok(Response::new(self.coord.nodes().await))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let caller = caller(&req)?;
        let pb::DeleteRequest { service, env } = req.into_inner();
        let env = env_or_default(env);
        let action = Action::Delete { env: &env };
        let target = format!("{env}/{service}");
        self.allow(&caller, action, &target, true).await?;
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
        Ok(Response::new(resp))
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
        Ok(Response::new(resp))
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
}

type WatchStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ClusterEvent, Status>> + Send>>;

/// Counts an open watch stream for as long as it lives.
struct WatchOpen(Arc<Coordinator>);

impl WatchOpen {
    fn new(coord: Arc<Coordinator>) -> Self {
        coord
            .metrics()
            .watch_streams
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(coord)
    }
}

impl Drop for WatchOpen {
    fn drop(&mut self) {
        self.0
            .metrics()
            .watch_streams
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A watcher's stream, polled by tonic itself: the replayed events, then
/// the live ones. Events already waiting are taken with `try_recv`, which
/// does not spend the task's cooperative budget, so one turn of the stream's
/// task sends as many as fit before tonic yields; with a forwarding task and
/// a queue, each turn moved at most ~128 and a watcher fell behind at ~20,000
/// events/s among 10,000 busy agent sessions (BENCHMARKS.md, ingest). A
/// reader that still falls behind the bus gets `ResourceExhausted`.
fn watch_stream(
    coord: Arc<Coordinator>,
    filter: Filter,
    backlog: Vec<crate::events::SharedEvent>,
    rx: broadcast::Receiver<crate::events::SharedEvent>,
) -> WatchStream {
    struct State {
        backlog: std::vec::IntoIter<crate::events::SharedEvent>,
        rx: broadcast::Receiver<crate::events::SharedEvent>,
        filter: Filter,
        ended: bool,
        _open: WatchOpen,
    }
    let state = State {
        backlog: backlog.into_iter(),
        rx,
        filter,
        ended: false,
        _open: WatchOpen::new(coord),
    };
    Box::pin(futures::stream::unfold(state, |mut w| async move {
        use broadcast::error::{RecvError, TryRecvError};
        if w.ended {
            return None;
        }
        if let Some(ev) = w.backlog.by_ref().find(|e| w.filter.matches(e)) {
            return Some((Ok((*ev).clone()), w));
        }
        loop {
            let got = match w.rx.try_recv() {
                Ok(ev) => Ok(ev),
                Err(TryRecvError::Empty) => w.rx.recv().await,
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            match got {
                Ok(ev) => {
                    if w.filter.matches(&ev) {
                        return Some((Ok((*ev).clone()), w));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    // A reader this far behind would show a stale world;
                    // end its stream rather than slow anyone.
                    tracing::info!(missed = n, "dropping an event watcher that fell behind");
                    w.ended = true;
                    let status = Status::resource_exhausted(format!(
                        "the event stream fell {n} events behind; reconnect"
                    ));
                    return Some((Err(status), w));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }))
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
    use crate::events::{Ev, CHANNEL};
    use futures::StreamExt;
    use std::sync::atomic::Ordering;

    async fn coordinator() -> (Arc<Coordinator>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn crate::store::Store> =
            Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let coord = Coordinator::load(
            store,
            crate::state::Liveness::default(),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
        (coord, dir)
    }

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

    #[tokio::test]
    async fn a_watch_replays_then_streams_live_events_filtered_and_is_counted() {
        let (coord, _dir) = coordinator().await;
        coord.events().emit(Ev::new("a").node("n1"));
        coord.events().emit(Ev::new("b").node("n2"));
        let (backlog, rx) = coord.events().subscribe_with_replay();
        let filter = Filter {
            node: "n1".into(),
            ..Default::default()
        };
        let mut stream = watch_stream(coord.clone(), filter, backlog, rx);
        assert_eq!(coord.metrics().watch_streams.load(Ordering::Relaxed), 1);
        coord.events().emit(Ev::new("c").node("n2"));
        coord.events().emit(Ev::new("d").node("n1"));
        let first = stream.next().await.unwrap().unwrap();
        let second = stream.next().await.unwrap().unwrap();
        assert_eq!((first.kind.as_str(), second.kind.as_str()), ("a", "d"));
        assert!(second.seq > first.seq);
        drop(stream);
        assert_eq!(coord.metrics().watch_streams.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_the_bus_is_told_and_its_stream_ends() {
        let (coord, _dir) = coordinator().await;
        let rx = coord.events().subscribe();
        let mut stream = watch_stream(coord.clone(), Filter::default(), Vec::new(), rx);
        for _ in 0..CHANNEL + 10 {
            coord.events().emit(Ev::new("x"));
        }
        let err = stream.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("fell 10 events behind"), "{err:?}");
        assert!(stream.next().await.is_none());
    }

    fn caller(role: Role, envs: &[&str]) -> Caller {
        Caller {
            id: "abcd1234".into(),
            name: "t".into(),
            role,
            envs: envs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_role_matrix() {
        use Action::*;
        let staging = Apply { env: "staging" };
        let default = Apply { env: "default" };
        let del_default = Delete { env: "default" };
        let all = [
            Status,
            ListNodes,
            Watch,
            Verify,
            History,
            default,
            staging,
            del_default,
            RemoveNode,
            CreateToken,
            ListTokens,
            RevokeToken,
            CreateJoinToken,
            ListAudit,
        ];
        // (role, envs, allowed actions)
        let table: &[(Role, &[&str], &[Action])] = &[
            (Role::Admin, &[], &all),
            (
                Role::Viewer,
                &[],
                &[Status, ListNodes, Watch, Verify, History],
            ),
            (
                Role::Deployer,
                &[],
                &[
                    Status,
                    ListNodes,
                    Watch,
                    Verify,
                    History,
                    default,
                    staging,
                    del_default,
                ],
            ),
            (
                Role::Deployer,
                &["staging"],
                &[Status, ListNodes, Watch, Verify, History, staging],
            ),
            (Role::Join, &[], &[]),
        ];
        for (role, envs, allowed) in table {
            let c = caller(*role, envs);
            for action in all {
                let got = authorize(&c, action);
                assert_eq!(
                    got.is_ok(),
                    allowed.contains(&action),
                    "{} {action:?}: {got:?}",
                    c.role_desc()
                );
                if let Err(msg) = got {
                    assert!(msg.contains(&c.role_desc()), "{msg}");
                }
            }
        }
    }

    #[test]
    fn refusals_say_what_the_role_may_do() {
        let c = caller(Role::Deployer, &["staging"]);
        assert_eq!(
            authorize(&c, Action::Apply { env: "default" }).unwrap_err(),
            "token `t` (deployer for staging) may not touch environment `default`"
        );
        let v = caller(Role::Viewer, &[]);
        assert_eq!(
            authorize(&v, Action::Apply { env: "default" }).unwrap_err(),
            "token `t` (viewer) may only read (status, nodes, events, verify, history); `apply` needs a deployer or admin token"
        );
        assert_eq!(
            authorize(&caller(Role::Deployer, &[]), Action::CreateToken).unwrap_err(),
            "token `t` (deployer) may read, apply and delete services; `token create` needs an admin token"
        );
    }
}

//! `convoy logs` (docs/LOGS.md): deployer or admin in the environment,
//! audited (who, what, where; never the output). [`open`] is the one path
//! to a log stream: the gRPC handler here and the dashboard's `/api/logs`
//! both call it, so both check and audit alike.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};

use super::*;
use crate::state::{LogsError, LogsQuery};
use convoy_api::logs::InstanceLine;

pub type LogsStream = Pin<Box<dyn Stream<Item = Result<pb::LogLine, Status>> + Send>>;

/// What a caller asks to read, as it arrives.
#[derive(Debug, Clone, Copy)]
pub struct LogsAsk<'a> {
    /// Empty: the default environment.
    pub env: &'a str,
    pub target: &'a str,
    pub follow: bool,
    /// Unix milliseconds; 0: from the start.
    pub since_unix_ms: i64,
    pub tail: Option<u64>,
}

/// Why [`open`] gave no stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogsRefused {
    /// The caller's role may not read logs there (the reason).
    #[error("{0}")]
    Denied(String),
    #[error("since {0} is before 1970")]
    BeforeEpoch(i64),
    #[error(transparent)]
    Target(#[from] LogsError),
}

/// Authorizes `caller` to read logs in the environment (a refusal is
/// audited), resolves the target, audits the outcome and starts the
/// stream (bounded; see [`Coordinator::stream_logs`]).
pub async fn open(
    coord: &Arc<Coordinator>,
    audit: &Audit,
    caller: &Caller,
    ask: LogsAsk<'_>,
) -> Result<mpsc::Receiver<InstanceLine>, LogsRefused> {
    let LogsAsk {
        env,
        target,
        follow,
        since_unix_ms,
        tail,
    } = ask;
    let env = env_or_default(env.to_string());
    let what = format!("{env}/{target}");
    allow(Some(audit), caller, Action::Logs { env: &env }, &what)
        .await
        .map_err(LogsRefused::Denied)?;
    if since_unix_ms < 0 {
        return Err(LogsRefused::BeforeEpoch(since_unix_ms));
    }
    let query = LogsQuery {
        follow,
        since_unix_ms: (since_unix_ms > 0).then_some(since_unix_ms),
        tail,
    };
    let targets = coord.log_targets(&env, target).await;
    let outcome = match &targets {
        Ok(t) => format!(
            "ok ({} instance{}{})",
            t.len(),
            if t.len() == 1 { "" } else { "s" },
            if follow { ", following" } else { "" }
        ),
        Err(e) => e.to_string(),
    };
    audit
        .record(
            &caller.who(),
            Action::Logs { env: &env }.audit_name(),
            &what,
            &outcome,
        )
        .await;
    Ok(coord.stream_logs(targets?, query))
}

impl From<LogsError> for Status {
    fn from(e: LogsError) -> Self {
        match e {
            LogsError::NotFound { .. } => Status::not_found(e.to_string()),
            LogsError::Swarm { .. } | LogsError::NotPlaced { .. } => {
                Status::failed_precondition(e.to_string())
            }
        }
    }
}

impl From<LogsRefused> for Status {
    fn from(e: LogsRefused) -> Self {
        match e {
            LogsRefused::Denied(msg) => Status::permission_denied(msg),
            e @ LogsRefused::BeforeEpoch(_) => Status::invalid_argument(e.to_string()),
            LogsRefused::Target(e) => e.into(),
        }
    }
}

impl ControlApi {
    pub(super) async fn stream_logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<LogsStream>, Status> {
        let caller = caller(&req)?;
        let pb::LogsRequest {
            env,
            target,
            follow,
            since_unix_ms,
            has_tail,
            tail,
        } = req.into_inner();
        let ask = LogsAsk {
            env: &env,
            target: &target,
            follow,
            since_unix_ms,
            tail: has_tail.then_some(tail),
        };
        let lines = open(&self.coord, &self.audit, &caller, ask).await?;
        Ok(Response::new(Box::pin(
            ReceiverStream::new(lines).map(|line| Ok(pb::LogLine::from(line))),
        )))
    }
}

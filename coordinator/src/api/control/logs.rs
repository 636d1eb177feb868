//! `convoy logs` (docs/LOGS.md): deployer or admin in the environment,
//! audited (who, what, where; never the output).

use std::pin::Pin;

use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};

use super::*;
use crate::state::{LogsError, LogsQuery};

pub type LogsStream = Pin<Box<dyn Stream<Item = Result<pb::LogLine, Status>> + Send>>;

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
        let env = env_or_default(env);
        let what = format!("{env}/{target}");
        self.allow(&caller, Action::Logs { env: &env }, &what, true)
            .await?;
        if since_unix_ms < 0 {
            return Err(Status::invalid_argument(format!(
                "since {since_unix_ms} is before 1970"
            )));
        }
        let query = LogsQuery {
            follow,
            since_unix_ms: (since_unix_ms > 0).then_some(since_unix_ms),
            tail: has_tail.then_some(tail),
        };
        let targets = self.coord.log_targets(&env, &target).await;
        let outcome = match &targets {
            Ok(t) => format!(
                "ok ({} instance{}{})",
                t.len(),
                if t.len() == 1 { "" } else { "s" },
                if follow { ", following" } else { "" }
            ),
            Err(e) => e.to_string(),
        };
        self.audit
            .record(
                &caller.who(),
                Action::Logs { env: &env }.audit_name(),
                &what,
                &outcome,
            )
            .await;
        let lines = self.coord.stream_logs(targets?, query);
        Ok(Response::new(Box::pin(ReceiverStream::new(lines).map(Ok))))
    }
}

//! `Promote`, `PauseRollout`, `ResumeRollout`, `History` and `Rollback`:
//! a service's rollouts and revisions.

use super::*;

impl ControlApi {
    /// Promote, pause, resume: deployer rights in the service's env, audited.
    pub(super) async fn rollout_command(
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

    pub(super) async fn service_history(
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

    pub(super) async fn service_rollback(
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
}

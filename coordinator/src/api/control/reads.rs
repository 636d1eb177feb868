//! The read-only calls: `Watch`, `Verify`, `Status`, `ListNodes` and
//! `ListAudit`; none is audited.

use super::*;

impl ControlApi {
    pub(super) async fn watch_events(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
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

    pub(super) async fn verify_checks(
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

    pub(super) async fn cluster_status(
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

    pub(super) async fn nodes_list(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let caller = caller(&req)?;
        self.allow(&caller, Action::ListNodes, "", false).await?;
        Ok(Response::new(self.coord.nodes().await.into()))
    }

    pub(super) async fn audit_list(
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

//! `ControlService`: what the CLI calls. Authentication happens before these
//! handlers, in [`super::auth`].

use std::sync::Arc;

use convoy_proto as pb;
use tonic::{Request, Response, Status};

use super::auth::Caller;
use crate::state::Coordinator;

pub struct ControlApi {
    coord: Arc<Coordinator>,
}

impl ControlApi {
    pub fn new(coord: Arc<Coordinator>) -> Self {
        Self { coord }
    }
}

fn caller<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<Caller>()
        .map(|c| c.0.clone())
        .unwrap_or_else(|| "unknown".to_string())
}

#[tonic::async_trait]
impl pb::control_service_server::ControlService for ControlApi {
    async fn apply(
        &self,
        req: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let who = caller(&req);
        let pb::ApplyRequest {
            filename,
            content,
            dry_run,
        } = req.into_inner();
        let filename = if filename.is_empty() {
            "<spec>".to_string()
        } else {
            filename
        };
        let resp = self.coord.apply(&filename, &content, dry_run, &who).await;
        match &resp {
            Ok(r) if !dry_run => tracing::info!(
                who,
                file = %filename,
                services = r.services.len(),
                "apply"
            ),
            Ok(_) => {}
            Err(e) => tracing::info!(who, file = %filename, error = %e, "apply refused"),
        }
        Ok(Response::new(resp?))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let pb::StatusRequest { service, env } = req.into_inner();
        Ok(Response::new(self.coord.status(&service, &env).await))
    }

    async fn list_nodes(
        &self,
        _req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        Ok(Response::new(self.coord.nodes().await))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let who = caller(&req);
        let pb::DeleteRequest { service, env } = req.into_inner();
        let resp = self.coord.delete(&service, &env).await?;
        tracing::info!(who, service, removed = resp.removed_instances, "delete");
        Ok(Response::new(resp))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let who = caller(&req);
        let pb::RemoveNodeRequest { node } = req.into_inner();
        let resp = self.coord.remove_node(&node).await?;
        tracing::info!(who, node, lost = resp.lost_instances, "node remove");
        Ok(Response::new(resp))
    }
}

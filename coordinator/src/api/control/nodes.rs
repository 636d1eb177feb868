//! `CordonNode` and `DrainNode` (issue 19): admin only, audited like
//! `RemoveNode`, refused or not; and `RemoveNode` itself.

use super::*;

impl ControlApi {
    pub(super) async fn cordon(
        &self,
        req: Request<pb::CordonNodeRequest>,
    ) -> Result<Response<pb::CordonNodeResponse>, Status> {
        let caller = caller(&req)?;
        let pb::CordonNodeRequest { node, cordon } = req.into_inner();
        let action = if cordon {
            Action::CordonNode
        } else {
            Action::UncordonNode
        };
        self.allow(&caller, action, &node, true).await?;
        let resp = self.coord.cordon(&node, cordon).await.map_err(Status::from);
        self.audited(&caller, action, &node, &resp).await;
        let resp = resp?;
        tracing::info!(who = caller.who(), node, cordon, "node cordon");
        Ok(Response::new(resp.into()))
    }

    pub(super) async fn drain(
        &self,
        req: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        let caller = caller(&req)?;
        let pb::DrainNodeRequest { node } = req.into_inner();
        self.allow(&caller, Action::DrainNode, &node, true).await?;
        let resp = self.coord.drain(&node).await.map_err(Status::from);
        self.audited(&caller, Action::DrainNode, &node, &resp).await;
        let resp = resp?;
        tracing::info!(
            who = caller.who(),
            node,
            instances = resp.instances,
            "node drain"
        );
        Ok(Response::new(resp.into()))
    }

    pub(super) async fn node_remove(
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
}

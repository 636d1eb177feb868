//! `ListVolumes`, `RemoveVolumes` and the volume half of `delete --volumes`.

use super::*;

/// `convoy volumes`, `convoy volumes rm` and `delete --volumes`: as
/// `delete`, a deployer of the environment may.
impl ControlApi {
    /// `delete --volumes`, after the delete: removes `keys`' volumes once
    /// the service's containers are gone; an error names each volume that
    /// stays (the service is deleted either way).
    pub(super) async fn delete_volumes(
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

    pub(super) async fn volumes_list(
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

    pub(super) async fn volumes_remove(
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

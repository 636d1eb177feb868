//! `SetRegistryAuth`, `ListRegistryAuth` and `RemoveRegistryAuth`: the
//! registry logins the agents pull with; the password is in no record or log.

use super::*;

impl ControlApi {
    pub(super) async fn registry_set(
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

    pub(super) async fn registry_list(
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

    pub(super) async fn registry_remove(
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

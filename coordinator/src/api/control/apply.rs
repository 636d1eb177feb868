//! `Apply` and `Delete`: the writes of a spec and its removal; deployer
//! rights in the environment, audited (a dry run is not).

use super::*;

/// The most Compose profiles one apply enables.
const MAX_PROFILES: usize = 64;

impl ControlApi {
    pub(super) async fn apply_spec(
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

    pub(super) async fn delete_service(
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
}

//! `convoy secret ...` (issue 15): set, generate, rotate, list, history and
//! remove the secrets of an environment. A deployer may write those of its
//! environments, a viewer list them; every write is audited by name and
//! version, refused or not. No handler answers with a value, logs one or
//! puts one in an error.

use super::*;
use crate::api::rbac::sees_env;
use crate::state::{
    Charset, SecretInfo, SecretValue, SecretVersionInfo, SecretWrite, DEFAULT_GENERATED_LENGTH,
    MAX_SECRET_BYTES, MAX_SECRET_NAME,
};

impl ControlApi {
    pub(super) async fn secret_set(
        &self,
        req: Request<pb::SetSecretRequest>,
    ) -> Result<Response<pb::SecretInfo>, Status> {
        let caller = caller(&req)?;
        let pb::SetSecretRequest {
            env,
            name,
            value,
            rotate,
        } = req.into_inner();
        // Held as a secret at once: zeroed when dropped, never printed.
        let value = Secret::new(value);
        let env = env_or_default(env);
        let action = if rotate {
            Action::SecretRotate { env: &env }
        } else {
            Action::SecretSet { env: &env }
        };
        let target = target(&env, &name);
        self.allow(&caller, action, &target, true).await?;
        // Bounded before anything else is done with it.
        let done = if value.expose().len() > MAX_SECRET_BYTES {
            Err(Status::invalid_argument(format!(
                "the value of secret `{name}` in environment `{env}` is over {MAX_SECRET_BYTES} bytes"
            )))
        } else {
            let write = if rotate {
                SecretWrite::Rotate
            } else {
                SecretWrite::Create
            };
            self.coord
                .write_secret(&env, &name, SecretValue::Given(value), write, &caller.who())
                .await
                .map_err(Status::from)
        };
        self.secret_written(&caller, action, &target, done).await
    }

    pub(super) async fn secret_generate(
        &self,
        req: Request<pb::GenerateSecretRequest>,
    ) -> Result<Response<pb::SecretInfo>, Status> {
        let caller = caller(&req)?;
        let pb::GenerateSecretRequest {
            env,
            name,
            length,
            charset,
            rotate,
        } = req.into_inner();
        let env = env_or_default(env);
        let action = if rotate {
            Action::SecretRotate { env: &env }
        } else {
            Action::SecretGenerate { env: &env }
        };
        let target = target(&env, &name);
        self.allow(&caller, action, &target, true).await?;
        let done = async {
            let charset = Charset::parse(&charset)?;
            let length = if length == 0 {
                DEFAULT_GENERATED_LENGTH
            } else {
                length
            };
            let write = if rotate {
                SecretWrite::Rotate
            } else {
                SecretWrite::Create
            };
            self.coord
                .write_secret(
                    &env,
                    &name,
                    SecretValue::Generate { length, charset },
                    write,
                    &caller.who(),
                )
                .await
        }
        .await
        .map_err(Status::from);
        self.secret_written(&caller, action, &target, done).await
    }

    /// Audits a write by name and version, logs it, answers with its info.
    async fn secret_written(
        &self,
        caller: &Caller,
        action: Action<'_>,
        target: &str,
        done: Result<SecretInfo, Status>,
    ) -> Result<Response<pb::SecretInfo>, Status> {
        let target = match &done {
            Ok(info) => format!("{target} v{}", info.version),
            Err(_) => target.to_string(),
        };
        self.audited(caller, action, &target, &done).await;
        let info = done?;
        tracing::info!(
            who = caller.who(),
            env = info.env,
            secret = info.name,
            version = info.version,
            action = action.audit_name(),
            "secret written"
        );
        Ok(Response::new(secret_info(info)))
    }

    pub(super) async fn secret_list(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        let caller = caller(&req)?;
        let pb::ListSecretsRequest { env } = req.into_inner();
        self.allow(&caller, Action::SecretList { env: &env }, &env, false)
            .await?;
        let secrets = self
            .coord
            .secrets(&env, |e| sees_env(&caller, e))
            .await
            .into_iter()
            .map(secret_info)
            .collect();
        Ok(Response::new(pb::ListSecretsResponse { secrets }))
    }

    pub(super) async fn secret_versions(
        &self,
        req: Request<pb::SecretHistoryRequest>,
    ) -> Result<Response<pb::SecretHistoryResponse>, Status> {
        let caller = caller(&req)?;
        let pb::SecretHistoryRequest { env, name } = req.into_inner();
        let env = env_or_default(env);
        let target = target(&env, &name);
        self.allow(&caller, Action::SecretHistory { env: &env }, &target, false)
            .await?;
        let (info, versions) = self.coord.secret_history(&env, &name).await?;
        Ok(Response::new(pb::SecretHistoryResponse {
            secret: Some(secret_info(info)),
            versions: versions.into_iter().map(version_info).collect(),
        }))
    }

    pub(super) async fn secret_remove(
        &self,
        req: Request<pb::RemoveSecretRequest>,
    ) -> Result<Response<pb::SecretInfo>, Status> {
        let caller = caller(&req)?;
        let pb::RemoveSecretRequest { env, name } = req.into_inner();
        let env = env_or_default(env);
        let action = Action::SecretRemove { env: &env };
        let target = target(&env, &name);
        self.allow(&caller, action, &target, true).await?;
        let done = self
            .coord
            .remove_secret(&env, &name)
            .await
            .map_err(Status::from);
        self.secret_written(&caller, action, &target, done).await
    }
}

/// `ENV/NAME` for the audit log and refusals, each cut to the longest
/// valid length: a request's names are not checked before the audit.
fn target(env: &str, name: &str) -> String {
    let cut = |s: &str, max: usize| -> String {
        if s.chars().count() > max {
            format!("{}…", s.chars().take(max).collect::<String>())
        } else {
            s.to_string()
        }
    };
    format!("{}/{}", cut(env, 63), cut(name, MAX_SECRET_NAME))
}

fn secret_info(info: SecretInfo) -> pb::SecretInfo {
    let SecretInfo {
        env,
        name,
        version,
        updated_unix_ms,
        updated_by,
        origin,
        versions,
        used_by,
    } = info;
    pb::SecretInfo {
        env,
        name,
        version,
        updated_unix_ms,
        updated_by,
        versions,
        used_by,
        origin,
    }
}

fn version_info(v: SecretVersionInfo) -> pb::SecretVersionInfo {
    let SecretVersionInfo {
        version,
        created_unix_ms,
        created_by,
        origin,
        current,
    } = v;
    pb::SecretVersionInfo {
        version,
        created_unix_ms,
        created_by,
        origin,
        current,
    }
}

#[cfg(test)]
mod tests;

//! Writing a secret: `set`, `generate` and `rotate` make a version, sealed
//! and stored through the commit path, and a rotation rolls the services
//! and units that use it.

use super::*;

impl Coordinator {
    /// Sets, generates or rotates secret `name` of `env` (default when
    /// empty): a new version, sealed, stored through the commit path.
    pub async fn write_secret(
        &self,
        env: &str,
        name: &str,
        value: SecretValue,
        write: SecretWrite,
        by: &str,
    ) -> Result<SecretInfo, StateError> {
        let env = convoy_api::env::or_default(env).to_string();
        check_env_name(&env)?;
        check_secret_name(name)?;
        let (value, origin) = match value {
            SecretValue::Given(value) => {
                if value.expose().is_empty() {
                    return Err(StateError::Invalid(format!(
                        "the value of secret `{name}` in environment `{env}` is empty"
                    )));
                }
                if value.expose().len() > MAX_SECRET_BYTES {
                    return Err(StateError::Invalid(format!(
                        "the value of secret `{name}` in environment `{env}` is over \
                         {MAX_SECRET_BYTES} bytes"
                    )));
                }
                (value, "set".to_string())
            }
            SecretValue::Generate { length, charset } => {
                if length == 0 || length > MAX_GENERATED_LENGTH {
                    return Err(StateError::Invalid(format!(
                        "cannot generate secret `{name}` in environment `{env}`: the length \
                         must be 1 to {MAX_GENERATED_LENGTH}, not {length}"
                    )));
                }
                (
                    generate_value(length, charset),
                    format!("generated ({length} {})", charset.word()),
                )
            }
        };
        let key = secret_key(&env, name);
        let mut txn = self.begin("secret").await;
        let existing = txn
            .desired()
            .secrets
            .get(&(env.clone(), name.to_string()))
            .cloned();
        let mut record = match (existing, write) {
            (Some(_), SecretWrite::Create) => {
                return Err(StateError::SecretConflict(format!(
                    "secret `{name}` already exists in environment `{env}`: \
                     `convoy secret rotate {name}` makes a new version"
                )));
            }
            (None, SecretWrite::Rotate) => {
                return Err(StateError::SecretNotFound {
                    name: name.to_string(),
                    env,
                });
            }
            (Some(rec), SecretWrite::Rotate) => rec,
            (None, SecretWrite::Create) => SecretRecord {
                env: env.clone(),
                name: name.to_string(),
                versions: Vec::new(),
            },
        };
        let version = self.push_version(&mut record, value, origin, by);
        txn.put(Op::put_json(key, &record));
        Arc::make_mut(&mut txn.stage().secrets).insert((env.clone(), name.to_string()), record);
        // A rotation rolls exactly the services and units that use the
        // secret onto the new version, through their update gates.
        if write == SecretWrite::Rotate {
            self.roll_consumers(&mut txn, &env, name, version, by)
                .await?;
            txn.emit(
                Ev::new(EventKind::SecretRotated)
                    .env(&env)
                    .field("secret", name)
                    .field("version", version)
                    .field("by", by)
                    .msg(format!(
                        "secret `{name}` of environment `{env}` rotated to version {version} by {by}"
                    )),
            );
        }
        let info = txn
            .desired()
            .secrets
            .get(&(env.clone(), name.to_string()))
            .map(|r| r.info(secret_users(txn.desired(), &env, name)))
            .ok_or_else(|| StateError::SecretNotFound {
                name: name.to_string(),
                env: env.clone(),
            })?;
        txn.commit().await?;
        Ok(info)
    }

    /// Seals `value` as the next version of `record` (dropping versions
    /// beyond [`KEEP_VERSIONS`]); returns its number.
    pub(super) fn push_version(
        &self,
        record: &mut SecretRecord,
        value: Secret<Vec<u8>>,
        origin: String,
        by: &str,
    ) -> u64 {
        let version = record.current().map(|v| v.version).unwrap_or(0) + 1;
        let sealed = self.sealer.seal_envelope(
            &version_context(&record.env, &record.name, version),
            value.expose().as_slice(),
        );
        drop(value);
        record.versions.push(SecretVersion {
            version,
            created_unix_ms: now_unix_ms(),
            created_by: by.to_string(),
            origin,
            sealed,
        });
        let excess = record.versions.len().saturating_sub(KEEP_VERSIONS);
        record.versions.drain(..excess);
        version
    }

    /// Stages a new revision of every service and unit of `env` that uses
    /// secret `name`, pinning `version`, and starts their rollouts as an
    /// apply does (a failed one rolls back to the revision, and so the
    /// version, it replaced). Nothing else is touched.
    async fn roll_consumers(
        &self,
        txn: &mut Txn<'_>,
        env: &str,
        name: &str,
        version: u64,
        by: &str,
    ) -> Result<(), StateError> {
        let services: Vec<(String, ServiceSpec)> = txn
            .desired()
            .services
            .values()
            .filter(|r| !r.deleted && r.env == env)
            .filter(|r| pinned_version(&r.spec, name).is_some_and(|v| v != version))
            .map(|r| {
                let mut spec = r.spec.clone();
                for m in spec.secrets.iter_mut().filter(|m| m.name == name) {
                    m.version = version;
                }
                for s in spec.ingress.iter_mut().flat_map(|i| i.secrets_mut()) {
                    if s.name == name {
                        s.version = version;
                    }
                }
                (r.name.clone(), spec)
            })
            .collect();
        if services.is_empty() {
            return Ok(());
        }
        let now = now_unix_ms();
        let connected = self.connected();
        let source = format!("secret rotate {name} (v{version})");
        let (next, ops, _) = txn.parts();
        for (service, spec) in &services {
            self.check_ingress_certs(&next.secrets, env, spec)
                .map_err(|e| {
                    StateError::Invalid(format!(
                        "secret `{name}` of environment `{env}` was not rotated: service \
                         `{service}`'s ingress certificate {e} (a certificate and its key in \
                         two secrets change together with `convoy apply`; or keep both in \
                         one secret)"
                    ))
                })?;
        }
        let nodes = node_views(next, &connected);
        let candidates = candidates(&nodes);
        let (changes, superseded) =
            stage_all(next, &candidates, env, services, by, &source, now, ops)?;
        let response = Arc::new(ApplyOutcome {
            services: changes,
            ..Default::default()
        });
        self.start_rollouts(txn, env, &response, superseded, by, now)
            .await;
        Ok(())
    }
}

//! Secrets as stored: loading (each version must open), listing, history,
//! removal, the re-wrap under a new key, and opening a value (tests).

use super::*;

impl Coordinator {
    /// Reads every stored secret and checks that each version opens with
    /// this coordinator's key (on load; a wrong key stops the start,
    /// naming the record).
    pub(in crate::state) async fn load_secrets(
        &self,
    ) -> Result<BTreeMap<(String, String), SecretRecord>, StateError> {
        let mut secrets = BTreeMap::new();
        for (_, rec) in store::scan_json::<SecretRecord>(&*self.store, "secrets/").await? {
            for v in &rec.versions {
                self.sealer
                    .open_envelope(&version_context(&rec.env, &rec.name, v.version), &v.sealed)?;
            }
            secrets.insert((rec.env.clone(), rec.name.clone()), rec);
        }
        Ok(secrets)
    }

    /// The secrets of the environments `visible` allows (all when `env` is
    /// empty, else that one), by environment and name; never values.
    pub async fn secrets(&self, env: &str, visible: impl Fn(&str) -> bool) -> Vec<SecretInfo> {
        let desired = self.desired.lock().await;
        desired
            .secrets
            .values()
            .filter(|r| (env.is_empty() || r.env == env) && visible(&r.env))
            .map(|r| r.info(secret_users(&desired, &r.env, &r.name)))
            .collect()
    }

    /// The kept versions of a secret, oldest first; never values.
    pub async fn secret_history(
        &self,
        env: &str,
        name: &str,
    ) -> Result<(SecretInfo, Vec<SecretVersionInfo>), StateError> {
        let env = convoy_api::env::or_default(env).to_string();
        let desired = self.desired.lock().await;
        let rec = desired
            .secrets
            .get(&(env.clone(), name.to_string()))
            .ok_or_else(|| StateError::SecretNotFound {
                name: name.to_string(),
                env: env.clone(),
            })?;
        let current = rec.current().map(|v| v.version);
        let versions = rec
            .versions
            .iter()
            .map(|v| SecretVersionInfo {
                version: v.version,
                created_unix_ms: v.created_unix_ms,
                created_by: v.created_by.clone(),
                origin: v.origin.clone(),
                current: Some(v.version) == current,
            })
            .collect();
        Ok((rec.info(secret_users(&desired, &env, name)), versions))
    }

    /// Removes a secret and all its versions; refused while a service or
    /// unit uses it, naming them.
    pub async fn remove_secret(&self, env: &str, name: &str) -> Result<SecretInfo, StateError> {
        let env = convoy_api::env::or_default(env).to_string();
        let mut txn = self.begin("secret remove").await;
        let key = (env.clone(), name.to_string());
        let Some(rec) = txn.desired().secrets.get(&key).cloned() else {
            return Err(StateError::SecretNotFound {
                name: name.to_string(),
                env,
            });
        };
        let users = secret_users(txn.desired(), &env, name);
        if !users.is_empty() {
            return Err(StateError::SecretConflict(format!(
                "secret `{name}` in environment `{env}` is used by {}: remove it from \
                 their specs first",
                users.join(", ")
            )));
        }
        Arc::make_mut(&mut txn.stage().secrets).remove(&key);
        txn.put(Op::Delete(secret_key(&env, name)));
        txn.commit().await?;
        Ok(rec.info(Vec::new()))
    }

    /// Re-wraps every secret's data keys and re-seals every registry
    /// password under `to`, in one store batch (`convoyd secrets rewrap`,
    /// with the coordinator stopped). Every value is opened with the
    /// current key first: one that does not open stops it before anything
    /// is written.
    pub async fn rewrap_all(&self, to: &Sealer) -> Result<Rewrapped, StateError> {
        let mut done = Rewrapped::default();
        let mut txn = self.begin("secrets rewrap").await;
        let secrets: Vec<SecretRecord> = txn.desired().secrets.values().cloned().collect();
        let mut rewrapped = BTreeMap::new();
        for mut rec in secrets {
            for v in &mut rec.versions {
                let context = version_context(&rec.env, &rec.name, v.version);
                v.sealed = self.sealer.rewrap(to, &context, &v.sealed)?;
                done.versions += 1;
            }
            done.secrets += 1;
            txn.put(Op::put_json(secret_key(&rec.env, &rec.name), &rec));
            rewrapped.insert((rec.env.clone(), rec.name.clone()), rec);
        }
        let logins: Vec<RegistryLogin> = txn.desired().registries.values().cloned().collect();
        for login in logins {
            let key = registry_key(&login.server);
            let record = RegistryRecord {
                server: login.server.clone(),
                username: login.username.clone(),
                password: to.seal(&key, login.password.expose().as_bytes()),
                set_by: login.set_by.clone(),
                set_unix_ms: login.set_unix_ms,
            };
            txn.put(Op::put_json(key, &record));
            done.registry_logins += 1;
        }
        let notifiers: Vec<NotifierTarget> = txn.desired().notifiers.values().cloned().collect();
        for target in notifiers {
            if target.secret.is_some() {
                let record = Self::resealed_notifier(&target, to);
                txn.put(Op::put_json(notifier_key(&target.name), &record));
                done.notifiers += 1;
            }
        }
        txn.stage().secrets = Arc::new(rewrapped);
        // The store's key check (server::check_trust) follows the key, in
        // the same batch.
        txn.put(crate::server::key_check(to));
        txn.commit().await?;
        Ok(done)
    }

    /// Opens the current value of a secret (tests; delivery will use it).
    #[cfg(test)]
    pub(in crate::state) async fn open_secret(
        &self,
        env: &str,
        name: &str,
    ) -> Result<Secret<Vec<u8>>, StateError> {
        let desired = self.desired.lock().await;
        let rec = desired
            .secrets
            .get(&(env.to_string(), name.to_string()))
            .ok_or_else(|| StateError::SecretNotFound {
                name: name.to_string(),
                env: env.to_string(),
            })?;
        let v = rec.current().ok_or_else(|| StateError::SecretNotFound {
            name: name.to_string(),
            env: env.to_string(),
        })?;
        Ok(self
            .sealer
            .open_envelope(&version_context(env, name, v.version), &v.sealed)?)
    }
}

//! What an apply does to the secrets its services use: top-level entries
//! resolved in the environment's store, mounts pinned to versions, and
//! ingress certificates checked at the versions they pin.

use super::*;

impl Coordinator {
    /// What an apply does to the secrets its services use: each one's
    /// top-level entry is resolved in `env`'s store (a `file:` or
    /// `environment:` value makes the first version, or a new one when it
    /// differs from the current; `x-convoy.generate` makes one if there is
    /// none; `external` must exist), staged in `next`/`ops`, and every
    /// mount pins the version that results. Values are sealed at once and
    /// dropped; nothing here names one.
    pub(in crate::state) fn resolve_secrets(
        &self,
        next: &mut Desired,
        ops: &mut Vec<Op>,
        env: &str,
        filename: &str,
        file: &mut spec::SpecFile,
        who: &str,
    ) -> Result<Vec<SecretChange>, StateError> {
        let used: std::collections::BTreeSet<String> = file
            .services
            .values()
            .flat_map(|s| {
                s.secrets.iter().map(|m| m.source.clone()).chain(
                    s.ingress
                        .iter()
                        .flat_map(|i| i.secrets().map(|r| r.source.clone())),
                )
            })
            .collect();
        let mut changes = Vec::with_capacity(used.len());
        // By store name: two entries naming one secret must agree.
        let mut resolved: BTreeMap<String, (String, u64)> = BTreeMap::new();
        let mut versions: BTreeMap<String, u64> = BTreeMap::new();
        for key in used {
            let decl = file.secrets.get_mut(&key).ok_or_else(|| {
                StateError::Invalid(format!(
                    "{filename}: secrets: the services use secret `{key}`, which the \
                     top-level `secrets:` does not declare"
                ))
            })?;
            let name = decl.name.clone();
            check_secret_name(&name)?;
            if let Some((other, version)) = resolved.get(&name) {
                if decl.value.is_some() || !matches!(decl.source, spec::SecretSource::External) {
                    return Err(StateError::Invalid(format!(
                        "{filename}: secrets.{key}: it names secret `{name}`, as \
                         `secrets.{other}` does: give each secret one entry"
                    )));
                }
                versions.insert(key, *version);
                continue;
            }
            let store_key = (env.to_string(), name.clone());
            let existing = next.secrets.get(&store_key).cloned();
            let mut record = existing.clone().unwrap_or_else(|| SecretRecord {
                env: env.to_string(),
                name: name.clone(),
                versions: Vec::new(),
            });
            let current = record.current().map(|v| v.version);
            let (action, wrote) = match (&decl.source, current) {
                (spec::SecretSource::External, Some(_)) => (SecretAction::External, false),
                (spec::SecretSource::External, None) => {
                    return Err(StateError::Invalid(format!(
                        "{filename}: secrets.{key}: `external: true`, but environment `{env}` \
                         has no secret `{name}`: create it with `convoy secret set {name} \
                         --env {env}` (or `convoy secret generate`), then apply again"
                    )));
                }
                (spec::SecretSource::Generate { .. }, Some(_)) => (SecretAction::Unchanged, false),
                (spec::SecretSource::Generate { length, charset }, None) => {
                    let charset = Charset::parse(charset)?;
                    if *length == 0 || *length > MAX_GENERATED_LENGTH {
                        return Err(StateError::Invalid(format!(
                            "{filename}: secrets.{key}: the length must be 1 to \
                             {MAX_GENERATED_LENGTH}, not {length}"
                        )));
                    }
                    let value = generate_value(*length, charset);
                    let origin = format!(
                        "generated ({length} {}) by apply {filename}",
                        charset.word()
                    );
                    self.push_version(&mut record, value, origin, who);
                    (SecretAction::Generated, true)
                }
                (spec::SecretSource::File(_) | spec::SecretSource::Environment(_), _) => {
                    let value = decl.value.take().ok_or_else(|| {
                        StateError::Invalid(format!(
                            "{filename}: secrets.{key}: its value was not sent with the spec: \
                             `convoy apply` reads the files and variables of `secrets:` and \
                             sends them"
                        ))
                    })?;
                    if value.expose().is_empty() || value.expose().len() > MAX_SECRET_BYTES {
                        return Err(StateError::Invalid(format!(
                            "{filename}: secrets.{key}: the value must be 1 to \
                             {MAX_SECRET_BYTES} bytes"
                        )));
                    }
                    let same = match record.current() {
                        Some(v) => {
                            let open = self.sealer.open_envelope(
                                &version_context(env, &name, v.version),
                                &v.sealed,
                            )?;
                            open.expose() == value.expose()
                        }
                        None => false,
                    };
                    if same {
                        (SecretAction::Unchanged, false)
                    } else {
                        let from = match &decl.source {
                            spec::SecretSource::File(path) => format!("file {path}"),
                            spec::SecretSource::Environment(var) => format!("variable {var}"),
                            _ => String::new(),
                        };
                        let origin = format!("apply {filename} ({from})");
                        self.push_version(&mut record, value, origin, who);
                        (
                            if current.is_some() {
                                SecretAction::Rotated
                            } else {
                                SecretAction::Created
                            },
                            true,
                        )
                    }
                }
            };
            let version = record.current().map(|v| v.version).unwrap_or(0);
            if wrote {
                ops.push(Op::put_json(secret_key(env, &name), &record));
                Arc::make_mut(&mut next.secrets).insert(store_key, record);
            }
            changes.push(SecretChange {
                env: env.to_string(),
                name: name.clone(),
                action,
                version,
            });
            resolved.insert(name, (key.clone(), version));
            versions.insert(key, version);
        }
        for spec in file.services.values_mut() {
            for m in &mut spec.secrets {
                if let Some(v) = versions.get(&m.source) {
                    m.version = *v;
                }
            }
            for s in spec.ingress.iter_mut().flat_map(|i| i.secrets_mut()) {
                if let Some(v) = versions.get(&s.source) {
                    s.version = *v;
                }
            }
        }
        for (service, spec) in &file.services {
            self.check_ingress_certs(&next.secrets, env, spec)
                .map_err(|e| {
                    StateError::Invalid(format!(
                        "{filename}: services.{service}.x-convoy.ingress.tls: {e}"
                    ))
                })?;
        }
        Ok(changes)
    }

    /// Checks each certificate of `spec`'s ingress at the versions it pins
    /// (`certs::check_pair`); the error names the entry.
    pub(super) fn check_ingress_certs(
        &self,
        secrets: &BTreeMap<(String, String), SecretRecord>,
        env: &str,
        spec: &ServiceSpec,
    ) -> Result<(), String> {
        let open = |s: &spec::IngressSecret| -> Result<Secret<Vec<u8>>, String> {
            let version = secrets
                .get(&(env.to_string(), s.name.clone()))
                .and_then(|r| r.versions.iter().find(|v| v.version == s.version))
                .ok_or_else(|| format!("secret `{}` has no version {}", s.name, s.version))?;
            self.sealer
                .open_envelope(&version_context(env, &s.name, s.version), &version.sealed)
                .map_err(|e| format!("secret `{}` does not open: {e}", s.name))
        };
        for (index, tls) in spec.ingress.iter().flat_map(|i| &i.tls).enumerate() {
            let chain = open(&tls.certificate)?;
            let key = open(&tls.key)?;
            certs::check_pair(tls, chain.expose(), key.expose())
                .map_err(|e| format!("[{index}]: {e}"))?;
        }
        Ok(())
    }
}

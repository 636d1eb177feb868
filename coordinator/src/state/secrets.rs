//! Secrets (issue 15): named values per environment, stored at
//! `secrets/ENV/NAME` with their last [`KEEP_VERSIONS`] versions, each
//! sealed by envelope (crate::secrets::Envelope: a fresh data key per
//! version, wrapped by the coordinator's key-encryption key). Memory holds
//! the sealed records only; a value is opened where it is used (delivery to
//! containers comes with Compose `secrets:`, a later increment). No call
//! answers with a value, and none is logged: errors name the secret and its
//! environment, never its content.

use rand::Rng as _;

use super::*;
use crate::secrets::{Envelope, Secret};

/// The most bytes of a secret's value (Docker's own limit is 500 KiB;
/// passwords, tokens and keys are far smaller).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
/// The longest secret name.
pub const MAX_SECRET_NAME: usize = 128;
/// Versions kept per secret (the current one and those before it, for a
/// rollback); older ones are dropped when a new one is made.
pub const KEEP_VERSIONS: usize = 10;
/// Length of a generated value when the request names none.
pub const DEFAULT_GENERATED_LENGTH: u32 = 32;
/// The longest generated value.
pub const MAX_GENERATED_LENGTH: u32 = 4096;

/// A secret as stored: every kept version, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub env: String,
    pub name: String,
    pub versions: Vec<SecretVersion>,
}

/// One version: who made it and when, and the value sealed by envelope
/// (its associated data is the record's key and the version number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersion {
    pub version: u64,
    pub created_unix_ms: i64,
    pub created_by: String,
    /// `set`, or `generated (LENGTH CHARSET)`: how the value was made.
    pub origin: String,
    pub sealed: Envelope,
}

impl SecretRecord {
    fn current(&self) -> Option<&SecretVersion> {
        self.versions.last()
    }

    fn info(&self, used_by: Vec<String>) -> SecretInfo {
        let current = self.current();
        SecretInfo {
            env: self.env.clone(),
            name: self.name.clone(),
            version: current.map(|v| v.version).unwrap_or(0),
            updated_unix_ms: current.map(|v| v.created_unix_ms).unwrap_or(0),
            updated_by: current.map(|v| v.created_by.clone()).unwrap_or_default(),
            origin: current.map(|v| v.origin.clone()).unwrap_or_default(),
            versions: self.versions.len() as u32,
            used_by,
        }
    }
}

/// What `convoy secret list` shows of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub env: String,
    pub name: String,
    /// The current version.
    pub version: u64,
    pub updated_unix_ms: i64,
    pub updated_by: String,
    pub origin: String,
    /// How many versions are kept.
    pub versions: u32,
    /// The services and units that use it (see [`secret_users`]).
    pub used_by: Vec<String>,
}

/// One version as `convoy secret history` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersionInfo {
    pub version: u64,
    pub created_unix_ms: i64,
    pub created_by: String,
    pub origin: String,
    pub current: bool,
}

/// How a generated value is spelt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Alnum,
    Hex,
    Base64,
    UrlSafe,
}

impl Charset {
    pub fn parse(text: &str) -> Result<Self, StateError> {
        match text {
            "" | "alnum" => Ok(Self::Alnum),
            "hex" => Ok(Self::Hex),
            "base64" => Ok(Self::Base64),
            "urlsafe" => Ok(Self::UrlSafe),
            other => Err(StateError::Invalid(format!(
                "unknown charset `{other}`: use alnum, hex, base64 or urlsafe"
            ))),
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::Alnum => "alnum",
            Self::Hex => "hex",
            Self::Base64 => "base64",
            Self::UrlSafe => "urlsafe",
        }
    }

    fn alphabet(self) -> &'static [u8] {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        match self {
            Self::Alnum => ALNUM,
            Self::Hex => b"0123456789abcdef",
            Self::Base64 => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            Self::UrlSafe => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        }
    }
}

/// `length` characters drawn uniformly from `charset` by the thread RNG
/// (a CSPRNG seeded from the OS).
pub fn generate_value(length: u32, charset: Charset) -> Secret<Vec<u8>> {
    let alphabet = charset.alphabet();
    let mut rng = rand::rng();
    Secret::new(
        (0..length)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect(),
    )
}

/// `NAME` of a secret: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, up to 128 characters.
pub fn check_secret_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SECRET_NAME
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(MAX_SECRET_NAME).collect();
        Err(StateError::Invalid(format!(
            "invalid secret name `{shown}`: use letters, digits, `_`, `.` and `-`, \
             starting with a letter or digit (up to {MAX_SECRET_NAME})"
        )))
    }
}

pub(super) fn secret_key(env: &str, name: &str) -> String {
    format!("secrets/{env}/{name}")
}

/// The associated data of a version's envelope: the record's key and the
/// version, so a version copied to another secret or number does not open.
pub(super) fn version_context(env: &str, name: &str, version: u64) -> String {
    format!("{}@v{version}", secret_key(env, name))
}

/// The version of secret `name` that `spec` pins, if it uses it.
/// (A file or variable of its containers, or a certificate or key of its
/// ingress.)
pub(super) fn pinned_version(spec: &ServiceSpec, name: &str) -> Option<u64> {
    spec.secrets
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.version)
        .or_else(|| {
            spec.ingress
                .iter()
                .flat_map(|i| i.secrets())
                .find(|s| s.name == name)
                .map(|s| s.version)
        })
}

/// The services and units of `env` that use secret `name` (their current
/// spec, or the one an active rollout still runs on some instances), by
/// name; `NAME (vN)` when one runs a version other than `current`.
pub(super) fn secret_users(desired: &Desired, env: &str, name: &str) -> Vec<String> {
    let current = desired
        .secrets
        .get(&(env.to_string(), name.to_string()))
        .and_then(|r| r.current())
        .map(|v| v.version);
    desired
        .services
        .values()
        .filter(|r| !r.deleted && r.env == env)
        .filter_map(|r| {
            let from = r
                .rollout
                .as_ref()
                .filter(|ro| ro.state.is_active())
                .and_then(|ro| pinned_version(&ro.from_spec, name));
            let pinned = pinned_version(&r.spec, name).or(from)?;
            Some(if Some(pinned) == current {
                r.name.clone()
            } else {
                format!("{} (v{pinned})", r.name)
            })
        })
        .collect()
}

/// How a new version is made.
pub enum SecretValue {
    /// Given by the caller (stdin or a file on the CLI's side).
    Given(Secret<Vec<u8>>),
    /// Made here: LENGTH characters of a charset.
    Generate { length: u32, charset: Charset },
}

/// Whether the request makes a secret or a new version of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretWrite {
    /// `set`, `generate`: the secret must not exist yet.
    Create,
    /// `rotate`: the secret must exist; a new version.
    Rotate,
}

/// What the re-wrap of `convoyd secrets rewrap` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    pub secrets: usize,
    pub versions: usize,
    pub registry_logins: usize,
    /// Notifiers' signing secrets.
    pub notifiers: usize,
}

impl Coordinator {
    /// Reads every stored secret and checks that each version opens with
    /// this coordinator's key (on load; a wrong key stops the start,
    /// naming the record).
    pub(super) async fn load_secrets(
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
    fn push_version(
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

    /// What an apply does to the secrets its services use: each one's
    /// top-level entry is resolved in `env`'s store (a `file:` or
    /// `environment:` value makes the first version, or a new one when it
    /// differs from the current; `x-convoy.generate` makes one if there is
    /// none; `external` must exist), staged in `next`/`ops`, and every
    /// mount pins the version that results. Values are sealed at once and
    /// dropped; nothing here names one.
    pub(super) fn resolve_secrets(
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
    fn check_ingress_certs(
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
    pub(super) async fn open_secret(
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

mod certs;

#[cfg(test)]
mod delivery_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

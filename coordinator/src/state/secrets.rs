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
fn version_context(env: &str, name: &str, version: u64) -> String {
    format!("{}@v{version}", secret_key(env, name))
}

/// The services and units of `env` that use secret `name`, as `ENV/SERVICE`.
/// Nothing consumes secrets yet (Compose `secrets:` and delivery come in a
/// later increment, which fills this in), so today it is always empty.
pub(super) fn secret_users(_desired: &Desired, _env: &str, _name: &str) -> Vec<String> {
    Vec::new()
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
        let version = record.current().map(|v| v.version).unwrap_or(0) + 1;
        let sealed = self.sealer.seal_envelope(
            &version_context(&env, name, version),
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
        let info = record.info(secret_users(txn.desired(), &env, name));
        txn.put(Op::put_json(key, &record));
        Arc::make_mut(&mut txn.stage().secrets).insert((env, name.to_string()), record);
        txn.commit().await?;
        Ok(info)
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
        txn.stage().secrets = Arc::new(rewrapped);
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

#[cfg(test)]
mod tests;

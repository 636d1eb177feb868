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

mod certs;
mod resolve;
mod stored;
mod write;

#[cfg(test)]
mod delivery_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

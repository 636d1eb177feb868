//! Compose `secrets`: the top-level `secrets:` says where each secret's
//! value comes from (`file:` and `environment:`, read by the CLI and sent
//! beside the spec; `external: true`, already in the coordinator's store;
//! `x-convoy.generate`, made on the first apply), a service's or unit's
//! `secrets:` which it gets and where. Unlike configs, the value is never
//! part of a spec: a service's spec holds a reference (name and the
//! version it pins), the value lives sealed in the secrets store
//! (`state/secrets.rs`) and reaches only the nodes that run a consumer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secrets::Secret;

/// The mode a secret's file gets when the spec gives none (the issue's
/// 0400: readable by its owner only).
pub const DEFAULT_SECRET_MODE: u32 = 0o400;

/// Where Compose's short syntax puts a secret: `/run/secrets/NAME`.
pub const SECRETS_DIR_IN_CONTAINER: &str = "/run/secrets";

/// One secret a service's containers (or a unit) get.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretMount {
    /// The secret's key in the top-level `secrets:`.
    pub source: String,
    /// The secret's name in the environment's store: the top-level entry's
    /// `name:`, else its key.
    pub name: String,
    /// Containers: the file's absolute path in the container (a relative
    /// `target` is under `/run/secrets/`); empty when the secret is only an
    /// environment variable. Units: the credential's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// Unset: the service's numeric `user`, else root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Permission bits, [`DEFAULT_SECRET_MODE`] unless the spec says
    /// otherwise.
    pub mode: u32,
    /// Set (`x-convoy.secret_env`): the container also gets the value as
    /// this environment variable. Weaker: `docker inspect` shows it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub env_var: String,
    /// The version the service runs: pinned by the coordinator at apply
    /// (the current one) and at rotation (the new one); 0 until then.
    pub version: u64,
}

/// Where the value of one top-level `secrets:` entry comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// `file:`: the path as written, relative to the spec's directory;
    /// read by the CLI (`ApplyRequest.secret_files`).
    File(String),
    /// `environment:`: the variable's name; the CLI sends its value
    /// (`ApplyRequest.secret_env`).
    Environment(String),
    /// `external: true`: must already be in the store.
    External,
    /// `x-convoy.generate`: made by the coordinator on the first apply if
    /// absent, then left alone.
    Generate { length: u32, charset: String },
}

/// One entry of the top-level `secrets:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretDecl {
    /// The key under `secrets:`.
    pub key: String,
    /// The secret's name in the store (`name:`, else the key).
    pub name: String,
    pub source: SecretSource,
    /// The value of a `file:` or `environment:` secret, put in from the
    /// CLI's inputs by `spec::parse_with_inputs`; `None` otherwise.
    pub value: Option<Secret<Vec<u8>>>,
}

/// What the CLI sends beside the spec for `secrets:` (ApplyRequest 9-10):
/// each `file:` by its path as written, each `environment:` variable by
/// its name. `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretInputs {
    pub files: BTreeMap<String, Secret<Vec<u8>>>,
    pub env: BTreeMap<String, Secret<Vec<u8>>>,
}

impl std::fmt::Debug for SecretInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretInputs")
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl From<&SecretMount> for convoy_proto::SecretMount {
    fn from(mount: &SecretMount) -> Self {
        let SecretMount {
            source: _,
            name,
            target,
            uid,
            gid,
            mode,
            env_var,
            version,
        } = mount;
        convoy_proto::SecretMount {
            name: name.clone(),
            version: *version,
            target: target.clone(),
            uid: *uid,
            gid: *gid,
            mode: *mode,
            env_var: env_var.clone(),
        }
    }
}

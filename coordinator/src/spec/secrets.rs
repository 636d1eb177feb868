//! Compose `secrets`: the top-level `secrets:` says where each secret's
//! value comes from (`file:` and `environment:`, read by the CLI and sent
//! beside the spec; `external: true`, already in the coordinator's store;
//! `x-convoy.generate`, made on the first apply), a service's or unit's
//! `secrets:` which it gets and where. Unlike configs, the value is never
//! part of a spec: a service's spec holds a reference (name and the
//! version it pins), the value lives sealed in the secrets store
//! (`state/secrets.rs`) and reaches only the nodes that run a consumer.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::locate::{self, PathDisplay, Seg};
use super::{Limits, SpecError, SpecFile};
use crate::secrets::Secret;

/// The most bytes of a secret's value (as the store takes them,
/// `state::secrets::MAX_SECRET_BYTES`).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The longest secret name (as the store takes it).
pub const MAX_SECRET_NAME: usize = 128;

/// `x-convoy.generate` without a `length`.
pub const DEFAULT_GENERATED_LENGTH: u32 = 32;

/// The longest value `x-convoy.generate` makes (as the store).
pub const MAX_GENERATED_LENGTH: u32 = 4096;

/// The charsets `x-convoy.generate` takes; the first is the default.
pub const GENERATED_CHARSETS: [&str; 4] = ["alnum", "hex", "base64", "urlsafe"];

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

impl SecretInputs {
    /// Bytes in all: counted against the spec's size limit, as configs.
    pub fn total_bytes(&self) -> usize {
        let files: usize = self
            .files
            .iter()
            .map(|(k, v)| k.len() + v.expose().len())
            .sum();
        let env: usize = self
            .env
            .iter()
            .map(|(k, v)| k.len() + v.expose().len())
            .sum();
        files.saturating_add(env)
    }
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

/// The error for a secret's value over [`MAX_SECRET_BYTES`] (its size,
/// never its bytes).
pub(crate) fn too_large(len: usize) -> String {
    format!(
        "holds {len} bytes, over the limit of {MAX_SECRET_BYTES} bytes (64 KiB) for a secret: \
         a secret is a password, a token or a key; ship larger files as configs or volumes"
    )
}

/// Checks the CLI's `inputs` (untrusted: each 1 byte to
/// [`MAX_SECRET_BYTES`]; with the spec and its configs, `other_bytes`,
/// within the spec's size limit), then puts the value of each `file:` and
/// `environment:` secret into its [`SecretDecl`]. A secret some service or
/// unit uses whose input the request lacks is refused naming the entry; an
/// unused one stays without a value (the CLI sends only used ones). Also
/// refuses a `secret_env` variable that `environment:` or an env file sets
/// too. No message holds a value.
pub(super) fn fill(
    file: &mut SpecFile,
    filename: &str,
    content: &str,
    inputs: &SecretInputs,
    other_bytes: usize,
    limits: &Limits,
) -> Result<(), SpecError> {
    let refuse = |path: Vec<Seg>, message: String| {
        let line = locate::line_of(content, &path);
        SpecError::Invalid {
            file: filename.to_owned(),
            line: line.or(Some(1)),
            column: None,
            path: PathDisplay(&path).to_string(),
            message,
        }
    };
    let entry = |key: &str, field: &str| {
        vec![
            Seg::Key("secrets".to_owned()),
            Seg::Key(key.to_owned()),
            Seg::Key(field.to_owned()),
        ]
    };
    // The entry that names an input, for the error's place.
    let place = |wanted: &SecretSource, field: &str| {
        file.secrets
            .values()
            .find(|decl| decl.source == *wanted)
            .map_or_else(
                || vec![Seg::Key("secrets".to_owned())],
                |decl| entry(&decl.key, field),
            )
    };
    for (path, value) in &inputs.files {
        let len = value.expose().len();
        let at = || place(&SecretSource::File(path.clone()), "file");
        if len == 0 {
            return Err(refuse(
                at(),
                format!("the file `{path}` is empty: a secret needs at least one byte"),
            ));
        }
        if len > MAX_SECRET_BYTES {
            return Err(refuse(
                at(),
                format!("the file `{path}` {}", too_large(len)),
            ));
        }
    }
    for (var, value) in &inputs.env {
        let len = value.expose().len();
        let at = || place(&SecretSource::Environment(var.clone()), "environment");
        if len == 0 {
            return Err(refuse(
                at(),
                format!("the variable `{var}` is empty: a secret needs at least one byte"),
            ));
        }
        if len > MAX_SECRET_BYTES {
            return Err(refuse(
                at(),
                format!("the variable `{var}` {}", too_large(len)),
            ));
        }
    }
    let total = other_bytes.saturating_add(inputs.total_bytes());
    if total > limits.max_bytes {
        return Err(refuse(
            vec![Seg::Key("secrets".to_owned())],
            format!(
                "the spec, its configs and its secrets hold {total} bytes, over the limit of {} \
                 bytes (`convoyd --max-spec-bytes` raises it)",
                limits.max_bytes
            ),
        ));
    }
    let used: BTreeSet<String> = file
        .services
        .values()
        .flat_map(|spec| spec.secrets.iter().map(|mount| mount.source.clone()))
        .collect();
    let mut missing = None;
    for decl in file.secrets.values_mut() {
        let (given, field, what) = match &decl.source {
            SecretSource::File(path) => (
                inputs.files.get(path),
                "file",
                format!(
                    "the file `{path}` was not sent with the spec: `convoy apply` reads the \
                     files of `secrets:` and sends them"
                ),
            ),
            SecretSource::Environment(var) => (
                inputs.env.get(var),
                "environment",
                format!(
                    "the variable `{var}` was not sent with the spec: `convoy apply` sends it \
                     from the shell or the env files"
                ),
            ),
            SecretSource::External | SecretSource::Generate { .. } => continue,
        };
        match given {
            Some(value) => decl.value = Some(value.clone()),
            None if used.contains(&decl.key) => {
                missing.get_or_insert((
                    entry(&decl.key, field),
                    format!("secret `{}`: {what}", decl.key),
                ));
            }
            None => {}
        }
    }
    if let Some((path, message)) = missing {
        return Err(refuse(path, message));
    }
    for (service, spec) in &file.services {
        for mount in spec.secrets.iter().filter(|m| !m.env_var.is_empty()) {
            if spec.environment.contains_key(&mount.env_var) {
                return Err(refuse(
                    vec![
                        Seg::Key("services".to_owned()),
                        Seg::Key(service.clone()),
                        Seg::Key("x-convoy".to_owned()),
                        Seg::Key("secret_env".to_owned()),
                        Seg::Key(mount.env_var.clone()),
                    ],
                    format!(
                        "`{}` is also set by an env file of the service: the variable would \
                         have two values; rename one",
                        mount.env_var
                    ),
                ));
            }
        }
    }
    Ok(())
}

//! Compose `configs`: files a container gets read-only at a path. The
//! top-level `configs:` says where each one's content comes from (`file:`
//! and `environment:`, read by the CLI and sent beside the spec;
//! `content:`, in the spec), a service's `configs:` which it gets and
//! where. The content is part of the service's spec (stored in each
//! revision, hashed), so a changed config rolls the services that use it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::compose::too_large;
use super::locate::{self, PathDisplay, Seg};
use super::{Limits, SpecError, SpecFile};

/// The most bytes one config may hold.
pub const MAX_CONFIG_BYTES: usize = 512 * 1024;

/// The mode a config's file gets when the spec gives none (Compose's).
pub const DEFAULT_CONFIG_MODE: u32 = 0o444;

/// One config a service's containers get.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigMount {
    /// The config's key in the top-level `configs:`.
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    /// Unset: the agent's user (root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Permission bits, 0444 unless the spec says otherwise.
    pub mode: u32,
    pub content: ConfigContent,
    /// Where the content comes from while the CLI's inputs are still to
    /// be read (`spec::parse_with_files`); never stored.
    #[serde(skip)]
    pub pending: Option<ConfigOrigin>,
}

impl ConfigMount {
    /// Hex SHA-256 of the content.
    pub fn sha256(&self) -> String {
        self.content.sha256()
    }
}

/// Where the content of a config not written in the spec comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// `file:`: the path as written, relative to the spec's directory.
    File(String),
    /// `environment:`: the variable's name.
    Environment(String),
}

/// What the CLI sends beside the spec for `configs:` (ApplyRequest 7-8):
/// each `file:` by its path as written, each `environment:` variable by
/// its name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigInputs {
    pub files: BTreeMap<String, Vec<u8>>,
    pub env: BTreeMap<String, String>,
}

impl ConfigInputs {
    /// Bytes in all: counted against the spec's size limit.
    pub fn total_bytes(&self) -> usize {
        let files: usize = self.files.iter().map(|(k, v)| k.len() + v.len()).sum();
        let env: usize = self.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        files.saturating_add(env)
    }
}

/// A config's bytes. Stored as text when they are UTF-8 (as most configs
/// are, so a stored revision stays readable), else as `{"hex": "..."}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigContent(pub Vec<u8>);

impl ConfigContent {
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.0))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What messages and diffs show instead of the bytes.
    pub fn summary(&self) -> String {
        let sha = self.sha256();
        format!("{} bytes, sha256 {}", self.0.len(), &sha[..12])
    }
}

impl fmt::Debug for ConfigContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfigContent({})", self.summary())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Stored {
    Text(String),
    Hex { hex: String },
}

impl Serialize for ConfigContent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => Stored::Text(text.to_owned()),
            Err(_) => Stored::Hex {
                hex: hex::encode(&self.0),
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ConfigContent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Stored::deserialize(d)? {
            Stored::Text(text) => Ok(ConfigContent(text.into_bytes())),
            Stored::Hex { hex } => hex::decode(hex)
                .map(ConfigContent)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl From<&ConfigMount> for convoy_proto::ConfigFile {
    fn from(mount: &ConfigMount) -> Self {
        let ConfigMount {
            source,
            target,
            uid,
            gid,
            mode,
            content,
            pending: _,
        } = mount;
        convoy_proto::ConfigFile {
            target: target.clone(),
            content: content.0.clone(),
            uid: *uid,
            gid: *gid,
            mode: *mode,
            name: source.clone(),
            sha256: content.sha256(),
        }
    }
}

/// Checks the CLI's `inputs` (untrusted: each at most
/// [`MAX_CONFIG_BYTES`], all of them and the spec together within the
/// spec's size limit), then puts the content of each `file:` and
/// `environment:` config into the services that use it. An input the spec
/// needs and the request lacks is refused naming the service's entry.
pub(super) fn fill(
    file: &mut SpecFile,
    filename: &str,
    content: &str,
    inputs: &ConfigInputs,
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
    let top = |name: &str| vec![Seg::Key("configs".to_owned()), Seg::Key(name.to_owned())];
    for (path, bytes) in &inputs.files {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(refuse(
                vec![Seg::Key("configs".to_owned())],
                format!("the file `{path}`: {}", too_large(bytes.len())),
            ));
        }
    }
    for (name, value) in &inputs.env {
        if value.len() > MAX_CONFIG_BYTES {
            return Err(refuse(
                vec![Seg::Key("configs".to_owned())],
                format!("the variable `{name}`: {}", too_large(value.len())),
            ));
        }
    }
    let total = content.len().saturating_add(inputs.total_bytes());
    if total > limits.max_bytes {
        return Err(refuse(
            vec![Seg::Key("configs".to_owned())],
            format!(
                "the spec and its configs hold {total} bytes, over the limit of {} bytes \
                 (`convoyd --max-spec-bytes` raises it)",
                limits.max_bytes
            ),
        ));
    }
    for (service, spec) in file.services.iter_mut() {
        for (index, mount) in spec.configs.iter_mut().enumerate() {
            let Some(origin) = mount.pending.take() else {
                continue;
            };
            let entry = vec![
                Seg::Key("services".to_owned()),
                Seg::Key(service.clone()),
                Seg::Key("configs".to_owned()),
                Seg::Index(index),
            ];
            let bytes = match &origin {
                ConfigOrigin::File(path) => inputs.files.get(path).cloned().ok_or_else(|| {
                    refuse(
                        entry.clone(),
                        format!(
                            "config `{}`: the file `{path}` was not sent with the spec: \
                             `convoy apply` reads the files of `configs:` and sends them",
                            mount.source
                        ),
                    )
                })?,
                ConfigOrigin::Environment(var) => inputs
                    .env
                    .get(var)
                    .map(|v| v.clone().into_bytes())
                    .ok_or_else(|| {
                        refuse(
                            top(&mount.source),
                            format!(
                                "config `{}`: the variable `{var}` was not sent with the spec: \
                                 `convoy apply` sends it from the shell or the env files",
                                mount.source
                            ),
                        )
                    })?,
            };
            mount.content = ConfigContent(bytes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_stored_as_text_or_hex_and_read_back() {
        for bytes in [b"a: 1\n".to_vec(), vec![0xff, 0x00, 0x10], Vec::new()] {
            let mount = ConfigMount {
                source: "app".into(),
                target: "/app".into(),
                mode: DEFAULT_CONFIG_MODE,
                content: ConfigContent(bytes.clone()),
                ..ConfigMount::default()
            };
            let json = serde_json::to_string(&mount).unwrap();
            let back: ConfigMount = serde_json::from_str(&json).unwrap();
            assert_eq!(back, mount, "{json}");
        }
        let json = serde_json::to_string(&ConfigContent(vec![0xff])).unwrap();
        assert_eq!(json, r#"{"hex":"ff"}"#);
    }

    #[test]
    fn debug_shows_a_summary_never_the_content() {
        let text = format!("{:?}", ConfigContent(b"password=hunter2".to_vec()));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("16 bytes"), "{text}");
    }
}

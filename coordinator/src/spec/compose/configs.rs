//! `configs`: the top-level `configs:` (where each config's content comes
//! from: `file:`, `environment:` or `content:`) and a service's `configs:`
//! (which it gets, at which path, owned by whom, with which mode). The
//! types are in `spec/configs.rs`; the content of `file:` and
//! `environment:` configs comes with the spec from the CLI and is put in
//! by `spec::parse_with_files`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::keys::{first_time, next_key, ConfigKey, Seen};
use super::mounts::{MountFields, MountKind};
use super::seeds::{scalar, text, value};
use super::Note;
use crate::spec::configs::{
    ConfigContent, ConfigMount, ConfigOrigin, DEFAULT_CONFIG_MODE, MAX_CONFIG_BYTES,
};
use crate::spec::locate::Seg;
use crate::spec::ServiceSpec;

/// Where one config of the top-level `configs:` gets its content.
pub(super) enum ConfigSource {
    Content(Vec<u8>),
    Origin(ConfigOrigin),
}

/// The top-level `configs:`, each by its key, with warnings.
pub(super) type Configs = (Vec<(String, ConfigSource)>, Vec<Note>);

pub(super) struct ConfigsSeed;

impl<'de> DeserializeSeed<'de> for ConfigsSeed {
    type Value = Configs;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ConfigsSeed {
    type Value = Configs;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from config names to configs")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((Vec::new(), Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut configs = Vec::new();
        let mut notes = Vec::new();
        while let Some(name) = map.next_key_seed(scalar("a config name", |name: &str| {
            config_name(name)?;
            first_time(&mut seen, name, "config")?;
            Ok(name.to_owned())
        }))? {
            let Some((source, config_notes)) = value(&mut map, ConfigDefSeed)? else {
                return Err(de::Error::custom(format!(
                    "config `{name}` is empty: give it `file:`, `content:` or `environment:`"
                )));
            };
            super::nest(&mut notes, Seg::Key(name.clone()), config_notes);
            configs.push((name, source));
        }
        Ok((configs, notes))
    }
}

struct ConfigDefSeed;

impl<'de> DeserializeSeed<'de> for ConfigDefSeed {
    type Value = (ConfigSource, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ConfigDefSeed {
    type Value = (ConfigSource, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a config: a mapping with `file:`, `content:` or `environment:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut sources: Vec<(&str, ConfigSource)> = Vec::new();
        while let Some(key) = next_key::<A, ConfigKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                ConfigKey::File => {
                    let path = map.next_value_seed(scalar("a file path", file_path))?;
                    sources.push(("file", ConfigSource::Origin(ConfigOrigin::File(path))));
                }
                ConfigKey::Environment => {
                    let var = map.next_value_seed(scalar("a variable name", |name: &str| {
                        crate::spec::values::env_name(name)?;
                        Ok(name.to_owned())
                    }))?;
                    sources.push((
                        "environment",
                        ConfigSource::Origin(ConfigOrigin::Environment(var)),
                    ));
                }
                ConfigKey::Content => {
                    let content = map.next_value_seed(scalar("the config's text", |t: &str| {
                        if t.len() > MAX_CONFIG_BYTES {
                            return Err(too_large(t.len()));
                        }
                        Ok(t.as_bytes().to_vec())
                    }))?;
                    sources.push(("content", ConfigSource::Content(content)));
                }
                ConfigKey::Name => {
                    value(&mut map, text("a config name"))?;
                    notes.push(Note::new(
                        "name",
                        "ignored: Convoy delivers the content itself and needs no name for it \
                         (Swarm configs by name are not supported yet)",
                    ));
                }
            }
        }
        let mut sources = sources.into_iter();
        match (sources.next(), sources.next()) {
            (Some((_, source)), None) => Ok((source, notes)),
            (None, _) => Err(de::Error::custom(
                "a config needs one of `file:`, `content:` or `environment:`",
            )),
            (Some((a, _)), Some((b, _))) => Err(de::Error::custom(format!(
                "a config takes one of `file:`, `content:` or `environment:`; this one has \
                 `{a}` and `{b}`: keep one"
            ))),
        }
    }
}

/// The error for content over [`MAX_CONFIG_BYTES`].
pub(crate) fn too_large(len: usize) -> String {
    format!(
        "the config holds {len} bytes, over the limit of {MAX_CONFIG_BYTES} bytes (512 KiB): \
         bake large files into the image or use a volume"
    )
}

/// A config's key: letters, digits, `_`, `.` and `-`.
fn config_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid config name `{name}`: use up to 64 letters, digits, `_`, `.` and `-`, \
             starting with a letter or digit"
        ))
    }
}

/// `file:`: a path the CLI reads, relative to the spec's directory.
pub(super) fn file_path(path: &str) -> Result<String, String> {
    if path.is_empty() || path.len() > 4096 || path.contains('\0') {
        return Err(format!("invalid file path `{path}`"));
    }
    Ok(path.to_owned())
}

/// A service's `configs:`: names (`- NAME`, delivered at `/NAME`) or
/// mappings with `source`, `target`, `uid`, `gid` and `mode`, read by
/// [`MountsSeed`](super::mounts::MountsSeed).
#[derive(Clone, Copy)]
pub(super) struct ConfigMounts;

impl MountKind for ConfigMounts {
    type Mount = ConfigMount;
    const NOUN: &'static str = "config";
    const NAME: &'static str = "a config name";
    const EXPECTING_MODE: &'static str = "a file mode such as 0440";
    const DEFAULT_MODE: u32 = DEFAULT_CONFIG_MODE;

    fn source(name: &str) -> Result<(), String> {
        config_name(name)
    }

    fn target(self, written: &str) -> Result<String, String> {
        target_path(written)
    }

    fn expecting_target(self) -> &'static str {
        "a path"
    }

    fn target_what(self) -> &'static str {
        "config target"
    }

    fn mount(fields: MountFields) -> ConfigMount {
        let MountFields {
            source,
            target,
            uid,
            gid,
            mode,
        } = fields;
        ConfigMount {
            source,
            target,
            uid,
            gid,
            mode,
            ..ConfigMount::default()
        }
    }
}

/// `path` made absolute under `base` (when relative) and cleaned of empty
/// parts: `None` when it has `.` or `..` parts, a NUL, a comma or a line
/// end (Docker's mount syntax), is over 4 KiB, or names no file.
pub(super) fn path_in_container(base: &str, path: &str) -> Option<String> {
    let absolute = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{}/{path}", base.trim_end_matches('/'))
    };
    let parts: Vec<&str> = absolute.split('/').filter(|p| !p.is_empty()).collect();
    let valid = !parts.is_empty()
        && absolute.len() <= 4096
        && !absolute.contains(['\0', ',', '\n'])
        && parts.iter().all(|p| *p != "." && *p != "..");
    valid.then(|| format!("/{}", parts.join("/")))
}

/// A config's path in the container: absolute, or relative to `/` (as
/// Compose takes it), without `.` or `..` parts.
fn target_path(path: &str) -> Result<String, String> {
    if let Some(target) = path_in_container("/", path) {
        Ok(target)
    } else {
        Err(format!(
            "invalid target `{path}`: give a file path in the container, such as `/etc/app.conf` \
             (no `.` or `..` parts)"
        ))
    }
}

/// `uid`, `gid`: a number, written as a number or a string (`"1000"`).
pub(super) fn id(text: &str) -> Result<u32, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a numeric id (0 to 4294967295)"))
}

/// `mode`: octal when it starts with `0` or `0o` (`0440`), as Compose
/// writes it, else decimal (`288`); at most 0777.
pub(super) fn mode(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let parsed = if let Some(octal) = text.strip_prefix("0o") {
        u32::from_str_radix(octal, 8)
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8)
    } else {
        text.parse()
    };
    match parsed {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "`{text}` is not a file mode: write permission bits in octal, such as 0440"
        )),
    }
}

/// Fills each service's `configs:` from the top-level `configs:`: the
/// content written there, or where the CLI's input for it is. A config no
/// top-level entry declares is a problem naming the service's entry.
pub(super) fn resolve(
    services: &mut [(String, ServiceSpec)],
    declared: &[(String, ConfigSource)],
) -> Vec<Note> {
    let mut problems = Vec::new();
    for (service, spec) in services.iter_mut() {
        for (index, mount) in spec.configs.iter_mut().enumerate() {
            match declared.iter().find(|(name, _)| *name == mount.source) {
                Some((_, ConfigSource::Content(bytes))) => {
                    mount.content = ConfigContent(bytes.clone());
                }
                Some((_, ConfigSource::Origin(origin))) => {
                    mount.pending = Some(origin.clone());
                }
                None => {
                    problems.push(Note {
                        path: vec![
                            Seg::Key(service.clone()),
                            Seg::Key("configs".to_owned()),
                            Seg::Index(index),
                        ],
                        message: format!(
                            "config `{}` is not declared under the top-level `configs:`: \
                             declare it there (with `file:`, `content:` or `environment:`) \
                             or remove it",
                            mount.source
                        ),
                    });
                    break;
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_absolute_and_clean() {
        assert_eq!(target_path("app.conf").unwrap(), "/app.conf");
        assert_eq!(target_path("/etc//app/").unwrap(), "/etc/app");
        assert!(target_path("/etc/../shadow").is_err());
        assert!(target_path("/").is_err());
    }

    #[test]
    fn modes_are_octal_as_compose_writes_them() {
        assert_eq!(mode("0440").unwrap(), 0o440);
        assert_eq!(mode("0o400").unwrap(), 0o400);
        assert_eq!(mode("288").unwrap(), 0o440);
        assert!(mode("0999").is_err());
        assert!(mode("4095").is_err());
    }
}

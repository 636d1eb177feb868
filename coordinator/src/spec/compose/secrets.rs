//! `secrets`: the top-level `secrets:` (where each secret's value comes
//! from: `file:`, `environment:`, `external: true` or `x-convoy.generate`)
//! and a service's or unit's `secrets:` (which it gets, at which path or
//! credential name, owned by whom, with which mode), plus a service's
//! `x-convoy.secret_env`. The types are in `spec/secrets.rs`; the values
//! of `file:` and `environment:` secrets come with the spec from the CLI
//! and are put in by `spec::parse_with_inputs`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::configs::file_path;
use super::keys::{first_time, next_key, SecretConvoyKey, SecretGenerateKey, SecretKey, Seen};
use super::mounts::{MountFields, MountKind};
use super::seeds::{scalar, value};
use super::Note;
use crate::spec::locate::Seg;
use crate::spec::secrets::{
    SecretDecl, SecretMount, SecretSource, DEFAULT_GENERATED_LENGTH, DEFAULT_SECRET_MODE,
    GENERATED_CHARSETS, MAX_GENERATED_LENGTH, MAX_SECRET_NAME, SECRETS_DIR_IN_CONTAINER,
};
use crate::spec::{values, ServiceSpec};

/// The top-level `secrets:`, in the order written, with warnings and the
/// errors found between entries.
pub(super) struct Secrets {
    pub(super) decls: Vec<SecretDecl>,
    pub(super) notes: Vec<Note>,
    pub(super) problems: Vec<Note>,
}

pub(super) struct SecretsSeed;

impl<'de> DeserializeSeed<'de> for SecretsSeed {
    type Value = Secrets;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SecretsSeed {
    type Value = Secrets;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from secret names to secrets")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Secrets {
            decls: Vec::new(),
            notes: Vec::new(),
            problems: Vec::new(),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut decls: Vec<SecretDecl> = Vec::new();
        let mut notes = Vec::new();
        let mut problems = Vec::new();
        while let Some(key) = map.next_key_seed(scalar("a secret name", |key: &str| {
            secret_name(key)?;
            first_time(&mut seen, key, "secret")?;
            Ok(key.to_owned())
        }))? {
            let Some(def) = value(&mut map, SecretDefSeed)? else {
                return Err(de::Error::custom(format!(
                    "secret `{key}` is empty: give it `file:`, `environment:`, \
                     `external: true` or `x-convoy: {{generate: true}}`"
                )));
            };
            super::nest(&mut notes, Seg::Key(key.clone()), def.notes);
            let name = def.name.unwrap_or_else(|| key.clone());
            // Two entries for one stored secret could give it two values.
            if let Some(other) = decls.iter().find(|d| d.name == name) {
                problems.push(Note {
                    path: vec![Seg::Key(key.clone()), Seg::Key("name".to_owned())],
                    message: format!(
                        "`{}` and `{key}` both name the secret `{name}`: declare it once and \
                         use that key in every service",
                        other.key
                    ),
                });
            }
            decls.push(SecretDecl {
                key,
                name,
                source: def.source,
                value: None,
            });
        }
        Ok(Secrets {
            decls,
            notes,
            problems,
        })
    }
}

/// One entry of the top-level `secrets:`, as read.
struct SecretDef {
    source: SecretSource,
    name: Option<String>,
    notes: Vec<Note>,
}

struct SecretDefSeed;

impl<'de> DeserializeSeed<'de> for SecretDefSeed {
    type Value = SecretDef;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SecretDefSeed {
    type Value = SecretDef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a secret: a mapping with `file:`, `environment:`, `external: true` or \
             `x-convoy: {generate: true}`",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut name = None;
        let mut sources: Vec<(&str, SecretSource)> = Vec::new();
        while let Some(key) = next_key::<A, SecretKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                SecretKey::File => {
                    let path = map.next_value_seed(scalar("a file path", file_path))?;
                    sources.push(("file", SecretSource::File(path)));
                }
                SecretKey::Environment => {
                    let var = map.next_value_seed(scalar("a variable name", |var: &str| {
                        values::env_name(var)?;
                        Ok(var.to_owned())
                    }))?;
                    sources.push(("environment", SecretSource::Environment(var)));
                }
                SecretKey::External => {
                    let external = value(
                        &mut map,
                        scalar(
                            "`true` or `false` (the secret's name in the store goes in `name:`)",
                            values::boolean,
                        ),
                    )?;
                    if external == Some(true) {
                        sources.push(("external", SecretSource::External));
                    }
                }
                SecretKey::Name => {
                    name = Some(map.next_value_seed(scalar("a secret name", |n: &str| {
                        secret_name(n).map(|()| n.to_owned())
                    }))?);
                }
                SecretKey::Convoy => {
                    if let Some(Some(generate)) = value(&mut map, SecretConvoySeed)? {
                        sources.push(("x-convoy.generate", generate));
                    }
                }
            }
        }
        let mut sources = sources.into_iter();
        match (sources.next(), sources.next()) {
            (Some((_, source)), None) => Ok(SecretDef {
                source,
                name,
                notes,
            }),
            (None, _) => Err(de::Error::custom(
                "a secret needs one of `file:`, `environment:`, `external: true` or \
                 `x-convoy: {generate: true}`",
            )),
            (Some((a, _)), Some((b, _))) => Err(de::Error::custom(format!(
                "a secret takes one of `file:`, `environment:`, `external: true` or \
                 `x-convoy.generate`; this one has `{a}` and `{b}`: keep one"
            ))),
        }
    }
}

/// A top-level secret's `x-convoy`: `generate`, if it asks for one.
struct SecretConvoySeed;

impl<'de> DeserializeSeed<'de> for SecretConvoySeed {
    type Value = Option<SecretSource>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SecretConvoySeed {
    type Value = Option<SecretSource>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `generate: true`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut generate = None;
        while let Some(key) = next_key::<A, SecretConvoyKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                SecretConvoyKey::Generate => generate = value(&mut map, GenerateSeed)?.flatten(),
            }
        }
        Ok(generate)
    }
}

/// `generate: true` (32 alphanumerics), `false`, or `{length, charset}`.
struct GenerateSeed;

impl<'de> DeserializeSeed<'de> for GenerateSeed {
    type Value = Option<SecretSource>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn generated(length: u32, charset: &str) -> SecretSource {
    SecretSource::Generate {
        length,
        charset: charset.to_owned(),
    }
}

impl<'de> Visitor<'de> for GenerateSeed {
    type Value = Option<SecretSource>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`true`, `false` or a mapping with `length` and `charset`")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.then(|| generated(DEFAULT_GENERATED_LENGTH, GENERATED_CHARSETS[0])))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.visit_bool(values::boolean(v).map_err(E::custom)?)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut length = DEFAULT_GENERATED_LENGTH;
        let mut charset = GENERATED_CHARSETS[0];
        while let Some(key) = next_key::<A, SecretGenerateKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                SecretGenerateKey::Length => {
                    length = value(&mut map, scalar("a number of characters", generated_length))?
                        .unwrap_or(DEFAULT_GENERATED_LENGTH);
                }
                SecretGenerateKey::Charset => {
                    charset = value(
                        &mut map,
                        scalar("alnum, hex, base64 or urlsafe", |text: &str| {
                            GENERATED_CHARSETS
                                .iter()
                                .copied()
                                .find(|c| *c == text)
                                .ok_or_else(|| {
                                    format!(
                                        "unknown charset `{text}`: use alnum, hex, base64 or \
                                         urlsafe"
                                    )
                                })
                        }),
                    )?
                    .unwrap_or(GENERATED_CHARSETS[0]);
                }
            }
        }
        Ok(Some(generated(length, charset)))
    }
}

fn generated_length(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_GENERATED_LENGTH).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{text}` is not a length for a generated secret: give 1 to \
             {MAX_GENERATED_LENGTH} characters"
        )),
    }
}

/// A secret's key or name in the store: letters, digits, `_`, `.` and
/// `-`, starting with a letter or digit, as `convoy secret set` takes it.
pub(super) fn secret_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SECRET_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        let shown: String = name.chars().take(MAX_SECRET_NAME).collect();
        Err(format!(
            "invalid secret name `{shown}`: use up to {MAX_SECRET_NAME} letters, digits, `_`, \
             `.` and `-`, starting with a letter or digit"
        ))
    }
}

/// A service's `secrets:` (`unit`: a unit's, whose targets are credential
/// names): keys (`- KEY`) or mappings with `source`, `target` and, for a
/// container, `uid`, `gid` and `mode`, read by
/// [`MountsSeed`](super::mounts::MountsSeed).
#[derive(Clone, Copy)]
pub(super) struct SecretMounts {
    pub(super) unit: bool,
}

impl MountKind for SecretMounts {
    type Mount = SecretMount;
    const NOUN: &'static str = "secret";
    const NAME: &'static str = "a secret name";
    const EXPECTING_MODE: &'static str = "a file mode such as 0400";
    const DEFAULT_MODE: u32 = DEFAULT_SECRET_MODE;

    fn source(name: &str) -> Result<(), String> {
        secret_name(name)
    }

    fn target(self, written: &str) -> Result<String, String> {
        if self.unit {
            credential_name(written)
        } else {
            container_target(written)
        }
    }

    fn expecting_target(self) -> &'static str {
        if self.unit {
            "a credential name"
        } else {
            "a path"
        }
    }

    fn target_what(self) -> &'static str {
        if self.unit {
            "credential name"
        } else {
            "secret target"
        }
    }

    fn credential(self) -> bool {
        self.unit
    }

    fn mount(fields: MountFields) -> SecretMount {
        let MountFields {
            source,
            target,
            uid,
            gid,
            mode,
        } = fields;
        SecretMount {
            source,
            target,
            uid,
            gid,
            mode,
            ..SecretMount::default()
        }
    }
}

/// A secret's path in a container: absolute, or relative to
/// `/run/secrets` (as Compose takes it), without `.` or `..` parts.
fn container_target(path: &str) -> Result<String, String> {
    if let Some(target) = super::configs::path_in_container(SECRETS_DIR_IN_CONTAINER, path) {
        Ok(target)
    } else {
        Err(format!(
            "invalid target `{}`: give a file name (under `/run/secrets/`) or an absolute path \
             in the container, such as `db_password` or `/etc/app/key` (no `.` or `..` parts)",
            path.escape_default()
        ))
    }
}

/// A unit's credential name (`LoadCredential=NAME:...`, the file
/// `$CREDENTIALS_DIRECTORY/NAME`): letters, digits, `_`, `.` and `-`.
fn credential_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SECRET_NAME
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "invalid credential name `{}`: a unit's secret is the file \
             `$CREDENTIALS_DIRECTORY/NAME`; use up to {MAX_SECRET_NAME} letters, digits, `_`, \
             `.` and `-` (no `/`)",
            name.escape_default()
        ))
    }
}

/// A service's `x-convoy.secret_env`: variable → secret key, as written.
pub(super) struct SecretEnvSeed;

impl<'de> DeserializeSeed<'de> for SecretEnvSeed {
    type Value = Vec<(String, String)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SecretEnvSeed {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from variable names to secret names")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut pairs = Vec::new();
        while let Some(var) = map.next_key_seed(scalar("a variable name", |var: &str| {
            values::env_name(var)?;
            first_time(&mut seen, var, "variable")?;
            Ok(var.to_owned())
        }))? {
            let key = map.next_value_seed(scalar("a secret name", |key: &str| {
                secret_name(key).map(|()| key.to_owned())
            }))?;
            pairs.push((var, key));
        }
        Ok(pairs)
    }
}

/// Adds a service's `x-convoy.secret_env` to its mounts: on the mount of
/// the same secret when it has one (and no variable yet), else as a mount
/// without a file. A variable `environment:` sets too is a problem.
pub(super) fn add_secret_env(
    spec: &mut ServiceSpec,
    secret_env: Vec<(String, String)>,
) -> Option<Note> {
    let mut problem = None;
    for (var, key) in secret_env {
        if spec.environment.contains_key(&var) {
            problem.get_or_insert(Note {
                path: vec![
                    Seg::Key("x-convoy".to_owned()),
                    Seg::Key("secret_env".to_owned()),
                    Seg::Key(var.clone()),
                ],
                message: format!(
                    "`{var}` is also set under `environment:`: the variable would have two \
                     values; remove one"
                ),
            });
        }
        let file = spec
            .secrets
            .iter_mut()
            .find(|m| m.source == key && !m.target.is_empty() && m.env_var.is_empty());
        match file {
            Some(mount) => mount.env_var = var,
            None => spec.secrets.push(SecretMount {
                source: key,
                mode: DEFAULT_SECRET_MODE,
                env_var: var,
                ..SecretMount::default()
            }),
        }
    }
    problem
}

/// Names each mount of `section` (`services` or `units`, `what` their
/// kind) after its top-level entry. A secret no entry declares is a
/// problem naming the service's entry, as Compose's "service "web" refers
/// to undefined secret db".
pub(super) fn resolve(
    section: &mut [(String, ServiceSpec)],
    what: &str,
    declared: &[SecretDecl],
) -> Vec<Note> {
    let mut problems = Vec::new();
    for (service, spec) in section.iter_mut() {
        for (index, mount) in spec.secrets.iter_mut().enumerate() {
            if let Some(decl) = declared.iter().find(|d| d.key == mount.source) {
                mount.name = decl.name.clone();
                continue;
            }
            // A mount without a file comes from `x-convoy.secret_env`.
            let path = if mount.target.is_empty() {
                vec![
                    Seg::Key(service.clone()),
                    Seg::Key("x-convoy".to_owned()),
                    Seg::Key("secret_env".to_owned()),
                    Seg::Key(mount.env_var.clone()),
                ]
            } else {
                vec![
                    Seg::Key(service.clone()),
                    Seg::Key("secrets".to_owned()),
                    Seg::Index(index),
                ]
            };
            problems.push(Note {
                path,
                message: format!(
                    "{what} `{service}` refers to undefined secret `{}`: declare it under the \
                     top-level `secrets:` (with `file:`, `environment:`, `external: true` or \
                     `x-convoy: {{generate: true}}`) or remove it",
                    mount.source
                ),
            });
            break;
        }
        let Some(ingress) = spec.ingress.as_mut() else {
            continue;
        };
        for (index, tls) in ingress.tls.iter_mut().enumerate() {
            for (field, secret) in [("certificate", &mut tls.certificate), ("key", &mut tls.key)] {
                if let Some(decl) = declared.iter().find(|d| d.key == secret.source) {
                    secret.name = decl.name.clone();
                    continue;
                }
                problems.push(Note {
                    path: vec![
                        Seg::Key(service.clone()),
                        Seg::Key("x-convoy".to_owned()),
                        Seg::Key("ingress".to_owned()),
                        Seg::Key("tls".to_owned()),
                        Seg::Index(index),
                        Seg::Key(field.to_owned()),
                    ],
                    message: format!(
                        "{what} `{service}` refers to undefined secret `{}`: declare it under \
                         the top-level `secrets:` (with `file:`, `environment:` or \
                         `external: true`)",
                        secret.source
                    ),
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_targets_are_under_run_secrets_unless_absolute() {
        assert_eq!(container_target("db").unwrap(), "/run/secrets/db");
        assert_eq!(container_target("app/db").unwrap(), "/run/secrets/app/db");
        assert_eq!(container_target("/etc//app/key").unwrap(), "/etc/app/key");
        assert!(container_target("../etc/shadow").is_err());
        assert!(container_target("/etc/./key").is_err());
        assert!(container_target("a\0b").is_err());
        assert!(container_target("/").is_err());
    }

    #[test]
    fn credential_names_have_no_slash() {
        assert_eq!(credential_name("db.pass-1_x").unwrap(), "db.pass-1_x");
        assert!(credential_name("a/b").is_err());
        assert!(credential_name("..").is_err());
        assert!(credential_name("").is_err());
    }

    #[test]
    fn secret_names_follow_the_store() {
        assert!(secret_name("db_password.v1-a").is_ok());
        assert!(secret_name(&"a".repeat(128)).is_ok());
        assert!(secret_name(&"a".repeat(129)).is_err());
        assert!(secret_name("_db").is_err());
        assert!(secret_name("db pass").is_err());
    }
}

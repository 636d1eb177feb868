//! The top-level `volumes:` (what each named volume is), and `resolve`,
//! which checks each named volume a service mounts is declared and hands
//! it the declarations it uses.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use crate::spec::compose::environment::EntriesSeed;
use crate::spec::compose::keys::{first_time, next_key, Seen, VolumeKey};
use crate::spec::compose::seeds::{scalar, text, value};
use crate::spec::compose::volumes::short::volume_name;
use crate::spec::compose::{nest, Note};
use crate::spec::locate::Seg;
use crate::spec::{values, MountKind, ServiceSpec, VolumeDecl};

/// The top-level `volumes:`: each volume by its key, with warnings.
pub(in crate::spec::compose) struct DeclsSeed;

pub(in crate::spec::compose) type Decls = (Vec<VolumeDecl>, Vec<Note>);

impl<'de> DeserializeSeed<'de> for DeclsSeed {
    type Value = Decls;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DeclsSeed {
    type Value = Decls;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from volume names to volumes")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((Vec::new(), Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut decls = Vec::new();
        let mut notes = Vec::new();
        while let Some(key) = map.next_key_seed(scalar("a volume name", |name: &str| {
            volume_name(name)?;
            first_time(&mut seen, name, "volume")?;
            Ok(name.to_owned())
        }))? {
            let (mut decl, decl_notes) =
                value(&mut map, DeclSeed)?.unwrap_or_else(|| (VolumeDecl::default(), Vec::new()));
            nest(&mut notes, Seg::Key(key.clone()), decl_notes);
            decl.key = key;
            decls.push(decl);
        }
        Ok((decls, notes))
    }
}

/// One entry of the top-level `volumes:`.
struct DeclSeed;

impl<'de> DeserializeSeed<'de> for DeclSeed {
    type Value = (VolumeDecl, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DeclSeed {
    type Value = (VolumeDecl, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a volume: a mapping (or nothing, for a local volume)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut decl = VolumeDecl::default();
        let mut set_for_creation = Vec::new();
        while let Some(key) = next_key::<A, VolumeKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                VolumeKey::Name => {
                    decl.name = value(
                        &mut map,
                        scalar("a volume name", |n: &str| {
                            volume_name(n).map(|()| n.to_owned())
                        }),
                    )?
                    .unwrap_or_default();
                }
                VolumeKey::External => {
                    decl.external = value(
                        &mut map,
                        scalar(
                            "`true` or `false` (the name of an external volume goes in `name:`)",
                            values::boolean,
                        ),
                    )?
                    .unwrap_or(false);
                }
                VolumeKey::Driver => {
                    decl.driver =
                        value(&mut map, scalar("a volume driver", driver))?.unwrap_or_default();
                    set_for_creation.push("driver");
                }
                VolumeKey::DriverOpts => {
                    decl.driver_opts = value(&mut map, OptionsSeed)?.unwrap_or_default();
                    set_for_creation.push("driver_opts");
                }
                VolumeKey::Labels => {
                    decl.labels = value(&mut map, EntriesSeed::LABELS)?
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.unwrap_or_default()))
                        .collect();
                    set_for_creation.push("labels");
                }
            }
        }
        if decl.external {
            for key in set_for_creation {
                notes.push(Note::new(
                    key,
                    "ignored for an external volume: Convoy neither creates nor changes it",
                ));
            }
            decl.driver.clear();
            decl.driver_opts.clear();
            decl.labels.clear();
        }
        Ok((decl, notes))
    }
}

/// `driver:`: a volume plugin's name (`local` is Docker's own).
fn driver(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 128
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not a volume driver name"))
    }
}

/// `driver_opts`: a mapping of option names to values.
struct OptionsSeed;

impl<'de> DeserializeSeed<'de> for OptionsSeed {
    type Value = BTreeMap<String, String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OptionsSeed {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from driver options to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut options = BTreeMap::new();
        while let Some(key) = map.next_key_seed(scalar("an option name", |name: &str| {
            first_time(&mut seen, name, "driver option")?;
            Ok(name.to_owned())
        }))? {
            let val = value(&mut map, text("the option's value"))?.unwrap_or_default();
            options.insert(key, val);
        }
        Ok(options)
    }
}

/// Checks each service's named volumes against the top-level `volumes:`
/// (each must be declared there, as Compose requires) and gives each
/// service the declarations it mounts. Problems name the mount.
pub(in crate::spec::compose) fn resolve(
    services: &mut [(String, ServiceSpec)],
    declared: &[VolumeDecl],
) -> Vec<Note> {
    let mut problems = Vec::new();
    for (service, spec) in services.iter_mut() {
        let mut used: Vec<VolumeDecl> = Vec::new();
        for (index, mount) in spec.mounts.iter().enumerate() {
            if mount.kind != MountKind::Volume || mount.source.is_empty() {
                continue;
            }
            match declared.iter().find(|d| d.key == mount.source) {
                Some(decl) => {
                    if !used.iter().any(|u| u.key == decl.key) {
                        used.push(decl.clone());
                    }
                }
                None => {
                    problems.push(Note {
                        path: vec![
                            Seg::Key(service.clone()),
                            Seg::Key("volumes".to_owned()),
                            Seg::Index(index),
                        ],
                        message: format!(
                            "volume `{0}` is not declared: declare it under top-level \
                             `volumes:` (`volumes: {{{0}: {{}}}}`), as Compose requires",
                            mount.source
                        ),
                    });
                    break;
                }
            }
        }
        spec.named_volumes = used;
    }
    problems
}

//! A long-syntax mount's `bind:`, `volume:` and `tmpfs:` options.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};

use crate::spec::compose::keys::{next_key, BindKey, MountTmpfsKey, MountVolumeKey, Seen};
use crate::spec::compose::seeds::{scalar, value};
use crate::spec::compose::volumes::short::PROPAGATIONS;
use crate::spec::compose::{resources, Note};
use crate::spec::values;

/// A mount's `bind:` options: propagation and create_host_path.
pub(super) struct BindSeed;

impl<'de> DeserializeSeed<'de> for BindSeed {
    type Value = (String, bool, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BindSeed {
    type Value = (String, bool, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `propagation` and `create_host_path`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut propagation = String::new();
        let mut create = false;
        while let Some(key) = next_key::<A, BindKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                BindKey::Propagation => {
                    propagation = value(
                        &mut map,
                        scalar("a propagation", |p: &str| {
                            if PROPAGATIONS.contains(&p) {
                                Ok(p.to_owned())
                            } else {
                                Err(format!(
                                    "unknown propagation `{p}`, expected one of `{}`",
                                    PROPAGATIONS.join("`, `")
                                ))
                            }
                        }),
                    )?
                    .unwrap_or_default();
                }
                BindKey::CreateHostPath => {
                    create = value(&mut map, scalar("`true` or `false`", values::boolean))?
                        .unwrap_or(false);
                }
            }
        }
        Ok((propagation, create, notes))
    }
}

/// A mount's `volume:` options: nocopy.
pub(super) struct VolumeOptionsSeed;

impl<'de> DeserializeSeed<'de> for VolumeOptionsSeed {
    type Value = (bool, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for VolumeOptionsSeed {
    type Value = (bool, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `nocopy`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut nocopy = false;
        while let Some(key) = next_key::<A, MountVolumeKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                MountVolumeKey::Nocopy => {
                    nocopy = value(&mut map, scalar("`true` or `false`", values::boolean))?
                        .unwrap_or(false);
                }
            }
        }
        Ok((nocopy, notes))
    }
}

/// A mount's `tmpfs:` options: size and mode.
pub(super) struct TmpfsOptionsSeed;

impl<'de> DeserializeSeed<'de> for TmpfsOptionsSeed {
    type Value = (u64, u32, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TmpfsOptionsSeed {
    type Value = (u64, u32, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `size` and `mode`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Seen::default();
        let mut notes = Vec::new();
        let mut size = 0;
        let mut mode = 0;
        while let Some(key) = next_key::<A, MountTmpfsKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                MountTmpfsKey::Size => {
                    size = value(&mut map, scalar("a size such as `64m`", resources::bytes))?
                        .unwrap_or(0);
                }
                MountTmpfsKey::Mode => {
                    mode = value(&mut map, scalar("a file mode such as `1777`", file_mode))?
                        .unwrap_or(0);
                }
            }
        }
        Ok((size, mode, notes))
    }
}

/// A file mode in octal, as Compose writes it (`1777`, `0o1777`, `0755`).
fn file_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(format!(
            "`{text}` is not a file mode: write it in octal, e.g. `1777` or `0o755`"
        )),
    }
}

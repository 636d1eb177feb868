//! A service's `env_file`: a path, a list of paths, or a list of
//! `{path, required, format}`. The CLI reads the files and sends their text
//! with the spec; `spec::parse_with_files` merges them into `environment`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::keys::{next_key, EnvFileKey};
use super::seeds::{scalar, text, value};
use crate::spec::EnvFileRef;

fn path(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("the path is empty".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

pub(super) struct EnvFileSeed;

impl<'de> DeserializeSeed<'de> for EnvFileSeed {
    type Value = Vec<EnvFileRef>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EnvFileSeed {
    type Value = Vec<EnvFileRef>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a path, or a list of paths or of `{path, required}`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(vec![EnvFileRef {
            path: path(v).map_err(E::custom)?,
            required: true,
        }])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element_seed(ItemSeed)? {
            out.push(item);
        }
        Ok(out)
    }
}

struct ItemSeed;

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = EnvFileRef;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<EnvFileRef, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed {
    type Value = EnvFileRef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a path, or `{path, required}`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvFileRef, E> {
        Ok(EnvFileRef {
            path: path(v).map_err(E::custom)?,
            required: true,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvFileRef, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut file = None;
        let mut required = true;
        while let Some(key) = next_key::<A, EnvFileKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                EnvFileKey::Path => file = value(&mut map, scalar("a path", path))?,
                EnvFileKey::Required => {
                    required =
                        value(&mut map, scalar("`true` or `false`", bool_of))?.unwrap_or(true)
                }
                EnvFileKey::Format => {
                    let format = value(&mut map, text("`raw`"))?;
                    if format.is_some_and(|f| f != "raw") {
                        return Err(de::Error::custom(
                            "the only env file format is `raw` (KEY=VALUE lines)",
                        ));
                    }
                }
            }
        }
        Ok(EnvFileRef {
            path: file.ok_or_else(|| de::Error::missing_field("path"))?,
            required,
        })
    }
}

fn bool_of(text: &str) -> Result<bool, String> {
    match text {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        other => Err(format!("expected `true` or `false`, not `{other}`")),
    }
}

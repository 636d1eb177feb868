//! `tmpfs`, `cap_drop`, `sysctls` and `logging`: the readers of the
//! container settings in `spec/extras.rs` that are more than a flag.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::environment::EntriesSeed;
use super::keys::{next_key, LoggingKey};
use super::seeds::{list, scalar, text, value};
use crate::spec::extras::{check_capability, tmpfs_entry};

/// `tmpfs`: one entry or a list of `/path[:options]`.
pub(super) struct TmpfsSeed;

impl<'de> DeserializeSeed<'de> for TmpfsSeed {
    type Value = BTreeMap<String, String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TmpfsSeed {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a path such as `/run`, or a list of them")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let (target, options) = tmpfs_entry(v).map_err(E::custom)?;
        Ok(BTreeMap::from([(target, options)]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((target, options)) =
            seq.next_element_seed(scalar("a path such as `/run:size=64m`", tmpfs_entry))?
        {
            out.insert(target, options);
        }
        Ok(out)
    }
}

/// `cap_drop`: a list of capabilities.
pub(super) fn cap_drop<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Vec<String>, A::Error> {
    Ok(value(
        map,
        list("a list of capabilities", |_| {
            scalar("a capability such as `NET_RAW`", check_capability)
        }),
    )?
    .unwrap_or_default())
}

/// `sysctls`: a mapping or a list of `NAME=VALUE`.
pub(super) fn sysctls<'de, A: MapAccess<'de>>(
    map: &mut A,
) -> Result<BTreeMap<String, String>, A::Error> {
    Ok(value(map, EntriesSeed::SYSCTLS)?
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// `logging`: `driver` and `options`.
pub(super) struct LoggingSeed;

impl<'de> DeserializeSeed<'de> for LoggingSeed {
    type Value = (String, BTreeMap<String, String>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LoggingSeed {
    type Value = (String, BTreeMap<String, String>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `driver` and `options`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut driver = String::new();
        let mut options = BTreeMap::new();
        while let Some(key) = next_key::<A, LoggingKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                LoggingKey::Driver => {
                    driver = value(&mut map, text("a log driver such as `json-file`"))?
                        .unwrap_or_default()
                }
                LoggingKey::Options => {
                    options = value(&mut map, EntriesSeed::LOG_OPTIONS)?
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.unwrap_or_default()))
                        .collect()
                }
            }
        }
        Ok((driver, options))
    }
}

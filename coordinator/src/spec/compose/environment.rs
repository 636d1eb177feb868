//! `environment` and `labels` (of services and units): a mapping or a list
//! of `KEY=VALUE`, each name checked and written once.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::keys::{first_time, Seen};
use super::seeds::{scalar, value};
use crate::spec::values;

/// `environment` and `labels`: a mapping, or a list of `KEY=VALUE` (a bare
/// `KEY` has no value). Keeps the order written.
#[derive(Clone, Copy)]
pub(super) struct EntriesSeed {
    noun: &'static str,
    check: fn(&str) -> Result<(), String>,
    check_value: fn(&str) -> Result<(), String>,
}

fn any_value(_: &str) -> Result<(), String> {
    Ok(())
}

impl EntriesSeed {
    pub(super) const ENVIRONMENT: Self = EntriesSeed {
        noun: "variable",
        check: values::env_name,
        check_value: any_value,
    };
    pub(super) const LABELS: Self = EntriesSeed {
        noun: "label",
        check: values::label_name,
        check_value: any_value,
    };
    /// `sysctls`: namespaced kernel parameters only.
    pub(super) const SYSCTLS: Self = EntriesSeed {
        noun: "sysctl",
        check: crate::spec::extras::check_sysctl,
        check_value: any_value,
    };
    /// `logging.options`.
    pub(super) const LOG_OPTIONS: Self = EntriesSeed {
        noun: "option",
        check: values::label_name,
        check_value: any_value,
    };
    /// A unit's `environment`: each entry becomes an `Environment=` line.
    pub(super) const UNIT_ENVIRONMENT: Self = EntriesSeed {
        noun: "variable",
        check: values::unit_env_name,
        check_value: values::unit_env_value,
    };

    fn entry_name(self, seen: &mut Seen, name: &str) -> Result<(), String> {
        (self.check)(name)?;
        first_time(seen, name, self.noun)
    }
}

pub(super) type Entries = Vec<(String, Option<String>)>;

impl<'de> DeserializeSeed<'de> for EntriesSeed {
    type Value = Entries;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Entries, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Entries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or a list of `KEY=VALUE` strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut entries = Vec::new();
        loop {
            let key_seed = scalar("a name", |name: &str| {
                self.entry_name(&mut seen, name)?;
                Ok(name.to_owned())
            });
            let Some(name) = map.next_key_seed(key_seed)? else {
                break;
            };
            let val = value(
                &mut map,
                scalar("a string, number or boolean", |val: &str| {
                    (self.check_value)(val)?;
                    Ok(val.to_owned())
                }),
            )?;
            entries.push((name, val));
        }
        Ok(entries)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entries, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut entries = Vec::new();
        loop {
            let item_seed = scalar("a `KEY=VALUE` string", |item: &str| {
                let (name, val) = match item.split_once('=') {
                    Some((name, val)) => (name, Some(val.to_owned())),
                    None => (item, None),
                };
                self.entry_name(&mut seen, name)?;
                if let Some(val) = &val {
                    (self.check_value)(val)?;
                }
                Ok((name.to_owned(), val))
            });
            let Some(entry) = seq.next_element_seed(item_seed)? else {
                break;
            };
            entries.push(entry);
        }
        Ok(entries)
    }
}

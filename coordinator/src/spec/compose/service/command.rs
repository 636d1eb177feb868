//! `command` and `entrypoint`: a string split as a shell would, or a list.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

use crate::spec::compose::seeds::text;
use crate::spec::values;

/// `command` and `entrypoint`: a string split as a shell would, or a list.
pub(in crate::spec::compose) struct CommandSeed;

impl<'de> DeserializeSeed<'de> for CommandSeed {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CommandSeed {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command line or a list of arguments")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        values::split_command(v).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut args = Vec::new();
        while let Some(arg) = seq.next_element_seed(text("an argument"))? {
            args.push(arg);
        }
        Ok(args)
    }
}

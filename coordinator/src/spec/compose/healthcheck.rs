//! Compose's `healthcheck`, which Docker runs in the container (Convoy's own
//! probes are under `x-convoy`).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::keys::{next_key, HealthcheckKey};
use super::seeds::{scalar, text, value};
use super::Note;
use crate::spec::{values, HealthcheckSpec};

/// Compose's `healthcheck`, run by Docker. `disable: true` and
/// `test: ["NONE"]` are read as the same thing.
pub(super) struct HealthcheckSeed;

impl<'de> DeserializeSeed<'de> for HealthcheckSeed {
    type Value = (HealthcheckSpec, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HealthcheckSeed {
    type Value = (HealthcheckSpec, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `test: [\"CMD\", \"/healthcheck\"]`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut check = HealthcheckSpec::default();
        let mut test = None;
        let mut disable = false;
        let duration = || scalar("a duration such as `30s`", values::duration_ms);
        while let Some(key) = next_key::<A, HealthcheckKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                HealthcheckKey::Test => test = value(&mut map, HealthTestSeed)?,
                HealthcheckKey::Interval => {
                    check.interval_ms = value(&mut map, duration())?.unwrap_or(0)
                }
                HealthcheckKey::Timeout => {
                    check.timeout_ms = value(&mut map, duration())?.unwrap_or(0)
                }
                HealthcheckKey::Retries => {
                    check.retries =
                        value(&mut map, scalar("a number of retries", values::count))?.unwrap_or(0);
                }
                HealthcheckKey::StartPeriod => {
                    check.start_period_ms = value(&mut map, duration())?.unwrap_or(0)
                }
                HealthcheckKey::StartInterval => {
                    check.start_interval_ms = value(&mut map, duration())?.unwrap_or(0)
                }
                HealthcheckKey::Disable => {
                    disable = value(&mut map, scalar("`true` or `false`", values::boolean))?
                        .unwrap_or(false);
                }
            }
        }
        let none = test.as_deref() == Some(&["NONE".to_owned()][..]);
        if disable && test.is_some() && !none {
            return Err(de::Error::custom(
                "`disable: true` turns the healthcheck off, so it cannot also have a `test`",
            ));
        }
        if disable || none {
            // Docker's own spelling of "no healthcheck, not even the image's".
            return Ok((
                HealthcheckSpec {
                    test: vec!["NONE".to_owned()],
                    disable: true,
                    ..HealthcheckSpec::default()
                },
                notes,
            ));
        }
        check.test = test.unwrap_or_default();
        Ok((check, notes))
    }
}

/// `healthcheck.test`: a list starting with `CMD`, `CMD-SHELL` or `NONE`, or
/// a string, which the container's shell runs (`CMD-SHELL`).
struct HealthTestSeed;

impl<'de> DeserializeSeed<'de> for HealthTestSeed {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HealthTestSeed {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command line, or a list such as [\"CMD\", \"/healthcheck\"]")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        values::healthcheck_test(vec!["CMD-SHELL".to_owned(), v.to_owned()]).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut words = Vec::new();
        while let Some(word) = seq.next_element_seed(text("an argument"))? {
            words.push(word);
        }
        values::healthcheck_test(words).map_err(de::Error::custom)
    }
}

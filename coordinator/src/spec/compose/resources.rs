//! `deploy.resources` (`limits`, `reservations`) and `ulimits`; the older
//! service keys (`cpus`, `mem_limit`, ...) are read by `service` with the
//! scalar readers here.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::keys::{next_key, LimitsKey, ReservationsKey, ResourcesKey, UlimitKey};
use super::seeds::{scalar, value};
use super::{nest, Note};
use crate::spec::locate::Seg;
use crate::spec::resources::{check_ulimit_name, parse_bytes, parse_cpus, Ulimit};

/// What `deploy.resources` sets (zeros: not set).
#[derive(Default)]
pub(super) struct Resources {
    pub cpu_limit_nanos: u64,
    pub memory_limit_bytes: u64,
    pub pids_limit: u64,
    pub cpu_reservation_nanos: u64,
    pub memory_reservation_bytes: u64,
    /// `reservations.devices`.
    pub gpus: Option<crate::spec::GpuRequest>,
    pub notes: Vec<Note>,
}

pub(super) fn cpus(text: &str) -> Result<u64, String> {
    parse_cpus(text)
}

pub(super) fn bytes(text: &str) -> Result<u64, String> {
    parse_bytes(text)
}

pub(super) fn pids(text: &str) -> Result<u64, String> {
    match text.trim().parse::<i64>() {
        // Compose and Docker read -1 (and 0) as "no limit".
        Ok(n) if (-1..=0).contains(&n) => Ok(0),
        Ok(n) if n > 0 => Ok(n as u64),
        _ => Err(format!(
            "invalid process count `{text}`: write a positive number, or -1 for no limit"
        )),
    }
}

pub(super) struct ResourcesSeed;

impl<'de> DeserializeSeed<'de> for ResourcesSeed {
    type Value = Resources;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Resources, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResourcesSeed {
    type Value = Resources;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `limits` and `reservations`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Resources, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut out = Resources::default();
        let mut notes = Vec::new();
        while let Some(key) = next_key::<A, ResourcesKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                ResourcesKey::Limits => {
                    if let Some((cpu, memory, pids, limit_notes)) = value(&mut map, LimitsSeed)? {
                        out.cpu_limit_nanos = cpu;
                        out.memory_limit_bytes = memory;
                        out.pids_limit = pids;
                        nest(&mut notes, Seg::Key("limits".to_owned()), limit_notes);
                    }
                }
                ResourcesKey::Reservations => {
                    if let Some((cpu, memory, gpus, reservation_notes)) =
                        value(&mut map, ReservationsSeed)?
                    {
                        out.cpu_reservation_nanos = cpu;
                        out.memory_reservation_bytes = memory;
                        out.gpus = gpus;
                        nest(
                            &mut notes,
                            Seg::Key("reservations".to_owned()),
                            reservation_notes,
                        );
                    }
                }
            }
        }
        out.notes = notes;
        Ok(out)
    }
}

struct LimitsSeed;

impl<'de> DeserializeSeed<'de> for LimitsSeed {
    type Value = (u64, u64, u64, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LimitsSeed {
    type Value = (u64, u64, u64, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `cpus: 0.5` and `memory: 512m`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let (mut cpu, mut memory, mut pid_count) = (0, 0, 0);
        while let Some(key) = next_key::<A, LimitsKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                LimitsKey::Cpus => {
                    cpu = value(&mut map, scalar("a number of CPUs", cpus))?.unwrap_or_default()
                }
                LimitsKey::Memory => {
                    memory =
                        value(&mut map, scalar("a size such as `512m`", bytes))?.unwrap_or_default()
                }
                LimitsKey::Pids => {
                    pid_count =
                        value(&mut map, scalar("a number of processes", pids))?.unwrap_or_default()
                }
            }
        }
        Ok((cpu, memory, pid_count, notes))
    }
}

struct ReservationsSeed;

type Reservations = (u64, u64, Option<crate::spec::GpuRequest>, Vec<Note>);

impl<'de> DeserializeSeed<'de> for ReservationsSeed {
    type Value = Reservations;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ReservationsSeed {
    type Value = Reservations;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `cpus: 0.5` and `memory: 512m`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let (mut cpu, mut memory, mut gpus) = (0, 0, None);
        while let Some(key) = next_key::<A, ReservationsKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                ReservationsKey::Cpus => {
                    cpu = value(&mut map, scalar("a number of CPUs", cpus))?.unwrap_or_default()
                }
                ReservationsKey::Memory => {
                    memory =
                        value(&mut map, scalar("a size such as `512m`", bytes))?.unwrap_or_default()
                }
                ReservationsKey::Devices => {
                    gpus = value(&mut map, super::gpus::DevicesSeed)?.flatten();
                }
            }
        }
        Ok((cpu, memory, gpus, notes))
    }
}

/// `ulimits`: `nofile: 65535` or `nofile: {soft: 1024, hard: 65535}`.
pub(super) struct UlimitsSeed;

impl<'de> DeserializeSeed<'de> for UlimitsSeed {
    type Value = BTreeMap<String, Ulimit>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UlimitsSeed {
    type Value = BTreeMap<String, Ulimit>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `nofile: {soft: 1024, hard: 65535}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(name) = map.next_key_seed(scalar("a ulimit name", |s: &str| {
            check_ulimit_name(s)?;
            Ok(s.to_owned())
        }))? {
            if out.contains_key(&name) {
                return Err(de::Error::custom(format!("duplicate ulimit `{name}`")));
            }
            let limit = map.next_value_seed(UlimitSeed)?;
            out.insert(name, limit);
        }
        Ok(out)
    }
}

struct UlimitSeed;

fn limit_number(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= -1)
        .ok_or_else(|| format!("invalid limit `{text}`: write a number (-1: unlimited)"))
}

impl<'de> DeserializeSeed<'de> for UlimitSeed {
    type Value = Ulimit;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Ulimit, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UlimitSeed {
    type Value = Ulimit;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, or a mapping with `soft` and `hard`")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ulimit, E> {
        let n = i64::try_from(v).map_err(|_| E::custom(format!("limit {v} is too large")))?;
        Ok(Ulimit { soft: n, hard: n })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ulimit, E> {
        let n = limit_number(&v.to_string()).map_err(E::custom)?;
        Ok(Ulimit { soft: n, hard: n })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Ulimit, E> {
        let n = limit_number(v).map_err(E::custom)?;
        Ok(Ulimit { soft: n, hard: n })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ulimit, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let (mut soft, mut hard) = (None, None);
        while let Some(key) = next_key::<A, UlimitKey>(&mut map, &mut seen, &mut notes)? {
            let read = value(&mut map, scalar("a number", limit_number))?;
            match key {
                UlimitKey::Soft => soft = read,
                UlimitKey::Hard => hard = read,
            }
        }
        match (soft, hard) {
            (Some(soft), Some(hard)) if hard != -1 && (soft > hard || soft == -1) => {
                Err(de::Error::custom(format!(
                    "the soft limit {soft} is above the hard limit {hard}"
                )))
            }
            (Some(soft), Some(hard)) => Ok(Ulimit { soft, hard }),
            _ => Err(de::Error::custom(
                "give both `soft` and `hard`, or one number for both",
            )),
        }
    }
}

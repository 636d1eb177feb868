//! `x-convoy.probes`: the checks the agent runs against each instance
//! (`http`, `tcp`, `exec`), one check per probe, names distinct.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::keys::{next_key, HttpProbeKey, ProbeKey, TcpProbeKey};
use super::seeds::{scalar, text, value};
use crate::spec::{values, ProbeCheck, ProbeSpec};

/// `x-convoy.probes`: a list of probes with distinct names.
pub(super) struct ProbesSeed;

impl<'de> DeserializeSeed<'de> for ProbesSeed {
    type Value = Vec<ProbeSpec>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ProbesSeed {
    type Value = Vec<ProbeSpec>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of probes, each with one of `http:`, `tcp:` or `exec:`")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut probes: Vec<ProbeSpec> = Vec::new();
        loop {
            let taken: Vec<&str> = probes.iter().map(|p| p.name.as_str()).collect();
            let Some(probe) = seq.next_element_seed(ProbeSeed { taken: &taken })? else {
                break;
            };
            probes.push(probe);
        }
        Ok(probes)
    }
}

/// One probe. `taken`: the names of the probes before it.
struct ProbeSeed<'a> {
    taken: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for ProbeSeed<'_> {
    type Value = ProbeSpec;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ProbeSpec, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ProbeSeed<'_> {
    type Value = ProbeSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a probe: a mapping with one of `http:`, `tcp:` or `exec:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProbeSpec, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut name = None;
        let mut check: Option<ProbeCheck> = None;
        let mut probe = ProbeSpec {
            name: String::new(),
            check: ProbeCheck::Tcp { port: 0 },
            interval_ms: 0,
            timeout_ms: 0,
            failure_threshold: 0,
            success_threshold: 0,
            start_period_ms: 0,
        };
        let positive = || scalar("a duration such as `5s`", values::positive_duration_ms);
        let threshold = || scalar("a number, at least 1", values::threshold);
        while let Some(key) = next_key::<A, ProbeKey>(&mut map, &mut seen, &mut notes)? {
            let first = check.as_ref().map(ProbeCheck::kind);
            match key {
                ProbeKey::Name => {
                    name = value(&mut map, scalar("a probe name", values::probe_name))?
                }
                ProbeKey::Http => {
                    if let Some(http) = value(&mut map, HttpProbeSeed { first })? {
                        check = Some(http);
                    }
                }
                ProbeKey::Tcp => {
                    if let Some(tcp) = value(&mut map, TcpProbeSeed { first })? {
                        check = Some(tcp);
                    }
                }
                ProbeKey::Exec => {
                    if let Some(exec) = value(&mut map, ExecProbeSeed { first })? {
                        check = Some(exec);
                    }
                }
                ProbeKey::Interval => probe.interval_ms = value(&mut map, positive())?.unwrap_or(0),
                ProbeKey::Timeout => probe.timeout_ms = value(&mut map, positive())?.unwrap_or(0),
                ProbeKey::FailureThreshold => {
                    probe.failure_threshold = value(&mut map, threshold())?.unwrap_or(0)
                }
                ProbeKey::SuccessThreshold => {
                    probe.success_threshold = value(&mut map, threshold())?.unwrap_or(0)
                }
                ProbeKey::StartPeriod => {
                    probe.start_period_ms = value(
                        &mut map,
                        scalar("a duration such as `30s`", values::duration_ms),
                    )?
                    .unwrap_or(0)
                }
            }
        }
        let check = check.ok_or_else(|| {
            de::Error::custom("a probe needs one check: `http:`, `tcp:` or `exec:`")
        })?;
        probe.name = name.unwrap_or_else(|| check.kind().to_owned());
        if self.taken.contains(&probe.name.as_str()) {
            return Err(de::Error::custom(format!(
                "another probe is already named `{}`: give each probe its own `name:`",
                probe.name
            )));
        }
        probe.check = check;
        Ok(probe)
    }
}

/// Refuses a second check in one probe; `first` is the one already read.
fn one_check<E: de::Error>(first: Option<&str>) -> Result<(), E> {
    match first {
        Some(first) => Err(E::custom(format!(
            "a probe runs one check and this one already has `{first}`: \
             write a probe for each check"
        ))),
        None => Ok(()),
    }
}

/// `http: {port, path, expect_status}`.
struct HttpProbeSeed {
    first: Option<&'static str>,
}

impl<'de> DeserializeSeed<'de> for HttpProbeSeed {
    type Value = ProbeCheck;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ProbeCheck, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HttpProbeSeed {
    type Value = ProbeCheck;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `{port: 8080, path: /healthz}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProbeCheck, A::Error> {
        one_check(self.first)?;
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut port = None;
        let mut path = String::new();
        let mut expect_status = 0;
        while let Some(key) = next_key::<A, HttpProbeKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                HttpProbeKey::Port => {
                    port = value(&mut map, scalar("a port number", values::target_port))?
                }
                HttpProbeKey::Path => {
                    path = value(
                        &mut map,
                        scalar("a path such as `/healthz`", values::http_path),
                    )?
                    .unwrap_or_default();
                }
                HttpProbeKey::ExpectStatus => {
                    expect_status =
                        value(&mut map, scalar("an HTTP status code", values::http_status))?
                            .unwrap_or(0);
                }
            }
        }
        Ok(ProbeCheck::Http {
            port: port.ok_or_else(|| de::Error::missing_field("port"))?,
            path,
            expect_status,
        })
    }
}

/// `tcp: {port}`.
struct TcpProbeSeed {
    first: Option<&'static str>,
}

impl<'de> DeserializeSeed<'de> for TcpProbeSeed {
    type Value = ProbeCheck;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ProbeCheck, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TcpProbeSeed {
    type Value = ProbeCheck;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `{port: 5432}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProbeCheck, A::Error> {
        one_check(self.first)?;
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut port = None;
        while let Some(key) = next_key::<A, TcpProbeKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                TcpProbeKey::Port => {
                    port = value(&mut map, scalar("a port number", values::target_port))?
                }
            }
        }
        Ok(ProbeCheck::Tcp {
            port: port.ok_or_else(|| de::Error::missing_field("port"))?,
        })
    }
}

/// `exec: [program, args...]`, run in the container without a shell.
struct ExecProbeSeed {
    first: Option<&'static str>,
}

impl<'de> DeserializeSeed<'de> for ExecProbeSeed {
    type Value = ProbeCheck;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ProbeCheck, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ExecProbeSeed {
    type Value = ProbeCheck;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list: the program to run in the container and its arguments")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ProbeCheck, A::Error> {
        one_check(self.first)?;
        let mut command = Vec::new();
        while let Some(arg) = seq.next_element_seed(text("an argument"))? {
            command.push(arg);
        }
        if command.first().is_none_or(|program| program.is_empty()) {
            return Err(de::Error::custom(
                "the command is empty: give the program to run and its arguments",
            ));
        }
        Ok(ProbeCheck::Exec { command })
    }
}

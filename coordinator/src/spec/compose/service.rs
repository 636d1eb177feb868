//! One entry of `services:`: a container. Reads each key with the module
//! of its block, then puts together what depends on several keys (the
//! restart policy, the update policy).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::convoy::ConvoySeed;
use super::deploy::DeploySeed;
use super::environment::EntriesSeed;
use super::healthcheck::HealthcheckSeed;
use super::keys::{next_key, ServiceKey};
use super::ports::PortSeed;
use super::seeds::{list, scalar, text, value};
use super::update::update_policy;
use super::volumes::VolumesSeed;
use super::{host_access, nest, Note, UNSUPPORTED};
use crate::spec::locate::Seg;
use crate::spec::{values, ServiceSpec};

/// A service, its warnings, and the first error between its keys.
pub(super) struct ServiceSeed;

impl<'de> DeserializeSeed<'de> for ServiceSeed {
    type Value = (ServiceSpec, Vec<Note>, Option<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ServiceSeed {
    type Value = (ServiceSpec, Vec<Note>, Option<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a service: a mapping with at least `image:`")
    }

    /// `web:` with nothing under it: a service without its image.
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::missing_field("image"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut spec = ServiceSpec::default();
        let mut image = None;
        let mut restart = None;
        let mut deploy_restart = None;
        let mut update_config = None;
        let mut replicas_written = false;
        let mut convoy_update = None;
        let mut host_problem = None;
        while let Some(key) = next_key::<A, ServiceKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                ServiceKey::Image => {
                    image = value(&mut map, scalar("an image reference", values::image))?
                }
                ServiceKey::Command => {
                    spec.command = value(&mut map, CommandSeed)?.unwrap_or_default()
                }
                ServiceKey::Entrypoint => {
                    spec.entrypoint = value(&mut map, CommandSeed)?.unwrap_or_default()
                }
                ServiceKey::Environment => {
                    let entries = value(&mut map, EntriesSeed::ENVIRONMENT)?.unwrap_or_default();
                    for (name, val) in entries {
                        match val {
                            Some(val) => {
                                spec.environment.insert(name, val);
                            }
                            None => notes.push(Note {
                                path: vec![Seg::Key("environment".to_owned()), Seg::Key(name)],
                                message:
                                    "has no value, and Convoy does not take values from the shell \
                                          (as Compose does): left unset"
                                        .to_owned(),
                            }),
                        }
                    }
                }
                ServiceKey::Ports => {
                    let ports =
                        value(&mut map, list("a list of ports", |_| PortSeed))?.unwrap_or_default();
                    for (index, (port, port_notes)) in ports.into_iter().enumerate() {
                        let mut indexed = Vec::new();
                        nest(&mut indexed, Seg::Index(index), port_notes);
                        nest(&mut notes, Seg::Key("ports".to_owned()), indexed);
                        spec.ports.push(port);
                    }
                }
                ServiceKey::Labels => {
                    let entries = value(&mut map, EntriesSeed::LABELS)?.unwrap_or_default();
                    spec.labels = entries
                        .into_iter()
                        .map(|(name, val)| (name, val.unwrap_or_default()))
                        .collect();
                }
                ServiceKey::Profiles => {
                    spec.profiles = value(
                        &mut map,
                        list("a list of profile names", |_| {
                            scalar("a profile name", values::profile_name)
                        }),
                    )?
                    .unwrap_or_default();
                }
                ServiceKey::Volumes => {
                    spec.volumes = value(&mut map, VolumesSeed)?.unwrap_or_default();
                }
                ServiceKey::WorkingDir => {
                    spec.working_dir =
                        value(&mut map, scalar("an absolute path", values::working_dir))?
                            .unwrap_or_default();
                }
                ServiceKey::User => {
                    spec.user = value(&mut map, text("a user"))?.unwrap_or_default()
                }
                ServiceKey::Restart => {
                    restart = value(&mut map, scalar("a restart policy", values::restart))?
                }
                ServiceKey::StopSignal => {
                    spec.stop_signal =
                        value(&mut map, scalar("a signal name", values::stop_signal))?
                            .unwrap_or_default();
                }
                ServiceKey::StopGracePeriod => {
                    spec.stop_grace_period_ms = value(
                        &mut map,
                        scalar("a duration such as `10s`", values::duration_ms),
                    )?
                    .unwrap_or_default();
                }
                ServiceKey::Healthcheck => {
                    if let Some((healthcheck, healthcheck_notes)) =
                        value(&mut map, HealthcheckSeed)?
                    {
                        spec.healthcheck = Some(healthcheck);
                        nest(
                            &mut notes,
                            Seg::Key("healthcheck".to_owned()),
                            healthcheck_notes,
                        );
                    }
                }
                ServiceKey::Convoy => {
                    if let Some(convoy) = value(&mut map, ConvoySeed)? {
                        spec.probes = convoy.probes;
                        convoy_update = convoy.update;
                    }
                }
                ServiceKey::Privileged
                | ServiceKey::CapAdd
                | ServiceKey::Devices
                | ServiceKey::Pid
                | ServiceKey::Ipc
                | ServiceKey::Uts
                | ServiceKey::UsernsMode
                | ServiceKey::NetworkMode
                | ServiceKey::SecurityOpt => {
                    let key = key.name();
                    let asked: serde_json::Value = map.next_value()?;
                    match host_access::check(key, &asked) {
                        Ok(()) => notes.push(Note::new(key, UNSUPPORTED)),
                        Err(why) => {
                            host_problem.get_or_insert(Note::new(key, why));
                        }
                    }
                }
                ServiceKey::Deploy => {
                    if let Some(deploy) = value(&mut map, DeploySeed)? {
                        spec.deploy.mode = deploy.mode;
                        spec.deploy.replicas = deploy.replicas;
                        spec.deploy.constraints = deploy.constraints;
                        deploy_restart = deploy.restart;
                        update_config = deploy.update;
                        replicas_written = deploy.replicas_written;
                        nest(&mut notes, Seg::Key("deploy".to_owned()), deploy.notes);
                    }
                }
            }
        }
        spec.image = image.ok_or_else(|| de::Error::missing_field("image"))?;
        // As in Compose, `deploy.restart_policy` wins over `restart`.
        spec.restart = deploy_restart.or(restart).unwrap_or_default();
        let problem = match update_policy(
            &update_config.unwrap_or_default(),
            &convoy_update.unwrap_or_default(),
            &spec.deploy,
            replicas_written,
        ) {
            Ok(policy) => {
                spec.deploy.update = policy;
                None
            }
            Err(problem) => Some(problem),
        };
        Ok((spec, notes, host_problem.or(problem)))
    }
}

/// `command` and `entrypoint`: a string split as a shell would, or a list.
pub(super) struct CommandSeed;

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

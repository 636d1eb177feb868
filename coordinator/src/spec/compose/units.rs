//! `units:`, Convoy's own section: systemd services Convoy writes
//! (`exec_start:`) or adopts (`unit:`), with the same `deploy` and
//! `x-convoy` blocks as a service, and `secrets:` as systemd credentials.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::convoy::ConvoySeed;
use super::deploy::DeploySeed;
use super::document::Services;
use super::environment::EntriesSeed;
use super::keys::{first_time, next_key, UnitKey};
use super::seeds::{scalar, value};
use super::service::CommandSeed;
use super::update::update_policy;
use super::{nest, Note};
use crate::spec::locate::Seg;
use crate::spec::{values, ServiceSpec, UnitFields};

/// `units:`: a mapping from names to systemd services.
pub(super) struct UnitsSeed;

impl<'de> DeserializeSeed<'de> for UnitsSeed {
    type Value = Services;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UnitsSeed {
    type Value = Services;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from unit names to units")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut units: Vec<(String, ServiceSpec)> = Vec::new();
        let mut notes = Vec::new();
        let mut problems = Vec::new();
        loop {
            let name_seed = scalar("a unit name", |name: &str| {
                values::unit_name(name)?;
                first_time(&mut seen, name, "unit")?;
                Ok(name.to_owned())
            });
            let Some(name) = map.next_key_seed(name_seed)? else {
                break;
            };
            let (spec, unit_notes, mut problem) = map.next_value_seed(UnitSeed { name: &name })?;
            // Two entries keeping one unit in two states would fight.
            let adopted = spec.unit.as_ref().filter(|u| u.adopt);
            if let Some(unit) = adopted {
                let other = units.iter().find(|(_, other)| {
                    other
                        .unit
                        .as_ref()
                        .is_some_and(|o| o.unit_name == unit.unit_name)
                });
                if let Some((other, _)) = other {
                    problem.get_or_insert(Note {
                        path: vec![Seg::Key("unit".to_owned())],
                        message: format!(
                            "`{}` is adopted by `{other}` already: adopt a unit once",
                            unit.unit_name
                        ),
                    });
                }
            }
            nest(&mut notes, Seg::Key(name.clone()), unit_notes);
            nest(
                &mut problems,
                Seg::Key(name.clone()),
                problem.into_iter().collect(),
            );
            units.push((name, spec));
        }
        if units.is_empty() {
            return Err(de::Error::custom(
                "no units defined: leave `units:` out, or describe at least one",
            ));
        }
        Ok(Services {
            services: units,
            notes,
            problems,
            depends_on: Vec::new(),
            swarm: Vec::new(),
        })
    }
}

/// One entry of `units:`, its warnings, and the first error between its
/// keys. `name`: its key, for `convoy-NAME.service`.
struct UnitSeed<'a> {
    name: &'a str,
}

impl<'de> DeserializeSeed<'de> for UnitSeed<'_> {
    type Value = (ServiceSpec, Vec<Note>, Option<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UnitSeed<'_> {
    type Value = (ServiceSpec, Vec<Note>, Option<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a unit: a mapping with `exec_start:`, or `unit:` to adopt an existing one")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut spec = ServiceSpec::default();
        let mut unit = UnitFields::default();
        let mut adopted = None;
        let mut deploy_restart = false;
        let mut update_config = None;
        let mut rollback_config = None;
        let mut replicas_written = false;
        let mut convoy_update = None;
        let mut secret_env = false;
        let mut gpu_sharing = false;
        let mut asks_swarm = false;
        let mut asks_reschedule = false;
        let mut asks_pre_deploy = false;
        let mut asks_ingress = false;
        let mut constraint_problem = None;
        while let Some(key) = next_key::<A, UnitKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                UnitKey::Unit => {
                    adopted = value(
                        &mut map,
                        scalar("a unit name such as `nginx.service`", values::adopted_unit),
                    )?;
                }
                UnitKey::ExecStart => {
                    unit.exec_start = value(&mut map, ExecStartSeed)?.unwrap_or_default()
                }
                UnitKey::User => {
                    unit.user = value(&mut map, scalar("a user name or id", values::unit_user))?
                        .unwrap_or_default();
                }
                UnitKey::Restart => {
                    unit.restart = value(
                        &mut map,
                        scalar("a systemd restart policy", values::unit_restart),
                    )?
                    .unwrap_or_default();
                }
                UnitKey::Environment => {
                    let entries =
                        value(&mut map, EntriesSeed::UNIT_ENVIRONMENT)?.unwrap_or_default();
                    for (name, val) in entries {
                        match val {
                            Some(val) => {
                                unit.environment.insert(name, val);
                            }
                            None => notes.push(Note {
                                path: vec![Seg::Key("environment".to_owned()), Seg::Key(name)],
                                message: "has no value, and Convoy does not take values from the \
                                          shell: left unset"
                                    .to_owned(),
                            }),
                        }
                    }
                }
                UnitKey::WorkingDir => {
                    unit.working_dir = value(
                        &mut map,
                        scalar("an absolute path", values::unit_working_dir),
                    )?
                    .unwrap_or_default();
                }
                UnitKey::Description => {
                    unit.description = value(
                        &mut map,
                        scalar("a one-line description", values::unit_description),
                    )?
                    .unwrap_or_default();
                }
                UnitKey::State => {
                    unit.state = value(
                        &mut map,
                        scalar("`running` or `stopped`", values::unit_state),
                    )?
                    .unwrap_or_default();
                }
                UnitKey::Enabled => {
                    unit.enabled = value(&mut map, scalar("`true` or `false`", values::boolean))?
                        .unwrap_or(true);
                }
                UnitKey::Convoy => {
                    if let Some(convoy) = value(&mut map, ConvoySeed)? {
                        spec.probes = convoy.probes;
                        convoy_update = convoy.update;
                        secret_env = !convoy.secret_env.is_empty();
                        gpu_sharing = convoy.gpu_sharing;
                        asks_swarm =
                            matches!(convoy.swarm, Some(super::convoy::SwarmChoice::Cluster(_)));
                        asks_reschedule = convoy.reschedule_after.is_some();
                        asks_pre_deploy = convoy.pre_deploy.is_some();
                        asks_ingress = convoy.ingress.is_some();
                    }
                }
                UnitKey::Secrets => {
                    if let Some((mounts, secret_notes)) = value(
                        &mut map,
                        super::mounts::MountsSeed(super::secrets::SecretMounts { unit: true }),
                    )? {
                        spec.secrets = mounts;
                        nest(&mut notes, Seg::Key("secrets".to_owned()), secret_notes);
                    }
                }
                UnitKey::Deploy => {
                    if let Some(deploy) = value(&mut map, DeploySeed)? {
                        spec.deploy.mode = deploy.mode;
                        spec.deploy.replicas = deploy.replicas;
                        spec.deploy.constraints = deploy.placement.constraints;
                        constraint_problem =
                            deploy.placement.convoy_refused.into_iter().next().map(
                                |(index, why)| Note {
                                    path: vec![
                                        Seg::Key("deploy".to_owned()),
                                        Seg::Key("placement".to_owned()),
                                        Seg::Key("constraints".to_owned()),
                                        Seg::Index(index),
                                    ],
                                    message: why,
                                },
                            );
                        spec.deploy.spread = deploy.placement.spread;
                        spec.deploy.max_replicas_per_node = deploy.placement.max_replicas_per_node;
                        spec.deploy.labels = deploy.labels;
                        deploy_restart = deploy.restart.is_some();
                        update_config = deploy.update;
                        rollback_config = deploy.rollback;
                        replicas_written = deploy.replicas_written;
                        spec.resources.gpus = deploy.resources.and_then(|r| r.gpus);
                        nest(&mut notes, Seg::Key("deploy".to_owned()), deploy.notes);
                    }
                }
            }
        }
        let written = |keys: &[&'static str]| {
            keys.iter()
                .copied()
                .find(|key| seen.iter().any(|s| s == key))
        };
        let problem = |key: &str, message: String| Note {
            path: vec![Seg::Key(key.to_owned())],
            message,
        };
        let mut problems = Vec::new();
        match adopted {
            Some(adopted) => {
                if let Some(key) = written(&WRITTEN_UNIT_KEYS) {
                    problems.push(problem(
                        key,
                        format!(
                            "`unit: {adopted}` adopts an existing unit, whose file Convoy never \
                             writes: remove `{key}`, or remove `unit:` to have Convoy write \
                             `convoy-{}.service`",
                            self.name
                        ),
                    ));
                }
                unit.unit_name = adopted;
                unit.adopt = true;
            }
            None => {
                if let Some(key) = written(&ADOPTED_UNIT_KEYS) {
                    problems.push(problem(
                        key,
                        "is for units adopted with `unit: NAME.service`; a unit Convoy writes \
                         always runs and is enabled"
                            .to_owned(),
                    ));
                }
                if unit.exec_start.is_empty() {
                    return Err(de::Error::custom(
                        "missing field `exec_start`: give the program to run (an absolute \
                         path), or `unit: NAME.service` to adopt an existing unit",
                    ));
                }
                unit.unit_name = format!("convoy-{}.service", self.name);
            }
        }
        if secret_env {
            problems.push(Note {
                path: vec![
                    Seg::Key("x-convoy".to_owned()),
                    Seg::Key("secret_env".to_owned()),
                ],
                message: "a unit gets its secrets as systemd credentials, not variables: list \
                          them under `secrets:` and read `$CREDENTIALS_DIRECTORY/NAME`"
                    .to_owned(),
            });
        }
        if unit.adopt && spec.resources.gpus.is_some() {
            problems.push(Note {
                path: vec![Seg::Key("deploy".to_owned())],
                message: "an adopted unit cannot reserve GPUs: Convoy never writes its file, \
                          so it cannot give it the GPUs' `DeviceAllow=`; remove `unit:` to \
                          have Convoy write it"
                    .to_owned(),
            });
        }
        if let Err(problem) = super::service::share_gpus(gpu_sharing, &mut spec.resources) {
            problems.push(problem);
        }
        if asks_swarm {
            problems.push(Note {
                path: vec![
                    Seg::Key("x-convoy".to_owned()),
                    Seg::Key("swarm".to_owned()),
                ],
                message: "a unit is a systemd service and never runs on Swarm: move it under \
                          `services:` with an image, or remove `swarm`"
                    .to_owned(),
            });
        }
        if asks_pre_deploy {
            problems.push(Note {
                path: vec![
                    Seg::Key("x-convoy".to_owned()),
                    Seg::Key("pre_deploy".to_owned()),
                ],
                message: "a pre-deploy hook runs in a one-off container from a service's \
                          image: units have none; run the step in the unit's ExecStartPre \
                          or as a container service"
                    .to_owned(),
            });
        }
        if asks_reschedule {
            problems.push(Note {
                path: vec![
                    Seg::Key("x-convoy".to_owned()),
                    Seg::Key("reschedule_after".to_owned()),
                ],
                message: "a unit is bound to its host and never moves to another node: \
                          remove `reschedule_after`"
                    .to_owned(),
            });
        }
        if asks_ingress {
            problems.push(Note {
                path: vec![
                    Seg::Key("x-convoy".to_owned()),
                    Seg::Key("ingress".to_owned()),
                ],
                message: "the agents' proxy routes to containers, not to systemd units: remove \
                          `ingress`, or run the program as a service of `services:`"
                    .to_owned(),
            });
        }
        problems.extend(constraint_problem);
        if deploy_restart {
            problems.push(Note {
                path: vec![
                    Seg::Key("deploy".to_owned()),
                    Seg::Key("restart_policy".to_owned()),
                ],
                message: "systemd restarts units: use the unit's `restart:` (systemd's \
                          `Restart=`) instead"
                    .to_owned(),
            });
        }
        match update_policy(
            &update_config.unwrap_or_default(),
            &convoy_update.unwrap_or_default(),
            &spec.deploy,
            replicas_written,
        ) {
            Ok(policy) => {
                spec.deploy.rollback = rollback_config
                    .map(|rollback| super::update::rollback_policy(&rollback, &policy));
                spec.deploy.update = policy;
            }
            Err(problem) => problems.push(problem),
        }
        spec.unit = Some(unit);
        Ok((spec, notes, problems.into_iter().next()))
    }
}

/// The keys of a unit Convoy writes, which an adopted unit cannot have
/// (`secrets`: credentials are `LoadCredential=` lines of the unit file).
const WRITTEN_UNIT_KEYS: [&str; 7] = [
    "exec_start",
    "user",
    "restart",
    "environment",
    "working_dir",
    "description",
    "secrets",
];

/// The keys of an adopted unit, which a unit Convoy writes cannot have.
const ADOPTED_UNIT_KEYS: [&str; 2] = ["state", "enabled"];

/// `exec_start`: a command line split as a shell would (as Compose's
/// `command`), or a list; the program must be an absolute path.
struct ExecStartSeed;

impl<'de> DeserializeSeed<'de> for ExecStartSeed {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ExecStartSeed {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command line or a list of arguments, starting with an absolute path")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        values::split_command(v)
            .and_then(values::exec_start)
            .map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        CommandSeed
            .visit_seq(seq)
            .and_then(|words| values::exec_start(words).map_err(de::Error::custom))
    }
}

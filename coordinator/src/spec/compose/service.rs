//! One entry of `services:`: a container. Reads each key with the module
//! of its block, then puts together what depends on several keys (the
//! restart policy, the update policy).

mod command;
mod for_swarm;
mod legacy;

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::convoy::ConvoySeed;
use super::depends_on::{DependsOnSeed, Written};
use super::deploy::DeploySeed;
use super::environment::EntriesSeed;
use super::healthcheck::HealthcheckSeed;
use super::keys::{next_key, ServiceKey};
use super::networks::{self, DnsSeed, ExtraHostsSeed, ServiceNetworksSeed};
use super::ports::PortSeed;
use super::resources;
use super::seeds::{list, scalar, text, value};
use super::swarm::SwarmRead;
use super::update::update_policy;
use super::volumes::VolumesSeed;
use super::{host_access, nest, Note, UNSUPPORTED};
use crate::spec::locate::Seg;
use crate::spec::{values, ServiceSpec};

pub(super) use command::CommandSeed;
use for_swarm::{swarm_fields, swarm_refusals, SwarmChecks};
pub(super) use legacy::share_gpus;
use legacy::Legacy;

/// A service, its warnings, the first error between its keys, its
/// `depends_on` as written (checked once every service is read), and what
/// `x-convoy.swarm` needs once the top-level default is known.
pub(super) struct ServiceSeed;

type Read = (
    ServiceSpec,
    Vec<Note>,
    Option<Note>,
    Vec<Written>,
    SwarmRead,
);

impl<'de> DeserializeSeed<'de> for ServiceSeed {
    type Value = Read;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ServiceSeed {
    type Value = Read;

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
        let mut rollback_config = None;
        let mut replicas_written = false;
        let mut convoy_update = None;
        let mut host_problem = None;
        // The older keys, to compare with `deploy.resources`.
        let mut legacy = Legacy::default();
        let mut deploy_resources = None;
        let mut depends_on = Vec::new();
        let mut secret_env = Vec::new();
        let mut gpu_sharing = false;
        let mut swarm = SwarmRead::default();
        // The first host-access key written, for a Swarm service's error.
        let mut host_key = None;
        let mut convoy_update_written = false;
        let mut restart_timing = super::deploy::RestartTiming::default();
        let mut raw_constraints = Vec::new();
        let mut convoy_refused = Vec::new();
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
                        if !port.mode.is_empty() {
                            swarm.plain_notes.push(Note {
                                path: vec![
                                    Seg::Key("ports".to_owned()),
                                    Seg::Index(index),
                                    Seg::Key("mode".to_owned()),
                                ],
                                message: "only a Swarm service (`x-convoy.swarm`) publishes in \
                                          `host` or `ingress` mode; a container publishes on \
                                          its node: ignored"
                                    .to_owned(),
                            });
                        }
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
                ServiceKey::Cpus => {
                    legacy.cpus = value(&mut map, scalar("a number of CPUs", resources::cpus))?;
                }
                ServiceKey::MemLimit => {
                    legacy.mem_limit =
                        value(&mut map, scalar("a size such as `512m`", resources::bytes))?;
                }
                ServiceKey::MemReservation => {
                    legacy.mem_reservation =
                        value(&mut map, scalar("a size such as `512m`", resources::bytes))?;
                }
                ServiceKey::PidsLimit => {
                    legacy.pids_limit =
                        value(&mut map, scalar("a number of processes", resources::pids))?;
                }
                ServiceKey::ShmSize => {
                    spec.resources.shm_size_bytes =
                        value(&mut map, scalar("a size such as `64m`", resources::bytes))?
                            .unwrap_or_default();
                }
                ServiceKey::Gpus => {
                    legacy.gpus = value(&mut map, super::gpus::GpusSeed)?.flatten();
                }
                ServiceKey::Ulimits => {
                    spec.resources.ulimits =
                        value(&mut map, resources::UlimitsSeed)?.unwrap_or_default();
                }
                ServiceKey::ReadOnly => {
                    spec.extras.read_only =
                        value(&mut map, scalar("`true` or `false`", values::boolean))?
                            .unwrap_or_default()
                }
                ServiceKey::Tmpfs => {
                    spec.extras.tmpfs =
                        value(&mut map, super::extras::TmpfsSeed)?.unwrap_or_default()
                }
                ServiceKey::Init => {
                    spec.extras.init =
                        value(&mut map, scalar("`true` or `false`", values::boolean))?
                            .unwrap_or_default()
                }
                ServiceKey::CapDrop => spec.extras.cap_drop = super::extras::cap_drop(&mut map)?,
                ServiceKey::Tty => {
                    spec.extras.tty = value(&mut map, scalar("`true` or `false`", values::boolean))?
                        .unwrap_or_default()
                }
                ServiceKey::StdinOpen => {
                    spec.extras.stdin_open =
                        value(&mut map, scalar("`true` or `false`", values::boolean))?
                            .unwrap_or_default()
                }
                ServiceKey::Sysctls => spec.extras.sysctls = super::extras::sysctls(&mut map)?,
                ServiceKey::Platform => {
                    spec.extras.platform = value(
                        &mut map,
                        scalar(
                            "a platform such as `linux/amd64`",
                            crate::spec::extras::platform,
                        ),
                    )?
                    .unwrap_or_default()
                }
                ServiceKey::PullPolicy => {
                    spec.extras.pull_policy = value(
                        &mut map,
                        scalar("a pull policy", crate::spec::extras::pull_policy),
                    )?
                    .unwrap_or_default()
                }
                ServiceKey::Logging => {
                    if let Some((driver, options)) = value(&mut map, super::extras::LoggingSeed)? {
                        spec.extras.log_driver = driver;
                        spec.extras.log_options = options;
                    }
                }
                ServiceKey::EnvFile => {
                    spec.env_files =
                        value(&mut map, super::env_file::EnvFileSeed)?.unwrap_or_default();
                }
                ServiceKey::DependsOn => {
                    if let Some((written, dep_notes)) = value(&mut map, DependsOnSeed)? {
                        depends_on = written;
                        nest(&mut notes, Seg::Key("depends_on".to_owned()), dep_notes);
                    }
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
                    if let Some((mounts, volume_notes)) = value(&mut map, VolumesSeed)? {
                        spec.mounts = mounts;
                        nest(&mut notes, Seg::Key("volumes".to_owned()), volume_notes);
                    }
                }
                ServiceKey::Configs => {
                    if let Some((mounts, config_notes)) = value(
                        &mut map,
                        super::mounts::MountsSeed(super::configs::ConfigMounts),
                    )? {
                        spec.configs = mounts;
                        nest(&mut notes, Seg::Key("configs".to_owned()), config_notes);
                    }
                }
                ServiceKey::Secrets => {
                    if let Some((mounts, secret_notes)) = value(
                        &mut map,
                        super::mounts::MountsSeed(super::secrets::SecretMounts { unit: false }),
                    )? {
                        spec.secrets = mounts;
                        nest(&mut notes, Seg::Key("secrets".to_owned()), secret_notes);
                    }
                }
                ServiceKey::Networks => {
                    if let Some((attachments, network_notes)) =
                        value(&mut map, ServiceNetworksSeed)?
                    {
                        spec.networks = attachments;
                        nest(&mut notes, Seg::Key("networks".to_owned()), network_notes);
                    }
                }
                ServiceKey::Hostname => {
                    spec.hostname = value(&mut map, scalar("a host name", networks::dns_name))?
                        .unwrap_or_default();
                }
                ServiceKey::ExtraHosts => {
                    spec.extra_hosts = value(&mut map, ExtraHostsSeed)?.unwrap_or_default();
                }
                ServiceKey::Dns => {
                    spec.dns = value(&mut map, DnsSeed)?.unwrap_or_default();
                }
                ServiceKey::Expose => {
                    let total = std::cell::Cell::new(0);
                    let entries = value(
                        &mut map,
                        list("a list of ports", |_| {
                            scalar("a port, `PORT/PROTO` or a range", |entry: &str| {
                                networks::expose_counted(entry, &total)
                            })
                        }),
                    )?
                    .unwrap_or_default();
                    spec.expose = networks::expose_list(entries);
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
                        secret_env = convoy.secret_env;
                        gpu_sharing = convoy.gpu_sharing;
                        convoy_update_written = convoy_update.is_some();
                        swarm.choice = convoy.swarm;
                        spec.reschedule_after_ms = convoy.reschedule_after;
                        spec.pre_deploy = convoy.pre_deploy;
                        spec.ingress = convoy.ingress;
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
                    match host_access::read(key, &asked, &mut spec.host_access) {
                        Ok(true) => {
                            host_key.get_or_insert(key);
                        }
                        Ok(false) => notes.push(Note::new(key, UNSUPPORTED)),
                        Err(why) => {
                            host_problem.get_or_insert(Note::new(key, why));
                        }
                    }
                }
                ServiceKey::Deploy => {
                    if let Some(deploy) = value(&mut map, DeploySeed)? {
                        spec.deploy.mode = deploy.mode;
                        spec.deploy.replicas = deploy.replicas;
                        spec.deploy.constraints = deploy.placement.constraints;
                        raw_constraints = deploy.placement.raw_constraints;
                        convoy_refused = deploy.placement.convoy_refused;
                        restart_timing = deploy.restart_timing;
                        spec.deploy.spread = deploy.placement.spread;
                        spec.deploy.max_replicas_per_node = deploy.placement.max_replicas_per_node;
                        spec.deploy.labels = deploy.labels;
                        deploy_restart = deploy.restart;
                        update_config = deploy.update;
                        rollback_config = deploy.rollback;
                        replicas_written = deploy.replicas_written;
                        deploy_resources = deploy.resources;
                        nest(&mut notes, Seg::Key("deploy".to_owned()), deploy.notes);
                    }
                }
            }
        }
        spec.image = image.ok_or_else(|| de::Error::missing_field("image"))?;
        // Before `legacy` and `secret_env` are used up below.
        swarm_refusals(
            &mut swarm,
            &spec,
            SwarmChecks {
                gpus_key: legacy.gpus.is_some(),
                deploy_gpus: deploy_resources.as_ref().is_some_and(|r| r.gpus.is_some()),
                depends_on: !depends_on.is_empty(),
                secret_env: !secret_env.is_empty(),
                convoy_update: convoy_update_written,
                host_key,
                restart_written: restart.is_some(),
            },
        );
        // After the loop: `environment:` may come after `x-convoy:`.
        let secret_problem = super::secrets::add_secret_env(&mut spec, secret_env);
        let resource_problem = legacy
            .merge(deploy_resources, &mut spec.resources)
            .and_then(|()| share_gpus(gpu_sharing, &mut spec.resources))
            .err();
        let restart_policy_written = deploy_restart.is_some();
        // As in Compose, `deploy.restart_policy` wins over `restart`.
        spec.restart = deploy_restart.or(restart).unwrap_or_default();
        swarm_fields(
            &mut swarm,
            &spec,
            restart_policy_written.then_some(restart_timing),
            raw_constraints,
            convoy_refused,
            update_config.as_ref(),
            rollback_config.as_ref(),
        );
        let problem = match update_policy(
            &update_config.unwrap_or_default(),
            &convoy_update.unwrap_or_default(),
            &spec.deploy,
            replicas_written,
        ) {
            Ok(policy) => {
                spec.deploy.rollback = rollback_config
                    .map(|rollback| super::update::rollback_policy(&rollback, &policy));
                spec.deploy.update = policy;
                None
            }
            Err(problem) => Some(problem),
        };
        Ok((
            spec,
            notes,
            host_problem
                .or(secret_problem)
                .or(resource_problem)
                .or(problem),
            depends_on,
            swarm,
        ))
    }
}

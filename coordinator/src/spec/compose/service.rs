//! One entry of `services:`: a container. Reads each key with the module
//! of its block, then puts together what depends on several keys (the
//! restart policy, the update policy).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

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
use super::swarm::{path, SwarmRead, NOT_YET};
use super::update::update_policy;
use super::volumes::VolumesSeed;
use super::{host_access, nest, Note, UNSUPPORTED};
use crate::spec::locate::Seg;
use crate::spec::{values, ServiceSpec};

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

/// What `swarm_refusals` needs beyond the spec: keys the spec no longer
/// shows as written.
struct SwarmChecks {
    gpus_key: bool,
    deploy_gpus: bool,
    depends_on: bool,
    secret_env: bool,
    convoy_update: bool,
    host_key: Option<&'static str>,
    restart_written: bool,
}

/// What a Swarm service cannot have (errors) and what Swarm ignores
/// (warnings), for when the service turns out to run on Swarm.
fn swarm_refusals(swarm: &mut SwarmRead, spec: &ServiceSpec, checks: SwarmChecks) {
    let refuse = |swarm: &mut SwarmRead, keys: &[&str], why: &str| {
        swarm.refused.push(Note {
            path: path(keys),
            message: why.to_owned(),
        });
    };
    if checks.gpus_key {
        refuse(swarm, &["gpus"], &format!("GPUs are {NOT_YET}: Convoy assigns GPUs per container, which Swarm does not let it do; run the service as a plain container (`swarm: false`)"));
    }
    if checks.deploy_gpus {
        refuse(swarm, &["deploy", "resources", "reservations", "devices"], &format!("GPU reservations are {NOT_YET}: Convoy assigns GPUs per container, which Swarm does not let it do; run the service as a plain container (`swarm: false`)"));
    }
    if !spec.probes.is_empty() {
        refuse(swarm, &["x-convoy", "probes"], &format!("`x-convoy.probes` are {NOT_YET}: Swarm watches its tasks with the Docker `healthcheck`; write one instead"));
    }
    if spec.ingress.is_some() {
        refuse(swarm, &["x-convoy", "ingress"], &format!("`x-convoy.ingress` is {NOT_YET}: the agents' proxy routes to containers Convoy runs itself, and Swarm routes to its tasks through its own routing mesh (`ports:`); run the service as a plain container (`swarm: false`)"));
    }
    if checks.convoy_update {
        refuse(swarm, &["x-convoy", "update"], "Swarm's own `deploy.update_config` drives a Swarm service's rollout, and Swarm can run neither `canary` nor `blue-green`: write the settings in `deploy.update_config` (and `rollback_config`) instead");
    }
    if checks.depends_on {
        refuse(swarm, &["depends_on"], &format!("`depends_on` is {NOT_YET} (Swarm starts a service's tasks without waiting for others); remove it"));
    }
    if let Some(key) = checks.host_key {
        refuse(swarm, &[key], &format!("host access (`{key}`) is {NOT_YET}: Convoy grants it per node, and Swarm places tasks on nodes of its own choosing"));
    }
    // `secrets:` and `configs:` become Swarm secrets and configs; a secret
    // as an environment variable would sit in the service's spec, which
    // `docker service inspect` shows to anyone with the engine's socket.
    if checks.secret_env {
        refuse(
            swarm,
            &["x-convoy", "secret_env"],
            "`secret_env` is refused for Swarm services: the value would be in the Swarm \
             service's spec, which `docker service inspect` shows; mount the secret as a file \
             (`secrets:`) instead",
        );
    }
    let ignored = |swarm: &mut SwarmRead, key: &str, why: &str| {
        swarm.swarm_notes.push(Note::new(key, why));
    };
    if checks.restart_written {
        ignored(swarm, "restart", "Swarm ignores `restart` and restarts tasks by `deploy.restart_policy` (default: `any`): ignored");
    }
    if !spec.expose.is_empty() {
        ignored(
            swarm,
            "expose",
            "Swarm services reach each other on their networks without it: ignored",
        );
    }
    if spec.resources.shm_size_bytes != 0 {
        ignored(
            swarm,
            "shm_size",
            "not set on Swarm services' tasks: ignored",
        );
    }
    if !spec.resources.ulimits.is_empty() {
        ignored(
            swarm,
            "ulimits",
            "not set on Swarm services' tasks: ignored",
        );
    }
    if !spec.extras.tmpfs.is_empty() {
        ignored(
            swarm,
            "tmpfs",
            "not set on Swarm services' tasks (use a `volumes` entry of `type: tmpfs`): ignored",
        );
    }
    if !spec.extras.pull_policy.is_empty() {
        ignored(
            swarm,
            "pull_policy",
            "Swarm pulls the image itself: ignored",
        );
    }
    if !spec.extras.platform.is_empty() {
        ignored(swarm, "platform", "Swarm picks the image's platform per node (constrain with `node.platform.os` / `node.platform.arch`): ignored");
    }
}

/// What a Swarm service keeps as written, and the Swarm-only settings a
/// plain container warns about or is refused.
fn swarm_fields(
    swarm: &mut SwarmRead,
    spec: &ServiceSpec,
    restart_timing: Option<super::deploy::RestartTiming>,
    raw_constraints: Vec<String>,
    convoy_refused: Vec<(usize, String)>,
    update: Option<&super::update::UpdateConfig>,
    rollback: Option<&super::update::UpdateConfig>,
) {
    let constraint_path = |index: usize| {
        let mut at = path(&["deploy", "placement", "constraints"]);
        at.push(Seg::Index(index));
        at
    };
    for (index, why) in convoy_refused {
        swarm.plain_problems.push(Note {
            path: constraint_path(index),
            message: format!("{why} (Swarm services, `x-convoy.swarm`, take Swarm's attributes)"),
        });
    }
    for (index, raw) in raw_constraints.iter().enumerate() {
        // Convoy's numeric comparisons (`node.gpu.count >= 2`) are not Swarm's.
        if let Err(why) = crate::spec::swarm::swarm_constraint(raw) {
            swarm.refused.push(Note {
                path: constraint_path(index),
                message: why,
            });
        }
    }
    swarm.fields.constraints = raw_constraints;
    if let Some(timing) = restart_timing {
        let (delay, window) = (timing.delay_ms.is_some(), timing.window_ms.is_some());
        for (written, key) in [(delay, "delay"), (window, "window")] {
            if written {
                swarm.plain_notes.push(Note {
                    path: path(&["deploy", "restart_policy", key]),
                    message: "only Swarm services (`x-convoy.swarm`) use it; Convoy's agent restarts containers with its own backoff: ignored"
                        .to_owned(),
                });
            }
        }
        swarm.fields.restart = Some(crate::spec::SwarmRestart {
            condition: match spec.restart.condition {
                crate::spec::RestartCondition::None => "none",
                crate::spec::RestartCondition::OnFailure => "on-failure",
                crate::spec::RestartCondition::Any => "any",
            }
            .to_owned(),
            delay_ms: timing.delay_ms.unwrap_or(0),
            max_attempts: spec.restart.max_attempts.into(),
            window_ms: timing.window_ms.unwrap_or(0),
        });
    }
    swarm.fields.update = update.map(|u| u.to_swarm());
    swarm.fields.rollback = rollback.map(|u| u.to_swarm());
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

/// `cpus`, `mem_limit`, `mem_reservation` and `pids_limit`: the keys
/// `deploy.resources` took over, as written.
#[derive(Default)]
struct Legacy {
    cpus: Option<u64>,
    mem_limit: Option<u64>,
    mem_reservation: Option<u64>,
    pids_limit: Option<u64>,
    /// `gpus:`, Compose's shorthand for a GPU device reservation.
    gpus: Option<crate::spec::GpuRequest>,
}

/// `x-convoy.gpu_sharing`: lets the service's GPU request share GPUs.
pub(super) fn share_gpus(
    sharing: bool,
    resources: &mut crate::spec::ResourcesSpec,
) -> Result<(), Note> {
    if !sharing {
        return Ok(());
    }
    match resources.gpus.as_mut() {
        Some(gpus) => {
            gpus.shared = true;
            Ok(())
        }
        None => Err(Note {
            path: vec![
                Seg::Key("x-convoy".to_owned()),
                Seg::Key("gpu_sharing".to_owned()),
            ],
            message: "the service makes no GPU request to share: add `gpus:` or \
                      `deploy.resources.reservations.devices`, or remove `gpu_sharing`"
                .to_owned(),
        }),
    }
}

impl Legacy {
    /// Sets `into`'s limits and reservations from `deploy.resources` and the
    /// older keys; the two may both be written only with the same value,
    /// as Compose requires.
    fn merge(
        self,
        deploy: Option<resources::Resources>,
        into: &mut crate::spec::ResourcesSpec,
    ) -> Result<(), Note> {
        let deploy = deploy.unwrap_or_default();
        let pick = |old: Option<u64>, key: &str, new: u64, new_key: &str| match old {
            Some(old) if new != 0 && old != new => Err(Note::new(
                key,
                format!("differs from `deploy.resources.{new_key}`: keep one of the two"),
            )),
            Some(old) => Ok(old),
            None => Ok(new),
        };
        into.cpu_limit_nanos = pick(self.cpus, "cpus", deploy.cpu_limit_nanos, "limits.cpus")?;
        into.memory_limit_bytes = pick(
            self.mem_limit,
            "mem_limit",
            deploy.memory_limit_bytes,
            "limits.memory",
        )?;
        into.pids_limit = pick(
            self.pids_limit,
            "pids_limit",
            deploy.pids_limit,
            "limits.pids",
        )?;
        into.memory_reservation_bytes = pick(
            self.mem_reservation,
            "mem_reservation",
            deploy.memory_reservation_bytes,
            "reservations.memory",
        )?;
        into.cpu_reservation_nanos = deploy.cpu_reservation_nanos;
        into.gpus = match (self.gpus, deploy.gpus) {
            (Some(_), Some(_)) => {
                return Err(Note::new(
                    "gpus",
                    "give GPUs in one of `gpus` and `deploy.resources.reservations.devices`, \
                     not both",
                ))
            }
            (a, b) => a.or(b),
        };
        if into.memory_limit_bytes != 0 && into.memory_reservation_bytes > into.memory_limit_bytes {
            return Err(Note::new(
                "deploy",
                "the memory reservation is above the memory limit: an instance could never \
                 use what is set aside for it",
            ));
        }
        Ok(())
    }
}

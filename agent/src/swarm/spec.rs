//! A plan's `SwarmServiceSpec` as the engine's `ServiceSpec`: pure, and
//! tested field by field. Names: the service `ENV_SERVICE` (from the
//! plan), networks `convoy_swarm_ENV` for the environment's default and
//! `convoy_swarm_ENV_KEY` for the others (an environment name has no `_`,
//! so these are never the names of Convoy's plain containers' bridges,
//! `convoy-ENV...`), external ones as written.

use std::collections::HashMap;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, Limit, Mount, MountTmpfsOptions, MountTypeEnum, MountVolumeOptions,
    NetworkAttachmentConfig, NetworkCreateRequest, ResourceObject, SecretSpec, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecDnsConfig, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets,
    TaskSpecLogDriver, TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use convoy_proto::{SwarmNetwork, SwarmServiceSpec, SwarmUpdateConfig, Workload};

use super::api::{MANAGED, SWARM};
use crate::runtime::docker::create::health_config;
use crate::runtime::docker::volumes::declared_name;
use crate::runtime::labels;
use crate::secrets::{SecretKey, SecretValues};

/// The Compose key of the environment's own network.
const DEFAULT_NETWORK: &str = "default";

/// Docker's name of a Swarm service's network.
pub fn network_name(env: &str, network: &SwarmNetwork) -> String {
    if network.external {
        network.name.clone()
    } else if network.name == DEFAULT_NETWORK || network.name.is_empty() {
        format!("convoy_swarm_{env}")
    } else {
        format!("convoy_swarm_{env}_{}", network.name)
    }
}

/// The networks a service joins: its own, else the environment's.
pub fn networks_of<'a>(
    env: &str,
    spec: &'a SwarmServiceSpec,
) -> Vec<(String, &'a [String], Option<&'a SwarmNetwork>)> {
    if spec.networks.is_empty() {
        return vec![(format!("convoy_swarm_{env}"), &[], None)];
    }
    spec.networks
        .iter()
        .map(|n| (network_name(env, n), n.aliases.as_slice(), Some(n)))
        .collect()
}

/// The overlay network Convoy creates for `network` (None: the
/// environment's default): attachable, labelled as Convoy's.
pub fn network_request(
    env: &str,
    name: &str,
    network: Option<&SwarmNetwork>,
) -> NetworkCreateRequest {
    let mut labels: HashMap<String, String> = network
        .map(|n| {
            n.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    labels.insert(MANAGED.to_string(), "true".to_string());
    labels.insert(SWARM.to_string(), "true".to_string());
    labels.insert(labels::ENV.to_string(), env.to_string());
    NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("overlay".to_string()),
        attachable: Some(true),
        internal: network.map(|n| n.internal),
        labels: Some(labels),
        ..Default::default()
    }
}

/// Convoy's labels of a Swarm service (and of its tasks' containers).
pub fn convoy_labels(w: &Workload) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (labels::ENV.to_string(), w.env.clone()),
        (labels::SERVICE.to_string(), w.service.clone()),
        (labels::WORKLOAD.to_string(), w.id.clone()),
        (labels::REVISION.to_string(), w.revision.to_string()),
        (labels::SPEC_HASH.to_string(), w.spec_hash.clone()),
    ])
}

fn ns(ms: u64) -> Option<i64> {
    (ms != 0).then(|| i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX))
}

fn some<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn nonzero(n: u64) -> Option<i64> {
    (n != 0).then(|| i64::try_from(n).unwrap_or(i64::MAX))
}

/// The engine's spec of the service `w` (whose runtime is `spec`), its
/// tasks getting `secrets` ([`secret_refs`]).
pub fn service_spec(
    w: &Workload,
    spec: &SwarmServiceSpec,
    secrets: Vec<TaskSpecContainerSpecSecrets>,
) -> ServiceSpec {
    let c = spec.container.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
    labels.extend(convoy_labels(w));
    let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let hosts: Vec<String> = c
        .extra_hosts
        .iter()
        .filter_map(|h| h.split_once(':').map(|(host, ip)| format!("{ip} {host}")))
        .collect();
    let mounts: Vec<Mount> = c
        .mounts
        .iter()
        .map(|m| {
            let (typ, source) = match m.r#type.as_str() {
                "bind" => (MountTypeEnum::BIND, Some(m.source.clone())),
                "tmpfs" => (MountTypeEnum::TMPFS, None),
                _ => {
                    let decl = c.named_volumes.iter().find(|d| d.key == m.source);
                    let name = match decl {
                        Some(d) => declared_name(&w.env, d),
                        None if m.source.is_empty() => String::new(),
                        None => format!("convoy-{}-{}", w.env, m.source),
                    };
                    (MountTypeEnum::VOLUME, (!name.is_empty()).then_some(name))
                }
            };
            Mount {
                target: Some(m.target.clone()),
                source,
                typ: Some(typ),
                read_only: m.read_only.then_some(true),
                volume_options: (typ == MountTypeEnum::VOLUME && m.volume_nocopy).then(|| {
                    MountVolumeOptions {
                        no_copy: Some(true),
                        ..Default::default()
                    }
                }),
                tmpfs_options: (typ == MountTypeEnum::TMPFS
                    && (m.tmpfs_size_bytes != 0 || m.tmpfs_mode != 0))
                    .then(|| MountTmpfsOptions {
                        size_bytes: nonzero(m.tmpfs_size_bytes),
                        mode: (m.tmpfs_mode != 0).then_some(i64::from(m.tmpfs_mode)),
                        ..Default::default()
                    }),
                ..Default::default()
            }
        })
        .collect();
    let container = TaskSpecContainerSpec {
        image: Some(c.image.clone()),
        labels: Some(labels.clone()),
        command: some(c.entrypoint.clone()),
        args: some(c.command.clone()),
        hostname: (!c.hostname.is_empty()).then(|| c.hostname.clone()),
        env: some(env),
        dir: (!c.working_dir.is_empty()).then(|| c.working_dir.clone()),
        user: (!c.user.is_empty()).then(|| c.user.clone()),
        tty: c.tty.then_some(true),
        open_stdin: c.stdin_open.then_some(true),
        read_only: c.read_only.then_some(true),
        mounts: some(mounts),
        stop_signal: (!c.stop_signal.is_empty()).then(|| c.stop_signal.clone()),
        stop_grace_period: ns(c.stop_grace_period_ms),
        health_check: c.healthcheck.as_ref().map(health_config),
        hosts: some(hosts),
        dns_config: (!c.dns.is_empty()).then(|| TaskSpecContainerSpecDnsConfig {
            nameservers: Some(c.dns.clone()),
            ..Default::default()
        }),
        init: c.init.then_some(true),
        sysctls: (!c.sysctls.is_empty()).then(|| {
            c.sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        capability_add: some(c.cap_add.clone()),
        capability_drop: some(c.cap_drop.clone()),
        secrets: some(secrets),
        ..Default::default()
    };
    let limits = Limit {
        nano_cpus: nonzero(c.nano_cpus),
        memory_bytes: nonzero(c.memory_bytes),
        pids: nonzero(c.pids_limit),
    };
    let has_limits =
        limits.nano_cpus.is_some() || limits.memory_bytes.is_some() || limits.pids.is_some();
    let resources = (has_limits || c.memory_reservation_bytes != 0).then(|| TaskSpecResources {
        limits: has_limits.then_some(limits),
        reservations: (c.memory_reservation_bytes != 0).then(|| ResourceObject {
            memory_bytes: nonzero(c.memory_reservation_bytes),
            ..Default::default()
        }),
    });
    let restart = spec.restart.as_ref().map(|r| TaskSpecRestartPolicy {
        condition: Some(match r.condition.as_str() {
            "none" => TaskSpecRestartPolicyConditionEnum::NONE,
            "on-failure" => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            _ => TaskSpecRestartPolicyConditionEnum::ANY,
        }),
        delay: ns(r.delay_ms),
        max_attempts: nonzero(r.max_attempts),
        window: ns(r.window_ms),
    });
    let placement = TaskSpecPlacement {
        constraints: some(spec.constraints.clone()),
        preferences: some(
            spec.spread
                .iter()
                .map(|s| TaskSpecPlacementPreferences {
                    spread: Some(TaskSpecPlacementSpread {
                        spread_descriptor: Some(s.clone()),
                    }),
                })
                .collect(),
        ),
        max_replicas: nonzero(u64::from(spec.max_replicas_per_node)),
        ..Default::default()
    };
    let networks: Vec<NetworkAttachmentConfig> = networks_of(&w.env, spec)
        .into_iter()
        .map(|(name, aliases, _)| {
            let mut all = vec![w.service.clone()];
            all.extend(aliases.iter().cloned());
            NetworkAttachmentConfig {
                target: Some(name),
                aliases: Some(all),
                ..Default::default()
            }
        })
        .collect();
    let ports: Vec<EndpointPortConfig> = c
        .ports
        .iter()
        .map(|p| EndpointPortConfig {
            protocol: Some(match p.protocol.as_str() {
                "udp" => EndpointPortConfigProtocolEnum::UDP,
                "sctp" => EndpointPortConfigProtocolEnum::SCTP,
                _ => EndpointPortConfigProtocolEnum::TCP,
            }),
            target_port: Some(i64::from(p.container_port)),
            published_port: (p.host_port != 0).then_some(i64::from(p.host_port)),
            publish_mode: Some(if p.mode == "host" {
                EndpointPortConfigPublishModeEnum::HOST
            } else {
                EndpointPortConfigPublishModeEnum::INGRESS
            }),
            ..Default::default()
        })
        .collect();
    ServiceSpec {
        name: Some(spec.name.clone()),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources,
            restart_policy: restart,
            placement: Some(placement),
            networks: some(networks),
            log_driver: (!c.log_driver.is_empty()).then(|| TaskSpecLogDriver {
                name: Some(c.log_driver.clone()),
                options: Some(
                    c.log_options
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }),
        mode: Some(if spec.global {
            ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            }
        } else {
            ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(i64::from(spec.replicas)),
                }),
                ..Default::default()
            }
        }),
        update_config: spec.update.as_ref().map(update_config),
        rollback_config: spec.rollback.as_ref().map(rollback_config),
        endpoint_spec: (!ports.is_empty()).then(|| EndpointSpec {
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn update_config(u: &SwarmUpdateConfig) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(i64::try_from(u.parallelism).unwrap_or(i64::MAX)),
        delay: ns(u.delay_ms),
        failure_action: match u.failure_action.as_str() {
            "continue" => Some(ServiceSpecUpdateConfigFailureActionEnum::CONTINUE),
            "rollback" => Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            "pause" => Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE),
            _ => None,
        },
        monitor: ns(u.monitor_ms),
        max_failure_ratio: (u.max_failure_ratio != 0.0).then_some(u.max_failure_ratio),
        order: match u.order.as_str() {
            "start-first" => Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
            "stop-first" => Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
            _ => None,
        },
    }
}

fn rollback_config(u: &SwarmUpdateConfig) -> ServiceSpecRollbackConfig {
    ServiceSpecRollbackConfig {
        parallelism: Some(i64::try_from(u.parallelism).unwrap_or(i64::MAX)),
        delay: ns(u.delay_ms),
        failure_action: match u.failure_action.as_str() {
            "continue" => Some(ServiceSpecRollbackConfigFailureActionEnum::CONTINUE),
            "pause" => Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
            _ => None,
        },
        monitor: ns(u.monitor_ms),
        max_failure_ratio: (u.max_failure_ratio != 0.0).then_some(u.max_failure_ratio),
        order: match u.order.as_str() {
            "start-first" => Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST),
            "stop-first" => Some(ServiceSpecRollbackConfigOrderEnum::STOP_FIRST),
            _ => None,
        },
    }
}

/// Where Swarm mounts a secret given by a relative name.
const SECRETS_DIR: &str = "/run/secrets/";
/// Longest Swarm object name.
const MAX_NAME: usize = 64;

/// One Swarm secret a service's tasks get: a Convoy secret version, or a
/// config's content (bollard has no configs API; a secret mounts the same
/// way, read-only, on tmpfs).
pub struct SecretObject {
    /// The Swarm secret's name: `convoy_ENV_NAME_vN` for a secret,
    /// `convoy_ENV_config_NAME_SHA12` for a config (a hash when longer
    /// than Swarm allows). Swarm secrets are immutable, so a new version
    /// or content is a new name.
    pub name: String,
    /// What to create it with (the value inside, base64): never logged.
    pub spec: SecretSpec,
    /// Where the task gets it.
    pub file: TaskSpecContainerSpecFile,
}

fn object_name(full: String) -> String {
    use sha2::{Digest, Sha256};
    if full.len() <= MAX_NAME {
        full
    } else {
        let digest = hex::encode(Sha256::digest(full.as_bytes()));
        format!("convoy_{}", &digest[..24])
    }
}

fn file_of(
    target: &str,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: u32,
    default_mode: u32,
) -> TaskSpecContainerSpecFile {
    TaskSpecContainerSpecFile {
        // Swarm takes a name under /run/secrets, or an absolute path.
        name: Some(
            target
                .strip_prefix(SECRETS_DIR)
                .unwrap_or(target)
                .to_string(),
        ),
        uid: Some(uid.unwrap_or(0).to_string()),
        gid: Some(gid.unwrap_or(0).to_string()),
        mode: Some(if mode == 0 { default_mode } else { mode }),
    }
}

/// The Swarm secrets service `w` uses: its secrets (values from `values`,
/// the plan's) and its configs. Errors name what the plan lacks.
pub fn secret_objects(
    w: &Workload,
    spec: &SwarmServiceSpec,
    values: &SecretValues,
) -> Result<Vec<SecretObject>, String> {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let Some(c) = spec.container.as_ref() else {
        return Ok(Vec::new());
    };
    let labelled = |kind: &str, name: &str| {
        HashMap::from([
            (MANAGED.to_string(), "true".to_string()),
            (SWARM.to_string(), "true".to_string()),
            (labels::ENV.to_string(), w.env.clone()),
            (format!("io.convoy.{kind}"), name.to_string()),
        ])
    };
    let mut out = Vec::new();
    for m in &c.secrets {
        let key = SecretKey {
            env: w.env.clone(),
            name: m.name.clone(),
            version: m.version,
        };
        let value = values.get(&key).ok_or_else(|| {
            format!(
                "the plan lacks the value of secret `{}` v{} (removed, or not kept any more)",
                m.name, m.version
            )
        })?;
        let name = object_name(format!("convoy_{}_{}_v{}", w.env, m.name, m.version));
        out.push(SecretObject {
            spec: SecretSpec {
                name: Some(name.clone()),
                labels: Some(labelled("secret", &m.name)),
                data: Some(b64(value)),
                ..Default::default()
            },
            file: file_of(&m.target, m.uid, m.gid, m.mode, 0o400),
            name,
        });
    }
    for cfg in &c.configs {
        let digest = if cfg.sha256.len() >= 12 {
            cfg.sha256[..12].to_string()
        } else {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(&cfg.content))[..12].to_string()
        };
        let name = object_name(format!("convoy_{}_config_{}_{digest}", w.env, cfg.name));
        out.push(SecretObject {
            spec: SecretSpec {
                name: Some(name.clone()),
                labels: Some(labelled("config", &cfg.name)),
                data: Some(b64(&cfg.content)),
                ..Default::default()
            },
            file: file_of(&cfg.target, cfg.uid, cfg.gid, cfg.mode, 0o444),
            name,
        });
    }
    Ok(out)
}

/// The task's references to `objects`, whose IDs `ids` gives by name.
pub fn secret_refs(
    objects: &[SecretObject],
    ids: &HashMap<String, String>,
) -> Vec<TaskSpecContainerSpecSecrets> {
    objects
        .iter()
        .map(|o| TaskSpecContainerSpecSecrets {
            file: Some(o.file.clone()),
            secret_id: ids.get(&o.name).cloned(),
            secret_name: Some(o.name.clone()),
        })
        .collect()
}

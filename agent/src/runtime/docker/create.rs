//! The engine's create request for a workload: labels, ports, restart and
//! stop settings, healthcheck, and the networks it joins (with their
//! aliases, hostname, extra hosts, DNS servers).

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceRequest, EndpointSettings, HealthConfig, HostConfig,
    HostConfigLogConfig, NetworkCreateRequest, NetworkingConfig, PortBinding, ResourcesUlimits,
    RestartPolicy, RestartPolicyNameEnum,
};
use convoy_proto::{workload, ContainerSpec, HealthCheck, NetworkAttachment, Workload};

use super::DEFAULT_STOP_GRACE_SECS;
use crate::runtime::{container_labels, labels, RuntimeError};

/// The key of the environment's own network in a spec's `networks:`.
const DEFAULT_NETWORK: &str = "default";
/// Docker's default bridge network.
const DOCKER_BRIDGE: &str = "bridge";

/// A network a container joins on its node.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Joined {
    /// Its Docker name.
    pub name: String,
    /// The service name first, then the spec's aliases.
    pub aliases: Vec<String>,
    /// How the agent creates it when missing; `None`: an external network,
    /// which must exist.
    pub create: Option<NetworkCreateRequest>,
}

/// The Docker name of a network of environment `env`: `convoy-ENV` for the
/// default one, `convoy-ENV-NAME` for one a spec declares, the name itself
/// for an external one.
pub(super) fn network_name(env: &str, attachment: &NetworkAttachment) -> String {
    if attachment.external {
        attachment.name.clone()
    } else if attachment.name == DEFAULT_NETWORK {
        format!("convoy-{env}")
    } else {
        format!("convoy-{env}-{}", attachment.name)
    }
}

/// The networks a workload's container joins, in order (the first at
/// create): the spec's, or the environment's default network.
pub(super) fn networks_of(workload: &Workload) -> Vec<Joined> {
    let default = [NetworkAttachment {
        name: DEFAULT_NETWORK.to_string(),
        ..NetworkAttachment::default()
    }];
    let attachments = match &workload.runtime {
        // The host's network stack: no network to join.
        Some(workload::Runtime::Container(spec)) if spec.network_mode == HOST => return Vec::new(),
        Some(workload::Runtime::Container(spec)) if !spec.networks.is_empty() => &spec.networks,
        Some(workload::Runtime::Container(_)) => &default[..],
        Some(workload::Runtime::Unit(_) | workload::Runtime::Swarm(_)) | None => return Vec::new(),
    };
    attachments
        .iter()
        .map(|attachment| {
            let NetworkAttachment {
                name: _,
                aliases,
                external,
                internal,
                labels: spec_labels,
            } = attachment;
            let name = network_name(&workload.env, attachment);
            let mut all = vec![workload.service.clone()];
            all.extend(aliases.iter().filter(|a| **a != workload.service).cloned());
            // Docker's default bridge takes no aliases (its containers have
            // no DNS): it would refuse to start the container.
            if *external && name == DOCKER_BRIDGE {
                all.clear();
            }
            let create = (!external).then(|| {
                // Convoy's labels win over the spec's, as on containers.
                let mut net_labels: HashMap<String, String> =
                    spec_labels.clone().into_iter().collect();
                net_labels.insert(labels::MANAGED.to_string(), "true".to_string());
                net_labels.insert(labels::ENV.to_string(), workload.env.clone());
                NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".to_string()),
                    internal: internal.then_some(true),
                    labels: Some(net_labels),
                    ..Default::default()
                }
            });
            Joined {
                name,
                aliases: all,
                create,
            }
        })
        .collect()
}

/// The endpoint settings of a container on a network: its aliases.
pub(super) fn endpoint(joined: &Joined) -> EndpointSettings {
    EndpointSettings {
        aliases: (!joined.aliases.is_empty()).then(|| joined.aliases.clone()),
        ..Default::default()
    }
}

/// Compose's healthcheck as the engine takes it (durations in ns).
pub(crate) fn health_config(check: &HealthCheck) -> HealthConfig {
    let HealthCheck {
        test,
        interval_ms,
        timeout_ms,
        retries,
        start_period_ms,
        start_interval_ms,
        disable,
    } = check;
    if *disable || test.first().map(String::as_str) == Some("NONE") {
        return HealthConfig {
            test: Some(vec!["NONE".to_string()]),
            ..Default::default()
        };
    }
    let ns = |ms: &u64| {
        (*ms != 0).then(|| i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX))
    };
    HealthConfig {
        // Empty: the image's test, with the timings given here.
        test: (!test.is_empty()).then(|| test.clone()),
        interval: ns(interval_ms),
        timeout: ns(timeout_ms),
        retries: (*retries != 0).then(|| i64::from(*retries)),
        start_period: ns(start_period_ms),
        start_interval: ns(start_interval_ms),
    }
}

/// The engine's create request for a workload.
pub(super) fn create_body(
    node: &str,
    workload: &Workload,
) -> Result<ContainerCreateBody, RuntimeError> {
    let Some(workload::Runtime::Container(spec)) = &workload.runtime else {
        return Err(RuntimeError::Engine {
            context: format!("creating workload `{}`", workload.id),
            message: "the plan gives it no container spec".to_string(),
        });
    };
    let ContainerSpec {
        image,
        command,
        entrypoint,
        env,
        ports,
        labels: _,
        volumes,
        // Read by `volumes::mounts_of` (the mounts) and `volumes::needed`
        // (what the agent creates first).
        mounts: _,
        named_volumes: _,
        working_dir,
        user,
        restart: _,
        stop_signal,
        stop_grace_period_ms,
        healthcheck,
        networks: _,
        hostname,
        extra_hosts,
        dns,
        expose,
        // The reconciler's gate, before anything is created.
        depends_on: _,
        nano_cpus,
        memory_bytes,
        pids_limit,
        memory_reservation_bytes,
        shm_size_bytes,
        ulimits,
        read_only,
        tmpfs,
        init,
        cap_drop,
        tty,
        stdin_open,
        sysctls,
        log_driver,
        log_options,
        // Read by the reconciler before the create (`ensure_image`).
        pull_policy: _,
        // Given with the create request (`create_options`).
        platform: _,
        // Written and mounted by the runtime (`configs.rs`).
        configs: _,
        // Written on the node's tmpfs by the reconciler (`crate::secrets`)
        // and added to the request by `add_secrets`.
        secrets: _,
        // Host access, granted by the node's admin (`check_host_access`).
        privileged,
        cap_add,
        devices,
        pid_mode,
        ipc_mode,
        uts_mode,
        userns_mode,
        network_mode,
        security_opt,
        gpu_uuids,
        gpu_capabilities,
    } = spec;
    if !gpu_capabilities.is_empty() && gpu_uuids.is_empty() {
        // Never run a GPU workload without its GPUs.
        return Err(RuntimeError::Engine {
            context: format!("creating workload `{}`", workload.id),
            message: "the plan asks for GPUs but pins none to it".to_string(),
        });
    }
    // 0 is "not set" on the wire; Docker takes i64.
    let limit = |n: &u64| (*n != 0).then(|| i64::try_from(*n).unwrap_or(i64::MAX));

    let mut env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();

    let mut exposed_ports: HashMap<String, HashMap<(), ()>> = HashMap::new();
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in ports {
        let protocol = if port.protocol.is_empty() {
            "tcp"
        } else {
            port.protocol.as_str()
        };
        let key = format!("{}/{protocol}", port.container_port);
        exposed_ports.insert(key.clone(), HashMap::new());
        let binding = PortBinding {
            host_ip: (!port.host_ip.is_empty()).then(|| port.host_ip.clone()),
            host_port: Some(if port.host_port == 0 {
                String::new()
            } else {
                port.host_port.to_string()
            }),
        };
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    // `expose`: reachable by other containers, published nowhere.
    for port in expose {
        let key = if port.contains('/') {
            port.clone()
        } else {
            format!("{port}/tcp")
        };
        exposed_ports.entry(key).or_default();
    }
    // The first network at create (the engine's API 1.41 takes one); the
    // others are connected before the container starts.
    let first = networks_of(workload).into_iter().next();

    let grace_secs = if *stop_grace_period_ms == 0 {
        DEFAULT_STOP_GRACE_SECS
    } else {
        i64::try_from(stop_grace_period_ms.div_ceil(1000)).unwrap_or(i64::MAX)
    };
    // Old plans' short syntax, then the binds of `mounts` that create
    // their host path; the other mounts go through the Mounts API.
    let (mounts, mount_binds) = super::volumes::mounts_of(workload)?;
    let mut binds = volumes.clone();
    binds.extend(mount_binds);
    let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
    let non_empty_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());

    Ok(ContainerCreateBody {
        image: Some(image.clone()),
        tty: tty.then_some(true),
        open_stdin: stdin_open.then_some(true),
        cmd: non_empty_vec(command),
        entrypoint: non_empty_vec(entrypoint),
        env: (!env.is_empty()).then_some(env),
        labels: Some(container_labels(node, workload)),
        working_dir: non_empty(working_dir),
        user: non_empty(user),
        stop_signal: non_empty(stop_signal),
        stop_timeout: Some(grace_secs),
        exposed_ports: (!exposed_ports.is_empty()).then_some(exposed_ports),
        healthcheck: healthcheck.as_ref().map(health_config),
        hostname: non_empty(hostname),
        networking_config: first.as_ref().map(|joined| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(joined.name.clone(), endpoint(joined))])),
        }),
        host_config: Some(HostConfig {
            // The agent restarts containers itself, per the workload's policy.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            binds: non_empty_vec(&binds),
            mounts: (!mounts.is_empty()).then_some(mounts),
            network_mode: if network_mode == HOST {
                Some(HOST.to_string())
            } else {
                first.as_ref().map(|joined| joined.name.clone())
            },
            privileged: privileged.then_some(true),
            cap_add: non_empty_vec(cap_add),
            devices: (!devices.is_empty()).then(|| devices.iter().map(|d| device(d)).collect()),
            pid_mode: non_empty(pid_mode),
            ipc_mode: non_empty(ipc_mode),
            uts_mode: non_empty(uts_mode),
            userns_mode: non_empty(userns_mode),
            security_opt: non_empty_vec(security_opt),
            device_requests: device_requests(gpu_uuids, gpu_capabilities),
            extra_hosts: non_empty_vec(extra_hosts),
            dns: non_empty_vec(dns),
            nano_cpus: limit(nano_cpus),
            memory: limit(memory_bytes),
            memory_reservation: limit(memory_reservation_bytes),
            pids_limit: limit(pids_limit),
            shm_size: limit(shm_size_bytes),
            readonly_rootfs: read_only.then_some(true),
            tmpfs: (!tmpfs.is_empty()).then(|| tmpfs.clone().into_iter().collect()),
            init: init.then_some(true),
            cap_drop: non_empty_vec(cap_drop),
            sysctls: (!sysctls.is_empty()).then(|| sysctls.clone().into_iter().collect()),
            log_config: (!log_driver.is_empty() || !log_options.is_empty()).then(|| {
                HostConfigLogConfig {
                    typ: non_empty(log_driver),
                    config: (!log_options.is_empty())
                        .then(|| log_options.clone().into_iter().collect()),
                }
            }),
            ulimits: (!ulimits.is_empty()).then(|| {
                ulimits
                    .iter()
                    .map(|u| ResourcesUlimits {
                        name: Some(u.name.clone()),
                        soft: Some(u.soft),
                        hard: Some(u.hard),
                    })
                    .collect()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The GPUs pinned to the instance as Docker's one `DeviceRequest` for the
/// NVIDIA runtime (what `docker run --gpus device=UUID` sends); none
/// without GPUs.
fn device_requests(uuids: &[String], capabilities: &[String]) -> Option<Vec<DeviceRequest>> {
    if uuids.is_empty() {
        return None;
    }
    let capabilities = if capabilities.is_empty() {
        vec!["gpu".to_string()]
    } else {
        capabilities.to_vec()
    };
    Some(vec![DeviceRequest {
        driver: Some("nvidia".to_string()),
        count: None,
        device_ids: Some(uuids.to_vec()),
        // One set of capabilities, all required (Docker's AND list).
        capabilities: Some(vec![capabilities]),
        options: None,
    }])
}

/// Refuses a workload that bind-mounts a host path under none of
/// `allowed` (the node's `--allow-bind` roots), whatever the plan says.
pub(super) fn check_binds(
    node: &str,
    workload: &Workload,
    allowed: &[String],
) -> Result<(), RuntimeError> {
    let Some(workload::Runtime::Container(spec)) = &workload.runtime else {
        return Ok(());
    };
    let refused: Vec<&str> = super::volumes::bind_sources(spec)
        .into_iter()
        .filter(|source| !convoy_api::host_paths::allowed(allowed, source))
        .collect();
    let Some(first) = refused.first() else {
        return Ok(());
    };
    let now = if allowed.is_empty() {
        "it allows none now".to_string()
    } else {
        format!("it allows only {}", allowed.join(", "))
    };
    Err(RuntimeError::NotAllowed(format!(
        "node `{node}` refuses the bind mount of host path `{first}` for `{}`: \
         an admin allows it by running convoy-agent with `--allow-bind {first}` ({now})",
        workload.id
    )))
}

/// Docker's name for sharing a namespace with the host.
const HOST: &str = "host";

/// `HOST:CONTAINER:PERMISSIONS` (as the coordinator writes it) for Docker.
fn device(text: &str) -> bollard::models::DeviceMapping {
    let mut parts = text.splitn(3, ':');
    let host = parts.next().unwrap_or_default().to_string();
    let container = parts.next().map_or_else(|| host.clone(), str::to_string);
    bollard::models::DeviceMapping {
        path_on_host: Some(host),
        path_in_container: Some(container),
        cgroup_permissions: Some(parts.next().unwrap_or("rwm").to_string()),
    }
}

/// The kinds of host access `spec` asks for, by their Compose key (the
/// names `--allow-host-access` grants).
pub(super) fn host_access_kinds(spec: &ContainerSpec) -> Vec<&'static str> {
    [
        ("privileged", spec.privileged),
        ("cap_add", !spec.cap_add.is_empty()),
        ("devices", !spec.devices.is_empty()),
        ("pid", spec.pid_mode == HOST),
        ("ipc", spec.ipc_mode == HOST),
        ("uts", spec.uts_mode == HOST),
        ("userns_mode", spec.userns_mode == HOST),
        ("network_mode", spec.network_mode == HOST),
        ("security_opt", !spec.security_opt.is_empty()),
    ]
    .into_iter()
    .filter_map(|(kind, asked)| asked.then_some(kind))
    .collect()
}

/// Refuses a workload that asks for host access the node's admin did not
/// grant (`--allow-host-access`), whatever the plan says.
pub(super) fn check_host_access(
    node: &str,
    workload: &Workload,
    granted: &[String],
) -> Result<(), RuntimeError> {
    let Some(workload::Runtime::Container(spec)) = &workload.runtime else {
        return Ok(());
    };
    let Some(kind) = host_access_kinds(spec)
        .into_iter()
        .find(|kind| !convoy_api::host_access::allowed(granted, kind))
    else {
        return Ok(());
    };
    let now = if granted.is_empty() {
        "it grants none now".to_string()
    } else {
        format!("it grants only {}", granted.join(", "))
    };
    Err(RuntimeError::NotAllowed(format!(
        "node `{node}` refuses `{kind}` for `{}`: it gives the container access to the host, \
         and an admin grants it by running convoy-agent with `--allow-host-access {kind}` ({now})",
        workload.id
    )))
}

/// `busybox` → `busybox:latest`: without a tag the engine pulls every tag.
pub(super) fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

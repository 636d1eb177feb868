//! The engine's create request for a workload: labels, ports, restart and
//! stop settings, healthcheck.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HealthConfig, HostConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use convoy_proto::{workload, ContainerSpec, HealthCheck, Workload};

use super::DEFAULT_STOP_GRACE_SECS;
use crate::runtime::{container_labels, RuntimeError};

/// Compose's healthcheck as the engine takes it (durations in ns).
pub(super) fn health_config(check: &HealthCheck) -> HealthConfig {
    let HealthCheck {
        test,
        interval_ms,
        timeout_ms,
        retries,
        start_period_ms,
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
        start_interval: None,
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
        working_dir,
        user,
        restart: _,
        stop_signal,
        stop_grace_period_ms,
        healthcheck,
    } = spec;

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

    let grace_secs = if *stop_grace_period_ms == 0 {
        DEFAULT_STOP_GRACE_SECS
    } else {
        i64::try_from(stop_grace_period_ms.div_ceil(1000)).unwrap_or(i64::MAX)
    };
    let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
    let non_empty_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());

    Ok(ContainerCreateBody {
        image: Some(image.clone()),
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
        host_config: Some(HostConfig {
            // The agent restarts containers itself, per the workload's policy.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            binds: non_empty_vec(volumes),
            ..Default::default()
        }),
        ..Default::default()
    })
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
    let refused = convoy_api::host_paths::refused(allowed, &spec.volumes);
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

/// `busybox` → `busybox:latest`: without a tag the engine pulls every tag.
pub(super) fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

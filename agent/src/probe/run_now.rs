//! RunProbes: every check of the listed workloads, run once, now.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use convoy_proto::{workload, Health, Probe, ProbeResult, WorkloadState, WorkloadStatus};

use super::check::run_check;
use super::check::tcp_connect;
use super::config::{human, Check, ProbeConfig};
use super::http::http_get;
use super::{DOCKER, RUNNING};
use crate::plan::Plan;
use crate::runtime::{cut_output, ContainerState, Runtime};

/// How long reading a container's state may take.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs every check of the listed workloads (all of the plan's when empty)
/// now, in parallel, each bounded by its timeout. `statuses` are the
/// reconciler's, for the container of each workload.
pub async fn run_now<R: Runtime>(
    runtime: &R,
    plan: Option<&Plan>,
    statuses: &BTreeMap<String, WorkloadStatus>,
    workload_ids: &[String],
) -> Vec<ProbeResult> {
    let workloads: Vec<_> = plan
        .map(|p| p.workloads().iter().collect())
        .unwrap_or_default();
    let ids: Vec<String> = if workload_ids.is_empty() {
        workloads.iter().map(|w| w.id.clone()).collect()
    } else {
        workload_ids.to_vec()
    };
    let runs = ids.into_iter().map(|id| {
        let workload = workloads.iter().find(|w| w.id == id).copied();
        let status = statuses.get(&id);
        async move {
            let Some(workload) = workload else {
                return vec![not_running(&id, "not in this node's plan".to_string())];
            };
            if matches!(workload.runtime, Some(workload::Runtime::Unit(_))) {
                return probe_unit(&id, &workload.probes, status).await;
            }
            probe_workload(runtime, &id, &workload.probes, status).await
        }
    });
    futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn not_running(workload_id: &str, output: String) -> ProbeResult {
    ProbeResult {
        workload_id: workload_id.to_string(),
        probe: RUNNING.to_string(),
        healthy: false,
        output,
        duration_ms: 0,
    }
}

/// The state in words: `exited`, `pending`, ...
fn state_name(state: i32) -> String {
    WorkloadState::try_from(state)
        .unwrap_or(WorkloadState::Unspecified)
        .as_str_name()
        .trim_start_matches("WORKLOAD_STATE_")
        .to_lowercase()
}

async fn probe_workload<R: Runtime>(
    runtime: &R,
    id: &str,
    probes: &[Probe],
    status: Option<&WorkloadStatus>,
) -> Vec<ProbeResult> {
    let Some(status) = status else {
        return vec![not_running(id, "no container yet".to_string())];
    };
    let running = status.state == WorkloadState::Running as i32 && !status.container_id.is_empty();
    if !running {
        let mut output = format!("not running: {}", state_name(status.state));
        if !status.reason.is_empty() {
            output.push_str(&format!(" ({})", status.reason));
        }
        return vec![not_running(id, output)];
    }
    let container_id = status.container_id.as_str();
    let info = match tokio::time::timeout(INSPECT_TIMEOUT, runtime.inspect(container_id)).await {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => return vec![not_running(id, e.to_string())],
        Err(_) => {
            return vec![not_running(
                id,
                format!("docker did not answer within {}", human(INSPECT_TIMEOUT)),
            )]
        }
    };
    if info.state != Some(ContainerState::Running) {
        let state = info
            .state
            .map_or("gone".to_string(), |s| format!("{s:?}").to_lowercase());
        return vec![not_running(id, format!("not running: {state}"))];
    }
    let mut results = Vec::new();
    if let Some(docker) = &info.health {
        let output = match docker.status {
            Health::Starting if docker.output.is_empty() => "starting".to_string(),
            Health::Starting => format!("starting: {}", docker.output),
            _ => docker.output.clone(),
        };
        results.push(ProbeResult {
            workload_id: id.to_string(),
            probe: DOCKER.to_string(),
            healthy: docker.status == Health::Healthy,
            output,
            duration_ms: 0,
        });
    }
    let configs: Vec<ProbeConfig> = probes.iter().map(ProbeConfig::from_proto).collect();
    let info = &info;
    let runs = configs.iter().map(|config| async move {
        let mut address = match &config.check {
            Check::Http { port, .. } | Check::Tcp { port } => info.address(*port),
            _ => None,
        };
        let run = run_check(runtime, container_id, config, &mut address).await;
        ProbeResult {
            workload_id: id.to_string(),
            probe: config.name.clone(),
            healthy: run.passed,
            output: run.output,
            duration_ms: u64::try_from(run.took.as_millis()).unwrap_or(u64::MAX),
        }
    });
    results.extend(futures::future::join_all(runs).await);
    if results.is_empty() {
        results.push(ProbeResult {
            workload_id: id.to_string(),
            probe: RUNNING.to_string(),
            healthy: true,
            output: "running; it has no health checks".to_string(),
            duration_ms: 0,
        });
    }
    results
}

/// A unit's checks: systemd's state (probe `systemd`: healthy while
/// active), then its HTTP and TCP probes against the host's loopback.
async fn probe_unit(
    id: &str,
    probes: &[Probe],
    status: Option<&WorkloadStatus>,
) -> Vec<ProbeResult> {
    let unit = status.and_then(|s| s.unit.as_ref());
    let active = unit.is_some_and(|u| u.active_state == "active");
    let output = match (unit, status) {
        (Some(u), Some(s)) if !s.reason.is_empty() => {
            format!("{} ({}): {}", u.active_state, u.sub_state, s.reason)
        }
        (Some(u), _) if !u.active_state.is_empty() => {
            format!("{} ({})", u.active_state, u.sub_state)
        }
        (_, Some(s)) if !s.reason.is_empty() => s.reason.clone(),
        _ => "systemd has not reported the unit yet".to_string(),
    };
    let mut results = vec![ProbeResult {
        workload_id: id.to_string(),
        probe: crate::units::status::SYSTEMD.to_string(),
        healthy: active,
        output: cut_output(&output),
        duration_ms: 0,
    }];
    let runs = probes
        .iter()
        .map(ProbeConfig::from_proto)
        .map(|config| async move {
            let started = Instant::now();
            let (passed, output) = match &config.check {
                Check::Http { port, .. } | Check::Tcp { port } => {
                    let target = SocketAddr::from(([127, 0, 0, 1], *port));
                    let run = async {
                        match &config.check {
                            Check::Http {
                                path,
                                expect_status,
                                ..
                            } => http_get(target, path, *expect_status).await,
                            _ => tcp_connect(target).await,
                        }
                    };
                    tokio::time::timeout(config.timeout, run)
                        .await
                        .unwrap_or_else(|_| {
                            (false, format!("no answer within {}", human(config.timeout)))
                        })
                }
                Check::Exec { .. } => (
                    false,
                    "invalid probe: exec probes run in containers; a unit has none".to_string(),
                ),
                Check::Invalid(reason) => (false, format!("invalid probe: {reason}")),
            };
            ProbeResult {
                workload_id: id.to_string(),
                probe: config.name.clone(),
                healthy: passed,
                output: cut_output(&output),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            }
        });
    results.extend(futures::future::join_all(runs).await);
    results
}

//! The Docker engine behind the `Runtime` trait, through bollard. The client
//! negotiates the engine's API version (20.10 speaks 1.41) and is rebuilt
//! lazily after the daemon was unreachable.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryStateEnum, EventMessage, HealthConfig, HealthStatusEnum, HostConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, InspectContainerOptions,
    ListContainersOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use convoy_proto::{workload, ContainerSpec, Health, HealthCheck, Workload};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::Mutex;

use crate::error_chain;

use super::{
    container_labels, container_name, cut_output, labels, ContainerInfo, ContainerState,
    CreatedContainer, DockerHealth, ExecOutput, Observed, Runtime, RuntimeError, RuntimeEvent,
    MAX_OUTPUT,
};

/// How long one image pull may take before the image counts as missing.
const PULL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting and negotiating the API version may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Grace period when a spec leaves it at 0 (Compose's default).
const DEFAULT_STOP_GRACE_SECS: i64 = 10;
/// Causes longer than this are cut: they end up in one-line status reasons.
const MAX_CAUSE_LEN: usize = 300;

/// Docker through bollard, connected on first use.
#[derive(Default)]
pub struct DockerRuntime {
    // A tokio Mutex: it is held across the version negotiation.
    client: Mutex<Option<Docker>>,
}

impl DockerRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    async fn client(&self) -> Result<Docker, RuntimeError> {
        let mut guard = self.client.lock().await;
        if let Some(docker) = guard.as_ref() {
            return Ok(docker.clone());
        }
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| RuntimeError::Unreachable(short(&e.to_string())))?;
        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(docker)) => docker,
            Ok(Err(e)) => return Err(RuntimeError::Unreachable(short(&e.to_string()))),
            Err(_) => {
                return Err(RuntimeError::Unreachable(format!(
                    "no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        *guard = Some(docker.clone());
        Ok(docker)
    }

    /// Drops the client after a connection failure, so the next call
    /// reconnects and negotiates again (the daemon may have been upgraded).
    async fn check<T>(&self, result: Result<T, RuntimeError>) -> Result<T, RuntimeError> {
        if let Err(RuntimeError::Unreachable(_)) = &result {
            *self.client.lock().await = None;
        }
        result
    }

    async fn list_inner(&self, node: &str) -> Result<Vec<Observed>, RuntimeError> {
        let docker = self.client().await?;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{}=true", labels::MANAGED),
                format!("{}={node}", labels::NODE),
            ],
        )]);
        let summaries = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| classify("listing containers", e))?;
        let mut out = Vec::with_capacity(summaries.len());
        for summary in summaries {
            let Some(mut observed) = observed_from_summary(summary) else {
                continue;
            };
            // Defence in depth: the filter above already did this.
            if observed.node != node {
                continue;
            }
            // Inspect every container, running or not: the list is served
            // from a view the engine updates only after it has sent `die`,
            // while inspect waits for the container's own lock, so a pass
            // woken by `die` sees the exit. Exit codes and run times are only
            // in the inspect answer, too.
            match docker
                .inspect_container(&observed.id, None::<InspectContainerOptions>)
                .await
            {
                Ok(inspect) => {
                    if let Some(state) = inspect.state {
                        observed.health = state.health.as_ref().and_then(docker_health);
                        if let Some(status) = state.status {
                            observed.state = state_from_inspect(status, observed.state);
                        }
                        if !observed.state.is_up() {
                            observed.exit_code = state.exit_code;
                            observed.oom_killed = state.oom_killed.unwrap_or(false);
                            observed.error = state.error.unwrap_or_default();
                        }
                        observed.started_at = state
                            .started_at
                            .as_deref()
                            .and_then(convoy_api::clock::parse_rfc3339);
                        observed.finished_at = state
                            .finished_at
                            .as_deref()
                            .and_then(convoy_api::clock::parse_rfc3339);
                    }
                }
                // Removed between list and inspect.
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => continue,
                Err(e) => return Err(classify("inspecting a container", e)),
            }
            out.push(observed);
        }
        Ok(out)
    }

    async fn create_and_start_inner(
        &self,
        node: &str,
        workload: &Workload,
    ) -> Result<CreatedContainer, RuntimeError> {
        let docker = self.client().await?;
        let name = container_name(workload);
        let body = create_body(node, workload)?;
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await;
        let id = match created {
            Ok(created) => created.id,
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) => return Err(name_conflict(&docker, node, &name, message).await),
            Err(e) => return Err(classify(&format!("creating container `{name}`"), e)),
        };
        docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
            .map_err(|e| classify(&format!("starting container `{name}`"), e))?;
        Ok(CreatedContainer { id, name })
    }

    /// create_exec, start_exec collecting the output, inspect_exec for the
    /// exit code.
    async fn exec_inner(&self, id: &str, command: &[String]) -> Result<ExecOutput, RuntimeError> {
        let docker = self.client().await?;
        let context = format!("running `{}` in `{}`", command.join(" "), short_id(id));
        let created = docker
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(command.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| classify(&context, e))?;
        let mut output = Vec::new();
        match docker
            .start_exec(&created.id, None::<StartExecOptions>)
            .await
            .map_err(|e| classify(&context, e))?
        {
            StartExecResults::Attached {
                output: mut stream, ..
            } => {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| classify(&context, e))?;
                    // Read on to the end, keeping the start: the stream ends
                    // when the command does.
                    let bytes = chunk.into_bytes();
                    let room = (MAX_OUTPUT * 4).saturating_sub(output.len());
                    output.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
            }
            StartExecResults::Detached => {}
        }
        // The stream can end a moment before the engine records the exit.
        let mut exit_code = None;
        for _ in 0..20 {
            let inspect = docker
                .inspect_exec(&created.id)
                .await
                .map_err(|e| classify(&context, e))?;
            if inspect.running != Some(true) {
                exit_code = inspect.exit_code;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(ExecOutput {
            exit_code,
            output: cut_output(&String::from_utf8_lossy(&output)),
        })
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn version(&self) -> Result<String, RuntimeError> {
        let result = async {
            let docker = self.client().await?;
            let version = docker
                .version()
                .await
                .map_err(|e| classify("reading the engine version", e))?;
            Ok(version.version.unwrap_or_default())
        }
        .await;
        self.check(result).await
    }

    async fn list(&self, node: &str) -> Result<Vec<Observed>, RuntimeError> {
        let result = self.list_inner(node).await;
        self.check(result).await
    }

    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        let result = async {
            let docker = self.client().await?;
            match docker.inspect_image(image).await {
                Ok(_) => Ok(true),
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(false),
                Err(e) => Err(classify(&format!("inspecting image `{image}`"), e)),
            }
        }
        .await;
        self.check(result).await
    }

    async fn pull(&self, image: &str) -> Result<(), RuntimeError> {
        let result = async {
            let docker = self.client().await?;
            let options = CreateImageOptions {
                from_image: Some(with_default_tag(image)),
                ..Default::default()
            };
            let mut progress = docker.create_image(Some(options), None, None);
            let pull = async {
                while let Some(item) = progress.next().await {
                    item.map_err(|e| classify("pulling", e))?;
                }
                Ok::<(), RuntimeError>(())
            };
            match tokio::time::timeout(PULL_TIMEOUT, pull).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(RuntimeError::Engine { message, .. })) => Err(RuntimeError::ImageMissing {
                    image: image.to_string(),
                    cause: short(&message),
                }),
                Ok(Err(other)) => Err(other),
                Err(_) => Err(RuntimeError::ImageMissing {
                    image: image.to_string(),
                    cause: format!("pull did not finish within {}s", PULL_TIMEOUT.as_secs()),
                }),
            }
        }
        .await;
        self.check(result).await
    }

    async fn create_and_start(
        &self,
        node: &str,
        workload: &Workload,
    ) -> Result<CreatedContainer, RuntimeError> {
        let result = self.create_and_start_inner(node, workload).await;
        self.check(result).await
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let result = async {
            let docker = self.client().await?;
            docker
                .start_container(id, None::<StartContainerOptions>)
                .await
                .map_err(|e| classify(&format!("starting container `{}`", short_id(id)), e))
        }
        .await;
        self.check(result).await
    }

    async fn stop_and_remove(&self, id: &str) -> Result<(), RuntimeError> {
        let result = async {
            let docker = self.client().await?;
            // No `t`: the engine uses the StopSignal and StopTimeout the
            // container was created with, i.e. its own spec's.
            match docker
                .stop_container(id, None::<StopContainerOptions>)
                .await
            {
                Ok(()) => {}
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(()),
                Err(e) => {
                    return Err(classify(
                        &format!("stopping container `{}`", short_id(id)),
                        e,
                    ))
                }
            }
            let options = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            match docker.remove_container(id, Some(options)).await {
                Ok(()) => Ok(()),
                // Gone already, or its removal is already in progress.
                Err(BollardError::DockerResponseServerError {
                    status_code: 404 | 409,
                    ..
                }) => Ok(()),
                Err(e) => Err(classify(
                    &format!("removing container `{}`", short_id(id)),
                    e,
                )),
            }
        }
        .await;
        self.check(result).await
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let result = async {
            let docker = self.client().await?;
            match docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
            {
                Ok(inspect) => Ok(container_info(inspect)),
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(ContainerInfo::default()),
                Err(e) => Err(classify(
                    &format!("inspecting container `{}`", short_id(id)),
                    e,
                )),
            }
        }
        .await;
        self.check(result).await
    }

    async fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let result = match tokio::time::timeout(timeout, self.exec_inner(id, command)).await {
            Ok(result) => result,
            Err(_) => Err(RuntimeError::Engine {
                context: format!("running `{}`", command.join(" ")),
                message: format!("no exit within {}", crate::probe::human(timeout)),
            }),
        };
        self.check(result).await
    }

    async fn events(
        &self,
        node: &str,
    ) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        let docker = self.check(self.client().await).await?;
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![
                    format!("{}=true", labels::MANAGED),
                    format!("{}={node}", labels::NODE),
                ],
            ),
            (
                "event".to_string(),
                // `health_status` matches `health_status: healthy` and
                // `health_status: unhealthy` (the engine compares by prefix).
                ["die", "start", "destroy", "oom", "create", "health_status"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        let stream = docker.events(Some(EventsOptions {
            filters: Some(filters),
            ..Default::default()
        }));
        Ok(stream
            .filter_map(|item| async move {
                match item {
                    Ok(message) => event_from_message(message).map(Ok),
                    Err(e) => Some(Err(classify("watching events", e))),
                }
            })
            .boxed())
    }
}

/// Maps a bollard error: transport failures mean the daemon is unreachable,
/// anything the daemon said is an engine error with `context`.
fn classify(context: &str, error: BollardError) -> RuntimeError {
    match error {
        BollardError::DockerResponseServerError { message, .. } => RuntimeError::Engine {
            context: context.to_string(),
            message: short(&message),
        },
        BollardError::DockerStreamError { error } => RuntimeError::Engine {
            context: context.to_string(),
            message: short(&error),
        },
        e @ (BollardError::JsonDataError { .. }
        | BollardError::JsonSerdeError { .. }
        | BollardError::StrParseError { .. }
        | BollardError::StrFmtError { .. }
        | BollardError::APIVersionParseError {}
        | BollardError::URLEncodedError { .. }) => RuntimeError::Engine {
            context: context.to_string(),
            message: short(&e.to_string()),
        },
        other => RuntimeError::Unreachable(short(&error_chain(&other))),
    }
}

/// Explains a 409 on create: whose container holds the name.
async fn name_conflict(docker: &Docker, node: &str, name: &str, message: String) -> RuntimeError {
    let holder = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|c| c.config)
        .and_then(|c| c.labels)
        .unwrap_or_default();
    let managed = holder.get(labels::MANAGED).map(String::as_str) == Some("true");
    match holder.get(labels::NODE) {
        _ if !managed => RuntimeError::NameTaken {
            name: name.to_string(),
        },
        Some(other) if other != node => RuntimeError::Engine {
            context: format!("creating container `{name}`"),
            message: format!("the name is taken by a container of node `{other}`"),
        },
        _ => RuntimeError::Engine {
            context: format!("creating container `{name}`"),
            message: short(&message),
        },
    }
}

fn observed_from_summary(summary: ContainerSummary) -> Option<Observed> {
    let id = summary.id?;
    let labels_map = summary.labels.unwrap_or_default();
    let name = summary
        .names
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let state = match summary.state {
        Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
        Some(ContainerSummaryStateEnum::RUNNING) => ContainerState::Running,
        Some(ContainerSummaryStateEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerSummaryStateEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerSummaryStateEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerSummaryStateEnum::DEAD) => ContainerState::Dead,
        Some(ContainerSummaryStateEnum::EXITED) | Some(ContainerSummaryStateEnum::EMPTY) | None => {
            ContainerState::Exited
        }
    };
    let label = |key: &str| labels_map.get(key).cloned().unwrap_or_default();
    Some(Observed {
        name,
        node: label(labels::NODE),
        workload_id: label(labels::WORKLOAD),
        spec_hash: label(labels::SPEC_HASH),
        revision: label(labels::REVISION).parse().unwrap_or(0),
        state,
        created_unix: summary.created.unwrap_or(0),
        exit_code: None,
        oom_killed: false,
        started_at: None,
        finished_at: None,
        error: String::new(),
        health: None,
        id,
    })
}

/// Docker's health of a container; `None` when it has no healthcheck.
fn docker_health(health: &bollard::models::Health) -> Option<DockerHealth> {
    let status = match health.status? {
        HealthStatusEnum::STARTING => Health::Starting,
        HealthStatusEnum::HEALTHY => Health::Healthy,
        HealthStatusEnum::UNHEALTHY => Health::Unhealthy,
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => return None,
    };
    let output = health
        .log
        .as_ref()
        .and_then(|log| log.last())
        .map(|last| {
            let text = last.output.as_deref().unwrap_or("").trim();
            match last.exit_code {
                Some(0) | None => cut_output(text),
                Some(code) if text.is_empty() => format!("exit code {code}"),
                Some(code) => cut_output(&format!("exit code {code}: {text}")),
            }
        })
        .unwrap_or_default();
    Some(DockerHealth { status, output })
}

/// What probes need from an inspect answer.
fn container_info(inspect: ContainerInspectResponse) -> ContainerInfo {
    let state = inspect.state.as_ref();
    let status = state.and_then(|s| s.status);
    let health = state
        .and_then(|s| s.health.as_ref())
        .and_then(docker_health);
    let network = inspect.network_settings.unwrap_or_default();
    let parse_ip = |text: Option<&String>| {
        text.filter(|t| !t.is_empty())
            .and_then(|t| t.parse::<std::net::IpAddr>().ok())
    };
    let ip = parse_ip(network.ip_address.as_ref()).or_else(|| {
        let mut networks: Vec<_> = network.networks.iter().flatten().collect();
        networks.sort_by(|a, b| a.0.cmp(b.0));
        networks
            .into_iter()
            .find_map(|(_, endpoint)| parse_ip(endpoint.ip_address.as_ref()))
    });
    let mut published = Vec::new();
    for (key, bindings) in network.ports.iter().flatten() {
        let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        for binding in bindings.iter().flatten() {
            let host_port = binding.host_port.as_deref().and_then(|p| p.parse().ok());
            let host_ip = binding
                .host_ip
                .as_deref()
                .filter(|ip| !ip.is_empty())
                .unwrap_or("0.0.0.0")
                .parse::<std::net::IpAddr>()
                .ok();
            if let (Some(ip), Some(host_port)) = (host_ip, host_port) {
                published.push((port, std::net::SocketAddr::new(ip, host_port)));
            }
        }
    }
    published.sort();
    ContainerInfo {
        state: status.map(|s| state_from_inspect(s, ContainerState::Exited)),
        health,
        ip,
        published,
    }
}

/// Compose's healthcheck as the engine takes it (durations in ns).
fn health_config(check: &HealthCheck) -> HealthConfig {
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

fn state_from_inspect(status: ContainerStateStatusEnum, listed: ContainerState) -> ContainerState {
    match status {
        ContainerStateStatusEnum::CREATED => ContainerState::Created,
        ContainerStateStatusEnum::RUNNING => ContainerState::Running,
        ContainerStateStatusEnum::PAUSED => ContainerState::Paused,
        ContainerStateStatusEnum::RESTARTING => ContainerState::Restarting,
        ContainerStateStatusEnum::REMOVING => ContainerState::Removing,
        ContainerStateStatusEnum::EXITED => ContainerState::Exited,
        ContainerStateStatusEnum::DEAD => ContainerState::Dead,
        ContainerStateStatusEnum::EMPTY => listed,
    }
}

fn event_from_message(message: EventMessage) -> Option<RuntimeEvent> {
    let actor = message.actor?;
    let attributes = actor.attributes.unwrap_or_default();
    Some(RuntimeEvent {
        container_id: actor.id.unwrap_or_default(),
        workload_id: attributes
            .get(labels::WORKLOAD)
            .cloned()
            .unwrap_or_default(),
        action: message.action.unwrap_or_default(),
    })
}

/// The engine's create request for a workload.
fn create_body(node: &str, workload: &Workload) -> Result<ContainerCreateBody, RuntimeError> {
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

/// `busybox` → `busybox:latest`: without a tag the engine pulls every tag.
fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The first line of a cause, cut to a length that fits a status reason.
fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.len() <= MAX_CAUSE_LEN {
        return line.to_string();
    }
    let mut end = MAX_CAUSE_LEN;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use convoy_proto::{PortMapping, RestartPolicy as PbRestart};
    use std::collections::BTreeMap;

    fn workload() -> Workload {
        Workload {
            id: "prod/web/2".into(),
            service: "web".into(),
            env: "prod".into(),
            index: 2,
            revision: 7,
            spec_hash: "abc".into(),
            start_first: false,
            probes: vec![],
            runtime: Some(workload::Runtime::Container(ContainerSpec {
                image: "web:1".into(),
                command: vec!["serve".into(), "--port=80".into()],
                entrypoint: vec![],
                env: BTreeMap::from([("B".into(), "2".into()), ("A".into(), "1".into())]),
                ports: vec![
                    PortMapping {
                        host_ip: "127.0.0.1".into(),
                        host_port: 0,
                        container_port: 80,
                        protocol: String::new(),
                    },
                    PortMapping {
                        host_ip: String::new(),
                        host_port: 5353,
                        container_port: 53,
                        protocol: "udp".into(),
                    },
                ],
                labels: BTreeMap::from([
                    ("team".into(), "a".into()),
                    (labels::NODE.into(), "forged".into()),
                ]),
                volumes: vec!["/srv/data:/data:ro".into()],
                working_dir: "/app".into(),
                user: String::new(),
                restart: Some(PbRestart::default()),
                stop_signal: "SIGINT".into(),
                stop_grace_period_ms: 2500,
                healthcheck: None,
            })),
        }
    }

    #[test]
    fn create_body_carries_labels_ports_and_stop_settings() {
        let body = create_body("n1", &workload()).unwrap();
        let labels_map = body.labels.unwrap();
        assert_eq!(labels_map[labels::MANAGED], "true");
        assert_eq!(
            labels_map[labels::NODE],
            "n1",
            "a spec cannot forge the node"
        );
        assert_eq!(labels_map[labels::WORKLOAD], "prod/web/2");
        assert_eq!(labels_map[labels::INSTANCE], "2");
        assert_eq!(labels_map[labels::REVISION], "7");
        assert_eq!(labels_map[labels::SPEC_HASH], "abc");
        assert_eq!(labels_map["team"], "a");
        assert_eq!(body.env.unwrap(), vec!["A=1", "B=2"]);
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.user, None);
        assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(body.stop_timeout, Some(3));
        let host = body.host_config.unwrap();
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        let bindings = host.port_bindings.unwrap();
        let web = bindings["80/tcp"].as_ref().unwrap();
        assert_eq!(web[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(web[0].host_port.as_deref(), Some(""));
        assert_eq!(
            bindings["53/udp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("5353")
        );
        assert_eq!(host.binds.unwrap(), vec!["/srv/data:/data:ro"]);
    }

    #[test]
    fn healthcheck_maps_to_the_engines_health_config_in_nanoseconds() {
        let config = health_config(&HealthCheck {
            test: vec!["CMD".into(), "/check".into()],
            interval_ms: 1500,
            timeout_ms: 0,
            retries: 4,
            start_period_ms: 10_000,
            disable: false,
        });
        assert_eq!(
            config,
            HealthConfig {
                test: Some(vec!["CMD".into(), "/check".into()]),
                interval: Some(1_500_000_000),
                timeout: None,
                retries: Some(4),
                start_period: Some(10_000_000_000),
                start_interval: None,
            }
        );
        let image_test = health_config(&HealthCheck {
            interval_ms: 1000,
            ..HealthCheck::default()
        });
        assert_eq!(image_test.test, None, "empty: the image's test");
        for off in [
            HealthCheck {
                disable: true,
                ..HealthCheck::default()
            },
            HealthCheck {
                test: vec!["NONE".into()],
                ..HealthCheck::default()
            },
        ] {
            assert_eq!(
                health_config(&off),
                HealthConfig {
                    test: Some(vec!["NONE".into()]),
                    ..Default::default()
                }
            );
        }
        let mut w = workload();
        assert_eq!(create_body("n1", &w).unwrap().healthcheck, None);
        if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
            spec.healthcheck = Some(HealthCheck {
                disable: true,
                ..HealthCheck::default()
            });
        }
        assert_eq!(
            create_body("n1", &w).unwrap().healthcheck.unwrap().test,
            Some(vec!["NONE".into()])
        );
    }

    #[test]
    fn docker_health_is_read_with_the_last_checks_output() {
        use bollard::models::HealthcheckResult;
        let result = |code: i64, output: &str| HealthcheckResult {
            exit_code: Some(code),
            output: Some(output.into()),
            ..Default::default()
        };
        let health = bollard::models::Health {
            status: Some(HealthStatusEnum::UNHEALTHY),
            failing_streak: Some(3),
            log: Some(vec![
                result(0, "ok"),
                result(1, "HTTP/1.1 500 Internal Server Error\n"),
            ]),
        };
        assert_eq!(
            docker_health(&health),
            Some(DockerHealth {
                status: Health::Unhealthy,
                output: "exit code 1: HTTP/1.1 500 Internal Server Error".into(),
            })
        );
        let starting = bollard::models::Health {
            status: Some(HealthStatusEnum::STARTING),
            ..Default::default()
        };
        assert_eq!(
            docker_health(&starting),
            Some(DockerHealth {
                status: Health::Starting,
                output: String::new(),
            })
        );
        let none = bollard::models::Health {
            status: Some(HealthStatusEnum::NONE),
            ..Default::default()
        };
        assert_eq!(docker_health(&none), None);
    }

    #[test]
    fn container_info_reads_the_address_and_published_ports() {
        use bollard::models::{ContainerState as DockerState, EndpointSettings, NetworkSettings};
        let inspect = ContainerInspectResponse {
            state: Some(DockerState {
                status: Some(ContainerStateStatusEnum::RUNNING),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                ip_address: Some(String::new()),
                networks: Some(HashMap::from([(
                    "bridge".to_string(),
                    EndpointSettings {
                        ip_address: Some("172.17.0.3".into()),
                        ..Default::default()
                    },
                )])),
                ports: Some(HashMap::from([
                    (
                        "8080/tcp".to_string(),
                        Some(vec![PortBinding {
                            host_ip: Some("0.0.0.0".into()),
                            host_port: Some("49153".into()),
                        }]),
                    ),
                    ("53/udp".to_string(), None),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = container_info(inspect);
        assert_eq!(info.state, Some(ContainerState::Running));
        assert_eq!(info.ip, Some("172.17.0.3".parse().unwrap()));
        assert_eq!(
            info.published,
            vec![(8080, "0.0.0.0:49153".parse().unwrap())]
        );
        assert_eq!(
            container_info(ContainerInspectResponse::default()),
            ContainerInfo::default()
        );
    }

    #[test]
    fn container_name_follows_the_contract() {
        assert_eq!(container_name(&workload()), "convoy-prod-web-2-r7");
    }

    #[test]
    fn image_without_tag_gets_latest() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("busybox:1.36"), "busybox:1.36");
        assert_eq!(
            with_default_tag("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(with_default_tag("app@sha256:00"), "app@sha256:00");
    }

    #[test]
    fn long_causes_are_cut_to_one_line() {
        assert_eq!(short("first\nsecond"), "first");
        let long = "é".repeat(400);
        assert!(short(&long).len() <= MAX_CAUSE_LEN + "…".len());
    }

    /// The real engine, when there is one with the test image; these tests
    /// say so and pass when there is not.
    mod real {
        use super::*;

        const TEST_IMAGE: &str = "convoy-testapp:latest";

        /// Removes every container of the test's node, whatever happened.
        struct Cleanup {
            node: String,
            extra: Vec<String>,
        }

        impl Drop for Cleanup {
            fn drop(&mut self) {
                let listed = std::process::Command::new("docker")
                    .args(["ps", "-aq", "--filter"])
                    .arg(format!("label={}={}", labels::NODE, self.node))
                    .output();
                let mut ids: Vec<String> = listed
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .split_whitespace()
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                ids.extend(self.extra.iter().cloned());
                if !ids.is_empty() {
                    let _ = std::process::Command::new("docker")
                        .args(["rm", "-f"])
                        .args(&ids)
                        .output();
                }
            }
        }

        /// The real engine, or None only when CONVOY_SKIP_DOCKER_TESTS=1
        /// (a laptop without Docker; CI never sets it). Builds the test
        /// image when it is missing.
        async fn engine() -> Option<(DockerRuntime, Cleanup)> {
            if std::env::var("CONVOY_SKIP_DOCKER_TESTS").as_deref() == Ok("1") {
                eprintln!("skipped: CONVOY_SKIP_DOCKER_TESTS=1");
                return None;
            }
            let runtime = DockerRuntime::new();
            if let Err(e) = runtime.version().await {
                panic!("Docker is unreachable: {e} (set CONVOY_SKIP_DOCKER_TESTS=1 to skip)");
            }
            if !runtime.image_present(TEST_IMAGE).await.unwrap_or(false) {
                let script = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../scripts/build-test-image.sh"
                );
                let out = std::process::Command::new("bash")
                    .arg(script)
                    .output()
                    .expect("run scripts/build-test-image.sh");
                assert!(
                    out.status.success(),
                    "building {TEST_IMAGE} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let node = format!("agent-unit-{}-{nanos}", std::process::id());
            Some((
                runtime,
                Cleanup {
                    node,
                    extra: Vec::new(),
                },
            ))
        }

        fn test_workload(node: &str, index: u32, command: &[&str]) -> Workload {
            let mut w = workload();
            w.env = node.to_string();
            w.id = format!("{node}/web/{index}");
            w.index = index;
            if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
                spec.image = TEST_IMAGE.to_string();
                spec.command = command.iter().map(|s| s.to_string()).collect();
                spec.volumes.clear();
                spec.working_dir.clear();
                spec.ports.truncate(1);
                spec.stop_signal.clear();
            }
            w
        }

        #[tokio::test]
        async fn docker_runtime_creates_lists_and_removes_a_labelled_container() {
            let Some((runtime, cleanup)) = engine().await else {
                return;
            };
            let node = cleanup.node.clone();
            let w = test_workload(&node, 1, &["/convoy-testapp", "--listen", "0.0.0.0:80"]);
            let created = runtime.create_and_start(&node, &w).await.unwrap();
            assert_eq!(created.name, container_name(&w));

            let listed = runtime.list(&node).await.unwrap();
            assert_eq!(listed.len(), 1, "{listed:?}");
            let c = &listed[0];
            assert_eq!(c.id, created.id);
            assert_eq!(c.name, created.name);
            assert_eq!(c.state, ContainerState::Running);
            assert_eq!(c.workload_id, w.id);
            assert_eq!(c.spec_hash, w.spec_hash);
            assert_eq!(c.revision, w.revision);
            assert!(runtime
                .list("some-other-node")
                .await
                .unwrap()
                .iter()
                .all(|o| o.id != c.id));

            runtime.stop_and_remove(&created.id).await.unwrap();
            assert_eq!(runtime.list(&node).await.unwrap(), vec![]);
            // Removing what is gone is fine.
            runtime.stop_and_remove(&created.id).await.unwrap();
        }

        #[tokio::test]
        async fn docker_runtime_reads_exit_code_and_run_time_of_an_exited_container() {
            let Some((runtime, cleanup)) = engine().await else {
                return;
            };
            let node = cleanup.node.clone();
            let w = test_workload(
                &node,
                2,
                &[
                    "/convoy-testapp",
                    "--listen",
                    "0.0.0.0:80",
                    "--exit-after",
                    "0.5",
                ],
            );
            let created = runtime.create_and_start(&node, &w).await.unwrap();
            let mut exited = None;
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let listed = runtime.list(&node).await.unwrap();
                if let Some(c) = listed
                    .into_iter()
                    .find(|c| c.state == ContainerState::Exited)
                {
                    exited = Some(c);
                    break;
                }
            }
            let c = exited.expect("the container never exited");
            assert_eq!(c.id, created.id);
            assert_eq!(c.exit_code, Some(3));
            let ran = c.ran_for().expect("run time unknown");
            assert!(
                ran >= Duration::from_millis(400) && ran < Duration::from_secs(10),
                "{ran:?}"
            );

            runtime.start(&created.id).await.unwrap();
            let again = runtime.list(&node).await.unwrap();
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].state, ContainerState::Running);
            assert_eq!(again[0].exit_code, None);
            assert_ne!(again[0].started_at, c.started_at);
        }

        #[tokio::test]
        async fn docker_runtime_reports_docker_health_of_a_container_with_a_healthcheck() {
            let Some((runtime, cleanup)) = engine().await else {
                return;
            };
            let node = cleanup.node.clone();
            let mut w = test_workload(&node, 4, &["/convoy-testapp", "--listen", "0.0.0.0:80"]);
            if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
                spec.healthcheck = Some(HealthCheck {
                    test: vec![
                        "CMD".into(),
                        "/convoy-testapp".into(),
                        "--probe".into(),
                        "http://127.0.0.1:80/healthz".into(),
                    ],
                    interval_ms: 200,
                    timeout_ms: 2000,
                    retries: 1,
                    start_period_ms: 0,
                    disable: false,
                });
            }
            let created = runtime.create_and_start(&node, &w).await.unwrap();
            let health = async {
                for _ in 0..100 {
                    let listed = runtime.list(&node).await.unwrap();
                    let health = listed[0].health.clone();
                    if health.as_ref().is_some_and(|h| h.status == Health::Healthy) {
                        return health;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                panic!("never healthy: {:?}", runtime.list(&node).await);
            }
            .await
            .unwrap();
            assert_eq!(health.output, "HTTP/1.1 200 OK");
            let info = runtime.inspect(&created.id).await.unwrap();
            assert_eq!(info.health.unwrap().status, Health::Healthy);

            // The world agrees: Docker itself says so.
            let out = std::process::Command::new("docker")
                .args(["inspect", "-f", "{{.State.Health.Status}}", &created.id])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "healthy");
        }

        #[tokio::test]
        async fn docker_runtime_execs_commands_bounded_in_time_and_reports_missing_ones() {
            let Some((runtime, cleanup)) = engine().await else {
                return;
            };
            let node = cleanup.node.clone();
            let w = test_workload(&node, 5, &["/convoy-testapp", "--listen", "0.0.0.0:80"]);
            let created = runtime.create_and_start(&node, &w).await.unwrap();
            let argv = |words: &[&str]| words.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let version = runtime
                .exec(
                    &created.id,
                    &argv(&["/convoy-testapp", "--version"]),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            assert_eq!(version.exit_code, Some(0));
            assert!(version.output.starts_with("convoy-testapp "), "{version:?}");

            let missing = runtime
                .exec(
                    &created.id,
                    &argv(&["/no-such-check"]),
                    Duration::from_secs(5),
                )
                .await;
            let text = match &missing {
                Ok(out) => {
                    assert_ne!(out.exit_code, Some(0), "{out:?}");
                    out.output.clone()
                }
                Err(e) => e.to_string(),
            };
            assert!(text.contains("no-such-check"), "{missing:?}");

            let began = std::time::Instant::now();
            let hanging = runtime
                .exec(
                    &created.id,
                    &argv(&["/convoy-testapp", "--listen", "127.0.0.1:81"]),
                    Duration::from_millis(500),
                )
                .await
                .unwrap_err();
            assert!(
                hanging.to_string().contains("no exit within 500ms"),
                "{hanging}"
            );
            assert!(began.elapsed() < Duration::from_secs(3));
        }

        #[tokio::test]
        async fn probes_reach_a_real_container_and_see_it_fail_and_recover() {
            use crate::probe::{run_check, ProbeConfig};
            use convoy_proto::{probe, HttpProbe, Probe};
            let Some((runtime, cleanup)) = engine().await else {
                return;
            };
            let node = cleanup.node.clone();
            let w = test_workload(&node, 6, &["/convoy-testapp", "--listen", "0.0.0.0:80"]);
            let created = runtime.create_and_start(&node, &w).await.unwrap();
            let info = runtime.inspect(&created.id).await.unwrap();
            let ip = info.ip.expect("a container on the bridge has an address");
            let config = ProbeConfig::from_proto(&Probe {
                timeout_ms: 2000,
                check: Some(probe::Check::Http(HttpProbe {
                    port: 80,
                    path: "/healthz".into(),
                    expect_status: 0,
                })),
                ..Probe::default()
            });
            let mut passed = None;
            for _ in 0..50 {
                let run = run_check(&runtime, &created.id, &config, &mut None).await;
                if run.passed {
                    passed = Some(run);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let passed = passed.expect("the probe never passed");
            assert_eq!(
                passed.output,
                format!("GET http://{ip}:80/healthz: HTTP 200 OK: ok")
            );

            let post = |path: &'static str| async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = tokio::net::TcpStream::connect((ip, 80)).await.unwrap();
                s.write_all(
                    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                        .as_bytes(),
                )
                .await
                .unwrap();
                let mut answer = Vec::new();
                s.read_to_end(&mut answer).await.unwrap();
            };
            post("/fail").await;
            let run = run_check(&runtime, &created.id, &config, &mut None).await;
            assert!(!run.passed);
            assert_eq!(
                run.output,
                format!("GET http://{ip}:80/healthz: HTTP 500 Internal Server Error: failing")
            );
            post("/recover").await;
            assert!(
                run_check(&runtime, &created.id, &config, &mut None)
                    .await
                    .passed
            );
        }

        #[tokio::test]
        async fn docker_runtime_reports_a_name_held_by_an_unmanaged_container() {
            let Some((runtime, mut cleanup)) = engine().await else {
                return;
            };
            let node = cleanup.node.clone();
            let w = test_workload(&node, 3, &["/convoy-testapp"]);
            let name = container_name(&w);
            let out = std::process::Command::new("docker")
                .args(["create", "--name", &name, TEST_IMAGE])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            cleanup.extra.push(name.clone());
            let err = runtime.create_and_start(&node, &w).await.unwrap_err();
            assert_eq!(err, RuntimeError::NameTaken { name });
        }
    }
}

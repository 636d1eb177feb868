//! The Docker engine behind the `Runtime` trait, through bollard. The client
//! negotiates the engine's API version (20.10 speaks 1.41) and is rebuilt
//! lazily after the daemon was unreachable. The create request, the
//! reading of the engine's answers and its errors are in their own modules.
//! Containers join user-defined networks, created when missing and removed
//! with their last container (`networks`).

mod binds;
mod configs;
mod containers;
mod convert;
pub(crate) mod create;
mod errors;
mod exec;
mod networks;
mod swarm;
pub(crate) mod volumes;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    CreateImageOptions, EventsOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use convoy_proto::Workload;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::Mutex;

use containers::one_off_body;
use convert::{
    container_info, docker_health, event_from_message, observed_from_summary, state_from_inspect,
};
use create::{networks_of, with_default_tag};
use errors::{classify, short, short_id};
use networks::{dedupe_network, network_race};

use super::{
    labels, pull, ContainerInfo, CreatedContainer, ExecOutput, Observed, PullFailure, Runtime,
    RuntimeError, RuntimeEvent,
};
use crate::plan::{registry_of, RegistryLogin};
use crate::secrets::Delivery;

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
    /// Normalised roots under which containers may bind-mount host paths.
    allowed_binds: Vec<String>,
    /// The kinds of host access containers may have (`--allow-host-access`).
    allowed_host_access: Vec<String>,
    /// Held while a network is looked up and created: the engine (API
    /// 1.41) would create two networks of one name side by side.
    network_lock: Mutex<()>,
    /// Where configs are written (`DATA_DIR/configs`); `None`: a workload
    /// with configs is refused.
    config_dir: Option<std::path::PathBuf>,
    /// Read-held from writing a container's configs to its create, and
    /// write-held while unused configs are removed, so none is removed
    /// before it is mounted.
    config_lock: tokio::sync::RwLock<()>,
}

impl DockerRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// A runtime that creates containers binding host paths only under
    /// `roots` (normalised, as `--allow-bind` gives them).
    pub fn with_allowed_binds(roots: Vec<String>) -> Self {
        Self {
            allowed_binds: roots,
            ..Self::default()
        }
    }

    /// Lets containers have the kinds of host access in `grants`
    /// (`--allow-host-access`: `privileged`, `cap_add`, ..., or `all`).
    pub fn with_allowed_host_access(mut self, grants: Vec<String>) -> Self {
        self.allowed_host_access = grants;
        self
    }

    /// Writes configs under `dir` (the agent's `DATA_DIR/configs`).
    pub fn with_config_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.config_dir = Some(dir);
        self
    }

    /// The read-only mounts of `workload`'s configs, written first.
    async fn config_mounts(
        &self,
        workload: &Workload,
    ) -> Result<Vec<bollard::models::Mount>, RuntimeError> {
        if !configs::has_configs(workload) {
            return Ok(Vec::new());
        }
        let Some(dir) = self.config_dir.clone() else {
            return Err(RuntimeError::Engine {
                context: format!("delivering the configs of `{}`", workload.id),
                message: "this runtime has no directory for configs".to_string(),
            });
        };
        let workload = workload.clone();
        tokio::task::spawn_blocking(move || configs::prepare(&dir, &workload))
            .await
            .map_err(|e| RuntimeError::Engine {
                context: "writing configs".to_string(),
                message: e.to_string(),
            })?
    }

    /// Removes the configs no container mounts any more.
    async fn collect_configs(&self, docker: &Docker) {
        let Some(dir) = &self.config_dir else {
            return;
        };
        if !tokio::fs::try_exists(dir).await.unwrap_or(false) {
            return;
        }
        let _held = self.config_lock.write().await;
        configs::collect_garbage(docker, dir).await;
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
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn swarm(&self) -> Result<Option<convoy_proto::SwarmFacts>, RuntimeError> {
        let result = async {
            let docker = self.client().await?;
            let info = docker
                .info()
                .await
                .map_err(|e| classify("reading the engine's Swarm state", e))?;
            Ok(info.swarm.as_ref().and_then(swarm::facts))
        }
        .await;
        self.check(result).await
    }

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

    async fn pull(&self, image: &str, login: Option<&RegistryLogin>) -> Result<(), RuntimeError> {
        let result = async {
            let docker = self.client().await?;
            let options = CreateImageOptions {
                from_image: Some(with_default_tag(image)),
                ..Default::default()
            };
            let credentials = login.map(|l| DockerCredentials {
                username: Some(l.username.clone()),
                password: Some(l.password.clone()),
                serveraddress: Some(l.server.clone()),
                ..Default::default()
            });
            let mut progress = docker.create_image(Some(options), None, credentials.clone());
            let pull = async {
                while let Some(item) = progress.next().await {
                    item.map_err(|e| classify("pulling", e))?;
                }
                Ok::<(), RuntimeError>(())
            };
            let failed = |detail: String| RuntimeError::PullFailed {
                image: image.to_string(),
                registry: registry_of(image),
                kind: pull::classify(&detail),
                username: login.map(|l| l.username.clone()),
                detail,
            };
            match tokio::time::timeout(PULL_TIMEOUT, pull).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(RuntimeError::Engine { message, .. })) => {
                    let mut detail = short(&message);
                    if !matches!(
                        pull::classify(&detail),
                        PullFailure::Auth | PullFailure::NotFound
                    ) {
                        // For a registry it treats as insecure (127.0.0.0/8,
                        // --insecure-registry), Docker retries a refused
                        // HTTPS pull over plain HTTP and reports that
                        // attempt's error ("connection reset", "HTTP request
                        // to an HTTPS server"). Its distribution endpoint
                        // asks over HTTPS only, and says what the registry
                        // answered.
                        let name = with_default_tag(image);
                        let ask = docker.inspect_registry_image(&name, credentials);
                        if let Ok(Err(e)) = tokio::time::timeout(CONNECT_TIMEOUT, ask).await {
                            if let RuntimeError::Engine { message, .. } = classify("inspecting", e)
                            {
                                if matches!(
                                    pull::classify(&message),
                                    PullFailure::Auth | PullFailure::NotFound
                                ) {
                                    detail = short(&message);
                                }
                            }
                        }
                    }
                    Err(failed(detail))
                }
                Ok(Err(other)) => Err(other),
                Err(_) => Err(failed(format!(
                    "pull did not finish within {}s",
                    PULL_TIMEOUT.as_secs()
                ))),
            }
        }
        .await;
        self.check(result).await
    }

    async fn create_and_start(
        &self,
        node: &str,
        workload: &Workload,
        secrets: &Delivery,
    ) -> Result<CreatedContainer, RuntimeError> {
        let mut result = self.create_and_start_inner(node, workload, secrets).await;
        // Two agents on one engine creating a network at once: each keeps the
        // oldest of the duplicates, and a container made on the other one in
        // between fails ("ambiguous", or its network gone). Made again on the
        // one that stays, after a short pause.
        for attempt in 1..=3u64 {
            match &result {
                Err(e) if network_race(e) => {
                    tracing::info!(error = %e, attempt, "network raced another agent; trying again");
                    if let Ok(docker) = self.client().await {
                        for joined in networks_of(workload) {
                            dedupe_network(&docker, &joined.name).await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                    result = self.create_and_start_inner(node, workload, secrets).await;
                }
                _ => break,
            }
        }
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

    async fn list_volumes(&self, env: &str) -> Result<Vec<convoy_proto::VolumeInfo>, RuntimeError> {
        let result = async { volumes::list(&self.client().await?, env).await }.await;
        self.check(result).await
    }

    async fn remove_volumes(
        &self,
        env: &str,
        keys: &[String],
    ) -> Result<Vec<convoy_proto::VolumeInfo>, RuntimeError> {
        let result = async { volumes::remove(&self.client().await?, env, keys).await }.await;
        self.check(result).await
    }

    async fn remove_instance_volumes(&self, workload_id: &str) {
        if let Ok(docker) = self.client().await {
            volumes::remove_anonymous(&docker, workload_id).await;
        }
    }

    async fn stop_and_remove(&self, id: &str) -> Result<(), RuntimeError> {
        let result = async {
            let docker = self.client().await?;
            // Its networks, to remove those of Convoy's it leaves empty.
            let networks: Vec<String> = match docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
            {
                Ok(inspect) => inspect
                    .network_settings
                    .and_then(|settings| settings.networks)
                    .map(|networks| networks.into_keys().collect())
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            };
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
                Ok(()) => {
                    self.prune_networks(&docker, &networks).await;
                    self.collect_configs(&docker).await;
                    Ok(())
                }
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

    async fn docker_client(&self) -> Result<Docker, RuntimeError> {
        let docker = self.client().await;
        self.check(docker).await
    }

    async fn create_one_off(
        &self,
        node: &str,
        workload: &Workload,
        secrets: &Delivery,
        name: &str,
        run: &super::OneOff,
    ) -> Result<String, RuntimeError> {
        let docker = self.client().await;
        let docker = self.check(docker).await?;
        let created = self
            .create_named(&docker, node, workload, secrets, name, |body| {
                one_off_body(body, &workload.id, run)
            })
            .await;
        self.check(created).await
    }

    async fn logs(
        &self,
        id: &str,
        query: &crate::logs::LogQuery,
        out: &mut crate::logs::LossySender,
    ) -> Result<(), RuntimeError> {
        let docker = self.client().await;
        let docker = self.check(docker).await?;
        crate::logs::container_logs(&docker, id, query, out)
            .await
            .map_err(|e| RuntimeError::Engine {
                context: format!("reading the logs of container {id}"),
                message: e.to_string(),
            })
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

#[cfg(test)]
mod network_tests;

#[cfg(test)]
mod tests;

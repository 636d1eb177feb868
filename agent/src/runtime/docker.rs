//! The Docker engine behind the `Runtime` trait, through bollard. The client
//! negotiates the engine's API version (20.10 speaks 1.41) and is rebuilt
//! lazily after the daemon was unreachable. The create request, the
//! reading of the engine's answers and its errors are in their own modules.
//! Containers join user-defined networks, created here when missing and
//! removed with their last container.

mod binds;
mod configs;
mod convert;
pub(crate) mod create;
mod errors;
mod swarm;
pub(crate) mod volumes;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::NetworkConnectRequest;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, InspectContainerOptions,
    InspectNetworkOptions, ListContainersOptions, ListNetworksOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use convoy_proto::Workload;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::Mutex;

use convert::{
    container_info, docker_health, event_from_message, observed_from_summary, state_from_inspect,
};
use create::{check_binds, create_body, endpoint, networks_of, with_default_tag, Joined};
use errors::{classify, name_conflict, short, short_id};

use super::{
    container_name, cut_output, labels, pull, ContainerInfo, CreatedContainer, ExecOutput,
    Observed, PullFailure, Runtime, RuntimeError, RuntimeEvent, MAX_OUTPUT,
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

    async fn create_and_start_inner(
        &self,
        node: &str,
        workload: &Workload,
        secrets: &Delivery,
    ) -> Result<CreatedContainer, RuntimeError> {
        let docker = self.client().await?;
        let name = container_name(workload);
        let id = self
            .create_named(&docker, node, workload, secrets, &name, |_| {})
            .await?;
        let started = docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
            .map_err(|e| classify(&format!("starting container `{name}`"), e));
        if let Err(e) = started {
            // Another agent on this engine removed the duplicate network the
            // container was created on: not left behind, made anew.
            if network_race(&e) {
                let options = RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                };
                let _ = docker.remove_container(&id, Some(options)).await;
            }
            return Err(e);
        }
        Ok(CreatedContainer { id, name })
    }

    /// Creates (does not start) container `name` of `workload` with its
    /// secrets, configs, volumes and networks; `adjust` changes the request
    /// last (a one-off run's command and labels). Its ID.
    async fn create_named(
        &self,
        docker: &Docker,
        node: &str,
        workload: &Workload,
        secrets: &Delivery,
        name: &str,
        adjust: impl FnOnce(&mut bollard::models::ContainerCreateBody),
    ) -> Result<String, RuntimeError> {
        // Never trust the coordinator alone with the host.
        check_binds(node, workload, &self.allowed_binds)?;
        create::check_host_access(node, workload, &self.allowed_host_access)?;
        binds::check_resolved(node, workload, &self.allowed_binds)?;
        let docker = docker.clone();
        let name = name.to_string();
        let mut body = create_body(node, workload)?;
        add_secrets(&mut body, secrets);
        // Held until the create: the files must outlive a concurrent sweep.
        let config_held = if configs::has_configs(workload) {
            Some(self.config_lock.read().await)
        } else {
            None
        };
        let config_mounts = self.config_mounts(workload).await?;
        if !config_mounts.is_empty() {
            if let Some(host) = body.host_config.as_mut() {
                host.mounts
                    .get_or_insert_with(Vec::new)
                    .extend(config_mounts);
            }
        }
        adjust(&mut body);
        let networks = networks_of(workload);
        let platform = match &workload.runtime {
            Some(convoy_proto::workload::Runtime::Container(spec)) if !spec.platform.is_empty() => {
                spec.platform.clone()
            }
            _ => String::new(),
        };
        let create = || {
            docker.create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    platform: platform.clone(),
                }),
                body.clone(),
            )
        };
        for joined in &networks {
            self.ensure_network(&docker, node, joined).await?;
        }
        volumes::ensure(&docker, node, &volumes::needed(workload)?).await?;
        let mut created = create().await;
        // Another agent on this engine may have removed an empty network
        // between the check and the create (`prune_networks`): once more.
        if matches!(&created, Err(BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        }) if message.contains("network"))
        {
            for joined in &networks {
                self.ensure_network(&docker, node, joined).await?;
            }
            created = create().await;
        }
        let id = match created {
            Ok(created) => created.id,
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) => return Err(name_conflict(&docker, node, &name, message).await),
            Err(e) => return Err(classify(&format!("creating container `{name}`"), e)),
        };
        drop(config_held);
        // The first network was given at create.
        for joined in networks.iter().skip(1) {
            let connected = docker
                .connect_network(
                    &joined.name,
                    NetworkConnectRequest {
                        container: Some(id.clone()),
                        endpoint_config: Some(endpoint(joined)),
                    },
                )
                .await;
            if let Err(e) = connected {
                // Not left behind half-connected: the next pass creates it anew.
                let options = RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                };
                let _ = docker.remove_container(&id, Some(options)).await;
                return Err(classify(
                    &format!("connecting container `{name}` to network `{}`", joined.name),
                    e,
                ));
            }
        }
        Ok(id)
    }

    /// Creates a network the container joins when it is missing, labelled
    /// as Convoy's; an external one must exist. `prune_networks` removes it
    /// with its last container.
    async fn ensure_network(
        &self,
        docker: &Docker,
        node: &str,
        joined: &Joined,
    ) -> Result<(), RuntimeError> {
        let _held = self.network_lock.lock().await;
        let mut inspected = docker
            .inspect_network(&joined.name, None::<InspectNetworkOptions>)
            .await;
        // Two agents on one engine may both have created it (Docker 20.10
        // allows two networks of one name, and then refuses the name as
        // ambiguous): keep the oldest, and look again.
        if inspected
            .as_ref()
            .is_err_and(|e| e.to_string().contains("ambiguous"))
        {
            dedupe_network(docker, &joined.name).await;
            inspected = docker
                .inspect_network(&joined.name, None::<InspectNetworkOptions>)
                .await;
        }
        match inspected {
            // Never trust the coordinator alone with the host: the host's
            // network, named or by its ID, is `network_mode: host`.
            Ok(network) if network.driver.as_deref() == Some("host") => {
                return Err(RuntimeError::NotAllowed(format!(
                    "node `{node}` refuses to join network `{}`: it is the host's network, \
                     which gives the container the host; join a bridge network instead",
                    joined.name
                )))
            }
            Ok(_) => return Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => {
                return Err(classify(
                    &format!("inspecting network `{}`", joined.name),
                    e,
                ))
            }
        }
        let Some(request) = &joined.create else {
            return Err(RuntimeError::Engine {
                context: format!("joining network `{}`", joined.name),
                message: format!(
                    "the spec names it `external: true` but node `{node}` has no network \
                     of that name: create it on the node (`docker network create {}`) \
                     or drop `external: true`",
                    joined.name
                ),
            });
        };
        docker
            .create_network(request.clone())
            .await
            .map_err(|e| classify(&format!("creating network `{}`", joined.name), e))?;
        // Another agent on this engine may have created it at the same time.
        dedupe_network(docker, &joined.name).await;
        Ok(())
    }

    /// Removes those of `names` that are Convoy's (`io.convoy.managed`)
    /// and that no container uses any more, so that networks do not pile
    /// up (each takes an address range of the engine's few). Best effort:
    /// a network in use, or removed meanwhile, stays as it is.
    async fn prune_networks(&self, docker: &Docker, names: &[String]) {
        let _held = self.network_lock.lock().await;
        for name in names {
            let Ok(network) = docker
                .inspect_network(name, None::<InspectNetworkOptions>)
                .await
            else {
                continue;
            };
            let ours = network
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::MANAGED))
                .is_some_and(|v| v == "true");
            let empty = network.containers.as_ref().is_none_or(|c| c.is_empty());
            if ours && empty {
                // Refused when a container joined meanwhile: then it stays.
                let _ = docker.remove_network(name).await;
            }
        }
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

/// The container's secrets: each file (on the node's tmpfs, written by
/// `crate::secrets`) bind-mounted read-only at its target, and the
/// variables of those given as environment variables.
fn add_secrets(body: &mut bollard::models::ContainerCreateBody, secrets: &Delivery) {
    if secrets.is_empty() {
        return;
    }
    let mounts = secrets.files.iter().map(|f| bollard::models::Mount {
        target: Some(f.target.clone()),
        source: Some(f.source.display().to_string()),
        typ: Some(bollard::models::MountTypeEnum::BIND),
        read_only: Some(true),
        ..Default::default()
    });
    body.host_config
        .get_or_insert_with(Default::default)
        .mounts
        .get_or_insert_with(Vec::new)
        .extend(mounts);
    let names = secrets.env_names();
    let env = body.env.get_or_insert_with(Vec::new);
    // The secret's value wins over a variable of the same name.
    env.retain(|line| {
        let name = line.split_once('=').map_or(line.as_str(), |(k, _)| k);
        !names.contains(&name)
    });
    env.extend(secrets.env_lines());
}
/// Turns a workload's create request into a one-off's: `run`'s command
/// (the image's or spec's entrypoint stays), not managed (the reconciler
/// leaves it alone) but labelled with the workload, no published ports,
/// no restart policy, no health check, streams attached as asked.
fn one_off_body(
    body: &mut bollard::models::ContainerCreateBody,
    workload_id: &str,
    run: &super::OneOff,
) {
    body.cmd = Some(run.command.clone());
    body.tty = Some(run.tty);
    body.open_stdin = Some(run.stdin);
    body.stdin_once = Some(run.stdin);
    body.attach_stdin = Some(run.stdin);
    body.attach_stdout = Some(true);
    body.attach_stderr = Some(true);
    body.healthcheck = Some(bollard::models::HealthConfig {
        test: Some(vec!["NONE".to_string()]),
        ..Default::default()
    });
    let labels = body.labels.get_or_insert_with(HashMap::new);
    labels.remove(super::labels::MANAGED);
    labels.insert(super::labels::RUN.to_string(), workload_id.to_string());
    if let Some(host) = body.host_config.as_mut() {
        host.restart_policy = None;
        host.port_bindings = None;
        host.publish_all_ports = Some(false);
    }
}

/// Whether `error` comes from two agents on one engine creating a network
/// at once: the name is ambiguous, or the network a container was made on
/// was removed as a duplicate.
fn network_race(error: &RuntimeError) -> bool {
    let text = error.to_string();
    text.contains("is ambiguous")
        || (text.contains("network")
            && (text.contains("not found") || text.contains("No such network")))
}

/// When the engine holds several networks named `name` (two agents on one
/// engine created it at once), removes Convoy's empty ones but the oldest,
/// so that the name means one network again. Every agent keeps the same
/// one (oldest, then lowest ID); one in use is left for a later pass.
async fn dedupe_network(docker: &Docker, name: &str) {
    let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let Ok(list) = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
    else {
        return;
    };
    // The filter matches substrings: keep the exact name only.
    let mut same: Vec<_> = list
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .collect();
    if same.len() < 2 {
        return;
    }
    same.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    for extra in &same[1..] {
        let ours = extra
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::MANAGED))
            .is_some_and(|v| v == "true");
        if let (true, Some(id)) = (ours, extra.id.as_deref()) {
            tracing::info!(network = name, id, "removing a duplicate network");
            let _ = docker.remove_network(id).await;
        }
    }
}

#[cfg(test)]
mod tests;

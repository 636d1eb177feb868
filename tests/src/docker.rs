//! The real Docker daemon, through the `docker` CLI: what the tests assert
//! on, independently of what Convoy reports.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::process::{output_within, stdout_of};

const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);

/// The env var that turns the Docker tests into skips.
pub const SKIP_ENV: &str = "CONVOY_SKIP_DOCKER_TESTS";

/// True when the Docker tests should be skipped (`CONVOY_SKIP_DOCKER_TESTS=1`);
/// otherwise makes sure Docker answers, failing the test if it does not.
pub fn skip_docker_tests() -> bool {
    if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
        return true;
    }
    ensure_reachable();
    false
}

/// Fails the calling test unless the Docker daemon answers.
pub fn ensure_reachable() {
    static REACHABLE: OnceLock<Result<String, String>> = OnceLock::new();
    let answer = REACHABLE.get_or_init(|| server_version().map_err(|e| format!("{e:#}")));
    if let Err(e) = answer {
        panic!("Docker is unreachable: {e} (set {SKIP_ENV}=1 to skip on a laptop without Docker)");
    }
}

/// The daemon's version, e.g. `20.10.24+dfsg1`.
pub fn server_version() -> Result<String> {
    let out = output_within(
        Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]),
        Duration::from_secs(20),
    )
    .context("cannot run `docker version`")?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || version.is_empty() {
        bail!(
            "`docker version` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(version)
}

/// Runs `docker ARGS` and returns its stdout; fails if it fails.
pub fn docker(args: &[&str]) -> Result<String> {
    stdout_of(Command::new("docker").args(args), DOCKER_TIMEOUT)
}

/// A container as `docker inspect` describes it (only what the tests read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Container {
    pub id: String,
    /// With Docker's leading `/`; see [`Container::name`].
    #[serde(rename = "Name")]
    pub raw_name: String,
    pub state: ContainerState,
    pub config: ContainerConfig,
    pub network_settings: NetworkSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: String,
    pub running: bool,
    pub exit_code: i64,
    pub started_at: String,
    pub finished_at: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    pub image: String,
    #[serde(default)]
    pub labels: Option<HashMap<String, String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NetworkSettings {
    /// Set on Docker's default bridge only.
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
    /// Each network the container is on, by name.
    #[serde(rename = "Networks", default)]
    pub networks: Option<std::collections::BTreeMap<String, Endpoint>>,
}

/// A container's place on one network.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
}

impl Container {
    pub fn name(&self) -> &str {
        self.raw_name.trim_start_matches('/')
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.config.labels.as_ref()?.get(key).map(String::as_str)
    }

    /// A label that must be there.
    pub fn must_label(&self, key: &str) -> &str {
        self.label(key)
            .unwrap_or_else(|| panic!("container {} has no label {key}", self.name()))
    }

    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.config
            .env
            .as_ref()?
            .iter()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    /// `ip:port` on Docker's bridge or, for a container on user-defined
    /// networks only (Convoy's `convoy-ENV`), on the first of them by
    /// name; reachable from the host.
    pub fn addr(&self, port: u16) -> Result<SocketAddr> {
        let settings = &self.network_settings;
        let on_networks = settings
            .networks
            .iter()
            .flatten()
            .map(|(_, endpoint)| endpoint.ip_address.as_str());
        let ip: IpAddr = std::iter::once(settings.ip_address.as_str())
            .chain(on_networks)
            .find_map(|ip| ip.parse().ok())
            .with_context(|| format!("container {} has no IP address", self.name()))?;
        Ok(SocketAddr::new(ip, port))
    }

    /// `name (id12, status, started …)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, {}, started {})",
            self.name(),
            &self.id[..12.min(self.id.len())],
            self.state.status,
            self.state.started_at
        )
    }
}

/// Every container (running or not) matching all `filters`
/// (`docker ps --filter` syntax, e.g. `label=io.convoy.service=web`).
pub fn containers(filters: &[String]) -> Result<Vec<Container>> {
    let mut last_error = anyhow!("never tried");
    // A container can vanish between `ps` and `inspect`: look again.
    for _ in 0..5 {
        let mut args = vec!["ps", "-aq", "--no-trunc"];
        for f in filters {
            args.push("--filter");
            args.push(f);
        }
        let ids = docker(&args)?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match inspect(&ids) {
            Ok(found) => return Ok(found),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// `docker inspect` of the given ids; fails if any is gone.
pub fn inspect(ids: &[&str]) -> Result<Vec<Container>> {
    let mut args = vec!["inspect", "--type", "container"];
    args.extend_from_slice(ids);
    let out = docker(&args)?;
    serde_json::from_str(&out).context("cannot parse `docker inspect`")
}

/// One container by id or name; `None` if Docker does not know it.
pub fn find(id: &str) -> Result<Option<Container>> {
    let out = output_within(
        Command::new("docker").args(["inspect", "--type", "container", id]),
        DOCKER_TIMEOUT,
    )?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such") {
            return Ok(None);
        }
        bail!("docker inspect {id}: {}", err.trim());
    }
    let mut found: Vec<Container> = serde_json::from_slice(&out.stdout)?;
    Ok(found.pop())
}

/// Containers carrying `key=value`.
pub fn with_label(key: &str, value: &str) -> Result<Vec<Container>> {
    containers(&[format!("label={key}={value}")])
}

/// Containers of a Convoy service (whatever node).
pub fn of_service(service: &str) -> Result<Vec<Container>> {
    with_label("io.convoy.service", service)
}

/// Containers a node's agent would consider its own.
pub fn of_node(node: &str) -> Result<Vec<Container>> {
    containers(&[
        "label=io.convoy.managed=true".to_string(),
        format!("label=io.convoy.node={node}"),
    ])
}

pub fn kill(id: &str) -> Result<()> {
    docker(&["kill", id]).map(drop)
}

/// `docker rm -f` of every id given (missing ones are fine).
pub fn remove_force(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let mut cmd = Command::new("docker");
    cmd.args(["rm", "-f", "-v"]).args(ids);
    let _ = output_within(&mut cmd, DOCKER_TIMEOUT);
}

/// `docker run -d ARGS` and the new container's id.
pub fn run_detached(args: &[&str]) -> Result<String> {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    Ok(docker(&all)?.trim().to_string())
}

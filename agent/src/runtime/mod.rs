//! The seams between the reconcilers and the host: `systemd` for units;
//! here, the one between the reconciler and the container engine: a small trait to
//! list, create, start and remove the containers Convoy manages on one node,
//! and to look into them for the probes (address, exec), so the reconcile
//! and probe logic run in unit tests against a recording fake.

pub mod docker;
#[cfg(test)]
pub mod fake;
pub mod pull;
pub mod systemd;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use convoy_proto::{Health, Workload};
use futures::stream::BoxStream;

pub use docker::DockerRuntime;
pub use pull::PullFailure;

use crate::plan::RegistryLogin;
use crate::secrets::Delivery;

/// Label keys every container the agent creates carries (INTERFACES.md).
pub mod labels {
    pub const MANAGED: &str = "io.convoy.managed";
    pub const NODE: &str = "io.convoy.node";
    pub const ENV: &str = "io.convoy.env";
    pub const SERVICE: &str = "io.convoy.service";
    pub const INSTANCE: &str = "io.convoy.instance";
    pub const WORKLOAD: &str = "io.convoy.workload";
    pub const REVISION: &str = "io.convoy.revision";
    pub const SPEC_HASH: &str = "io.convoy.spec-hash";
    /// On a volume: its key under the spec's `volumes:`, or
    /// `SERVICE-INDEX-HASH` for an anonymous one.
    pub const VOLUME: &str = "io.convoy.volume";
    /// On a volume: `true` for an anonymous one (one per instance and target).
    pub const ANONYMOUS: &str = "io.convoy.anonymous";
    /// On a one-off container (`convoy run`): the workload whose spec it
    /// copies. It carries no `io.convoy.managed`, so the reconciler
    /// leaves it alone.
    pub const RUN: &str = "io.convoy.run";
}

/// What a one-off container runs and how it is attached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OneOff {
    pub command: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
}

/// The container name of a workload: `convoy-ENV-SERVICE-INDEX-rREVISION`.
pub fn container_name(workload: &Workload) -> String {
    format!(
        "convoy-{}-{}-{}-r{}",
        workload.env, workload.service, workload.index, workload.revision
    )
}

/// The labels of a workload's container: the spec's own, then Convoy's, which
/// a spec cannot override.
pub fn container_labels(node: &str, workload: &Workload) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = match &workload.runtime {
        Some(convoy_proto::workload::Runtime::Container(spec)) => {
            spec.labels.clone().into_iter().collect()
        }
        Some(
            convoy_proto::workload::Runtime::Unit(_) | convoy_proto::workload::Runtime::Swarm(_),
        )
        | None => HashMap::new(),
    };
    for (k, v) in [
        (labels::MANAGED, "true".to_string()),
        (labels::NODE, node.to_string()),
        (labels::ENV, workload.env.clone()),
        (labels::SERVICE, workload.service.clone()),
        (labels::INSTANCE, workload.index.to_string()),
        (labels::WORKLOAD, workload.id.clone()),
        (labels::REVISION, workload.revision.to_string()),
        (labels::SPEC_HASH, workload.spec_hash.clone()),
    ] {
        out.insert(k.to_string(), v);
    }
    out
}

/// A container's lifecycle state as the engine reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl ContainerState {
    /// The process is up (or the engine is about to bring it up again).
    pub fn is_up(self) -> bool {
        matches!(self, Self::Running | Self::Paused | Self::Restarting)
    }
}

/// One managed container as read from the engine, fresh on every pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub id: String,
    pub name: String,
    /// `io.convoy.node`.
    pub node: String,
    /// `io.convoy.workload`; empty when the label is missing.
    pub workload_id: String,
    /// `io.convoy.spec-hash`.
    pub spec_hash: String,
    /// `io.convoy.revision`; 0 when missing or not a number.
    pub revision: u64,
    pub state: ContainerState,
    /// Creation time, seconds since the epoch (orders duplicates).
    pub created_unix: i64,
    /// Exit code of the last run; only known for containers that are not up.
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// The engine's own error for the last start attempt, if any.
    pub error: String,
    /// Docker's healthcheck; `None` when the container has none.
    pub health: Option<DockerHealth>,
}

/// Docker's view of a container's healthcheck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerHealth {
    /// Starting, healthy or unhealthy.
    pub status: Health,
    /// The last check's output, cut to `MAX_OUTPUT` bytes.
    pub output: String,
}

/// Check outputs are cut to this many bytes: they travel in statuses.
pub const MAX_OUTPUT: usize = 1024;

/// `text` cut to at most `MAX_OUTPUT` bytes, at a character boundary.
pub fn cut_output(text: &str) -> String {
    let text = text.trim();
    if text.len() <= MAX_OUTPUT {
        return text.to_string();
    }
    let mut end = MAX_OUTPUT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// What probes need to know of one container, read fresh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// `None` when the engine no longer knows the state.
    pub state: Option<ContainerState>,
    pub health: Option<DockerHealth>,
    /// Its address on its network (the default bridge), if it has one.
    pub ip: Option<IpAddr>,
    /// Published TCP ports: container port and the host address it is on.
    pub published: Vec<(u16, SocketAddr)>,
}

impl ContainerInfo {
    /// Where to reach the container's TCP `port` from the host: its own
    /// address, else the host port it is published on.
    pub fn address(&self, port: u16) -> Option<SocketAddr> {
        if let Some(ip) = self.ip {
            return Some(SocketAddr::new(ip, port));
        }
        self.published
            .iter()
            .find(|(container_port, _)| *container_port == port)
            .map(|(_, host)| match host.ip() {
                // Published on every interface: loopback is one of them.
                ip if ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) => {
                    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), host.port())
                }
                ip if ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
                    SocketAddr::new(Ipv6Addr::LOCALHOST.into(), host.port())
                }
                _ => *host,
            })
    }
}

/// How a command run in a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// `None` when the engine did not say.
    pub exit_code: Option<i64>,
    /// Its stdout and stderr together, cut to `MAX_OUTPUT` bytes.
    pub output: String,
}

impl Observed {
    /// How long the last run lasted, when the container has exited.
    pub fn ran_for(&self) -> Option<Duration> {
        let (start, end) = (self.started_at?, self.finished_at?);
        end.duration_since(start).ok()
    }

    /// Identifies one exit of one container, so a backoff is scheduled once
    /// per exit however many passes see it.
    pub fn exit_key(&self) -> String {
        let ms = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis())
        };
        format!(
            "{}@{}-{}",
            self.id,
            ms(self.started_at),
            ms(self.finished_at)
        )
    }
}

/// What `create_and_start` made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedContainer {
    pub id: String,
    pub name: String,
}

/// A lifecycle event of a managed container (die, start, destroy, oom,
/// `health_status: healthy`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub container_id: String,
    pub workload_id: String,
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The engine could not be reached at all.
    #[error("docker unreachable: {0}")]
    Unreachable(String),
    /// The image is not on the host and the one bounded pull failed.
    #[error("image `{image}` not found: {cause}")]
    ImageMissing { image: String, cause: String },
    /// A pull failed: the registry wants a login, has no such image, or
    /// cannot be reached ([`pull::classify`]).
    #[error("pulling `{image}` failed: {}", pull::explain(*kind, registry, username.as_deref(), detail))]
    PullFailed {
        image: String,
        registry: String,
        kind: PullFailure,
        /// The login sent, if any.
        username: Option<String>,
        /// Docker's words, cut to one line.
        detail: String,
    },
    #[error("container name `{name}` is taken by a container Convoy does not manage")]
    NameTaken { name: String },
    /// The workload needs host access this node's admin has not allowed.
    #[error("{0}")]
    NotAllowed(String),
    /// A secret the workload needs cannot be delivered (missing from the
    /// plan, the secrets dir not on tmpfs, a bad target); names the secret,
    /// never its value.
    #[error("{0}")]
    Secret(String),
    /// The engine has no NVIDIA runtime for a container that asks for
    /// GPUs (Docker: `could not select device driver "nvidia"`).
    #[error("could not select device driver nvidia: install the NVIDIA container toolkit ({context}: {message})")]
    NoGpuRuntime { context: String, message: String },
    /// Any other refusal by the engine, with what was being done.
    #[error("{context}: {message}")]
    Engine { context: String, message: String },
}

impl RuntimeError {
    /// The error in words for a workload status on `node`.
    pub fn reason(&self, node: &str) -> String {
        match self {
            Self::Unreachable(cause) => format!("docker unreachable on node `{node}`: {cause}"),
            Self::NoGpuRuntime { context, message } => format!(
                "could not select device driver nvidia on node `{node}`: install the NVIDIA \
                 container toolkit ({context}: {message})"
            ),
            Self::ImageMissing { image, cause } => {
                format!("image `{image}` not found on node `{node}`: {cause}")
            }
            Self::PullFailed {
                image,
                registry,
                kind,
                username,
                detail,
            } => format!(
                "pulling `{image}` on node `{node}` failed: {}",
                pull::explain(*kind, registry, username.as_deref(), detail)
            ),
            other => other.to_string(),
        }
    }
}

/// The container engine, as the reconciler needs it.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The engine's version (for NodeFacts).
    async fn version(&self) -> Result<String, RuntimeError>;
    /// The engine's Swarm membership (for NodeFacts); `None` when it is in
    /// no swarm.
    async fn swarm(&self) -> Result<Option<convoy_proto::SwarmFacts>, RuntimeError> {
        Ok(None)
    }
    /// Every container (running or not) labelled `io.convoy.managed=true`
    /// and `io.convoy.node=node`.
    async fn list(&self, node: &str) -> Result<Vec<Observed>, RuntimeError>;
    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError>;
    /// One pull attempt, bounded in time, with the registry's login when
    /// the plan holds one; `PullFailed` (why) when it fails.
    async fn pull(&self, image: &str, login: Option<&RegistryLogin>) -> Result<(), RuntimeError>;
    /// Creates the workload's container (labels, name, spec) and starts it,
    /// with its secrets: the files (already written on the node's tmpfs)
    /// bind-mounted read-only, and the variables set.
    async fn create_and_start(
        &self,
        node: &str,
        workload: &Workload,
        secrets: &Delivery,
    ) -> Result<CreatedContainer, RuntimeError>;
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// Stops with the container's own stop signal and grace period, then
    /// removes it. A container that is already gone is not an error.
    async fn stop_and_remove(&self, id: &str) -> Result<(), RuntimeError>;
    /// Removes the anonymous volumes of instance `workload_id`
    /// (`ENV/SERVICE/INDEX`) once it is removed for good (its workload left
    /// the plan). Best effort: one still in use stays.
    async fn remove_instance_volumes(&self, _workload_id: &str) {}
    /// Convoy's volumes on the engine (`io.convoy.managed=true`), of `env`
    /// only when it is not empty, each with the containers that mount it.
    async fn list_volumes(
        &self,
        _env: &str,
    ) -> Result<Vec<convoy_proto::VolumeInfo>, RuntimeError> {
        Ok(Vec::new())
    }
    /// Removes the named volumes of `env` with one of `keys` (never an
    /// anonymous one); each tried is answered, with the engine's reason
    /// when it stays (in use).
    async fn remove_volumes(
        &self,
        _env: &str,
        _keys: &[String],
    ) -> Result<Vec<convoy_proto::VolumeInfo>, RuntimeError> {
        Ok(Vec::new())
    }
    /// State, Docker health and addresses of one container.
    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError>;
    /// Runs `command` in the running container `id` (no shell) and waits for
    /// it, at most `timeout`.
    async fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError>;
    /// Reads container `id`'s output per `query` into `out` (timestamps on,
    /// cut into bounded lines) until it ends, or while following until the
    /// container stops or the reader goes away (`convoy logs`).
    async fn logs(
        &self,
        id: &str,
        _query: &crate::logs::LogQuery,
        _out: &mut crate::logs::LossySender,
    ) -> Result<(), RuntimeError> {
        Err(RuntimeError::Engine {
            context: format!("reading the logs of container {id}"),
            message: "this runtime keeps no logs".to_string(),
        })
    }
    /// The Docker client, for exec and one-off runs, which stream through
    /// tunnels (`crate::exec`).
    async fn docker_client(&self) -> Result<bollard::Docker, RuntimeError> {
        Err(RuntimeError::Unreachable(
            "this runtime has no Docker".to_string(),
        ))
    }
    /// Creates (does not start) a one-off container named `name` from
    /// `workload`'s spec with `command` (`convoy run`): labelled
    /// [`labels::RUN`] and not managed, without published ports, restarts
    /// or health checks; attached streams as asked. Its ID.
    async fn create_one_off(
        &self,
        _node: &str,
        _workload: &Workload,
        _secrets: &Delivery,
        _name: &str,
        _run: &OneOff,
    ) -> Result<String, RuntimeError> {
        Err(RuntimeError::Unreachable(
            "this runtime has no Docker".to_string(),
        ))
    }
    /// Lifecycle events of the node's managed containers. The stream ends or
    /// errors when the engine goes away; callers subscribe again.
    async fn events(
        &self,
        node: &str,
    ) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_reach_a_container_at_its_own_address_first() {
        let info = ContainerInfo {
            ip: Some("172.17.0.5".parse().unwrap()),
            published: vec![(8080, "0.0.0.0:49153".parse().unwrap())],
            ..ContainerInfo::default()
        };
        assert_eq!(info.address(8080), Some("172.17.0.5:8080".parse().unwrap()));
    }

    #[test]
    fn without_an_address_a_published_port_is_reached_on_loopback() {
        let info = ContainerInfo {
            published: vec![
                (8080, "0.0.0.0:49153".parse().unwrap()),
                (9090, "[::]:49154".parse().unwrap()),
                (7070, "10.0.0.7:7070".parse().unwrap()),
            ],
            ..ContainerInfo::default()
        };
        assert_eq!(info.address(8080), Some("127.0.0.1:49153".parse().unwrap()));
        assert_eq!(info.address(9090), Some("[::1]:49154".parse().unwrap()));
        assert_eq!(info.address(7070), Some("10.0.0.7:7070".parse().unwrap()));
        assert_eq!(info.address(80), None);
    }

    #[test]
    fn outputs_are_cut_to_1_kib_at_a_character_boundary() {
        assert_eq!(cut_output("  ok\n"), "ok");
        let cut = cut_output(&"é".repeat(1000));
        assert!(cut.len() <= MAX_OUTPUT && cut.len() >= MAX_OUTPUT - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}

//! One service of a spec as Convoy stores it in a revision (JSON): the
//! container's settings, its checks, and how it restarts. `deploy` and
//! `unit` have their own modules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::volumes::{MountSpec, VolumeDecl};

use super::{
    ConfigMount, Constraint, ContainerExtras, DeployMode, DeploySpec, HostAccessSpec,
    ResourcesSpec, SecretMount, SwarmFields, UnitFields,
};

/// One service of a spec, as stored in a revision (JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceSpec {
    pub image: String,
    /// Empty: the image's default.
    pub command: Vec<String>,
    /// Empty: the image's default.
    pub entrypoint: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    pub labels: BTreeMap<String, String>,
    /// Short Compose syntax, `SRC:DST[:ro|rw]`, as revisions stored it
    /// before Convoy read volumes fully: a named `SRC` is the plain Docker
    /// volume `SRC`. Only such old revisions hold it; `parse` fills
    /// `mounts`.
    pub volumes: Vec<String>,
    /// `volumes:`, short and long syntax, one per entry in the order written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// The top-level `volumes:` entries `mounts` names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub named_volumes: Vec<VolumeDecl>,
    /// `networks:`, resolved against the top-level `networks:`; empty: the
    /// environment's default network (`convoy-ENV`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
    /// Empty: Docker's (the container id).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// `HOST:IP` lines for the container's /etc/hosts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// DNS servers (IP addresses); empty: Docker's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// Ports exposed to other containers, never published: `PORT/PROTO`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// Empty: the image's default.
    pub working_dir: String,
    /// Empty: the image's default.
    pub user: String,
    pub restart: RestartSpec,
    /// Empty: the image's, else SIGTERM.
    pub stop_signal: String,
    /// 0: 10 s, as Compose.
    pub stop_grace_period_ms: u64,
    /// Compose's `healthcheck`, run by Docker; `None`: the image's own.
    pub healthcheck: Option<HealthcheckSpec>,
    /// `x-convoy.probes`: checks the agent runs against each instance.
    pub probes: Vec<ProbeSpec>,
    pub deploy: DeploySpec,
    /// `deploy.resources`, `cpus`, `mem_limit`, `ulimits`, ...: what the
    /// containers may use (Docker enforces it) and what placement sets
    /// aside for each.
    #[serde(skip_serializing_if = "ResourcesSpec::is_empty")]
    pub resources: ResourcesSpec,
    /// `read_only`, `tmpfs`, `init`, `cap_drop`, `tty`, `stdin_open`,
    /// `sysctls` and `logging`, handed to Docker as written.
    #[serde(skip_serializing_if = "ContainerExtras::is_empty")]
    pub extras: ContainerExtras,
    /// What the service asks of its host (`privileged`, `cap_add`, ...):
    /// granted per node by an admin.
    #[serde(skip_serializing_if = "HostAccessSpec::is_empty")]
    pub host_access: HostAccessSpec,
    /// `env_file`, as written: merged into `environment` (which wins) by
    /// `spec::parse_with_files` and then cleared, so never stored.
    #[serde(skip)]
    pub env_files: Vec<EnvFileRef>,
    /// Compose `profiles:`: when not empty, the service is applied only
    /// when one of these profiles is enabled (`convoy apply --profile`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Compose `depends_on`: services of the same file whose instances on
    /// the node must meet a condition before this one's are created.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// Compose `configs:`, with their content: files the containers get
    /// read-only at their targets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ConfigMount>,
    /// Compose `secrets:` (and `x-convoy.secret_env`): references to the
    /// environment's secrets, with the version each pins; never values.
    /// For a unit, its systemd credentials.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretMount>,
    /// Set for an entry of `units:`: a systemd service, not a container
    /// (the container fields above are then empty). `None` in records
    /// stored before units existed.
    pub unit: Option<UnitFields>,
    /// Set for a service that runs as a Docker Swarm service
    /// (`x-convoy.swarm`): the container fields above describe its tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmFields>,
    /// `x-convoy.reschedule_after`: how long an instance's node may stay
    /// lost before the instance is placed on another node; `Some(0)`:
    /// never (`never` or `0`); `None`: [`DEFAULT_RESCHEDULE_AFTER_MS`].
    /// Not part of the spec hash: changing it restarts nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reschedule_after_ms: Option<u64>,
    /// `x-convoy.pre_deploy`: a one-off command run from the new spec
    /// before a rollout starts; its failure stops the apply. Not part of
    /// the spec hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_deploy: Option<PreDeploy>,
    /// `x-convoy.ingress`: routes of the agents' proxy to the instances.
    /// Not part of the spec hash: a route change restarts nothing (the
    /// new revision's plans carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<super::IngressSpec>,
}

/// `x-convoy.pre_deploy` (docs/LOGS.md): e.g. a database migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreDeploy {
    pub command: Vec<String>,
    pub timeout_ms: u64,
}

/// How long a pre-deploy hook may run when `timeout` does not say.
pub const DEFAULT_PRE_DEPLOY_TIMEOUT_MS: u64 = 5 * 60 * 1000;

/// How long an instance's node may stay lost before the instance moves,
/// when `x-convoy.reschedule_after` does not say: 2 minutes (docs/OPERATIONS.md
/// says why: between Nomad's immediate replacement and Kubernetes' 300 s).
pub const DEFAULT_RESCHEDULE_AFTER_MS: u64 = 120_000;

impl ServiceSpec {
    /// Whether this is an entry of `units:`.
    pub fn is_unit(&self) -> bool {
        self.unit.is_some()
    }

    /// The Swarm cluster this service runs on (`x-convoy.swarm`), if any.
    pub fn swarm_cluster(&self) -> Option<&str> {
        self.swarm.as_ref().map(|s| s.cluster.as_str())
    }

    /// How long this service's instances wait on a lost node before they
    /// are placed elsewhere; `None`: never. Units are host-bound, global
    /// services have one instance per node and Swarm services fail over
    /// their own way: none of them moves.
    pub fn reschedule_after_ms(&self) -> Option<u64> {
        if self.is_unit() || self.is_global() || self.swarm.is_some() {
            return None;
        }
        match self.reschedule_after_ms {
            Some(0) => None,
            Some(ms) => Some(ms),
            None => Some(DEFAULT_RESCHEDULE_AFTER_MS),
        }
    }

    /// `deploy.replicas`, 1 when not given; meaningless in global mode.
    pub fn replicas(&self) -> u32 {
        self.deploy.replicas
    }

    /// Whether the service is applied with `enabled` profiles: it has none,
    /// or one of them is enabled, or `*` enables all.
    pub fn in_profiles(&self, enabled: &[String]) -> bool {
        self.profiles.is_empty()
            || enabled
                .iter()
                .any(|p| p == "*" || self.profiles.contains(p))
    }

    /// `deploy.mode: global`.
    pub fn is_global(&self) -> bool {
        self.deploy.mode == DeployMode::Global
    }

    /// `deploy.placement.constraints`.
    pub fn constraints(&self) -> &[Constraint] {
        &self.deploy.constraints
    }

    /// The image; for a unit, its systemd name (what status shows in the
    /// image's place).
    pub fn image(&self) -> &str {
        match &self.unit {
            Some(unit) => &unit.unit_name,
            None => &self.image,
        }
    }
}

/// One entry of `depends_on`: a service of the same file and what its
/// instances must do before this service's start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dependency {
    pub service: String,
    pub condition: DependencyCondition,
    /// `restart: true`: replaced when the dependency's instance on the node
    /// is (the agent's `decide`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
}

/// `depends_on`'s `condition`, named as in Compose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DependencyCondition {
    /// Every instance runs.
    #[default]
    #[serde(rename = "service_started")]
    Started,
    /// Every instance runs and is healthy.
    #[serde(rename = "service_healthy")]
    Healthy,
    /// Every instance exited with code 0.
    #[serde(rename = "service_completed_successfully")]
    CompletedSuccessfully,
}

/// One network a service's containers join on their node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkAttachment {
    /// The key under top-level `networks:` (`default`: the environment's
    /// network); for an external network, its Docker name.
    pub name: String,
    /// Aliases besides the service name, which is always one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// `external: true`: an existing network, never created by Convoy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// `internal: true`: no route out.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Compose's `healthcheck`. Zero values leave Docker's (or the image's)
/// setting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthcheckSpec {
    /// `["CMD", args...]`, `["CMD-SHELL", "command line"]` or `["NONE"]`;
    /// empty: the image's test.
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
    /// The interval during the start period (Docker Engine 25 and later;
    /// older engines use `interval_ms`). Left out of the stored spec and the
    /// spec hash when 0, so adding it replaced no running instance.
    #[serde(skip_serializing_if = "is_zero_ms")]
    pub start_interval_ms: u64,
    /// `disable: true` or `test: ["NONE"]` (then `test` is `["NONE"]`).
    pub disable: bool,
}

/// One of `x-convoy.probes`. Zero values take the agent's defaults (interval
/// 5 s, timeout 2 s, failure threshold 3, success threshold 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    /// As written, or the check's kind (`http`, `tcp`, `exec`).
    pub name: String,
    pub check: ProbeCheck,
    #[serde(default)]
    pub interval_ms: u64,
    #[serde(default)]
    pub timeout_ms: u64,
    #[serde(default)]
    pub failure_threshold: u32,
    #[serde(default)]
    pub success_threshold: u32,
    #[serde(default)]
    pub start_period_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeCheck {
    /// GET `path` on `port` of the container; `expect_status` 0: 200-399.
    Http {
        port: u16,
        #[serde(default)]
        path: String,
        #[serde(default)]
        expect_status: u16,
    },
    Tcp {
        port: u16,
    },
    /// Run in the container; exit status 0 passes.
    Exec {
        command: Vec<String>,
    },
}

impl ProbeCheck {
    /// The key the check is written under, and a probe's default name.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeCheck::Http { .. } => "http",
            ProbeCheck::Tcp { .. } => "tcp",
            ProbeCheck::Exec { .. } => "exec",
        }
    }
}

/// A published port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Empty: all interfaces.
    pub host_ip: String,
    /// 0: an ephemeral port chosen by Docker.
    pub published: u16,
    pub target: u16,
    pub protocol: Protocol,
    /// The long syntax's `mode`, for Swarm services only: `host` or
    /// `ingress`; empty: Swarm's default (`ingress`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// When the agent restarts an exited container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartSpec {
    pub condition: RestartCondition,
    /// 0: unlimited.
    pub max_attempts: u32,
}

/// Swarm's conditions; `any` is the default, Convoy being an orchestrator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    None,
    OnFailure,
    #[default]
    Any,
}

/// One `env_file` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFileRef {
    /// As written in the spec (the CLI sends the file's text under it).
    pub path: String,
    /// `required: false`: a file that is not there is skipped.
    pub required: bool,
}

fn is_zero_ms(ms: &u64) -> bool {
    *ms == 0
}

//! Spec files: the YAML a user applies. A Docker Compose file is already a
//! valid spec; its keys mean what Compose means, and Convoy's own settings
//! (probes, for now) sit in a service's `x-convoy:` block. Beside
//! `services:`, a top-level `units:` section describes systemd services.
//! `parse` checks every key and value, names file, line and key path in its
//! errors, and warns about the Compose keys Convoy does not support yet.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use convoy_proto::{
    probe, restart_policy::Condition, workload::Runtime, ContainerSpec, ExecProbe, HealthCheck,
    HttpProbe, NodeFacts, PortMapping, Probe, RestartPolicy, TcpProbe, UnitSpec,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod compose;
mod locate;
#[cfg(test)]
mod tests;
mod values;

use locate::PathDisplay;

/// A parsed spec file.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecFile {
    /// The `services:` and the `units:` (those have [`ServiceSpec::unit`]
    /// set): one namespace, so a name is in one section only.
    pub services: BTreeMap<String, ServiceSpec>,
    /// One line each: `FILE:LINE: KEY.PATH: what was ignored and why`.
    pub warnings: Vec<String>,
}

/// Why a spec file was refused. Displays as one line:
/// `FILE:LINE:COL: KEY.PATH: what is wrong`.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{}", located(file, *line, *column, path, message))]
    Invalid {
        file: String,
        /// 1-based; `None` when the position is unknown.
        line: Option<usize>,
        /// 1-based; `None` when only the line is known.
        column: Option<usize>,
        /// The key path, e.g. `services.web.ports[0]`; empty for the document.
        path: String,
        message: String,
    },
}

fn located(
    file: &str,
    line: Option<usize>,
    column: Option<usize>,
    path: &str,
    message: &str,
) -> String {
    let mut out = file.to_owned();
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
        if let Some(column) = column {
            out.push_str(&format!(":{column}"));
        }
    }
    out.push_str(": ");
    if !path.is_empty() {
        out.push_str(path);
        out.push_str(": ");
    }
    // One line, whatever the YAML held.
    out.extend(message.chars().map(|c| if c == '\n' { ' ' } else { c }));
    out
}

/// Parses the spec file `filename` (used in messages only) holding `content`.
pub fn parse(filename: &str, content: &str) -> Result<SpecFile, SpecError> {
    let document = compose::read(content).map_err(|err| {
        let (line, column) = match err.line {
            Some(line) => (Some(line), err.column),
            None => (locate::line_of(content, &err.path), None),
        };
        SpecError::Invalid {
            file: filename.to_owned(),
            line,
            column,
            path: PathDisplay(&err.path).to_string(),
            message: err.message,
        }
    })?;
    let mut warnings: Vec<(Option<usize>, String)> = document
        .notes
        .iter()
        .map(|note| {
            let line = locate::line_of(content, &note.path);
            let path = PathDisplay(&note.path).to_string();
            (line, located(filename, line, None, &path, &note.message))
        })
        .collect();
    warnings.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
    Ok(SpecFile {
        services: document.services.into_iter().collect(),
        warnings: warnings.into_iter().map(|(_, w)| w).collect(),
    })
}

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
    /// Short Compose syntax, `SRC:DST[:ro|rw]`.
    pub volumes: Vec<String>,
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
    /// Set for an entry of `units:`: a systemd service, not a container
    /// (the container fields above are then empty). `None` in records
    /// stored before units existed.
    pub unit: Option<UnitFields>,
}

/// An entry of `units:`: a unit Convoy writes
/// (`/etc/systemd/system/convoy-NAME.service`), or an existing one it adopts
/// and only starts, stops, enables or disables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnitFields {
    /// `convoy-NAME.service`, or the adopted unit's name (`unit:`).
    pub unit_name: String,
    /// `unit:` was given: Convoy never writes this unit's file.
    pub adopt: bool,
    /// The program (an absolute path) and its arguments. Written units only.
    pub exec_start: Vec<String>,
    /// Empty: root. Written units only.
    pub user: String,
    pub restart: UnitRestart,
    pub environment: BTreeMap<String, String>,
    /// Empty: systemd's default (`/`). Written units only.
    pub working_dir: String,
    pub description: String,
    /// Adopted units; written units always run.
    pub state: UnitState,
    /// Enabled at boot. Adopted units; written units always are.
    pub enabled: bool,
}

impl Default for UnitFields {
    fn default() -> Self {
        UnitFields {
            unit_name: String::new(),
            adopt: false,
            exec_start: Vec::new(),
            user: String::new(),
            restart: UnitRestart::default(),
            environment: BTreeMap::new(),
            working_dir: String::new(),
            description: String::new(),
            state: UnitState::Running,
            enabled: true,
        }
    }
}

/// systemd's `Restart=`. `on-failure` unless the spec says, Convoy being an
/// orchestrator (systemd's own default is `no`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitRestart {
    No,
    OnSuccess,
    #[default]
    OnFailure,
    OnAbnormal,
    OnWatchdog,
    OnAbort,
    Always,
}

impl UnitRestart {
    pub const ALL: [UnitRestart; 7] = [
        UnitRestart::No,
        UnitRestart::OnSuccess,
        UnitRestart::OnFailure,
        UnitRestart::OnAbnormal,
        UnitRestart::OnWatchdog,
        UnitRestart::OnAbort,
        UnitRestart::Always,
    ];

    /// As systemd spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitRestart::No => "no",
            UnitRestart::OnSuccess => "on-success",
            UnitRestart::OnFailure => "on-failure",
            UnitRestart::OnAbnormal => "on-abnormal",
            UnitRestart::OnWatchdog => "on-watchdog",
            UnitRestart::OnAbort => "on-abort",
            UnitRestart::Always => "always",
        }
    }
}

/// The state an adopted unit is kept in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitState {
    #[default]
    Running,
    Stopped,
}

impl UnitState {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitState::Running => "running",
            UnitState::Stopped => "stopped",
        }
    }
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

/// How many instances run, and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeploySpec {
    pub mode: DeployMode,
    /// Ignored in global mode.
    pub replicas: u32,
    pub constraints: Vec<Constraint>,
    /// How a new revision replaces the running one.
    #[serde(default)]
    pub update: UpdatePolicy,
}

impl Default for DeploySpec {
    fn default() -> Self {
        DeploySpec {
            mode: DeployMode::Replicated,
            replicas: 1,
            constraints: Vec::new(),
            update: UpdatePolicy::default(),
        }
    }
}

/// A service's update strategy: Compose's `deploy.update_config` (and
/// `deploy.rollback_config`), with Convoy's additions under
/// `x-convoy.update`. Durations in milliseconds. A setting written in both
/// blocks is refused, as are settings of another strategy (`canaries`
/// without `strategy: canary`, ...); `rollback_config` is checked, then
/// ignored with a warning: rollbacks run under these same gates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdatePolicy {
    pub strategy: Strategy,
    /// Instances replaced at a time (`update_config.parallelism`,
    /// `x-convoy.update.max_parallel`); 0: all at once.
    pub max_parallel: u32,
    /// Pause between batches (`update_config.delay`).
    pub delay_ms: u64,
    /// An updated instance must stay healthy (running, without checks) this
    /// long before the next batch (`update_config.monitor`,
    /// `x-convoy.update.min_healthy_time`).
    pub min_healthy_time_ms: u64,
    /// An updated instance not healthy within this is a failure.
    pub healthy_deadline_ms: u64,
    /// The whole rollout must make progress (one more instance done) within
    /// this, or it fails.
    pub progress_deadline_ms: u64,
    pub order: UpdateOrder,
    pub failure_action: FailureAction,
    /// Failed instances tolerated, in thousandths of the instances being
    /// updated (`update_config.max_failure_ratio` 0.25 is 250).
    pub max_failure_permille: u32,
    /// On failure, roll back to the last revision that was fully healthy
    /// (`x-convoy.update.auto_rollback`, or `failure_action: rollback`;
    /// `pause` and `continue` turn it off).
    pub auto_rollback: bool,
    /// Canary: new instances first, then wait for `promote`. 1 when
    /// `strategy: canary` does not say.
    pub canaries: u32,
    /// Canary / blue-green: promote by itself after the new instances
    /// stayed healthy for `min_healthy_time`.
    pub auto_promote: bool,
    /// Blue-green: the old set is stopped this long after promotion.
    pub scale_down_delay_ms: u64,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        // Without a policy a new revision replaces every instance at once,
        // as `docker compose up` does, still watched by the health gates.
        Self {
            strategy: Strategy::Rolling,
            max_parallel: 0,
            delay_ms: 0,
            min_healthy_time_ms: 0,
            healthy_deadline_ms: 5 * 60_000,
            progress_deadline_ms: 10 * 60_000,
            order: UpdateOrder::StopFirst,
            failure_action: FailureAction::Rollback,
            max_failure_permille: 0,
            auto_rollback: true,
            canaries: 0,
            auto_promote: false,
            scale_down_delay_ms: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    Rolling,
    Canary,
    BlueGreen,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Roll back (Convoy's default; Compose's is pause).
    #[default]
    Rollback,
    Pause,
    Continue,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployMode {
    /// `replicas` instances, wherever they fit.
    #[default]
    Replicated,
    /// One instance on every node that matches the constraints.
    Global,
}

impl ServiceSpec {
    /// The runtime part, as the agent receives it.
    pub fn container_spec(&self) -> ContainerSpec {
        ContainerSpec {
            image: self.image.clone(),
            command: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env: self
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ports: self.ports.iter().map(PortMapping::from).collect(),
            labels: self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            volumes: self.volumes.clone(),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
            restart: Some(RestartPolicy::from(self.restart)),
            stop_signal: self.stop_signal.clone(),
            stop_grace_period_ms: self.stop_grace_period_ms,
            healthcheck: self.healthcheck.as_ref().map(HealthCheck::from),
        }
    }

    /// What the agent runs: a container, or a systemd unit for an entry of
    /// `units:` (`Workload.runtime`).
    pub fn runtime(&self) -> Runtime {
        match &self.unit {
            None => Runtime::Container(self.container_spec()),
            Some(unit) => Runtime::Unit(UnitSpec::from(unit)),
        }
    }

    /// Whether this is an entry of `units:`.
    pub fn is_unit(&self) -> bool {
        self.unit.is_some()
    }

    /// The probes the agent runs against each instance (`Workload.probes`).
    pub fn probes(&self) -> Vec<Probe> {
        self.probes.iter().map(Probe::from).collect()
    }

    /// Hex SHA-256 of a canonical encoding of the runtime part (everything but
    /// `deploy`): equal hashes mean an instance can be kept as it is.
    pub fn spec_hash(&self) -> String {
        let encoded = serde_json::to_vec(&HashedRuntime::of(self))
            .expect("a struct of strings, numbers and string maps always encodes");
        let mut hasher = Sha256::new();
        hasher.update(b"convoy spec-hash v1\n");
        hasher.update(&encoded);
        hex::encode(hasher.finalize())
    }

    /// `deploy.replicas`, 1 when not given; meaningless in global mode.
    pub fn replicas(&self) -> u32 {
        self.deploy.replicas
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

/// What `spec_hash` hashes. Empty and default fields are left out, so that a
/// field added later does not change the hash of specs that do not use it
/// (which would replace every running instance).
#[derive(Serialize)]
struct HashedRuntime<'a> {
    image: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    command: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    environment: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ports: &'a [PortSpec],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    volumes: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    working_dir: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart: Option<RestartSpec>,
    #[serde(skip_serializing_if = "str::is_empty")]
    stop_signal: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_grace_period_ms: Option<u64>,
    /// Docker applies it when it creates the container: a change needs a
    /// new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<&'a HealthcheckSpec>,
    /// The agent runs these, so a change need not replace the container; but
    /// node plans are re-sent only when a spec hash changes (state.rs), so a
    /// changed probe would not reach the agents otherwise. Hashed for that:
    /// a probe change rolls the service like any other change.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    probes: &'a [ProbeSpec],
    /// Only for units, so the hashes of containers stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a UnitFields>,
}

impl<'a> HashedRuntime<'a> {
    fn of(spec: &'a ServiceSpec) -> Self {
        let ServiceSpec {
            image,
            command,
            entrypoint,
            environment,
            ports,
            labels,
            volumes,
            working_dir,
            user,
            restart,
            stop_signal,
            stop_grace_period_ms,
            healthcheck,
            probes,
            deploy: _,
            unit,
        } = spec;
        HashedRuntime {
            image,
            command,
            entrypoint,
            environment,
            ports,
            labels,
            volumes,
            working_dir,
            user,
            restart: (*restart != RestartSpec::default()).then_some(*restart),
            stop_signal,
            stop_grace_period_ms: (*stop_grace_period_ms != 0).then_some(*stop_grace_period_ms),
            healthcheck: healthcheck.as_ref(),
            probes,
            unit: unit.as_ref(),
        }
    }
}

impl From<&PortSpec> for PortMapping {
    fn from(port: &PortSpec) -> Self {
        PortMapping {
            host_ip: port.host_ip.clone(),
            host_port: port.published.into(),
            container_port: port.target.into(),
            protocol: port.protocol.as_str().to_owned(),
        }
    }
}

impl From<&UnitFields> for UnitSpec {
    fn from(unit: &UnitFields) -> Self {
        let UnitFields {
            unit_name,
            adopt,
            exec_start,
            user,
            restart,
            environment,
            working_dir,
            description,
            state,
            enabled,
        } = unit;
        UnitSpec {
            unit_name: unit_name.clone(),
            adopt: *adopt,
            exec_start: exec_start.clone(),
            user: user.clone(),
            restart: if *adopt {
                String::new()
            } else {
                restart.as_str().to_owned()
            },
            environment: environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            working_directory: working_dir.clone(),
            description: description.clone(),
            // Units Convoy writes always run, enabled.
            state: if *adopt { *state } else { UnitState::Running }
                .as_str()
                .to_owned(),
            enabled: *enabled || !*adopt,
        }
    }
}

impl From<&HealthcheckSpec> for HealthCheck {
    fn from(check: &HealthcheckSpec) -> Self {
        let HealthcheckSpec {
            test,
            interval_ms,
            timeout_ms,
            retries,
            start_period_ms,
            disable,
        } = check;
        HealthCheck {
            test: test.clone(),
            interval_ms: *interval_ms,
            timeout_ms: *timeout_ms,
            retries: *retries,
            start_period_ms: *start_period_ms,
            disable: *disable,
        }
    }
}

impl From<&ProbeSpec> for Probe {
    fn from(spec: &ProbeSpec) -> Self {
        let ProbeSpec {
            name,
            check,
            interval_ms,
            timeout_ms,
            failure_threshold,
            success_threshold,
            start_period_ms,
        } = spec;
        let check = match check {
            ProbeCheck::Http {
                port,
                path,
                expect_status,
            } => probe::Check::Http(HttpProbe {
                port: (*port).into(),
                path: path.clone(),
                expect_status: (*expect_status).into(),
            }),
            ProbeCheck::Tcp { port } => probe::Check::Tcp(TcpProbe {
                port: (*port).into(),
            }),
            ProbeCheck::Exec { command } => probe::Check::Exec(ExecProbe {
                command: command.clone(),
            }),
        };
        Probe {
            name: name.clone(),
            interval_ms: *interval_ms,
            timeout_ms: *timeout_ms,
            failure_threshold: *failure_threshold,
            success_threshold: *success_threshold,
            start_period_ms: *start_period_ms,
            check: Some(check),
        }
    }
}

impl From<RestartSpec> for RestartPolicy {
    fn from(restart: RestartSpec) -> Self {
        let condition = match restart.condition {
            RestartCondition::None => Condition::None,
            RestartCondition::OnFailure => Condition::OnFailure,
            RestartCondition::Any => Condition::Any,
        };
        RestartPolicy {
            condition: condition.into(),
            max_attempts: restart.max_attempts,
        }
    }
}

/// The fields that differ between two specs of a service, named as in the
/// spec file: `image`, `environment`, `deploy.replicas`, ...
pub fn changed_fields(old: &ServiceSpec, new: &ServiceSpec) -> Vec<String> {
    // Destructured so that a new field cannot be forgotten here.
    let ServiceSpec {
        image,
        command,
        entrypoint,
        environment,
        ports,
        labels,
        volumes,
        working_dir,
        user,
        restart,
        stop_signal,
        stop_grace_period_ms,
        healthcheck,
        probes,
        deploy:
            DeploySpec {
                mode,
                replicas,
                constraints,
                update,
            },
        unit,
    } = old;
    let mut fields = unit_changes(unit.as_ref(), new.unit.as_ref());
    fields.extend(
        [
            ("image", *image != new.image),
            ("command", *command != new.command),
            ("entrypoint", *entrypoint != new.entrypoint),
            ("environment", *environment != new.environment),
            ("ports", *ports != new.ports),
            ("labels", *labels != new.labels),
            ("volumes", *volumes != new.volumes),
            ("working_dir", *working_dir != new.working_dir),
            ("user", *user != new.user),
            ("restart", *restart != new.restart),
            ("stop_signal", *stop_signal != new.stop_signal),
            (
                "stop_grace_period",
                *stop_grace_period_ms != new.stop_grace_period_ms,
            ),
            ("healthcheck", *healthcheck != new.healthcheck),
            ("x-convoy.probes", *probes != new.probes),
            ("deploy.mode", *mode != new.deploy.mode),
            ("deploy.replicas", *replicas != new.deploy.replicas),
            (
                "deploy.placement.constraints",
                *constraints != new.deploy.constraints,
            ),
            ("update strategy", *update != new.deploy.update),
        ]
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name.to_owned()),
    );
    fields
}

/// The keys of a `units:` entry that differ; `unit` alone when one of the
/// two is not a unit (a service became one, or the other way round).
fn unit_changes(old: Option<&UnitFields>, new: Option<&UnitFields>) -> Vec<String> {
    let (old, new) = match (old, new) {
        (None, None) => return Vec::new(),
        (Some(old), Some(new)) => (old, new),
        _ => return vec!["unit".to_owned()],
    };
    let UnitFields {
        unit_name,
        adopt,
        exec_start,
        user,
        restart,
        environment,
        working_dir,
        description,
        state,
        enabled,
    } = old;
    [
        ("unit", *unit_name != new.unit_name || *adopt != new.adopt),
        ("exec_start", *exec_start != new.exec_start),
        ("user", *user != new.user),
        ("restart", *restart != new.restart),
        ("environment", *environment != new.environment),
        ("working_dir", *working_dir != new.working_dir),
        ("description", *description != new.description),
        ("state", *state != new.state),
        ("enabled", *enabled != new.enabled),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(name, _)| name.to_owned())
    .collect()
}

/// A placement constraint, Swarm's syntax: `node.labels.zone == eu`.
/// Compared case-insensitively, as Swarm does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Constraint {
    pub attribute: NodeAttribute,
    pub op: ConstraintOp,
    pub value: String,
}

/// What a constraint looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeAttribute {
    /// `node.name`: the Convoy node name (its certificate's CN).
    Name,
    /// `node.hostname`.
    Hostname,
    /// `node.labels.KEY`: the agent's `--label`s.
    Label(String),
    /// `node.platform.os`, e.g. `linux`.
    Os,
    /// `node.platform.arch`, e.g. `x86_64` (`amd64` too).
    Arch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstraintOp {
    Eq,
    Ne,
}

impl Constraint {
    /// Whether the node `node_name` with `facts` satisfies the constraint. A
    /// label the node lacks compares as empty, as in Swarm.
    pub fn matches(&self, node_name: &str, facts: &NodeFacts) -> bool {
        let equal = match &self.attribute {
            NodeAttribute::Name => node_name.eq_ignore_ascii_case(&self.value),
            NodeAttribute::Hostname => facts.hostname.eq_ignore_ascii_case(&self.value),
            NodeAttribute::Label(key) => facts
                .labels
                .get(key)
                .map_or("", String::as_str)
                .eq_ignore_ascii_case(&self.value),
            NodeAttribute::Os => facts.platform_os.eq_ignore_ascii_case(&self.value),
            NodeAttribute::Arch => canonical_arch(&facts.arch) == canonical_arch(&self.value),
        };
        match self.op {
            ConstraintOp::Eq => equal,
            ConstraintOp::Ne => !equal,
        }
    }
}

/// Docker says `x86_64` and `aarch64`, Go and image platforms `amd64` and
/// `arm64`; both mean the same machines.
fn canonical_arch(arch: &str) -> String {
    let arch = arch.to_ascii_lowercase();
    match arch.as_str() {
        "amd64" | "x86-64" => "x86_64".to_owned(),
        "arm64" => "aarch64".to_owned(),
        _ => arch,
    }
}

impl FromStr for Constraint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid constraint `{s}`: {why}");
        let operator = [("==", ConstraintOp::Eq), ("!=", ConstraintOp::Ne)]
            .into_iter()
            .filter_map(|(token, op)| s.find(token).map(|at| (at, token, op)))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, token, op)) = operator else {
            return Err(invalid(
                "expected `ATTRIBUTE == VALUE` or `ATTRIBUTE != VALUE`",
            ));
        };
        let attribute = s[..at].trim();
        let value = s[at + token.len()..].trim();
        if value.is_empty() {
            return Err(invalid("the value is empty"));
        }
        if value.contains("==") || value.contains("!=") {
            return Err(invalid("more than one operator"));
        }
        let attribute = match attribute {
            "node.name" => NodeAttribute::Name,
            "node.hostname" => NodeAttribute::Hostname,
            "node.platform.os" => NodeAttribute::Os,
            "node.platform.arch" => NodeAttribute::Arch,
            other => match other.strip_prefix("node.labels.") {
                Some(key) if !key.is_empty() => NodeAttribute::Label(key.to_owned()),
                _ if other == "node.id"
                    || other == "node.role"
                    || other.starts_with("engine.labels.") =>
                {
                    return Err(invalid(&format!(
                        "`{other}` is not supported by Convoy yet"
                    )));
                }
                _ => {
                    return Err(invalid(&format!(
                        "unknown attribute `{other}`, expected one of `node.name`, `node.hostname`, \
                         `node.labels.KEY`, `node.platform.os`, `node.platform.arch`"
                    )));
                }
            },
        };
        Ok(Constraint {
            attribute,
            op,
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.attribute {
            NodeAttribute::Name => f.write_str("node.name")?,
            NodeAttribute::Hostname => f.write_str("node.hostname")?,
            NodeAttribute::Label(key) => write!(f, "node.labels.{key}")?,
            NodeAttribute::Os => f.write_str("node.platform.os")?,
            NodeAttribute::Arch => f.write_str("node.platform.arch")?,
        }
        let op = match self.op {
            ConstraintOp::Eq => "==",
            ConstraintOp::Ne => "!=",
        };
        write!(f, " {op} {}", self.value)
    }
}

impl TryFrom<String> for Constraint {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Constraint> for String {
    fn from(c: Constraint) -> Self {
        c.to_string()
    }
}

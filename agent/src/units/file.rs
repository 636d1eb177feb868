//! Unit files Convoy writes: the spec checked, rendered per systemd.syntax
//! (quoting and escaping, so every argument reaches the program verbatim),
//! and written, read and deleted in the unit directory, never touching a
//! file that lacks Convoy's marker.

mod disk;
mod render;

use std::path::Path;

use convoy_proto::{UnitSpec, Workload};

pub use disk::{is_managed, key_of, write_atomically, FileError, OnDisk, UnitFiles};
pub use render::exec_line;
use render::{check_name, credential_lines, gpu_lines, Rendered};

/// Where systemd reads administrator units; Convoy writes its own here.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";
/// The first line of every unit file Convoy writes.
pub const HEADER: &str =
    "# Managed by Convoy (convoy-agent); do not edit — changes are overwritten";
/// The key that marks a unit file as Convoy's. A file without it is never
/// modified, stopped or deleted.
pub const MANAGED_KEY: &str = "X-Convoy-Managed";
pub const WORKLOAD_KEY: &str = "X-Convoy-Workload";
pub const SPEC_HASH_KEY: &str = "X-Convoy-Spec-Hash";
/// Written units are named `convoy-<name>.service`.
pub const PREFIX: &str = "convoy-";
pub const SUFFIX: &str = ".service";
/// The agent's own unit (`convoy-agent install`): never a workload's.
pub const AGENT_UNIT: &str = "convoy-agent.service";
const RESTARTS: [&str; 7] = [
    "no",
    "on-success",
    "on-failure",
    "on-abnormal",
    "on-watchdog",
    "on-abort",
    "always",
];
/// Written units restart on failure unless the spec says otherwise.
pub const DEFAULT_RESTART: &str = "on-failure";

/// What a unit workload asks for, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// Convoy writes `unit`'s file with `content`; it runs and is enabled.
    Write { unit: String, content: String },
    /// An existing unit, kept running or stopped, enabled or not.
    Adopt {
        unit: String,
        running: bool,
        enabled: bool,
    },
}

impl Want {
    pub fn unit(&self) -> &str {
        match self {
            Self::Write { unit, .. } | Self::Adopt { unit, .. } => unit,
        }
    }
}

/// Why a unit spec is refused (bad input is refused, never half-applied).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUnit {
    #[error("the workload has no unit spec")]
    NoSpec,
    #[error("unit name `{0}` is not valid: use letters, digits, `:`, `_`, `.`, `-` (and `@` or `\\` for adopted units), ending in `.service`")]
    Name(String),
    #[error("unit name `{0}`: units Convoy writes are named `convoy-<name>.service`")]
    NotConvoys(String),
    #[error("unit name `{0}` is the agent's own unit")]
    Reserved(String),
    #[error("exec_start is empty: give the program's absolute path and its arguments")]
    NoCommand,
    #[error("exec_start must begin with an absolute path, not `{0}`")]
    NotAbsolute(String),
    #[error("exec_start's program path `{0}` holds `$` or a control character")]
    BadProgram(String),
    #[error("environment variable name `{0}` is not valid: use letters, digits and `_`, not starting with a digit")]
    EnvName(String),
    #[error("environment variable `{0}` holds a newline or another control character")]
    EnvValue(String),
    #[error("user `{0}` is not a valid user name or id")]
    User(String),
    #[error(
        "working_directory `{0}` must be an absolute path (or `~`) without control characters"
    )]
    WorkingDirectory(String),
    #[error("restart `{0}` is not one of no, on-success, on-failure, on-abnormal, on-watchdog, on-abort, always")]
    Restart(String),
    #[error("state `{0}` is not `running` or `stopped`")]
    State(String),
    #[error("{field} holds a newline or another control character")]
    ControlCharacter { field: &'static str },
    #[error("adopted unit `{0}` cannot get credentials: systemd reads them from the unit file, which Convoy does not write for an adopted unit; let Convoy write the unit (drop `adopt`) or remove its secrets")]
    AdoptedCredentials(String),
    #[error("{0}")]
    Credential(String),
    #[error("credential `{0}` is given twice: give each its own name")]
    DuplicateCredential(String),
    #[error("the unit uses secrets, and this agent has no secrets directory")]
    NoSecretsDir,
    /// The plan's GPUs for the unit cannot be written (adopted, malformed).
    #[error("GPUs: {0}")]
    Gpus(String),
    #[error("the secrets directory {0} holds a space, `%` or a control character: systemd's LoadCredential= cannot name it; pass another --secrets-dir")]
    SecretsDirPath(String),
}

/// The checked want of a unit workload, on an agent without a secrets
/// directory (a unit with credentials is refused).
pub fn want_of(w: &Workload) -> Result<Want, InvalidUnit> {
    want_in(w, None)
}

/// The checked want of a unit workload; its credentials are loaded from
/// under `secrets_dir` (`crate::secrets` writes them there).
pub fn want_in(w: &Workload, secrets_dir: Option<&Path>) -> Result<Want, InvalidUnit> {
    let Some(convoy_proto::workload::Runtime::Unit(spec)) = &w.runtime else {
        return Err(InvalidUnit::NoSpec);
    };
    let UnitSpec {
        unit_name,
        adopt,
        exec_start,
        user,
        restart,
        environment,
        working_directory,
        description,
        state,
        enabled,
        credentials,
        gpu_uuids,
        gpu_indexes,
    } = spec;
    if *adopt {
        let unit = if unit_name.contains('.') {
            unit_name.clone()
        } else {
            format!("{unit_name}{SUFFIX}")
        };
        check_name(&unit, true)?;
        if unit == AGENT_UNIT {
            return Err(InvalidUnit::Reserved(unit));
        }
        if !credentials.is_empty() {
            return Err(InvalidUnit::AdoptedCredentials(unit));
        }
        if !gpu_uuids.is_empty() {
            return Err(InvalidUnit::Gpus(format!(
                "`{unit}` is adopted: Convoy never writes its file, so it cannot give it GPUs"
            )));
        }
        let running = match state.as_str() {
            "" | "running" => true,
            "stopped" => false,
            other => return Err(InvalidUnit::State(other.to_string())),
        };
        return Ok(Want::Adopt {
            unit,
            running,
            enabled: *enabled,
        });
    }
    let unit = if unit_name.is_empty() {
        format!("{PREFIX}{}{SUFFIX}", w.service)
    } else {
        unit_name.clone()
    };
    check_name(&unit, false)?;
    if !unit.starts_with(PREFIX) || unit.len() <= PREFIX.len() + SUFFIX.len() {
        return Err(InvalidUnit::NotConvoys(unit));
    }
    if unit == AGENT_UNIT {
        return Err(InvalidUnit::Reserved(unit));
    }
    let credentials = credential_lines(&unit, credentials, secrets_dir)?;
    let gpus = gpu_lines(gpu_uuids, gpu_indexes)?;
    let spec = Rendered {
        workload_id: &w.id,
        spec_hash: &w.spec_hash,
        description,
        exec_start,
        user,
        restart,
        environment: environment.iter().collect(),
        working_directory,
        credentials,
        gpus,
    };
    let content = spec.render()?;
    Ok(Want::Write { unit, content })
}

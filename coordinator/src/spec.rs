//! Spec files: the YAML a user applies. A Docker Compose file is already a
//! valid spec; its keys mean what Compose means, and Convoy's own settings
//! (probes, for now) sit in a service's `x-convoy:` block. Beside
//! `services:`, a top-level `units:` section describes systemd services.
//! `parse` checks every key and value, names file, line and key path in its
//! errors, and warns about the Compose keys Convoy does not support yet.

use std::collections::BTreeMap;

mod compose;
mod configs;
#[cfg(test)]
mod configs_tests;
mod constraint;
mod deploy;
mod diff;
mod extras;
mod hash;
mod host_access;
#[cfg(test)]
mod hostile_tests;
mod ingress;
#[cfg(test)]
mod ingress_tests;
mod limits;
mod locate;
#[cfg(test)]
mod network_tests;
mod resources;
#[cfg(test)]
mod resources_tests;
mod secrets;
#[cfg(test)]
mod secrets_tests;
mod service;
mod swarm;
#[cfg(test)]
mod swarm_tests;
#[cfg(test)]
mod tests;
mod unit;
mod values;
/// Registries of image references (`convoy registry`).
pub use values::{registry_of, registry_server, DOCKER_HUB};

/// The JSON Schema of the spec format (docs/convoy-spec.schema.json), as
/// pretty JSON: made from the parser's key sets.
pub fn json_schema() -> String {
    compose::schema::schema_text()
}
#[cfg(test)]
mod volume_tests;
mod volumes;
mod wire;

pub use configs::{
    ConfigContent, ConfigInputs, ConfigMount, ConfigOrigin, DEFAULT_CONFIG_MODE, MAX_CONFIG_BYTES,
};
pub use constraint::{Constraint, ConstraintOp, NodeAttribute};
pub use deploy::{
    Analysis, AnalysisQuery, DeployMode, DeploySpec, FailureAction, ProxyMeasure, Strategy,
    UpdateOrder, UpdatePolicy,
};
pub use diff::changed_fields;
pub use extras::{platform_matches, ContainerExtras};
pub use host_access::HostAccessSpec;
pub use ingress::{IngressRoute, IngressSecret, IngressSpec, IngressTls, DEFAULT_DRAIN_TIMEOUT_MS};
pub use limits::{Limits, DEFAULT_MAX_SPEC_BYTES};
pub use resources::{GpuDevices, GpuRequest, ResourcesSpec, Ulimit};
pub use secrets::{
    SecretDecl, SecretInputs, SecretMount, SecretSource, DEFAULT_GENERATED_LENGTH,
    DEFAULT_SECRET_MODE, GENERATED_CHARSETS, MAX_GENERATED_LENGTH, MAX_SECRET_BYTES,
    MAX_SECRET_NAME, SECRETS_DIR_IN_CONTAINER,
};
pub use service::{
    Dependency, DependencyCondition, EnvFileRef, HealthcheckSpec, NetworkAttachment, PortSpec,
    PreDeploy, ProbeCheck, ProbeSpec, Protocol, RestartCondition, RestartSpec, ServiceSpec,
    DEFAULT_PRE_DEPLOY_TIMEOUT_MS,
};
pub use swarm::{SwarmFields, SwarmRestart, SwarmUpdate, SWARM_LABEL};
pub use unit::{UnitFields, UnitRestart, UnitState};
pub use volumes::{MountKind, MountSpec, VolumeDecl};

use locate::PathDisplay;

/// A parsed spec file.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecFile {
    /// The `services:` and the `units:` (those have [`ServiceSpec::unit`]
    /// set): one namespace, so a name is in one section only.
    pub services: BTreeMap<String, ServiceSpec>,
    /// One line each: `FILE:LINE: KEY.PATH: what was ignored and why`.
    pub warnings: Vec<String>,
    /// The top-level `secrets:`, by key (values of `file:` and
    /// `environment:` ones filled by [`parse_with_inputs`]).
    pub secrets: BTreeMap<String, SecretDecl>,
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
        // A key may hold a line break (`"a\nb": 1`): shown escaped.
        for c in path.chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        out.push_str(": ");
    }
    // One line, whatever the YAML held.
    out.extend(message.chars().map(|c| if c == '\n' { ' ' } else { c }));
    out
}

/// Refuses the key `services.SERVICE.KEY` of the spec file `filename`
/// holding `content`, for a reason found after parsing: located as a parse
/// error would be.
pub fn refuse_key(
    filename: &str,
    content: &str,
    service: &str,
    key: &str,
    message: String,
) -> SpecError {
    let path = [
        locate::Seg::Key("services".to_owned()),
        locate::Seg::Key(service.to_owned()),
        locate::Seg::Key(key.to_owned()),
    ];
    let (line, column) = match locate::position_of(content, &path) {
        Some((line, column)) => (Some(line), column),
        None => (None, None),
    };
    SpecError::Invalid {
        file: filename.to_owned(),
        line,
        column,
        path: PathDisplay(&path).to_string(),
        message,
    }
}

/// Refuses the item `services.SERVICE.KEY[INDEX]` of the spec file
/// `filename` holding `content`, for a reason found after parsing (by the
/// state layer, which knows the nodes): located as a parse error would be.
pub fn refuse_item(
    filename: &str,
    content: &str,
    service: &str,
    key: &str,
    index: usize,
    message: String,
) -> SpecError {
    let path = [
        locate::Seg::Key("services".to_owned()),
        locate::Seg::Key(service.to_owned()),
        locate::Seg::Key(key.to_owned()),
        locate::Seg::Index(index),
    ];
    let (line, column) = match locate::position_of(content, &path) {
        Some((line, column)) => (Some(line), column),
        None => (None, None),
    };
    SpecError::Invalid {
        file: filename.to_owned(),
        line,
        column,
        path: PathDisplay(&path).to_string(),
        message,
    }
}

/// The most warnings a file gets: each one is placed by reading the text,
/// so a file with a warning on every line must not cost lines × warnings.
const MAX_WARNINGS: usize = 100;

/// Parses the spec file `filename` (used in messages only) holding `content`,
/// under the default [`Limits`].
pub fn parse(filename: &str, content: &str) -> Result<SpecFile, SpecError> {
    parse_with(filename, content.as_bytes(), &Limits::default())
}

/// The variables of each env file the CLI read, by the path as written in
/// the spec. The CLI parses the files (with the user's shell for `${VAR}`
/// in them, as Compose does); the coordinator never expands anything in
/// them, so no variable of its own can leak into a container.
pub type EnvFiles = BTreeMap<String, BTreeMap<String, String>>;

/// [`parse_with`], then each service's `env_file`s merged into its
/// `environment` from `env_files`: later files win over earlier ones,
/// `environment` over all.
pub fn parse_with_files(
    filename: &str,
    bytes: &[u8],
    limits: &Limits,
    env_files: &EnvFiles,
) -> Result<SpecFile, SpecError> {
    parse_with_inputs(
        filename,
        bytes,
        limits,
        env_files,
        &ConfigInputs::default(),
        &SecretInputs::default(),
    )
}

/// [`parse_with_files`], then the content of the `file:` and
/// `environment:` configs put in from `configs` (see `configs::fill`) and
/// the values of the `file:` and `environment:` secrets from `secrets`
/// (see `secrets::fill`).
pub fn parse_with_inputs(
    filename: &str,
    bytes: &[u8],
    limits: &Limits,
    env_files: &EnvFiles,
    configs: &ConfigInputs,
    secrets: &SecretInputs,
) -> Result<SpecFile, SpecError> {
    let mut file = parse_with(filename, bytes, limits)?;
    let content = String::from_utf8_lossy(bytes);
    configs::fill(&mut file, filename, &content, configs, limits)?;
    for (name, spec) in file.services.iter_mut() {
        let refs = std::mem::take(&mut spec.env_files);
        if refs.is_empty() {
            continue;
        }
        let key_path = [
            locate::Seg::Key("services".to_owned()),
            locate::Seg::Key(name.clone()),
            locate::Seg::Key("env_file".to_owned()),
        ];
        let fail = |message: String| SpecError::Invalid {
            file: filename.to_owned(),
            line: locate::line_of(&content, &key_path),
            column: None,
            path: PathDisplay(&key_path).to_string(),
            message,
        };
        let mut from_files: BTreeMap<String, String> = BTreeMap::new();
        for env_file in refs {
            let Some(vars) = env_files.get(&env_file.path) else {
                if env_file.required {
                    return Err(fail(format!(
                        "the env file `{}` was not sent with the spec: `convoy apply` reads the \
                         env files a spec names and sends them (`required: false` skips a \
                         missing one)",
                        env_file.path
                    )));
                }
                continue;
            };
            for (key, value) in vars {
                values::env_name(key)
                    .map_err(|e| fail(format!("the env file `{}`: {e}", env_file.path)))?;
                if from_files.len() >= limits.max_nodes {
                    return Err(fail(format!(
                        "the env files hold more than {} variables, the limit",
                        limits.max_nodes
                    )));
                }
                from_files.insert(key.clone(), value.clone());
            }
        }
        for (key, value) in from_files {
            spec.environment.entry(key).or_insert(value);
        }
    }
    let other_bytes = content.len().saturating_add(configs.total_bytes());
    secrets::fill(&mut file, filename, &content, secrets, other_bytes, limits)?;
    Ok(file)
}

/// Parses the spec file `filename` holding `bytes` under `limits`: the
/// size first, then UTF-8 and NUL bytes, then the YAML with its nesting,
/// node and alias limits. Time is linear in the size of the file.
pub fn parse_with(filename: &str, bytes: &[u8], limits: &Limits) -> Result<SpecFile, SpecError> {
    let content = limits::check_text(bytes, limits).map_err(|err| SpecError::Invalid {
        file: filename.to_owned(),
        line: err.line,
        column: err.column,
        path: String::new(),
        message: err.message,
    })?;
    let document = compose::read(content, limits).map_err(|err| {
        let (line, column) = match err.line {
            Some(line) => (Some(line), err.column),
            // What the whole document lacks is at its start.
            None if err.path.is_empty() => (Some(1), Some(1)),
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
    let more = document.notes.len().saturating_sub(MAX_WARNINGS);
    let mut warnings: Vec<(Option<usize>, String)> = document
        .notes
        .iter()
        .take(MAX_WARNINGS)
        .map(|note| {
            let line = locate::line_of(content, &note.path);
            let path = PathDisplay(&note.path).to_string();
            (line, located(filename, line, None, &path, &note.message))
        })
        .collect();
    warnings.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
    let mut warnings: Vec<String> = warnings.into_iter().map(|(_, w)| w).collect();
    if more > 0 {
        warnings.push(format!("{filename}: {more} more warnings like these"));
    }
    Ok(SpecFile {
        services: document.services.into_iter().collect(),
        warnings,
        secrets: document
            .secrets
            .into_iter()
            .map(|decl| (decl.key.clone(), decl))
            .collect(),
    })
}

//! Spec files: the YAML a user applies. A Docker Compose file is already a
//! valid spec; its keys mean what Compose means, and Convoy's own settings
//! (probes, for now) sit in a service's `x-convoy:` block. Beside
//! `services:`, a top-level `units:` section describes systemd services.
//! `parse` checks every key and value, names file, line and key path in its
//! errors, and warns about the Compose keys Convoy does not support yet.

use std::collections::BTreeMap;

mod compose;
mod constraint;
mod deploy;
mod diff;
mod hash;
#[cfg(test)]
mod hostile_tests;
mod limits;
mod locate;
#[cfg(test)]
mod network_tests;
mod resources;
#[cfg(test)]
mod resources_tests;
mod service;
#[cfg(test)]
mod tests;
mod unit;
mod values;
mod wire;

pub use constraint::{Constraint, ConstraintOp, NodeAttribute};
pub use deploy::{DeployMode, DeploySpec, FailureAction, Strategy, UpdateOrder, UpdatePolicy};
pub use diff::changed_fields;
pub use limits::{Limits, DEFAULT_MAX_SPEC_BYTES};
pub use resources::{ResourcesSpec, Ulimit};
pub use service::{
    HealthcheckSpec, NetworkAttachment, PortSpec, ProbeCheck, ProbeSpec, Protocol,
    RestartCondition, RestartSpec, ServiceSpec,
};
pub use unit::{UnitFields, UnitRestart, UnitState};

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
    })
}

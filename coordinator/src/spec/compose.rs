//! Reading the Compose document. Every key and value is checked inside a
//! serde visitor, while serde_yaml still knows where it is, so an error
//! carries the line and column of the key or value at fault;
//! serde_path_to_error adds its key path.
//!
//! One module per part of the file: the document and its `services:`, a
//! service, `units:`, and each block a service has (`ports`, `volumes`,
//! `environment`, `healthcheck`, `deploy`, the update strategy, `x-convoy`);
//! `keys` lists the keys each mapping reads or ignores, `seeds` the generic
//! readers for scalars, lists and `null`.

use serde_yaml::Value;

use super::locate::{self, PathDisplay, Seg};
use super::ServiceSpec;

mod convoy;
mod deploy;
mod document;
mod environment;
mod healthcheck;
mod keys;
mod ports;
mod probes;
mod seeds;
mod service;
mod units;
mod update;
mod volumes;

/// A warning, with the path of the key it is about: relative to the mapping
/// that found it until the parents put their keys in front. Also an error
/// that only shows once a whole service was read (two keys that disagree),
/// which has no position of its own.
pub(super) struct Note {
    pub path: Vec<Seg>,
    pub message: String,
}

impl Note {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Note {
            path: vec![Seg::Key(key.to_owned())],
            message: message.into(),
        }
    }
}

/// Puts `parent` in front of the paths of `notes` and adds them to `into`.
fn nest(into: &mut Vec<Note>, parent: Seg, notes: Vec<Note>) {
    into.extend(notes.into_iter().map(|mut note| {
        note.path.insert(0, parent.clone());
        note
    }));
}

const UNSUPPORTED: &str = "not supported by Convoy yet, ignored";

/// A whole spec file, as read.
pub(super) struct Document {
    /// `services:`, then `units:`.
    pub services: Vec<(String, ServiceSpec)>,
    pub notes: Vec<Note>,
    /// Errors between keys, found after the service that has them was read;
    /// `read` refuses the document with the first.
    problems: Vec<Note>,
}

/// Why and where reading stopped.
pub(super) struct ReadError {
    pub path: Vec<Seg>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// Reads `content`. Merge keys (`<<: *anchor`) are applied first, which goes
/// through `serde_yaml::Value` and so loses the positions: errors in such a
/// file carry only their key path, which the caller turns into a line.
pub(super) fn read(content: &str) -> Result<Document, ReadError> {
    let document = read_document(content)?;
    if let Some(problem) = document.problems.first() {
        // serde_yaml is done with the text by now: find the key by its path.
        let (line, column) = match locate::position_of(content, &problem.path) {
            Some((line, column)) => (Some(line), column),
            None => (None, None),
        };
        return Err(ReadError {
            path: problem.path.clone(),
            line,
            column,
            message: problem.message.clone(),
        });
    }
    Ok(document)
}

fn read_document(content: &str) -> Result<Document, ReadError> {
    let yaml_error = match serde_yaml::from_str::<Value>(content) {
        Ok(mut value) if has_merge_keys(&value) => {
            value.apply_merge().map_err(|err| ReadError {
                path: Vec::new(),
                line: None,
                column: None,
                message: err.to_string(),
            })?;
            // The visitors read scalars as text, as serde_yaml hands them over
            // when it reads the text itself.
            stringify_scalars(&mut value);
            return serde_path_to_error::deserialize(value).map_err(|err| read_error(err, None));
        }
        Ok(_) => None,
        Err(err) => Some(err.to_string()),
    };
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(content))
        .map_err(|err| read_error(err, yaml_error.as_deref()))
}

/// `yaml_error`: why the text is not YAML at all, if it is not. An error
/// that says the same is a syntax error, and is called one.
fn read_error(
    err: serde_path_to_error::Error<serde_yaml::Error>,
    yaml_error: Option<&str>,
) -> ReadError {
    // An unknown segment (a key the parser never got to read) says nothing.
    let path: Vec<Seg> = err
        .path()
        .iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect();
    let inner = err.into_inner();
    let location = inner.location();
    let mut message = inner.to_string();
    let syntax = yaml_error == Some(message.as_str());
    // serde_yaml writes "PATH: MESSAGE at line L column C"; the caller writes
    // the path and position its own way.
    if let Some(loc) = &location {
        let at = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(pos) = message.find(&at) {
            message.replace_range(pos..pos + at.len(), "");
        }
    }
    let prefix = (1..=path.len())
        .rev()
        .map(|n| format!("{}: ", PathDisplay(&path[..n])))
        .find(|prefix| message.starts_with(prefix.as_str()));
    if let Some(prefix) = prefix {
        message.replace_range(..prefix.len(), "");
    }
    if syntax {
        message.insert_str(0, "invalid YAML: ");
    }
    ReadError {
        path,
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        message,
    }
}

fn has_merge_keys(value: &Value) -> bool {
    match value {
        Value::Mapping(map) => map
            .iter()
            .any(|(k, v)| k.as_str() == Some("<<") || has_merge_keys(v)),
        Value::Sequence(seq) => seq.iter().any(has_merge_keys),
        Value::Tagged(tagged) => has_merge_keys(&tagged.value),
        _ => false,
    }
}

fn stringify_scalars(value: &mut Value) {
    match value {
        Value::Bool(b) => *value = Value::String(b.to_string()),
        Value::Number(n) => *value = Value::String(n.to_string()),
        Value::Sequence(seq) => seq.iter_mut().for_each(stringify_scalars),
        Value::Mapping(map) => {
            let entries = std::mem::take(map);
            for (mut k, mut v) in entries {
                stringify_scalars(&mut k);
                stringify_scalars(&mut v);
                map.insert(k, v);
            }
        }
        Value::Tagged(tagged) => stringify_scalars(&mut tagged.value),
        Value::Null | Value::String(_) => {}
    }
}

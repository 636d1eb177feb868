//! Reading the Compose document. Every key and value is checked inside a
//! serde visitor, while the parser (serde-saphyr) still knows where it is, so an error
//! carries the line and column of the key or value at fault;
//! serde_path_to_error adds its key path.
//!
//! One module per part of the file: the document and its `services:`, a
//! service, `units:`, and each block a service has (`ports`, `volumes`,
//! `environment`, `healthcheck`, `deploy`, the update strategy, `x-convoy`);
//! `keys` lists the keys each mapping reads or ignores, `seeds` the generic
//! readers for scalars, lists and `null`.

use super::limits::Limits;
use super::locate::{self, Seg};
use super::ServiceSpec;

mod analysis;
mod configs;
pub(super) use configs::too_large;
mod convoy;
mod depends_on;
mod deploy;
#[cfg(test)]
mod doc_tests;
mod document;
mod env_file;
mod environment;
mod extras;
mod gpus;
mod healthcheck;
mod host_access;
mod ingress;
mod keys;
mod mounts;
mod networks;
mod ports;
mod probes;
mod resources;
pub(crate) mod schema;
mod secrets;
mod seeds;
mod service;
mod swarm;
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
    /// The top-level `secrets:`, in the order written.
    pub secrets: Vec<crate::spec::SecretDecl>,
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

/// Reads `content` under `limits`. Merge keys (`<<: *base`) and aliases
/// are expanded by the parser as it streams, within the limits.
pub(super) fn read(content: &str, limits: &Limits) -> Result<Document, ReadError> {
    let document = read_document(content, limits)?;
    if let Some(problem) = document.problems.first() {
        // The parser is done with the text by now: find the key by its path.
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

fn read_document(content: &str, limits: &Limits) -> Result<Document, ReadError> {
    let mut path = Vec::new();
    serde_saphyr::with_deserializer_from_str_with_options(content, limits.options(), |d| {
        serde_path_to_error::deserialize(d).map_err(|err| {
            // An unknown segment (a key the parser never got to read) says nothing.
            path = err
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Enum { variant } => {
                        Some(Seg::Key(variant.clone()))
                    }
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
            err.into_inner()
        })
    })
    .map_err(|err| read_error(err, path, content, limits))
}

fn read_error(
    err: serde_saphyr::Error,
    mut path: Vec<Seg>,
    content: &str,
    limits: &Limits,
) -> ReadError {
    use serde_saphyr::Error;
    let mut position = err
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line() as usize, l.column() as usize));
    let message = match &err {
        // The parser knows where the mapping is, not which key repeats.
        Error::DuplicateMappingKey { key: Some(key), .. } => {
            path.push(Seg::Key(key.clone()));
            message_of(&err, limits)
        }
        // An empty file, or one of comments only.
        Error::Eof { .. }
            if content
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) =>
        {
            position = Some((1, 1));
            document::NO_SERVICES.to_owned()
        }
        // A scalar was wanted and a list or mapping is there.
        Error::Unexpected {
            expected: "string scalar",
            ..
        } => {
            let found = position.map_or("sequence or map", |(line, column)| {
                locate::collection_at(content, line, column)
            });
            format!("invalid type: {found}, expected a single value (text or a number)")
        }
        // A visitor refused a number or `true`: the parser places that
        // error on the key; the value is the place to point at.
        Error::SerdeInvalidType { .. } | Error::SerdeInvalidValue { .. } => {
            if let Some((line, column)) = position {
                position = Some((line, locate::value_column(content, line, column)));
            }
            message_of(&err, limits)
        }
        _ => message_of(&err, limits),
    };
    ReadError {
        path,
        line: position.map(|(line, _)| line),
        column: position.map(|(_, column)| column),
        message,
    }
}

/// The error's text, one line without its position (the caller writes
/// that), and for a limit the limit and what it protects.
fn message_of(err: &serde_saphyr::Error, limits: &Limits) -> String {
    use serde_saphyr::budget::BudgetBreach;
    use serde_saphyr::Error;
    match err {
        Error::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => format!(
                "the spec nests deeper than {} levels of mappings and lists, the limit",
                limits.max_depth
            ),
            BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => format!(
                "the spec has more than {} keys, values and list items, the limit",
                limits.max_nodes
            ),
            BudgetBreach::Aliases { .. } | BudgetBreach::Anchors { .. } => format!(
                "the spec uses more than {} anchors or aliases, the limit",
                limits.max_aliases
            ),
            BudgetBreach::RecordedAnchorEvents { .. }
            | BudgetBreach::RecordedAnchorBytes { .. }
            | BudgetBreach::AliasAnchorRatio { .. } => format!(
                "aliases expand to more than {} nodes, the limit (an alias bomb?)",
                limits.max_alias_expansion
            ),
            BudgetBreach::MergeKeys { .. } => format!(
                "the spec has more than {} merge keys (`<<`), the limit",
                limits.max_aliases
            ),
            BudgetBreach::Documents { .. } => {
                "a spec is one YAML document; this file holds several (`---`)".to_owned()
            }
            other => format!("the spec is over a parser limit: {other:?}"),
        },
        Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. }
        | Error::AliasReplayCounterOverflow { .. } => format!(
            "aliases expand to more than {} nodes, the limit (an alias bomb?)",
            limits.max_alias_expansion
        ),
        Error::SerdeUnknownField {
            field, expected, ..
        } => format!(
            "unknown field `{field}`, {}",
            one_of(expected, "there are no fields")
        ),
        Error::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "unknown variant `{variant}`, {}",
            one_of(expected, "there are no variants")
        ),
        Error::DuplicateMappingKey { key: Some(key), .. } => format!("duplicate key `{key}`"),
        Error::DuplicateMappingKey { key: None, .. } => "duplicate key".to_owned(),
        Error::MultipleDocuments { .. } => {
            "a spec is one YAML document; this file holds several (`---`)".to_owned()
        }
        // An error met while an alias was expanded: say what it was.
        Error::AliasError { error, .. } => message_of(error, limits),
        // The parser's own flow-nesting guard.
        Error::ExternalMessage { msg, .. } if msg.contains("recursion limit exceeded") => format!(
            "the spec nests deeper than {} levels of mappings and lists, the limit",
            limits.max_depth
        ),
        Error::ExternalMessage { .. } | Error::Eof { .. } => {
            format!("invalid YAML: {}", rendered(err))
        }
        other => rendered(other),
    }
}

/// As serde words it: "expected `a`", "expected `a` or `b`",
/// "expected one of `a`, `b`, `c`".
fn one_of(names: &[&str], none: &str) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => none.to_owned(),
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        all => format!("expected one of {}", all.join(", ")),
    }
}

/// The parser's own words for `err`, on one line, without the position.
fn rendered(err: &serde_saphyr::Error) -> String {
    {
        {
            let text = err.render_with_options(plain());
            // "MESSAGE at line L column C": the caller writes the position.
            let text = match text.rfind(" at line ") {
                Some(pos) if text[pos..].contains(" column ") => text[..pos].to_owned(),
                _ => text,
            };
            text.lines().next().unwrap_or_default().to_owned()
        }
    }
}

fn plain() -> serde_saphyr::RenderOptions<'static> {
    serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    }
}

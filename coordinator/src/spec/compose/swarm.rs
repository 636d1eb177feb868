//! `x-convoy.swarm`, once the whole file is read: which services run on
//! Swarm (their own `swarm`, else the top-level default), and for those
//! what Swarm takes as written, what it cannot have (errors) and what it
//! ignores (warnings). A plain container drops the Swarm-only settings.

use super::convoy::SwarmChoice;
use super::{nest, Note};
use crate::spec::locate::Seg;
use crate::spec::{ServiceSpec, SwarmFields};

/// What a service's reading found for `x-convoy.swarm`, to settle once the
/// top-level default is known (it may come after `services:`).
#[derive(Default)]
pub(super) struct SwarmRead {
    /// The service's own `x-convoy.swarm`.
    pub(super) choice: Option<SwarmChoice>,
    /// What a Swarm service keeps; `cluster` is set on resolution.
    pub(super) fields: SwarmFields,
    /// Errors when the service runs on Swarm: what it cannot have.
    pub(super) refused: Vec<Note>,
    /// Warnings when it runs on Swarm: what Swarm ignores.
    pub(super) swarm_notes: Vec<Note>,
    /// Errors when it does not (constraints only Swarm reads).
    pub(super) plain_problems: Vec<Note>,
    /// Warnings when it does not (settings only Swarm uses).
    pub(super) plain_notes: Vec<Note>,
}

/// The words for what a Swarm service cannot have yet.
pub(super) const NOT_YET: &str = "not yet supported for Swarm services";

/// A key path relative to the service: `["deploy", "update_config"]`.
pub(super) fn path(keys: &[&str]) -> Vec<Seg> {
    keys.iter().map(|k| Seg::Key((*k).to_owned())).collect()
}

/// Settles each service of `services` (with its read, in the same order)
/// against the file's top-level `x-convoy.swarm`: sets `swarm` on those
/// that run on Swarm. Notes and problems come back relative to
/// `services:`.
pub(super) fn resolve(
    services: &mut [(String, ServiceSpec)],
    reads: Vec<SwarmRead>,
    top: Option<&SwarmChoice>,
    notes: &mut Vec<Note>,
    problems: &mut Vec<Note>,
) {
    for ((name, spec), read) in services.iter_mut().zip(reads) {
        let cluster = match (read.choice, top) {
            (Some(SwarmChoice::Cluster(cluster)), _) => Some(cluster),
            (Some(SwarmChoice::Off), _) => None,
            (None, Some(SwarmChoice::Cluster(cluster))) => Some(cluster.clone()),
            (None, _) => None,
        };
        let name = Seg::Key(name.clone());
        match cluster {
            Some(cluster) => {
                nest(problems, name.clone(), read.refused);
                nest(notes, name, read.swarm_notes);
                // Swarm evaluates the constraints as written.
                spec.deploy.constraints.clear();
                spec.swarm = Some(SwarmFields {
                    cluster,
                    ..read.fields
                });
            }
            None => {
                nest(problems, name.clone(), read.plain_problems);
                nest(notes, name, read.plain_notes);
                for port in &mut spec.ports {
                    port.mode.clear();
                }
                spec.swarm = None;
            }
        }
    }
}

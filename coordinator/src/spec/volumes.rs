//! A service's mounts as Convoy stores them: named and anonymous volumes,
//! host paths (bind mounts) and tmpfs, from Compose's short and long
//! syntax, and the top-level `volumes:` entries the service uses.
//!
//! Docker names: a declared volume is `convoy-ENV-KEY` on each node that
//! runs a service using it (environment-scoped, so two environments never
//! share data), `name:` verbatim when given, or, with `external: true`, the
//! existing volume of that name (never created or removed by Convoy). An
//! anonymous volume is one per instance and target,
//! `convoy-ENV-SERVICE-INDEX-HASH`, so a new revision of the instance finds
//! its data. The agent computes the names; it knows the environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One entry of a service's `volumes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountSpec {
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// `volume`: the key under the top-level `volumes:` (empty: an
    /// anonymous volume); `bind`: the host path (normalized); `tmpfs`:
    /// empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The absolute path inside the container.
    pub target: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// `bind.propagation` (`rprivate`, `shared`, ...); empty: Docker's.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bind_propagation: String,
    /// `bind.create_host_path`: a missing host path is created (always so
    /// in the short syntax); otherwise a missing one fails the container.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bind_create_host_path: bool,
    /// `volume.nocopy`: the image's files at the target are not copied into
    /// a new, empty volume.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub volume_nocopy: bool,
    /// `tmpfs.size` in bytes; 0: unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub tmpfs_size_bytes: u64,
    /// `tmpfs.mode` (e.g. 0o1777); 0: Docker's.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub tmpfs_mode: u32,
}

impl MountSpec {
    /// A host path, which only an admin may allow (`--allow-bind`).
    pub fn bind_source(&self) -> Option<&str> {
        (self.kind == MountKind::Bind).then_some(self.source.as_str())
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// The long syntax's `type`, the ones Convoy mounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    #[default]
    Volume,
    Bind,
    Tmpfs,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Volume => "volume",
            MountKind::Bind => "bind",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// An entry of the top-level `volumes:` that a service mounts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeDecl {
    /// Its key under `volumes:` (what the service's mounts name).
    pub key: String,
    /// `name:`, the Docker name as written; empty: `convoy-ENV-KEY`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `external: true`: an existing volume (`name`, else the key), never
    /// created or removed by Convoy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// Empty: `local`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

//! Secret values on this node. The coordinator sends, in each plan, the
//! values of exactly the secret versions this node's containers and units
//! use; the agent keeps them in memory (`SecretValues`, zeroed on drop,
//! `Debug` redacted) and writes them to one place only, the secrets
//! directory (`--secrets-dir`, default `/run/convoy-agent/secrets`), which
//! must be on tmpfs (or ramfs): checked at start in `/proc/self/mountinfo`.
//! If it is not, every workload that needs a secret fails saying so, and
//! nothing is written there. `plan.pb` never holds a value.
//!
//! Layout (directories 0700, files written to a temporary name and renamed):
//! - `DIR/values/SHA256` (0400): the node's cache of the values of its
//!   plan, named by the hex SHA-256 of `ENV/NAME@vVERSION`; rewritten with
//!   every new plan, values the plan no longer holds deleted.
//! - `DIR/containers/CONTAINER/N`: the file of the container's N-th secret
//!   mount (owner: the mount's uid/gid, else the numeric part of the
//!   container's `user`, else root; mode the mount's, else 0400),
//!   bind-mounted read-only at its target (a relative target goes under
//!   `/run/secrets/`). Removed once the container is gone.
//! - `DIR/units/UNIT/ID` (0400, root): a unit's credential, which its unit
//!   file loads with `LoadCredential=ID:PATH` (systemd copies it into
//!   `$CREDENTIALS_DIRECTORY/ID` when the unit starts).
//!
//! While the coordinator is away the agent keeps enforcing its last plan,
//! and a consumer that dies is started again by the agent: its files are
//! still on the tmpfs. When the agent itself restarts, it reloads the
//! values its stored plan references from `DIR/values` (the agent's unit
//! keeps its runtime directory across restarts). A host reboot clears the
//! tmpfs: then the consumers wait for the coordinator to send the plan
//! again, failing with an error that says so (as Swarm's workers do).

mod files;
mod names;
mod node;
mod values;

use std::collections::BTreeSet;

use convoy_proto::{workload, SecretMount, Workload};

pub use files::fs_type_of;
pub use names::{check_credential_id, credential_id, owner_of_user};
pub use node::{Delivery, NodeSecrets, SecretFile};
pub use values::{Origin, SecretKey, SecretValues};
/// Where the agent keeps secret values unless `--secrets-dir` says otherwise.
pub const DEFAULT_SECRETS_DIR: &str = "/run/convoy-agent/secrets";
/// Where a relative secret target goes in a container (Compose's default).
pub const SECRETS_DIR_IN_CONTAINER: &str = "/run/secrets";
/// A secret file's mode when its mount leaves it at 0.
pub const DEFAULT_MODE: u32 = 0o400;
const VALUES: &str = "values";
const CONTAINERS: &str = "containers";
const UNITS: &str = "units";
/// File systems that keep their files in memory only.
const MEMORY_FS: [&str; 2] = ["tmpfs", "ramfs"];

/// The secret mounts of a workload's container or unit.
pub fn mounts_of(w: &Workload) -> &[SecretMount] {
    match &w.runtime {
        Some(workload::Runtime::Container(spec)) => &spec.secrets,
        Some(workload::Runtime::Unit(spec)) => &spec.credentials,
        // Swarm services get their secrets as Swarm secrets (the driver),
        // never as files of this node.
        Some(workload::Runtime::Swarm(_)) | None => &[],
    }
}

/// The keys of every secret the workloads reference: their mounts, and
/// the certificates and keys of their ingress (the proxy's TLS listener).
pub fn refs_of<'a>(workloads: impl IntoIterator<Item = &'a Workload>) -> BTreeSet<SecretKey> {
    workloads
        .into_iter()
        .flat_map(|w| {
            let mounts = mounts_of(w).iter().map(|m| SecretKey::of(&w.env, m));
            let tls = w
                .ingress
                .iter()
                .flat_map(|i| &i.tls)
                .flat_map(|t| [&t.certificate, &t.key])
                .flatten()
                .map(|r| SecretKey::of_ref(&w.env, r));
            mounts.chain(tls)
        })
        .collect()
}

#[cfg(test)]
mod tests;

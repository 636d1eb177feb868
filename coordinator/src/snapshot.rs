//! `convoyd snapshot save|restore` (issue 18): the whole durable state of a
//! coordinator in one versioned, checksummed file, for backups and for
//! moving the coordinator to another machine. docs/SNAPSHOTS.md is the
//! user's guide; this module the format and the checks.
//!
//! The file: one header line of JSON ([`Header`]), then a binary body of
//! length-prefixed records, every store key first (`K`), then the data
//! directory's files a restore needs (`F`). Length-prefixed rather than
//! JSON lines with base64 values: values are written as they are (no third
//! more bytes, no encoder to add), and a reader knows each record's end
//! without scanning for one; the header stays readable with `head -1`.
//! The secrets key is never in it: the file holds secrets sealed, and the
//! key travels separately (`restore --secrets-key`).

use std::{
    collections::BTreeMap,
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::{
    audit::AuditRecord,
    pki::{self, PkiPaths},
    secrets::{self, Sealer},
    state::{now_unix_ms, Coordinator, Liveness, StoreDump, PLAN_GENERATION_KEY},
    store::{Op, SledStore, Store, StoreError, StoreHealth},
};

/// The header's `magic`.
pub const MAGIC: &str = "convoy-snapshot";
/// The body layout this convoyd writes and reads.
pub const FORMAT: u32 = 1;
/// The store lives at `DATA_DIR/store` (sled).
pub const STORE_DIR: &str = "store";
/// The admin token's file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Store prefixes whose values are sealed under the secrets key
/// (`state/secrets.rs`, `state/registries.rs`).
pub const SEALED_PREFIXES: [&str; 2] = ["secrets/", "registries/"];
/// How far a restore moves the plan generation past the snapshot's, on top
/// of one per millisecond since the save: agents then never see a plan
/// generation lower than one they were handed after the save.
pub const PLAN_GENERATION_MARGIN: u64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a whole snapshot this convoyd reads.
    #[error("{} {problem}", file.display())]
    Invalid { file: PathBuf, problem: String },
    /// The command would overwrite or mix state; nothing was written.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    #[error("{0}")]
    Api(String),
}

mod format;
mod mem_store;
mod restore;
mod save;

pub use self::format::{read_data_files, write_file, Header, Snapshot};
pub use self::mem_store::MemStore;
pub use self::restore::{check_loads, restore, restore_into, restore_to, Restored};
pub use self::save::{save, save_from_store, Saved};

use self::format::*;

/// `convoyd snapshot ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Save the store and the data directory's CA and admin token to FILE
    /// (mode 0600). Offline when no convoyd runs on DATA_DIR, else through
    /// its API (as its admin). secrets.key is NOT saved: keep it apart.
    Save {
        file: PathBuf,
        #[arg(long, env = "CONVOY_DATA_DIR")]
        data_dir: PathBuf,
        /// The running coordinator's API (its --api-listen).
        #[arg(long, env = "CONVOY_API", default_value = "https://127.0.0.1:7400")]
        api: String,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Restore FILE into a new DATA_DIR (no store there yet), with convoyd
    /// stopped; then start `convoyd serve --data-dir DATA_DIR`.
    Restore {
        file: PathBuf,
        #[arg(long, env = "CONVOY_DATA_DIR")]
        data_dir: PathBuf,
        /// The old coordinator's secrets.key (needed when the snapshot holds
        /// secrets or registry logins, unless DATA_DIR/secrets.key is it).
        #[arg(long, value_name = "FILE")]
        secrets_key: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where the store is, when it is not the data directory's sled store.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// `etcd://h1:2379,h2:2379[/prefix]` (`etcds://` for TLS): save from,
    /// or restore into, that etcd (read at one revision; restored into an
    /// empty prefix in one transaction). Default: DATA_DIR/store (sled).
    #[arg(long = "store", env = "CONVOY_STORE", default_value = "sled")]
    pub url: String,
    #[arg(long, env = "CONVOY_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    #[arg(long, env = "CONVOY_ETCD_CERT", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    #[arg(long, env = "CONVOY_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
}

impl StoreArgs {
    /// The etcd store named, or `None` for sled.
    async fn open_etcd(&self, data_dir: &Path) -> Result<Option<Arc<dyn Store>>, SnapshotError> {
        let url: crate::store::StoreUrl = self
            .url
            .parse()
            .map_err(|e: crate::store::InvalidStoreUrl| SnapshotError::Refused(e.to_string()))?;
        if matches!(url, crate::store::StoreUrl::Sled) {
            return Ok(None);
        }
        let tls = self.etcd_ca.clone().map(|ca| crate::store::EtcdTls {
            ca,
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
        });
        Ok(Some(
            crate::store::open_store(&url, data_dir, tls).await?.store,
        ))
    }
}

/// Runs a `convoyd snapshot` command and prints what it did.
pub async fn run(command: SnapshotCommand) -> Result<(), SnapshotError> {
    match command {
        SnapshotCommand::Save {
            file,
            data_dir,
            api,
            force,
            store,
        } => {
            let saved = match store.open_etcd(&data_dir).await? {
                // etcd reads every key at one revision: no coordinator needed.
                Some(etcd) => save_from_store(&*etcd, &data_dir, &file, force).await?,
                None => save(&data_dir, &file, &api, force).await?,
            };
            println!("{saved}");
        }
        SnapshotCommand::Restore {
            file,
            data_dir,
            secrets_key,
            store,
        } => {
            let target = store.open_etcd(&data_dir).await?;
            let restored = restore_to(&file, &data_dir, secrets_key.as_deref(), target).await?;
            println!("{restored}");
            println!(
                "start it with `convoyd serve --data-dir {}` (same --api-listen and --agent-listen addresses, or agents cannot find it)",
                data_dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

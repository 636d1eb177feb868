//! The coordinator's durable state goes through one small key-value trait so
//! the embedded sled backend (the default) and etcd (for several
//! coordinators) are interchangeable. Typed records sit on top.

mod sled_store;

pub use sled_store::SledStore;

use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend error on `{key}`: {message}")]
    Backend { key: String, message: String },
    #[error("store record `{key}` is corrupt: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot open the store at {path}: {message}")]
    Open { path: String, message: String },
    /// One failure shared by several callers (a group commit's waiters).
    #[error(transparent)]
    Shared(std::sync::Arc<StoreError>),
    /// A fenced write was refused: the leadership it was made under is gone
    /// (another coordinator leads, or this one lost the store). Nothing of
    /// the batch was written.
    #[error("not written: this coordinator no longer leads ({0})")]
    Fenced(String),
}

/// How the store is doing, for `convoy status`, the dashboard and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreHealth {
    /// "sled" or "etcd".
    pub backend: String,
    /// Where: the sled directory, or the etcd endpoints.
    pub location: String,
    /// Answering reads and writes now.
    pub healthy: bool,
    /// Per member (etcd): `NAME at URL: healthy|unreachable (...)`; empty
    /// for sled.
    pub members: Vec<String>,
    /// Why it is not healthy; empty when it is.
    pub error: String,
    /// How long the probe took.
    pub probe_seconds: f64,
}

impl Eq for StoreHealth {}

/// One write of an atomic batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

impl Op {
    /// A put of `value` encoded as JSON.
    pub fn put_json<T: Serialize>(key: impl Into<String>, value: &T) -> Op {
        // Serializing our own plain records cannot fail (no maps with
        // non-string keys, no foreign Serialize impls).
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        Op::Put(key.into(), bytes)
    }
}

/// The storage seam. Keys are `/`-separated strings; values are bytes.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every key starting with `prefix`, in key order.
    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Applies all ops or none, durably, before returning.
    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;
    /// Every key and value, read at one point in time (snapshots).
    async fn dump(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.scan_prefix("").await
    }
    /// Whether the store answers, and where it is.
    async fn health(&self) -> StoreHealth;
}

/// Reads a JSON record.
pub async fn get_json<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    key: key.to_string(),
                    source,
                })
        }
    }
}

/// Reads every JSON record under a prefix.
pub async fn scan_json<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<(String, T)>, StoreError> {
    store
        .scan_prefix(prefix)
        .await?
        .into_iter()
        .map(|(key, bytes)| match serde_json::from_slice(&bytes) {
            Ok(v) => Ok((key, v)),
            Err(source) => Err(StoreError::Corrupt { key, source }),
        })
        .collect()
}

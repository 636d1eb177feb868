//! The coordinator's durable state goes through one small key-value trait so
//! the embedded sled backend (the default) and etcd (for several
//! coordinators) are interchangeable. Typed records sit on top.

mod etcd;
mod sled_store;
pub mod watch;

pub use etcd::{EtcdConfig, EtcdStore, EtcdTls, Fence, DEFAULT_PREFIX, DEFAULT_SCAN_PAGE};
pub use sled_store::SledStore;
pub use watch::{Change, Changes, Watched};

use std::path::Path;
use std::sync::Arc;

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
    /// Everything under `prefix` at one revision, and every write under it
    /// after that revision (see [`Watched`]). Only stores that several
    /// coordinators share need it; the others say so.
    async fn watch(&self, prefix: &str) -> Result<Watched, StoreError> {
        Err(StoreError::Backend {
            key: prefix.to_string(),
            message: "this store cannot be watched (several coordinators need etcd)".into(),
        })
    }
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

/// Where the store is, as `--store` names it: `sled` (the data directory's
/// `store/`), or `etcd://h1:2379,h2:2379[/prefix]` (`etcds://` for TLS).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreUrl {
    #[default]
    Sled,
    Etcd {
        /// `http://host:port` (`https://` for `etcds://`).
        endpoints: Vec<String>,
        /// Ends in `/`; [`DEFAULT_PREFIX`] when the URL has no path.
        prefix: String,
        tls: bool,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("bad store URL `{url}`: {reason}")]
pub struct InvalidStoreUrl {
    pub url: String,
    pub reason: String,
}

impl std::str::FromStr for StoreUrl {
    type Err = InvalidStoreUrl;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| InvalidStoreUrl {
            url: url.to_string(),
            reason,
        };
        if url == "sled" {
            return Ok(StoreUrl::Sled);
        }
        let (tls, rest) = if let Some(rest) = url.strip_prefix("etcd://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("etcds://") {
            (true, rest)
        } else {
            return Err(bad(
                "expected `sled`, `etcd://HOST:PORT,...[/PREFIX]` or `etcds://...`".into(),
            ));
        };
        let (hosts, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if hosts.is_empty() {
            return Err(bad("no etcd endpoint before the prefix".into()));
        }
        let scheme = if tls { "https" } else { "http" };
        let mut endpoints = Vec::new();
        for (i, host) in hosts.split(',').enumerate() {
            let n = i + 1;
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| bad(format!("endpoint {n} `{host}` has no `:PORT`")))?;
            let bracketed = name.starts_with('[') && name.ends_with(']') && name.len() > 2;
            if name.is_empty()
                || (!bracketed
                    && !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            {
                return Err(bad(format!(
                    "endpoint {n} `{host}`: `{name}` is not a host name or address"
                )));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => {
                    return Err(bad(format!(
                        "endpoint {n} `{host}`: `{port}` is not a port (1-65535)"
                    )))
                }
            }
            endpoints.push(format!("{scheme}://{host}"));
        }
        let prefix = match path.trim_end_matches('/') {
            "" => DEFAULT_PREFIX.to_string(),
            p => {
                if let Some(c) = p.chars().find(|c| c.is_control() || c.is_whitespace()) {
                    return Err(bad(format!("the prefix `{p}` holds {c:?}")));
                }
                format!("{p}/")
            }
        };
        Ok(StoreUrl::Etcd {
            endpoints,
            prefix,
            tls,
        })
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sled => f.write_str("sled"),
            StoreUrl::Etcd {
                endpoints,
                prefix,
                tls,
            } => {
                let hosts: Vec<&str> = endpoints
                    .iter()
                    .map(|e| e.split_once("://").map_or(e.as_str(), |(_, h)| h))
                    .collect();
                let scheme = if *tls { "etcds" } else { "etcd" };
                write!(
                    f,
                    "{scheme}://{}{}",
                    hosts.join(","),
                    prefix.trim_end_matches('/')
                )
            }
        }
    }
}

/// An opened store, and the etcd one itself when it is etcd (for leader
/// election, fencing and watches).
#[derive(Clone)]
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub etcd: Option<Arc<EtcdStore>>,
}

/// Opens the store `url` names: sled under `data_dir/store`, or etcd (with
/// `tls` for `etcds://`).
pub async fn open_store(
    url: &StoreUrl,
    data_dir: &Path,
    tls: Option<EtcdTls>,
) -> Result<Opened, StoreError> {
    match url {
        StoreUrl::Sled => {
            if tls.is_some() {
                return Err(StoreError::Open {
                    path: data_dir.join("store").display().to_string(),
                    message: "etcd TLS files were given but the store is sled".into(),
                });
            }
            let store: Arc<dyn Store> = Arc::new(SledStore::open(&data_dir.join("store"))?);
            Ok(Opened { store, etcd: None })
        }
        StoreUrl::Etcd {
            endpoints,
            prefix,
            tls: wants_tls,
        } => {
            let open_err = |message: &str| StoreError::Open {
                path: url.to_string(),
                message: message.to_string(),
            };
            match (wants_tls, &tls) {
                (true, None) => {
                    return Err(open_err(
                        "etcds:// needs the CA of the etcd members' certificates",
                    ))
                }
                (false, Some(_)) => {
                    return Err(open_err(
                        "etcd TLS files were given for a plain etcd:// URL: use etcds://",
                    ))
                }
                _ => {}
            }
            let mut cfg = EtcdConfig::new(endpoints.clone());
            cfg.prefix = prefix.clone();
            cfg.tls = tls;
            let etcd = Arc::new(EtcdStore::connect(cfg).await?);
            Ok(Opened {
                store: etcd.clone(),
                etcd: Some(etcd),
            })
        }
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn store_urls_parse_with_default_and_explicit_prefixes() {
        assert_eq!("sled".parse::<StoreUrl>().unwrap(), StoreUrl::Sled);
        assert_eq!(StoreUrl::default(), StoreUrl::Sled);
        let u: StoreUrl = "etcd://h1:2379,10.0.0.2:2379,[::1]:2379".parse().unwrap();
        assert_eq!(
            u,
            StoreUrl::Etcd {
                endpoints: vec![
                    "http://h1:2379".into(),
                    "http://10.0.0.2:2379".into(),
                    "http://[::1]:2379".into()
                ],
                prefix: "/convoy/".into(),
                tls: false,
            }
        );
        let u: StoreUrl = "etcds://e.example:2379/prod/convoy/".parse().unwrap();
        assert_eq!(
            u,
            StoreUrl::Etcd {
                endpoints: vec!["https://e.example:2379".into()],
                prefix: "/prod/convoy/".into(),
                tls: true,
            }
        );
        assert_eq!(u.to_string(), "etcds://e.example:2379/prod/convoy");
        assert_eq!(u.to_string().parse::<StoreUrl>().unwrap(), u);
    }

    #[test]
    fn bad_store_urls_name_the_bad_part() {
        for (url, part) in [
            ("sqlite", "expected `sled`"),
            ("etcd://", "no etcd endpoint"),
            ("etcd:///p", "no etcd endpoint"),
            ("etcd://h1:2379,h2", "endpoint 2 `h2` has no `:PORT`"),
            ("etcd://h1:99999", "`99999` is not a port"),
            ("etcd://h1:0", "`0` is not a port"),
            ("etcd://:2379", "endpoint 1 `:2379`"),
            ("etcd://h 1:2379", "`h 1` is not a host"),
            ("etcd://h1:2379,,h2:2379", "endpoint 2 ``"),
            ("etcd://h1:2379/a b", "the prefix `/a b`"),
        ] {
            let e = url.parse::<StoreUrl>().unwrap_err().to_string();
            assert!(e.contains(part), "{url}: {e}");
            assert!(e.contains(&format!("`{url}`")), "{url}: {e}");
        }
    }

    #[tokio::test]
    async fn tls_files_without_etcds_are_refused_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let tls = EtcdTls {
            ca: dir.path().join("ca.pem"),
            cert: None,
            key: None,
        };
        let url: StoreUrl = "etcd://127.0.0.1:1".parse().unwrap();
        let e = open_store(&url, dir.path(), Some(tls.clone()))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("use etcds://"), "{e}");
        let url: StoreUrl = "etcds://127.0.0.1:1".parse().unwrap();
        let e = open_store(&url, dir.path(), None)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("needs the CA"), "{e}");
        let e = open_store(&url, dir.path(), Some(tls))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("cannot read the etcd CA") && e.contains("ca.pem"),
            "{e}"
        );
    }
}

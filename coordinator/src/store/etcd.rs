//! The etcd backend, for several coordinators sharing one state: every key
//! of the trait lives under a prefix (`/convoy/` by default), a batch is one
//! etcd transaction, and a scan reads every page at one revision. Every call
//! is bounded by the request timeout, so a dead cluster is an error, never a
//! hang. docs/STORE.md says how to run it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, GetResponse, Identity,
    TlsOptions, Txn, TxnOp,
};

use super::{Op, Store, StoreError, StoreHealth, Watched};

/// Where the trait's keys go when no prefix is given.
pub const DEFAULT_PREFIX: &str = "/convoy/";
/// Keys per range request of a scan.
pub const DEFAULT_SCAN_PAGE: usize = 1000;
/// Largest response a scan page may be (a page of big records).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// A health probe's round trip, much shorter than a request's.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between tries of a request that failed on a member going away.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `host:port` or `http(s)://host:port`; a bare one gets `https://`
    /// when `tls` is set, `http://` otherwise.
    pub endpoints: Vec<String>,
    /// Prepended to every key; a `/` is added when it does not end in one.
    pub prefix: String,
    pub tls: Option<EtcdTls>,
    /// Connecting to a member, and the first round trip at connect.
    pub dial_timeout: Duration,
    /// Every request, retries included.
    pub request_timeout: Duration,
    /// Keys per range request of a scan.
    pub scan_page: usize,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: DEFAULT_PREFIX.to_string(),
            tls: None,
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            scan_page: DEFAULT_SCAN_PAGE,
        }
    }
}

/// PEM files for TLS to etcd: the CA that signed the members' certificates,
/// and a client certificate and key when the members ask for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Leader-only writes: while set, a batch is written only if `key` (a full
/// etcd key, outside the prefix) still exists with this create revision,
/// that is, the leadership that created it is still held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: String,
    pub create_revision: i64,
}

pub struct EtcdStore {
    client: Client,
    /// Full URLs, as connected.
    endpoints: Vec<String>,
    prefix: String,
    tls: Option<TlsOptions>,
    dial_timeout: Duration,
    request_timeout: Duration,
    scan_page: usize,
    fence: RwLock<Option<Fence>>,
    last_latency_ns: AtomicU64,
}

impl EtcdStore {
    /// Sets or clears the fence every later `apply` carries.
    pub fn set_fence(&self, fence: Option<Fence>) {
        *self.fence.write().unwrap_or_else(|p| p.into_inner()) = fence;
    }

    pub fn fence(&self) -> Option<Fence> {
        self.fence.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The client, for elections, leases and watches.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The key prefix, ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How long the last request took, retries included.
    pub fn last_latency(&self) -> Duration {
        Duration::from_nanos(self.last_latency_ns.load(Ordering::Relaxed))
    }

    fn location(&self) -> String {
        self.endpoints.join(",")
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

mod backend;
mod connect;
mod members;
mod requests;
mod watch;

#[cfg(test)]
mod tests {
    use super::{backend::explain_refusal, requests::prefix_end};

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/convoy/"), b"/convoy0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn refusals_name_the_setting_and_the_size() {
        let m = explain_refusal(
            "grpc request error: status: InvalidArgument, message: \"etcdserver: too many operations in txn request\"".into(),
            500,
            10,
        );
        assert!(m.contains("--max-txn-ops") && m.contains("500"), "{m}");
        let m = explain_refusal("etcdserver: request is too large".into(), 3, 9_000_000);
        assert!(
            m.contains("--max-request-bytes") && m.contains("9000000"),
            "{m}"
        );
        assert_eq!(explain_refusal("other".into(), 1, 1), "other");
    }
}

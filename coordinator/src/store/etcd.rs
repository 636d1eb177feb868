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

use super::{Op, Store, StoreError, StoreHealth};

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
    /// Connects and makes one round trip, so a wrong address or a dead
    /// cluster is reported here, naming the endpoints.
    pub async fn connect(cfg: EtcdConfig) -> Result<Self, StoreError> {
        let location = cfg.endpoints.join(",");
        let open_err = |message: String| StoreError::Open {
            path: format!("etcd {location}"),
            message,
        };
        if cfg.endpoints.is_empty() {
            return Err(open_err("no etcd endpoints given".into()));
        }
        if cfg.prefix.is_empty() {
            return Err(open_err(
                "the key prefix is empty: the store needs a prefix of its own (e.g. /convoy/)"
                    .into(),
            ));
        }
        let mut prefix = cfg.prefix.clone();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let mut endpoints = Vec::new();
        for e in &cfg.endpoints {
            let e = e.trim();
            let url = if e.contains("://") {
                e.to_string()
            } else {
                format!("{scheme}://{e}")
            };
            if cfg.tls.is_some() && url.starts_with("http://") {
                return Err(open_err(format!(
                    "endpoint `{url}` is plain http but TLS files were given: use https (etcds://)"
                )));
            }
            if cfg.tls.is_none() && url.starts_with("https://") {
                return Err(open_err(format!(
                    "endpoint `{url}` is https but no CA was given to check the members' certificates"
                )));
            }
            endpoints.push(url);
        }
        let tls = match &cfg.tls {
            Some(t) => Some(tls_options(t).map_err(open_err)?),
            None => None,
        };
        let client = connect_client(
            &endpoints,
            tls.clone(),
            cfg.dial_timeout,
            Some(cfg.request_timeout),
        )
        .await
        .map_err(|e| open_err(format!("cannot connect: {e}")))?;
        let store = EtcdStore {
            client,
            endpoints,
            prefix,
            tls,
            dial_timeout: cfg.dial_timeout,
            request_timeout: cfg.request_timeout,
            scan_page: cfg.scan_page.max(1),
            fence: RwLock::new(None),
            last_latency_ns: AtomicU64::new(0),
        };
        // The client connects lazily: one read proves a member answers
        // (tried again on members that are down, as every request is).
        let key = store.prefix.clone();
        let probe = store
            .within(cfg.dial_timeout, |client| {
                let key = key.clone();
                async move {
                    let opts = GetOptions::new().with_count_only();
                    client.kv_client().get(key, Some(opts)).await
                }
            })
            .await;
        match probe {
            Ok(_) => Ok(store),
            Err(e) => {
                let hint = match &cfg.tls {
                    Some(t) if t.cert.is_none() => {
                        " (if the members require client certificates, give one)"
                    }
                    _ => "",
                };
                Err(open_err(format!("no member answered: {e}{hint}")))
            }
        }
    }

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

    /// Another connection to the same members without the per-request
    /// timeout: an election's campaign blocks until it wins, and lease
    /// keep-alives are one long stream (callers bound their own waits).
    pub async fn unbounded_client(&self) -> Result<Client, StoreError> {
        connect_client(&self.endpoints, self.tls.clone(), self.dial_timeout, None)
            .await
            .map_err(|e| StoreError::Open {
                path: format!("etcd {}", self.location()),
                message: format!("cannot connect: {e}"),
            })
    }

    /// One client per member, each pinned to that member (those that can be
    /// set up; none is dialled yet): a lease keep-alive moves to the next
    /// member at once when one dies, where a balanced channel may keep
    /// picking the dead one for a while.
    pub async fn pinned_clients(&self) -> Vec<Client> {
        let mut out = Vec::new();
        for e in &self.endpoints {
            if let Ok(c) = connect_client(
                std::slice::from_ref(e),
                self.tls.clone(),
                self.dial_timeout,
                None,
            )
            .await
            {
                out.push(c);
            }
        }
        out
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

    /// Runs `call` until it succeeds, fails for good, or the request timeout
    /// passes; records the latency.
    async fn request<T, F, Fut>(&self, what: &str, call: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = Instant::now();
        let result = self.within(self.request_timeout, call).await;
        self.last_latency_ns
            .store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result.map_err(|message| StoreError::Backend {
            key: what.to_string(),
            message,
        })
    }

    /// Tries `call` until it succeeds, fails for good, or `budget` passes.
    /// Each try gets a third of the budget: a write sent to a leader that
    /// dies is dropped by etcd and would wait out etcd's own timeout (over
    /// 5 s), while a new try reaches the new leader. Only failures of a
    /// member going away are tried again. A replayed batch writes the same
    /// absolute values, and raft commits an abandoned try before the next
    /// one or never.
    async fn within<T, F, Fut>(&self, budget: Duration, mut call: F) -> Result<T, String>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + budget;
        let per_try = (budget / 3).max(Duration::from_secs(1)).min(budget);
        let mut last: Option<String> = None;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                let why = last
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "etcd at {} did not answer within {budget:?}{why}",
                    self.location()
                ));
            }
            let try_until = deadline.min(now + per_try);
            match tokio::time::timeout_at(try_until, call(self.client.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if retryable(&e) => {
                    last = Some(e.to_string());
                    let pause = deadline.min(tokio::time::Instant::now() + RETRY_PAUSE);
                    tokio::time::sleep_until(pause).await;
                }
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => last = Some(format!("no answer within {per_try:?}")),
            }
        }
    }

    /// One page of a range read.
    async fn range(
        &self,
        what: &str,
        start: Vec<u8>,
        end: Vec<u8>,
        revision: i64,
    ) -> Result<GetResponse, StoreError> {
        let limit = self.scan_page as i64;
        self.request(what, |client| {
            let start = start.clone();
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(limit)
                .with_revision(revision);
            async move {
                client
                    .kv_client()
                    .max_decoding_message_size(MAX_RESPONSE_BYTES)
                    .get(start, Some(opts))
                    .await
            }
        })
        .await
    }

    /// Every key under `prefix` (within the store's prefix), read page by
    /// page at the first page's revision.
    async fn scan_once(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let full = self.full_key(prefix).into_bytes();
        let end = prefix_end(&full);
        let mut start = full;
        let mut revision = 0;
        let mut out = Vec::new();
        loop {
            let mut resp = self
                .range(prefix, start.clone(), end.clone(), revision)
                .await?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            let Some(last) = kvs.last() else { break };
            start = last.key().to_vec();
            start.push(0);
            for kv in kvs {
                let (k, v) = kv.into_key_value();
                let k = String::from_utf8_lossy(&k);
                let k = k.strip_prefix(&self.prefix).unwrap_or(&k).to_string();
                out.push((k, v));
            }
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// Which members there are and how each answers: `NAME at URL:
    /// healthy (leader)` or `... unreachable (why)`.
    async fn member_lines(&self) -> Vec<String> {
        let listed = self
            .within(HEALTH_TIMEOUT, |mut client| async move {
                client.member_list().await
            })
            .await;
        let members: Vec<(String, String)> = match listed {
            Ok(resp) => resp
                .members()
                .iter()
                .map(|m| {
                    let name = if m.name().is_empty() {
                        format!("{:x}", m.id())
                    } else {
                        m.name().to_string()
                    };
                    let url = m.client_urls().first().cloned().unwrap_or_default();
                    (name, url)
                })
                .collect(),
            // No list: what was configured, each asked on its own.
            _ => self
                .endpoints
                .iter()
                .map(|e| ("?".to_string(), e.clone()))
                .collect(),
        };
        let probes = members.into_iter().map(|(name, url)| async move {
            if url.is_empty() {
                return format!("{name}: not started (no client URL yet)");
            }
            match self.member_status(&url).await {
                Ok(role) => format!("{name} at {url}: healthy ({role})"),
                Err(e) => format!("{name} at {url}: unreachable ({e})"),
            }
        });
        futures::future::join_all(probes).await
    }

    /// `leader` or `follower`, from the member at `url` itself.
    async fn member_status(&self, url: &str) -> Result<&'static str, String> {
        let probe = async {
            let mut client = connect_client(
                &[url.to_string()],
                self.tls.clone(),
                self.dial_timeout.min(HEALTH_TIMEOUT),
                Some(HEALTH_TIMEOUT),
            )
            .await?;
            client.status().await
        };
        match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
            Ok(Ok(status)) => {
                let me = status.header().map(|h| h.member_id()).unwrap_or(0);
                Ok(if me != 0 && me == status.leader() {
                    "leader"
                } else if status.leader() == 0 {
                    "no leader"
                } else {
                    "follower"
                })
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {HEALTH_TIMEOUT:?}")),
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.full_key(key);
        let mut resp = self
            .request(key, |client| {
                let full = full.clone();
                async move {
                    client
                        .kv_client()
                        .max_decoding_message_size(MAX_RESPONSE_BYTES)
                        .get(full, None)
                        .await
                }
            })
            .await?;
        Ok(resp
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| kv.into_key_value().1))
    }

    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        // A compaction between two pages loses the scan's revision: start
        // over at a newer one (rare: pages follow each other closely).
        let mut tries = 0;
        loop {
            match self.scan_once(prefix).await {
                Err(StoreError::Backend { message, .. })
                    if message.contains("compacted") && tries < 3 =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        // etcd refuses a txn naming a key twice; the batch means the last
        // op on each key (as sled applies them in order).
        let mut last: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(k, v) => last.insert(k, Some(v)),
                Op::Delete(k) => last.insert(k, None),
            };
        }
        let count = last.len();
        let mut bytes = 0usize;
        let txn_ops: Vec<TxnOp> = last
            .into_iter()
            .map(|(k, v)| {
                let full = self.full_key(&k);
                bytes += full.len() + v.as_ref().map_or(0, Vec::len);
                match v {
                    Some(v) => TxnOp::put(full, v, None),
                    None => TxnOp::delete(full, None),
                }
            })
            .collect();
        let fence = self.fence();
        let mut txn = Txn::new();
        if let Some(f) = &fence {
            txn = txn.when(vec![Compare::create_revision(
                f.key.clone(),
                CompareOp::Equal,
                f.create_revision,
            )]);
        }
        let txn = txn.and_then(txn_ops);
        let resp = self
            .request("batch", |client| {
                let txn = txn.clone();
                async move { client.kv_client().txn(txn).await }
            })
            .await
            .map_err(|e| match e {
                StoreError::Backend { key, message } => StoreError::Backend {
                    key,
                    message: explain_refusal(message, count, bytes),
                },
                other => other,
            })?;
        if !resp.succeeded() {
            let f = fence.unwrap_or(Fence {
                key: String::new(),
                create_revision: 0,
            });
            return Err(StoreError::Fenced(format!(
                "fence key `{}` is gone or was made again (its create revision is no longer {}); \
                 none of the {count} writes was made",
                f.key, f.create_revision
            )));
        }
        Ok(())
    }

    async fn dump(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.scan_prefix("").await
    }

    async fn health(&self) -> StoreHealth {
        // A linearizable read: it needs a quorum and a leader.
        let key = self.prefix.clone();
        let started = std::time::Instant::now();
        let probe = self
            .within(HEALTH_TIMEOUT.min(self.request_timeout), |client| {
                let key = key.clone();
                async move {
                    let opts = GetOptions::new().with_count_only();
                    client.kv_client().get(key, Some(opts)).await
                }
            })
            .await;
        let probe_seconds = started.elapsed().as_secs_f64();
        let error = match probe {
            Ok(_) => String::new(),
            Err(e) => format!("no read succeeded (no quorum, or no member answers): {e}"),
        };
        StoreHealth {
            probe_seconds,
            backend: "etcd".into(),
            location: self.location(),
            healthy: error.is_empty(),
            members: self.member_lines().await,
            error,
        }
    }
}

async fn connect_client(
    endpoints: &[String],
    tls: Option<TlsOptions>,
    dial_timeout: Duration,
    request_timeout: Option<Duration>,
) -> Result<Client, etcd_client::Error> {
    let mut opts = ConnectOptions::new().with_connect_timeout(dial_timeout);
    if let Some(t) = request_timeout {
        opts = opts.with_timeout(t);
    }
    let mut opts = opts
        .with_keep_alive(Duration::from_secs(10), dial_timeout)
        // A member that lost its leader says so at once instead of waiting.
        .with_require_leader(true);
    if let Some(tls) = tls {
        opts = opts.with_tls(tls);
    }
    match tokio::time::timeout(dial_timeout, Client::connect(endpoints, Some(opts))).await {
        Ok(r) => r,
        Err(_) => Err(etcd_client::Error::InvalidArgs(format!(
            "connecting took over {dial_timeout:?}"
        ))),
    }
}

fn tls_options(t: &EtcdTls) -> Result<TlsOptions, String> {
    let read = |what: &str, p: &PathBuf| {
        std::fs::read(p).map_err(|e| format!("cannot read the etcd {what} {}: {e}", p.display()))
    };
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read("CA", &t.ca)?));
    match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read("client certificate", cert)?,
                read("client key", key)?,
            ));
        }
        (None, None) => {}
        (Some(_), None) => return Err("an etcd client certificate needs its key too".into()),
        (None, Some(_)) => return Err("an etcd client key needs its certificate too".into()),
    }
    Ok(tls)
}

/// The first key after every key starting with `prefix` (etcd's range end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the keyspace.
    vec![0]
}

/// A member went away or lost its leader: another try may land elsewhere.
fn retryable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
            ) || s.message().contains("Timeout expired")
                // The connection broke under the request (a member killed).
                || (s.code() == tonic::Code::Unknown && s.message().contains("transport error"))
                || s.message().contains("leader changed")
                || s.message().contains("no leader")
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// etcd's refusals of a big batch, with the setting to raise.
fn explain_refusal(message: String, ops: usize, bytes: usize) -> String {
    if message.contains("too many operations in txn request") {
        format!(
            "etcd refused one transaction of {ops} writes (too many operations in txn request): \
             raise etcd's --max-txn-ops to at least {ops} (one commit is one transaction)"
        )
    } else if message.contains("request is too large")
        || message.contains("larger than max")
        || message.contains("message too large")
    {
        format!(
            "etcd refused one transaction of {ops} writes, about {bytes} bytes (request is too large): \
             raise etcd's --max-request-bytes above {bytes} (one commit is one transaction)"
        )
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

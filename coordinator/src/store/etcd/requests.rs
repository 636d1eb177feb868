//! Requests under the timeout: retries while a member is away or has no
//! leader, the latency recorded, and ranges read a page at a time at one
//! revision.

use super::*;

impl EtcdStore {
    /// Runs `call` until it succeeds, fails for good, or the request timeout
    /// passes; records the latency.
    pub(super) async fn request<T, F, Fut>(&self, what: &str, call: F) -> Result<T, StoreError>
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
    pub(super) async fn within<T, F, Fut>(&self, budget: Duration, mut call: F) -> Result<T, String>
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
    pub(super) async fn range(
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
    pub(super) async fn scan_once(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.scan_at(prefix).await?.1)
    }

    /// [`Self::scan_once`], and the revision it read at.
    pub(super) async fn scan_at(
        &self,
        prefix: &str,
    ) -> Result<(i64, Vec<(String, Vec<u8>)>), StoreError> {
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
        Ok((revision, out))
    }
}

/// The first key after every key starting with `prefix` (etcd's range end).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
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

//! The `Store` trait on etcd: reads, scans, a batch as one transaction
//! (carrying the fence), and health.

use super::*;

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

    async fn watch(&self, prefix: &str) -> Result<Watched, StoreError> {
        self.watch_prefix(prefix).await
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

/// etcd's refusals of a big batch, with the setting to raise.
pub(super) fn explain_refusal(message: String, ops: usize, bytes: usize) -> String {
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

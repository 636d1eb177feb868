//! Watches on etcd: a scan at one revision, then etcd's watch from the
//! next revision, each revision's events handed on together.

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;

use super::*;
use crate::store::watch::{by_revision, Change, Watched, WATCH_BACKLOG};

impl EtcdStore {
    /// See [`Store::watch`].
    pub(super) async fn watch_prefix(&self, prefix: &str) -> Result<Watched, StoreError> {
        let (revision, snapshot) = self.scan_at(prefix).await?;
        let full = self.full_key(prefix);
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = self
            .request(prefix, |client| {
                let (full, options) = (full.clone(), options.clone());
                async move {
                    client
                        .watch_client()
                        .max_decoding_message_size(MAX_RESPONSE_BYTES)
                        .watch(full, Some(options))
                        .await
                }
            })
            .await?;
        let (tx, rx) = mpsc::channel(WATCH_BACKLOG);
        let strip = self.prefix.clone();
        let what = prefix.to_string();
        let broke = move |message: String| StoreError::Backend {
            key: what.clone(),
            message: format!("the watch ended: {message}"),
        };
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = tx.closed() => return,
                    m = stream.message() => m,
                };
                let resp = match message {
                    Ok(Some(resp)) => resp,
                    Ok(None) => {
                        let _ = tx.send(Err(broke("etcd closed it".into()))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(broke(e.to_string()))).await;
                        return;
                    }
                };
                if resp.canceled() || resp.compact_revision() > 0 {
                    let why = match resp.compact_revision() {
                        0 => format!("etcd cancelled it ({})", resp.cancel_reason()),
                        r => format!("the history it needed is compacted (up to revision {r})"),
                    };
                    let _ = tx.send(Err(broke(why))).await;
                    return;
                }
                let events = resp.events().iter().filter_map(|event| {
                    let kv = event.kv()?;
                    let key = std::str::from_utf8(kv.key()).ok()?;
                    let key = key.strip_prefix(strip.as_str())?.to_string();
                    let change = match event.event_type() {
                        EventType::Put => Change::Put(key, kv.value().to_vec()),
                        EventType::Delete => Change::Delete(key),
                    };
                    Some((kv.mod_revision(), change))
                });
                for changes in by_revision(events) {
                    if tx.send(Ok(changes)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Watched {
            revision,
            snapshot,
            changes: rx,
        })
    }
}

//! [`MemStore`]: a store in memory, to check that a snapshot loads, and
//! for tests (watches included).

use super::*;
use crate::store::{watch::Hub, Change, Watched};

/// An in-memory store, for [`check_loads`] and tests.
pub struct MemStore(std::sync::Mutex<Inner>);

#[derive(Default)]
struct Inner {
    map: BTreeMap<String, Vec<u8>>,
    /// Counts writes, as etcd's revision does.
    revision: i64,
    watchers: Hub,
}

impl MemStore {
    pub fn new(entries: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        Self(std::sync::Mutex::new(Inner {
            map: entries.into_iter().collect(),
            revision: 1,
            watchers: Hub::default(),
        }))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn scan(map: &BTreeMap<String, Vec<u8>>, prefix: &str) -> Vec<(String, Vec<u8>)> {
        map.range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[async_trait]
impl Store for MemStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.inner().map.get(key).cloned())
    }

    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(Self::scan(&self.inner().map, prefix))
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut inner = self.inner();
        let mut changes = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    inner.map.insert(k.clone(), v.clone());
                    changes.push(Change::Put(k, v));
                }
                Op::Delete(k) => {
                    if inner.map.remove(&k).is_some() {
                        changes.push(Change::Delete(k));
                    }
                }
            }
        }
        if !changes.is_empty() {
            inner.revision += 1;
            let revision = inner.revision;
            inner.watchers.publish(revision, &changes);
        }
        Ok(())
    }

    async fn watch(&self, prefix: &str) -> Result<Watched, StoreError> {
        let mut inner = self.inner();
        let snapshot = Self::scan(&inner.map, prefix);
        let changes = inner.watchers.subscribe(prefix);
        Ok(Watched {
            revision: inner.revision,
            snapshot,
            changes,
        })
    }

    async fn health(&self) -> StoreHealth {
        StoreHealth {
            backend: "memory".into(),
            location: "memory".into(),
            healthy: true,
            members: Vec::new(),
            error: String::new(),
            probe_seconds: 0.0,
        }
    }
}

//! [`MemStore`]: a store in memory, to check that a snapshot loads.

use super::*;

/// An in-memory store, for [`check_loads`] and tests.
pub struct MemStore(std::sync::Mutex<BTreeMap<String, Vec<u8>>>);

impl MemStore {
    pub fn new(entries: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        Self(std::sync::Mutex::new(entries.into_iter().collect()))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map().get(key).cloned())
    }

    async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .map()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut map = self.map();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    map.insert(k, v);
                }
                Op::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
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

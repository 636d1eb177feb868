//! The audit log: one append-only record per mutating call (and per refused
//! one), at `audit/{unix_ms:020}-{seq:06}` so key order is time order.
//! Recording never fails the caller: a store error is logged.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::{
    state::now_unix_ms,
    store::{self, Op, Store, StoreError},
};

const PREFIX: &str = "audit/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub unix_ms: i64,
    /// `ID (NAME)` of a CLI token, `join-token:ID` for an enrolment.
    pub who: String,
    /// e.g. `apply`, `delete`, `node.remove`, `token.create`.
    pub action: String,
    pub target: String,
    /// `ok` or the error's message.
    pub result: String,
}

impl From<AuditRecord> for convoy_proto::AuditEntry {
    fn from(r: AuditRecord) -> Self {
        let AuditRecord {
            unix_ms,
            who,
            action,
            target,
            result,
        } = r;
        Self {
            unix_ms,
            who,
            action,
            target,
            result,
        }
    }
}

pub struct Audit {
    store: Arc<dyn Store>,
    /// The last key's (ms, seq), so keys grow strictly within a process.
    last: Mutex<(i64, u32)>,
}

impl Audit {
    /// Opens the log; new keys sort after the ones already stored, even
    /// when the clock went back or a restart falls in the same millisecond.
    pub async fn load(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let last = store
            .scan_prefix(PREFIX)
            .await?
            .last()
            .and_then(|(key, _)| parse_key(key))
            .unwrap_or((0, 0));
        Ok(Self {
            store,
            last: Mutex::new(last),
        })
    }

    /// Appends one entry; a store failure is logged, not returned.
    pub async fn record(&self, who: &str, action: &str, target: &str, result: &str) {
        let (unix_ms, seq) = self.next_stamp();
        let rec = AuditRecord {
            unix_ms,
            who: who.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            result: result.to_string(),
        };
        let key = format!("{PREFIX}{unix_ms:020}-{seq:06}");
        if let Err(e) = self.store.apply(vec![Op::put_json(&key, &rec)]).await {
            tracing::error!(error = %e, who, action, target, result, "cannot write the audit log");
        }
    }

    /// Entries at or after `since_unix_ms`, oldest first.
    pub async fn list(&self, since_unix_ms: i64) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(store::scan_json::<AuditRecord>(&*self.store, PREFIX)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.unix_ms >= since_unix_ms)
            .collect())
    }

    fn next_stamp(&self) -> (i64, u32) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_unix_ms();
        let next = if now > last.0 {
            (now, 0)
        } else if last.1 < 999_999 {
            (last.0, last.1 + 1)
        } else {
            (last.0 + 1, 0)
        };
        *last = next;
        next
    }
}

fn parse_key(key: &str) -> Option<(i64, u32)> {
    let (ms, seq) = key.strip_prefix(PREFIX)?.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    #[tokio::test]
    async fn entries_come_back_in_order_and_since_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("s")).unwrap());
        let audit = Audit::load(store.clone()).await.unwrap();
        for i in 0..50 {
            audit
                .record("a (admin)", "apply", &format!("t{i}"), "ok")
                .await;
        }
        let all = audit.list(0).await.unwrap();
        let targets: Vec<_> = all.iter().map(|r| r.target.clone()).collect();
        let want: Vec<_> = (0..50).map(|i| format!("t{i}")).collect();
        assert_eq!(targets, want);
        assert!(all.windows(2).all(|w| w[0].unix_ms <= w[1].unix_ms));

        let later = now_unix_ms() + 60_000;
        assert!(audit.list(later).await.unwrap().is_empty());
        // A restart appends after what is there.
        let again = Audit::load(store).await.unwrap();
        again.record("b", "delete", "x", "refused").await;
        let all = again.list(0).await.unwrap();
        assert_eq!(all.len(), 51);
        assert_eq!(all.last().unwrap().who, "b");
    }
}

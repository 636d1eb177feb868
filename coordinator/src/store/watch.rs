//! Watches: everything under a prefix at one revision, then every later
//! write under it, whole and in order. A standby follows desired state
//! with them (`crate::ha::mirror`); etcd has them natively, the in-memory
//! store of tests through a [`Hub`].

use tokio::sync::mpsc;

use super::StoreError;

/// How many writes a slow watcher may fall behind before its watch ends
/// (it then starts over from a fresh read).
pub const WATCH_BACKLOG: usize = 1024;

/// A change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(String, Vec<u8>),
    Delete(String),
}

impl Change {
    pub fn key(&self) -> &str {
        match self {
            Change::Put(k, _) | Change::Delete(k) => k,
        }
    }
}

/// The changes under the watched prefix of one write (one batch; one etcd
/// revision): never split, so a record and what must change with it
/// arrive together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The store's revision after the write.
    pub revision: i64,
    pub changes: Vec<Change>,
}

/// A consistent start and what follows it.
pub struct Watched {
    /// The revision `snapshot` was read at.
    pub revision: i64,
    /// Every key and value under the prefix at `revision`, in key order.
    pub snapshot: Vec<(String, Vec<u8>)>,
    /// The writes after `revision`, in order. An error, or the end, means
    /// the watch broke (the store went away, or the history it needed was
    /// compacted): start over with a new watch.
    pub changes: mpsc::Receiver<Result<Changes, StoreError>>,
}

/// Watchers of an in-memory store: each write is handed to every watcher
/// whose prefix it touches.
#[derive(Default)]
pub struct Hub {
    watchers: Vec<(String, mpsc::Sender<Result<Changes, StoreError>>)>,
}

impl Hub {
    /// A new watcher of `prefix`.
    pub fn subscribe(&mut self, prefix: &str) -> mpsc::Receiver<Result<Changes, StoreError>> {
        let (tx, rx) = mpsc::channel(WATCH_BACKLOG);
        self.watchers.push((prefix.to_string(), tx));
        rx
    }

    /// Hands one write to the watchers it concerns; a watcher that is gone
    /// or too far behind is dropped (its watch ends).
    pub fn publish(&mut self, revision: i64, changes: &[Change]) {
        self.watchers.retain(|(prefix, tx)| {
            let mine: Vec<Change> = changes
                .iter()
                .filter(|c| c.key().starts_with(prefix.as_str()))
                .cloned()
                .collect();
            if mine.is_empty() {
                return !tx.is_closed();
            }
            tx.try_send(Ok(Changes {
                revision,
                changes: mine,
            }))
            .is_ok()
        });
    }
}

/// Groups etcd watch events into one [`Changes`] per revision (a response
/// holds whole revisions), in order.
pub fn by_revision(events: impl IntoIterator<Item = (i64, Change)>) -> Vec<Changes> {
    let mut out: Vec<Changes> = Vec::new();
    for (revision, change) in events {
        match out.last_mut() {
            Some(last) if last.revision == revision => last.changes.push(change),
            _ => out.push(Changes {
                revision,
                changes: vec![change],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_one_revision_stay_together() {
        let put = |k: &str| Change::Put(k.into(), b"v".to_vec());
        let got = by_revision([
            (5, put("a")),
            (5, Change::Delete("b".into())),
            (7, put("c")),
        ]);
        assert_eq!(
            got,
            vec![
                Changes {
                    revision: 5,
                    changes: vec![put("a"), Change::Delete("b".into())]
                },
                Changes {
                    revision: 7,
                    changes: vec![put("c")]
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_hub_hands_each_watcher_the_part_of_a_write_under_its_prefix() {
        let mut hub = Hub::default();
        let mut services = hub.subscribe("services/");
        let mut all = hub.subscribe("");
        let write = [
            Change::Put("services/a".into(), b"1".to_vec()),
            Change::Put("nodes/n".into(), b"2".to_vec()),
        ];
        hub.publish(3, &write);
        hub.publish(4, &[Change::Delete("nodes/n".into())]);
        let first = services.recv().await.unwrap().unwrap();
        assert_eq!(first.revision, 3);
        assert_eq!(first.changes, vec![write[0].clone()]);
        assert!(
            services.try_recv().is_err(),
            "nodes/ is not under services/"
        );
        assert_eq!(all.recv().await.unwrap().unwrap().changes, write.to_vec());
        assert_eq!(all.recv().await.unwrap().unwrap().revision, 4);
    }
}

//! `ControlService.Snapshot` (issue 18): every key and value of the store,
//! read under the desired-state lock so no commit is half in it, streamed in
//! chunks for `convoyd snapshot save`. Admin only; audited, refused or not.
//! The data directory's files (CA, admin token) never cross the wire: the
//! caller runs on the coordinator's host and reads them itself.

use super::*;

pub(crate) type SnapshotStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;

/// Roughly how many value bytes one chunk carries (well under the 4 MiB a
/// gRPC client decodes by default; one larger value goes alone).
const CHUNK_BYTES: usize = 1 << 20;

impl ControlApi {
    pub(super) async fn store_snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let caller = caller(&req)?;
        let pb::SnapshotRequest {} = req.into_inner();
        self.allow(&caller, Action::Snapshot, "store", true).await?;
        let dumped = self.coord.dump_store().await.map_err(Status::from);
        self.audited(&caller, Action::Snapshot, "store", &dumped)
            .await;
        let dump = dumped?;
        tracing::info!(
            who = caller.who(),
            keys = dump.entries.len(),
            "store snapshot sent"
        );
        let chunks = chunks(dump);
        Ok(Response::new(Box::pin(tokio_stream::iter(
            chunks.into_iter().map(Ok),
        ))))
    }
}

/// Splits a dump into chunks of about [`CHUNK_BYTES`]; the first names the
/// backend and the number of keys (and is sent even for an empty store).
fn chunks(dump: crate::state::StoreDump) -> Vec<pb::SnapshotChunk> {
    let crate::state::StoreDump {
        backend,
        location,
        entries,
    } = dump;
    let mut out = vec![pb::SnapshotChunk {
        backend,
        location,
        total_keys: entries.len() as u64,
        entries: Vec::new(),
    }];
    let mut size = 0;
    for (key, value) in entries {
        let n = key.len() + value.len();
        if size > 0 && size + n > CHUNK_BYTES {
            out.push(pb::SnapshotChunk::default());
            size = 0;
        }
        size += n;
        if let Some(chunk) = out.last_mut() {
            chunk.entries.push(pb::StoreEntry { key, value });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_is_split_into_chunks_that_keep_every_entry_in_order() {
        let entries: Vec<(String, Vec<u8>)> = (0..10)
            .map(|i| (format!("k/{i}"), vec![i as u8; 300 << 10]))
            .collect();
        let dump = crate::state::StoreDump {
            backend: "sled".into(),
            location: "/d/store".into(),
            entries: entries.clone(),
        };
        let out = chunks(dump);
        assert!(out.len() >= 3, "{} chunks", out.len());
        assert_eq!(out[0].total_keys, 10);
        assert_eq!(out[0].backend, "sled");
        let back: Vec<(String, Vec<u8>)> = out
            .into_iter()
            .flat_map(|c| c.entries)
            .map(|e| (e.key, e.value))
            .collect();
        assert_eq!(back, entries);
    }
}

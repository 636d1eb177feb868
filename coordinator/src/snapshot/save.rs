//! `convoyd snapshot save`: offline from the store, or through the running
//! coordinator's control API when it holds the store's lock.

use super::*;

/// What a save wrote.
#[derive(Debug, Clone)]
pub struct Saved {
    pub file: PathBuf,
    pub keys: usize,
    pub services: usize,
    pub nodes: usize,
    pub secrets: usize,
    pub bytes: usize,
    /// "offline" or the API address it was read through.
    pub via: String,
    pub took: Duration,
}

impl std::fmt::Display for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "saved {} keys ({} service records, {} nodes, {} secrets) and the CA and admin token to {}: {} in {} ms ({}); \
             secrets.key is not in it: keep a copy of it apart",
            self.keys,
            self.services,
            self.nodes,
            self.secrets,
            self.file.display(),
            convoy_api::limits::human_bytes(self.bytes),
            self.took.as_millis(),
            self.via
        )
    }
}

/// Saves `store`'s keys and `data_dir`'s files to `file`.
pub async fn save_from_store(
    store: &dyn Store,
    data_dir: &Path,
    file: &Path,
    force: bool,
) -> Result<Saved, SnapshotError> {
    let started = Instant::now();
    let files = read_data_files(data_dir)?;
    let StoreHealth {
        backend, location, ..
    } = store.health().await;
    let entries = store.dump().await?;
    let dump = StoreDump {
        backend,
        location,
        entries,
    };
    save_dump(dump, files, file, force, "offline", started)
}

fn save_dump(
    dump: StoreDump,
    files: Vec<(String, Vec<u8>)>,
    file: &Path,
    force: bool,
    via: &str,
    started: Instant,
) -> Result<Saved, SnapshotError> {
    let snapshot = Snapshot::new(dump, files);
    let bytes = snapshot.encode();
    write_file(file, &bytes, force)?;
    Ok(Saved {
        file: file.to_path_buf(),
        keys: snapshot.entries.len(),
        services: snapshot.count("services/"),
        nodes: snapshot.count("nodes/"),
        secrets: snapshot.count("secrets/"),
        bytes: bytes.len(),
        via: via.to_string(),
        took: started.elapsed(),
    })
}

/// `convoyd snapshot save`: offline when the store in `data_dir` can be
/// opened, else through the running coordinator's control API at `api`.
pub async fn save(
    data_dir: &Path,
    file: &Path,
    api: &str,
    force: bool,
) -> Result<Saved, SnapshotError> {
    let started = Instant::now();
    if !force && file.symlink_metadata().is_ok() {
        return Err(SnapshotError::Refused(format!(
            "{} exists: pick another name, or pass --force to replace it",
            file.display()
        )));
    }
    let store_dir = data_dir.join(STORE_DIR);
    if !store_dir.is_dir() {
        return Err(SnapshotError::Refused(format!(
            "there is no store at {}: is {} a coordinator's data directory (--data-dir)?",
            store_dir.display(),
            data_dir.display()
        )));
    }
    match SledStore::open(&store_dir) {
        Ok(store) => save_from_store(&store, data_dir, file, force).await,
        Err(StoreError::Open { message, .. }) if message.contains("could not acquire lock") => {
            let files = read_data_files(data_dir)?;
            let dump = dump_over_api(data_dir, api).await?;
            save_dump(dump, files, file, force, &format!("through {api}"), started)
        }
        Err(e) => Err(e.into()),
    }
}

/// Asks the coordinator at `api` for its store's dump, as its admin:
/// TLS checked against `DATA_DIR/pki/ca.pem`, bearer `DATA_DIR/admin.token`.
async fn dump_over_api(data_dir: &Path, api: &str) -> Result<StoreDump, SnapshotError> {
    use convoy_proto as pb;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let paths = PkiPaths::new(data_dir);
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).map_err(|source| SnapshotError::Io {
            action: "read",
            path,
            source,
        })
    };
    let ca = read(paths.ca_cert())?;
    let token = read(data_dir.join(ADMIN_TOKEN_FILE))?.trim().to_string();
    let address = if api.contains("://") {
        api.to_string()
    } else {
        format!("https://{api}")
    };
    let unreachable = |e: &dyn std::fmt::Display| {
        SnapshotError::Api(format!(
            "the store in {} is locked by a running convoyd, and its API at {address} cannot be reached ({e}): pass --api with its --api-listen address, or stop it to save offline",
            data_dir.display()
        ))
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(pb::COORDINATOR_SERVER_NAME);
    let endpoint = Endpoint::from_shared(address.clone())
        .map_err(|e| SnapshotError::Api(format!("bad --api address `{address}`: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tls_config(tls)
        .map_err(|e| unreachable(&e))?;
    let channel = tokio::time::timeout(Duration::from_secs(10), endpoint.connect())
        .await
        .map_err(|_| unreachable(&"no answer within 10 s"))?
        .map_err(|e| unreachable(&root_cause(&e)))?;
    let mut bearer: tonic::metadata::AsciiMetadataValue =
        format!("Bearer {token}").parse().map_err(|_| {
            SnapshotError::Api(
                "the admin token holds characters that cannot be sent in a header".into(),
            )
        })?;
    bearer.set_sensitive(true);
    let mut client = pb::control_service_client::ControlServiceClient::with_interceptor(
        channel,
        move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert(pb::AUTHORIZATION, bearer.clone());
            Ok(req)
        },
    )
    .max_decoding_message_size(64 << 20);
    let refused = |s: tonic::Status| {
        SnapshotError::Api(format!(
            "the coordinator at {address} refused the snapshot: {} ({:?})",
            s.message(),
            s.code()
        ))
    };
    let mut stream = client
        .snapshot(pb::SnapshotRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    let mut dump = StoreDump {
        backend: String::new(),
        location: String::new(),
        entries: Vec::new(),
    };
    let mut total = None;
    while let Some(chunk) = stream.message().await.map_err(refused)? {
        let pb::SnapshotChunk {
            backend,
            location,
            total_keys,
            entries,
        } = chunk;
        if total.is_none() {
            total = Some(total_keys);
            dump.backend = backend;
            dump.location = location;
            dump.entries.reserve(total_keys.min(1 << 24) as usize);
        }
        dump.entries
            .extend(entries.into_iter().map(|e| (e.key, e.value)));
    }
    let total = total.unwrap_or(0);
    if dump.entries.len() as u64 != total {
        return Err(SnapshotError::Api(format!(
            "the coordinator at {address} announced {total} keys and sent {}: nothing was written; try again",
            dump.entries.len()
        )));
    }
    Ok(dump)
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

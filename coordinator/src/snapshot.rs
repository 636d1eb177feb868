//! `convoyd snapshot save|restore` (issue 18): the whole durable state of a
//! coordinator in one versioned, checksummed file, for backups and for
//! moving the coordinator to another machine. docs/SNAPSHOTS.md is the
//! user's guide; this module the format and the checks.
//!
//! The file: one header line of JSON ([`Header`]), then a binary body of
//! length-prefixed records, every store key first (`K`), then the data
//! directory's files a restore needs (`F`). Length-prefixed rather than
//! JSON lines with base64 values: values are written as they are (no third
//! more bytes, no encoder to add), and a reader knows each record's end
//! without scanning for one; the header stays readable with `head -1`.
//! The secrets key is never in it: the file holds secrets sealed, and the
//! key travels separately (`restore --secrets-key`).

use std::{
    collections::BTreeMap,
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::{
    audit::AuditRecord,
    pki::{self, PkiPaths},
    secrets::{self, Sealer},
    state::{now_unix_ms, Coordinator, Liveness, StoreDump, PLAN_GENERATION_KEY},
    store::{Op, SledStore, Store, StoreError, StoreHealth},
};

/// The header's `magic`.
pub const MAGIC: &str = "convoy-snapshot";
/// The body layout this convoyd writes and reads.
pub const FORMAT: u32 = 1;
/// The store lives at `DATA_DIR/store` (sled).
pub const STORE_DIR: &str = "store";
/// The admin token's file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The file of the server certificate's extra names, in the PKI directory.
const SANS_FILE: &str = "server-sans.json";
/// Store prefixes whose values are sealed under the secrets key
/// (`state/secrets.rs`, `state/registries.rs`).
pub const SEALED_PREFIXES: [&str; 2] = ["secrets/", "registries/"];
/// How far a restore moves the plan generation past the snapshot's, on top
/// of one per millisecond since the save: agents then never see a plan
/// generation lower than one they were handed after the save.
pub const PLAN_GENERATION_MARGIN: u64 = 1_000_000;
/// The longest header line read before a file is declared no snapshot.
const MAX_HEADER: usize = 64 << 10;
const TAG_KEY: u8 = b'K';
const TAG_FILE: u8 = b'F';

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a whole snapshot this convoyd reads.
    #[error("{} {problem}", file.display())]
    Invalid { file: PathBuf, problem: String },
    /// The command would overwrite or mix state; nothing was written.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    #[error("{0}")]
    Api(String),
}

/// The first line of a snapshot file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub magic: String,
    pub format: u32,
    pub created_unix_ms: i64,
    pub convoyd_version: String,
    /// The store it was read from: "sled" or "etcd", and where.
    pub source_backend: String,
    pub source_location: String,
    pub keys: u64,
    /// The data directory's files, by path relative to it.
    pub files: Vec<String>,
    pub body_bytes: u64,
    /// Hex SHA-256 of everything after the header line.
    pub body_sha256: String,
}

/// A snapshot in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub header: Header,
    /// Every store key and value, in key order.
    pub entries: Vec<(String, Vec<u8>)>,
    /// Data-directory files: (path relative to it, contents).
    pub files: Vec<(String, Vec<u8>)>,
}

impl Snapshot {
    /// A snapshot of `dump` and `files`, stamped now.
    pub fn new(dump: StoreDump, files: Vec<(String, Vec<u8>)>) -> Self {
        let StoreDump {
            backend,
            location,
            entries,
        } = dump;
        let body = encode_body(&entries, &files);
        Self {
            header: Header {
                magic: MAGIC.into(),
                format: FORMAT,
                created_unix_ms: now_unix_ms(),
                convoyd_version: env!("CARGO_PKG_VERSION").into(),
                source_backend: backend,
                source_location: location,
                keys: entries.len() as u64,
                files: files.iter().map(|(name, _)| name.clone()).collect(),
                body_bytes: body.len() as u64,
                body_sha256: hex::encode(Sha256::digest(&body)),
            },
            entries,
            files,
        }
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // A header of our own plain fields always serializes.
        let mut out = serde_json::to_vec(&self.header).unwrap_or_default();
        out.push(b'\n');
        out.extend(encode_body(&self.entries, &self.files));
        out
    }

    /// Reads and checks a snapshot: magic, format, length and checksum
    /// before any record is looked at. `file` names it in errors.
    pub fn decode(bytes: &[u8], file: &Path) -> Result<Self, SnapshotError> {
        let invalid = |problem: String| SnapshotError::Invalid {
            file: file.to_path_buf(),
            problem,
        };
        let Some(end) = bytes.iter().take(MAX_HEADER).position(|b| *b == b'\n') else {
            return Err(invalid(format!(
                "is not a Convoy snapshot: no header line in its first {} bytes ({} bytes in all)",
                MAX_HEADER.min(bytes.len()),
                bytes.len()
            )));
        };
        let header: Header = serde_json::from_slice(&bytes[..end]).map_err(|e| {
            invalid(format!(
                "is not a Convoy snapshot: its first line is not a snapshot header ({e})"
            ))
        })?;
        if header.magic != MAGIC {
            return Err(invalid(format!(
                "is not a Convoy snapshot: its header says `{}`, not `{MAGIC}`",
                header.magic
            )));
        }
        if header.format != FORMAT {
            return Err(invalid(format!(
                "is snapshot format {}; this convoyd ({}) reads format {FORMAT}: restore it with the convoyd that wrote it ({})",
                header.format,
                env!("CARGO_PKG_VERSION"),
                header.convoyd_version
            )));
        }
        let body = &bytes[end + 1..];
        let have = body.len() as u64;
        if have < header.body_bytes {
            return Err(invalid(format!(
                "is truncated: its header says {} body bytes, the file holds {have} after the header",
                header.body_bytes
            )));
        }
        if have > header.body_bytes {
            return Err(invalid(format!(
                "is corrupt: {} bytes follow the body the header announces ({} bytes)",
                have - header.body_bytes,
                header.body_bytes
            )));
        }
        let sum = hex::encode(Sha256::digest(body));
        if sum != header.body_sha256 {
            return Err(invalid(format!(
                "is corrupt: its body's SHA-256 is {sum}, the header says {}",
                header.body_sha256
            )));
        }
        let (entries, files) = decode_body(body).map_err(|(at, what)| {
            invalid(format!(
                "is corrupt: record at body byte {at}: {what} (its checksum matches: written by a faulty convoyd?)"
            ))
        })?;
        if entries.len() as u64 != header.keys {
            return Err(invalid(format!(
                "is corrupt: its header says {} keys, the body holds {}",
                header.keys,
                entries.len()
            )));
        }
        Ok(Self {
            header,
            entries,
            files,
        })
    }

    /// How many keys start with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.entries
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .count()
    }

    /// Whether it holds values sealed under the secrets key.
    pub fn has_sealed(&self) -> bool {
        SEALED_PREFIXES.iter().any(|p| self.count(p) > 0)
    }
}

fn encode_body(entries: &[(String, Vec<u8>)], files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .chain(files)
        .map(|(k, v)| 13 + k.len() + v.len())
        .sum();
    let mut out = Vec::with_capacity(size);
    let records = entries
        .iter()
        .map(|e| (TAG_KEY, e))
        .chain(files.iter().map(|f| (TAG_FILE, f)));
    for (tag, (name, value)) in records {
        out.push(tag);
        out.extend((name.len() as u32).to_be_bytes());
        out.extend(name.as_bytes());
        out.extend((value.len() as u64).to_be_bytes());
        out.extend(value);
    }
    out
}

type Records = Vec<(String, Vec<u8>)>;

/// The body's records, or the offset and nature of the first bad one.
fn decode_body(body: &[u8]) -> Result<(Records, Records), (usize, String)> {
    let mut entries = Vec::new();
    let mut files = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let start = at;
        let bad = |what: &str| (start, what.to_string());
        let tag = body[at];
        at += 1;
        let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
            let end = at.checked_add(n).filter(|e| *e <= body.len())?;
            let out = &body[*at..end];
            *at = end;
            Some(out)
        };
        let name_len = take(&mut at, 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| bad("cut short in the name's length"))?;
        let name = take(&mut at, name_len as usize).ok_or_else(|| bad("cut short in the name"))?;
        let name = std::str::from_utf8(name)
            .map_err(|_| bad("the name is not UTF-8"))?
            .to_string();
        let value_len = take(&mut at, 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| bad("cut short in the value's length"))?;
        let value_len = usize::try_from(value_len).map_err(|_| bad("value too long"))?;
        let value = take(&mut at, value_len)
            .ok_or_else(|| bad("cut short in the value"))?
            .to_vec();
        match tag {
            TAG_KEY if files.is_empty() => entries.push((name, value)),
            TAG_FILE => {
                check_file_name(&name).map_err(|e| bad(&e))?;
                files.push((name, value));
            }
            TAG_KEY => return Err(bad("a store key after the files")),
            other => return Err(bad(&format!("unknown record type {other:#04x}"))),
        }
    }
    Ok((entries, files))
}

/// The data-directory files a snapshot carries: (path relative to the data
/// directory, whether a restore needs it).
fn data_files() -> Vec<(String, bool)> {
    vec![
        ("pki/ca.pem".into(), true),
        ("pki/ca.key".into(), true),
        (ADMIN_TOKEN_FILE.into(), true),
        (format!("pki/{SANS_FILE}"), false),
    ]
}

/// A file record may only name one of [`data_files`]: a crafted snapshot
/// cannot write elsewhere (`../`, absolute paths).
fn check_file_name(name: &str) -> Result<(), String> {
    if data_files().iter().any(|(f, _)| f == name) {
        Ok(())
    } else {
        Err(format!(
            "file `{name}` is not one a snapshot carries (ca.pem, ca.key, admin.token, {SANS_FILE})"
        ))
    }
}

/// Reads the data directory's files for a snapshot; the CA and the admin
/// token must be there.
pub fn read_data_files(data_dir: &Path) -> Result<Vec<(String, Vec<u8>)>, SnapshotError> {
    let mut out = Vec::new();
    for (name, needed) in data_files() {
        let path = data_dir.join(&name);
        match std::fs::read(&path) {
            Ok(bytes) => out.push((name, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !needed => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SnapshotError::Refused(format!(
                    "{} does not exist: is {} a coordinator's data directory (--data-dir)?",
                    path.display(),
                    data_dir.display()
                )))
            }
            Err(source) => {
                return Err(SnapshotError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        }
    }
    Ok(out)
}

/// Writes `bytes` to `file` whole or not at all: a temporary file beside it
/// (mode 0600), synced, renamed over it, the directory synced. An existing
/// `file` is refused unless `force`.
pub fn write_file(file: &Path, bytes: &[u8], force: bool) -> Result<(), SnapshotError> {
    if !force && file.symlink_metadata().is_ok() {
        return Err(SnapshotError::Refused(format!(
            "{} exists: pick another name, or pass --force to replace it",
            file.display()
        )));
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .ok_or_else(|| SnapshotError::Refused(format!("{} names no file", file.display())))?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io {
            action,
            path,
            source,
        }
    };
    let _ = std::fs::remove_file(&temp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io("create", &temp))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(io("write", &temp))?;
        std::fs::rename(&temp, file).map_err(io("rename into place", file))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", &dir))
}

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

/// What a restore wrote.
#[derive(Debug, Clone)]
pub struct Restored {
    pub keys: usize,
    pub services: usize,
    pub nodes: usize,
    pub secrets: usize,
    pub registry_logins: usize,
    pub plan_generation: u64,
    /// Whether the secrets key was checked against every sealed value.
    pub key_checked: bool,
    pub took: Duration,
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "restored {} keys ({} service records, {} nodes, {} secrets, {} registry logins) in {} ms; plan generations continue from {}",
            self.keys,
            self.services,
            self.nodes,
            self.secrets,
            self.registry_logins,
            self.took.as_millis(),
            self.plan_generation
        )?;
        if self.key_checked {
            write!(f, "; the secrets key opens every sealed value")?;
        }
        Ok(())
    }
}

/// Writes `snapshot`'s keys into `store`, which must be empty, in one
/// batch, with the plan generation moved past any the old coordinator may
/// have handed out after the save, and an audit entry saying so.
pub async fn restore_into(store: &dyn Store, snapshot: &Snapshot) -> Result<u64, SnapshotError> {
    let health = store.health().await;
    if let Some((key, _)) = store.scan_prefix("").await?.first() {
        return Err(SnapshotError::Refused(format!(
            "the {} store at {} already holds data (key `{key}`): restore into a new data directory or an empty store",
            health.backend, health.location
        )));
    }
    let now = now_unix_ms();
    let stored = snapshot
        .entries
        .iter()
        .find(|(k, _)| k == PLAN_GENERATION_KEY)
        .and_then(|(_, v)| serde_json::from_slice::<u64>(v).ok())
        .unwrap_or(0);
    let since_save =
        u64::try_from(now.saturating_sub(snapshot.header.created_unix_ms)).unwrap_or(0);
    let generation = stored
        .saturating_add(PLAN_GENERATION_MARGIN)
        .saturating_add(since_save);
    let mut ops: Vec<Op> = snapshot
        .entries
        .iter()
        .filter(|(k, _)| k != PLAN_GENERATION_KEY)
        .map(|(k, v)| Op::Put(k.clone(), v.clone()))
        .collect();
    ops.push(Op::put_json(PLAN_GENERATION_KEY, &generation));
    let audit = AuditRecord {
        unix_ms: now,
        who: "convoyd snapshot restore".into(),
        action: "snapshot.restore".into(),
        target: format!(
            "snapshot of {} ({} at {})",
            snapshot.header.created_unix_ms,
            snapshot.header.source_backend,
            snapshot.header.source_location
        ),
        result: "ok".into(),
    };
    // After every audit key of the snapshot (they are older).
    ops.push(Op::put_json(format!("audit/{now:020}-999999"), &audit));
    store.apply(ops).await?;
    Ok(generation)
}

/// Checks that `sealer` opens every sealed value of the snapshot and that
/// its records load, on a copy in memory: nothing is written.
pub async fn check_loads(snapshot: &Snapshot, sealer: Sealer) -> Result<(), SnapshotError> {
    let store = Arc::new(MemStore::new(snapshot.entries.iter().cloned()));
    Coordinator::load_sealed(store, Liveness::default(), CancellationToken::new(), sealer)
        .await
        .map(drop)
        .map_err(|e| SnapshotError::Refused(format!("the snapshot does not load: {e}")))
}

/// `convoyd snapshot restore`: checks the file, the target and the key
/// before anything is written; then the data directory's files and the
/// store.
pub async fn restore(
    file: &Path,
    data_dir: &Path,
    secrets_key: Option<&Path>,
) -> Result<Restored, SnapshotError> {
    restore_to(file, data_dir, secrets_key, None).await
}

/// [`restore`], into `target` (an etcd store) instead of the data
/// directory's sled store; the data directory still gets the CA and the
/// admin token.
pub async fn restore_to(
    file: &Path,
    data_dir: &Path,
    secrets_key: Option<&Path>,
    target: Option<Arc<dyn Store>>,
) -> Result<Restored, SnapshotError> {
    let started = Instant::now();
    let bytes = std::fs::read(file).map_err(|source| SnapshotError::Io {
        action: "read",
        path: file.to_path_buf(),
        source,
    })?;
    let mut snapshot = Snapshot::decode(&bytes, file)?;
    drop(bytes);
    for (name, needed) in data_files() {
        if needed && !snapshot.files.iter().any(|(f, _)| *f == name) {
            return Err(SnapshotError::Invalid {
                file: file.to_path_buf(),
                problem: format!("holds no `{name}`: it cannot bring a coordinator back"),
            });
        }
    }
    // An existing store is opened (not created) and must be empty.
    let store_dir = data_dir.join(STORE_DIR);
    if let Some(target) = &target {
        refuse_data(&**target, data_dir).await?;
    }
    let existing = if target.is_some() {
        None
    } else if store_dir.exists() {
        let store = SledStore::open(&store_dir).map_err(|e| {
            SnapshotError::Refused(format!(
                "{} already has a store ({}) that cannot be opened ({e}): restore into a new data directory (--data-dir)",
                data_dir.display(),
                store_dir.display()
            ))
        })?;
        refuse_data(&store, data_dir).await?;
        Some(store)
    } else {
        None
    };
    let installed_key = data_dir.join(secrets::KEY_FILE);
    let key = match secrets_key {
        Some(k) => Some(k.to_path_buf()),
        None if installed_key.exists() => Some(installed_key.clone()),
        None => None,
    };
    let key_checked = match &key {
        Some(k) => {
            check_loads(&snapshot, Sealer::from_key_file(k)?)
                .await
                .map_err(|e| match e {
                    SnapshotError::Refused(m) => SnapshotError::Refused(format!(
                        "{m} (with the secrets key {}; nothing was written)",
                        k.display()
                    )),
                    e => e,
                })?;
            true
        }
        None if snapshot.has_sealed() => {
            return Err(SnapshotError::Refused(format!(
                "{} holds {} secrets and {} registry logins, sealed under the old coordinator's secrets key, and {} has no secrets.key: pass that key with --secrets-key FILE",
                file.display(),
                snapshot.count("secrets/"),
                snapshot.count("registries/"),
                data_dir.display()
            )));
        }
        None => {
            check_loads(&snapshot, Sealer::ephemeral()).await?;
            false
        }
    };

    if key.is_none() {
        // Nothing sealed comes back and the new coordinator makes a key of
        // its own: the old key's check would refuse it.
        snapshot
            .entries
            .retain(|(k, _)| k != crate::server::KEY_CHECK_KEY);
    }
    pki::create_dir_private(data_dir)?;
    pki::create_dir_private(&PkiPaths::new(data_dir).dir)?;
    let store: Arc<dyn Store> = match (target, existing) {
        (Some(target), _) => target,
        (None, Some(store)) => Arc::new(store),
        (None, None) => Arc::new(SledStore::open(&store_dir)?),
    };
    // Checked (again) on the opened store: it may have been filled since.
    refuse_data(&*store, data_dir).await?;
    for (name, contents) in &snapshot.files {
        pki::write_private(&data_dir.join(name), contents)?;
    }
    if let Some(k) = secrets_key {
        secrets::install_key(data_dir, k)?;
    }
    let plan_generation = restore_into(&*store, &snapshot).await?;
    Ok(Restored {
        keys: snapshot.entries.len(),
        services: snapshot.count("services/"),
        nodes: snapshot.count("nodes/"),
        secrets: snapshot.count("secrets/"),
        registry_logins: snapshot.count("registries/"),
        plan_generation,
        key_checked: key_checked && snapshot.has_sealed(),
        took: started.elapsed(),
    })
}

/// Refuses a store that holds any key, naming the data directory.
async fn refuse_data(store: &dyn Store, data_dir: &Path) -> Result<(), SnapshotError> {
    if let Some((key, _)) = store.scan_prefix("").await?.first() {
        let health = store.health().await;
        return Err(SnapshotError::Refused(format!(
            "{} already has a store with data ({}, key `{key}`): restore into a new data directory (--data-dir), or move that one away",
            data_dir.display(),
            health.location
        )));
    }
    Ok(())
}

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

/// `convoyd snapshot ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Save the store and the data directory's CA and admin token to FILE
    /// (mode 0600). Offline when no convoyd runs on DATA_DIR, else through
    /// its API (as its admin). secrets.key is NOT saved: keep it apart.
    Save {
        file: PathBuf,
        #[arg(long, env = "CONVOY_DATA_DIR")]
        data_dir: PathBuf,
        /// The running coordinator's API (its --api-listen).
        #[arg(long, env = "CONVOY_API", default_value = "https://127.0.0.1:7400")]
        api: String,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Restore FILE into a new DATA_DIR (no store there yet), with convoyd
    /// stopped; then start `convoyd serve --data-dir DATA_DIR`.
    Restore {
        file: PathBuf,
        #[arg(long, env = "CONVOY_DATA_DIR")]
        data_dir: PathBuf,
        /// The old coordinator's secrets.key (needed when the snapshot holds
        /// secrets or registry logins, unless DATA_DIR/secrets.key is it).
        #[arg(long, value_name = "FILE")]
        secrets_key: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where the store is, when it is not the data directory's sled store.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// `etcd://h1:2379,h2:2379[/prefix]` (`etcds://` for TLS): save from,
    /// or restore into, that etcd (read at one revision; restored into an
    /// empty prefix in one transaction). Default: DATA_DIR/store (sled).
    #[arg(long = "store", env = "CONVOY_STORE", default_value = "sled")]
    pub url: String,
    #[arg(long, env = "CONVOY_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    #[arg(long, env = "CONVOY_ETCD_CERT", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    #[arg(long, env = "CONVOY_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
}

impl StoreArgs {
    /// The etcd store named, or `None` for sled.
    async fn open_etcd(&self, data_dir: &Path) -> Result<Option<Arc<dyn Store>>, SnapshotError> {
        let url: crate::store::StoreUrl = self
            .url
            .parse()
            .map_err(|e: crate::store::InvalidStoreUrl| SnapshotError::Refused(e.to_string()))?;
        if matches!(url, crate::store::StoreUrl::Sled) {
            return Ok(None);
        }
        let tls = self.etcd_ca.clone().map(|ca| crate::store::EtcdTls {
            ca,
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
        });
        Ok(Some(
            crate::store::open_store(&url, data_dir, tls).await?.store,
        ))
    }
}

/// Runs a `convoyd snapshot` command and prints what it did.
pub async fn run(command: SnapshotCommand) -> Result<(), SnapshotError> {
    match command {
        SnapshotCommand::Save {
            file,
            data_dir,
            api,
            force,
            store,
        } => {
            let saved = match store.open_etcd(&data_dir).await? {
                // etcd reads every key at one revision: no coordinator needed.
                Some(etcd) => save_from_store(&*etcd, &data_dir, &file, force).await?,
                None => save(&data_dir, &file, &api, force).await?,
            };
            println!("{saved}");
        }
        SnapshotCommand::Restore {
            file,
            data_dir,
            secrets_key,
            store,
        } => {
            let target = store.open_etcd(&data_dir).await?;
            let restored = restore_to(&file, &data_dir, secrets_key.as_deref(), target).await?;
            println!("{restored}");
            println!(
                "start it with `convoyd serve --data-dir {}` (same --api-listen and --agent-listen addresses, or agents cannot find it)",
                data_dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

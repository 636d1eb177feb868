//! The snapshot file: its header and body, encoded and decoded with their
//! checks, and the data directory's files it carries, read and written.

use super::*;

/// The file of the server certificate's extra names, in the PKI directory.
const SANS_FILE: &str = "server-sans.json";
/// The longest header line read before a file is declared no snapshot.
const MAX_HEADER: usize = 64 << 10;
const TAG_KEY: u8 = b'K';
const TAG_FILE: u8 = b'F';

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
pub(super) fn data_files() -> Vec<(String, bool)> {
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

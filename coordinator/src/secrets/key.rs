//! The key file: created with 32 random bytes and mode 0600 on first use;
//! a file of another size or readable by others stops the coordinator,
//! naming the file.

use std::{
    fs,
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

use zeroize::Zeroizing;

use super::SecretsError;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secrets.key";
/// The key's length: XChaCha20-Poly1305 takes 256-bit keys.
pub const KEY_LEN: usize = 32;

pub(super) fn load_or_create(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, SecretsError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        _ => load(path),
    }
}

/// Reads an existing key file: a regular file of 32 bytes, mode 0600 (or
/// stricter); anything else is refused, naming the file.
pub(super) fn load(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, SecretsError> {
    let io = |action: &'static str| {
        move |source| SecretsError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    match fs::symlink_metadata(path) {
        Err(e) => Err(io("read")(e)),
        Ok(meta) => {
            if !meta.file_type().is_file() {
                return Err(SecretsError::KeyNotFile {
                    path: path.to_path_buf(),
                });
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SecretsError::KeyTooOpen {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            if meta.size() != KEY_LEN as u64 {
                return Err(SecretsError::KeyLength {
                    path: path.to_path_buf(),
                    len: meta.size(),
                });
            }
            let bytes = Zeroizing::new(fs::read(path).map_err(io("read"))?);
            let mut key = Zeroizing::new([0u8; KEY_LEN]);
            if bytes.len() != KEY_LEN {
                return Err(SecretsError::KeyLength {
                    path: path.to_path_buf(),
                    len: bytes.len() as u64,
                });
            }
            key.copy_from_slice(&bytes);
            Ok(key)
        }
    }
}

/// Writes a new key with `create_new`, so two coordinators racing on one
/// directory cannot both write one; the file is synced before use.
fn create(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, SecretsError> {
    let key = Zeroizing::new(rand::random::<[u8; KEY_LEN]>());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| SecretsError::Io {
            action: "create",
            path: path.to_path_buf(),
            source,
        })?;
    file.write_all(&*key)
        .and_then(|()| file.sync_all())
        .map_err(|source| SecretsError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })?;
    tracing::info!(path = %path.display(), "created the secrets key; back it up with the data directory");
    Ok(key)
}

/// Installs the key file `from` as `data_dir`'s key: copied to a temporary
/// file (mode 0600, synced) and renamed over `secrets.key`, so the key file
/// is always whole, then the directory is synced.
pub fn install_key(data_dir: &Path, from: &Path) -> Result<(), SecretsError> {
    let key = load(from)?;
    let target = data_dir.join(KEY_FILE);
    let temp = data_dir.join(format!("{KEY_FILE}.new"));
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SecretsError::Io {
            action,
            path,
            source,
        }
    };
    match fs::remove_file(&temp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("remove", &temp)(e));
        }
        _ => {}
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io("create", &temp))?;
    file.write_all(&key[..])
        .and_then(|()| file.sync_all())
        .map_err(io("write", &temp))?;
    fs::rename(&temp, &target).map_err(io("replace", &target))?;
    fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", data_dir))?;
    Ok(())
}

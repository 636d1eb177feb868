//! Unit files in the unit directory: read, written (atomically) and
//! deleted, never touching a file that lacks Convoy's marker.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{AGENT_UNIT, MANAGED_KEY, PREFIX, SUFFIX, WORKLOAD_KEY};

/// A unit file as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnDisk {
    Missing,
    /// Written by Convoy (it carries `X-Convoy-Managed=true`).
    Managed {
        content: String,
    },
    /// Not Convoy's: a file without the marker, a symlink (a mask), a
    /// directory, or a file that cannot be read.
    Foreign {
        path: PathBuf,
        why: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path} exists and was not written by Convoy ({why}): Convoy leaves it alone; remove it or use another unit name")]
    Foreign { path: PathBuf, why: String },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The unit directory Convoy writes into.
#[derive(Clone, Debug)]
pub struct UnitFiles {
    dir: PathBuf,
}

impl UnitFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, unit: &str) -> PathBuf {
        self.dir.join(unit)
    }

    /// What is at `unit`'s path.
    pub async fn read(&self, unit: &str) -> OnDisk {
        let path = self.path(unit);
        match tokio::fs::symlink_metadata(&path).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return OnDisk::Missing,
            Err(e) => {
                return OnDisk::Foreign {
                    path,
                    why: format!("cannot inspect it: {e}"),
                }
            }
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = tokio::fs::read_link(&path)
                    .await
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                let why = if target == "/dev/null" {
                    "it is masked".to_string()
                } else {
                    format!("it is a symlink to `{target}`")
                };
                return OnDisk::Foreign { path, why };
            }
            Ok(meta) if !meta.is_file() => {
                return OnDisk::Foreign {
                    path,
                    why: "it is not a regular file".to_string(),
                }
            }
            Ok(_) => {}
        }
        match tokio::fs::read_to_string(&path).await {
            Ok(content) if is_managed(&content) => OnDisk::Managed { content },
            Ok(_) => OnDisk::Foreign {
                path,
                why: format!("no {MANAGED_KEY}=true"),
            },
            Err(e) => OnDisk::Foreign {
                path,
                why: format!("cannot read it: {e}"),
            },
        }
    }

    /// Writes `content` as `unit`'s file (0644, a temporary file renamed
    /// over it), unless a file Convoy did not write is there.
    pub async fn write(&self, unit: &str, content: &str) -> Result<(), FileError> {
        if let OnDisk::Foreign { path, why } = self.read(unit).await {
            return Err(FileError::Foreign { path, why });
        }
        let dir = self.dir.clone();
        let unit = unit.to_string();
        let content = content.to_string();
        let path = self.path(&unit);
        tokio::task::spawn_blocking(move || write_atomically(&dir, &unit, content.as_bytes()))
            .await
            .map_err(|e| FileError::Io {
                context: "writing",
                path: path.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| FileError::Io {
                context: "writing",
                path,
                source,
            })
    }

    /// Deletes `unit`'s file if Convoy wrote it; a missing file is fine.
    pub async fn delete(&self, unit: &str) -> Result<(), FileError> {
        let path = self.path(unit);
        match self.read(unit).await {
            OnDisk::Missing => Ok(()),
            OnDisk::Foreign { path, why } => Err(FileError::Foreign { path, why }),
            OnDisk::Managed { .. } => match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(FileError::Io {
                    context: "deleting",
                    path,
                    source: e,
                }),
                _ => Ok(()),
            },
        }
    }

    /// The `convoy-*.service` files in the directory that Convoy wrote, by
    /// unit name, with the workload each names. A directory that cannot be
    /// read has none.
    pub async fn managed(&self) -> Result<BTreeMap<String, String>, FileError> {
        let mut out = BTreeMap::new();
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => {
                return Err(FileError::Io {
                    context: "listing",
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !name.starts_with(PREFIX) || !name.ends_with(SUFFIX) || name == AGENT_UNIT {
                continue;
            }
            if let OnDisk::Managed { content } = self.read(&name).await {
                let workload = key_of(&content, WORKLOAD_KEY).unwrap_or_default();
                out.insert(name, workload);
            }
        }
        Ok(out)
    }
}

/// Whether a unit file carries Convoy's marker.
pub fn is_managed(content: &str) -> bool {
    key_of(content, MANAGED_KEY).as_deref() == Some("true")
}

/// The value of `key=` on a line of its own.
pub fn key_of(content: &str, key: &str) -> Option<String> {
    content.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// Writes `dir/unit` as a temporary file renamed over it, mode 0644.
pub fn write_atomically(dir: &Path, unit: &str, bytes: &[u8]) -> std::io::Result<()> {
    // Not a unit name (leading dot, `.tmp`): systemd never loads it.
    let tmp = dir.join(format!(".{unit}.convoy.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        // Whatever the umask: systemd and admins read unit files.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(unit))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

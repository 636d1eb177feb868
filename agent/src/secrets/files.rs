//! Files on the secrets tmpfs: private directories, files written to a
//! temporary name and renamed, removal of stale ones, and the mount's file
//! system type from `/proc/self/mountinfo`.

use std::collections::HashSet;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Creates `dir` (and its parents) and makes it 0700; its canonical path.
pub(super) fn prepare_dir(dir: &Path) -> std::io::Result<PathBuf> {
    create_private_dir(dir)?;
    dir.canonicalize()
}

pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `value` at `path` unless a regular file with the same content,
/// owner and mode is there: to a temporary file first, then renamed.
pub(super) fn write_file(
    path: &Path,
    value: &[u8],
    owner: Option<(u32, u32)>,
    mode: u32,
) -> Result<(), String> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let same = meta.file_type().is_file()
            && meta.permissions().mode() & 0o777 == mode
            && owner.is_none_or(|(u, g)| meta.uid() == u && meta.gid() == g)
            && meta.len() == value.len() as u64
            && std::fs::read(path).is_ok_and(|old| Zeroizing::new(old).as_slice() == value);
        if same {
            return Ok(());
        }
    }
    let tmp = PathBuf::from(format!(
        "{}.tmp-{}-{:x}",
        path.display(),
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(value)?;
        drop(file);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing {}: {e}", path.display()));
    }
    Ok(())
}

/// Removes every entry of `dir` whose name is not in `keep` (whole
/// directories when `dirs`). Best effort.
pub(super) fn remove_others(dir: &Path, keep: &HashSet<String>, dirs: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.contains(&name) {
            continue;
        }
        let path = entry.path();
        let removed = if dirs && entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), "cannot remove old secret files: {e}");
        }
    }
}

/// The file system type of the mount `path` (canonical) is on, from the
/// text of `/proc/self/mountinfo`: the longest mount point that holds it.
pub fn fs_type_of(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let Some(fs) = right.split(' ').next() else {
            continue;
        };
        let point = PathBuf::from(unescape_mountinfo(point));
        if !path.starts_with(&point) {
            continue;
        }
        let depth = point.components().count();
        // A later mount on the same point hides an earlier one.
        if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            best = Some((depth, fs.to_string()));
        }
    }
    best.map(|(_, fs)| fs)
}

/// Mountinfo writes space, tab, newline and `\` as octal escapes.
fn unescape_mountinfo(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(d)) = (bytes[i], octal) {
            let n = d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(n).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

//! Compose configs on this node. Each config's content is written once, by
//! the agent, under its data directory (`configs/SHA256-UID-GID-MODE`:
//! content-addressed, written to a temporary file and renamed, so a file
//! there is always whole), and bind-mounted read-only at its target in the
//! container (a read-only mount: writing to it from the container fails).
//! The source paths are the agent's own, never the plan's, so they need no
//! `--allow-bind` grant and let no user path through. A file no container
//! mounts any more is removed when a container is removed.

use std::collections::HashSet;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use bollard::models::{Mount, MountTypeEnum};
use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;
use convoy_proto::{workload, ConfigFile, Workload};
use sha2::{Digest, Sha256};

use crate::runtime::RuntimeError;

/// The most bytes one config may hold (as the coordinator checks).
const MAX_CONFIG_BYTES: usize = 512 * 1024;

/// The configs of `workload`: whether it has any.
pub(super) fn has_configs(workload: &Workload) -> bool {
    matches!(&workload.runtime, Some(workload::Runtime::Container(spec)) if !spec.configs.is_empty())
}

/// Writes the configs of `workload` under `dir` (those already there are
/// kept) and returns their read-only mounts. Blocking file I/O: run it on
/// the blocking pool.
pub(super) fn prepare(dir: &Path, workload: &Workload) -> Result<Vec<Mount>, RuntimeError> {
    let Some(workload::Runtime::Container(spec)) = &workload.runtime else {
        return Ok(Vec::new());
    };
    if spec.configs.is_empty() {
        return Ok(Vec::new());
    }
    let fail = |config: &ConfigFile, message: String| RuntimeError::Engine {
        context: format!(
            "delivering config `{}` at `{}` for `{}`",
            config.name, config.target, workload.id
        ),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Engine {
        context: format!("creating the configs directory {}", dir.display()),
        message: e.to_string(),
    })?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    // The engine takes absolute sources only.
    let dir = &dir.canonicalize().map_err(|e| RuntimeError::Engine {
        context: format!("finding the configs directory {}", dir.display()),
        message: e.to_string(),
    })?;
    let mut mounts = Vec::with_capacity(spec.configs.len());
    for config in &spec.configs {
        check_target(&config.target).map_err(|m| fail(config, m))?;
        if config.content.len() > MAX_CONFIG_BYTES {
            return Err(fail(
                config,
                format!(
                    "{} bytes, over the limit of {MAX_CONFIG_BYTES}",
                    config.content.len()
                ),
            ));
        }
        // The name is the agent's digest, never the plan's text.
        let sha = hex::encode(Sha256::digest(&config.content));
        if !config.sha256.is_empty() && config.sha256 != sha {
            return Err(fail(
                config,
                "its content does not match its digest (a corrupt plan?)".to_string(),
            ));
        }
        let path = dir.join(file_name(&sha, config));
        write_once(&path, config).map_err(|m| fail(config, m))?;
        mounts.push(Mount {
            target: Some(config.target.clone()),
            source: Some(path.display().to_string()),
            typ: Some(MountTypeEnum::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }
    Ok(mounts)
}

/// `SHA256-UID-GID-MODE`: one file per content and ownership.
fn file_name(sha: &str, config: &ConfigFile) -> String {
    let id = |id: Option<u32>| id.map_or_else(|| "x".to_string(), |n| n.to_string());
    format!(
        "{sha}-{}-{}-{:o}",
        id(config.uid),
        id(config.gid),
        config.mode & 0o777
    )
}

/// An absolute path without `.` or `..` parts (the coordinator checks it
/// too; the agent does not trust the plan alone).
fn check_target(target: &str) -> Result<(), String> {
    let valid = target.starts_with('/')
        && target.len() <= 4096
        && !target.contains(['\0', ','])
        && target.split('/').any(|p| !p.is_empty())
        && target.split('/').all(|p| p != "." && p != "..");
    if valid {
        Ok(())
    } else {
        Err(format!("`{target}` is not an absolute file path"))
    }
}

/// Writes `path` unless a regular file is there already: to a temporary
/// file first (mode, owner), then renamed into place.
fn write_once(path: &Path, config: &ConfigFile) -> Result<(), String> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_file() {
            return Ok(());
        }
        std::fs::remove_file(path).map_err(|e| format!("removing {}: {e}", path.display()))?;
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
        file.write_all(&config.content)?;
        file.sync_all()?;
        drop(file);
        if config.uid.is_some() || config.gid.is_some() {
            std::os::unix::fs::chown(&tmp, config.uid, config.gid)?;
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(config.mode & 0o777))?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing {}: {e}", path.display()));
    }
    Ok(())
}

/// Removes the files under `dir` that no container on the engine mounts
/// (temporary files left by a crash too). Files a create in flight needs
/// are protected by the caller's lock.
pub(super) async fn collect_garbage(docker: &Docker, dir: &Path) {
    let Ok(summaries) = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
    else {
        return;
    };
    let used: HashSet<PathBuf> = summaries
        .into_iter()
        .flat_map(|s| s.mounts.unwrap_or_default())
        .filter_map(|m| m.source.map(PathBuf::from))
        .collect();
    let dir = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !used.contains(&path) {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), "cannot remove an unused config: {e}");
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use convoy_proto::ContainerSpec;

    use super::*;

    fn workload(configs: Vec<ConfigFile>) -> Workload {
        Workload {
            id: "default/web/0".to_string(),
            runtime: Some(workload::Runtime::Container(ContainerSpec {
                configs,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn config(content: &[u8], target: &str) -> ConfigFile {
        ConfigFile {
            target: target.to_string(),
            content: content.to_vec(),
            mode: 0o440,
            name: "app".to_string(),
            sha256: hex::encode(Sha256::digest(content)),
            ..Default::default()
        }
    }

    #[test]
    fn configs_are_written_once_by_digest_with_their_mode_and_mounted_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let configs = dir.path().join("configs");
        let w = workload(vec![config(b"port=80\n", "/etc/app.conf")]);
        let mounts = prepare(&configs, &w).unwrap();
        assert_eq!(mounts.len(), 1);
        let mount = &mounts[0];
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(mount.typ, Some(MountTypeEnum::BIND));
        assert_eq!(mount.target.as_deref(), Some("/etc/app.conf"));
        let source = PathBuf::from(mount.source.clone().unwrap());
        assert!(source.starts_with(&configs), "{}", source.display());
        assert_eq!(std::fs::read(&source).unwrap(), b"port=80\n");
        let mode = std::fs::metadata(&source).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o440);
        // Again: the same file, and nothing else left in the directory.
        let again = prepare(&configs, &w).unwrap();
        assert_eq!(again, mounts);
        assert_eq!(std::fs::read_dir(&configs).unwrap().count(), 1);
    }

    #[test]
    fn a_bad_target_or_digest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = workload(vec![config(b"x", "/etc/../shadow")]);
        let err = prepare(dir.path(), &w).unwrap_err().to_string();
        assert!(err.contains("not an absolute file path"), "{err}");
        let mut bad = config(b"x", "/x");
        bad.sha256 = "00".repeat(32);
        let err = prepare(dir.path(), &workload(vec![bad]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match its digest"), "{err}");
    }
}

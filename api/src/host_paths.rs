//! Host paths a container may bind-mount: an admin allows roots on each
//! node (`convoy-agent run --allow-bind PATH`); the coordinator places a
//! service with bind mounts only where every source is under one, and the
//! agent refuses any other. One rule, here, so the two never disagree.

/// The most allowed roots a node reports (the coordinator keeps no more).
pub const MAX_ALLOWED_BIND_PATHS: usize = 64;
/// The longest allowed root, in bytes (Linux's PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;

/// `path` made canonical: absolute, no empty or `.` components, no trailing
/// slash (`/` stays `/`). `..` is refused, not resolved: a path that climbs
/// is not what it looks like, and symbolic links are the host's business.
pub fn normalize(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` is not an absolute path"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("the path is longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.contains('\0') {
        return Err(format!("`{}` holds a NUL byte", path.escape_debug()));
    }
    let mut out = String::with_capacity(path.len());
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("`{path}` holds `..`: write the path without it")),
            part => {
                out.push('/');
                out.push_str(part);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The source of a volume in the short syntax `SRC:DST[:ro|rw]` when it is
/// a host path (a bind mount); `None` for a named volume.
pub fn bind_source(volume: &str) -> Option<&str> {
    let source = volume.split(':').next().unwrap_or(volume);
    source.starts_with('/').then_some(source)
}

/// Whether `root` covers `path`, component by component: `/srv/data`
/// covers `/srv/data` and `/srv/data/x`, not `/srv/database`. A path that
/// does not normalize (relative, or holding `..`) is covered by nothing.
pub fn covers(root: &str, path: &str) -> bool {
    let (Ok(root), Ok(path)) = (normalize(root), normalize(path)) else {
        return false;
    };
    root == "/"
        || path == root
        || path
            .strip_prefix(root.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether one of `roots` covers `path`.
pub fn allowed<S: AsRef<str>>(roots: &[S], path: &str) -> bool {
    roots.iter().any(|root| covers(root.as_ref(), path))
}

/// The bind sources of `volumes` that none of `roots` covers.
pub fn refused<'a, S: AsRef<str>>(roots: &[S], volumes: &'a [String]) -> Vec<&'a str> {
    volumes
        .iter()
        .filter_map(|v| bind_source(v))
        .filter(|source| !allowed(roots, source))
        .collect()
}

/// `path` as the host will mount it: symbolic links resolved in its
/// longest existing prefix, the missing rest appended (Docker creates it).
/// Without this, a container allowed `/srv/data` could plant
/// `/srv/data/up -> /` and a later bind of `/srv/data/up` would mount `/`.
/// A missing component that is a dangling link is refused. Reads the
/// host's filesystem: call it where the mount happens (the agent).
pub fn resolve_on_host(path: &str) -> Result<String, String> {
    use std::path::{Path, PathBuf};
    let normal = normalize(path)?;
    let mut existing = PathBuf::from(&normal);
    let mut missing: Vec<std::ffi::OsString> = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(mut real) => {
                real.extend(missing.iter().rev());
                let real = real
                    .to_str()
                    .ok_or_else(|| format!("`{normal}` resolves to a path that is not UTF-8"))?
                    .to_string();
                return normalize(&real);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(&existing).is_ok() {
                    return Err(format!(
                        "`{}` is a symbolic link to nothing",
                        existing.display()
                    ));
                }
                let Some(name) = existing.file_name().map(|n| n.to_os_string()) else {
                    return Err(format!("no part of `{normal}` exists"));
                };
                missing.push(name);
                existing = existing
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("/"));
            }
            Err(e) => return Err(format!("cannot resolve `{normal}`: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_dots_doubled_and_trailing_slashes_and_refuses_climbing() {
        assert_eq!(normalize("/srv/data/").unwrap(), "/srv/data");
        assert_eq!(normalize("//srv/./data//x").unwrap(), "/srv/data/x");
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("///").unwrap(), "/");
        assert!(normalize("srv/data")
            .unwrap_err()
            .contains("not an absolute path"));
        assert!(normalize("/srv/../etc").unwrap_err().contains("`..`"));
        assert!(normalize("").is_err());
    }

    #[test]
    fn a_root_covers_paths_under_it_by_whole_components() {
        assert!(covers("/srv/data", "/srv/data"));
        assert!(covers("/srv/data", "/srv/data/x/y"));
        assert!(covers("/srv/data/", "/srv/data/x"));
        assert!(covers("/srv/data", "/srv/data/"));
        assert!(!covers("/srv/data", "/srv/database"));
        assert!(!covers("/srv/data", "/srv"));
        assert!(!covers("/srv/data", "/"));
        assert!(covers("/", "/etc"));
        assert!(covers("/", "/"));
    }

    #[test]
    fn a_path_that_climbs_is_never_covered() {
        assert!(!covers("/srv/data", "/srv/data/../../etc"));
        assert!(!covers("/", "/srv/.."));
        assert!(!covers("/srv/data/..", "/srv/x"));
        assert!(!covers("relative", "relative/x"));
    }

    #[test]
    fn only_host_paths_are_bind_sources_and_refused_lists_the_uncovered() {
        assert_eq!(bind_source("/srv/data:/data:ro"), Some("/srv/data"));
        assert_eq!(bind_source("pgdata:/var/lib/postgresql"), None);
        let volumes = vec![
            "/srv/data/a:/a".to_string(),
            "cache:/cache".to_string(),
            "/:/host".to_string(),
            "/srv/database:/db".to_string(),
        ];
        assert_eq!(
            refused(&["/srv/data"], &volumes),
            vec!["/", "/srv/database"]
        );
        assert!(refused(&["/"], &volumes).is_empty());
        assert_eq!(refused::<&str>(&[], &volumes).len(), 3);
    }

    #[test]
    fn resolving_follows_links_in_the_existing_prefix_and_keeps_the_missing_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let root_s = root.to_str().unwrap();
        std::fs::create_dir(root.join("data")).unwrap();
        std::os::unix::fs::symlink("/", root.join("data/up")).unwrap();
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("data/dangling")).unwrap();
        assert_eq!(
            resolve_on_host(&format!("{root_s}/data/x/y")).unwrap(),
            format!("{root_s}/data/x/y")
        );
        assert_eq!(resolve_on_host(&format!("{root_s}/data/up")).unwrap(), "/");
        assert_eq!(
            resolve_on_host(&format!("{root_s}/data/up/etc")).unwrap(),
            "/etc"
        );
        let err = resolve_on_host(&format!("{root_s}/data/dangling/x")).unwrap_err();
        assert!(err.contains("symbolic link to nothing"), "{err}");
        assert!(resolve_on_host("/srv/../etc").is_err());
    }
}

//! A service's mount in the short syntax (`SRC:DST[:OPTS]`, or a lone
//! `DST`), and the checks on container paths, host paths and volume names.

use crate::spec::{MountKind, MountSpec};

/// The short syntax: `DST` (an anonymous volume), or `SRC:DST[:OPTS]`
/// with `SRC` a host path or a volume key and `OPTS` a comma-separated
/// list of `ro`, `rw`, `nocopy` (volumes) and a propagation (binds).
pub(super) fn short(spec: &str) -> Result<MountSpec, String> {
    let invalid = |why: &str| format!("invalid volume `{spec}`: {why}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => return Err(invalid("expected `SRC:DST[:ro|rw]` or `DST`")),
    };
    let target = container_path(target).map_err(|why| invalid(&why))?;
    let mut mount = MountSpec {
        target,
        ..MountSpec::default()
    };
    if parts.len() == 1 {
        // An anonymous volume.
    } else if source.is_empty() {
        return Err(invalid("the source is empty"));
    } else if source.starts_with('.') || source.starts_with('~') {
        return Err(invalid(
            "relative host paths are not supported, as containers may run on another machine; \
             use an absolute path or a named volume",
        ));
    } else if source.starts_with('/') {
        mount.kind = MountKind::Bind;
        mount.source = host_path(source).map_err(|why| invalid(&why))?;
        // Docker creates a missing host path for the short syntax.
        mount.bind_create_host_path = true;
    } else {
        volume_name(source).map_err(|why| invalid(&why))?;
        mount.source = source.to_owned();
    }
    if parts.len() == 3 {
        let mut mode = None;
        for option in options.split(',') {
            match option {
                "ro" | "rw" if mode.is_some() => {
                    return Err(invalid("give one mode, `ro` or `rw`"));
                }
                "ro" | "rw" => mode = Some(option == "ro"),
                "nocopy" if mount.kind == MountKind::Volume => mount.volume_nocopy = true,
                "nocopy" => return Err(invalid("`nocopy` applies to volumes, not host paths")),
                "z" | "Z" => {
                    return Err(invalid(
                        "`z` and `Z` relabel the files for SELinux, on the host for a bind \
                         mount, which Convoy does not do: remove the option",
                    ))
                }
                p if PROPAGATIONS.contains(&p) && mount.kind == MountKind::Bind => {
                    mount.bind_propagation = p.to_owned();
                }
                _ => {
                    return Err(invalid(
                        "the mode must be `ro` or `rw` (with `nocopy` for a volume, or a \
                         propagation such as `rshared` for a host path)",
                    ))
                }
            }
        }
        mount.read_only = mode.unwrap_or(false);
    }
    Ok(mount)
}

pub(super) const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

pub(super) fn container_path(target: &str) -> Result<String, String> {
    if target.starts_with('/') && !target.contains('\0') {
        Ok(target.to_owned())
    } else {
        Err(format!(
            "the target inside the container must be an absolute path, not `{target}`"
        ))
    }
}

/// A bind mount's source: an absolute path, normalized; `..` refused.
pub(super) fn host_path(source: &str) -> Result<String, String> {
    if source.starts_with('.') || source.starts_with('~') {
        return Err(
            "relative host paths are not supported, as containers may run on another \
             machine; use an absolute path or a named volume"
                .to_owned(),
        );
    }
    if source.contains([':', ',']) {
        return Err(format!(
            "host path `{source}` holds `:` or `,`, which Docker's bind syntax cannot carry: \
             mount a directory above it"
        ));
    }
    convoy_api::host_paths::normalize(source)
}

/// A volume's key (in `volumes:` and the services' mounts) or Docker name.
pub(super) fn volume_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128;
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, up to 128 \
             characters); a host path starts with `/`"
        ))
    }
}

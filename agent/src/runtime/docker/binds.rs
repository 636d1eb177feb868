//! The bind sources of a workload as this host will mount them: a source
//! under an allowed root may be a symbolic link out of it (one a container
//! with a writable bind planted), so the agent checks where each source
//! really is, against where each root really is, just before create.

use convoy_api::host_paths;
use convoy_proto::{workload, Workload};

use crate::runtime::RuntimeError;

/// Refuses a workload whose bind source, with symbolic links resolved on
/// this host, lies under none of `allowed` (also resolved).
pub(super) fn check_resolved(
    node: &str,
    workload: &Workload,
    allowed: &[String],
) -> Result<(), RuntimeError> {
    let Some(workload::Runtime::Container(spec)) = &workload.runtime else {
        return Ok(());
    };
    let sources = super::volumes::bind_sources(spec);
    if sources.is_empty() {
        return Ok(());
    }
    // A root that does not resolve allows nothing.
    let roots: Vec<String> = allowed
        .iter()
        .filter_map(|r| host_paths::resolve_on_host(r).ok())
        .collect();
    for source in sources {
        let refuse = |why: String| {
            RuntimeError::NotAllowed(format!(
                "node `{node}` refuses the bind mount of host path `{source}` for `{}`: {why}",
                workload.id
            ))
        };
        let real = host_paths::resolve_on_host(source).map_err(refuse)?;
        if !host_paths::allowed(&roots, &real) {
            return Err(refuse(format!(
                "it resolves to `{real}`, under none of the allowed roots ({}); \
                 an admin allows it by running convoy-agent with `--allow-bind {real}`",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use convoy_proto::ContainerSpec;

    use super::*;

    fn binding(volumes: &[String]) -> Workload {
        Workload {
            id: "default/web/1".into(),
            runtime: Some(workload::Runtime::Container(ContainerSpec {
                image: "x".into(),
                volumes: volumes.to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    /// Issue 14: a link planted under an allowed root must not carry a
    /// bind out of it.
    #[test]
    fn a_symbolic_link_out_of_an_allowed_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let data = root.join("data");
        std::fs::create_dir_all(data.join("web")).unwrap();
        std::os::unix::fs::symlink("/", data.join("up")).unwrap();
        let data = data.to_str().unwrap().to_string();
        let allowed = [data.clone()];

        let inside = binding(&[format!("{data}/web:/w"), format!("{data}/new/dir:/n")]);
        assert!(check_resolved("n1", &inside, &allowed).is_ok());

        let out = binding(&[format!("{data}/up:/host")]);
        let err = check_resolved("n1", &out, &allowed)
            .unwrap_err()
            .reason("n1");
        assert!(
            err.contains(&format!("host path `{data}/up`")) && err.contains("resolves to `/`"),
            "{err}"
        );

        // A root reached through a link is where the link points.
        let alias = root.join("alias");
        std::os::unix::fs::symlink(&data, &alias).unwrap();
        let alias = alias.to_str().unwrap().to_string();
        let through = binding(&[format!("{data}/web:/w")]);
        assert!(check_resolved("n1", &through, &[alias]).is_ok());
    }
}

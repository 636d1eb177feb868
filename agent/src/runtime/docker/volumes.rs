//! Volumes on the node: the Docker names of a workload's volumes, the
//! mounts of its create request, and the creation of its named and
//! anonymous volumes before the container, labelled as Convoy's.
//!
//! A declared volume is `convoy-ENV-KEY` (its `name:` verbatim when the
//! spec gives one, the existing volume for an external one); an anonymous
//! one is `convoy-ENV-SERVICE-INDEX-HASH`, one per instance and target, so
//! that a new revision of the instance mounts the same data. Nothing here
//! removes a volume: revisions, restarts and `convoy delete` keep them.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{
    Mount as DockerMount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions,
    MountTypeEnum, MountVolumeOptions, VolumeCreateOptions,
};
use bollard::query_parameters::{ListContainersOptions, ListVolumesOptions, RemoveVolumeOptions};
use bollard::Docker;
use convoy_proto::{workload, ContainerSpec, Mount, VolumeDecl, VolumeInfo, Workload};
use sha2::{Digest, Sha256};

use super::errors::classify;
use crate::runtime::{labels, RuntimeError};

/// The driver Docker uses when none is given.
const LOCAL_DRIVER: &str = "local";

/// A volume the container mounts, as the agent makes sure of it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Needed {
    /// Its Docker name.
    pub name: String,
    /// How to create it when missing; `None`: an external volume, which
    /// must exist.
    pub create: Option<VolumeCreateOptions>,
}

/// The Docker name of a declared volume of environment `env`.
pub(crate) fn declared_name(env: &str, decl: &VolumeDecl) -> String {
    if !decl.name.is_empty() {
        decl.name.clone()
    } else if decl.external {
        decl.key.clone()
    } else {
        format!("convoy-{env}-{}", decl.key)
    }
}

/// What an anonymous volume at `target` of `workload`'s instance is named
/// after: `SERVICE-INDEX-HASH`, HASH 12 hex digits of the target's SHA-256.
fn anonymous_key(workload: &Workload, target: &str) -> String {
    let digest = Sha256::digest(target.as_bytes());
    format!(
        "{}-{}-{}",
        workload.service,
        workload.index,
        &hex::encode(digest)[..12]
    )
}

/// The Docker name of the anonymous volume at `target` of `workload`.
pub(super) fn anonymous_name(workload: &Workload, target: &str) -> String {
    format!(
        "convoy-{}-{}",
        workload.env,
        anonymous_key(workload, target)
    )
}

fn container_spec(workload: &Workload) -> Option<&ContainerSpec> {
    match &workload.runtime {
        Some(workload::Runtime::Container(spec)) => Some(spec),
        Some(workload::Runtime::Unit(_) | workload::Runtime::Swarm(_)) | None => None,
    }
}

/// The host paths a container spec bind-mounts: those of the short
/// syntax of old plans (`volumes`), then those of `mounts`.
pub(super) fn bind_sources(spec: &ContainerSpec) -> Vec<&str> {
    let legacy = spec
        .volumes
        .iter()
        .filter_map(|v| convoy_api::host_paths::bind_source(v));
    let mounts = spec
        .mounts
        .iter()
        .filter(|m| m.r#type == "bind")
        .map(|m| m.source.as_str());
    legacy.chain(mounts).collect()
}

fn refuse(workload: &Workload, message: String) -> RuntimeError {
    RuntimeError::Engine {
        context: format!("mounting the volumes of `{}`", workload.id),
        message,
    }
}

/// The volumes `workload`'s container mounts, each once, in order.
pub(super) fn needed(workload: &Workload) -> Result<Vec<Needed>, RuntimeError> {
    let Some(spec) = container_spec(workload) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Needed> = Vec::new();
    for mount in spec.mounts.iter().filter(|m| m.r#type == "volume") {
        let needed = if mount.source.is_empty() {
            let key = anonymous_key(workload, &mount.target);
            Needed {
                name: anonymous_name(workload, &mount.target),
                create: Some(VolumeCreateOptions {
                    name: Some(anonymous_name(workload, &mount.target)),
                    driver: Some(LOCAL_DRIVER.to_string()),
                    labels: Some(HashMap::from([
                        (labels::MANAGED.to_string(), "true".to_string()),
                        (labels::ENV.to_string(), workload.env.clone()),
                        (labels::VOLUME.to_string(), key),
                        (labels::ANONYMOUS.to_string(), "true".to_string()),
                        (labels::SERVICE.to_string(), workload.service.clone()),
                        (labels::INSTANCE.to_string(), workload.index.to_string()),
                    ])),
                    ..Default::default()
                }),
            }
        } else {
            let decl = declaration(workload, spec, &mount.source)?;
            let name = declared_name(&workload.env, decl);
            let create = (!decl.external).then(|| {
                // Convoy's labels win over the spec's, as on containers.
                let mut volume_labels: HashMap<String, String> =
                    decl.labels.clone().into_iter().collect();
                volume_labels.insert(labels::MANAGED.to_string(), "true".to_string());
                volume_labels.insert(labels::ENV.to_string(), workload.env.clone());
                volume_labels.insert(labels::VOLUME.to_string(), decl.key.clone());
                VolumeCreateOptions {
                    name: Some(name.clone()),
                    driver: Some(if decl.driver.is_empty() {
                        LOCAL_DRIVER.to_string()
                    } else {
                        decl.driver.clone()
                    }),
                    driver_opts: (!decl.driver_opts.is_empty())
                        .then(|| decl.driver_opts.clone().into_iter().collect()),
                    labels: Some(volume_labels),
                    ..Default::default()
                }
            });
            Needed { name, create }
        };
        if !out.iter().any(|n| n.name == needed.name) {
            out.push(needed);
        }
    }
    Ok(out)
}

fn declaration<'a>(
    workload: &Workload,
    spec: &'a ContainerSpec,
    key: &str,
) -> Result<&'a VolumeDecl, RuntimeError> {
    spec.named_volumes
        .iter()
        .find(|d| d.key == key)
        .ok_or_else(|| {
            refuse(
                workload,
                format!("the plan mounts volume `{key}` but does not declare it"),
            )
        })
}

/// The create request's mounts: `Mounts` for volumes, tmpfs and binds that
/// must exist, and `Binds` strings for binds that create their host path
/// (the engine's Mounts API does not create one on 20.10).
pub(super) fn mounts_of(
    workload: &Workload,
) -> Result<(Vec<DockerMount>, Vec<String>), RuntimeError> {
    let Some(spec) = container_spec(workload) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut mounts = Vec::new();
    let mut binds = Vec::new();
    for mount in &spec.mounts {
        let Mount {
            r#type,
            source,
            target,
            read_only,
            bind_propagation,
            bind_create_host_path,
            volume_nocopy,
            tmpfs_size_bytes,
            tmpfs_mode,
        } = mount;
        match r#type.as_str() {
            "volume" => {
                let name = if source.is_empty() {
                    anonymous_name(workload, target)
                } else {
                    declared_name(&workload.env, declaration(workload, spec, source)?)
                };
                mounts.push(DockerMount {
                    typ: Some(MountTypeEnum::VOLUME),
                    source: Some(name),
                    target: Some(target.clone()),
                    read_only: read_only.then_some(true),
                    volume_options: volume_nocopy.then(|| MountVolumeOptions {
                        no_copy: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            "bind" if *bind_create_host_path => {
                let mut options: Vec<&str> = Vec::new();
                if *read_only {
                    options.push("ro");
                }
                if !bind_propagation.is_empty() {
                    options.push(bind_propagation);
                }
                binds.push(if options.is_empty() {
                    format!("{source}:{target}")
                } else {
                    format!("{source}:{target}:{}", options.join(","))
                });
            }
            "bind" => mounts.push(DockerMount {
                typ: Some(MountTypeEnum::BIND),
                source: Some(source.clone()),
                target: Some(target.clone()),
                read_only: read_only.then_some(true),
                bind_options: (!bind_propagation.is_empty()).then(|| MountBindOptions {
                    propagation: Some(propagation(bind_propagation)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "tmpfs" => mounts.push(DockerMount {
                typ: Some(MountTypeEnum::TMPFS),
                target: Some(target.clone()),
                read_only: read_only.then_some(true),
                tmpfs_options: (*tmpfs_size_bytes != 0 || *tmpfs_mode != 0).then(|| {
                    MountTmpfsOptions {
                        size_bytes: (*tmpfs_size_bytes != 0)
                            .then(|| i64::try_from(*tmpfs_size_bytes).unwrap_or(i64::MAX)),
                        mode: (*tmpfs_mode != 0).then(|| i64::from(*tmpfs_mode)),
                        ..Default::default()
                    }
                }),
                ..Default::default()
            }),
            other => {
                return Err(refuse(
                    workload,
                    format!("mount type `{other}` of `{target}` is not one this agent knows"),
                ))
            }
        }
    }
    Ok((mounts, binds))
}

fn propagation(text: &str) -> MountBindOptionsPropagationEnum {
    match text {
        "private" => MountBindOptionsPropagationEnum::PRIVATE,
        "shared" => MountBindOptionsPropagationEnum::SHARED,
        "rshared" => MountBindOptionsPropagationEnum::RSHARED,
        "slave" => MountBindOptionsPropagationEnum::SLAVE,
        "rslave" => MountBindOptionsPropagationEnum::RSLAVE,
        _ => MountBindOptionsPropagationEnum::RPRIVATE,
    }
}

/// Makes sure each volume in `needed` is on the node: creates the missing
/// ones; an existing one with another driver, or a missing external one,
/// is an error naming the volume and the node.
pub(super) async fn ensure(
    docker: &Docker,
    node: &str,
    needed: &[Needed],
) -> Result<(), RuntimeError> {
    for volume in needed {
        let wanted_driver = volume
            .create
            .as_ref()
            .and_then(|c| c.driver.clone())
            .unwrap_or_else(|| LOCAL_DRIVER.to_string());
        match docker.inspect_volume(&volume.name).await {
            Ok(existing) => {
                if volume.create.is_some() && existing.driver != wanted_driver {
                    return Err(RuntimeError::Engine {
                        context: format!("mounting volume `{}`", volume.name),
                        message: format!(
                            "node `{node}` has volume `{}` with driver `{}`, the spec wants \
                             `{wanted_driver}`: remove the volume on the node (its data goes \
                             with it) or change the spec's `driver:`",
                            volume.name, existing.driver
                        ),
                    });
                }
                continue;
            }
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(classify(&format!("inspecting volume `{}`", volume.name), e)),
        }
        let Some(create) = &volume.create else {
            return Err(RuntimeError::Engine {
                context: format!("mounting volume `{}`", volume.name),
                message: format!(
                    "the spec names it `external: true` but node `{node}` has no volume of \
                     that name: create it on the node (`docker volume create {}`) or drop \
                     `external: true`",
                    volume.name
                ),
            });
        };
        // Another agent on this engine may create it at the same time: the
        // engine answers with the existing volume when the driver agrees.
        docker.create_volume(create.clone()).await.map_err(|e| {
            classify(
                &format!("creating volume `{}` on node `{node}`", volume.name),
                e,
            )
        })?;
    }
    Ok(())
}

/// Removes the anonymous volumes of instance `workload_id`
/// (`ENV/SERVICE/INDEX`), found by their labels. Best effort: a volume
/// still in use (or gone meanwhile) stays as it is.
pub(super) async fn remove_anonymous(docker: &Docker, workload_id: &str) {
    let mut parts = workload_id.splitn(3, '/');
    let (Some(env), Some(service), Some(index)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{}=true", labels::ANONYMOUS),
            format!("{}={env}", labels::ENV),
            format!("{}={service}", labels::SERVICE),
            format!("{}={index}", labels::INSTANCE),
        ],
    )]);
    let Ok(listed) = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
    else {
        return;
    };
    for volume in listed.volumes.unwrap_or_default() {
        let _ = docker
            .remove_volume(&volume.name, None::<RemoveVolumeOptions>)
            .await;
    }
}

/// Convoy's volumes on the engine, of `env` only when it is not empty,
/// each with the names of the containers that mount it.
pub(super) async fn list(docker: &Docker, env: &str) -> Result<Vec<VolumeInfo>, RuntimeError> {
    let mut wanted = vec![format!("{}=true", labels::MANAGED)];
    if !env.is_empty() {
        wanted.push(format!("{}={env}", labels::ENV));
    }
    let listed = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(HashMap::from([("label".to_string(), wanted)])),
        }))
        .await
        .map_err(|e| classify("listing volumes", e))?;
    let mut out = Vec::new();
    for volume in listed.volumes.unwrap_or_default() {
        let label = |key: &str| volume.labels.get(key).cloned().unwrap_or_default();
        let users = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "volume".to_string(),
                    vec![volume.name.clone()],
                )])),
                ..Default::default()
            }))
            .await
            .map_err(|e| classify(&format!("listing the users of volume `{}`", volume.name), e))?;
        out.push(VolumeInfo {
            name: volume.name.clone(),
            env: label(labels::ENV),
            key: label(labels::VOLUME),
            anonymous: label(labels::ANONYMOUS) == "true",
            used_by: users
                .into_iter()
                .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
                .map(|n| n.trim_start_matches('/').to_string())
                .collect(),
            error: String::new(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Removes the named volumes of `env` whose key is one of `keys`; each
/// tried comes back, with the engine's reason when it stays.
pub(super) async fn remove(
    docker: &Docker,
    env: &str,
    keys: &[String],
) -> Result<Vec<VolumeInfo>, RuntimeError> {
    let mut out = Vec::new();
    for mut volume in list(docker, env).await? {
        if volume.anonymous || volume.env != env || !keys.contains(&volume.key) {
            continue;
        }
        if let Err(e) = docker
            .remove_volume(&volume.name, None::<RemoveVolumeOptions>)
            .await
        {
            volume.error = super::errors::short(&e.to_string());
        }
        out.push(volume);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(mounts: Vec<Mount>, decls: Vec<VolumeDecl>) -> Workload {
        Workload {
            id: "staging/web/2".into(),
            service: "web".into(),
            env: "staging".into(),
            index: 2,
            runtime: Some(workload::Runtime::Container(ContainerSpec {
                image: "x".into(),
                mounts,
                named_volumes: decls,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn mount(kind: &str, source: &str, target: &str) -> Mount {
        Mount {
            r#type: kind.into(),
            source: source.into(),
            target: target.into(),
            ..Default::default()
        }
    }

    #[test]
    fn volumes_are_named_per_environment_unless_the_spec_names_them() {
        let decl = |key: &str, name: &str, external| VolumeDecl {
            key: key.into(),
            name: name.into(),
            external,
            ..Default::default()
        };
        assert_eq!(
            declared_name("prod", &decl("data", "", false)),
            "convoy-prod-data"
        );
        assert_eq!(
            declared_name("prod", &decl("data", "shared", false)),
            "shared"
        );
        assert_eq!(declared_name("prod", &decl("old", "", true)), "old");
        assert_eq!(declared_name("prod", &decl("old", "cache", true)), "cache");
        let w = workload(Vec::new(), Vec::new());
        let name = anonymous_name(&w, "/data");
        assert!(name.starts_with("convoy-staging-web-2-"), "{name}");
        assert_eq!(name.len(), "convoy-staging-web-2-".len() + 12);
        assert_ne!(name, anonymous_name(&w, "/other"));
    }

    #[test]
    fn the_create_request_mounts_volumes_binds_and_tmpfs() {
        let w = workload(
            vec![
                Mount {
                    read_only: true,
                    volume_nocopy: true,
                    ..mount("volume", "data", "/data")
                },
                mount("volume", "", "/anon"),
                Mount {
                    bind_create_host_path: true,
                    read_only: true,
                    bind_propagation: "rshared".into(),
                    ..mount("bind", "/srv/a", "/a")
                },
                Mount {
                    bind_propagation: "rslave".into(),
                    ..mount("bind", "/srv/b", "/b")
                },
                Mount {
                    tmpfs_size_bytes: 1 << 20,
                    tmpfs_mode: 0o1777,
                    ..mount("tmpfs", "", "/t")
                },
            ],
            vec![VolumeDecl {
                key: "data".into(),
                labels: [("team".to_string(), "web".to_string())].into(),
                ..Default::default()
            }],
        );
        let (mounts, binds) = mounts_of(&w).unwrap();
        assert_eq!(binds, ["/srv/a:/a:ro,rshared"]);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[0].source.as_deref(), Some("convoy-staging-data"));
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(
            mounts[0].volume_options.as_ref().unwrap().no_copy,
            Some(true)
        );
        assert_eq!(mounts[1].source, Some(anonymous_name(&w, "/anon")));
        assert_eq!(mounts[2].typ, Some(MountTypeEnum::BIND));
        assert_eq!(
            mounts[2].bind_options.as_ref().unwrap().propagation,
            Some(MountBindOptionsPropagationEnum::RSLAVE)
        );
        let tmpfs = mounts[3].tmpfs_options.as_ref().unwrap();
        assert_eq!(
            (tmpfs.size_bytes, tmpfs.mode),
            (Some(1 << 20), Some(0o1777))
        );

        let needed = needed(&w).unwrap();
        assert_eq!(needed.len(), 2);
        let labels = needed[0].create.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(labels[labels::MANAGED], "true");
        assert_eq!(labels[labels::ENV], "staging");
        assert_eq!(labels[labels::VOLUME], "data");
        assert_eq!(labels["team"], "web");
        let anon = needed[1].create.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(anon[labels::ANONYMOUS], "true");
        assert_eq!(
            bind_sources(container_spec(&w).unwrap()),
            ["/srv/a", "/srv/b"]
        );
    }

    #[test]
    fn an_undeclared_or_unknown_mount_is_an_error() {
        let w = workload(vec![mount("volume", "data", "/d")], Vec::new());
        assert!(mounts_of(&w).is_err() && needed(&w).is_err());
        let w = workload(vec![mount("npipe", "x", "/d")], Vec::new());
        assert!(mounts_of(&w).is_err());
    }

    /// Issue 14: a host path in the long syntax is refused on the node
    /// unless `--allow-bind` covers it, as one in the short syntax.
    #[test]
    fn a_long_syntax_bind_outside_the_allowed_roots_is_refused_on_the_node() {
        let w = workload(vec![mount("bind", "/etc", "/host-etc")], Vec::new());
        let check = |roots: &[&str]| {
            let roots: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
            super::super::create::check_binds("n1", &w, &roots)
        };
        let err = check(&["/srv/data"]).unwrap_err().to_string();
        assert!(
            err.contains("node `n1` refuses the bind mount of host path `/etc`")
                && err.contains("--allow-bind /etc"),
            "{err}"
        );
        assert!(check(&[]).is_err());
        assert!(check(&["/etc"]).is_ok());
    }

    /// Removes the test's volumes, whatever happened.
    struct Gone(Vec<String>);

    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&self.0)
                .output();
        }
    }

    /// Against the real engine: a missing volume is created with Convoy's
    /// labels, driver options included; one of another driver, and a
    /// missing external one, are errors naming volume and node.
    #[tokio::test]
    async fn volumes_are_created_labelled_and_checked_on_the_real_engine() {
        let docker = Docker::connect_with_local_defaults().unwrap();
        let env = format!("vt{}", std::process::id());
        let _gone = Gone(vec![
            format!("convoy-{env}-data"),
            format!("convoy-{env}-other"),
        ]);
        let mut w = workload(
            vec![mount("volume", "data", "/d")],
            vec![VolumeDecl {
                key: "data".into(),
                driver_opts: [("type", "tmpfs"), ("device", "tmpfs")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }],
        );
        w.env = env.clone();
        ensure(&docker, "n1", &needed(&w).unwrap()).await.unwrap();
        // Twice is fine: it is there.
        ensure(&docker, "n1", &needed(&w).unwrap()).await.unwrap();
        let volume = docker
            .inspect_volume(&format!("convoy-{env}-data"))
            .await
            .unwrap();
        assert_eq!(volume.labels[labels::MANAGED], "true");
        assert_eq!(volume.labels[labels::ENV], env);
        assert_eq!(volume.labels[labels::VOLUME], "data");
        assert_eq!(volume.options["device"], "tmpfs");

        let other = format!("convoy-{env}-other");
        let made = std::process::Command::new("docker")
            .args(["volume", "create", &other])
            .output()
            .unwrap();
        assert!(made.status.success());
        let wanted = Needed {
            name: other.clone(),
            create: Some(VolumeCreateOptions {
                name: Some(other.clone()),
                driver: Some("some-plugin".into()),
                ..Default::default()
            }),
        };
        let err = ensure(&docker, "n1", &[wanted])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "node `n1` has volume `{other}` with driver `local`"
            )),
            "{err}"
        );
        let external = Needed {
            name: format!("convoy-{env}-nowhere"),
            create: None,
        };
        let err = ensure(&docker, "n1", &[external])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("node `n1` has no volume of that name"),
            "{err}"
        );
    }
}

//! Environments: which nodes serve which environment (the `env` label),
//! so placement never crosses them, and valid environment names.

use convoy_api::host_paths;

use super::*;

/// A node as placement sees it: name, facts, whether its agent is
/// connected and whether it is cordoned.
pub(super) type PlacementNode = (String, Arc<Facts>, bool, bool);

/// Each known node's name, facts, whether its agent is connected and
/// whether it is cordoned; removed nodes are left out.
pub(super) fn node_views(next: &Desired, connected: &HashMap<String, bool>) -> Vec<PlacementNode> {
    // A removed node runs nothing and takes nothing (its instances were
    // moved, or wait pending).
    next.nodes
        .values()
        .filter(|n| n.removed_unix_ms == 0)
        .map(|n| {
            let up = connected.get(&n.name).copied().unwrap_or(false);
            (n.name.clone(), n.facts.clone(), up, n.cordoned)
        })
        .collect()
}

/// The node label that names the environments a node serves
/// (comma-separated; `*`: every one). Nodes without it serve `default`.
pub use convoy_api::env::ENV_LABEL;

/// Whether a node with these facts serves environment `env`.
pub fn node_serves(facts: &Facts, env: &str) -> bool {
    match facts.labels.get(ENV_LABEL) {
        None => env == DEFAULT_ENV,
        Some(list) => list.split(',').map(str::trim).any(|e| e == "*" || e == env),
    }
}

/// The candidates of environment `env`: placement never crosses them.
pub(super) fn in_env<'a>(candidates: &[Candidate<'a>], env: &str) -> Vec<Candidate<'a>> {
    candidates
        .iter()
        .filter(|c| node_serves(c.facts, env))
        .cloned()
        .collect()
}

/// Environment names: lowercase letters, digits and `-`, up to 63.
pub fn check_env_name(env: &str) -> Result<(), StateError> {
    let ok = !env.is_empty()
        && env.len() <= 63
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !env.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(StateError::Invalid(format!(
            "invalid environment `{env}`: use lowercase letters, digits and `-` (up to 63)"
        )))
    }
}

pub(super) fn candidates(views: &[PlacementNode]) -> Vec<Candidate<'_>> {
    views
        .iter()
        .map(|(name, facts, connected, cordoned)| Candidate {
            name,
            facts,
            connected: *connected,
            cordoned: *cordoned,
        })
        .collect()
}

/// The free capacity of `nodes` for the service `except` (env, name) with
/// `spec`: what every other service's instances reserve is set aside.
/// `None` when `spec` reserves nothing, so placement checks nothing.
pub(super) fn free_for(
    next: &Desired,
    nodes: &[Candidate<'_>],
    spec: &ServiceSpec,
    except: (&str, &str),
) -> Option<placement::Free> {
    if !placement::Capacity::needs_room(spec) {
        return None;
    }
    let mut free = placement::Free::of(nodes);
    for ((env, name), rec) in &next.services {
        if !rec.deleted && (env.as_str(), name.as_str()) != except {
            free.reserve(&rec.spec, &rec.assignments, &rec.gpus);
        }
    }
    Some(free)
}

/// Why an instance of `spec` in environment `env` has no node: no node
/// serves the environment, none of those matches the constraints, those
/// that match are not connected, or (with `free`, the capacity other
/// services left) none has room for its reservations, or each already runs
/// `max_replicas_per_node` of the instances `placed`.
pub(super) fn pending_reason(
    spec: &ServiceSpec,
    env: &str,
    nodes: &[Candidate<'_>],
    placed: &Assignments,
    free: Option<&placement::Free>,
) -> String {
    let in_env = in_env(nodes, env);
    if let Some(cluster) = spec.swarm_cluster() {
        if !in_env.is_empty() {
            return crate::swarm::driver::pending_reason(cluster)
                + &format!(" serves environment `{env}`");
        }
    }
    if in_env.is_empty() {
        return format!(
            "no node serves environment `{env}` (a node serves the environments of its `{ENV_LABEL}` label; none: `{DEFAULT_ENV}`)"
        );
    }
    let admitting: Vec<&Candidate<'_>> = in_env
        .iter()
        .filter(|c| placement::allows_host_access(spec, c.facts))
        .collect();
    if admitting.is_empty() {
        return host_access_reason(spec, env, &in_env);
    }
    let matching: Vec<&Candidate<'_>> = admitting
        .into_iter()
        .filter(|c| {
            spec.constraints()
                .iter()
                .all(|k| k.matches(c.name, c.facts))
        })
        .collect();
    if matching.is_empty() {
        let constraints: Vec<String> = spec.constraints().iter().map(|c| c.to_string()).collect();
        return format!(
            "no node of environment `{env}` matches the placement constraints ({})",
            constraints.join(", ")
        );
    }
    let platform = &spec.extras.platform;
    let (matching, other): (Vec<&Candidate<'_>>, Vec<&Candidate<'_>>) = matching
        .into_iter()
        .partition(|c| crate::spec::platform_matches(platform, c.facts));
    if matching.is_empty() {
        let mut runs: Vec<String> = other
            .iter()
            .map(|c| format!("{}/{}", c.facts.platform_os, c.facts.arch))
            .collect();
        runs.sort_unstable();
        runs.dedup();
        return format!(
            "no node of environment `{env}` runs platform `{platform}` (they run {})",
            runs.join(", ")
        );
    }
    let mut connected: Vec<&Candidate<'_>> = matching
        .iter()
        .copied()
        .filter(|c| c.connected && !c.cordoned)
        .collect();
    if connected.is_empty() && matching.iter().any(|c| c.connected) {
        let names: Vec<&str> = matching.iter().take(3).map(|c| c.name).collect();
        return format!(
            "every connected node that can take it is cordoned ({}{}): `convoy node uncordon` one",
            names.join(", "),
            if matching.len() > 3 { ", ..." } else { "" }
        );
    }
    let cap = spec.deploy.max_replicas_per_node as usize;
    if cap > 0 && !connected.is_empty() && !spec.is_global() {
        let on = |node: &str| {
            placed
                .values()
                .filter(|n| n.as_deref() == Some(node))
                .count()
        };
        connected.retain(|c| on(c.name) < cap);
        if connected.is_empty() {
            return format!(
                "`max_replicas_per_node` is {cap}, and each connected node that can take the \
                 service runs {cap} already; add nodes or raise the limit"
            );
        }
    }
    if let Some(free) = free {
        if !connected.is_empty() {
            return capacity_reason(spec, &connected, free);
        }
    }
    let names: Vec<&str> = matching.iter().take(3).map(|c| c.name).collect();
    format!(
        "no connected node matches: {} matching node(s) not connected ({}{})",
        matching.len(),
        names.join(", "),
        if matching.len() > 3 { ", ..." } else { "" }
    )
}

/// Why no connected matching node (`nodes`) takes another instance of
/// `spec`: the reservation that does not fit and the most any node has
/// free, e.g. "needs 4 GiB memory reserved; most free is 2.5 GiB on node-b".
fn capacity_reason(spec: &ServiceSpec, nodes: &[&Candidate<'_>], free: &placement::Free) -> String {
    if let Some(gpus) = spec.resources.gpus.as_ref() {
        if let Some(reason) = gpu_reason(gpus, nodes, free) {
            return reason;
        }
    }
    let need = placement::Capacity::reserved_by(spec);
    let room = |c: &&Candidate<'_>| free.get(c.name).copied();
    let most = |key: fn(&placement::Capacity) -> u64| {
        nodes
            .iter()
            .filter_map(|c| room(c).map(|r| (key(&r), c.name)))
            // The most free; of equals, the first name.
            .max_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(x.1)))
    };
    let gib = |b: u64| convoy_api::limits::human_bytes(usize::try_from(b).unwrap_or(usize::MAX));
    let cpus = |n: u64| {
        let text = format!("{:.2}", n as f64 / 1e9);
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    if let Some((best, node)) = most(|c| c.memory_bytes).filter(|(b, _)| *b < need.memory_bytes) {
        return format!(
            "needs {} memory reserved; most free is {} on {node}",
            gib(need.memory_bytes),
            gib(best)
        );
    }
    if let Some((best, node)) = most(|c| c.cpu_nanos).filter(|(b, _)| *b < need.cpu_nanos) {
        return format!(
            "needs {} CPUs reserved; most free is {} on {node}",
            cpus(need.cpu_nanos),
            cpus(best)
        );
    }
    // Each fits somewhere, but not both on one node.
    format!(
        "needs {} memory and {} CPUs reserved; no connected node has both free",
        gib(need.memory_bytes),
        cpus(need.cpu_nanos)
    )
}

/// Why no connected matching node (`nodes`) gives an instance the GPUs
/// `request` asks for, e.g. "needs 2 GPUs; gpu-3 has 1 free" (the node with
/// the most free); `None` when some node has them (something else is short).
fn gpu_reason(
    request: &crate::spec::GpuRequest,
    nodes: &[&Candidate<'_>],
    free: &placement::Free,
) -> Option<String> {
    if nodes
        .iter()
        .any(|c| free.pick_gpus(c.name, request, &[]).is_some())
    {
        return None;
    }
    let need = request.describe();
    let with_gpus: Vec<&&Candidate<'_>> = nodes
        .iter()
        .filter(|c| free.gpus_total(c.name) > 0)
        .collect();
    let Some(best) = with_gpus
        .iter()
        // The most free; of equals, the first name.
        .max_by(|x, y| {
            let (a, b) = (
                free.gpus_free(x.name, request.shared),
                free.gpus_free(y.name, request.shared),
            );
            a.cmp(&b).then(y.name.cmp(x.name))
        })
    else {
        return Some(format!(
            "needs {need}; no connected node that matches has a GPU"
        ));
    };
    let has = free.gpus_free(best.name, request.shared);
    Some(match &request.devices {
        crate::spec::GpuDevices::Count(_) => {
            format!("needs {need}; {} has {has} free", best.name)
        }
        crate::spec::GpuDevices::All => format!(
            "needs every GPU of a node free; {} has {has} of {} free",
            best.name,
            free.gpus_total(best.name)
        ),
        crate::spec::GpuDevices::Ids(_) => {
            format!("needs {need}; no connected node that matches has them all free")
        }
    })
}

/// Why no node of environment `env` (`in_env`) lets `spec` have its bind
/// mounts: the host paths that no node allows (else all of them, when each
/// is allowed somewhere but no node allows them all), and who can allow them.
fn host_access_reason(spec: &ServiceSpec, env: &str, in_env: &[Candidate<'_>]) -> String {
    let binds_somewhere = in_env.iter().any(|c| {
        placement::bind_sources(spec)
            .all(|(_, s)| host_paths::allowed(&c.facts.allowed_bind_paths, s))
    });
    if binds_somewhere {
        // The binds are allowed somewhere: the other host access is not.
        let kinds = spec.host_access.kinds();
        let nowhere: Vec<&str> = kinds
            .iter()
            .copied()
            .filter(|k| {
                !in_env
                    .iter()
                    .any(|c| convoy_api::host_access::allowed(&c.facts.allowed_host_access, k))
            })
            .collect();
        let named = if nowhere.is_empty() { &kinds } else { &nowhere };
        let quoted: Vec<String> = named.iter().map(|k| format!("`{k}`")).collect();
        return format!(
            "no node of environment `{env}` grants {} (an admin grants it by running \
             convoy-agent with `--allow-host-access {}` on the nodes that may run it)",
            quoted.join(", "),
            named.join(",")
        );
    }
    let all: Vec<&str> = placement::bind_sources(spec).map(|(_, s)| s).collect();
    let nowhere: Vec<&str> = all
        .iter()
        .copied()
        .filter(|s| {
            !in_env
                .iter()
                .any(|c| host_paths::allowed(&c.facts.allowed_bind_paths, s))
        })
        .collect();
    let named = if nowhere.is_empty() { &all } else { &nowhere };
    let paths: Vec<String> = named.iter().map(|p| format!("`{p}`")).collect();
    let flags: Vec<String> = named.iter().map(|p| format!("--allow-bind {p}")).collect();
    format!(
        "no node of environment `{env}` allows the bind mount of host path {} \
         (an admin allows it by running convoy-agent with `{}` on the nodes that may mount it)",
        paths.join(", "),
        flags.join(" ")
    )
}

/// Refuses a spec that bind-mounts a host path no node of environment
/// `env` allows (connected or not): host access is an admin's decision,
/// made per node with `convoy-agent run --allow-bind PATH`.
pub(super) fn check_host_access(
    filename: &str,
    content: &str,
    file: &spec::SpecFile,
    env: &str,
    candidates: &[Candidate<'_>],
) -> Result<(), StateError> {
    let in_env = in_env(candidates, env);
    for (name, service) in &file.services {
        for (index, source) in placement::bind_sources(service) {
            let allowed = in_env
                .iter()
                .any(|c| convoy_api::host_paths::allowed(&c.facts.allowed_bind_paths, source));
            if !allowed {
                return Err(spec::refuse_item(
                    filename,
                    content,
                    name,
                    "volumes",
                    index,
                    format!(
                        "the bind mount of host path `{source}` needs an admin's permission: \
                         run convoy-agent with `--allow-bind {source}` on the nodes that may \
                         mount it (no node of environment `{env}` allows it now)"
                    ),
                )
                .into());
            }
        }
        for kind in service.host_access.kinds() {
            let granted = in_env
                .iter()
                .any(|c| convoy_api::host_access::allowed(&c.facts.allowed_host_access, kind));
            if !granted {
                return Err(spec::refuse_key(
                    filename,
                    content,
                    name,
                    kind,
                    format!(
                        "`{kind}` gives the container access to the host, which only an admin \
                         may grant: run convoy-agent with `--allow-host-access {kind}` on the \
                         nodes that may run it (no node of environment `{env}` grants it now)"
                    ),
                )
                .into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(allowed: &[&str]) -> crate::report::AgentHello {
        crate::report::AgentHello::from(pb::Hello {
            facts: Some(pb::NodeFacts {
                allowed_bind_paths: allowed.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            }),
            agent_version: "t".into(),
            last_applied_generation: 0,
            capabilities: vec![],
        })
    }

    async fn coordinator() -> (Arc<Coordinator>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        (coord, dir)
    }

    const ROOT: &str = "services:\n  web:\n    image: x:1\n    volumes:\n      - cache:/cache\n      - /:/host\nvolumes:\n  cache: {}\n";

    /// Issue 14: a deployer could bind-mount `/` and own every host. Now a
    /// bind mount no node allows is refused at apply, in one line naming
    /// file, line, key, path and the flag that allows it; nothing stored.
    #[tokio::test]
    async fn apply_refuses_a_bind_mount_no_node_allows_naming_file_key_path_and_flag() {
        let (coord, _dir) = coordinator().await;
        let _a = coord
            .register("a", "fp-a", 0, hello(&["/srv/data"]), None)
            .await
            .unwrap();
        let err = coord
            .apply("app.yaml", ROOT, false, "t")
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "app.yaml:6:7: services.web.volumes[1]: the bind mount of host path `/` needs an \
             admin's permission: run convoy-agent with `--allow-bind /` on the nodes that may \
             mount it (no node of environment `default` allows it now)"
        );
        // A dry run is refused the same way; nothing was stored.
        assert!(coord.apply("app.yaml", ROOT, true, "t").await.is_err());
        assert!(coord.status("", "").await.services.is_empty());
        // `/srv/data` does not cover `/srv/database`.
        let db = "services:\n  db:\n    image: x:1\n    volumes: [\"/srv/database:/d\"]\n";
        let err = coord.apply("db.yaml", db, false, "t").await.unwrap_err();
        assert!(
            err.to_string().contains("`--allow-bind /srv/database`"),
            "{err}"
        );
        // A source that climbs is refused whatever the nodes allow.
        let climb = "services:\n  db:\n    image: x:1\n    volumes: [\"/srv/data/../../etc:/d\"]\n";
        let err = coord.apply("c.yaml", climb, false, "t").await.unwrap_err();
        assert!(err.to_string().contains("holds `..`"), "{err}");
        // Under an allowed root, and named volumes, it is applied.
        let ok = "services:\n  web:\n    image: x:1\n    volumes: [\"/srv/data/web:/d\", \"cache:/c\"]\nvolumes:\n  cache: {}\n";
        let r = coord.apply("ok.yaml", ok, false, "t").await.unwrap();
        assert_eq!(r.services[0].instances[0].node, "a");
    }

    /// Issue 14: a host path in the long syntax needs the admin's
    /// permission as in the short one; refused naming the entry.
    #[tokio::test]
    async fn apply_refuses_a_long_syntax_bind_mount_no_node_allows() {
        let (coord, _dir) = coordinator().await;
        let _a = coord
            .register("a", "fp-a", 0, hello(&["/srv/data"]), None)
            .await
            .unwrap();
        let spec = "services:\n  web:\n    image: x:1\n    volumes:\n      - type: bind\n        source: /etc\n        target: /host\n";
        let err = coord
            .apply("app.yaml", spec, false, "t")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "app.yaml:5:7: services.web.volumes[0]: the bind mount of host path `/etc` \
                 needs an admin's permission: run convoy-agent with `--allow-bind /etc`"
            ),
            "{err}"
        );
        assert!(coord.status("", "").await.services.is_empty());
        let inside = spec.replace("/etc", "/srv/data/web");
        coord.apply("app.yaml", &inside, false, "t").await.unwrap();
    }

    /// Issue 14: an allowing node in another environment does not count.
    #[tokio::test]
    async fn only_nodes_of_the_environment_count_as_allowing() {
        let (coord, _dir) = coordinator().await;
        let _a = coord
            .register("a", "fp-a", 0, hello(&["/"]), None)
            .await
            .unwrap();
        let err = coord
            .apply_in("prod", "app.yaml", ROOT, false, "t")
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("no node of environment `prod` allows it now"),
            "{err}"
        );
        coord.apply("app.yaml", ROOT, false, "t").await.unwrap();
    }

    /// Issue 14: with some node allowing the path, instances go only there;
    /// those no connected allowing node can take wait, saying which path
    /// and how to allow it.
    #[tokio::test]
    async fn instances_go_only_to_allowing_nodes_and_others_wait_naming_the_path() {
        let (coord, _dir) = coordinator().await;
        let _a = coord
            .register("a", "fp-a", 0, hello(&[]), None)
            .await
            .unwrap();
        let b = coord
            .register("b", "fp-b", 0, hello(&["/srv/data"]), None)
            .await
            .unwrap();
        let spec = "services:\n  web:\n    image: x:1\n    volumes: [\"/srv/data:/d\"]\n    deploy:\n      mode: global\n";
        let r = coord.apply("app.yaml", spec, false, "t").await.unwrap();
        let nodes: Vec<&str> = r.services[0]
            .instances
            .iter()
            .map(|i| i.node.as_str())
            .collect();
        assert_eq!(nodes, ["b"]);

        let replicated = "services:\n  web:\n    image: x:1\n    volumes: [\"/srv/data:/d\"]\n    deploy:\n      replicas: 3\n";
        let r = coord.apply("r.yaml", replicated, false, "t").await.unwrap();
        assert!(
            r.services[0].instances.iter().all(|i| i.node == "b"),
            "{r:?}"
        );
        drop(b);

        let nodes = [
            ("a".to_string(), Arc::new(Facts::default()), true, false),
            (
                "c".to_string(),
                Arc::new(Facts::from(pb::NodeFacts {
                    allowed_bind_paths: vec!["/srv".into()],
                    ..Default::default()
                })),
                false,
                false,
            ),
        ];
        let spec = crate::spec::parse("r.yaml", replicated)
            .unwrap()
            .services
            .remove("web")
            .unwrap();
        let reason = pending_reason(
            &spec,
            DEFAULT_ENV,
            &candidates(&nodes[..1]),
            &Assignments::new(),
            None,
        );
        assert_eq!(
            reason,
            "no node of environment `default` allows the bind mount of host path `/srv/data` \
             (an admin allows it by running convoy-agent with `--allow-bind /srv/data` on the \
             nodes that may mount it)"
        );
        // An allowing node that is not connected: the reason says so.
        let reason = pending_reason(
            &spec,
            DEFAULT_ENV,
            &candidates(&nodes),
            &Assignments::new(),
            None,
        );
        assert!(reason.contains("not connected (c)"), "{reason}");
    }

    fn hello_with(cpus: u32, memory_gib: u64) -> crate::report::AgentHello {
        crate::report::AgentHello::from(pb::Hello {
            facts: Some(pb::NodeFacts {
                cpus,
                memory_bytes: memory_gib << 30,
                ..Default::default()
            }),
            agent_version: "t".into(),
            last_applied_generation: 0,
            capabilities: vec![],
        })
    }

    /// Issue 14: reservations are counted per node, across services; an
    /// instance that fits nowhere waits, saying what it needs and the most
    /// any node has free.
    #[tokio::test]
    async fn reservations_keep_a_node_from_taking_more_than_it_has() {
        let (coord, _dir) = coordinator().await;
        let _a = coord
            .register("a", "fp-a", 0, hello_with(4, 8), None)
            .await
            .unwrap();
        let _b = coord
            .register("b", "fp-b", 0, hello_with(4, 4), None)
            .await
            .unwrap();
        let db = "services:\n  db:\n    image: x:1\n    deploy:\n      resources:\n        reservations:\n          memory: 5g\n";
        let r = coord.apply("db.yaml", db, false, "t").await.unwrap();
        assert_eq!(r.services[0].instances[0].node, "a", "only a has 5 GiB");
        // 3 GiB each: b takes one, a has 3 GiB left and takes one, the third waits.
        let web = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 3\n      resources:\n        reservations:\n          memory: 3g\n";
        let r = coord.apply("web.yaml", web, false, "t").await.unwrap();
        let mut nodes: Vec<&str> = r.services[0]
            .instances
            .iter()
            .map(|i| i.node.as_str())
            .collect();
        nodes.sort_unstable();
        assert_eq!(nodes, ["", "a", "b"], "{:?}", r.services[0].instances);
        assert_eq!(
            pending_of(&coord, "web").await,
            "needs 3 GiB memory reserved; most free is 1 GiB on b"
        );
        // CPUs count the same way.
        let cpu = "services:\n  cpu:\n    image: x:1\n    deploy:\n      resources:\n        reservations:\n          cpus: '4.5'\n";
        coord.apply("cpu.yaml", cpu, false, "t").await.unwrap();
        assert_eq!(
            pending_of(&coord, "cpu").await,
            "needs 4.5 CPUs reserved; most free is 4 on a"
        );
        // Deleting the database frees its room: the waiting instance goes to a.
        coord.delete("db", "").await.unwrap();
        assert_eq!(pending_of(&coord, "web").await, "");
    }

    /// Issue 14: `max_replicas_per_node` leaves the rest pending, with the
    /// reason; a new node takes them.
    #[tokio::test]
    async fn max_replicas_per_node_keeps_the_rest_pending_with_the_reason() {
        let (coord, _dir) = coordinator().await;
        let _a = coord
            .register("a", "fp-a", 0, hello_with(4, 8), None)
            .await
            .unwrap();
        let web = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 3\n      placement:\n        max_replicas_per_node: 2\n";
        coord.apply("web.yaml", web, false, "t").await.unwrap();
        assert_eq!(
            pending_of(&coord, "web").await,
            "`max_replicas_per_node` is 2, and each connected node that can take the service \
             runs 2 already; add nodes or raise the limit"
        );
        let _b = coord
            .register("b", "fp-b", 0, hello_with(4, 8), None)
            .await
            .unwrap();
        assert_eq!(pending_of(&coord, "web").await, "");
    }

    /// Issue 14: a service for another platform waits, saying which.
    #[tokio::test]
    async fn a_platform_no_node_runs_keeps_the_service_pending() {
        let (coord, _dir) = coordinator().await;
        let hello = crate::report::AgentHello::from(pb::Hello {
            facts: Some(pb::NodeFacts {
                platform_os: "linux".into(),
                arch: "x86_64".into(),
                ..Default::default()
            }),
            agent_version: "t".into(),
            last_applied_generation: 0,
            capabilities: vec![],
        });
        let _a = coord.register("a", "fp-a", 0, hello, None).await.unwrap();
        let arm = "services:\n  arm:\n    image: x:1\n    platform: linux/arm64\n";
        coord.apply("arm.yaml", arm, false, "t").await.unwrap();
        assert_eq!(
            pending_of(&coord, "arm").await,
            "no node of environment `default` runs platform `linux/arm64` (they run linux/x86_64)"
        );
        let amd = "services:\n  amd:\n    image: x:1\n    platform: linux/amd64\n";
        let r = coord.apply("amd.yaml", amd, false, "t").await.unwrap();
        assert_eq!(r.services[0].instances[0].node, "a");
    }

    /// Issue 14: `privileged` and the other host access go only to nodes
    /// whose admin granted it; an apply no node grants is refused naming the
    /// flag, and an instance waiting for such a node says which grant.
    #[tokio::test]
    async fn host_access_goes_only_to_nodes_that_grant_it() {
        let (coord, _dir) = coordinator().await;
        let granting = |kinds: &[&str]| {
            crate::report::AgentHello::from(pb::Hello {
                facts: Some(pb::NodeFacts {
                    allowed_host_access: kinds.iter().map(|k| k.to_string()).collect(),
                    ..Default::default()
                }),
                agent_version: "t".into(),
                last_applied_generation: 0,
                capabilities: vec![],
            })
        };
        let _a = coord
            .register("a", "fp-a", 0, granting(&[]), None)
            .await
            .unwrap();
        let spec = "services:\n  web:\n    image: x:1\n    privileged: true\n    deploy:\n      replicas: 2\n";
        let err = coord.apply("app.yaml", spec, false, "t").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "app.yaml:4:5: services.web.privileged: `privileged` gives the container access to \
             the host, which only an admin may grant: run convoy-agent with \
             `--allow-host-access privileged` on the nodes that may run it (no node of \
             environment `default` grants it now)"
        );
        let b = coord
            .register("b", "fp-b", 0, granting(&["privileged", "cap_add"]), None)
            .await
            .unwrap();
        let r = coord.apply("app.yaml", spec, false, "t").await.unwrap();
        assert!(
            r.services[0].instances.iter().all(|i| i.node == "b"),
            "{r:?}"
        );
        drop(b);
        // `all` grants every kind; a kind no node grants keeps it pending.
        let _c = coord
            .register("c", "fp-c", 0, granting(&["all"]), None)
            .await
            .unwrap();
        let pid = "services:\n  top:\n    image: x:1\n    pid: host\n";
        let r = coord.apply("top.yaml", pid, false, "t").await.unwrap();
        assert_eq!(r.services[0].instances[0].node, "c");
        let both = "services:\n  both:\n    image: x:1\n    pid: host\n    network_mode: host\n    deploy:\n      placement:\n        constraints: [node.name == a]\n";
        let err = coord.apply("both.yaml", both, false, "t").await;
        assert!(err.is_ok(), "each kind is granted somewhere: {err:?}");
    }

    /// Issue 14: every instance carries its configs in its node's plan, so
    /// an apply that would give one node more than the agent can take is
    /// refused, naming the node, and nothing is stored.
    #[tokio::test]
    async fn an_apply_that_would_overfill_a_nodes_plan_with_configs_is_refused() {
        let (coord, _dir) = coordinator().await;
        let _a = coord
            .register("a", "fp-a", 0, hello_with(4, 8), None)
            .await
            .unwrap();
        let big = "x".repeat(500 * 1024);
        let spec = |replicas: u32| {
            format!(
                "services:\n  web:\n    image: x:1\n    configs: [app]\n    deploy:\n      replicas: {replicas}\nconfigs:\n  app:\n    content: {big}\n"
            )
        };
        // 300 × 500 KiB on one node: 146 MiB.
        let err = coord
            .apply("app.yaml", &spec(300), false, "t")
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "node `a` would carry 146.5 MiB of configs in its plan (300 instances"
            ),
            "{err}"
        );
        assert!(
            coord.status("web", "").await.services.is_empty(),
            "nothing stored"
        );
        // 200 fit.
        let r = coord
            .apply("app.yaml", &spec(200), false, "t")
            .await
            .unwrap();
        assert_eq!(r.services[0].instances.len(), 200);
    }

    fn hello_gpus(uuids: &[&str]) -> crate::report::AgentHello {
        crate::report::AgentHello::from(pb::Hello {
            facts: Some(pb::NodeFacts {
                gpus: uuids
                    .iter()
                    .enumerate()
                    .map(|(i, u)| pb::GpuDevice {
                        index: i as u32,
                        uuid: u.to_string(),
                        name: "NVIDIA H100 80GB HBM3".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            agent_version: "t".into(),
            last_applied_generation: 0,
            capabilities: vec![],
        })
    }

    /// Issue 16: GPU instances go only to the GPU node, up to its GPUs, each
    /// with its own; across services too; the rest wait with the reason;
    /// a new revision keeps the GPUs; deleting frees them.
    #[tokio::test]
    async fn gpu_requests_take_a_nodes_gpus_and_the_rest_wait_with_the_reason() {
        let (coord, _dir) = coordinator().await;
        let _c = coord
            .register("cpu", "fp-c", 0, hello_gpus(&[]), None)
            .await
            .unwrap();
        let mut g = coord
            .register("gpu", "fp-g", 0, hello_gpus(&["GPU-0", "GPU-1"]), None)
            .await
            .unwrap();
        let train =
            "services:\n  train:\n    image: x:1\n    gpus: 1\n    deploy:\n      replicas: 3\n";
        let r = coord.apply("t.yaml", train, false, "t").await.unwrap();
        let mut nodes: Vec<&str> = r.services[0]
            .instances
            .iter()
            .map(|i| i.node.as_str())
            .collect();
        nodes.sort_unstable();
        assert_eq!(nodes, ["", "gpu", "gpu"]);
        assert_eq!(
            pending_of(&coord, "train").await,
            "needs 1 GPU; gpu has 0 free"
        );
        let key = (DEFAULT_ENV.to_string(), "train".to_string());
        let before = coord.desired.lock().await.services[&key].gpus.clone();
        let mut all: Vec<String> = before.values().flatten().cloned().collect();
        all.sort_unstable();
        assert_eq!(all, ["GPU-0", "GPU-1"]);
        // Another service gets none while `train` holds both.
        let infer = "services:\n  infer:\n    image: x:1\n    gpus: 2\n";
        coord.apply("i.yaml", infer, false, "t").await.unwrap();
        assert_eq!(
            pending_of(&coord, "infer").await,
            "needs 2 GPUs; gpu has 0 free"
        );
        // Each instance's container spec in the node's plan names its GPUs.
        let plan = g.plan_rx.borrow_and_update().clone().unwrap();
        for w in &plan.workloads {
            let Some(pb::workload::Runtime::Container(c)) = &w.runtime else {
                panic!("{w:?}")
            };
            assert_eq!(c.gpu_uuids, before[&w.index], "{}", w.id);
            assert_eq!(c.gpu_capabilities, ["gpu"]);
        }
        assert_eq!(plan.workloads.len(), 2);
        // A new revision keeps each instance's GPUs.
        let v2 = train.replace("x:1", "x:2");
        coord.apply("t.yaml", &v2, false, "t").await.unwrap();
        assert_eq!(coord.desired.lock().await.services[&key].gpus, before);
        // Deleting `train` frees them: `infer` takes both.
        coord.delete("train", "").await.unwrap();
        assert_eq!(pending_of(&coord, "infer").await, "");
        // No GPU node at all.
        let (coord, _dir) = coordinator().await;
        let _c = coord
            .register("cpu", "fp-c", 0, hello_gpus(&[]), None)
            .await
            .unwrap();
        coord.apply("i.yaml", infer, false, "t").await.unwrap();
        assert_eq!(
            pending_of(&coord, "infer").await,
            "needs 2 GPUs; no connected node that matches has a GPU"
        );
    }

    /// Issue 16: a unit's GPUs reach its node's plan as UUIDs with each
    /// one's index on the node (its device node); a service whose spec
    /// asks for none gets none.
    #[tokio::test]
    async fn a_units_plan_names_its_gpus_and_their_indexes() {
        let (coord, _dir) = coordinator().await;
        let mut g = coord
            .register("gpu", "fp-g", 0, hello_gpus(&["GPU-0", "GPU-1"]), None)
            .await
            .unwrap();
        let spec = "units:\n  train:\n    exec_start: /usr/bin/train\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - {device_ids: ['1'], capabilities: [gpu]}\nservices:\n  web:\n    image: x:1\n";
        coord.apply("u.yaml", spec, false, "t").await.unwrap();
        let plan = g.plan_rx.borrow_and_update().clone().unwrap();
        let unit = plan
            .workloads
            .iter()
            .find(|w| w.service == "train")
            .unwrap();
        let Some(pb::workload::Runtime::Unit(u)) = &unit.runtime else {
            panic!("{unit:?}")
        };
        assert_eq!(
            (u.gpu_uuids.as_slice(), u.gpu_indexes.as_slice()),
            (&["GPU-1".to_string()][..], &[1][..])
        );
        let web = plan.workloads.iter().find(|w| w.service == "web").unwrap();
        let Some(pb::workload::Runtime::Container(c)) = &web.runtime else {
            panic!("{web:?}")
        };
        assert!(c.gpu_uuids.is_empty() && c.gpu_capabilities.is_empty());
    }

    /// The reason of the first instance of `service` that has no node ("" if none).
    async fn pending_of(coord: &Coordinator, service: &str) -> String {
        let status = coord.status(service, "").await;
        status.services[0]
            .instances
            .iter()
            .find(|i| i.node.is_empty())
            .map(|i| i.reason.clone())
            .unwrap_or_default()
    }
}

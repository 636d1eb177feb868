//! Node plans: what each node must run, computed from desired state, with
//! a generation that only grows; and handing new plans to agent sessions.

use super::*;

/// Where the highest plan generation handed out is stored. Every plan
/// change takes the next one, so a node's generations only grow, across
/// restarts too, with one store write per change however many nodes it
/// touches.
pub const PLAN_GENERATION_KEY: &str = "meta/plan-generation";

/// Which plans [`compute_plans`] hands back.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Publish {
    /// Every node's (on load: nothing is published yet).
    All,
    /// Only plans whose content changed (agents already hold the others).
    Changed,
}

/// The nodes whose plans a change from `current` to `next` may have
/// changed: those where an instance of a changed service record (records
/// are shared between the two and copied on write, so an unchanged one is
/// the same allocation) appears, goes, moves or changes revision or spec;
/// and nodes that have no plan yet. A rollout step that switches a batch
/// touches the batch's nodes, not every node of the service.
pub(super) fn touched_nodes(current: &Desired, next: &Desired) -> HashSet<String> {
    let mut touched = HashSet::new();
    let all_of = |rec: &ServiceRecord, touched: &mut HashSet<String>| {
        if !rec.deleted {
            touched.extend(rec.assignments.values().flatten().cloned());
        }
    };
    let mut swarm_changed = false;
    for (key, new) in &next.services {
        match current.services.get(key) {
            Some(old) if Arc::ptr_eq(old, new) => continue,
            Some(old) => instance_changes_touch(old, new, &mut touched),
            None => all_of(new, &mut touched),
        }
        swarm_changed |= new.spec.swarm.is_some();
    }
    for (key, old) in &current.services {
        if !next.services.contains_key(key) {
            all_of(old, &mut touched);
            swarm_changed |= old.spec.swarm.is_some();
        }
    }
    touched.extend(
        next.nodes
            .keys()
            .filter(|n| !next.plans.contains_key(*n))
            .cloned(),
    );
    // A Swarm service created or deleted may make another manager of its
    // cluster the one that removes what is left (`drives_swarm`).
    if swarm_changed {
        touched.extend(
            next.nodes
                .values()
                .filter(|r| {
                    r.facts
                        .swarm
                        .as_ref()
                        .is_some_and(|s| s.role == crate::swarm::SwarmRole::Manager)
                })
                .map(|r| r.name.clone()),
        );
    }
    // A changed registry login reaches the nodes that pull from it.
    let logins = changed_registries(current, next);
    if !logins.is_empty() {
        for rec in next.services.values().filter(|r| !r.deleted) {
            if record_registries(rec).any(|r| logins.contains(r)) {
                touched.extend(rec.assignments.values().flatten().cloned());
            }
        }
    }
    touched
}

/// The revision a weighted canary sends a share of requests to, and the
/// share (percent), while it does.
fn canary_split(rec: &ServiceRecord) -> Option<(u64, u32)> {
    let r = rec.rollout.as_ref()?;
    r.canary_weight().map(|w| (r.to_revision, w))
}

/// The revision a blue-green rollout sends every request to while both of
/// its sets run.
fn active_revision(rec: &ServiceRecord) -> Option<u64> {
    rec.rollout.as_ref()?.active_revision()
}

/// What one instance of a service runs, as its node's plan holds it.
type Effective<'a> = (&'a str, u64, &'a ServiceSpec);

/// Each placed instance's node, revision and spec (an active rollout's
/// unswitched instances keep the revision it started from).
fn effective(rec: &ServiceRecord) -> BTreeMap<u32, Effective<'_>> {
    if rec.deleted {
        return BTreeMap::new();
    }
    let rollout = rec.rollout.as_ref().filter(|r| r.state.is_active());
    rec.assignments
        .iter()
        .filter_map(|(index, node)| {
            let node = node.as_deref()?;
            Some(match rollout {
                Some(r) if !r.is_switched(*index) => {
                    (*index, (node, r.from_revision, &r.from_spec))
                }
                _ => (*index, (node, rec.revision, &rec.spec)),
            })
        })
        .collect()
}

/// Adds the nodes where `old` and `new` (two versions of one service's
/// record) differ, instance by instance.
fn instance_changes_touch(old: &ServiceRecord, new: &ServiceRecord, touched: &mut HashSet<String>) {
    // A weighted canary's split and a blue-green's active revision are in
    // every instance's ingress.
    if canary_split(old) != canary_split(new) || active_revision(old) != active_revision(new) {
        for rec in [old, new] {
            touched.extend(rec.assignments.values().flatten().cloned());
        }
    }
    let (a, b) = (effective(old), effective(new));
    // Every instance carries the current spec's update order.
    let order_changed = old.spec.deploy.update.order != new.spec.deploy.update.order;
    // Spec comparisons are deep: remember the few pairs there are.
    let mut same: Vec<(*const ServiceSpec, *const ServiceSpec, bool)> = Vec::new();
    let mut equal = |x: &ServiceSpec, y: &ServiceSpec| {
        if std::ptr::eq(x, y) {
            return true;
        }
        let key = (x as *const ServiceSpec, y as *const ServiceSpec);
        if let Some(&(_, _, eq)) = same.iter().find(|(p, q, _)| (*p, *q) == key) {
            return eq;
        }
        let eq = x == y;
        same.push((key.0, key.1, eq));
        eq
    };
    for index in a.keys().chain(b.keys()) {
        match (a.get(index), b.get(index)) {
            (Some(x), Some(y)) if !order_changed && x.0 == y.0 && x.1 == y.1 && equal(x.2, y.2) => {
            }
            (x, y) => {
                touched.extend(x.iter().chain(y.iter()).map(|e| e.0.to_string()));
            }
        }
    }
}

/// Builds the plans of the nodes in `only` (every node's when `None`) from
/// desired state; bumps the generation of each plan whose content changed
/// and records it in `ops`. Returns the plans to hand to sessions once
/// `ops` are stored, and how many plans it computed.
pub(super) fn compute_plans(
    next: &mut Desired,
    ops: &mut Vec<Op>,
    publish: Publish,
    only: Option<&HashSet<String>>,
    sealer: &Sealer,
) -> (Vec<(String, Arc<pb::NodePlan>)>, usize) {
    let wanted = |node: &str| only.is_none_or(|set| set.contains(node));
    let mut per_node: BTreeMap<String, Vec<pb::Workload>> = BTreeMap::new();
    for node in next.nodes.keys().chain(next.plans.keys()) {
        if wanted(node) {
            per_node.entry(node.clone()).or_default();
        }
    }
    if per_node.is_empty() {
        return (Vec::new(), 0);
    }
    let computed = per_node.len();
    for rec in next.services.values().filter(|r| !r.deleted) {
        if only.is_some()
            && !rec
                .assignments
                .values()
                .flatten()
                .any(|n| per_node.contains_key(n))
        {
            continue;
        }
        let runtime = |spec: &ServiceSpec, revision: u64| {
            (
                revision,
                spec.spec_hash(),
                spec.probes(),
                spec.runtime(),
                spec.resources.gpus.is_some(),
                spec.ingress(),
            )
        };
        let new = runtime(&rec.spec, rec.revision);
        let start_first = rec.spec.deploy.update.order == spec::UpdateOrder::StartFirst;
        // While a rollout is active, instances it has not switched yet keep
        // the revision they run.
        let rollout = rec.rollout.as_ref().filter(|r| r.state.is_active());
        let old = rollout.map(|r| runtime(&r.from_spec, r.from_revision));
        for (index, node) in &rec.assignments {
            let Some(node) = node.as_ref().filter(|n| per_node.contains_key(*n)) else {
                continue;
            };
            let split = canary_split(rec);
            let active = active_revision(rec);
            let (revision, spec_hash, probes, runtime, gpus, ingress) = match (&old, rollout) {
                (Some(old), Some(r)) if !r.is_switched(*index) => old,
                _ => &new,
            };
            per_node
                .entry(node.clone())
                .or_default()
                .push(pb::Workload {
                    id: workload_id(&rec.env, &rec.name, *index),
                    service: rec.name.clone(),
                    env: rec.env.clone(),
                    index: *index,
                    revision: *revision,
                    spec_hash: spec_hash.clone(),
                    probes: probes.clone(),
                    start_first,
                    ingress: ingress.clone().map(|mut ingress| {
                        if let Some((revision, weight)) = split {
                            ingress.canary_revision = revision;
                            ingress.canary_weight_percent = weight;
                        }
                        ingress.active_revision = active.unwrap_or(0);
                        ingress
                    }),
                    runtime: Some(match rec.gpus.get(index).filter(|_| *gpus) {
                        Some(pinned) => with_gpus(runtime, pinned, &next.nodes, node),
                        None => match runtime {
                            pb::workload::Runtime::Swarm(s) => {
                                swarm_service(s, rec, &next.nodes, node)
                            }
                            other => other.clone(),
                        },
                    }),
                });
        }
    }
    let mut updates = Vec::new();
    let mut fresh = None;
    for (node, mut workloads) in per_node {
        workloads.sort_by(|a, b| a.id.cmp(&b.id));
        let registry_auths = plan_logins(&next.registries, &workloads);
        let (secret_values, secrets_hash) = plan_secrets(&next.secrets, &workloads, &node, sealer);
        let swarm_driver = drives_swarm(next, &node, &workloads);
        let hash = plan_hash(&workloads, &registry_auths, &secrets_hash, swarm_driver);
        let generation = match next.plans.get(&node) {
            Some(rec) if rec.hash == hash => {
                if publish == Publish::Changed {
                    continue;
                }
                rec.generation
            }
            _ => {
                let generation = *fresh.get_or_insert_with(|| {
                    next.plan_generation += 1;
                    next.plan_generation
                });
                let rec = PlanRecord { generation, hash };
                Arc::make_mut(&mut next.plans).insert(node.clone(), rec);
                generation
            }
        };
        updates.push((
            node,
            Arc::new(pb::NodePlan {
                generation,
                workloads,
                registry_auths,
                secret_values,
                swarm_driver,
            }),
        ));
    }
    if let Some(generation) = fresh {
        ops.push(Op::put_json(PLAN_GENERATION_KEY, &generation));
    }
    (updates, computed)
}

/// The Swarm service a driver's plan holds for `rec`: named
/// `<env>_<service>` (as `docker stack deploy` names a stack's services),
/// on the cluster of the driver `node` as its facts say.
fn swarm_service(
    spec: &pb::SwarmServiceSpec,
    rec: &ServiceRecord,
    nodes: &BTreeMap<String, NodeRecord>,
    node: &str,
) -> pb::workload::Runtime {
    let mut spec = spec.clone();
    spec.name = swarm_service_name(&rec.env, &rec.name);
    spec.cluster = nodes
        .get(node)
        .and_then(|n| n.facts.swarm.as_ref())
        .map(|s| s.cluster_id.clone())
        .unwrap_or_default();
    pb::workload::Runtime::Swarm(spec)
}

/// The Swarm service's name of Convoy's service `name` in `env`.
pub(super) fn swarm_service_name(env: &str, name: &str) -> String {
    format!("{env}_{name}")
}

/// Whether `node`'s agent drives its engine's Swarm (`NodePlan.swarm_driver`):
/// it holds Swarm services, or it is the lowest-named manager node of its
/// cluster and no node holds any of that cluster's services (someone must
/// remove what a deleted service left behind). Never two drivers of one
/// cluster with services: the services' one instance names the driver.
fn drives_swarm(next: &Desired, node: &str, workloads: &[pb::Workload]) -> bool {
    if workloads
        .iter()
        .any(|w| matches!(w.runtime, Some(pb::workload::Runtime::Swarm(_))))
    {
        return true;
    }
    let cluster_of = |n: &str| {
        next.nodes
            .get(n)
            .and_then(|r| r.facts.swarm.as_ref())
            .filter(|s| s.role == crate::swarm::SwarmRole::Manager && !s.cluster_id.is_empty())
            .map(|s| s.cluster_id.as_str())
    };
    let Some(cluster) = cluster_of(node) else {
        return false;
    };
    let lowest = next
        .nodes
        .values()
        .filter(|r| r.removed_unix_ms == 0 && cluster_of(&r.name) == Some(cluster))
        .map(|r| r.name.as_str())
        .min();
    if lowest != Some(node) {
        return false;
    }
    !next.services.values().any(|r| {
        !r.deleted
            && r.spec.swarm.is_some()
            && r.assignments
                .values()
                .flatten()
                .any(|n| cluster_of(n) == Some(cluster))
    })
}

/// `runtime` for one instance that asks for GPUs, with the UUIDs `pinned`
/// to it (and, for a unit, each one's index on `node`, as its facts say:
/// the unit's device nodes). Instances without GPUs get the shared spec as
/// it is (the copy each workload needs anyway, nothing more).
fn with_gpus(
    runtime: &pb::workload::Runtime,
    pinned: &[String],
    nodes: &BTreeMap<String, NodeRecord>,
    node: &str,
) -> pb::workload::Runtime {
    let mut runtime = runtime.clone();
    match &mut runtime {
        pb::workload::Runtime::Container(c) => c.gpu_uuids = pinned.to_vec(),
        pb::workload::Runtime::Unit(u) => {
            let facts = nodes
                .get(node)
                .map(|n| n.facts.gpus.as_slice())
                .unwrap_or(&[]);
            // A pinned GPU the node no longer reports has no device node.
            for uuid in pinned {
                if let Some(gpu) = facts.iter().find(|g| &g.uuid == uuid) {
                    u.gpu_uuids.push(uuid.clone());
                    u.gpu_indexes.push(gpu.index);
                }
            }
        }
        pb::workload::Runtime::Swarm(_) => {}
    }
    runtime
}

/// What a node's plan holds, as its [`PlanRecord`] (memory only) keeps
/// it; `workloads` sorted by id, `logins` by server.
pub(super) fn plan_hash(
    workloads: &[pb::Workload],
    logins: &[pb::RegistryAuth],
    secrets: &[u8],
    swarm_driver: bool,
) -> String {
    let mut h = Sha256::new();
    if swarm_driver {
        h.update(b"swarm-driver\0");
    }
    for w in workloads {
        h.update(w.id.as_bytes());
        h.update([0]);
        h.update(w.revision.to_be_bytes());
        h.update(w.spec_hash.as_bytes());
        h.update([0, u8::from(w.start_first)]);
        // The GPUs pinned to it (the spec hash covers the rest of the runtime).
        let (uuids, indexes): (&[String], &[u32]) = match &w.runtime {
            Some(pb::workload::Runtime::Container(c)) => (&c.gpu_uuids, &[]),
            Some(pb::workload::Runtime::Unit(u)) => (&u.gpu_uuids, &u.gpu_indexes),
            Some(pb::workload::Runtime::Swarm(_)) | None => (&[], &[]),
        };
        for uuid in uuids {
            h.update([2]);
            h.update(uuid.as_bytes());
        }
        for index in indexes {
            h.update([3]);
            h.update(index.to_be_bytes());
        }
        // Routes are outside the spec hash (a change restarts nothing),
        // and the revision they come with already differs; hashed all the
        // same, so a plan never misses a route change.
        if let Some(ingress) = &w.ingress {
            h.update([4]);
            h.update(prost::Message::encode_to_vec(ingress));
        }
    }
    for l in logins {
        h.update([1]);
        for part in [&l.server, &l.username, &l.password] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    h.update(secrets);
    hex::encode(h.finalize())
}

/// The values of the secret versions `workloads` pin (containers'
/// `secrets`, units' `credentials`), each once, opened from the sealed
/// store: what this node, and no other, receives. Also what identifies
/// them for the plan's hash (names, versions and when each was made; never
/// a value). A version the store no longer holds (dropped after
/// [`KEEP_VERSIONS`] newer ones, or its secret removed) is left out: the
/// agent fails those workloads naming it.
pub(super) fn plan_secrets(
    secrets: &BTreeMap<(String, String), SecretRecord>,
    workloads: &[pb::Workload],
    node: &str,
    sealer: &Sealer,
) -> (Vec<pb::SecretValue>, Vec<u8>) {
    let mut wanted: BTreeMap<(&str, &str), std::collections::BTreeSet<u64>> = BTreeMap::new();
    for w in workloads {
        let mounts = match &w.runtime {
            Some(pb::workload::Runtime::Container(c)) => &c.secrets,
            Some(pb::workload::Runtime::Unit(u)) => &u.credentials,
            Some(pb::workload::Runtime::Swarm(s)) => match &s.container {
                Some(c) => &c.secrets,
                None => continue,
            },
            None => continue,
        };
        let refs = mounts.iter().map(|m| (m.name.as_str(), m.version));
        // The ingress' certificates and keys: the node's proxy presents them.
        let tls = w.ingress.iter().flat_map(|i| &i.tls).flat_map(|t| {
            [&t.certificate, &t.key]
                .into_iter()
                .flatten()
                .map(|r| (r.name.as_str(), r.version))
        });
        for (name, version) in refs.chain(tls) {
            wanted
                .entry((w.env.as_str(), name))
                .or_default()
                .insert(version);
        }
    }
    if wanted.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mut values = Vec::new();
    let mut identity = Vec::new();
    for ((env, name), versions) in wanted {
        let record = secrets.get(&(env.to_string(), name.to_string()));
        for version in versions {
            let Some(v) = record.and_then(|r| r.versions.iter().find(|v| v.version == version))
            else {
                tracing::warn!(
                    node,
                    env,
                    secret = name,
                    version,
                    "a workload on this node pins a version of a secret the store no longer holds"
                );
                continue;
            };
            let context = version_context(env, name, version);
            match sealer.open_envelope(&context, &v.sealed) {
                Ok(value) => {
                    for part in [env, name] {
                        identity.extend((part.len() as u64).to_be_bytes());
                        identity.extend(part.as_bytes());
                    }
                    identity.extend(version.to_be_bytes());
                    identity.extend(v.created_unix_ms.to_be_bytes());
                    values.push(pb::SecretValue {
                        env: env.to_string(),
                        name: name.to_string(),
                        version,
                        value: value.expose().clone(),
                    });
                }
                Err(e) => tracing::error!(node, error = %e, "a secret version does not open"),
            }
        }
    }
    (values, identity)
}

impl Coordinator {
    /// Hands each node's new plan to its session (latest wins); returns
    /// the plans they replace, to be freed outside the locks. Only
    /// [`Txn::commit`] calls it.
    pub(super) fn publish(
        &self,
        updates: Vec<(String, Arc<pb::NodePlan>)>,
    ) -> Vec<Option<Arc<pb::NodePlan>>> {
        let mut replaced = Vec::with_capacity(updates.len());
        let mut live = self.live();
        for (node, plan) in updates {
            replaced.push(
                live.plans
                    .entry(node)
                    .or_insert_with(|| watch::channel(None).0)
                    .send_replace(Some(plan)),
            );
        }
        drop(live);
        replaced
    }
}

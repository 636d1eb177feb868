//! Node plans: what each node must run, computed from desired state, with
//! a generation that only grows; and handing new plans to agent sessions.

use super::*;

/// Where the highest plan generation handed out is stored. Every plan
/// change takes the next one, so a node's generations only grow, across
/// restarts too, with one store write per change however many nodes it
/// touches.
pub(super) const PLAN_GENERATION_KEY: &str = "meta/plan-generation";

/// Which plans [`compute_plans`] hands back.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Publish {
    /// Every node's (on load: nothing is published yet).
    All,
    /// Only plans whose content changed (agents already hold the others).
    Changed,
}

/// Builds every node's plan from desired state; bumps the generation of
/// each plan whose content changed and records it in `ops`. Returns the
/// plans to hand to sessions once `ops` are stored.
pub(super) fn compute_plans(
    next: &mut Desired,
    ops: &mut Vec<Op>,
    publish: Publish,
) -> Vec<(String, Arc<pb::NodePlan>)> {
    let mut per_node: BTreeMap<String, Vec<pb::Workload>> = BTreeMap::new();
    for node in next.nodes.keys().chain(next.plans.keys()) {
        per_node.entry(node.clone()).or_default();
    }
    for rec in next.services.values().filter(|r| !r.deleted) {
        let runtime = |spec: &ServiceSpec, revision: u64| {
            (revision, spec.spec_hash(), spec.probes(), spec.runtime())
        };
        let new = runtime(&rec.spec, rec.revision);
        let start_first = rec.spec.deploy.update.order == spec::UpdateOrder::StartFirst;
        // While a rollout is active, instances it has not switched yet keep
        // the revision they run.
        let rollout = rec.rollout.as_ref().filter(|r| r.state.is_active());
        let old = rollout.map(|r| runtime(&r.from_spec, r.from_revision));
        for (index, node) in &rec.assignments {
            let Some(node) = node else { continue };
            let (revision, spec_hash, probes, runtime) = match (&old, rollout) {
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
                    runtime: Some(runtime.clone()),
                });
        }
    }
    let mut updates = Vec::new();
    let mut fresh = None;
    for (node, mut workloads) in per_node {
        workloads.sort_by(|a, b| a.id.cmp(&b.id));
        let hash = plan_hash(&workloads);
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
            }),
        ));
    }
    if let Some(generation) = fresh {
        ops.push(Op::put_json(PLAN_GENERATION_KEY, &generation));
    }
    updates
}

/// What a node's plan holds, as stored in its [`PlanRecord`]; `workloads`
/// sorted by id.
pub(super) fn plan_hash(workloads: &[pb::Workload]) -> String {
    let mut h = Sha256::new();
    for w in workloads {
        h.update(w.id.as_bytes());
        h.update([0]);
        h.update(w.revision.to_be_bytes());
        h.update(w.spec_hash.as_bytes());
        h.update([0, u8::from(w.start_first)]);
    }
    hex::encode(h.finalize())
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

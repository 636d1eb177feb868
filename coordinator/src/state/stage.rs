//! Staging an apply: each service's new spec becomes a revision, its
//! placement and the instance changes it brings; the rollouts it starts
//! or supersedes, and the events that say so.

use super::*;

impl Coordinator {
    /// Once an apply (or a secret's rotation) has staged new specs: marks
    /// the rollouts they supersede, takes the first step of each rollout
    /// they start (all instances at once by default) with them — one copy
    /// of desired state, one plan computation and one store write, not two
    /// of each — and emits their events. The caller commits.
    pub(super) async fn start_rollouts(
        &self,
        txn: &mut Txn<'_>,
        env: &str,
        response: &Arc<ApplyOutcome>,
        superseded: Vec<Superseded>,
        who: &str,
        now: i64,
    ) {
        for (name, rev, by) in &superseded {
            self.set_outcome(txn.ops(), env, name, *rev, &format!("superseded by r{by}"))
                .await;
        }
        let mut first_steps = Vec::new();
        let mut started = Vec::new();
        for change in &response.services {
            let key = (env.to_string(), change.service.clone());
            let (next, ops, _) = txn.parts();
            let Some(current) = next.services.get(&key).filter(|r| {
                r.rollout.as_ref().is_some_and(|ro| {
                    ro.state == RolloutState::Running
                        && ro.to_revision == r.revision
                        && ro.switched.is_empty()
                })
            }) else {
                continue;
            };
            if let Some(ro) = &current.rollout {
                started.push(
                    Ev::new(EventKind::RolloutStarted)
                        .service(env, &change.service)
                        .field("revision", ro.to_revision)
                        .field("from_revision", ro.from_revision)
                        .field("state", ro.state.word())
                        .field("rollback", ro.is_rollback)
                        .field("by", who)
                        .msg(format!(
                            "{env}/{}: rollout of r{} (from r{}) started by {who}",
                            change.service, ro.to_revision, ro.from_revision
                        )),
                );
            }
            let mut replan = false;
            if let Some(rec) = self
                .step_service(current, now, ops, &mut first_steps, &mut replan)
                .await
            {
                next.services.insert(key, Arc::new(rec));
            }
        }
        txn.replan();
        for (name, rev, by) in superseded {
            txn.emit(superseded_event(env, &name, rev, by));
        }
        // Built after the plans are out: one per instance that moves.
        let (changes, by) = (response.clone(), who.to_string());
        txn.emit_later(move || {
            let mut out: Vec<Ev> = changes
                .services
                .iter()
                .flat_map(|c| deployed_events(c, &by))
                .collect();
            out.extend(started);
            out.extend(first_steps);
            out
        });
    }
}

/// A rollout an apply superseded: (service, its revision, the new one).
pub(super) type Superseded = (String, u64, u64);

/// Stages each of `services` (see [`stage_service`]); returns the changes
/// and the rollouts superseded.
#[allow(clippy::too_many_arguments)]
pub(super) fn stage_all(
    next: &mut Desired,
    candidates: &[Candidate<'_>],
    env: &str,
    services: Vec<(String, ServiceSpec)>,
    who: &str,
    source: &str,
    now: i64,
    ops: &mut Vec<Op>,
) -> Result<(Vec<ServiceChange>, Vec<Superseded>), StateError> {
    let mut changes = Vec::with_capacity(services.len());
    let mut superseded = Vec::new();
    for (name, spec) in services {
        let (change, gone) = stage_service(
            next,
            candidates,
            Staged {
                env,
                name: &name,
                spec,
                who,
                source,
                now,
                policy: None,
            },
            ops,
        )?;
        if let Some(rev) = gone {
            superseded.push((name, rev, change.revision));
        }
        changes.push(change);
    }
    Ok((changes, superseded))
}

/// `service.deployed` and an `instance.placed` per instance that moves.
pub(super) fn deployed_events(c: &ServiceChange, who: &str) -> Vec<Ev> {
    let action = c.action;
    let placed = c
        .instances
        .iter()
        .filter(|i| i.action != ChangeAction::Unchanged)
        .count();
    let word = match action {
        ChangeAction::Create => "created",
        ChangeAction::Update => "updated",
        _ if placed > 0 => "rescaled",
        _ => return Vec::new(),
    };
    let mut out = vec![Ev::new(EventKind::ServiceDeployed)
        .service(&c.env, &c.service)
        .msg(format!(
            "{}/{} {word}: revision {} by {who} ({} instances, {placed} changing)",
            c.env,
            c.service,
            c.revision,
            c.instances
                .iter()
                .filter(|i| i.action != ChangeAction::Remove)
                .count()
        ))
        .field("revision", c.revision)
        .field("previous_revision", c.previous_revision)
        .field("action", word)
        .field("by", who)];
    for i in &c.instances {
        let what = match i.action {
            ChangeAction::Create => "placed",
            ChangeAction::Replace => "replaced",
            ChangeAction::Remove => "removed",
            ChangeAction::Pending => "pending",
            _ => continue,
        };
        let on = if i.node.is_empty() {
            "no node matches yet".to_string()
        } else {
            format!("node {}", i.node)
        };
        out.push(
            Ev::new(EventKind::InstancePlaced)
                .instance(&i.instance_id)
                .node(&i.node)
                .msg(format!("{} {what}: {on}", i.instance_id))
                .field("action", what)
                .field("revision", c.revision),
        );
    }
    out
}

/// The rollout to `rev` gave way to `by`; `apply --wait` of `rev` ends.
pub(super) fn superseded_event(env: &str, name: &str, rev: u64, by: u64) -> Ev {
    Ev::new(EventKind::RolloutFailed)
        .service(env, name)
        .field("revision", rev)
        .field("state", "superseded")
        .field("reason", format!("superseded by r{by}"))
        .msg(format!(
            "{env}/{name}: the rollout to r{rev} is superseded by r{by}"
        ))
}

/// A unified diff of two specs, as pretty JSON (what `plan` shows).
/// A config's content shows as its size and digest, never its bytes.
pub fn spec_diff(old: &ServiceSpec, new: &ServiceSpec, old_rev: u64, new_rev: u64) -> String {
    let shown = |spec: &ServiceSpec| {
        let mut spec = spec.clone();
        for config in &mut spec.configs {
            config.content = spec::ConfigContent(config.content.summary().into_bytes());
        }
        serde_json::to_string_pretty(&spec).unwrap_or_default() + "\n"
    };
    let (a, b) = (shown(old), shown(new));
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(2)
        .header(&format!("r{old_rev}"), &format!("r{new_rev}"))
        .to_string()
}

/// One service of an apply (or a rollback): what to store.
pub(super) struct Staged<'a> {
    pub(super) env: &'a str,
    pub(super) name: &'a str,
    pub(super) spec: ServiceSpec,
    pub(super) who: &'a str,
    pub(super) source: &'a str,
    pub(super) now: i64,
    /// The rollout's policy, when not the new spec's `update` (a rollback
    /// runs under the current spec's `rollback_config`).
    pub(super) policy: Option<spec::UpdatePolicy>,
}

/// Stages a new spec for one service in `next`: placement, a new revision
/// when the spec changed, and the rollout that brings instances to it.
/// Returns the change, and the revision whose rollout it superseded.
pub(super) fn stage_service(
    next: &mut Desired,
    candidates: &[Candidate<'_>],
    st: Staged<'_>,
    ops: &mut Vec<Op>,
) -> Result<(ServiceChange, Option<u64>), StateError> {
    let Staged {
        env,
        name,
        spec: new_spec,
        who,
        source,
        now,
        policy,
    } = st;
    let policy = policy.unwrap_or_else(|| new_spec.deploy.update.clone());
    let key = (env.to_string(), name.to_string());
    let old = next.services.get(&key).filter(|r| !r.deleted).cloned();
    let old_assign = old
        .as_ref()
        .map(|o| o.assignments.clone())
        .unwrap_or_default();
    let old_gpus = old.as_ref().map(|o| o.gpus.clone()).unwrap_or_default();
    let in_env = in_env(candidates, env);
    let free = free_for(next, candidates, &new_spec, (env, name));
    let (assignments, gpus) =
        placement::place_within(&new_spec, &old_assign, &old_gpus, &in_env, free.as_ref());
    let (action, revision, previous, fields) = match &old {
        Some(o) if o.spec == new_spec => {
            (ChangeAction::Unchanged, o.revision, o.revision, Vec::new())
        }
        Some(o) => (
            ChangeAction::Update,
            o.revision + 1,
            o.revision,
            spec::changed_fields(&o.spec, &new_spec),
        ),
        None => {
            let last = next.services.get(&key).map(|r| r.revision).unwrap_or(0);
            (ChangeAction::Create, last + 1, last, Vec::new())
        }
    };
    let new_hash = new_spec.spec_hash();
    let old_hash = old.as_ref().map(|o| o.spec.spec_hash());
    let instances = instance_changes(
        env,
        name,
        &old_assign,
        old_hash.as_deref(),
        &assignments,
        &new_hash,
    );
    let diff = match (&old, action) {
        (Some(o), ChangeAction::Update) => spec_diff(&o.spec, &new_spec, previous, revision),
        _ => String::new(),
    };
    let change = ServiceChange {
        service: name.to_string(),
        env: env.to_string(),
        action,
        revision,
        previous_revision: previous,
        instances,
        changed_fields: fields,
        diff,
    };
    if action == ChangeAction::Unchanged && assignments == old_assign && gpus == old_gpus {
        return Ok((change, None));
    }
    // The rollout that brings the instances to the new spec.
    let mut superseded = None;
    let rollout = match &old {
        Some(o) if old_hash.as_deref() != Some(new_hash.as_str()) => {
            // A rollout still under way (or failed and left as it was) is
            // superseded: instances it had not switched keep the revision
            // it started from, those it had switched go straight to the new
            // one (in the same batch), as Nomad and Kubernetes do.
            match o.rollout.as_ref().filter(|r| r.state.is_active()) {
                Some(r) => {
                    superseded = Some(r.to_revision);
                    let mut nr = Rollout::new(
                        r.from_revision,
                        revision,
                        r.from_spec.clone(),
                        policy.clone(),
                        now,
                    );
                    nr.switched = r.switched.keys().map(|i| (*i, now)).collect();
                    nr.blue = r.blue.clone();
                    nr.promoted = r.from_revision == 0;
                    Some(nr)
                }
                None => Some(Rollout::new(
                    o.revision,
                    revision,
                    o.spec.clone(),
                    policy.clone(),
                    now,
                )),
            }
        }
        // Same containers: whatever rollout there was goes on.
        Some(o) => o.rollout.clone(),
        // A new service: every instance is new, and its gates still tell
        // whether the deployment worked.
        None => {
            let mut r = Rollout::new(0, revision, new_spec.clone(), policy.clone(), now);
            // Nothing to compare with: no canary phase, every instance new.
            r.promoted = true;
            for index in assignments.keys() {
                r.switched.insert(*index, now);
            }
            Some(r)
        }
    };
    // Blue-green: the new set runs beside the old one, under free numbers.
    let mut assignments = assignments;
    let mut gpus = gpus;
    let mut rollout = rollout;
    if let Some(r) = rollout.as_mut().filter(|r| {
        r.policy.strategy == spec::Strategy::BlueGreen
            && r.from_revision != 0
            && r.switched.is_empty()
            && r.blue.is_empty()
    }) {
        // The new set needs room beside the old one.
        let free = free.map(|mut f| {
            f.reserve(&new_spec, &assignments, &gpus);
            f
        });
        let (fresh, mut fresh_gpus) = placement::place_within(
            &new_spec,
            &Assignments::new(),
            &placement::GpuPins::new(),
            &in_env,
            free.as_ref(),
        );
        r.blue = assignments.keys().copied().collect();
        let free: Vec<u32> = (1u32..)
            .filter(|i| !assignments.contains_key(i))
            .take(fresh.len())
            .collect();
        for (index, (was, node)) in free.into_iter().zip(fresh) {
            assignments.insert(index, node);
            if let Some(pinned) = fresh_gpus.remove(&was) {
                gpus.insert(index, pinned);
            }
            r.switched.insert(index, now);
        }
    }
    let created = next
        .services
        .get(&key)
        .map(|r| r.created_unix_ms)
        .unwrap_or(now);
    if action != ChangeAction::Unchanged {
        ops.push(Op::put_json(
            revision_key(env, name, revision),
            &RevisionRecord {
                revision,
                spec: new_spec.clone(),
                created_unix_ms: now,
                created_by: who.to_string(),
                source: source.to_string(),
                outcome: String::new(),
            },
        ));
    }
    let rec = ServiceRecord {
        env: env.to_string(),
        name: name.to_string(),
        revision,
        spec: new_spec,
        deleted: false,
        assignments,
        gpus,
        created_unix_ms: created,
        updated_unix_ms: now,
        rollout,
    };
    ops.push(Op::put_json(service_key(env, name), &rec));
    next.services.insert(key, Arc::new(rec));
    Ok((change, superseded))
}

/// What an apply does to each instance, node by node.
pub(super) fn instance_changes(
    env: &str,
    service: &str,
    old: &Assignments,
    old_hash: Option<&str>,
    new: &Assignments,
    new_hash: &str,
) -> Vec<InstanceChange> {
    use ChangeAction as A;
    let mut out = Vec::new();
    let mut push = |index: u32, node: &Option<String>, action: A| {
        out.push(InstanceChange {
            instance_id: workload_id(env, service, index),
            node: node.clone().unwrap_or_default(),
            action,
        })
    };
    let indices: std::collections::BTreeSet<u32> = old.keys().chain(new.keys()).copied().collect();
    for index in indices {
        match (old.get(&index), new.get(&index)) {
            (None, Some(n)) => push(index, n, if n.is_some() { A::Create } else { A::Pending }),
            (Some(o), None) => {
                if o.is_some() {
                    push(index, o, A::Remove)
                }
            }
            (Some(o), Some(n)) if o == n => match n {
                None => push(index, n, A::Pending),
                Some(_) if old_hash == Some(new_hash) => push(index, n, A::Unchanged),
                Some(_) => push(index, n, A::Replace),
            },
            (Some(o), Some(n)) => {
                if o.is_some() {
                    push(index, o, A::Remove);
                }
                push(index, n, if n.is_some() { A::Create } else { A::Pending });
            }
            (None, None) => {}
        }
    }
    out
}

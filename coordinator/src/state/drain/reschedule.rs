//! Rescheduling: the instances of nodes lost longer than their service's
//! `reschedule_after` (or removed) are placed on other nodes.

use super::*;

impl Coordinator {
    /// Moves the instances of nodes lost longer than their service's
    /// `reschedule_after` (or removed) to other nodes, in one commit.
    /// Called about once a second; returns at once while no lost node is
    /// due, so it costs O(lost nodes).
    pub async fn reschedule_lost(&self) {
        let now = now_unix_ms();
        let due: Vec<(String, LostNode)> = {
            let live = self.live();
            if live.lost.is_empty() {
                return;
            }
            live.lost
                .iter()
                .filter(|(_, l)| l.next_check_unix_ms <= now)
                .map(|(n, l)| (n.clone(), *l))
                .collect()
        };
        if due.is_empty() {
            return;
        }
        let connected = self.connected();
        let mut txn = self.begin("reschedule").await;
        let removed: HashSet<&str> = due
            .iter()
            .filter(|(n, _)| {
                txn.desired()
                    .nodes
                    .get(n)
                    .is_some_and(|r| r.removed_unix_ms != 0)
            })
            .map(|(n, _)| n.as_str())
            .collect();
        let due_at: HashMap<&str, i64> = due
            .iter()
            .map(|(n, l)| (n.as_str(), l.since_unix_ms))
            .collect();
        // Per node: when the pass should look again.
        let mut next_check: HashMap<String, i64> = HashMap::new();
        let mut work: Vec<((String, String), BTreeSet<String>)> = Vec::new();
        for (key, rec) in txn.desired().services.iter() {
            if rec.deleted || !movable(&rec.spec) || blue_green_active(rec) {
                continue;
            }
            let after = rec.spec.reschedule_after_ms();
            let mut leaving = BTreeSet::new();
            for node in rec.assignments.values().flatten() {
                let Some(since) = due_at.get(node.as_str()) else {
                    continue;
                };
                if connected.get(node).copied().unwrap_or(false) {
                    continue; // came back since
                }
                if removed.contains(node.as_str()) {
                    leaving.insert(node.clone());
                    continue;
                }
                let Some(after) = after else { continue };
                let at = since.saturating_add(after as i64);
                if at <= now {
                    leaving.insert(node.clone());
                } else {
                    let e = next_check.entry(node.clone()).or_insert(i64::MAX);
                    *e = (*e).min(at);
                }
            }
            if !leaving.is_empty() {
                work.push((key.clone(), leaving));
            }
        }
        let mut stuck_nodes: HashSet<String> = HashSet::new();
        if !work.is_empty() {
            let views = node_views(txn.desired(), &connected);
            let cands = candidates(&views);
            let mut changed = Vec::new();
            let mut events = Vec::new();
            let mut ops = Vec::new();
            let mut book = self.drain_book();
            for (key, leaving) in work {
                let Some(rec) = txn.desired().services.get(&key) else {
                    continue;
                };
                let env_nodes = in_env(&cands, &rec.env);
                let free = free_for(txn.desired(), &cands, &rec.spec, (&key.0, &key.1));
                let leaving_refs: BTreeSet<&str> = leaving.iter().map(String::as_str).collect();
                let mut m = placement::move_off(
                    &rec.spec,
                    &rec.assignments,
                    &rec.gpus,
                    &env_nodes,
                    free.as_ref(),
                    &leaving_refs,
                    usize::MAX,
                );
                // A removed node never comes back: what cannot move waits
                // pending (`convoy status` says why) instead of on it.
                let mut unplaced = false;
                m.stuck.retain(|index| {
                    let on_removed = rec
                        .assignments
                        .get(index)
                        .cloned()
                        .flatten()
                        .is_some_and(|n| removed.contains(n.as_str()));
                    if on_removed {
                        m.assignments.insert(*index, None);
                        m.gpus.remove(index);
                        unplaced = true;
                    }
                    !on_removed
                });
                for index in &m.stuck {
                    let id = workload_id(&rec.env, &rec.name, *index);
                    if let Some(Some(node)) = rec.assignments.get(index) {
                        stuck_nodes.insert(node.clone());
                    }
                    if book.told.insert(id.clone()) {
                        let staying: Vec<Candidate<'_>> = env_nodes
                            .iter()
                            .filter(|c| !leaving_refs.contains(c.name))
                            .cloned()
                            .collect();
                        let why = pending_reason(
                            &rec.spec,
                            &rec.env,
                            &staying,
                            &rec.assignments,
                            free.as_ref(),
                        );
                        events.push(
                            Ev::new(EventKind::InstanceRescheduled)
                                .instance(&id)
                                .field("stuck", true)
                                .msg(format!(
                                    "{id} cannot move off its lost node: {why}; it stays there"
                                )),
                        );
                    }
                }
                if m.moved.is_empty() && !unplaced {
                    continue;
                }
                let mut next = ServiceRecord::clone(rec);
                for (index, from, to) in &m.moved {
                    let id = workload_id(&rec.env, &rec.name, *index);
                    book.told.remove(&id);
                    let why = if removed.contains(from.as_str()) {
                        format!("node {from} was removed")
                    } else {
                        let lost_for = now - due_at.get(from.as_str()).copied().unwrap_or(now);
                        format!("node {from} lost for {} s", lost_for / 1000)
                    };
                    tracing::warn!(instance = %id, from = %from, to = %to, "rescheduled: {why}");
                    events.push(
                        Ev::new(EventKind::InstanceRescheduled)
                            .instance(&id)
                            .node(to)
                            .field("from", from)
                            .field("to", to)
                            .msg(format!("{id} rescheduled from {from} to {to}: {why}")),
                    );
                }
                next.assignments = m.assignments;
                next.gpus = m.gpus;
                next.updated_unix_ms = now;
                ops.push(Op::put_json(service_key(&next.env, &next.name), &next));
                changed.push((key, Arc::new(next)));
            }
            drop(book);
            if !changed.is_empty() {
                txn.stage().services.extend(changed);
                txn.ops().extend(ops);
                txn.replan();
            }
            for e in events {
                txn.emit(e);
            }
        }
        if let Err(e) = txn.commit().await {
            tracing::error!(error = %e, "cannot store rescheduled instances; retrying");
            return;
        }
        // Look again when the next instance of each node is due, sooner
        // where some could not move (a node may have joined), never where
        // nothing is left to move.
        let mut live = self.live();
        for (node, _) in &due {
            if let Some(l) = live.lost.get_mut(node) {
                let mut at = next_check.get(node).copied().unwrap_or(i64::MAX);
                if stuck_nodes.contains(node) {
                    at = at.min(now + RETRY_STUCK_MS);
                }
                l.next_check_unix_ms = at;
            }
        }
    }
}

//! Driving drains: each pass moves the next batch of a draining node's
//! instances under the update gates, and ends the drain when nothing
//! movable is left there.

use super::*;

impl Coordinator {
    /// Steps every drain once: moves the next batch of each service's
    /// instances off the node once the previous one is healthy, and ends
    /// the drain when nothing movable is left there. Returns at once while
    /// no node drains.
    pub async fn drive_drains(&self) {
        let nodes: Vec<String> = {
            let book = self.drain_book();
            if book.draining.is_empty() {
                return;
            }
            book.draining.iter().cloned().collect()
        };
        let now = now_unix_ms();
        let connected = self.connected();
        let mut txn = self.begin("drain pass").await;
        let views = node_views(txn.desired(), &connected);
        let mut changed: Vec<((String, String), Arc<ServiceRecord>)> = Vec::new();
        let mut ops = Vec::new();
        let mut events = Vec::new();
        let mut done_nodes = Vec::new();
        let mut blocked_by_node: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
        let mut seen_healthy: HashSet<(String, String)> = HashSet::new();
        let mut healthy_since = std::mem::take(&mut self.drain_book().healthy_since);
        for node in &nodes {
            let still = txn
                .desired()
                .nodes
                .get(node)
                .is_some_and(|r| r.draining && r.removed_unix_ms == 0);
            if !still {
                done_nodes.push((node.clone(), false));
                continue;
            }
            let cands = candidates(&views);
            let mut remaining = 0usize;
            let mut blocked = Vec::new();
            let mut waiting = Vec::new();
            let keys: Vec<(String, String)> = txn
                .desired()
                .services
                .iter()
                .filter(|(k, r)| {
                    !r.deleted
                        && !changed.iter().any(|(c, _)| c == *k)
                        && r.assignments.values().any(|n| n.as_deref() == Some(node))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                let Some(rec) = txn.desired().services.get(&key) else {
                    continue;
                };
                let (env, name) = (rec.env.clone(), rec.name.clone());
                if rec.spec.is_unit() || rec.spec.swarm.is_some() {
                    continue; // host-bound, or Swarm's: they stay
                }
                let on_node: Vec<u32> = rec
                    .assignments
                    .iter()
                    .filter(|(_, n)| n.as_deref() == Some(node.as_str()))
                    .map(|(i, _)| *i)
                    .collect();
                if rec.spec.is_global() {
                    // One instance per node: the node's goes, none comes.
                    let mut next = ServiceRecord::clone(rec);
                    next.assignments.retain(|i, _| !on_node.contains(i));
                    next.gpus.retain(|i, _| !on_node.contains(i));
                    next.updated_unix_ms = now;
                    ops.push(Op::put_json(service_key(&env, &name), &next));
                    for i in &on_node {
                        events.push(
                            Ev::new(EventKind::InstanceRescheduled)
                                .instance(&workload_id(&env, &name, *i))
                                .node(node)
                                .field("from", node)
                                .msg(format!(
                                    "{env}/{name}/{i} stopped: node {node} drains (a global \
                                     service's instance does not move)"
                                )),
                        );
                    }
                    changed.push((key, Arc::new(next)));
                    continue;
                }
                remaining += on_node.len();
                if rec
                    .rollout
                    .as_ref()
                    .is_some_and(|r| r.state == RolloutState::Running || r.has_blue())
                {
                    waiting.push(format!("{env}/{name}: waiting for its rollout to finish"));
                    continue;
                }
                // The gates: instances elsewhere must be healthy, the
                // moved ones for `min_healthy_time`, before the next batch.
                let policy = &rec.spec.deploy.update;
                let batch = match policy.max_parallel {
                    0 => usize::MAX,
                    n => n as usize,
                };
                let mut unsettled = Vec::new();
                for view in self.instance_views(rec) {
                    let Some(Some(at)) = rec.assignments.get(&view.index) else {
                        continue;
                    };
                    if at == node {
                        continue;
                    }
                    let id = workload_id(&env, &name, view.index);
                    let k = (id.clone(), at.clone());
                    let settled = if view.healthy {
                        let since = *healthy_since.entry(k.clone()).or_insert(now);
                        seen_healthy.insert(k);
                        now - since >= policy.min_healthy_time_ms as i64
                    } else {
                        false
                    };
                    if !settled {
                        unsettled.push(format!("{id} on {at}"));
                    }
                }
                let room = batch.saturating_sub(unsettled.len());
                if room == 0 {
                    waiting.push(format!(
                        "{env}/{name}: waiting for {} to be healthy",
                        unsettled.join(", ")
                    ));
                    continue;
                }
                let env_nodes = in_env(&cands, &env);
                let free = free_for(txn.desired(), &cands, &rec.spec, (&env, &name));
                let leaving = BTreeSet::from([node.as_str()]);
                let m = placement::move_off(
                    &rec.spec,
                    &rec.assignments,
                    &rec.gpus,
                    &env_nodes,
                    free.as_ref(),
                    &leaving,
                    room,
                );
                if !m.stuck.is_empty() {
                    let staying: Vec<Candidate<'_>> = env_nodes
                        .iter()
                        .filter(|c| c.name != node)
                        .cloned()
                        .collect();
                    let why =
                        pending_reason(&rec.spec, &env, &staying, &rec.assignments, free.as_ref());
                    for i in &m.stuck {
                        blocked.push(format!("{env}/{name}/{i}: cannot move: {why}"));
                    }
                }
                if m.moved.is_empty() {
                    continue;
                }
                {
                    let mut book = self.drain_book();
                    let set = book.moved.entry(node.clone()).or_default();
                    for (index, _, _) in &m.moved {
                        set.insert((env.clone(), name.clone(), *index));
                    }
                }
                for (index, from, to) in &m.moved {
                    let id = workload_id(&env, &name, *index);
                    tracing::info!(instance = %id, from = %from, to = %to, "drain: moved");
                    events.push(
                        Ev::new(EventKind::InstanceRescheduled)
                            .instance(&id)
                            .node(to)
                            .field("from", from)
                            .field("to", to)
                            .field("reason", "drain")
                            .msg(format!(
                                "{id} moved from {from} to {to}: node {from} drains"
                            )),
                    );
                }
                let mut next = ServiceRecord::clone(rec);
                next.assignments = m.assignments;
                next.gpus = m.gpus;
                next.updated_unix_ms = now;
                ops.push(Op::put_json(service_key(&env, &name), &next));
                changed.push((key, Arc::new(next)));
            }
            if remaining == 0 {
                // The last batch must be healthy where it went too.
                let moved = self
                    .drain_book()
                    .moved
                    .get(node)
                    .cloned()
                    .unwrap_or_default();
                let mut unhealthy = Vec::new();
                for (env, name, index) in moved {
                    let key = (env.clone(), name.clone());
                    let rec = changed
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, r)| r.clone())
                        .or_else(|| txn.desired().services.get(&key).cloned());
                    let Some(rec) = rec.filter(|r| !r.deleted) else {
                        continue;
                    };
                    if !rec.assignments.contains_key(&index) {
                        continue;
                    }
                    let healthy = self
                        .instance_views(&rec)
                        .iter()
                        .any(|v| v.index == index && v.healthy);
                    if !healthy {
                        unhealthy.push(workload_id(&env, &name, index));
                    }
                }
                if unhealthy.is_empty() {
                    done_nodes.push((node.clone(), true));
                } else {
                    waiting.push(format!(
                        "waiting for {} to be healthy where it moved",
                        unhealthy.join(", ")
                    ));
                    blocked_by_node.insert(node.clone(), (blocked, waiting));
                }
            } else {
                blocked_by_node.insert(node.clone(), (blocked, waiting));
            }
        }
        healthy_since.retain(|k, _| seen_healthy.contains(k));
        for (node, drained) in &done_nodes {
            if !drained {
                continue;
            }
            let Some(record) = txn.desired().nodes.get(node).cloned() else {
                continue;
            };
            let updated = NodeRecord {
                draining: false,
                drained: true,
                ..record
            };
            ops.push(Op::put_json(format!("nodes/{node}"), &updated));
            let (next, _, _) = txn.parts();
            Arc::make_mut(&mut next.nodes).insert(node.clone(), updated);
            events.push(Ev::new(EventKind::NodeDrained).node(node).msg(format!(
                "node {node} drained: no instance left to move; it stays cordoned"
            )));
        }
        if !changed.is_empty() {
            txn.stage().services.extend(changed);
            txn.replan();
        }
        txn.ops().extend(ops);
        for e in events {
            txn.emit(e);
        }
        if let Err(e) = txn.commit().await {
            tracing::error!(error = %e, "cannot store drain progress; retrying");
            self.drain_book().healthy_since = healthy_since;
            return;
        }
        let mut book = self.drain_book();
        book.healthy_since = healthy_since;
        for (node, _) in done_nodes {
            book.draining.remove(&node);
            book.blocked.remove(&node);
            book.waiting.remove(&node);
            book.moved.remove(&node);
        }
        for (node, (blocked, waiting)) in blocked_by_node {
            book.blocked.insert(node.clone(), blocked);
            book.waiting.insert(node, waiting);
        }
    }
}

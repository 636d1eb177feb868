//! Agents joining and leaving: group-committed session registration,
//! certificate renewal, enrolment and node removal.

use super::*;

/// An agent session waiting to be registered (see [`Coordinator::register`]).
pub(super) struct Registration {
    pub(super) node: String,
    pub(super) certificate: String,
    pub(super) certificate_expires_unix_ms: i64,
    pub(super) hello: AgentHello,
    pub(super) address: Option<SocketAddr>,
    pub(super) reply: oneshot::Sender<Result<SessionHandle, StateError>>,
}

/// What a newly registered agent session needs.
pub struct SessionHandle {
    pub conn_id: u64,
    pub plan_rx: watch::Receiver<Option<Arc<pb::NodePlan>>>,
    /// Everything else the coordinator sends on the stream: commands,
    /// and the session's own pings and renewal answers.
    pub commands_rx: mpsc::Receiver<Box<pb::CoordinatorMessage>>,
    pub commands: mpsc::Sender<Box<pb::CoordinatorMessage>>,
    pub cancel: CancellationToken,
}

impl Coordinator {
    /// Registers an agent session for `node` (named by its certificate).
    /// A newer session of the same node replaces the older one.
    ///
    /// Registrations are group-committed: each queues itself, and whoever
    /// holds the desired-state lock registers everything queued in one pass
    /// (one clone of desired state, one placement, one plan computation, one
    /// store write), so a reconnect storm of N agents costs O(N) per batch,
    /// not per agent.
    pub async fn register(
        &self,
        node: &str,
        certificate: &str,
        certificate_expires_unix_ms: i64,
        hello: AgentHello,
        address: Option<SocketAddr>,
    ) -> Result<SessionHandle, StateError> {
        // The TLS verifier refuses revoked certificates already; this also
        // covers a revocation that raced with the handshake.
        if self.is_revoked(certificate) {
            return Err(StateError::Revoked(node.to_string()));
        }
        let (reply, answer) = oneshot::channel();
        self.registering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Registration {
                node: node.to_string(),
                certificate: certificate.to_string(),
                certificate_expires_unix_ms,
                hello,
                address,
                reply,
            });
        let mut answer = std::pin::pin!(answer);
        loop {
            // Whoever gets the lock registers everything queued; a caller
            // whose registration someone else's batch took leaves the lock's
            // queue as soon as its answer is in, instead of taking the lock
            // (and the next batch) in turn: under a storm, waiting callers
            // would otherwise each hold the lock for a batch of newcomers,
            // and answers would come out at the rate of batches.
            tokio::select! {
                biased;
                answer = &mut answer => {
                    return answer.unwrap_or_else(|_| {
                        Err(StateError::Invalid(
                            "the coordinator is shutting down".into(),
                        ))
                    });
                }
                desired = self.desired.lock() => {
                    let batch = std::mem::take(
                        &mut *self.registering.lock().unwrap_or_else(|p| p.into_inner()),
                    );
                    if !batch.is_empty() {
                        let txn = Txn::new(self, desired, "registrations");
                        self.register_batch(txn, batch).await;
                    }
                }
            }
        }
    }

    pub(super) async fn register_batch(&self, mut txn: Txn<'_>, batch: Vec<Registration>) {
        let now = now_unix_ms();
        // The batch's node records, staged beside desired state (which is
        // only cloned when placement or plans may change, below).
        let mut staged: BTreeMap<String, NodeRecord> = BTreeMap::new();
        let mut done = Vec::with_capacity(batch.len());
        for r in batch {
            let Registration {
                node,
                certificate,
                certificate_expires_unix_ms,
                hello,
                address,
                reply,
            } = r;
            let AgentHello {
                mut facts,
                agent_version,
                // The session's business (how plans are sent).
                capabilities: _,
            } = hello;
            let desired = txn.desired();
            if let Some(e) = desired.enrolled.get(&node) {
                facts
                    .labels
                    .extend(e.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let old = staged.get(&node).or_else(|| desired.nodes.get(&node));
            let first_time = old.is_none();
            let mut record = match old {
                Some(old) => NodeRecord {
                    facts: Arc::new(facts),
                    agent_version,
                    last_seen_unix_ms: now,
                    removed_unix_ms: 0,
                    ..old.clone()
                },
                None => NodeRecord {
                    name: node.to_string(),
                    facts: Arc::new(facts),
                    agent_version,
                    first_seen_unix_ms: now,
                    last_seen_unix_ms: now,
                    certificates: Vec::new(),
                    removed_unix_ms: 0,
                    certificate_expires_unix_ms: 0,
                    cordoned: false,
                    draining: false,
                    drained: false,
                },
            };
            record.certificate_expires_unix_ms = certificate_expires_unix_ms;
            remember_certificate(&mut record, &certificate);
            txn.put(Op::put_json(format!("nodes/{node}"), &record));
            staged.insert(node.to_string(), record);

            let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
            let cancel = self.shutdown.child_token();
            let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
            let address = address.map(|a| a.to_string()).unwrap_or_default();
            let (previous, was_ready) = {
                let mut live = self.live();
                live.lost.remove(&node);
                let entry = live.nodes.entry(node.to_string()).or_default();
                let was_ready = entry.ready();
                entry.last_heartbeat_unix_ms = now;
                entry.silent = false;
                let previous = entry.session.replace(SessionInfo {
                    conn_id,
                    connected_since_unix_ms: now,
                    address: address.clone(),
                    cancel: cancel.clone(),
                    commands: commands.clone(),
                });
                (previous, was_ready)
            };
            if first_time {
                txn.emit(
                    Ev::new(EventKind::NodeJoined)
                        .node(&node)
                        .msg(format!("node {node} joined from {address}"))
                        .field("address", &address),
                );
            } else if !was_ready {
                txn.emit(
                    Ev::new(EventKind::NodeReady)
                        .node(&node)
                        .msg(format!("node {node} connected from {address}"))
                        .field("reason", "connected")
                        .field("address", &address),
                );
            }
            if let Some(old) = previous {
                tracing::info!(
                    node,
                    old_conn = old.conn_id,
                    "a newer session replaces the old one"
                );
                old.cancel.cancel();
            }
            done.push((node, conn_id, cancel, (commands, commands_rx), reply));
        }

        // Instances waiting for a node, and global services, may land on
        // these nodes; nodes coming back as they were change nothing (the
        // usual case in a reconnect storm), so placement and plans, O(all
        // nodes), are skipped for them.
        if may_place(txn.desired(), &staged) {
            let connected = self.connected();
            let (next, ops, _) = txn.parts();
            Arc::make_mut(&mut next.nodes).extend(staged);
            replace_all(next, &connected, ops);
            txn.replan();
        } else {
            // Nothing can be placed on them: their records are patched in
            // place (no copy of 10,000 node records), and nodes new to the
            // coordinator get an empty plan under one fresh generation.
            let desired = txn.desired();
            let fresh = desired.plan_generation + 1;
            let new: Vec<String> = staged
                .keys()
                .filter(|n| !desired.plans.contains_key(*n))
                .cloned()
                .collect();
            if !new.is_empty() {
                txn.put(Op::put_json(PLAN_GENERATION_KEY, &fresh));
                for node in &new {
                    let plan = pb::NodePlan {
                        generation: fresh,
                        workloads: Vec::new(),
                        ..Default::default()
                    };
                    txn.send_plan(node.clone(), plan);
                }
            }
            txn.patch(move |desired| {
                Arc::make_mut(&mut desired.nodes).extend(staged);
                if !new.is_empty() {
                    desired.plan_generation = fresh;
                    let plans = Arc::make_mut(&mut desired.plans);
                    for node in new {
                        let record = PlanRecord {
                            generation: fresh,
                            hash: plan_hash(&[], &[], &[], false),
                        };
                        plans.insert(node, record);
                    }
                }
            });
        }
        if let Err(e) = txn.commit().await {
            let e = Arc::new(e);
            for (node, conn_id, _, _, reply) in done {
                self.undo_session(&node, conn_id);
                let _ = reply.send(Err(StoreError::Shared(e.clone()).into()));
            }
            return;
        }
        let mut gone = Vec::new();
        let mut live = self.live();
        for (node, conn_id, cancel, (commands, commands_rx), reply) in done {
            let plan_rx = live
                .plans
                .entry(node.clone())
                .or_insert_with(|| {
                    watch::channel(Some(Arc::new(pb::NodePlan {
                        generation: 0,
                        workloads: Vec::new(),
                        ..Default::default()
                    })))
                    .0
                })
                .subscribe();
            let handle = SessionHandle {
                conn_id,
                plan_rx,
                commands_rx,
                commands,
                cancel,
            };
            // The caller gave up (its stream closed) while queued: undo its
            // session so the node does not look connected.
            if let Err(Ok(handle)) = reply.send(Ok(handle)) {
                handle.cancel.cancel();
                gone.push((node, conn_id));
            }
        }
        drop(live);
        for (node, conn_id) in gone {
            self.disconnect(&node, conn_id);
        }
    }

    /// Records a certificate the node renewed to, so that removing the node
    /// revokes it too.
    pub async fn renewed(
        &self,
        node: &str,
        certificate: &str,
        expires_unix_ms: i64,
    ) -> Result<(), StateError> {
        let mut txn = self.begin("renewal").await;
        let Some(mut record) = txn.desired().nodes.get(node).cloned() else {
            return Err(StateError::NodeNotFound(node.to_string()));
        };
        if record.removed_unix_ms != 0 {
            return Err(StateError::Revoked(node.to_string()));
        }
        remember_certificate(&mut record, certificate);
        record.certificate_expires_unix_ms = expires_unix_ms;
        txn.put(Op::put_json(format!("nodes/{node}"), &record));
        let node = node.to_string();
        txn.patch(move |d| {
            Arc::make_mut(&mut d.nodes).insert(node, record);
        });
        txn.commit().await?;
        Ok(())
    }

    /// Whether a node of that name is known and not removed (a join under
    /// its name would impersonate it).
    pub async fn node_is_active(&self, node: &str) -> bool {
        self.desired
            .lock()
            .await
            .nodes
            .get(node)
            .is_some_and(|n| n.removed_unix_ms == 0)
    }

    /// Records that `node` enrolled with a join token and takes its labels.
    pub async fn enroll(
        &self,
        node: &str,
        token_id: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), StateError> {
        let mut txn = self.begin("enrolment").await;
        let rec = EnrollRecord {
            node: node.to_string(),
            token_id: token_id.to_string(),
            labels: labels.clone(),
            enrolled_unix_ms: now_unix_ms(),
        };
        txn.put(Op::put_json(format!("enrolled/{node}"), &rec));
        let node = node.to_string();
        txn.patch(move |d| {
            Arc::make_mut(&mut d.enrolled).insert(node, rec);
        });
        txn.commit().await?;
        Ok(())
    }

    /// Revokes every certificate the node connected with, ends its stream at
    /// once and marks its instances lost. The node may come back only with a
    /// new certificate.
    pub async fn remove_node(&self, node: &str) -> Result<NodeRemoved, StateError> {
        let mut txn = self.begin("node removal").await;
        let Some(record) = txn.desired().nodes.get(node).cloned() else {
            return Err(StateError::NodeNotFound(node.to_string()));
        };
        let now = now_unix_ms();
        for fp in &record.certificates {
            txn.put(Op::put_json(
                format!("revoked/{fp}"),
                &RevokedRecord {
                    fingerprint: fp.clone(),
                    node: node.to_string(),
                    revoked_unix_ms: now,
                },
            ));
        }
        let updated = NodeRecord {
            removed_unix_ms: now,
            ..record.clone()
        };
        txn.put(Op::put_json(format!("nodes/{node}"), &updated));
        let lost = txn
            .desired()
            .services
            .values()
            .filter(|r| !r.deleted)
            .flat_map(|r| r.assignments.values())
            .filter(|n| n.as_deref() == Some(node))
            .count() as u32;
        txn.emit(
            Ev::new(EventKind::NodeRemoved)
                .node(node)
                .msg(format!(
                    "node {node} removed: {} certificates revoked, {lost} instances lost",
                    record.certificates.len()
                ))
                .field("lost_instances", lost),
        );
        let name = node.to_string();
        txn.patch(move |d| {
            Arc::make_mut(&mut d.nodes).insert(name, updated);
        });
        txn.commit().await?;
        if let Ok(mut set) = self.revoked.write() {
            set.extend(record.certificates.iter().cloned());
        }
        let session = {
            let mut live = self.live();
            // Gone for good: its instances move at once (`drain.rs`).
            live.lost
                .insert(node.to_string(), drain::LostNode::since(0));
            live.nodes.remove(node).and_then(|n| n.session)
        };
        if let Some(s) = session {
            s.cancel.cancel();
        }
        self.drain_book().draining.remove(node);
        self.proxy_figures.forget_node(node);
        self.reschedule_lost().await;
        tracing::warn!(
            node,
            certificates = record.certificates.len(),
            lost,
            "node removed; its certificates are revoked"
        );
        Ok(NodeRemoved {
            lost_instances: lost,
            revoked_certificates: record.certificates.len() as u32,
        })
    }
}

/// Whether registering the `staged` node records may change placement or
/// plans. Placement never moves an instance that has a node, so nodes that
/// come back as they were (not removed, same facts), and nodes new here,
/// change nothing unless an instance waits for a node: a replicated
/// service with an unplaced instance, or a global one that one of these
/// nodes is eligible for and has no instance of.
pub(super) fn may_place(desired: &Desired, staged: &BTreeMap<String, NodeRecord>) -> bool {
    let changed = staged.iter().any(|(name, record)| {
        let known = desired.nodes.get(name);
        known.is_some_and(|old| old.removed_unix_ms != 0 || old.facts != record.facts)
            || known.is_some() != desired.plans.contains_key(name)
    });
    if changed {
        return true;
    }
    desired.services.values().filter(|r| !r.deleted).any(|rec| {
        if rec
            .rollout
            .as_ref()
            .is_some_and(|r| r.state.is_active() && r.has_blue())
        {
            return false;
        }
        if rec.assignments.values().any(Option::is_none) {
            return true;
        }
        if !rec.spec.is_global() {
            return rec.assignments.len() != rec.spec.replicas() as usize;
        }
        let placed: std::collections::HashSet<&str> = rec
            .assignments
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        staged.iter().any(|(name, record)| {
            if placed.contains(name.as_str()) {
                return false;
            }
            let facts = &record.facts;
            node_serves(facts, &rec.env)
                && rec
                    .spec
                    .constraints()
                    .iter()
                    .all(|k| k.matches(name, facts))
        })
    })
}

/// Re-runs placement for every live service (new nodes may take pending
/// instances or global ones); existing assignments never move here.
pub(super) fn replace_all(
    next: &mut Desired,
    connected: &HashMap<String, bool>,
    ops: &mut Vec<Op>,
) {
    let nodes = node_views(next, connected);
    let candidates = candidates(&nodes);
    let keys: Vec<(String, String)> = next.services.keys().cloned().collect();
    for key in keys {
        let Some(rec) = next.services.get(&key).filter(|r| !r.deleted) else {
            continue;
        };
        // Both sets of a blue-green rollout stay where they are until it ends.
        if rec
            .rollout
            .as_ref()
            .is_some_and(|r| r.state.is_active() && r.has_blue())
        {
            continue;
        }
        let free = free_for(next, &candidates, &rec.spec, (&key.0, &key.1));
        let (placed, gpus) = placement::place_within(
            &rec.spec,
            &rec.assignments,
            &rec.gpus,
            &in_env(&candidates, &rec.env),
            free.as_ref(),
        );
        if placed != rec.assignments || gpus != rec.gpus {
            let Some(rec) = next.services.get_mut(&key) else {
                continue;
            };
            let rec = Arc::make_mut(rec);
            rec.assignments = placed;
            rec.gpus = gpus;
            rec.updated_unix_ms = now_unix_ms();
            ops.push(Op::put_json(service_key(&rec.env, &rec.name), &*rec));
        }
    }
}

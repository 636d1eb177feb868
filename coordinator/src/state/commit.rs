//! The one way desired state changes. A [`Txn`] holds the desired-state
//! lock; a change is staged on a copy of desired state (cheap: the big maps
//! are shared and copied on write) or as small patches applied in place,
//! with the store operations and events it makes; [`Txn::commit`] then
//! writes the store in one batch, recomputes the plans, swaps the staged
//! state in, hands the new plans to agent sessions and emits the events.
//! A failed store write changes nothing. No other code writes desired
//! state to the store or sends plans (Nomad's `fsm.Apply` has the same
//! shape).

use std::time::Instant;

use super::*;

/// A change to apply to desired state once its store write succeeded, in
/// place: for small edits of a map the staged copy would otherwise copy
/// whole (a node record in 10,000). Patches must not change what plans
/// hold: plans are computed before the store write, from the staged copy.
type Patch = Box<dyn FnOnce(&mut Desired) + Send>;

/// Events built only once the change is committed and its plans are out
/// (10,000 `instance.placed` events need not delay the plans).
type LaterEvents = Box<dyn FnOnce() -> Vec<Ev> + Send>;

/// A transaction on desired state; see the module docs.
pub(super) struct Txn<'a> {
    coord: &'a Coordinator,
    current: tokio::sync::MutexGuard<'a, Desired>,
    staged: Option<Desired>,
    patches: Vec<Patch>,
    ops: Vec<Op>,
    replan: Option<Publish>,
    /// Nodes replanned besides those the change touched (a follower's
    /// copy of a changed node record, whose facts plans may hold).
    replan_also: HashSet<String>,
    plans: Vec<(String, Arc<pb::NodePlan>)>,
    events: Vec<Ev>,
    later: Vec<LaterEvents>,
    what: &'static str,
    started: Instant,
}

/// What a commit did, for callers that report it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Committed {
    /// Store operations written (after dropping superseded writes of a key).
    pub(super) writes: usize,
    /// Plans handed to agent sessions.
    pub(super) plans: usize,
    /// Node plans computed (those the change touched).
    pub(super) recomputed: usize,
}

impl Coordinator {
    /// Takes the desired-state lock and starts a transaction named `what`
    /// (for logs).
    pub(super) async fn begin(&self, what: &'static str) -> Txn<'_> {
        let current = self.desired.lock().await;
        Txn::new(self, current, what)
    }
}

impl<'a> Txn<'a> {
    /// A transaction under a lock the caller already holds.
    pub(super) fn new(
        coord: &'a Coordinator,
        current: tokio::sync::MutexGuard<'a, Desired>,
        what: &'static str,
    ) -> Self {
        Self {
            coord,
            current,
            staged: None,
            patches: Vec::new(),
            ops: Vec::new(),
            replan: None,
            replan_also: HashSet::new(),
            plans: Vec::new(),
            events: Vec::new(),
            later: Vec::new(),
            what,
            started: Instant::now(),
        }
    }

    /// Desired state as this transaction sees it (staged changes included,
    /// patches not).
    pub(super) fn desired(&self) -> &Desired {
        self.staged.as_ref().unwrap_or(&self.current)
    }

    /// The staged copy of desired state, made on first use.
    pub(super) fn stage(&mut self) -> &mut Desired {
        let current = &self.current;
        self.staged.get_or_insert_with(|| Desired::clone(current))
    }

    /// The staged copy, the store operations and the events at once.
    pub(super) fn parts(&mut self) -> (&mut Desired, &mut Vec<Op>, &mut Vec<Ev>) {
        let current = &self.current;
        let staged = self.staged.get_or_insert_with(|| Desired::clone(current));
        (staged, &mut self.ops, &mut self.events)
    }

    /// Applies `f` in place once the store write succeeded (see [`Patch`]).
    pub(super) fn patch(&mut self, f: impl FnOnce(&mut Desired) + Send + 'static) {
        self.patches.push(Box::new(f));
    }

    /// A store write of this transaction.
    pub(super) fn put(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub(super) fn ops(&mut self) -> &mut Vec<Op> {
        &mut self.ops
    }

    /// An event, emitted once the change is committed and published.
    pub(super) fn emit(&mut self, ev: Ev) {
        self.events.push(ev);
    }

    /// Events built by `build` after the commit, emitted after those of
    /// [`Self::emit`]; nothing is built if the commit fails.
    pub(super) fn emit_later(&mut self, build: impl FnOnce() -> Vec<Ev> + Send + 'static) {
        self.later.push(Box::new(build));
    }

    /// Recompute the plans whose content changed.
    pub(super) fn replan(&mut self) {
        self.replan.get_or_insert(Publish::Changed);
    }

    /// Recompute the plans of `nodes` too (those whose content changed
    /// are handed out), besides those the change touched.
    pub(super) fn replan_nodes(&mut self, nodes: impl IntoIterator<Item = String>) {
        self.replan();
        self.replan_also.extend(nodes);
    }

    /// Recompute every plan and hand out all of them (on load, when no
    /// session holds one yet).
    pub(super) fn replan_all(&mut self) {
        self.replan = Some(Publish::All);
    }

    /// A plan the caller computed (the empty plan of a node new here),
    /// handed out with the others.
    pub(super) fn send_plan(&mut self, node: String, plan: pb::NodePlan) {
        self.plans.push((node, Arc::new(plan)));
    }

    /// Writes the store, swaps the staged state in, publishes plans and
    /// emits events. On a store error nothing changes and no plan or event
    /// goes out.
    pub(super) async fn commit(self) -> Result<Committed, StoreError> {
        let Txn {
            coord,
            mut current,
            mut staged,
            patches,
            mut ops,
            replan,
            replan_also,
            mut plans,
            events,
            later,
            what,
            started,
        } = self;
        let staged_at = started.elapsed();
        let mut recomputed = 0;
        if let (Some(publish), Some(next)) = (replan, staged.as_mut()) {
            // Incremental: only the plans of nodes this change touched.
            let only = (publish == Publish::Changed).then(|| {
                let mut touched = touched_nodes(&current, next);
                touched.extend(replan_also);
                touched
            });
            let (updates, computed) =
                compute_plans(next, &mut ops, publish, only.as_ref(), &coord.sealer);
            plans.extend(updates);
            recomputed = computed;
        }
        let planned = started.elapsed();
        if !ops.is_empty() {
            if let Some(writer) = coord.control_plane.get().and_then(|p| p.term()) {
                ops.push(Op::put_json(crate::ha::WRITER_KEY, &writer));
            }
        }
        last_write_wins(&mut ops);
        let writes = ops.len();
        if !ops.is_empty() {
            coord.store.apply(ops).await?;
        }
        let stored = started.elapsed();
        if writes > 0 {
            coord
                .metrics
                .observe_store_write((stored - planned).as_secs_f64());
        }
        if let Some(next) = staged {
            *current = next;
        }
        for patch in patches {
            patch(&mut current);
        }
        let committed = Committed {
            writes,
            plans: plans.len(),
            recomputed,
        };
        // Published under the desired-state lock, so a later commit's plans
        // can never be overwritten by this one's.
        let replaced = coord.publish(plans);
        drop(current);
        // The old plans are freed outside both locks (10,000 at a time).
        drop(replaced);
        tracing::debug!(
            plans = committed.plans,
            recomputed,
            writes,
            stage_ms = staged_at.as_secs_f64() * 1e3,
            plan_ms = (planned - staged_at).as_secs_f64() * 1e3,
            store_ms = (stored - planned).as_secs_f64() * 1e3,
            publish_ms = (started.elapsed() - stored).as_secs_f64() * 1e3,
            "{what} stored"
        );
        for ev in events {
            coord.events.emit(ev);
        }
        for build in later {
            for ev in build() {
                coord.events.emit(ev);
            }
        }
        Ok(committed)
    }
}

/// Keeps only the last write of each key in a batch (a record staged and
/// then stepped in the same apply is serialized and written once).
pub(super) fn last_write_wins(ops: &mut Vec<Op>) {
    let mut seen = std::collections::HashSet::new();
    let keep: Vec<bool> = ops
        .iter()
        .rev()
        .map(|op| match op {
            Op::Put(k, _) | Op::Delete(k) => seen.insert(k.clone()),
        })
        .collect();
    let mut keep = keep.into_iter().rev();
    ops.retain(|_| keep.next().unwrap_or(true));
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A sled store whose writes fail while `fail` is set.
    struct FlakyStore {
        inner: crate::store::SledStore,
        fail: AtomicBool,
    }

    #[async_trait::async_trait]
    impl Store for FlakyStore {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key).await
        }
        async fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.inner.scan_prefix(prefix).await
        }
        async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Backend {
                    key: "test".into(),
                    message: "disk full".into(),
                });
            }
            self.inner.apply(ops).await
        }
        async fn health(&self) -> crate::store::StoreHealth {
            self.inner.health().await
        }
    }

    fn hello() -> AgentHello {
        AgentHello::from(pb::Hello {
            facts: Some(pb::NodeFacts::default()),
            agent_version: "t".into(),
            last_applied_generation: 0,
            capabilities: vec![],
        })
    }

    async fn flaky() -> (Arc<Coordinator>, Arc<FlakyStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FlakyStore {
            inner: crate::store::SledStore::open(dir.path()).unwrap(),
            fail: AtomicBool::new(false),
        });
        let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        (coord, store, dir)
    }

    const WEB: &str = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 2\n";
    const WEB2: &str = "services:\n  web:\n    image: x:2\n    deploy:\n      replicas: 3\n";

    #[tokio::test]
    async fn a_failed_store_write_changes_nothing_sends_nothing_and_reaches_every_waiter() {
        let (coord, store, _dir) = flaky().await;
        let mut a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
        coord.apply("web.yaml", WEB, false, "t").await.unwrap();
        let plan = a.plan_rx.borrow_and_update().clone().unwrap();
        let seq = coord.events().last_seq();
        let before = coord.status("", "").await;

        store.fail.store(true, Ordering::SeqCst);
        let err = coord.apply("web.yaml", WEB2, false, "t").await.unwrap_err();
        assert!(matches!(err, StateError::Store(_)), "{err}");
        assert!(err.to_string().contains("disk full"), "{err}");
        let err = coord.delete("web", "").await.unwrap_err();
        assert!(matches!(err, StateError::Store(_)), "{err}");
        // Every queued registration of a failed batch gets the error.
        let (b, c, d) = tokio::join!(
            coord.register("b", "fp-b", 0, hello(), None),
            coord.register("c", "fp-c", 0, hello(), None),
            coord.register("d", "fp-d", 0, hello(), None),
        );
        for r in [b, c, d] {
            let e = r
                .err()
                .expect("a registration whose store write failed must fail");
            assert!(e.to_string().contains("disk full"), "{e}");
        }

        // Nothing changed: same revision and instances, no plan, no event.
        let after = coord.status("", "").await;
        assert_eq!(after.services.len(), 1);
        assert_eq!(after.services[0].revision, before.services[0].revision);
        assert_eq!(after.services[0].instances.len(), 2);
        assert!(!a.plan_rx.has_changed().unwrap(), "no plan may go out");
        assert_eq!(a.plan_rx.borrow().clone().unwrap(), plan);
        assert_eq!(coord.events().last_seq(), seq, "no event may go out");
        let names: Vec<_> = coord
            .nodes()
            .await
            .nodes
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(names, vec!["a".to_string()]);

        // Once the store works again, the same apply takes the next revision
        // (the failed one used no number).
        store.fail.store(false, Ordering::SeqCst);
        let r = coord.apply("web.yaml", WEB2, false, "t").await.unwrap();
        assert_eq!(r.services[0].revision, before.services[0].revision + 1);
        assert!(a.plan_rx.has_changed().unwrap());
    }

    #[tokio::test]
    async fn a_commit_hands_out_only_the_plans_it_changed() {
        let (coord, _store, _dir) = flaky().await;
        let mut a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
        let mut b = coord.register("b", "fp-b", 0, hello(), None).await.unwrap();
        a.plan_rx.borrow_and_update();
        b.plan_rx.borrow_and_update();
        let on = |node: &str, name: &str| {
            format!(
                "services:\n  {name}:\n    image: x:1\n    deploy:\n      placement:\n        constraints: [\"node.name == {node}\"]\n"
            )
        };
        coord
            .apply("a.yaml", &on("a", "one"), false, "t")
            .await
            .unwrap();
        assert!(a.plan_rx.has_changed().unwrap());
        assert!(!b.plan_rx.has_changed().unwrap(), "b's plan did not change");
        let ga = a.plan_rx.borrow_and_update().clone().unwrap().generation;

        coord
            .apply("b.yaml", &on("b", "two"), false, "t")
            .await
            .unwrap();
        assert!(!a.plan_rx.has_changed().unwrap(), "a's plan did not change");
        let pb_ = b.plan_rx.borrow_and_update().clone().unwrap();
        assert_eq!(pb_.workloads.len(), 1);
        assert!(pb_.generation > ga, "generations only grow");
    }

    #[tokio::test]
    async fn a_commit_touching_one_node_recomputes_one_plan() {
        let (coord, _store, _dir) = flaky().await;
        let mut sessions = Vec::new();
        for node in ["a", "b", "c"] {
            let fp = format!("fp-{node}");
            sessions.push(coord.register(node, &fp, 0, hello(), None).await.unwrap());
        }
        let on = |node: &str| {
            format!(
                "services:\n  {node}-svc:\n    image: x:1\n    deploy:\n      placement:\n        constraints: [\"node.name == {node}\"]\n"
            )
        };
        for node in ["a", "b", "c"] {
            coord.apply("s.yaml", &on(node), false, "t").await.unwrap();
        }
        for s in &mut sessions {
            s.plan_rx.borrow_and_update();
        }

        // A change to the service on `a` only.
        let mut txn = coord.begin("test").await;
        let key = (DEFAULT_ENV.to_string(), "a-svc".to_string());
        let next = txn.stage();
        let rec = Arc::make_mut(next.services.get_mut(&key).unwrap());
        rec.spec = crate::spec::parse("s.yaml", &on("a").replace("x:1", "x:2"))
            .unwrap()
            .services
            .remove("a-svc")
            .unwrap();
        txn.replan();
        let committed = txn.commit().await.unwrap();
        assert_eq!(committed.recomputed, 1, "only a's plan is computed");
        assert_eq!(committed.plans, 1);
        assert!(sessions[0].plan_rx.has_changed().unwrap());
        assert!(!sessions[1].plan_rx.has_changed().unwrap());
        assert!(!sessions[2].plan_rx.has_changed().unwrap());

        // A node new to the coordinator gets its (empty) plan computed alone.
        let mut txn = coord.begin("test").await;
        let next = txn.stage();
        let mut record = next.nodes["a"].clone();
        record.name = "d".into();
        Arc::make_mut(&mut next.nodes).insert("d".into(), record);
        txn.replan();
        let committed = txn.commit().await.unwrap();
        assert_eq!(committed.recomputed, 1);
    }

    #[tokio::test]
    async fn a_rolling_update_step_sends_plans_only_to_the_nodes_of_its_batch() {
        let (coord, _store, _dir) = flaky().await;
        let mut sessions = Vec::new();
        for node in ["a", "b", "c"] {
            let fp = format!("fp-{node}");
            sessions.push(coord.register(node, &fp, 0, hello(), None).await.unwrap());
        }
        let spec = |image: &str| {
            format!(
                "services:\n  web:\n    image: {image}\n    deploy:\n      replicas: 3\n      update_config:\n        parallelism: 1\n"
            )
        };
        coord
            .apply("w.yaml", &spec("x:1"), false, "t")
            .await
            .unwrap();
        // The agents run their plans until the first rollout is done.
        for _ in 0..4 {
            for (node, s) in ["a", "b", "c"].iter().zip(&mut sessions) {
                let plan = s.plan_rx.borrow_and_update().clone().unwrap();
                assert_eq!(plan.workloads.len(), 1, "one instance per node");
                let workloads = plan
                    .workloads
                    .iter()
                    .map(|w| pb::WorkloadStatus {
                        id: w.id.clone(),
                        revision: w.revision,
                        spec_hash: w.spec_hash.clone(),
                        state: pb::WorkloadState::Running as i32,
                        ..Default::default()
                    })
                    .collect();
                let report = pb::StatusReport {
                    full_snapshot: true,
                    workloads,
                    removed: vec![],
                };
                let msg = pb::AgentMessage {
                    msg: Some(pb::agent_message::Msg::Status(report)),
                };
                coord.handle_pb(node, s.conn_id, msg);
            }
            coord.drive_rollouts().await;
        }
        let status = coord.status("web", "").await;
        let rollout = status.services[0].rollout.clone().unwrap();
        assert_eq!(rollout.state, RolloutState::Succeeded);
        for s in &mut sessions {
            s.plan_rx.borrow_and_update();
        }
        coord
            .apply("w.yaml", &spec("x:2"), false, "t")
            .await
            .unwrap();
        let changed = sessions
            .iter()
            .filter(|s| s.plan_rx.has_changed().unwrap())
            .count();
        assert_eq!(changed, 1, "the first batch is one instance on one node");
    }
}

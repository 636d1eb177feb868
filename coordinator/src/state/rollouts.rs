//! Driving rollouts: the pass that steps every running rollout with what
//! agents report (batches, gates, automatic rollback). The user's commands
//! are in `rollout_commands.rs`.

use std::fmt::Write as _;

use super::*;

impl Coordinator {
    /// Gate inputs of a service's instances: running the service's current
    /// spec and healthy (or running, without checks), on a ready node.
    pub(super) fn instance_views(&self, rec: &ServiceRecord) -> Vec<InstanceView> {
        let hash = rec.spec.spec_hash();
        let has_checks = spec_has_checks(&rec.spec);
        // An adopted unit asked to be stopped is where it should be when
        // it is not running.
        let want_stopped = matches!(
            rec.spec.runtime(),
            pb::workload::Runtime::Unit(u) if u.adopt && u.state == "stopped"
        );
        let swarm = rec.spec.swarm.is_some();
        // A rollout with an analysis: healthy also means a measurement
        // passed; a failed analysis fails every switched instance's gate.
        let analysis = rec.rollout.as_ref().and_then(|ro| {
            ro.policy.analysis.as_ref()?;
            // A first deployment is not analysed (`running_analyses`).
            if ro.from_revision == 0 {
                return None;
            }
            let key = (rec.env.clone(), rec.name.clone(), ro.to_revision);
            Some(self.analyses.verdict(&key).unwrap_or_default())
        });
        let live = self.live();
        // One id buffer for every lookup (10,000 instances, many passes).
        let prefix = format!("{}/{}/", rec.env, rec.name);
        let mut id = String::with_capacity(prefix.len() + 10);
        rec.assignments
            .iter()
            .map(|(index, node)| {
                id.clear();
                id.push_str(&prefix);
                let _ = write!(id, "{index}");
                let reported = node
                    .as_ref()
                    .and_then(|n| live.nodes.get(n))
                    .filter(|l| l.ready())
                    .and_then(|l| l.workloads.get(id.as_str()));
                let healthy = reported.is_some_and(|w| {
                    w.spec_hash == hash
                        && if want_stopped {
                            w.state == InstanceState::Exited
                        } else {
                            w.state == InstanceState::Running
                                && (w.health == Health::Healthy
                                    || (!has_checks && w.health == Health::None))
                        }
                });
                // A Swarm service whose update Swarm paused or rolled back
                // fails its gate at once, with Swarm's words.
                let failure = reported
                    .filter(|w| swarm && w.state == InstanceState::Failed)
                    .map(|w| w.reason.clone());
                let (healthy, failure) = match &analysis {
                    Some(v) => (
                        healthy && v.passed > 0 && v.failure.is_none(),
                        failure.or_else(|| v.failure.clone()),
                    ),
                    None => (healthy, failure),
                };
                InstanceView {
                    index: *index,
                    healthy,
                    failure,
                }
            })
            .collect()
    }

    /// Steps every running rollout (and those waiting for promotion that
    /// an analysis judges or a `canary_pause` moves) once. Called a few
    /// times a second.
    pub async fn drive_rollouts(&self) {
        let now = now_unix_ms();
        let mut txn = self.begin("rollout pass").await;
        let running: Vec<(String, String)> = txn
            .desired()
            .services
            .iter()
            .filter(|(_, r)| {
                !r.deleted
                    && r.rollout.as_ref().is_some_and(|r| {
                        r.state == RolloutState::Running
                            // Waiting for promotion: an analysis still
                            // judges it, a weight may move on by itself.
                            || (r.state == RolloutState::WaitingPromotion
                                && (r.policy.analysis.is_some() || r.policy.canary_pause_ms > 0))
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        if running.is_empty() {
            return;
        }
        let mut changed = Vec::new();
        let mut ops = Vec::new();
        let mut events = Vec::new();
        let mut replan = false;
        for key in running {
            let Some(current) = txn.desired().services.get(&key) else {
                continue;
            };
            if let Some(rec) = self
                .step_service(current, now, &mut ops, &mut events, &mut replan)
                .await
            {
                changed.push((key, Arc::new(rec)));
            }
        }
        if changed.is_empty() {
            return;
        }
        // Progress that only marks instances done is kept in memory: no
        // store write and no plans (the copy of desired state is cheap).
        txn.stage().services.extend(changed);
        txn.ops().extend(ops);
        if replan {
            txn.replan();
        }
        for e in events {
            txn.emit(e);
        }
        if let Err(e) = txn.commit().await {
            tracing::error!(error = %e, "cannot store rollout progress; retrying");
        }
    }

    /// Steps one service's rollout once: the updated record if it moved
    /// (its store write, if one is due, goes to `ops`; events to `events`),
    /// with `replan` set when instances switched or retired.
    pub(super) async fn step_service(
        &self,
        current: &ServiceRecord,
        now: i64,
        ops: &mut Vec<Op>,
        events: &mut Vec<Ev>,
        replan: &mut bool,
    ) -> Option<ServiceRecord> {
        // The record (with every assignment) is cloned only when its
        // rollout moved: at 10,000 instances most passes move nothing.
        let mut r = current.rollout.clone()?;
        let views = self.instance_views(current);
        let effects = rollout::step(&mut r, &views, now);
        if current.rollout.as_ref() == Some(&r) {
            return None;
        }
        // Progress that only marks instances done (or healthy since) is
        // kept in memory: a restarted coordinator gates those instances
        // again. Switching, promotion and outcomes are stored at once.
        let persist = current.rollout.as_ref().map(|c| c.state) != Some(r.state)
            || effects.iter().any(|e| !matches!(e, Effect::Done(_)));
        let mut rec = current.clone();
        let (env, name) = (rec.env.clone(), rec.name.clone());
        let total = rec.assignments.len();
        let ev = |kind: EventKind, r: &Rollout| {
            Ev::new(kind)
                .service(&env, &name)
                .field("revision", r.to_revision)
                .field("from_revision", r.from_revision)
                .field("state", r.state.word())
                .field("rollback", r.is_rollback)
        };
        for effect in &effects {
            match effect {
                Effect::Switched(idx) => {
                    *replan = true;
                    events.push(
                        ev(EventKind::RolloutProgress, &r)
                            .field("instances", join(idx))
                            .msg(format!(
                                "{env}/{name}: updating instance(s) {} to r{}; {}",
                                join(idx),
                                r.to_revision,
                                rollout::describe(&r, total)
                            )),
                    );
                }
                Effect::Done(idx) => events.push(
                    ev(EventKind::RolloutProgress, &r)
                        .field("healthy", join(idx))
                        .msg(format!(
                            "{env}/{name}: instance(s) {} healthy at r{}",
                            join(idx),
                            r.to_revision
                        )),
                ),
                Effect::AwaitingPromotion => events.push(ev(EventKind::RolloutAwaitingPromotion, &r).msg(format!(
                    "{env}/{name}: {} canary instance(s) of r{} are healthy; `convoy promote {name}` to go on",
                    r.switched.len(),
                    r.to_revision
                ))),
                Effect::RetireBlue(idx) => {
                    rec.assignments.retain(|i, _| !idx.contains(i));
                    rec.gpus.retain(|i, _| !idx.contains(i));
                    *replan = true;
                    events.push(ev(EventKind::RolloutProgress, &r).field("retired", join(idx)).msg(
                        format!(
                            "{env}/{name}: the old set (instance(s) {}) is stopped",
                            join(idx)
                        ),
                    ));
                }
                Effect::WeightAdvanced => {
                    // The proxies' split is in the plans.
                    *replan = true;
                    events.push(ev(EventKind::RolloutPromoted, &r).msg(format!(
                        "{env}/{name}: r{} moved to the next canary weight after its pause; {}",
                        r.to_revision,
                        rollout::describe(&r, total)
                    )));
                }
                Effect::Promoted => {
                    // A weighted canary's split or a blue-green's active
                    // set changes in the proxies' plans.
                    *replan = true;
                    events.push(
                        ev(EventKind::RolloutPromoted, &r)
                            .msg(format!("{env}/{name}: r{} promoted", r.to_revision)),
                    );
                }
                Effect::Succeeded => {
                    self.metrics.observe_rollout(
                        "succeeded",
                        (now - r.started_unix_ms).max(0) as f64 / 1000.0,
                    );
                    self.set_outcome(ops, &env, &name, r.to_revision, "succeeded")
                        .await;
                    events.push(ev(EventKind::RolloutSucceeded, &r).msg(format!(
                        "{env}/{name}: {} to r{} succeeded",
                        if r.is_rollback { "rollback" } else { "rollout" },
                        r.to_revision
                    )));
                }
                Effect::Failed(reason) => {
                    self.metrics.observe_rollout(
                        if r.state == RolloutState::Paused { "paused" } else { "failed" },
                        (now - r.started_unix_ms).max(0) as f64 / 1000.0,
                    );
                    let outcome = format!("failed: {reason}");
                    self.set_outcome(ops, &env, &name, r.to_revision, &outcome)
                        .await;
                    let mut failed = ev(EventKind::RolloutFailed, &r).field("reason", reason);
                    let mut message =
                        format!("{env}/{name}: rollout to r{} failed: {reason}", r.to_revision);
                    if r.state == RolloutState::RolledBack {
                        let _ = write!(
                            message,
                            "; rolling back to the spec of r{} (as r{})",
                            r.from_revision,
                            rec.revision + 1
                        );
                        failed = failed.field("rollback_revision", rec.revision + 1);
                    }
                    events.push(failed.msg(message));
                    if r.state == RolloutState::RolledBack {
                        let back = self.start_rollback(&mut rec, &r, now, ops);
                        events.push(
                            ev(EventKind::RolloutRolledBack, &back)
                                .field("failed_revision", r.to_revision)
                                .msg(format!(
                                    "{env}/{name}: rolling back from r{} to the spec of r{} (as r{})",
                                    r.to_revision, r.from_revision, back.to_revision
                                )),
                        );
                        r = back;
                        *replan = true;
                    } else if r.state == RolloutState::Paused {
                        events.push(ev(EventKind::RolloutPaused, &r).field("reason", reason).msg(
                            format!(
                                "{env}/{name}: rollout to r{} paused: {reason}",
                                r.to_revision
                            ),
                        ));
                    }
                }
            }
        }
        rec.rollout = Some(r);
        rec.updated_unix_ms = now;
        if persist {
            ops.push(Op::put_json(service_key(&env, &name), &rec));
        }
        Some(rec)
    }

    /// Turns a failed rollout into a rollback: a new revision with the spec
    /// the service ran before, rolled out at once (instances the failed
    /// rollout never touched already run it).
    fn start_rollback(
        &self,
        rec: &mut ServiceRecord,
        failed: &Rollout,
        now: i64,
        ops: &mut Vec<Op>,
    ) -> Rollout {
        let back_rev = rec.revision + 1;
        ops.push(Op::put_json(
            revision_key(&rec.env, &rec.name, back_rev),
            &RevisionRecord {
                revision: back_rev,
                spec: failed.from_spec.clone(),
                created_unix_ms: now,
                created_by: "convoy (auto-rollback)".to_string(),
                source: format!(
                    "rollback of r{} to r{}",
                    failed.to_revision, failed.from_revision
                ),
                outcome: String::new(),
            },
        ));
        // `rec.spec` is still the spec that failed: its `rollback_config`.
        let policy = failed
            .policy
            .for_rollback(rec.spec.deploy.rollback.as_ref());
        let mut back = Rollout::new(failed.to_revision, back_rev, rec.spec.clone(), policy, now);
        back.is_rollback = true;
        back.promoted = true;
        if failed.has_blue() {
            // Blue-green: the old set still runs; the new one just goes.
            rec.assignments.retain(|i, _| failed.blue.contains(i));
            rec.gpus.retain(|i, _| failed.blue.contains(i));
        }
        for index in rec.assignments.keys() {
            if !failed.switched.contains_key(index) || failed.has_blue() {
                back.switched.insert(*index, now);
            }
        }
        rec.spec = failed.from_spec.clone();
        rec.revision = back_rev;
        back
    }

    /// Records how a revision's rollout ended.
    pub(super) async fn set_outcome(
        &self,
        ops: &mut Vec<Op>,
        env: &str,
        name: &str,
        rev: u64,
        outcome: &str,
    ) {
        let key = revision_key(env, name, rev);
        match store::get_json::<RevisionRecord>(&*self.store, &key).await {
            Ok(Some(mut r)) => {
                r.outcome = outcome.to_string();
                ops.push(Op::put_json(key, &r));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, key, "cannot read a revision"),
        }
    }
}

pub(super) fn join(idx: &[u32]) -> String {
    idx.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A coordinator with one connected node `a` and a helper that reports
    /// every planned workload of `a` running and healthy.
    async fn setup() -> (Arc<Coordinator>, SessionHandle, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let hello = pb::Hello {
            facts: Some(pb::NodeFacts::default()),
            agent_version: "t".into(),
            last_applied_generation: 0,
            capabilities: vec![],
        };
        let a = coord
            .register("a", "fp-a", 0, hello.into(), None)
            .await
            .unwrap();
        (coord, a, dir)
    }

    /// The agent runs whatever its plan says, healthy.
    fn run_plan(coord: &Coordinator, a: &mut SessionHandle) {
        let plan = a.plan_rx.borrow_and_update().clone().unwrap();
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
        coord.handle_pb(
            "a",
            a.conn_id,
            pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
                    full_snapshot: true,
                    workloads,
                    removed: vec![],
                })),
            },
        );
    }

    fn spec(greeting: &str, update: &str) -> String {
        format!(
            "services:\n  web:\n    image: x:1\n    environment: {{ G: {greeting} }}\n    deploy:\n      replicas: 3\n{update}"
        )
    }

    async fn rollout(coord: &Coordinator) -> Rollout {
        let d = coord.desired.lock().await;
        d.services[&("default".to_string(), "web".to_string())]
            .rollout
            .clone()
            .unwrap()
    }

    /// Runs the plan and steps rollouts a few times.
    async fn settle(coord: &Coordinator, a: &mut SessionHandle) {
        for _ in 0..4 {
            run_plan(coord, a);
            coord.drive_rollouts().await;
        }
    }

    #[tokio::test]
    async fn pause_holds_resume_goes_on_and_promote_needs_a_waiting_canary() {
        let (coord, mut a, _dir) = setup().await;
        let update = "      update_config: { parallelism: 1 }\n";
        coord
            .apply("w.yaml", &spec("v1", update), false, "t")
            .await
            .unwrap();
        settle(&coord, &mut a).await;
        assert_eq!(rollout(&coord).await.state, RolloutState::Succeeded);

        coord
            .apply("w.yaml", &spec("v2", update), false, "t")
            .await
            .unwrap();
        let info = coord
            .rollout_command("web", "", RolloutCommand::Pause)
            .await
            .unwrap();
        assert_eq!(info.state, RolloutState::Paused);
        // The apply itself switched the first batch (parallelism 1); while
        // paused, no other instance is.
        assert_eq!(rollout(&coord).await.switched.len(), 1);
        for _ in 0..3 {
            settle(&coord, &mut a).await;
        }
        assert_eq!(
            rollout(&coord).await.switched.len(),
            1,
            "a paused rollout moved"
        );
        let err = coord
            .rollout_command("web", "", RolloutCommand::Pause)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("only a running rollout"), "{err}");
        let err = coord
            .rollout_command("web", "", RolloutCommand::Promote)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nothing to promote"), "{err}");

        coord
            .rollout_command("web", "", RolloutCommand::Resume)
            .await
            .unwrap();
        for _ in 0..6 {
            settle(&coord, &mut a).await;
        }
        let r = rollout(&coord).await;
        assert_eq!(
            (r.state, r.done.len()),
            (RolloutState::Succeeded, 3),
            "{r:?}"
        );
        let h = coord.history("web", "").await.unwrap();
        let outcomes: Vec<&str> = h.revisions.iter().map(|r| r.outcome.as_str()).collect();
        assert_eq!(outcomes, ["succeeded", "succeeded"]);
    }

    #[tokio::test]
    async fn a_new_apply_supersedes_a_rollout_carrying_its_switched_instances() {
        let (coord, mut a, _dir) = setup().await;
        let update = "      update_config: { parallelism: 1, monitor: 1h }\n    x-convoy: { update: { progress_deadline: 2h } }\n";
        coord
            .apply("w.yaml", &spec("v1", ""), false, "t")
            .await
            .unwrap();
        settle(&coord, &mut a).await;
        coord
            .apply("w.yaml", &spec("v2", update), false, "t")
            .await
            .unwrap();
        settle(&coord, &mut a).await;
        let r2 = rollout(&coord).await;
        assert_eq!(r2.switched.len(), 1);
        let mut events = coord.events().subscribe();
        coord
            .apply("w.yaml", &spec("v3", update), false, "t")
            .await
            .unwrap();
        let r3 = rollout(&coord).await;
        assert_eq!((r3.from_revision, r3.to_revision), (1, 3));
        assert_eq!(
            r3.switched.keys().collect::<Vec<_>>(),
            r2.switched.keys().collect::<Vec<_>>(),
            "the instance in flight goes straight to r3"
        );
        let plan = a.plan_rx.borrow_and_update().clone().unwrap();
        let revs: Vec<u64> = plan.workloads.iter().map(|w| w.revision).collect();
        assert_eq!(revs.iter().filter(|r| **r == 3).count(), 1, "{revs:?}");
        assert_eq!(revs.iter().filter(|r| **r == 1).count(), 2, "{revs:?}");
        let h = coord.history("web", "").await.unwrap();
        assert_eq!(h.revisions[1].outcome, "superseded by r3");
        let ev = events.try_recv().unwrap();
        assert_eq!(
            (ev.kind.as_str(), ev.fields["revision"].as_str()),
            ("rollout.failed", "2")
        );
        assert_eq!(ev.fields["reason"], "superseded by r3");
    }

    #[tokio::test]
    async fn a_rollback_supersedes_a_running_rollout_and_bad_targets_are_refused() {
        let (coord, mut a, _dir) = setup().await;
        let update = "      update_config: { parallelism: 1, monitor: 1h }\n    x-convoy: { update: { progress_deadline: 2h } }\n";
        coord
            .apply("w.yaml", &spec("v1", ""), false, "t")
            .await
            .unwrap();
        settle(&coord, &mut a).await;
        coord
            .apply("w.yaml", &spec("v2", update), false, "t")
            .await
            .unwrap();
        settle(&coord, &mut a).await;
        // One instance switched, waiting an hour for its gate.
        assert_eq!(rollout(&coord).await.switched.len(), 1);

        let err = coord.rollback("web", "", 7, "t").await.unwrap_err();
        assert!(
            err.to_string()
                .contains("has no revision 7 (it has r1, r2)"),
            "{err}"
        );
        let err = coord.rollback("web", "", 2, "t").await.unwrap_err();
        assert!(
            err.to_string().contains("already the current revision"),
            "{err}"
        );

        let resp = coord.rollback("web", "", 0, "t").await.unwrap();
        assert_eq!(resp.services[0].revision, 3);
        settle(&coord, &mut a).await;
        let plan = a.plan_rx.borrow_and_update().clone().unwrap();
        let v1_hash = {
            let h = coord.history("web", "").await.unwrap();
            h.revisions[0].spec_hash.clone()
        };
        assert!(
            plan.workloads.iter().all(|w| w.spec_hash == v1_hash),
            "every instance runs r1's spec again"
        );
        let h = coord.history("web", "").await.unwrap();
        assert_eq!(h.revisions[2].source, "rollback of r2 to r1");
    }

    /// Issue 14: `convoy rollback` runs under the current spec's
    /// `rollback_config` (one at a time here), not all at once.
    #[tokio::test]
    async fn a_rollback_runs_under_the_current_specs_rollback_config() {
        let (coord, mut a, _dir) = setup().await;
        coord
            .apply("w.yaml", &spec("v1", ""), false, "t")
            .await
            .unwrap();
        settle(&coord, &mut a).await;
        let rollback = "      rollback_config: { parallelism: 1, monitor: 1h }\n    x-convoy: { update: { progress_deadline: 2h } }\n";
        coord
            .apply("w.yaml", &spec("v2", rollback), false, "t")
            .await
            .unwrap();
        settle(&coord, &mut a).await;
        assert_eq!(rollout(&coord).await.switched.len(), 3, "v2 went at once");

        coord.rollback("web", "", 1, "t").await.unwrap();
        settle(&coord, &mut a).await;
        let r3 = rollout(&coord).await;
        assert_eq!((r3.to_revision, r3.policy.max_parallel), (3, 1));
        assert_eq!(
            r3.switched.len(),
            1,
            "one instance back to r1, the next waits an hour for its gate"
        );
    }

    /// Issue 17: several services go back together, each to its previous
    /// revision, in one commit; when one cannot, none does.
    #[tokio::test]
    async fn services_roll_back_together_or_not_at_all() {
        let (coord, mut a, _dir) = setup().await;
        let two = |v: &str| {
            format!(
                "services:\n  web:\n    image: x:1\n    environment: {{ G: {v} }}\n  api:\n    image: y:1\n    environment: {{ G: {v} }}\n"
            )
        };
        coord.apply("s.yaml", &two("v1"), false, "t").await.unwrap();
        settle(&coord, &mut a).await;
        coord.apply("s.yaml", &two("v2"), false, "t").await.unwrap();
        settle(&coord, &mut a).await;
        let lone = "services:\n  lone:\n    image: z:1\n";
        coord.apply("l.yaml", lone, false, "t").await.unwrap();

        // `lone` has nothing to go back to: nothing moves.
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let err = coord
            .rollback_together(&names(&["web", "lone", "api"]), "", "t")
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`default/lone` has no revision before r1"),
            "{err}"
        );
        assert_eq!(coord.history("web", "").await.unwrap().current, 2);
        assert_eq!(coord.history("api", "").await.unwrap().current, 2);

        let r = coord
            .rollback_together(&names(&["web", "api"]), "", "t")
            .await
            .unwrap();
        assert_eq!(r.services.len(), 2);
        for svc in ["web", "api"] {
            let h = coord.history(svc, "").await.unwrap();
            assert_eq!(h.current, 3, "{svc}");
            assert_eq!(h.revisions[2].source, "rollback of r2 to r1");
            assert_eq!(
                h.revisions[2].spec_hash, h.revisions[0].spec_hash,
                "{svc} runs r1's spec"
            );
        }
    }
}

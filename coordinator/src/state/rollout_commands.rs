//! The user's rollout commands: promote, pause and resume, history, and
//! rollback (a new revision with an old spec, or the instant switch back of
//! a blue-green rollout whose old set still runs).

use super::*;

/// A user's command to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutCommand {
    Promote,
    Pause,
    Resume,
}

impl Coordinator {
    /// `convoy promote`, `rollout pause`, `rollout resume`.
    pub async fn rollout_command(
        &self,
        service: &str,
        env: &str,
        command: RolloutCommand,
    ) -> Result<RolloutView, StateError> {
        let env = if env.is_empty() { DEFAULT_ENV } else { env };
        let mut txn = self.begin("rollout command").await;
        let key = (env.to_string(), service.to_string());
        let Some(rec) = txn.desired().services.get(&key).filter(|r| !r.deleted) else {
            return Err(StateError::ServiceNotFound {
                service: service.to_string(),
                env: env.to_string(),
            });
        };
        let Some(mut r) = rec.rollout.clone() else {
            return Err(StateError::Rollout(format!(
                "service `{env}/{service}` has had no rollout"
            )));
        };
        let total = rec.assignments.len();
        let now = now_unix_ms();
        let (kind, word) = match command {
            RolloutCommand::Promote => {
                if r.state != RolloutState::WaitingPromotion {
                    return Err(StateError::Rollout(format!(
                        "nothing to promote: {}",
                        rollout::describe(&r, total)
                    )));
                }
                if r.has_next_weight() {
                    // A weighted canary: the next share of requests; the
                    // canaries keep waiting for the next promote.
                    r.weight_step += 1;
                    r.weight_since_unix_ms = now;
                    (
                        EventKind::RolloutPromoted,
                        "moved to the next canary weight",
                    )
                } else {
                    r.promoted = true;
                    r.promoted_unix_ms = now;
                    r.state = RolloutState::Running;
                    (EventKind::RolloutPromoted, "promoted")
                }
            }
            RolloutCommand::Pause => {
                if r.state != RolloutState::Running {
                    return Err(StateError::Rollout(format!(
                        "only a running rollout can be paused: {}",
                        rollout::describe(&r, total)
                    )));
                }
                r.state = RolloutState::Paused;
                r.reason = "paused by the user".to_string();
                (EventKind::RolloutPaused, "paused")
            }
            RolloutCommand::Resume => {
                if r.state != RolloutState::Paused {
                    return Err(StateError::Rollout(format!(
                        "only a paused rollout can be resumed: {}",
                        rollout::describe(&r, total)
                    )));
                }
                r.state = RolloutState::Running;
                r.reason.clear();
                // Deadlines count from now: time spent paused is no failure.
                for t in r.switched.values_mut() {
                    *t = now;
                }
                (EventKind::RolloutResumed, "resumed")
            }
        };
        r.last_progress_unix_ms = now;
        r.updated_unix_ms = now;
        let mut rec = ServiceRecord::clone(rec);
        rec.rollout = Some(r.clone());
        txn.put(Op::put_json(service_key(env, service), &rec));
        txn.stage().services.insert(key, Arc::new(rec));
        if !r.policy.canary_weights.is_empty() || r.policy.strategy == spec::Strategy::BlueGreen {
            // A weighted canary's next share (or its end), a blue-green's
            // active set: in the proxies' plans.
            txn.replan();
        }
        txn.emit(
            Ev::new(kind)
                .service(env, service)
                .field("revision", r.to_revision)
                .field("state", r.state.word())
                .msg(format!(
                    "{env}/{service}: rollout to r{} {word}",
                    r.to_revision
                )),
        );
        txn.commit().await?;
        Ok(rollout_view(&r, total))
    }

    /// Blue-green, before the old set is gone: the old set takes over again
    /// at once (no new container), the new set is stopped.
    async fn instant_blue_green_rollback(
        &self,
        env: &str,
        service: &str,
        to: u64,
        who: &str,
        now: i64,
    ) -> Result<ApplyOutcome, StateError> {
        let mut txn = self.begin("rollback").await;
        let key = (env.to_string(), service.to_string());
        let Some(mut rec) = txn
            .desired()
            .services
            .get(&key)
            .map(|r| ServiceRecord::clone(r))
        else {
            return Err(StateError::ServiceNotFound {
                service: service.to_string(),
                env: env.to_string(),
            });
        };
        let Some(failed) = rec.rollout.clone().filter(|r| r.has_blue()) else {
            return Err(StateError::Rollout("the old set is gone already".into()));
        };
        self.set_outcome(txn.ops(), env, service, failed.to_revision, "rolled back")
            .await;
        let previous = rec.revision;
        let back_rev = rec.revision + 1;
        txn.put(Op::put_json(
            revision_key(env, service, back_rev),
            &RevisionRecord {
                revision: back_rev,
                spec: failed.from_spec.clone(),
                created_unix_ms: now,
                created_by: who.to_string(),
                source: format!("rollback of r{previous} to r{to}"),
                outcome: "succeeded".to_string(),
            },
        ));
        let removed: Vec<u32> = rec
            .assignments
            .keys()
            .copied()
            .filter(|i| !failed.blue.contains(i))
            .collect();
        rec.assignments.retain(|i, _| failed.blue.contains(i));
        rec.gpus.retain(|i, _| failed.blue.contains(i));
        rec.spec = failed.from_spec.clone();
        rec.revision = back_rev;
        let mut back = Rollout::new(
            previous,
            back_rev,
            rec.spec.clone(),
            failed.policy.clone(),
            now,
        );
        back.is_rollback = true;
        back.promoted = true;
        back.state = RolloutState::Succeeded;
        for index in rec.assignments.keys() {
            back.switched.insert(*index, now);
            back.done.insert(*index);
        }
        rec.rollout = Some(back);
        rec.updated_unix_ms = now;
        txn.put(Op::put_json(service_key(env, service), &rec));
        txn.stage().services.insert(key, Arc::new(rec.clone()));
        txn.replan();
        txn.emit(
            Ev::new(EventKind::RolloutRolledBack)
                .service(env, service)
                .field("revision", back_rev)
                .field("failed_revision", previous)
                .field("instant", true)
                .msg(format!(
                    "{env}/{service}: blue-green rollback to r{to} (as r{back_rev}): the old set takes over, instance(s) {} stop",
                    join(&removed)
                )),
        );
        txn.commit().await?;
        let instances = removed
            .iter()
            .map(|i| InstanceChange {
                instance_id: workload_id(env, service, *i),
                node: String::new(),
                action: ChangeAction::Remove,
            })
            .chain(rec.assignments.iter().map(|(i, n)| InstanceChange {
                instance_id: workload_id(env, service, *i),
                node: n.clone().unwrap_or_default(),
                action: ChangeAction::Unchanged,
            }))
            .collect();
        Ok(ApplyOutcome {
            services: vec![ServiceChange {
                service: service.to_string(),
                env: env.to_string(),
                action: ChangeAction::Update,
                revision: back_rev,
                previous_revision: previous,
                instances,
                changed_fields: Vec::new(),
                diff: String::new(),
            }],
            warnings: Vec::new(),
            dry_run: false,
            secrets: Vec::new(),
        })
    }

    /// A service's revisions, oldest first.
    pub async fn history(&self, service: &str, env: &str) -> Result<HistoryView, StateError> {
        let env = if env.is_empty() { DEFAULT_ENV } else { env };
        let current = {
            let desired = self.desired.lock().await;
            match desired
                .services
                .get(&(env.to_string(), service.to_string()))
            {
                Some(r) => r.revision,
                None => {
                    return Err(StateError::ServiceNotFound {
                        service: service.to_string(),
                        env: env.to_string(),
                    })
                }
            }
        };
        let records = store::scan_json::<RevisionRecord>(
            &*self.store,
            &format!("revisions/{env}/{service}/"),
        )
        .await?;
        let mut revisions: Vec<RevisionView> = Vec::new();
        let mut previous: Option<ServiceSpec> = None;
        for (_, r) in records {
            revisions.push(RevisionView {
                revision: r.revision,
                created_unix_ms: r.created_unix_ms,
                created_by: r.created_by.clone(),
                source: r.source.clone(),
                image: r.spec.image().to_string(),
                spec_hash: r.spec.spec_hash(),
                outcome: r.outcome.clone(),
                changed_fields: previous
                    .as_ref()
                    .map(|p| spec::changed_fields(p, &r.spec))
                    .unwrap_or_default(),
                spec_json: serde_json::to_string_pretty(&r.spec).unwrap_or_default(),
            });
            previous = Some(r.spec);
        }
        revisions.sort_by_key(|r| r.revision);
        Ok(HistoryView { revisions, current })
    }

    /// `convoy rollback SERVICE [--to REV]`: a new revision with the spec of
    /// REV (default: the one before the current), rolled out under the
    /// service's gates.
    pub async fn rollback(
        &self,
        service: &str,
        env: &str,
        to: u64,
        who: &str,
    ) -> Result<ApplyOutcome, StateError> {
        let env = if env.is_empty() { DEFAULT_ENV } else { env };
        let history = self.history(service, env).await?;
        let current = history.current;
        let to = if to == 0 {
            current.saturating_sub(1)
        } else {
            to
        };
        if to == current {
            return Err(StateError::Invalid(format!(
                "r{to} is already the current revision of `{env}/{service}`"
            )));
        }
        if !history.revisions.iter().any(|r| r.revision == to) {
            let known: Vec<String> = history
                .revisions
                .iter()
                .map(|r| format!("r{}", r.revision))
                .collect();
            return Err(StateError::Invalid(format!(
                "`{env}/{service}` has no revision {to} (it has {})",
                known.join(", ")
            )));
        }
        let target: RevisionRecord = store::get_json(&*self.store, &revision_key(env, service, to))
            .await?
            .ok_or_else(|| StateError::Invalid(format!("revision {to} is gone")))?;
        let started = std::time::Instant::now();
        let now = now_unix_ms();
        let connected = self.connected();
        let mut txn = self.begin("rollback").await;
        let key = (env.to_string(), service.to_string());
        // Blue-green with the old set still there: it takes over at once.
        let instant = txn
            .desired()
            .services
            .get(&key)
            .and_then(|rec| rec.rollout.as_ref())
            .is_some_and(|r| {
                r.state.is_active()
                    && r.has_blue()
                    && r.from_spec.spec_hash() == target.spec.spec_hash()
            });
        if instant {
            drop(txn);
            return self
                .instant_blue_green_rollback(env, service, to, who, now)
                .await;
        }
        let (next, ops, _) = txn.parts();
        let nodes = node_views(next, &connected);
        let candidates = candidates(&nodes);
        let back = Back {
            service,
            current,
            to,
            target,
        };
        let staged = stage_rollback(next, &candidates, ops, env, back, who, now)?;
        self.commit_rollbacks(txn, env, vec![staged], who, started)
            .await
    }

    /// Records what staged rollbacks superseded, emits their events and
    /// commits them: one store write, one set of plans.
    async fn commit_rollbacks(
        &self,
        mut txn: Txn<'_>,
        env: &str,
        staged: Vec<(String, ServiceChange, Option<u64>)>,
        who: &str,
        started: std::time::Instant,
    ) -> Result<ApplyOutcome, StateError> {
        let mut changes = Vec::with_capacity(staged.len());
        for (service, change, superseded) in staged {
            if let Some(rev) = superseded {
                let outcome = format!("superseded by r{}", change.revision);
                self.set_outcome(txn.ops(), env, &service, rev, &outcome)
                    .await;
                txn.emit(superseded_event(env, &service, rev, change.revision));
            }
            for ev in deployed_events(&change, who) {
                txn.emit(ev);
            }
            // A rollback by hand is news as much as an automatic one
            // (notifications, `convoy events`).
            txn.emit(
                Ev::new(EventKind::RolloutRolledBack)
                    .service(env, &service)
                    .field("revision", change.revision)
                    .field("from_revision", change.previous_revision)
                    .field("by", who)
                    .field("manual", true)
                    .msg(format!(
                        "{env}/{service}: rolled back by {who} from r{} (as r{})",
                        change.previous_revision, change.revision
                    )),
            );
            changes.push(change);
        }
        txn.replan();
        txn.commit().await?;
        self.metrics.observe_apply(started.elapsed().as_secs_f64());
        Ok(ApplyOutcome {
            services: changes,
            warnings: Vec::new(),
            dry_run: false,
            secrets: Vec::new(),
        })
    }

    /// Rolls `services` of `env` back together, each to the revision
    /// before its current one, in one commit (one store write, one set of
    /// plans): a spec whose containers, units and Swarm services go back as
    /// one. Every service is checked first; one that cannot go back fails
    /// the whole and nothing is stored.
    pub async fn rollback_together(
        &self,
        services: &[String],
        env: &str,
        who: &str,
    ) -> Result<ApplyOutcome, StateError> {
        let env = if env.is_empty() { DEFAULT_ENV } else { env };
        let mut seen = std::collections::BTreeSet::new();
        let mut targets = Vec::with_capacity(services.len());
        for service in services {
            if !seen.insert(service.as_str()) {
                return Err(StateError::Invalid(format!("`{service}` is named twice")));
            }
            let history = self.history(service, env).await?;
            let current = history.current;
            let to = current.saturating_sub(1);
            if to == 0 || !history.revisions.iter().any(|r| r.revision == to) {
                return Err(StateError::Invalid(format!(
                    "`{env}/{service}` has no revision before r{current} to go back to"
                )));
            }
            let target: RevisionRecord =
                store::get_json(&*self.store, &revision_key(env, service, to))
                    .await?
                    .ok_or_else(|| {
                        StateError::Invalid(format!("revision {to} of `{env}/{service}` is gone"))
                    })?;
            targets.push((service.as_str(), current, to, target));
        }
        let started = std::time::Instant::now();
        let now = now_unix_ms();
        let connected = self.connected();
        let mut txn = self.begin("rollback").await;
        let mut staged = Vec::with_capacity(targets.len());
        {
            let (next, ops, _) = txn.parts();
            let nodes = node_views(next, &connected);
            let candidates = candidates(&nodes);
            for (service, current, to, target) in targets {
                let key = (env.to_string(), service.to_string());
                if next.services.get(&key).map(|r| r.revision) != Some(current) {
                    return Err(StateError::Invalid(format!(
                        "`{env}/{service}` changed meanwhile; try again"
                    )));
                }
                let back = Back {
                    service,
                    current,
                    to,
                    target,
                };
                staged.push(stage_rollback(next, &candidates, ops, env, back, who, now)?);
            }
        }
        self.commit_rollbacks(txn, env, staged, who, started).await
    }
}

/// One service going back from r`current` to r`to` (`target`, that
/// revision as stored).
struct Back<'a> {
    service: &'a str,
    current: u64,
    to: u64,
    target: RevisionRecord,
}

/// Stages one service's rollback from r`current` to r`to` (`target`, its
/// stored revision) in `next`: under the current spec's
/// `rollback_config`, as `docker service rollback`; without one, the
/// target's own update policy. Returns the service, its change and the
/// revision whose rollout it superseded.
fn stage_rollback(
    next: &mut Desired,
    candidates: &[Candidate<'_>],
    ops: &mut Vec<Op>,
    env: &str,
    back: Back<'_>,
    who: &str,
    now: i64,
) -> Result<(String, ServiceChange, Option<u64>), StateError> {
    let Back {
        service,
        current,
        to,
        target,
    } = back;
    let key = (env.to_string(), service.to_string());
    let source = format!("rollback of r{current} to r{to}");
    let policy = next
        .services
        .get(&key)
        .and_then(|rec| rec.spec.deploy.rollback.as_ref())
        .map(|rollback| target.spec.deploy.update.for_rollback(Some(rollback)));
    let (change, superseded) = stage_service(
        next,
        candidates,
        Staged {
            env,
            name: service,
            spec: target.spec,
            who,
            source: &source,
            now,
            policy,
        },
        ops,
    )?;
    Ok((service.to_string(), change, superseded))
}

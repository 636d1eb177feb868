//! Makes the node's containers match its plan, shaped like kube-runtime's
//! controller: a pure `decide` from the plan and freshly observed containers
//! to actions, and a loop that applies them one pass at a time. Each pass
//! also points the probes at the running containers, and statuses carry the
//! health they and Docker's healthchecks report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use convoy_proto::restart_policy::Condition;
use convoy_proto::{workload, Event, Health, NodePlan, Workload, WorkloadState, WorkloadStatus};
use futures::StreamExt;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::probe::{self, CheckView, Prober, Target};
use crate::runtime::{ContainerState, Observed, Runtime, RuntimeError};

/// First restart delay; it doubles per consecutive failure.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A run at least this long resets the backoff.
pub const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// The safety net: a pass at least this often, whatever happens.
pub const REQUEUE: Duration = Duration::from_secs(10);
/// How soon to try again while Docker is unreachable.
const UNREACHABLE_RETRY: Duration = Duration::from_secs(5);
/// How long to wait for a container Docker is busy removing.
const REMOVING_WAIT: Duration = Duration::from_secs(1);
/// Creates, starts and removes applied at once in one pass.
const MAX_CONCURRENT: usize = 8;

/// One step towards the plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// No container of this workload exists yet.
    Create(Workload),
    /// Start an existing container of the right spec; `after_exit` is the
    /// exit code when this restarts a container that ran and exited.
    Start {
        workload_id: String,
        container_id: String,
        after_exit: Option<i64>,
    },
    /// Stop and remove the old containers, then create the new one.
    Replace {
        workload: Workload,
        old: Vec<String>,
    },
    Remove {
        container_id: String,
        workload_id: String,
        why: RemoveReason,
    },
    /// Nothing to do for this workload before `until` (backoff).
    Wait { workload_id: String, until: Instant },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveReason {
    /// A second container of the same spec.
    Duplicate,
    /// An older spec of a workload that already runs the current one.
    Outdated,
    /// Its workload is not in the plan.
    NotInPlan,
}

/// Per workload: restarts made, and the backoff that gates the next attempt.
#[derive(Debug, Default)]
pub struct RestartBook {
    entries: HashMap<String, RestartEntry>,
}

#[derive(Clone, Debug, Default)]
struct RestartEntry {
    spec_hash: String,
    /// Restarts the agent made for this spec (reported; bounds max_attempts).
    restarts: u32,
    /// Consecutive failures (short runs, failed creates): the backoff exponent.
    failures: u32,
    /// The exit (container + finish time) the current deadline belongs to.
    exit_key: Option<String>,
    /// Nothing is created or started for this workload before this.
    not_before: Option<Instant>,
    /// The delay that set `not_before`.
    delay: Duration,
    /// Why the last create or start failed; cleared by a success.
    error: Option<String>,
    /// A container of this spec was created once: a new one is a restart.
    created: bool,
}

/// `1 s * 2^failures`, at most 5 min.
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_START
        .checked_mul(1u32.checked_shl(failures).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX)
}

impl RestartBook {
    /// Restarts made for a workload's current spec.
    pub fn restarts(&self, workload_id: &str) -> u32 {
        self.entries.get(workload_id).map_or(0, |e| e.restarts)
    }

    /// Brings the book up to date with a fresh observation: forgets workloads
    /// that left the plan, resets on a new spec, and schedules one backoff
    /// deadline per container exit. Call before `decide`.
    pub fn observe(&mut self, desired: &[Workload], observed: &[Observed], now: Instant) {
        let ids: HashSet<&str> = desired.iter().map(|w| w.id.as_str()).collect();
        self.entries.retain(|id, _| ids.contains(id.as_str()));
        for w in desired {
            let entry = self.entries.entry(w.id.clone()).or_default();
            if entry.spec_hash != w.spec_hash {
                *entry = RestartEntry {
                    spec_hash: w.spec_hash.clone(),
                    ..RestartEntry::default()
                };
            }
            let containers: Vec<&Observed> =
                observed.iter().filter(|o| o.workload_id == w.id).collect();
            let Some(k) = keeper(w, &containers) else {
                continue;
            };
            if k.state != ContainerState::Exited {
                continue;
            }
            let key = k.exit_key();
            if entry.exit_key.as_deref() == Some(key.as_str()) {
                continue;
            }
            if k.ran_for().is_some_and(|ran| ran >= HEALTHY_RUN) {
                entry.failures = 0;
            }
            entry.delay = backoff(entry.failures);
            entry.not_before = Some(now + entry.delay);
            entry.failures = entry.failures.saturating_add(1);
            entry.exit_key = Some(key);
        }
    }

    fn blocked_until(&self, workload_id: &str, now: Instant) -> Option<Instant> {
        self.entries
            .get(workload_id)
            .and_then(|e| e.not_before)
            .filter(|t| *t > now)
    }

    /// Records a failed create or start; returns whether the reason is new.
    fn record_failure(&mut self, workload_id: &str, reason: String, now: Instant) -> bool {
        let entry = self.entries.entry(workload_id.to_string()).or_default();
        entry.delay = backoff(entry.failures);
        entry.not_before = Some(now + entry.delay);
        entry.failures = entry.failures.saturating_add(1);
        let new = entry.error.as_deref() != Some(reason.as_str());
        entry.error = Some(reason);
        new
    }

    /// Records a container that now runs; returns whether it counts as a
    /// restart.
    fn record_running(&mut self, workload_id: &str, restarted: bool) -> bool {
        let entry = self.entries.entry(workload_id.to_string()).or_default();
        let restart = restarted || entry.created;
        if restart {
            entry.restarts = entry.restarts.saturating_add(1);
        }
        entry.created = true;
        entry.error = None;
        entry.not_before = None;
        restart
    }

    /// The earliest pending deadline, for the loop's next wake-up.
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| e.not_before)
            .filter(|t| *t > now)
            .min()
    }
}

/// Ranks containers of one spec: the one to keep is the most alive, then the
/// newest.
fn rank(state: ContainerState) -> u8 {
    match state {
        ContainerState::Running => 4,
        ContainerState::Paused | ContainerState::Restarting => 3,
        ContainerState::Created => 2,
        ContainerState::Exited => 1,
        ContainerState::Dead | ContainerState::Removing => 0,
    }
}

/// The container of the workload's current spec to keep, if any.
fn keeper<'a>(w: &Workload, containers: &[&'a Observed]) -> Option<&'a Observed> {
    containers
        .iter()
        .copied()
        .filter(|c| c.spec_hash == w.spec_hash)
        .filter(|c| !matches!(c.state, ContainerState::Dead | ContainerState::Removing))
        .max_by(|a, b| {
            (rank(a.state), a.created_unix, &a.id).cmp(&(rank(b.state), b.created_unix, &b.id))
        })
}

fn restart_condition(w: &Workload) -> (Condition, u32) {
    match &w.runtime {
        Some(workload::Runtime::Container(spec)) => {
            let policy = spec.restart.unwrap_or_default();
            let condition = Condition::try_from(policy.condition).unwrap_or(Condition::Any);
            (condition, policy.max_attempts)
        }
        Some(workload::Runtime::Unit(_)) | None => (Condition::Any, 0),
    }
}

/// Whether an exited container is to be restarted; `Err` says why not.
fn restart_allowed(w: &Workload, exited: &Observed, restarts: u32) -> Result<(), String> {
    let (condition, max_attempts) = restart_condition(w);
    let failed = exited.oom_killed || exited.exit_code != Some(0);
    match condition {
        Condition::None => return Err("restart policy `none`".to_string()),
        Condition::OnFailure if !failed => {
            return Err("restart policy `on-failure` does not restart a clean exit".to_string())
        }
        Condition::OnFailure | Condition::Any | Condition::Unspecified => {}
    }
    if max_attempts > 0 && restarts >= max_attempts {
        return Err(format!("gave up after {restarts} restarts (max_attempts)"));
    }
    Ok(())
}

/// The actions that bring `observed` towards `desired`. Pure: the same
/// inputs give the same actions. `observed` must hold this node's containers
/// only, and `restarts` must have seen `observed` (`RestartBook::observe`).
pub fn decide(
    desired: &[Workload],
    observed: &[Observed],
    restarts: &RestartBook,
    now: Instant,
) -> Vec<Action> {
    let mut by_workload: HashMap<&str, Vec<&Observed>> = HashMap::new();
    for o in observed {
        by_workload
            .entry(o.workload_id.as_str())
            .or_default()
            .push(o);
    }
    let mut actions = Vec::new();
    for w in desired {
        let containers = by_workload.remove(w.id.as_str()).unwrap_or_default();
        let keep = keeper(w, &containers);
        let stale: Vec<&Observed> = containers
            .iter()
            .copied()
            .filter(|c| Some(c.id.as_str()) != keep.map(|k| k.id.as_str()))
            .filter(|c| c.state != ContainerState::Removing)
            .collect();
        let blocked = restarts.blocked_until(&w.id, now);
        let wait = |until| Action::Wait {
            workload_id: w.id.clone(),
            until,
        };
        let Some(k) = keep else {
            if containers
                .iter()
                .any(|c| c.state == ContainerState::Removing)
            {
                actions.push(wait(now + REMOVING_WAIT));
            } else if let Some(until) = blocked {
                // The old containers keep serving while the new spec waits.
                actions.push(wait(until));
            } else if stale.is_empty() || starts_beside(w, &stale) {
                // start-first: the old containers keep serving until the
                // new one is up (see below).
                actions.push(Action::Create(w.clone()));
            } else {
                actions.push(Action::Replace {
                    workload: w.clone(),
                    old: stale.iter().map(|c| c.id.clone()).collect(),
                });
            }
            continue;
        };
        let new_is_up = k.state == ContainerState::Running
            && k.health
                .as_ref()
                .is_none_or(|h| h.status == Health::Healthy);
        for s in &stale {
            if w.start_first && s.spec_hash != w.spec_hash && s.state.is_up() && !new_is_up {
                continue;
            }
            actions.push(Action::Remove {
                container_id: s.id.clone(),
                workload_id: w.id.clone(),
                why: if s.spec_hash == w.spec_hash {
                    RemoveReason::Duplicate
                } else {
                    RemoveReason::Outdated
                },
            });
        }
        let start = |after_exit| Action::Start {
            workload_id: w.id.clone(),
            container_id: k.id.clone(),
            after_exit,
        };
        match k.state {
            ContainerState::Created => match blocked {
                Some(until) => actions.push(wait(until)),
                None => actions.push(start(None)),
            },
            ContainerState::Exited if restart_allowed(w, k, restarts.restarts(&w.id)).is_ok() => {
                match blocked {
                    Some(until) => actions.push(wait(until)),
                    None => actions.push(start(Some(k.exit_code.unwrap_or(-1)))),
                }
            }
            _ => {}
        }
    }
    // What is left belongs to no desired workload.
    let mut orphans: Vec<&Observed> = by_workload.into_values().flatten().collect();
    orphans.sort_by(|a, b| a.id.cmp(&b.id));
    for o in orphans {
        if o.state != ContainerState::Removing {
            actions.push(Action::Remove {
                container_id: o.id.clone(),
                workload_id: o.workload_id.clone(),
                why: RemoveReason::NotInPlan,
            });
        }
    }
    actions
}

/// start-first: the new container can start beside the old ones (their
/// names differ, as they carry the revision).
fn starts_beside(w: &Workload, stale: &[&Observed]) -> bool {
    let name = crate::runtime::container_name(w);
    w.start_first && stale.iter().all(|s| s.name.trim_start_matches('/') != name)
}

/// What the session reports: statuses of the desired workloads, and the
/// number of managed containers on the node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub statuses: BTreeMap<String, WorkloadStatus>,
    pub containers: u32,
}

/// The result of applying one action.
enum Outcome {
    Running {
        workload_id: String,
        /// The exit code when this restarted an exited container.
        after_exit: Option<i64>,
        replaced: Option<Vec<String>>,
        name: String,
    },
    Removed {
        workload_id: String,
        container_id: String,
        why: RemoveReason,
    },
    Failed {
        workload_id: String,
        error: RuntimeError,
    },
    RemoveFailed {
        container_id: String,
        error: RuntimeError,
    },
}

/// Applies the plan to the runtime. One pass at a time, by construction.
pub struct Reconciler<R: Runtime> {
    runtime: Arc<R>,
    node: String,
    book: RestartBook,
    snapshot: watch::Sender<Snapshot>,
    events: broadcast::Sender<Event>,
    /// The last "docker unreachable" reason logged, so it is logged once.
    unreachable: Option<String>,
    prober: Prober<R>,
    /// What the last publish was made of, to publish again when only a
    /// probe's result changed.
    last: Option<(Vec<Workload>, Vec<Observed>)>,
    /// Per workload: the container and health last published, to emit
    /// `healthy` / `unhealthy` events on changes.
    healths: HashMap<String, (String, Health)>,
}

impl<R: Runtime> Reconciler<R> {
    pub fn new(
        runtime: Arc<R>,
        node: String,
        snapshot: watch::Sender<Snapshot>,
        events: broadcast::Sender<Event>,
    ) -> Self {
        Self {
            prober: Prober::new(runtime.clone()),
            runtime,
            node,
            book: RestartBook::default(),
            snapshot,
            events,
            unreachable: None,
            last: None,
            healths: HashMap::new(),
        }
    }

    /// Runs passes until `shutdown`: on a new plan, a container event, the
    /// next backoff deadline, and every `REQUEUE` at least. Without a plan
    /// (none received, none on disk) nothing is created or removed.
    pub async fn run(
        mut self,
        mut plan: watch::Receiver<Option<Arc<NodePlan>>>,
        shutdown: CancellationToken,
    ) {
        let wake = Arc::new(Notify::new());
        let watcher = tokio::spawn(
            watch_events(
                self.runtime.clone(),
                self.node.clone(),
                wake.clone(),
                shutdown.clone(),
            )
            .instrument(info_span!("docker_events")),
        );
        let mut plan_open = true;
        loop {
            let current = plan.borrow_and_update().clone();
            let now = Instant::now();
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = self.pass(current.as_deref(), now) => next,
            };
            let now = Instant::now();
            let deadline = next.map_or(now + REQUEUE, |t| t.min(now + REQUEUE));
            // A probe result needs no pass, only a new status.
            let stop = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break true,
                    changed = plan.changed(), if plan_open => {
                        if changed.is_err() {
                            plan_open = false;
                        }
                        break false;
                    }
                    _ = wake.notified() => break false,
                    _ = tokio::time::sleep_until(deadline.into()) => break false,
                    update = self.prober.next() => {
                        if self.prober.apply(update) {
                            self.republish();
                        }
                    }
                }
            };
            if stop {
                break;
            }
        }
        if let Err(e) = watcher.await {
            warn!("event watcher ended badly: {e}");
        }
        debug!("reconciler stopped");
    }

    /// One reconcile: observe, decide, apply, observe again, report.
    /// Returns when the next pass is due at the latest.
    pub async fn pass(&mut self, plan: Option<&NodePlan>, now: Instant) -> Option<Instant> {
        let observed = match self.observe().await {
            Ok(observed) => observed,
            Err(e) => {
                let reason = e.reason(&self.node);
                if self.unreachable.as_deref() != Some(reason.as_str()) {
                    warn!("{reason}; retrying every {}s", UNREACHABLE_RETRY.as_secs());
                    self.unreachable = Some(reason.clone());
                }
                if let Some(plan) = plan {
                    self.publish_unreachable(desired_of(plan), &reason);
                }
                return Some(now + UNREACHABLE_RETRY);
            }
        };
        if self.unreachable.take().is_some() {
            info!("docker is reachable again");
        }
        let Some(plan) = plan else {
            // No plan known: report what is there, touch nothing.
            self.publish(&[], &observed);
            return None;
        };
        let desired = desired_of(plan);
        self.book.observe(&desired, &observed, now);
        let actions = decide(&desired, &observed, &self.book, now);
        let next = actions
            .iter()
            .filter_map(|a| match a {
                Action::Wait { until, .. } => Some(*until),
                _ => None,
            })
            .min();
        let work: Vec<Action> = actions
            .into_iter()
            .filter(|a| !matches!(a, Action::Wait { .. }))
            .collect();
        if work.is_empty() {
            self.publish(&desired, &observed);
            return earliest(self.book.next_deadline(now), next);
        }

        let names: HashMap<String, String> = observed
            .iter()
            .map(|o| (o.id.clone(), o.name.clone()))
            .collect();
        let runtime = self.runtime.clone();
        let node = self.node.clone();
        let outcomes: Vec<Outcome> = futures::stream::iter(work)
            .map(|action| apply(runtime.as_ref(), &node, action))
            .buffer_unordered(MAX_CONCURRENT)
            .filter_map(|outcome| async move { outcome })
            .collect()
            .await;
        let now_after = Instant::now().max(now);
        for outcome in outcomes {
            self.record(outcome, &names, now_after);
        }

        match self.observe().await {
            Ok(observed) => self.publish(&desired, &observed),
            Err(e) => {
                let reason = e.reason(&self.node);
                self.publish_unreachable(desired, &reason);
                return Some(now_after + UNREACHABLE_RETRY);
            }
        }
        earliest(self.book.next_deadline(now_after), next)
    }

    async fn observe(&self) -> Result<Vec<Observed>, RuntimeError> {
        let mut observed = self.runtime.list(&self.node).await?;
        // Only this node's containers, whatever the runtime returned.
        observed.retain(|o| o.node == self.node);
        Ok(observed)
    }

    fn record(&mut self, outcome: Outcome, names: &HashMap<String, String>, now: Instant) {
        match outcome {
            Outcome::Running {
                workload_id,
                after_exit,
                replaced,
                name,
            } => {
                // A started container is named by its id here.
                let name = names.get(&name).cloned().unwrap_or(name);
                let restarted = self.book.record_running(&workload_id, after_exit.is_some());
                if let Some(old) = replaced {
                    let old_names: Vec<&str> = old
                        .iter()
                        .map(|id| names.get(id).map_or(id.as_str(), String::as_str))
                        .collect();
                    let message = format!(
                        "replaced {} with `{name}`",
                        old_names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    info!(workload = %workload_id, "{message}");
                    self.emit(&workload_id, "replaced", message);
                } else if restarted {
                    let message = match after_exit {
                        Some(code) => {
                            format!("restarted `{name}` after it exited with code {code}")
                        }
                        None => format!("recreated `{name}`: its container was gone"),
                    };
                    info!(workload = %workload_id, "{message}");
                    self.emit(&workload_id, "restarted", message);
                } else {
                    info!(workload = %workload_id, "started `{name}`");
                }
            }
            Outcome::Removed {
                workload_id,
                container_id,
                why,
            } => {
                let name = names
                    .get(&container_id)
                    .cloned()
                    .unwrap_or_else(|| container_id.clone());
                let message = match why {
                    RemoveReason::Duplicate => format!("removed duplicate container `{name}`"),
                    RemoveReason::Outdated => format!("removed outdated container `{name}`"),
                    RemoveReason::NotInPlan => {
                        format!("removed container `{name}`: its workload is not in the plan")
                    }
                };
                info!(workload = %workload_id, "{message}");
                self.emit(&workload_id, "removed", message);
            }
            Outcome::Failed { workload_id, error } => {
                let reason = error.reason(&self.node);
                let kind = match error {
                    RuntimeError::ImageMissing { .. } => "image-missing",
                    _ => "failed",
                };
                if self.book.record_failure(&workload_id, reason.clone(), now) {
                    warn!(workload = %workload_id, "{reason}");
                    self.emit(&workload_id, kind, reason);
                } else {
                    debug!(workload = %workload_id, "{reason}");
                }
            }
            Outcome::RemoveFailed {
                container_id,
                error,
            } => {
                warn!(
                    container = %container_id,
                    "could not remove container: {}",
                    error.reason(&self.node)
                );
            }
        }
    }

    fn emit(&self, workload_id: &str, kind: &str, message: String) {
        // No receiver (no session right now) is fine: statuses carry the state.
        let _ = self.events.send(Event {
            unix_ms: unix_ms(SystemTime::now()),
            workload_id: workload_id.to_string(),
            kind: kind.to_string(),
            message,
        });
    }

    fn publish(&mut self, desired: &[Workload], observed: &[Observed]) {
        let keepers: Vec<(&Workload, Option<&Observed>)> = desired
            .iter()
            .map(|w| {
                let containers: Vec<&Observed> =
                    observed.iter().filter(|o| o.workload_id == w.id).collect();
                (w, keeper(w, &containers))
            })
            .collect();
        let targets = keepers
            .iter()
            .filter_map(|(w, k)| {
                let k = k.filter(|k| k.state == ContainerState::Running)?;
                Some(Target {
                    workload_id: w.id.clone(),
                    container_id: k.id.clone(),
                    started_at: k.started_at,
                    probes: w.probes.clone(),
                })
            })
            .collect();
        self.prober.sync(targets);
        let statuses: BTreeMap<String, WorkloadStatus> = keepers
            .iter()
            .map(|(w, k)| {
                let containers: Vec<&Observed> =
                    observed.iter().filter(|o| o.workload_id == w.id).collect();
                let mut status = self.status_of(w, &containers);
                let checks = k.map(|k| self.checks_of(w, k)).unwrap_or_default();
                let combined = probe::combine(&checks);
                status.health = combined.health as i32;
                status.failing_probe = combined.failing_probe;
                status.health_output = combined.output;
                self.health_events(&status, &checks);
                (w.id.clone(), status)
            })
            .collect();
        self.healths.retain(|id, _| statuses.contains_key(id));
        for (id, status) in &statuses {
            self.healths
                .insert(id.clone(), (status.container_id.clone(), health_of(status)));
        }
        self.send(statuses, u32::try_from(observed.len()).unwrap_or(u32::MAX));
        self.last = Some((desired.to_vec(), observed.to_vec()));
    }

    /// Publishes again from the last observation, with the probes' news.
    fn republish(&mut self) {
        if let Some((desired, observed)) = self.last.take() {
            self.publish(&desired, &observed);
        }
    }

    /// The health checks of a running keeper: Docker's, then the probes.
    fn checks_of(&self, w: &Workload, k: &Observed) -> Vec<CheckView> {
        if k.state != ContainerState::Running {
            return Vec::new();
        }
        let mut checks: Vec<CheckView> = k
            .health
            .iter()
            .map(|h| CheckView {
                name: probe::DOCKER.to_string(),
                health: h.status,
                output: h.output.clone(),
            })
            .collect();
        if !w.probes.is_empty() {
            let views = self.prober.views(&w.id, &k.id);
            if views.is_empty() {
                // Just started: no probe has run yet.
                checks.extend(w.probes.iter().map(|p| CheckView {
                    name: probe::ProbeConfig::from_proto(p).name,
                    health: Health::Starting,
                    output: String::new(),
                }));
            } else {
                checks.extend(views);
            }
        }
        checks
    }

    /// Emits `unhealthy` when an instance turns unhealthy, `healthy` when it
    /// turns healthy from starting or unhealthy.
    fn health_events(&self, status: &WorkloadStatus, checks: &[CheckView]) {
        let now = health_of(status);
        let before = match self.healths.get(&status.id) {
            Some((container, health)) if *container == status.container_id => Some(*health),
            // Another container: its health starts anew.
            Some(_) => Some(Health::Starting),
            None => None,
        };
        if before == Some(now) {
            return;
        }
        let name = &status.container_name;
        match now {
            Health::Unhealthy => {
                let check = if status.failing_probe == probe::DOCKER {
                    "Docker's healthcheck".to_string()
                } else {
                    format!("probe `{}`", status.failing_probe)
                };
                let mut message = format!("`{name}` is unhealthy: {check} fails");
                if !status.health_output.is_empty() {
                    message.push_str(": ");
                    message.push_str(&status.health_output);
                }
                warn!(workload = %status.id, "{message}");
                self.emit(&status.id, "unhealthy", message);
            }
            Health::Healthy if before.is_some() => {
                let passing: Vec<String> = checks
                    .iter()
                    .map(|c| {
                        if c.output.is_empty() {
                            format!("`{}`", c.name)
                        } else {
                            format!("`{}`: {}", c.name, c.output)
                        }
                    })
                    .collect();
                let again = if before == Some(Health::Unhealthy) {
                    " again"
                } else {
                    ""
                };
                let message = format!("`{name}` is healthy{again}: {}", passing.join("; "));
                info!(workload = %status.id, "{message}");
                self.emit(&status.id, "healthy", message);
            }
            _ => {}
        }
    }

    fn publish_unreachable(&self, desired: Vec<Workload>, reason: &str) {
        let statuses = desired
            .into_iter()
            .map(|w| {
                let status = WorkloadStatus {
                    id: w.id.clone(),
                    revision: w.revision,
                    spec_hash: w.spec_hash.clone(),
                    state: WorkloadState::Failed as i32,
                    reason: reason.to_string(),
                    restarts: self.book.restarts(&w.id),
                    ..WorkloadStatus::default()
                };
                (w.id, status)
            })
            .collect();
        let containers = self.snapshot.borrow().containers;
        self.send(statuses, containers);
    }

    /// Publishes, keeping `updated_unix_ms` of statuses that did not change.
    fn send(&self, mut statuses: BTreeMap<String, WorkloadStatus>, containers: u32) {
        let now = unix_ms(SystemTime::now());
        self.snapshot.send_if_modified(|current| {
            for (id, status) in statuses.iter_mut() {
                status.updated_unix_ms = match current.statuses.get(id) {
                    Some(old) if same_status(old, status) => old.updated_unix_ms,
                    _ => now,
                };
            }
            let next = Snapshot {
                statuses: std::mem::take(&mut statuses),
                containers,
            };
            if *current == next {
                false
            } else {
                *current = next;
                true
            }
        });
    }

    fn status_of(&self, w: &Workload, containers: &[&Observed]) -> WorkloadStatus {
        let entry = self.book.entries.get(&w.id);
        let error = entry.and_then(|e| e.error.clone());
        let restarts = entry.map_or(0, |e| e.restarts);
        let mut status = WorkloadStatus {
            id: w.id.clone(),
            revision: w.revision,
            spec_hash: w.spec_hash.clone(),
            restarts,
            ..WorkloadStatus::default()
        };
        let set = |status: &mut WorkloadStatus, state: WorkloadState, reason: String| {
            status.state = state as i32;
            status.reason = reason;
        };
        let Some(k) = keeper(w, containers) else {
            match error {
                Some(reason) => set(&mut status, WorkloadState::Failed, reason),
                None => set(
                    &mut status,
                    WorkloadState::Pending,
                    "waiting for its container to be created".to_string(),
                ),
            }
            return status;
        };
        status.container_id = k.id.clone();
        status.container_name = k.name.clone();
        match k.state {
            ContainerState::Running => set(&mut status, WorkloadState::Running, String::new()),
            ContainerState::Paused => {
                set(&mut status, WorkloadState::Running, "paused".to_string())
            }
            ContainerState::Restarting => set(
                &mut status,
                WorkloadState::Starting,
                "restarting".to_string(),
            ),
            ContainerState::Created => match error {
                Some(reason) => set(&mut status, WorkloadState::Failed, reason),
                None => set(
                    &mut status,
                    WorkloadState::Starting,
                    "created, not started yet".to_string(),
                ),
            },
            ContainerState::Exited | ContainerState::Dead | ContainerState::Removing => {
                let code = k.exit_code.unwrap_or(-1);
                status.exit_code = code;
                let how = if k.oom_killed {
                    format!("killed for lack of memory (exit code {code})")
                } else if k.error.is_empty() {
                    format!("exited with code {code}")
                } else {
                    format!("exited with code {code}: {}", k.error)
                };
                match (restart_allowed(w, k, restarts), error) {
                    (Ok(()), Some(reason)) => set(&mut status, WorkloadState::Failed, reason),
                    (Ok(()), None) => {
                        let delay = entry.map_or(BACKOFF_START, |e| e.delay);
                        set(
                            &mut status,
                            WorkloadState::Exited,
                            format!("{how}; restarting (backoff {}s)", delay.as_secs()),
                        );
                    }
                    (Err(why), _) => {
                        set(&mut status, WorkloadState::Exited, format!("{how}; {why}"))
                    }
                }
            }
        }
        status
    }
}

fn health_of(status: &WorkloadStatus) -> Health {
    Health::try_from(status.health).unwrap_or(Health::Unspecified)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Equal but for `updated_unix_ms`.
fn same_status(a: &WorkloadStatus, b: &WorkloadStatus) -> bool {
    WorkloadStatus {
        updated_unix_ms: 0,
        ..a.clone()
    } == WorkloadStatus {
        updated_unix_ms: 0,
        ..b.clone()
    }
}

/// The plan's container workloads, without empty or repeated ids (first one
/// wins). Unit workloads belong to the systemd reconciler.
fn desired_of(plan: &NodePlan) -> Vec<Workload> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(plan.workloads.len());
    for w in &plan.workloads {
        if matches!(w.runtime, Some(workload::Runtime::Unit(_))) {
            continue;
        }
        if w.id.is_empty() {
            warn!(
                generation = plan.generation,
                "plan has a workload without an id; skipped"
            );
        } else if !seen.insert(w.id.clone()) {
            warn!(generation = plan.generation, workload = %w.id, "plan repeats a workload id; the first one wins");
        } else {
            out.push(w.clone());
        }
    }
    out
}

/// Applies one action; `None` for a `Wait`, which the loop handles.
async fn apply<R: Runtime>(runtime: &R, node: &str, action: Action) -> Option<Outcome> {
    Some(match action {
        Action::Create(w) => match create(runtime, node, &w).await {
            Ok(name) => Outcome::Running {
                workload_id: w.id,
                after_exit: None,
                replaced: None,
                name,
            },
            Err(error) => Outcome::Failed {
                workload_id: w.id,
                error,
            },
        },
        Action::Replace { workload: w, old } => {
            let result = async {
                // The old containers keep serving until the new image is here.
                ensure_image(runtime, &w).await?;
                for id in &old {
                    runtime.stop_and_remove(id).await?;
                }
                create(runtime, node, &w).await
            }
            .await;
            match result {
                Ok(name) => Outcome::Running {
                    workload_id: w.id,
                    after_exit: None,
                    replaced: Some(old),
                    name,
                },
                Err(error) => Outcome::Failed {
                    workload_id: w.id,
                    error,
                },
            }
        }
        Action::Start {
            workload_id,
            container_id,
            after_exit,
        } => match runtime.start(&container_id).await {
            Ok(()) => Outcome::Running {
                workload_id,
                after_exit,
                replaced: None,
                name: container_id,
            },
            Err(error) => Outcome::Failed { workload_id, error },
        },
        Action::Remove {
            container_id,
            workload_id,
            why,
        } => match runtime.stop_and_remove(&container_id).await {
            Ok(()) => Outcome::Removed {
                workload_id,
                container_id,
                why,
            },
            Err(error) => Outcome::RemoveFailed {
                container_id,
                error,
            },
        },
        Action::Wait { .. } => return None,
    })
}

async fn ensure_image<R: Runtime>(runtime: &R, w: &Workload) -> Result<(), RuntimeError> {
    let Some(workload::Runtime::Container(spec)) = &w.runtime else {
        return Err(no_spec(w));
    };
    if runtime.image_present(&spec.image).await? {
        return Ok(());
    }
    runtime.pull(&spec.image).await
}

async fn create<R: Runtime>(runtime: &R, node: &str, w: &Workload) -> Result<String, RuntimeError> {
    ensure_image(runtime, w).await?;
    Ok(runtime.create_and_start(node, w).await?.name)
}

fn no_spec(w: &Workload) -> RuntimeError {
    RuntimeError::Engine {
        context: format!("workload `{}`", w.id),
        message: "the plan gives it no container spec".to_string(),
    }
}

/// Wakes the reconciler on every lifecycle event of the node's managed
/// containers, subscribing again (with backoff) whenever the stream ends.
async fn watch_events<R: Runtime>(
    runtime: Arc<R>,
    node: String,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        match runtime.events(&node).await {
            Ok(mut stream) => {
                let since = Instant::now();
                // Something may have happened while nobody listened.
                wake.notify_one();
                loop {
                    let item = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        item = stream.next() => item,
                    };
                    match item {
                        Some(Ok(event)) => {
                            debug!(
                                container = %event.container_id,
                                workload = %event.workload_id,
                                action = %event.action,
                                "container event"
                            );
                            wake.notify_one();
                        }
                        Some(Err(e)) => {
                            debug!("event stream failed: {e}");
                            break;
                        }
                        None => {
                            debug!("event stream ended");
                            break;
                        }
                    }
                }
                if since.elapsed() >= Duration::from_secs(60) {
                    failures = 0;
                }
            }
            Err(e) => debug!("cannot watch container events: {e}"),
        }
        let delay = backoff(failures).min(Duration::from_secs(30));
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;

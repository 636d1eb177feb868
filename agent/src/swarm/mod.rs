//! The Swarm driver: on the agent the coordinator chose to drive its
//! engine's Swarm cluster (`NodePlan.swarm_driver`), makes the Swarm
//! services labelled `io.convoy.managed=true` match the plan's Swarm
//! workloads through the Docker API, and reports each as one workload with
//! its tasks, one per slot (docs/SWARM.md, "The driver (agent)").
//!
//! A pass runs when the plan changes and every [`PASS_EVERY`] (Docker's
//! event stream is not needed: a pass is a handful of list calls): list
//! Convoy's services and networks; create the overlay networks the plan's
//! services use; create a missing service, update one whose spec-hash
//! label differs from the plan's — unless Swarm gave up on that very hash
//! (below); remove Convoy's services the plan lacks, then Convoy's Swarm
//! networks no service of the plan uses (a removal refused while tasks
//! still detach is tried again next pass); read each service's tasks and
//! publish its status; a task whose state changed since the last pass is
//! an event.
//!
//! **Giving up.** When Swarm paused an update or rolled it back (its
//! `update_config.failure_action`), pushing the same spec again would
//! start the same failing update again, in a loop. The driver remembers
//! the hash it last pushed to each service; while the service's
//! `UpdateStatus` says `paused` (of that spec), or `rollback_started`,
//! `rollback_paused` or `rollback_completed` (away from it), and the plan
//! still asks for that hash, it leaves the service as Swarm
//! left it and reports the workload FAILED with Swarm's words; the
//! coordinator then fails the rollout and rolls back. A driver that just
//! started (the agent restarted, or another manager's agent took over)
//! remembers nothing it pushed, so for a service Swarm rolled back it
//! reads Swarm's task history: a task whose labels carry the plan's spec
//! hash means Swarm tried that spec and gave up. (Swarm keeps a few tasks
//! per slot: once they are gone, such a spec may be tried once more.)

pub mod api;
pub mod spec;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard::models::{Service, ServiceUpdateStatusStateEnum};
use convoy_proto::{workload, Event, SwarmServiceSpec, Workload, WorkloadState, WorkloadStatus};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::plan::Plan;
use crate::runtime::labels;
pub use api::{DockerSwarm, SwarmApi};
pub use status::{derive_status, task_key, Observed};

/// How often the driver looks at Swarm without a new plan.
pub const PASS_EVERY: Duration = Duration::from_secs(2);
/// While the engine does not answer, passes back off from [`PASS_EVERY`]
/// (doubling, with jitter) up to this; a new plan still passes at once.
pub const UNREACHABLE_MAX: Duration = Duration::from_secs(30);

/// The Swarm driver.
pub struct SwarmDriver<A: SwarmApi> {
    api: Arc<A>,
    statuses: watch::Sender<BTreeMap<String, WorkloadStatus>>,
    events: broadcast::Sender<Event>,
    /// The spec hash last pushed to each service (by Swarm name).
    pushed: HashMap<String, String>,
    /// Each workload's tasks at the last pass: slot key → (task id, state).
    tasks_seen: HashMap<String, BTreeMap<String, (String, String)>>,
}

fn swarm_spec(w: &Workload) -> Option<&SwarmServiceSpec> {
    match &w.runtime {
        Some(workload::Runtime::Swarm(s)) => Some(s),
        _ => None,
    }
}

fn label<'a>(svc: &'a Service, key: &str) -> &'a str {
    svc.spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .and_then(|l| l.get(key))
        .map(String::as_str)
        .unwrap_or_default()
}

/// A label of a task's container.
fn task_label<'a>(task: &'a bollard::models::Task, key: &str) -> &'a str {
    task.spec
        .as_ref()
        .and_then(|s| s.container_spec.as_ref())
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(key))
        .map(String::as_str)
        .unwrap_or_default()
}

/// Whether Swarm is rolling back, or rolled back, the service's last
/// update.
fn rolled_back(svc: &Service) -> bool {
    matches!(
        svc.update_status.as_ref().and_then(|u| u.state),
        Some(
            ServiceUpdateStatusStateEnum::ROLLBACK_STARTED
                | ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED
                | ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED
        )
    )
}

/// Swarm's update state of a service, as the API spells it ("" when none).
pub fn update_state(svc: &Service) -> String {
    svc.update_status
        .as_ref()
        .and_then(|u| u.state)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// Whether Swarm gave up on the spec `plan_hash`, which the driver last
/// pushed (`pushed`): it paused that update, or rolled it back (the
/// service's spec is then an older one). A service Swarm rolled back to
/// the very spec the plan asks for (Convoy rolled back too) is not given
/// up on: it is where it should be.
pub fn gave_up(svc: &Service, plan_hash: &str, pushed: Option<&String>) -> bool {
    if pushed.is_none_or(|p| p != plan_hash) {
        return false;
    }
    match svc.update_status.as_ref().and_then(|u| u.state) {
        Some(ServiceUpdateStatusStateEnum::PAUSED) => true,
        // Rolling back (started, paused or done): the spec is already the
        // older one, and pushing the plan's again would start over.
        Some(
            ServiceUpdateStatusStateEnum::ROLLBACK_STARTED
            | ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED
            | ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED,
        ) => label(svc, labels::SPEC_HASH) != plan_hash,
        _ => false,
    }
}

impl<A: SwarmApi> SwarmDriver<A> {
    pub fn new(
        api: Arc<A>,
        statuses: watch::Sender<BTreeMap<String, WorkloadStatus>>,
        events: broadcast::Sender<Event>,
    ) -> Self {
        Self {
            api,
            statuses,
            events,
            pushed: HashMap::new(),
            tasks_seen: HashMap::new(),
        }
    }

    /// Runs until `shutdown`: a pass per plan change and every
    /// [`PASS_EVERY`], only while the plan says this node drives.
    pub async fn run(
        mut self,
        mut plan: watch::Receiver<Option<Arc<Plan>>>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = crate::controller::Backoff::new(PASS_EVERY, UNREACHABLE_MAX);
        loop {
            let current = plan.borrow_and_update().clone();
            let mut wait = PASS_EVERY;
            match current.filter(|p| p.swarm_driver()) {
                Some(p) => {
                    if self.pass(&p).await {
                        backoff.reset();
                    } else {
                        wait = backoff.next_delay();
                    }
                }
                None => {
                    // Not (or no longer) the driver: touch nothing, say
                    // nothing of Swarm services.
                    self.statuses.send_if_modified(|s| {
                        let had = !s.is_empty();
                        s.clear();
                        had
                    });
                    self.tasks_seen.clear();
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = plan.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass over the plan's Swarm services (the plan says this node
    /// drives). False when the engine did not answer.
    pub async fn pass(&mut self, plan: &Plan) -> bool {
        let wanted: Vec<(&Workload, &SwarmServiceSpec)> = plan
            .swarm_services()
            .filter_map(|w| swarm_spec(w).map(|s| (w, s)))
            .collect();
        let services = match self.api.list_services().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot read Swarm services");
                self.unreachable(&wanted, &e);
                return false;
            }
        };
        let by_name: HashMap<&str, &Service> = services
            .iter()
            .filter_map(|s| Some((s.spec.as_ref()?.name.as_deref()?, s)))
            .collect();
        let mut errors: HashMap<String, String> = HashMap::new();

        // Networks first: a service cannot be created without them.
        let networks = self.api.list_networks().await.unwrap_or_default();
        let have: BTreeSet<&str> = networks.iter().map(|n| n.name.as_str()).collect();
        let mut used: BTreeSet<String> = BTreeSet::new();
        for (w, s) in &wanted {
            for (name, _, net) in spec::networks_of(&w.env, s) {
                if net.is_some_and(|n| n.external) {
                    continue;
                }
                if !have.contains(name.as_str()) && !used.contains(&name) {
                    if let Err(e) = self
                        .api
                        .create_network(spec::network_request(&w.env, &name, net))
                        .await
                    {
                        // Another pass (or the engine) may have made it.
                        warn!(network = %name, error = %e, "cannot create a Swarm network");
                        errors.insert(w.id.clone(), e);
                    } else {
                        info!(network = %name, "created an overlay network");
                    }
                }
                used.insert(name);
            }
        }

        // Swarm secrets (secret versions and configs), then create or
        // update. Swarm's secrets are immutable: a new version or content
        // is a new secret, the old one removed once nothing uses it.
        let secrets = self.api.list_secrets().await.unwrap_or_default();
        let mut ids: HashMap<String, String> = secrets
            .iter()
            .map(|s| (s.name.clone(), s.id.clone()))
            .collect();
        let mut used_secrets: BTreeSet<String> = BTreeSet::new();
        for (w, s) in &wanted {
            if errors.contains_key(&w.id) {
                continue;
            }
            let objects = match spec::secret_objects(w, s, plan.secret_values()) {
                Ok(objects) => objects,
                Err(e) => {
                    errors.insert(w.id.clone(), e);
                    continue;
                }
            };
            for o in &objects {
                used_secrets.insert(o.name.clone());
                if ids.contains_key(&o.name) {
                    continue;
                }
                match self.api.create_secret(o.spec.clone()).await {
                    Ok(id) => {
                        info!(secret = %o.name, "created a Swarm secret");
                        ids.insert(o.name.clone(), id);
                    }
                    Err(e) => {
                        errors.insert(w.id.clone(), e);
                    }
                }
            }
            if errors.contains_key(&w.id) {
                continue;
            }
            let desired = spec::service_spec(w, s, spec::secret_refs(&objects, &ids));
            let result = match by_name.get(s.name.as_str()) {
                None => {
                    info!(service = %s.name, revision = w.revision, "creating Swarm service");
                    self.api.create_service(desired).await
                }
                Some(svc) if label(svc, labels::SPEC_HASH) != w.spec_hash => {
                    if !self.pushed.contains_key(&s.name) && rolled_back(svc) {
                        // A driver that just started remembers nothing it
                        // pushed; Swarm's task history does: a task of the
                        // plan's spec means Swarm tried it and rolled back.
                        let tasks = self.api.list_tasks(&s.name).await.unwrap_or_default();
                        if tasks
                            .iter()
                            .any(|t| task_label(t, labels::SPEC_HASH) == w.spec_hash)
                        {
                            self.pushed.insert(s.name.clone(), w.spec_hash.clone());
                        }
                    }
                    if gave_up(svc, &w.spec_hash, self.pushed.get(&s.name)) {
                        Ok(())
                    } else {
                        let version = svc.version.as_ref().and_then(|v| v.index).unwrap_or(0);
                        info!(service = %s.name, revision = w.revision, "updating Swarm service");
                        self.api.update_service(&s.name, version, desired).await
                    }
                }
                Some(_) => Ok(()),
            };
            match result {
                Ok(()) => {
                    self.pushed.insert(s.name.clone(), w.spec_hash.clone());
                }
                Err(e) => {
                    warn!(service = %s.name, error = %e, "Swarm service not applied");
                    errors.insert(w.id.clone(), e);
                }
            }
        }

        // Remove what the plan lacks.
        let names: BTreeSet<&str> = wanted.iter().map(|(_, s)| s.name.as_str()).collect();
        for name in by_name.keys().filter(|n| !names.contains(*n)) {
            info!(service = %name, "removing Swarm service");
            if let Err(e) = self.api.remove_service(name).await {
                warn!(service = %name, error = %e, "cannot remove Swarm service");
            }
            self.pushed.remove(*name);
        }
        for secret in secrets.iter().filter(|s| !used_secrets.contains(&s.name)) {
            // Refused while a service (or its rollback) still uses it.
            if self.api.remove_secret(&secret.id).await.is_ok() {
                info!(secret = %secret.name, "removed a Swarm secret");
            }
        }
        for net in networks.iter().filter(|n| !used.contains(&n.name)) {
            // Refused while tasks still detach: tried again next pass.
            if self.api.remove_network(&net.id).await.is_ok() {
                info!(network = %net.name, "removed an overlay network");
            }
        }

        // Statuses, from a fresh read.
        let fresh = self.api.list_services().await.unwrap_or(services);
        let fresh: HashMap<String, Service> = fresh
            .into_iter()
            .filter_map(|s| Some((s.spec.as_ref()?.name.clone()?, s)))
            .collect();
        let hostnames: HashMap<String, String> = match wanted.is_empty() {
            true => HashMap::new(),
            false => self
                .api
                .list_nodes()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter_map(|n| {
                    let host = n.description.as_ref()?.hostname.clone()?;
                    Some((n.id?, host))
                })
                .collect(),
        };
        let mut out = BTreeMap::new();
        for (w, s) in &wanted {
            let svc = fresh.get(&s.name);
            let tasks = match svc {
                Some(_) => match self.api.list_tasks(&s.name).await {
                    Ok(t) => t,
                    Err(e) => {
                        errors.entry(w.id.clone()).or_insert(e);
                        Vec::new()
                    }
                },
                None => Vec::new(),
            };
            let given_up =
                svc.is_some_and(|svc| gave_up(svc, &w.spec_hash, self.pushed.get(&s.name)));
            let status = derive_status(Observed {
                workload: w,
                spec: s,
                service: svc,
                tasks: &tasks,
                hostnames: &hostnames,
                given_up,
                error: errors.get(&w.id).map(String::as_str),
            });
            self.task_events(w, &status);
            out.insert(w.id.clone(), status);
        }
        self.tasks_seen.retain(|id, _| out.contains_key(id));
        self.statuses.send_if_modified(|current| {
            if *current == out {
                false
            } else {
                *current = out;
                true
            }
        });
        true
    }

    /// The engine does not answer: each status keeps what it said, with
    /// the reason.
    fn unreachable(&self, wanted: &[(&Workload, &SwarmServiceSpec)], error: &str) {
        self.statuses.send_modify(|statuses| {
            for (w, _) in wanted {
                let s = statuses
                    .entry(w.id.clone())
                    .or_insert_with(|| WorkloadStatus {
                        id: w.id.clone(),
                        revision: w.revision,
                        state: WorkloadState::Pending as i32,
                        ..Default::default()
                    });
                s.reason = format!("the Docker engine does not answer: {error}");
            }
        });
    }

    /// An event per task slot whose task or state changed since the last
    /// pass (none on the first pass of a workload: that is the baseline).
    fn task_events(&mut self, w: &Workload, status: &WorkloadStatus) {
        let now: BTreeMap<String, (String, String)> = status
            .swarm_tasks
            .iter()
            .map(|t| (task_key(t), (t.task_id.clone(), t.state.clone())))
            .collect();
        if let Some(before) = self.tasks_seen.get(&w.id) {
            for t in &status.swarm_tasks {
                let key = task_key(t);
                if before.get(&key) == Some(&(t.task_id.clone(), t.state.clone())) {
                    continue;
                }
                let node = if t.node_hostname.is_empty() {
                    &t.node_id
                } else {
                    &t.node_hostname
                };
                let mut message = format!("task {key} on {node}: {}", t.state);
                if !t.error.is_empty() {
                    message.push_str(": ");
                    message.push_str(&t.error);
                }
                let _ = self.events.send(Event {
                    unix_ms: crate::reconcile::unix_ms(SystemTime::now()),
                    workload_id: w.id.clone(),
                    kind: format!("task-{}", t.state),
                    message,
                });
            }
        }
        self.tasks_seen.insert(w.id.clone(), now);
    }
}

//! Makes the node's containers match its plan, on the shared controller
//! runner (`crate::controller`): a sync lists the node's containers once,
//! publishes every status and names the workloads a pure `decide` finds
//! work for; each is then reconciled on its own (observe afresh, decide,
//! apply its actions in order). Each sync also points the probes at the
//! running containers, and statuses carry the health they and Docker's
//! healthchecks report.

mod apply;
mod book;
mod decide;
mod depends;
mod events;
mod publish;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use convoy_proto::{Event, Health, Workload, WorkloadStatus};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

pub use apply::ReconcileError;
pub use book::{backoff, RestartBook, BACKOFF_MAX, BACKOFF_START, HEALTHY_RUN};
pub use decide::{decide, Action, RemoveReason, REMOVING_WAIT};
pub use depends::{unmet, Gate, DEPENDS_WAIT};

use crate::controller::{self, Reconcile, Synced, Unreachable};
use crate::plan::Plan;
use crate::probe::Prober;
use crate::runtime::{container_name, Observed, Runtime};
use crate::secrets::NodeSecrets;
use apply::Ctx;

/// The safety net: a sync at least this often, whatever happens.
pub const REQUEUE: Duration = Duration::from_secs(10);
/// The first retry while Docker is unreachable; it doubles (with jitter)
/// up to `UNREACHABLE_MAX`, and starts over once Docker answers.
pub const UNREACHABLE_RETRY: Duration = Duration::from_secs(1);
pub const UNREACHABLE_MAX: Duration = Duration::from_secs(30);
/// Reconciles (creates, starts, removes) in flight at once, all workloads
/// together.
const MAX_CONCURRENT: usize = 8;

/// What the session reports: statuses of the desired workloads, and the
/// number of managed containers on the node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub statuses: BTreeMap<String, WorkloadStatus>,
    pub containers: u32,
}

/// Applies the plan to the runtime. The runner reconciles workloads
/// concurrently, one reconcile per workload at a time; this side of it
/// syncs and publishes.
pub struct Reconciler<R: Runtime> {
    ctx: Arc<Ctx<R>>,
    snapshot: watch::Sender<Snapshot>,
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
            ctx: Arc::new(Ctx {
                runtime,
                node,
                book: Mutex::new(RestartBook::default()),
                events,
                statuses: snapshot.subscribe(),
                elsewhere: Mutex::new(HashSet::new()),
                secrets: None,
                drains: None,
            }),
            snapshot,
            unreachable: None,
            last: None,
            healths: HashMap::new(),
        }
    }

    /// Delivers secrets from `secrets` (without it, a workload with
    /// secrets fails). Call before `run`.
    pub fn with_secrets(mut self, secrets: Arc<NodeSecrets>) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.secrets = Some(secrets);
        }
        self
    }

    /// Drains instances out of the proxy's pools before their containers
    /// stop. Call before `run`.
    pub fn with_drains(mut self, pools: Arc<crate::proxy::Pools>) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.drains = Some(pools);
        }
        self
    }

    /// How the runner paces the container reconciler.
    pub fn config() -> controller::Config {
        controller::Config {
            requeue: REQUEUE,
            max_concurrent: MAX_CONCURRENT,
            unreachable_start: UNREACHABLE_RETRY,
            unreachable_cap: UNREACHABLE_MAX,
            ..controller::Config::default()
        }
    }

    /// Runs until `shutdown`: syncs on a new plan, a container event, the
    /// next backoff deadline, and every `REQUEUE` at least. Without a plan
    /// (none received, none on disk) nothing is created or removed.
    pub async fn run(self, plan: watch::Receiver<Option<Arc<Plan>>>, shutdown: CancellationToken) {
        let wake = Arc::new(Notify::new());
        let watcher = tokio::spawn(
            events::watch_events(
                self.ctx.runtime.clone(),
                self.ctx.node.clone(),
                wake.clone(),
                shutdown.clone(),
            )
            .instrument(info_span!("docker_events")),
        );
        controller::run(self, Self::config(), plan, wake, shutdown).await;
        if let Err(e) = watcher.await {
            warn!("event watcher ended badly: {e}");
        }
        debug!("reconciler stopped");
    }

    /// One whole pass, in order: sync, reconcile every workload with work,
    /// sync again to report. Returns when the next pass is due at the
    /// latest.
    pub async fn pass(&mut self, plan: Option<&Plan>, now: Instant) -> Option<Instant> {
        match controller::pass(self, plan.cloned().map(Arc::new), now).await {
            Ok(next) => next,
            Err(_) => Some(now + UNREACHABLE_RETRY),
        }
    }
}

impl<R: Runtime> Reconcile for Reconciler<R> {
    type Plan = Plan;
    type Key = String;
    type Error = ReconcileError;

    async fn sync(
        &mut self,
        plan: Option<&Plan>,
        now: Instant,
    ) -> Result<Synced<String>, Unreachable> {
        let observed = match self.ctx.observe().await {
            Ok(observed) => observed,
            Err(e) => {
                let reason = e.reason(&self.ctx.node);
                if self.unreachable.as_deref() != Some(reason.as_str()) {
                    warn!("{reason}; retrying with backoff");
                    self.unreachable = Some(reason.clone());
                }
                if let Some(plan) = plan {
                    self.publish_unreachable(desired_of(plan), &reason);
                }
                return Err(Unreachable { reason });
            }
        };
        if self.unreachable.take().is_some() {
            info!("docker is reachable again");
        }
        let Some(plan) = plan else {
            // No plan known: report what is there, touch nothing.
            self.publish(&[], &observed);
            return Ok(Synced::default());
        };
        let desired = desired_of(plan);
        self.collect_secrets(&desired, &observed).await;
        let (actions, deadline) = {
            let mut book = self.ctx.book();
            book.observe(&desired, &observed, now);
            let actions = decide(&desired, &observed, &book, now);
            (actions, book.next_deadline(now))
        };
        let actions = self.ctx.gate(&desired, actions, now);
        let mut work: Vec<String> = Vec::new();
        let mut next = deadline;
        for action in &actions {
            match action {
                Action::Wait { until, .. } => next = earliest(next, Some(*until)),
                _ => {
                    let id = action.workload_id();
                    if !work.iter().any(|w| w == id) {
                        work.push(id.to_string());
                    }
                }
            }
        }
        self.publish(&desired, &observed);
        Ok(Synced { work, next })
    }

    fn reconcile(
        &self,
        plan: Arc<Plan>,
        key: String,
        now: Instant,
    ) -> BoxFuture<'static, Result<controller::Action, ReconcileError>> {
        let ctx = self.ctx.clone();
        async move { ctx.reconcile(&plan, &key, now).await }.boxed()
    }

    async fn between(&mut self) {
        // A probe result needs no reconcile, only a new status.
        let update = self.prober.next().await;
        if self.prober.apply(update) {
            self.republish();
        }
    }
}

impl<R: Runtime> Reconciler<R> {
    /// Removes the secret files of containers that are gone and that no
    /// workload of the plan will create.
    async fn collect_secrets(&self, desired: &[Workload], observed: &[Observed]) {
        let Some(secrets) = self.ctx.secrets.clone() else {
            return;
        };
        let keep: HashSet<String> = observed
            .iter()
            .map(|o| o.name.clone())
            .chain(desired.iter().map(container_name))
            .collect();
        let _ = tokio::task::spawn_blocking(move || secrets.collect_containers(&keep)).await;
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The plan's container workloads. Unit workloads belong to the systemd
/// reconciler.
fn desired_of(plan: &Plan) -> Vec<Workload> {
    plan.containers().cloned().collect()
}

pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;

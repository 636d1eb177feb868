//! Makes the node's systemd units match its plan, the way `reconcile` does
//! for containers: a pure `decide` from the plan's unit workloads and what
//! is freshly found (unit files on disk, unit state from systemd's D-Bus
//! API) to ordered actions, run on the shared controller runner: a sync
//! finds every unit once and names the workloads (and orphaned unit files)
//! with work, each then reconciled on its own; woken by PropertiesChanged
//! signals, with a slow resync as the backstop.
//!
//! Written units: a new one is written, systemd reloaded, enabled and
//! started; a changed one rewritten, reloaded and restarted; one that left
//! the plan stopped, disabled, deleted and systemd reloaded. After that
//! systemd's own `Restart=` keeps it up. Adopted units are kept running or
//! stopped, enabled or disabled, and their files are never touched. A unit
//! file without Convoy's marker is never modified, stopped or deleted.

pub mod file;
pub mod status;

mod apply;
mod book;
mod decide;
mod publish;
mod signals;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convoy_proto::{Event, WorkloadStatus};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

pub use apply::ReconcileError;
pub use book::UnitBook;
pub use decide::{decide, decide_key, desired_of, keys, Action, Desired, Found, UnitKey};

use crate::controller::{self, Reconcile, Synced, Unreachable};
use crate::plan::Plan;
use crate::runtime::systemd::Systemd;
use crate::secrets::NodeSecrets;
use apply::Ctx;
use file::UnitFiles;

/// The backstop: a full sync at least this often, signals or not.
pub const RESYNC: Duration = Duration::from_secs(30);
/// The first retry while systemd is unreachable; it doubles (with jitter)
/// up to `UNREACHABLE_MAX`, and starts over once systemd answers.
pub const UNREACHABLE_RETRY: Duration = Duration::from_secs(1);
pub const UNREACHABLE_MAX: Duration = Duration::from_secs(30);
/// Signals come in bursts (one per property change): wait this long after
/// the first before a sync.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// Unit reconciles in flight at once.
const MAX_CONCURRENT: usize = 8;

/// Where the unit reconciler writes unit files.
#[derive(Clone, Debug)]
pub struct UnitsConfig {
    /// `/etc/systemd/system` unless a test says otherwise.
    pub unit_dir: PathBuf,
}

impl Default for UnitsConfig {
    fn default() -> Self {
        Self {
            unit_dir: PathBuf::from(file::DEFAULT_UNIT_DIR),
        }
    }
}

/// Applies the plan's unit workloads to systemd. The runner reconciles
/// each workload (and each orphaned unit file) on its own; this side of it
/// syncs and publishes.
pub struct UnitReconciler<S: Systemd> {
    ctx: Arc<Ctx<S>>,
    statuses: watch::Sender<BTreeMap<String, WorkloadStatus>>,
    /// The units the signal watcher wakes the loop for.
    interest: watch::Sender<BTreeSet<String>>,
    /// The last "systemd unreachable" reason logged, so it is logged once.
    unreachable: Option<String>,
}

impl<S: Systemd> UnitReconciler<S> {
    pub fn new(
        systemd: Arc<S>,
        node: String,
        config: UnitsConfig,
        statuses: watch::Sender<BTreeMap<String, WorkloadStatus>>,
        events: broadcast::Sender<Event>,
    ) -> Self {
        let UnitsConfig { unit_dir } = config;
        Self {
            ctx: Arc::new(Ctx {
                systemd,
                node,
                files: UnitFiles::new(unit_dir),
                book: Mutex::new(UnitBook::default()),
                events,
                secrets: None,
            }),
            statuses,
            interest: watch::channel(BTreeSet::new()).0,
            unreachable: None,
        }
    }

    /// Writes credentials under `secrets` (without it, a unit with
    /// credentials fails). Call before `run`.
    pub fn with_secrets(mut self, secrets: Arc<NodeSecrets>) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.secrets = Some(secrets);
        }
        self
    }

    /// How the runner paces the unit reconciler.
    pub fn config() -> controller::Config {
        controller::Config {
            requeue: RESYNC,
            max_concurrent: MAX_CONCURRENT,
            unreachable_start: UNREACHABLE_RETRY,
            unreachable_cap: UNREACHABLE_MAX,
            debounce: DEBOUNCE,
            ..controller::Config::default()
        }
    }

    /// Runs until `shutdown`: syncs on a new plan, a change systemd
    /// signals for one of the units, the next backoff deadline, and every
    /// `RESYNC` at least. Without a plan nothing is touched.
    pub async fn run(self, plan: watch::Receiver<Option<Arc<Plan>>>, shutdown: CancellationToken) {
        let wake = Arc::new(Notify::new());
        let watcher = tokio::spawn(
            signals::watch_changes(
                self.ctx.systemd.clone(),
                self.interest.subscribe(),
                wake.clone(),
                shutdown.clone(),
            )
            .instrument(info_span!("systemd_signals")),
        );
        controller::run(self, Self::config(), plan, wake, shutdown).await;
        if let Err(e) = watcher.await {
            warn!("systemd signal watcher ended badly: {e}");
        }
        debug!("unit reconciler stopped");
    }

    /// One whole pass, in order: sync, reconcile every key with work, sync
    /// again to report. Returns when the next pass is due, if a deadline
    /// says so.
    pub async fn pass(&mut self, plan: Option<&Plan>, now: Instant) -> Option<Instant> {
        match controller::pass(self, plan.cloned().map(Arc::new), now).await {
            Ok(next) => next,
            Err(_) => Some(now + UNREACHABLE_RETRY),
        }
    }
}

impl<S: Systemd> Reconcile for UnitReconciler<S> {
    type Plan = Plan;
    type Key = UnitKey;
    type Error = ReconcileError;

    async fn sync(
        &mut self,
        plan: Option<&Plan>,
        now: Instant,
    ) -> Result<Synced<UnitKey>, Unreachable> {
        let Some(plan) = plan else {
            // No plan known: touch nothing, report nothing.
            self.publish(&[], &BTreeMap::new(), &[]).await;
            return Ok(Synced::default());
        };
        let desired = self.ctx.desired_of(plan);
        self.ctx.book().observe(&desired);
        self.ctx.collect_credentials(&desired).await;
        let orphans = self.ctx.orphans(&desired).await;
        let interest: BTreeSet<String> = desired
            .iter()
            .filter_map(|d| d.unit().map(str::to_string))
            .chain(orphans.iter().cloned())
            .collect();
        self.interest.send_if_modified(|current| {
            let changed = *current != interest;
            *current = interest.clone();
            changed
        });
        if interest.is_empty() {
            // Nothing to ask systemd: hosts without it are fine.
            self.publish(&desired, &BTreeMap::new(), &[]).await;
            return Ok(Synced::default());
        }
        let found = match self.ctx.find(&desired, &orphans).await {
            Ok(found) => found,
            Err(reason) => {
                self.unreachable_now(&desired, &reason);
                return Err(Unreachable { reason });
            }
        };
        if self.unreachable.take().is_some() {
            info!("systemd is reachable again");
        }
        let (work, next) = {
            let book = self.ctx.book();
            let work: Vec<UnitKey> = keys(&desired, &orphans)
                .into_iter()
                .filter(|key| !decide_key(&desired, &found, key, &book, now).is_empty())
                .collect();
            (work, book.next_deadline(now))
        };
        self.publish(&desired, &found, &work).await;
        Ok(Synced { work, next })
    }

    fn reconcile(
        &self,
        plan: Arc<Plan>,
        key: UnitKey,
        now: Instant,
    ) -> BoxFuture<'static, Result<controller::Action, ReconcileError>> {
        let ctx = self.ctx.clone();
        async move { ctx.reconcile(&plan, &key, now).await }.boxed()
    }
}

#[cfg(test)]
mod tests;

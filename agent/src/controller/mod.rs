//! The one controller runner behind the container and unit reconcilers,
//! shaped like kube-runtime's `Controller`: a `sync` reads the node once,
//! publishes statuses and names the workloads that need work; each of those
//! is reconciled on its own task (`reconcile(key) -> Result<Action, Error>`),
//! at most one per key and a bounded number in all, so a slow image pull or
//! a failing workload never holds up another. Errors are retried by an
//! error policy with exponential backoff and jitter, an unreachable runtime
//! likewise, and a periodic sync is the safety net.

pub mod backoff;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{watch, Notify};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

pub use backoff::Backoff;

/// What a reconcile asks of the runner once it is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reconcile this key again after the delay (a restart backoff ends).
    Requeue(Duration),
    /// Nothing to do until something changes (or the periodic sync).
    AwaitChange,
}

/// What a sync found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced<K> {
    /// The keys that need a reconcile now.
    pub work: Vec<K>,
    /// When a deadline (a restart backoff) ends, for an earlier sync than
    /// the periodic one.
    pub next: Option<std::time::Instant>,
}

impl<K> Default for Synced<K> {
    fn default() -> Self {
        Self {
            work: Vec::new(),
            next: None,
        }
    }
}

/// The runtime (Docker, systemd) could not be read; the reason is what the
/// statuses say.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Unreachable {
    pub reason: String,
}

/// A reconciler the runner drives.
pub trait Reconcile: Send + 'static {
    /// What the reconciler is given to enforce.
    type Plan: Send + Sync + 'static;
    /// One workload (or one leftover of a workload that left the plan).
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    type Error: Display + Send + 'static;

    /// Reads the node once, publishes every status, and names the keys
    /// that need a reconcile. Without a plan nothing is to be touched.
    fn sync(
        &mut self,
        plan: Option<&Self::Plan>,
        now: std::time::Instant,
    ) -> impl Future<Output = Result<Synced<Self::Key>, Unreachable>> + Send;

    /// Brings one key towards the plan, reading what it needs afresh. Runs
    /// on its own task, beside the reconciles of other keys.
    fn reconcile(
        &self,
        plan: Arc<Self::Plan>,
        key: Self::Key,
        now: std::time::Instant,
    ) -> BoxFuture<'static, Result<Action, Self::Error>>;

    /// Anything else to wait for between syncs (probe results); it may
    /// publish. Never resolves unless a reconciler says otherwise.
    fn between(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// How a runner paces itself.
#[derive(Clone, Debug)]
pub struct Config {
    /// The safety net: a sync at least this often.
    pub requeue: Duration,
    /// Reconciles in flight at once, all keys together.
    pub max_concurrent: usize,
    /// A failed reconcile is retried after this, doubling per failure of
    /// the same key up to `error_cap`; a success resets it, and a new plan
    /// lets it run again at once.
    pub error_start: Duration,
    pub error_cap: Duration,
    /// While the runtime is unreachable: first retry, doubling to the cap;
    /// reset once it answers.
    pub unreachable_start: Duration,
    pub unreachable_cap: Duration,
    /// A wake-up (container event, unit signal) waits this long first, so
    /// a burst makes one sync.
    pub debounce: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            requeue: Duration::from_secs(10),
            max_concurrent: 8,
            error_start: Duration::from_secs(1),
            error_cap: Duration::from_secs(60),
            unreachable_start: Duration::from_secs(1),
            unreachable_cap: Duration::from_secs(30),
            debounce: Duration::ZERO,
        }
    }
}

/// The runner's memory of one key.
#[derive(Debug)]
struct KeyState {
    /// The error policy's backoff for this key.
    backoff: Backoff,
    /// Reconcile again at this time (a requeue, or a retry after an error).
    due: Option<Instant>,
}

/// The queue of keys: at most one reconcile per key in flight, at most
/// `max_concurrent` in all, the rest waiting their turn in order.
struct Queue<K: Clone + Eq + Hash> {
    keys: HashMap<K, KeyState>,
    ready: VecDeque<K>,
    queued: HashSet<K>,
    running: HashMap<Id, K>,
    busy: HashSet<K>,
    error_start: Duration,
    error_cap: Duration,
}

impl<K: Clone + Eq + Hash + Debug> Queue<K> {
    fn new(config: &Config) -> Self {
        Self {
            keys: HashMap::new(),
            ready: VecDeque::new(),
            queued: HashSet::new(),
            running: HashMap::new(),
            busy: HashSet::new(),
            error_start: config.error_start,
            error_cap: config.error_cap,
        }
    }

    /// Queues a key a sync says needs work, unless it is in flight (a sync
    /// follows its end) or waits out an error backoff.
    fn request(&mut self, key: K) {
        let retrying = self
            .keys
            .get(&key)
            .is_some_and(|s| s.backoff.failures() > 0 && s.due.is_some());
        if retrying || self.busy.contains(&key) {
            return;
        }
        self.enqueue(key);
    }

    fn enqueue(&mut self, key: K) {
        if !self.busy.contains(&key) && self.queued.insert(key.clone()) {
            self.ready.push_back(key);
        }
    }

    /// Queues the keys whose time came.
    fn due(&mut self, now: Instant) {
        let due: Vec<K> = self
            .keys
            .iter_mut()
            .filter(|(_, s)| s.due.is_some_and(|t| t <= now))
            .map(|(k, s)| {
                s.due = None;
                k.clone()
            })
            .collect();
        for key in due {
            self.enqueue(key);
        }
    }

    /// A new plan may fix what failed: keys waiting out an error backoff
    /// may run again at once (their failure count stays until a success).
    fn forgive(&mut self) {
        for state in self.keys.values_mut() {
            if state.backoff.failures() > 0 {
                state.due = None;
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.keys.values().filter_map(|s| s.due).min()
    }

    fn clear_ready(&mut self) {
        self.ready.clear();
        self.queued.clear();
    }

    /// The next key to start, if there is room.
    fn pop(&mut self, max: usize) -> Option<K> {
        if self.busy.len() >= max {
            return None;
        }
        let key = self.ready.pop_front()?;
        self.queued.remove(&key);
        self.busy.insert(key.clone());
        Some(key)
    }

    /// Applies the error policy to a finished reconcile.
    fn finish<E: Display>(&mut self, key: K, result: Result<Action, E>, now: Instant) {
        self.busy.remove(&key);
        let state = self.keys.entry(key.clone()).or_insert_with(|| KeyState {
            backoff: Backoff::new(self.error_start, self.error_cap),
            due: None,
        });
        match result {
            Ok(Action::Requeue(after)) => {
                state.backoff.reset();
                state.due = Some(now + after);
            }
            Ok(Action::AwaitChange) => {
                self.keys.remove(&key);
            }
            Err(e) => {
                let delay = state.backoff.next_delay();
                state.due = Some(now + delay);
                debug!(key = ?key, "reconcile failed: {e}; again in {delay:?}");
            }
        }
    }
}

/// Runs `reconciler` until `shutdown`: a sync on start, on a new plan, on a
/// `wake` (after `debounce`), after every finished reconcile, when a
/// deadline ends, and every `requeue` at least.
pub async fn run<C: Reconcile>(
    mut reconciler: C,
    config: Config,
    mut plan: watch::Receiver<Option<Arc<C::Plan>>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut queue = Queue::<C::Key>::new(&config);
    let mut tasks: JoinSet<Result<Action, C::Error>> = JoinSet::new();
    let mut unreachable = Backoff::new(config.unreachable_start, config.unreachable_cap);
    let mut sync_at = Instant::now();
    let mut plan_open = true;
    let max = config.max_concurrent.max(1);
    loop {
        let now = Instant::now();
        if sync_at <= now {
            let current = plan.borrow_and_update().clone();
            let synced = tokio::select! {
                _ = shutdown.cancelled() => break,
                synced = reconciler.sync(current.as_deref(), now.into_std()) => synced,
            };
            match synced {
                Ok(Synced { work, next }) => {
                    unreachable.reset();
                    for key in work {
                        queue.request(key);
                    }
                    let next = next.map(Instant::from_std);
                    sync_at = next.map_or(now + config.requeue, |t| {
                        t.max(now).min(now + config.requeue)
                    });
                }
                Err(e) => {
                    // Nothing can be done until it answers again.
                    queue.clear_ready();
                    let delay = unreachable.next_delay();
                    debug!("{e}; next try in {delay:?}");
                    sync_at = now + delay;
                }
            }
        }
        queue.due(now);
        if let Some(current) = plan.borrow().clone() {
            while let Some(key) = queue.pop(max) {
                let span = tracing::info_span!("reconcile", key = ?key);
                let work = reconciler.reconcile(current.clone(), key.clone(), now.into_std());
                let handle = tasks.spawn(work.instrument(span));
                queue.running.insert(handle.id(), key);
            }
        } else {
            queue.clear_ready();
        }

        let deadline = queue.next_due().map_or(sync_at, |t| t.min(sync_at));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = plan.changed(), if plan_open => {
                if changed.is_err() {
                    plan_open = false;
                }
                queue.forgive();
                sync_at = Instant::now();
            }
            _ = wake.notified() => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(config.debounce) => {}
                }
                sync_at = Instant::now();
            }
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                finished(&mut queue, joined);
                // Everything else that is done, then one sync for them all.
                while let Some(joined) = tasks.try_join_next_with_id() {
                    finished(&mut queue, joined);
                }
                sync_at = Instant::now();
            }
            _ = tokio::time::sleep_until(deadline) => {}
            _ = reconciler.between() => {}
        }
    }
    if !tasks.is_empty() {
        debug!(running = tasks.len(), "stopping reconciles in flight");
    }
    tasks.shutdown().await;
}

fn finished<K: Clone + Eq + Hash + Debug, E: Display>(
    queue: &mut Queue<K>,
    joined: Result<(Id, Result<Action, E>), tokio::task::JoinError>,
) {
    let now = Instant::now();
    match joined {
        Ok((id, result)) => {
            if let Some(key) = queue.running.remove(&id) {
                queue.finish(key, result, now);
            }
        }
        Err(e) => {
            if let Some(key) = queue.running.remove(&e.id()) {
                warn!(key = ?key, "a reconcile ended badly: {e}");
                queue.finish(key, Err(e), now);
            }
        }
    }
}

/// One whole pass, in order, for tests and one-off runs: a sync, a
/// reconcile of each key it names (one after the other), and a sync to
/// publish what they did. Returns when a deadline ends, if one does.
pub async fn pass<C: Reconcile>(
    reconciler: &mut C,
    plan: Option<Arc<C::Plan>>,
    now: std::time::Instant,
) -> Result<Option<std::time::Instant>, Unreachable> {
    let synced = reconciler.sync(plan.as_deref(), now).await?;
    let Some(plan) = plan else {
        return Ok(synced.next);
    };
    if synced.work.is_empty() {
        return Ok(synced.next);
    }
    for key in synced.work {
        // The failure is in the reconciler's statuses; a pass moves on.
        let _ = reconciler.reconcile(plan.clone(), key, now).await;
    }
    let now = std::time::Instant::now().max(now);
    Ok(reconciler.sync(Some(&plan), now).await?.next)
}

#[cfg(test)]
mod tests;

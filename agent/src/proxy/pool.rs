//! The proxy's live view of the node: which routes lead to which service,
//! and which of the service's instances may take requests (running,
//! healthy, not draining), with the requests each has in flight. The
//! reconciler drains an instance through [`Pools::drain`] before it stops
//! its container.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use convoy_proto::{Health, Workload, WorkloadState, WorkloadStatus};
use tokio::sync::Notify;
use tracing::info;

use super::routes::{HostMatch, Route, RouteTable, ServiceKey};

/// How often a draining instance's in-flight count is looked at.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// The drain timeout when the service's own is unknown (the spec's default).
const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// The requests in flight to one container; closed once it drains, so a
/// request that picked it a moment before takes another instance.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    closed: AtomicBool,
}

impl InFlight {
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// One more request; `None` once the container drains.
    fn acquire(self: &Arc<Self>) -> Option<InFlightGuard> {
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(InFlightGuard(self.clone()))
    }
}

/// Counts one request as in flight until dropped (when its response
/// body is done, or its upgraded connection closes).
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An instance that may take requests.
#[derive(Clone, Debug)]
pub struct Backend {
    pub container_id: String,
    pub workload_id: String,
    pub ip: IpAddr,
    pub revision: u64,
    inflight: Arc<InFlight>,
}

impl Backend {
    pub fn in_flight(&self) -> usize {
        self.inflight.count()
    }
}

/// One service's instances on this node.
#[derive(Debug, Default)]
pub struct ServicePool {
    pub backends: Vec<Backend>,
    /// A weighted canary: (its revision, percent of requests it gets).
    pub split: Option<(u64, u32)>,
    /// A blue-green rollout: the revision whose instances get every
    /// request (while it has any here).
    pub active: Option<u64>,
    /// Where the next pick starts looking, so that instances with equal
    /// loads take turns.
    cursor: AtomicUsize,
}

/// Routes and pools as they are now; replaced whole on every change.
#[derive(Debug, Default)]
pub struct Table {
    pub routes: RouteTable,
    pub services: HashMap<ServiceKey, ServicePool>,
}

/// An instance the plan and statuses make a candidate for its service's
/// pool (its address still to be found).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub service: ServiceKey,
    pub container_id: String,
    pub workload_id: String,
    pub revision: u64,
    pub drain_timeout: Duration,
}

/// A running container of an older spec of a workload (the plan moved on,
/// the reconciler has not replaced it yet): it keeps serving until it is
/// drained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outdated {
    pub workload_id: String,
    pub container_id: String,
    pub revision: u64,
}

/// What the plan and the statuses say the table should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub routes: Vec<Route>,
    pub candidates: Vec<Candidate>,
    /// Routes that another service already took: `host path -> service`.
    pub conflicts: Vec<String>,
    /// Weighted canaries: service → (canary revision, percent).
    pub splits: BTreeMap<ServiceKey, (u64, u32)>,
    /// Blue-green rollouts: service → the revision that takes the requests.
    pub actives: BTreeMap<ServiceKey, u64>,
}

/// Whether an instance may take requests: its container runs and its
/// checks pass (an instance with no check at all takes requests once
/// it runs).
pub fn ready(status: &WorkloadStatus) -> bool {
    status.state == WorkloadState::Running as i32
        && !status.container_id.is_empty()
        && matches!(
            Health::try_from(status.health),
            Ok(Health::Healthy | Health::Unspecified)
        )
}

/// The routes of every service with an ingress among `workloads` (the
/// plan's containers; the newest revision's routes where two revisions
/// run), and the instances of those services that are not draining: the
/// ready ones the statuses name, and the `outdated` containers that still
/// serve until the reconciler replaces them.
pub fn wanted(
    workloads: &[Workload],
    statuses: &BTreeMap<String, WorkloadStatus>,
    outdated: &[Outdated],
    draining: &HashSet<String>,
) -> Wanted {
    // Per service: the workload whose ingress counts (highest revision).
    let mut newest: BTreeMap<ServiceKey, &Workload> = BTreeMap::new();
    for w in workloads {
        let key = ServiceKey {
            env: w.env.clone(),
            service: w.service.clone(),
        };
        match newest.get(&key) {
            Some(n) if n.revision >= w.revision => {}
            _ => {
                newest.insert(key, w);
            }
        }
    }
    let mut out = Wanted::default();
    let mut drain_of: HashMap<ServiceKey, Duration> = HashMap::new();
    for (key, w) in &newest {
        let Some(ingress) = &w.ingress else { continue };
        drain_of.insert(key.clone(), Duration::from_millis(ingress.drain_timeout_ms));
        if ingress.canary_revision != 0 && (1..=99).contains(&ingress.canary_weight_percent) {
            out.splits.insert(
                key.clone(),
                (ingress.canary_revision, ingress.canary_weight_percent),
            );
        }
        if ingress.active_revision != 0 {
            out.actives.insert(key.clone(), ingress.active_revision);
        }
        for r in &ingress.routes {
            let Ok(port) = u16::try_from(r.port) else {
                continue;
            };
            if port == 0 {
                continue;
            }
            let route = Route {
                host: HostMatch::parse(&r.host),
                path_prefix: if r.path_prefix.is_empty() {
                    "/".to_string()
                } else {
                    r.path_prefix.clone()
                },
                service: key.clone(),
                port,
            };
            if let Some(taken) = out
                .routes
                .iter()
                .find(|t| t.host == route.host && t.path_prefix == route.path_prefix)
            {
                out.conflicts.push(format!(
                    "host `{}` path `{}` of `{}` is already `{}`'s",
                    route.host, route.path_prefix, route.service, taken.service
                ));
                continue;
            }
            out.routes.push(route);
        }
    }
    for w in workloads {
        let key = ServiceKey {
            env: w.env.clone(),
            service: w.service.clone(),
        };
        let Some(drain_timeout) = drain_of.get(&key) else {
            continue;
        };
        let Some(status) = statuses.get(&w.id).filter(|s| ready(s)) else {
            continue;
        };
        if draining.contains(&status.container_id) {
            continue;
        }
        out.candidates.push(Candidate {
            service: key,
            container_id: status.container_id.clone(),
            workload_id: w.id.clone(),
            revision: status.revision,
            drain_timeout: *drain_timeout,
        });
    }
    for o in outdated {
        let Some(w) = workloads.iter().find(|w| w.id == o.workload_id) else {
            continue;
        };
        let key = ServiceKey {
            env: w.env.clone(),
            service: w.service.clone(),
        };
        let Some(drain_timeout) = drain_of.get(&key) else {
            continue;
        };
        if draining.contains(&o.container_id)
            || out
                .candidates
                .iter()
                .any(|c| c.container_id == o.container_id)
        {
            continue;
        }
        out.candidates.push(Candidate {
            service: key,
            container_id: o.container_id.clone(),
            workload_id: o.workload_id.clone(),
            revision: o.revision,
            drain_timeout: *drain_timeout,
        });
    }
    out
}

/// The shared state of the proxy: the table requests read, in-flight
/// counts, and the containers being drained.
#[derive(Debug, Default)]
pub struct Pools {
    table: RwLock<Arc<Table>>,
    /// Per container that was ever in a pool and may still have requests.
    inflight: Mutex<HashMap<String, Arc<InFlight>>>,
    /// Per container: how long it may drain (from its service's ingress).
    drain_timeouts: Mutex<HashMap<String, Duration>>,
    /// Containers out of every pool until they are gone.
    draining: Mutex<HashSet<String>>,
    /// What the reconciler last said of outdated containers still serving.
    outdated: Mutex<Vec<Outdated>>,
    /// Poked when the table should be rebuilt (a drain began).
    pub(super) changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pools {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The table as it is now.
    pub fn table(&self) -> Arc<Table> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The reconciler's news: these outdated containers run and pass
    /// their checks (they stay in their pool until drained).
    pub fn set_outdated(&self, now: Vec<Outdated>) {
        let mut outdated = lock(&self.outdated);
        if *outdated != now {
            *outdated = now;
            drop(outdated);
            self.changed.notify_one();
        }
    }

    pub fn outdated(&self) -> Vec<Outdated> {
        lock(&self.outdated).clone()
    }

    /// Containers being drained, or drained and not gone yet.
    pub fn draining(&self) -> HashSet<String> {
        lock(&self.draining).clone()
    }

    /// Installs a new table from `wanted`, with the addresses in `ips`
    /// (candidates without one are left out until they have one).
    /// `present`: the containers that still exist; a drained container
    /// that is gone is forgotten.
    pub fn install(
        &self,
        wanted: &Wanted,
        ips: &HashMap<String, IpAddr>,
        present: &HashSet<String>,
    ) {
        let mut services: HashMap<ServiceKey, ServicePool> = HashMap::new();
        {
            let mut inflight = lock(&self.inflight);
            let mut timeouts = lock(&self.drain_timeouts);
            let draining = lock(&self.draining);
            for c in &wanted.candidates {
                if draining.contains(&c.container_id) {
                    continue;
                }
                let Some(ip) = ips.get(&c.container_id) else {
                    continue;
                };
                let counter = inflight.entry(c.container_id.clone()).or_default().clone();
                // Left out of an earlier table and back now.
                counter.closed.store(false, Ordering::SeqCst);
                timeouts.insert(c.container_id.clone(), c.drain_timeout);
                services
                    .entry(c.service.clone())
                    .or_default()
                    .backends
                    .push(Backend {
                        container_id: c.container_id.clone(),
                        workload_id: c.workload_id.clone(),
                        ip: *ip,
                        revision: c.revision,
                        inflight: counter,
                    });
            }
            // A container out of every pool: closed first, so a request
            // that read an older table cannot start on it unseen, then
            // forgotten once nothing is in flight (a drain of it returns
            // at once; one with requests still waits for them).
            for (id, f) in inflight.iter() {
                if !present.contains(id) {
                    f.closed.store(true, Ordering::SeqCst);
                }
            }
            let keep = |id: &String, f: &Arc<InFlight>| present.contains(id) || f.count() > 0;
            inflight.retain(|id, f| keep(id, f));
            timeouts.retain(|id, _| inflight.contains_key(id));
        }
        lock(&self.draining).retain(|id| present.contains(id));
        for (key, split) in &wanted.splits {
            if let Some(pool) = services.get_mut(key) {
                pool.split = Some(*split);
            }
        }
        for (key, active) in &wanted.actives {
            if let Some(pool) = services.get_mut(key) {
                pool.active = Some(*active);
            }
        }
        let table = Table {
            routes: RouteTable::new(wanted.routes.clone()),
            services,
        };
        *self
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table);
    }

    /// An instance of `service` for one request, and its in-flight
    /// guard: the one with the fewest requests in flight, instances with
    /// equal counts in turn; never one in `tried`.
    pub fn pick(&self, service: &ServiceKey, tried: &[String]) -> Option<(Backend, InFlightGuard)> {
        let table = self.table();
        let pool = table.services.get(service)?;
        let n = pool.backends.len();
        if n == 0 {
            return None;
        }
        let start = pool.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut order: Vec<&Backend> = (0..n)
            .map(|i| &pool.backends[(start + i) % n])
            .filter(|b| !tried.contains(&b.container_id))
            .collect();
        // A blue-green rollout: every request to the active set (the
        // other set takes them only where the active one has none here).
        if let Some(active) = pool.active {
            let side: Vec<&Backend> = order
                .iter()
                .copied()
                .filter(|b| b.revision == active)
                .collect();
            if !side.is_empty() {
                order = side;
            }
        }
        // A weighted canary: its share of requests goes to its revision's
        // instances, the rest to the others, whatever their numbers; a
        // side with no instance ready leaves everything to the other.
        if let Some((revision, percent)) = pool.split {
            let canary = rand::random_range(0..100u32) < percent;
            let side: Vec<&Backend> = order
                .iter()
                .copied()
                .filter(|b| (b.revision == revision) == canary)
                .collect();
            if !side.is_empty() {
                order = side;
            }
        }
        // Stable: equal loads keep the turn order.
        order.sort_by_key(|b| b.inflight.count());
        order
            .into_iter()
            .find_map(|b| b.inflight.acquire().map(|g| (b.clone(), g)))
    }

    /// Takes the container out of every pool (no new request reaches it)
    /// and waits until its requests in flight are done, at most its
    /// service's `drain_timeout`. Returns at once for a container that
    /// was never in a pool. Returns what was still in flight at the end.
    pub async fn drain(&self, container_id: &str) -> usize {
        let counter = lock(&self.inflight).get(container_id).cloned();
        let Some(counter) = counter else {
            return 0;
        };
        let timeout = lock(&self.drain_timeouts)
            .get(container_id)
            .copied()
            .unwrap_or(DEFAULT_DRAIN);
        lock(&self.draining).insert(container_id.to_string());
        // Out of the table now, not at the next rebuild.
        {
            let mut table = self
                .table
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let services = table
                .services
                .iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        ServicePool {
                            backends: p
                                .backends
                                .iter()
                                .filter(|b| b.container_id != container_id)
                                .cloned()
                                .collect(),
                            cursor: AtomicUsize::new(p.cursor.load(Ordering::Relaxed)),
                            split: p.split,
                            active: p.active,
                        },
                    )
                })
                .collect();
            *table = Arc::new(Table {
                routes: table.routes.clone(),
                services,
            });
        }
        counter.closed.store(true, Ordering::SeqCst);
        self.changed.notify_one();
        let started = Instant::now();
        let deadline = started + timeout;
        let mut left = counter.count();
        while left > 0 && Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL.min(deadline.saturating_duration_since(Instant::now())))
                .await;
            left = counter.count();
        }
        let short = &container_id[..container_id.len().min(12)];
        if left == 0 {
            info!(
                container = short,
                took_ms = started.elapsed().as_millis() as u64,
                "drained from the proxy"
            );
        } else {
            info!(
                container = short,
                in_flight = left,
                "drain timeout of {timeout:?} reached with requests in flight; stopping anyway"
            );
        }
        left
    }
}

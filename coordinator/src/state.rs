//! The coordinator's state. Desired state (services, revisions, placement,
//! node plans) is durable in the store and changed only under one async lock,
//! store first, memory second. Live state (agent sessions, reported workload
//! status, heartbeats) is memory only: agents resend a full snapshot after
//! every reconnect, so a restart loses nothing.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use convoy_proto as pb;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    events::{Ev, EventBus},
    metrics::Metrics,
    placement::{self, Assignments, Candidate},
    rollout::{self, Effect, InstanceView, Rollout, RolloutState},
    spec::{self, ServiceSpec},
    store::{self, Op, Store, StoreError},
    tls::Revoked,
};

mod rollouts;
pub use rollouts::RolloutCommand;

/// The environment of services whose spec names none.
pub use convoy_api::env::DEFAULT_ENV;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("service `{service}` not found in environment `{env}`")]
    ServiceNotFound { service: String, env: String },
    #[error("node `{0}` not found")]
    NodeNotFound(String),
    #[error("the certificate of node `{0}` is revoked")]
    Revoked(String),
    /// A rollout blocks the request (in progress, nothing to promote, ...).
    #[error("{0}")]
    Rollout(String),
    #[error("{0}")]
    Invalid(String),
}

/// A service's current state, stored at `services/ENV/NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub env: String,
    pub name: String,
    /// The current (latest) revision.
    pub revision: u64,
    pub spec: ServiceSpec,
    /// Deleted services keep their record so revision numbers never repeat.
    pub deleted: bool,
    pub assignments: Assignments,
    pub created_unix_ms: i64,
    pub updated_unix_ms: i64,
    /// The current or last rollout; while active, instances it has not
    /// switched yet run its `from_spec`.
    #[serde(default)]
    pub rollout: Option<Rollout>,
}

/// A revision, stored at `revisions/ENV/NAME/REV`; only its outcome changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub revision: u64,
    pub spec: ServiceSpec,
    pub created_unix_ms: i64,
    pub created_by: String,
    pub source: String,
    /// "", "succeeded", "failed: REASON", "rolled back", "superseded".
    #[serde(default)]
    pub outcome: String,
}

/// What the coordinator remembers of a node, stored at `nodes/NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub facts: Facts,
    pub agent_version: String,
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    /// Fingerprints (hex SHA-256) of the certificates the node connected
    /// with, newest last: what `node remove` revokes.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// When the node was removed (0: it was not). A removed node comes back
    /// only with a new certificate.
    #[serde(default)]
    pub removed_unix_ms: i64,
    /// Expiry of the newest certificate the node connected or renewed with.
    #[serde(default)]
    pub certificate_expires_unix_ms: i64,
}

/// A revoked certificate, stored at `revoked/FINGERPRINT`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedRecord {
    pub fingerprint: String,
    pub node: String,
    pub revoked_unix_ms: i64,
}

/// A node enrolled with a join token, stored at `enrolled/NODE`. The
/// token's labels are the node's, whatever its agent reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollRecord {
    pub node: String,
    pub token_id: String,
    pub labels: BTreeMap<String, String>,
    pub enrolled_unix_ms: i64,
}

/// How many certificate fingerprints a node record keeps.
const CERTIFICATES_KEPT: usize = 8;

/// Host facts reported in Hello (domain copy of `pb::NodeFacts`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub docker_version: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub platform_os: String,
}

impl From<pb::NodeFacts> for Facts {
    fn from(f: pb::NodeFacts) -> Self {
        let pb::NodeFacts {
            hostname,
            os,
            kernel,
            arch,
            cpus,
            memory_bytes,
            docker_version,
            labels,
            platform_os,
        } = f;
        Self {
            hostname,
            os,
            kernel,
            arch,
            cpus,
            memory_bytes,
            docker_version,
            labels: labels.into_iter().collect(),
            platform_os,
        }
    }
}

impl From<&Facts> for pb::NodeFacts {
    fn from(f: &Facts) -> Self {
        pb::NodeFacts {
            hostname: f.hostname.clone(),
            os: f.os.clone(),
            kernel: f.kernel.clone(),
            arch: f.arch.clone(),
            cpus: f.cpus,
            memory_bytes: f.memory_bytes,
            docker_version: f.docker_version.clone(),
            labels: f.labels.clone().into_iter().collect(),
            platform_os: f.platform_os.clone(),
        }
    }
}

/// A node's plan bookkeeping, in memory. (Until 2026-11 it was stored at
/// `plans/NODE`, one write per node per change; such records are read once
/// for their generations and removed.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub generation: u64,
    pub hash: String,
}

/// Where the highest plan generation handed out is stored. Every plan
/// change takes the next one, so a node's generations only grow, across
/// restarts too, with one store write per change however many nodes it
/// touches.
const PLAN_GENERATION_KEY: &str = "meta/plan-generation";

/// Desired state. Changes are made on a copy that replaces the original
/// once stored, so copying must be cheap at 10,000 nodes: the per-node maps
/// and each service record are shared (`Arc`) and copied on write.
#[derive(Debug, Clone, Default)]
struct Desired {
    services: BTreeMap<(String, String), Arc<ServiceRecord>>,
    nodes: Arc<BTreeMap<String, NodeRecord>>,
    plans: Arc<BTreeMap<String, PlanRecord>>,
    /// The highest generation handed out (see [`PLAN_GENERATION_KEY`]).
    plan_generation: u64,
    enrolled: Arc<BTreeMap<String, EnrollRecord>>,
}

struct SessionInfo {
    conn_id: u64,
    connected_since_unix_ms: i64,
    address: String,
    cancel: CancellationToken,
    /// Commands for the agent (answered by an Ack with the command's id).
    /// Boxed: the queue's first block of slots is allocated per session.
    commands: mpsc::Sender<Box<pb::CoordinatorMessage>>,
}

/// Commands a session may have queued before new ones are refused.
const COMMAND_QUEUE: usize = 64;

#[derive(Default)]
struct NodeLive {
    session: Option<SessionInfo>,
    /// The stream is open but heartbeats stopped (a frozen or cut-off host).
    silent: bool,
    /// When the agent was last heard from (any message; heartbeats fill silences).
    last_heartbeat_unix_ms: i64,
    metrics: Option<pb::HostMetrics>,
    acked_generation: u64,
    workloads: HashMap<String, pb::WorkloadStatus>,
    history: VecDeque<Sample>,
}

/// A history point as kept in memory (16 bytes; the node's total memory is
/// its latest heartbeat's).
#[derive(Debug, Clone, Copy)]
struct Sample {
    unix_ms: i64,
    cpu_percent: f32,
    memory_used_kib: u32,
}

impl NodeLive {
    /// Connected and heard from recently.
    fn ready(&self) -> bool {
        self.session.is_some() && !self.silent
    }
}

/// How agents prove they are alive: the heartbeat interval they are told to
/// use, and the silence after which a node is marked lost.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub heartbeat: Duration,
    pub lost_after: Duration,
}

impl Liveness {
    /// Three heartbeats fit in the window, so one late beat is no loss.
    pub fn from_lost_after(lost_after: Duration) -> Self {
        Self {
            heartbeat: (lost_after / 3).max(Duration::from_millis(100)),
            lost_after,
        }
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Self::from_lost_after(Duration::from_millis(2500))
    }
}

#[derive(Default)]
struct Live {
    nodes: HashMap<String, NodeLive>,
    /// Latest plan per node; sessions forward changes (latest wins, in order).
    plans: HashMap<String, watch::Sender<Option<Arc<pb::NodePlan>>>>,
}

/// An agent session waiting to be registered (see [`Coordinator::register`]).
struct Registration {
    node: String,
    certificate: String,
    certificate_expires_unix_ms: i64,
    hello: pb::Hello,
    address: Option<SocketAddr>,
    reply: oneshot::Sender<Result<SessionHandle, StateError>>,
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

pub struct Coordinator {
    store: Arc<dyn Store>,
    desired: tokio::sync::Mutex<Desired>,
    live: Mutex<Live>,
    registering: Mutex<Vec<Registration>>,
    next_conn: AtomicU64,
    pub heartbeat_interval: Duration,
    lost_after: Duration,
    shutdown: CancellationToken,
    revoked: Revoked,
    events: EventBus,
    metrics: Metrics,
    /// Commands sent to agents, waiting for their Ack.
    /// Keyed by (node, command id): a node answers only its own commands.
    pending: Mutex<HashMap<(String, String), oneshot::Sender<pb::Ack>>>,
    next_command: AtomicU64,
    /// Woken when agents report status, so rollouts step at once.
    pub status_changed: tokio::sync::Notify,
}

/// One point of a node's CPU / memory history (dashboard sparklines).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MetricSample {
    pub unix_ms: i64,
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
}

/// Samples kept per node, at least a second apart: two minutes or more.
pub const HISTORY: usize = 120;

/// The least time between two history samples of a node.
const HISTORY_STEP_MS: i64 = 1000;

pub use convoy_api::clock::now_unix_ms;

fn service_key(env: &str, name: &str) -> String {
    format!("services/{env}/{name}")
}

fn revision_key(env: &str, name: &str, rev: u64) -> String {
    format!("revisions/{env}/{name}/{rev:020}")
}

/// Keeps only the last write of each key in a batch (a record staged and
/// then stepped in the same apply is serialized and written once).
fn last_write_wins(ops: &mut Vec<Op>) {
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

fn workload_id(env: &str, service: &str, index: u32) -> String {
    format!("{env}/{service}/{index}")
}

impl Coordinator {
    /// Loads desired state from the store and prepares every node's plan.
    pub async fn load(
        store: Arc<dyn Store>,
        liveness: Liveness,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, StateError> {
        let mut desired = Desired::default();
        for (_, rec) in store::scan_json::<ServiceRecord>(&*store, "services/").await? {
            desired
                .services
                .insert((rec.env.clone(), rec.name.clone()), Arc::new(rec));
        }
        for (_, rec) in store::scan_json::<NodeRecord>(&*store, "nodes/").await? {
            Arc::make_mut(&mut desired.nodes).insert(rec.name.clone(), rec);
        }
        let mut ops = Vec::new();
        desired.plan_generation = store::get_json::<u64>(&*store, PLAN_GENERATION_KEY)
            .await?
            .unwrap_or(0);
        for (key, rec) in store::scan_json::<PlanRecord>(&*store, "plans/").await? {
            desired.plan_generation = desired.plan_generation.max(rec.generation);
            ops.push(Op::Delete(key));
        }
        for (_, rec) in store::scan_json::<EnrollRecord>(&*store, "enrolled/").await? {
            Arc::make_mut(&mut desired.enrolled).insert(rec.node.clone(), rec);
        }
        let revoked: std::collections::HashSet<String> =
            store::scan_json::<RevokedRecord>(&*store, "revoked/")
                .await?
                .into_iter()
                .map(|(_, r)| r.fingerprint)
                .collect();
        let coord = Arc::new(Self {
            store,
            desired: tokio::sync::Mutex::new(Desired::default()),
            live: Mutex::new(Live::default()),
            registering: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(1),
            heartbeat_interval: liveness.heartbeat,
            lost_after: liveness.lost_after,
            shutdown,
            revoked: Arc::new(std::sync::RwLock::new(revoked)),
            events: EventBus::default(),
            metrics: Metrics::default(),
            pending: Mutex::new(HashMap::new()),
            next_command: AtomicU64::new(1),
            status_changed: tokio::sync::Notify::new(),
        });
        let updates = compute_plans(&mut desired, &mut ops, Publish::All);
        if !ops.is_empty() {
            coord.store.apply(ops).await?;
        }
        let mut guard = coord.desired.lock().await;
        *guard = desired;
        coord.publish(updates);
        drop(guard);
        Ok(coord)
    }

    /// The cluster event stream.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether the coordinator is serving (store loaded, not shutting down).
    pub fn ready(&self) -> bool {
        !self.shutdown.is_cancelled()
    }

    /// Each node's recent CPU / memory samples, oldest first.
    pub fn metrics_history(&self) -> BTreeMap<String, Vec<MetricSample>> {
        self.live()
            .nodes
            .iter()
            .map(|(n, l)| {
                let total = l.metrics.as_ref().map_or(0, |m| m.memory_total_bytes);
                let samples = l
                    .history
                    .iter()
                    .map(|s| MetricSample {
                        unix_ms: s.unix_ms,
                        cpu_percent: f64::from(s.cpu_percent),
                        memory_used_bytes: u64::from(s.memory_used_kib) * 1024,
                        memory_total_bytes: total,
                    })
                    .collect();
                (n.clone(), samples)
            })
            .collect()
    }

    /// The revoked certificate fingerprints, for the TLS verifier.
    pub fn revoked(&self) -> Revoked {
        self.revoked.clone()
    }

    fn is_revoked(&self, fingerprint: &str) -> bool {
        self.revoked
            .read()
            .map(|set| set.contains(fingerprint))
            .unwrap_or(true)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        // A panic while holding this lock would be a bug in a few lines of
        // bookkeeping; keep serving with the state as it is.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connected(&self) -> HashMap<String, bool> {
        self.live()
            .nodes
            .iter()
            .map(|(n, l)| (n.clone(), l.ready()))
            .collect()
    }

    fn publish(&self, updates: Vec<(String, Arc<pb::NodePlan>)>) {
        let mut replaced = Vec::with_capacity(updates.len());
        let mut live = self.live();
        for (node, plan) in updates {
            replaced.push(
                live.plans
                    .entry(node)
                    .or_insert_with(|| watch::channel(None).0)
                    .send_replace(Some(plan)),
            );
        }
        drop(live);
        // The old plans are freed outside the lock (10,000 at a time).
        drop(replaced);
    }

    /// Validates a spec file and, unless `dry_run`, stores a new revision of
    /// every service whose spec changed and hands the new plans to agents.
    pub async fn apply(
        &self,
        filename: &str,
        content: &str,
        dry_run: bool,
        who: &str,
    ) -> Result<pb::ApplyResponse, StateError> {
        self.apply_in(DEFAULT_ENV, filename, content, dry_run, who)
            .await
    }

    /// [`Self::apply`] into environment `env`.
    pub async fn apply_in(
        &self,
        env: &str,
        filename: &str,
        content: &str,
        dry_run: bool,
        who: &str,
    ) -> Result<pb::ApplyResponse, StateError> {
        let env = if env.is_empty() { DEFAULT_ENV } else { env };
        check_env_name(env)?;
        let started = std::time::Instant::now();
        let result = self.apply_inner(env, filename, content, dry_run, who).await;
        if !dry_run {
            self.metrics.observe_apply(started.elapsed().as_secs_f64());
        }
        let (response, first_steps) = result?;
        if !response.dry_run {
            for c in &response.services {
                self.emit_deployed(c, who);
            }
            for ev in first_steps {
                self.events.emit(ev);
            }
        }
        Ok(response)
    }

    fn emit_deployed(&self, c: &pb::ServiceChange, who: &str) {
        let action = pb::ChangeAction::try_from(c.action).unwrap_or_default();
        let placed = c
            .instances
            .iter()
            .filter(|i| i.action != pb::ChangeAction::Unchanged as i32)
            .count();
        let word = match action {
            pb::ChangeAction::Create => "created",
            pb::ChangeAction::Update => "updated",
            _ if placed > 0 => "rescaled",
            _ => return,
        };
        self.events.emit(
            Ev::new("service.deployed")
                .service(&c.env, &c.service)
                .msg(format!(
                    "{}/{} {word}: revision {} by {who} ({} instances, {placed} changing)",
                    c.env,
                    c.service,
                    c.revision,
                    c.instances
                        .iter()
                        .filter(|i| i.action != pb::ChangeAction::Remove as i32)
                        .count()
                ))
                .field("revision", c.revision)
                .field("previous_revision", c.previous_revision)
                .field("action", word)
                .field("by", who),
        );
        for i in &c.instances {
            let what = match pb::ChangeAction::try_from(i.action).unwrap_or_default() {
                pb::ChangeAction::Create => "placed",
                pb::ChangeAction::Replace => "replaced",
                pb::ChangeAction::Remove => "removed",
                pb::ChangeAction::Pending => "pending",
                _ => continue,
            };
            let on = if i.node.is_empty() {
                "no node matches yet".to_string()
            } else {
                format!("node {}", i.node)
            };
            self.events.emit(
                Ev::new("instance.placed")
                    .instance(&i.instance_id)
                    .node(&i.node)
                    .msg(format!("{} {what}: {on}", i.instance_id))
                    .field("action", what)
                    .field("revision", c.revision),
            );
        }
    }

    async fn apply_inner(
        &self,
        env: &str,
        filename: &str,
        content: &str,
        dry_run: bool,
        who: &str,
    ) -> Result<(pb::ApplyResponse, Vec<Ev>), StateError> {
        let file = spec::parse(filename, content)?;
        let now = now_unix_ms();
        let mut desired = self.desired.lock().await;
        let started = std::time::Instant::now();
        let mut next = desired.clone();
        let nodes = node_views(&next, &self.connected());
        let candidates = candidates(&nodes);
        let mut ops = Vec::new();
        let mut changes = Vec::new();
        let mut superseded = Vec::new();
        for (name, new_spec) in file.services {
            let (change, gone) = stage_service(
                &mut next,
                &candidates,
                Staged {
                    env,
                    name: &name,
                    spec: new_spec,
                    who,
                    source: filename,
                    now,
                },
                &mut ops,
            )?;
            if let Some(rev) = gone {
                superseded.push((name.clone(), rev, change.revision));
            }
            changes.push(change);
        }
        let response = pb::ApplyResponse {
            services: changes,
            warnings: file.warnings,
            dry_run,
        };
        if dry_run {
            return Ok((response, Vec::new()));
        }
        for (name, rev, by) in &superseded {
            self.set_outcome(&mut ops, env, name, *rev, &format!("superseded by r{by}"))
                .await;
        }
        // The first step of each rollout this apply starts (all instances
        // at once by default) goes out with it: one copy of desired state,
        // one plan computation and one store write, not two of each.
        let mut first_steps = Vec::new();
        for change in &response.services {
            let key = (env.to_string(), change.service.clone());
            let Some(current) = next.services.get(&key).filter(|r| {
                r.rollout.as_ref().is_some_and(|ro| {
                    ro.state == RolloutState::Running
                        && ro.to_revision == r.revision
                        && ro.switched.is_empty()
                })
            }) else {
                continue;
            };
            let mut replan = false;
            if let Some(rec) = self
                .step_service(current, now, &mut ops, &mut first_steps, &mut replan)
                .await
            {
                next.services.insert(key, Arc::new(rec));
            }
        }
        last_write_wins(&mut ops);
        let staged = started.elapsed();
        let updates = compute_plans(&mut next, &mut ops, Publish::Changed);
        let planned = started.elapsed();
        let writes = ops.len();
        if !ops.is_empty() {
            self.store.apply(ops).await?;
        }
        *desired = next;
        drop(desired);
        tracing::debug!(
            plans = updates.len(),
            writes,
            stage_ms = staged.as_secs_f64() * 1e3,
            plan_ms = (planned - staged).as_secs_f64() * 1e3,
            store_ms = (started.elapsed() - planned).as_secs_f64() * 1e3,
            "apply stored"
        );
        self.publish(updates);
        for (name, rev, by) in superseded {
            self.emit_superseded(env, &name, rev, by);
        }
        Ok((response, first_steps))
    }

    /// The rollout to `rev` gave way to `by`; `apply --wait` of `rev` ends.
    fn emit_superseded(&self, env: &str, name: &str, rev: u64, by: u64) {
        self.events.emit(
            Ev::new("rollout.failed")
                .service(env, name)
                .field("revision", rev)
                .field("state", "superseded")
                .field("reason", format!("superseded by r{by}"))
                .msg(format!(
                    "{env}/{name}: the rollout to r{rev} is superseded by r{by}"
                )),
        );
    }

    /// Removes every instance of a service; its revisions stay in history.
    pub async fn delete(&self, service: &str, env: &str) -> Result<pb::DeleteResponse, StateError> {
        let env = if env.is_empty() { DEFAULT_ENV } else { env };
        let mut desired = self.desired.lock().await;
        let key = (env.to_string(), service.to_string());
        let Some(rec) = desired.services.get(&key).filter(|r| !r.deleted) else {
            return Err(StateError::ServiceNotFound {
                service: service.to_string(),
                env: env.to_string(),
            });
        };
        let removed = rec.assignments.len() as u32;
        let last_revision = rec.revision;
        let mut next = desired.clone();
        if let Some(rec) = next.services.get_mut(&key) {
            let rec = Arc::make_mut(rec);
            rec.deleted = true;
            rec.assignments.clear();
            rec.updated_unix_ms = now_unix_ms();
        }
        let mut ops = vec![Op::put_json(
            service_key(env, service),
            &next.services[&key],
        )];
        let updates = compute_plans(&mut next, &mut ops, Publish::Changed);
        self.store.apply(ops).await?;
        *desired = next;
        self.publish(updates);
        self.events.emit(
            Ev::new("service.deleted")
                .service(env, service)
                .msg(format!(
                    "{env}/{service} deleted ({removed} instances removed)"
                ))
                .field("revision", last_revision),
        );
        Ok(pb::DeleteResponse {
            removed_instances: removed,
            last_revision,
        })
    }

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
        hello: pb::Hello,
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
                mut desired = self.desired.lock() => {
                    let batch = std::mem::take(
                        &mut *self.registering.lock().unwrap_or_else(|p| p.into_inner()),
                    );
                    if !batch.is_empty() {
                        self.register_batch(&mut desired, batch).await;
                    }
                }
            }
        }
    }

    async fn register_batch(&self, desired: &mut Desired, batch: Vec<Registration>) {
        let started = std::time::Instant::now();
        let sessions = batch.len();
        let now = now_unix_ms();
        // The batch's node records, staged beside desired state (which is
        // only cloned when placement or plans may change, below).
        let mut staged: BTreeMap<String, NodeRecord> = BTreeMap::new();
        let mut ops = Vec::new();
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
            let pb::Hello {
                facts,
                agent_version,
                last_applied_generation: _,
            } = hello;
            let mut facts: Facts = facts.unwrap_or_default().into();
            if let Some(e) = desired.enrolled.get(&node) {
                facts
                    .labels
                    .extend(e.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let old = staged.get(&node).or_else(|| desired.nodes.get(&node));
            let first_time = old.is_none();
            let mut record = match old {
                Some(old) => NodeRecord {
                    facts,
                    agent_version,
                    last_seen_unix_ms: now,
                    removed_unix_ms: 0,
                    ..old.clone()
                },
                None => NodeRecord {
                    name: node.to_string(),
                    facts,
                    agent_version,
                    first_seen_unix_ms: now,
                    last_seen_unix_ms: now,
                    certificates: Vec::new(),
                    removed_unix_ms: 0,
                    certificate_expires_unix_ms: 0,
                },
            };
            record.certificate_expires_unix_ms = certificate_expires_unix_ms;
            remember_certificate(&mut record, &certificate);
            ops.push(Op::put_json(format!("nodes/{node}"), &record));
            staged.insert(node.to_string(), record);

            let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
            let cancel = self.shutdown.child_token();
            let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
            let address = address.map(|a| a.to_string()).unwrap_or_default();
            let (previous, was_ready) = {
                let mut live = self.live();
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
                self.events.emit(
                    Ev::new("node.joined")
                        .node(&node)
                        .msg(format!("node {node} joined from {address}"))
                        .field("address", &address),
                );
            } else if !was_ready {
                self.events.emit(
                    Ev::new("node.ready")
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

        // Instances waiting for a node, and global services, may land here.
        let staged_at = started.elapsed();
        // Instances waiting for a node, and global services, may land on
        // these nodes; nodes coming back as they were change nothing (the
        // usual case in a reconnect storm), so placement and plans, O(all
        // nodes), are skipped for them.
        let next = if may_place(desired, &staged) {
            let mut next = desired.clone();
            Arc::make_mut(&mut next.nodes).extend(staged);
            let connected = self.connected();
            replace_all(&mut next, &connected, &mut ops);
            let updates = compute_plans(&mut next, &mut ops, Publish::Changed);
            Registered::Replanned(Box::new(next), updates)
        } else {
            // Nothing can be placed on them: nodes new to the coordinator
            // get an empty plan under one fresh generation.
            let mut plans = Vec::new();
            let fresh = desired.plan_generation + 1;
            for node in staged.keys().filter(|n| !desired.plans.contains_key(*n)) {
                let record = PlanRecord {
                    generation: fresh,
                    hash: plan_hash(&[]),
                };
                plans.push((node.clone(), record));
            }
            if !plans.is_empty() {
                ops.push(Op::put_json(PLAN_GENERATION_KEY, &fresh));
            }
            Registered::Nodes(staged, plans)
        };
        let planned = started.elapsed();
        let writes = ops.len();
        if let Err(e) = self.store.apply(ops).await {
            let e = Arc::new(e);
            for (node, conn_id, _, _, reply) in done {
                self.disconnect(&node, conn_id);
                let _ = reply.send(Err(StoreError::Shared(e.clone()).into()));
            }
            return;
        }
        let updates = match next {
            Registered::Replanned(next, updates) => {
                *desired = *next;
                updates
            }
            Registered::Nodes(staged, plans) => {
                Arc::make_mut(&mut desired.nodes).extend(staged);
                let mut updates = Vec::with_capacity(plans.len());
                for (node, record) in plans {
                    desired.plan_generation = record.generation;
                    let plan = pb::NodePlan {
                        generation: record.generation,
                        workloads: Vec::new(),
                    };
                    updates.push((node.clone(), Arc::new(plan)));
                    Arc::make_mut(&mut desired.plans).insert(node, record);
                }
                updates
            }
        };
        tracing::debug!(
            sessions,
            plans = updates.len(),
            writes,
            stage_ms = staged_at.as_secs_f64() * 1e3,
            plan_ms = (planned - staged_at).as_secs_f64() * 1e3,
            store_ms = (started.elapsed() - planned).as_secs_f64() * 1e3,
            "registrations stored"
        );
        self.publish(updates);
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
        let mut desired = self.desired.lock().await;
        let Some(mut record) = desired.nodes.get(node).cloned() else {
            return Err(StateError::NodeNotFound(node.to_string()));
        };
        if record.removed_unix_ms != 0 {
            return Err(StateError::Revoked(node.to_string()));
        }
        remember_certificate(&mut record, certificate);
        record.certificate_expires_unix_ms = expires_unix_ms;
        self.store
            .apply(vec![Op::put_json(format!("nodes/{node}"), &record)])
            .await?;
        Arc::make_mut(&mut desired.nodes).insert(node.to_string(), record);
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
        let mut desired = self.desired.lock().await;
        let rec = EnrollRecord {
            node: node.to_string(),
            token_id: token_id.to_string(),
            labels: labels.clone(),
            enrolled_unix_ms: now_unix_ms(),
        };
        self.store
            .apply(vec![Op::put_json(format!("enrolled/{node}"), &rec)])
            .await?;
        Arc::make_mut(&mut desired.enrolled).insert(node.to_string(), rec);
        Ok(())
    }

    /// Revokes every certificate the node connected with, ends its stream at
    /// once and marks its instances lost. The node may come back only with a
    /// new certificate.
    pub async fn remove_node(&self, node: &str) -> Result<pb::RemoveNodeResponse, StateError> {
        let mut desired = self.desired.lock().await;
        let Some(record) = desired.nodes.get(node).cloned() else {
            return Err(StateError::NodeNotFound(node.to_string()));
        };
        let now = now_unix_ms();
        let mut ops = Vec::new();
        for fp in &record.certificates {
            ops.push(Op::put_json(
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
        ops.push(Op::put_json(format!("nodes/{node}"), &updated));
        self.store.apply(ops).await?;
        Arc::make_mut(&mut desired.nodes).insert(node.to_string(), updated);
        if let Ok(mut set) = self.revoked.write() {
            set.extend(record.certificates.iter().cloned());
        }
        let lost = desired
            .services
            .values()
            .filter(|r| !r.deleted)
            .flat_map(|r| r.assignments.values())
            .filter(|n| n.as_deref() == Some(node))
            .count() as u32;
        let session = {
            let mut live = self.live();
            live.nodes.remove(node).and_then(|n| n.session)
        };
        if let Some(s) = session {
            s.cancel.cancel();
        }
        self.events.emit(
            Ev::new("node.removed")
                .node(node)
                .msg(format!(
                    "node {node} removed: {} certificates revoked, {lost} instances lost",
                    record.certificates.len()
                ))
                .field("lost_instances", lost),
        );
        tracing::warn!(
            node,
            certificates = record.certificates.len(),
            lost,
            "node removed; its certificates are revoked"
        );
        Ok(pb::RemoveNodeResponse {
            lost_instances: lost,
            revoked_certificates: record.certificates.len() as u32,
        })
    }

    /// Marks lost every connected node whose heartbeats stopped for longer
    /// than the lost-after window (its stream may still look open: a frozen
    /// process or a cut cable sends no FIN). Called every few hundred ms.
    pub fn sweep(&self, now_unix_ms: i64) {
        let limit = self.lost_after.as_millis() as i64;
        let mut live = self.live();
        for (node, n) in live.nodes.iter_mut() {
            let silent_for = now_unix_ms - n.last_heartbeat_unix_ms;
            if n.session.is_some() && !n.silent && silent_for > limit {
                n.silent = true;
                tracing::warn!(node = %node, silent_for_ms = silent_for, "node lost: no heartbeat");
                self.events.emit(
                    Ev::new("node.lost")
                        .node(node)
                        .msg(format!(
                            "node {node} lost: no heartbeat for {} ms",
                            silent_for
                        ))
                        .field("reason", "heartbeat")
                        .field("silent_for_ms", silent_for),
                );
            }
        }
    }

    /// Forgets a session, unless a newer one of the same node replaced it.
    pub fn disconnect(&self, node: &str, conn_id: u64) {
        let mut live = self.live();
        if let Some(n) = live.nodes.get_mut(node) {
            if n.session.as_ref().is_some_and(|s| s.conn_id == conn_id) {
                let was_ready = n.ready();
                n.session = None;
                tracing::info!(node, "agent disconnected");
                if was_ready {
                    self.events.emit(
                        Ev::new("node.lost")
                            .node(node)
                            .msg(format!("node {node} lost: its stream closed"))
                            .field("reason", "disconnected"),
                    );
                }
            }
        }
    }

    /// Takes one message from an agent's stream.
    pub fn handle(&self, node: &str, conn_id: u64, msg: pb::AgentMessage) {
        use pb::agent_message::Msg;
        // Events are built under the lock and sent after it.
        let mut out = Vec::new();
        let mut guard = self.live();
        let Live { nodes, plans } = &mut *guard;
        let Some(n) = nodes.get_mut(node) else {
            return;
        };
        if n.session.as_ref().is_none_or(|s| s.conn_id != conn_id) {
            return; // a replaced session's late message
        }
        // Any message shows the agent alive: agents send a heartbeat only
        // after an interval in which they sent nothing else.
        if n.silent {
            n.silent = false;
            tracing::info!(node, "node ready again: heartbeats resumed");
            out.push(
                Ev::new("node.ready")
                    .node(node)
                    .msg(format!("node {node} ready again: heartbeats resumed"))
                    .field("reason", "heartbeat"),
            );
        }
        n.last_heartbeat_unix_ms = now_unix_ms();
        match msg.msg {
            Some(Msg::Heartbeat(hb)) => {
                if let Some(m) = &hb.metrics {
                    let due = n.history.back().is_none_or(|s| {
                        n.last_heartbeat_unix_ms - s.unix_ms >= HISTORY_STEP_MS - 50
                    });
                    if due {
                        if n.history.len() == HISTORY {
                            n.history.pop_front();
                        }
                        n.history.push_back(Sample {
                            unix_ms: n.last_heartbeat_unix_ms,
                            cpu_percent: m.cpu_percent as f32,
                            memory_used_kib: u32::try_from(m.memory_used_bytes / 1024)
                                .unwrap_or(u32::MAX),
                        });
                    }
                }
                n.metrics = hb.metrics;
            }
            Some(Msg::Ack(ack)) => match ack.target.clone() {
                Some(pb::ack::Target::PlanGeneration(g)) => {
                    if ack.ok {
                        n.acked_generation = g;
                    } else {
                        tracing::warn!(node, generation = g, error = %ack.error, "agent rejected a plan");
                    }
                }
                Some(pb::ack::Target::CommandId(id)) => {
                    tracing::debug!(node, command = %id, ok = ack.ok, "command acknowledged");
                    let waiter = self
                        .pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&(node.to_string(), id));
                    if let Some(w) = waiter {
                        let _ = w.send(ack);
                    }
                }
                None => {}
            },
            Some(Msg::Status(report)) => {
                let mut previous = if report.full_snapshot {
                    std::mem::take(&mut n.workloads)
                } else {
                    HashMap::new()
                };
                for id in report.removed {
                    if n.workloads.remove(&id).is_some() {
                        Self::emit_removed(&mut out, node, &id);
                    }
                }
                // Events only for the node's own instances: what it reports
                // of others is stored but never shown (see `status`).
                let plan = plans.get(node).and_then(|p| p.borrow().clone());
                let planned = |id: &str| {
                    plan.as_ref()
                        .is_some_and(|p| p.workloads.iter().any(|w| w.id == id))
                };
                for w in report.workloads {
                    let prev = previous.remove(&w.id).or_else(|| n.workloads.remove(&w.id));
                    if prev.is_some() || planned(&w.id) {
                        Self::emit_changes(&mut out, node, prev.as_ref(), &w);
                    }
                    n.workloads.insert(w.id.clone(), w);
                }
                for id in previous.keys() {
                    Self::emit_removed(&mut out, node, id);
                }
                self.status_changed.notify_one();
            }
            Some(Msg::Event(ev)) => {
                tracing::info!(node, workload = %ev.workload_id, kind = %ev.kind, "{}", ev.message);
                // Health transitions come with the status report (with the
                // probe's output); the rest are forwarded as they are.
                if !matches!(ev.kind.as_str(), "healthy" | "unhealthy") {
                    self.events.emit(
                        Ev::new(&format!("instance.{}", ev.kind))
                            .instance(&ev.workload_id)
                            .node(node)
                            .msg(format!("{}: {}", ev.workload_id, ev.message)),
                    );
                }
            }
            Some(Msg::Pong(_)) => {
                // Timed by the session itself.
            }
            Some(Msg::Renew(_)) => {
                // Answered by the session itself (it needs the CA).
            }
            Some(Msg::Hello(_)) => {
                tracing::warn!(node, "ignoring a second Hello on one stream");
            }
            None => {}
        }
        drop(guard);
        for ev in out {
            self.events.emit(ev);
        }
    }

    fn emit_removed(out: &mut Vec<Ev>, node: &str, id: &str) {
        out.push(
            Ev::new("instance.state")
                .instance(id)
                .node(node)
                .msg(format!("{id} on {node}: removed"))
                .field("state", "removed"),
        );
    }

    /// Instance state and health transitions, from one status report.
    fn emit_changes(
        out: &mut Vec<Ev>,
        node: &str,
        prev: Option<&pb::WorkloadStatus>,
        w: &pb::WorkloadStatus,
    ) {
        let state = crate::metrics::workload_state(w.state);
        if prev.is_none_or(|p| p.state != w.state || p.spec_hash != w.spec_hash) {
            let previous = prev.map(|p| crate::metrics::workload_state(p.state));
            let mut ev = Ev::new("instance.state")
                .instance(&w.id)
                .node(node)
                .msg(if w.reason.is_empty() {
                    format!("{} on {node}: {state} (revision {})", w.id, w.revision)
                } else {
                    format!(
                        "{} on {node}: {state} (revision {}): {}",
                        w.id, w.revision, w.reason
                    )
                })
                .field("state", state)
                .field("revision", w.revision);
            if let Some(p) = previous {
                ev = ev.field("previous", p);
            }
            if !w.reason.is_empty() {
                ev = ev.field("reason", &w.reason);
            }
            out.push(ev);
        }
        let health = crate::metrics::health(w.health);
        let prev_health = prev.map(|p| p.health).unwrap_or_default();
        if prev_health != w.health {
            let mut ev = Ev::new("instance.health")
                .instance(&w.id)
                .node(node)
                .field("health", health)
                .field("previous", crate::metrics::health(prev_health));
            let message = if w.health == pb::Health::Unhealthy as i32 {
                ev = ev
                    .field("probe", &w.failing_probe)
                    .field("output", &w.health_output);
                format!(
                    "{} on {node}: unhealthy ({}: {})",
                    w.id,
                    w.failing_probe,
                    w.health_output.trim()
                )
            } else {
                format!("{} on {node}: {health}", w.id)
            };
            out.push(ev.msg(message));
        }
    }

    /// Sends a command to a node's agent and waits for its Ack.
    async fn command(
        &self,
        node: &str,
        kind: pb::command::Kind,
        timeout: Duration,
    ) -> Result<pb::Ack, String> {
        let id = format!("c{}", self.next_command.fetch_add(1, Ordering::Relaxed));
        let sender = {
            let live = self.live();
            match live.nodes.get(node) {
                Some(n) if n.ready() => n.session.as_ref().map(|s| s.commands.clone()),
                _ => None,
            }
        };
        let Some(sender) = sender else {
            return Err(format!("node `{node}` is not connected"));
        };
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((node.to_string(), id.clone()), tx);
        let msg = pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Command(pb::Command {
                id: id.clone(),
                kind: Some(kind),
            })),
        };
        let result = match sender.try_send(Box::new(msg)) {
            Err(_) => Err(format!("node `{node}` has too many commands queued")),
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(ack)) => Ok(ack),
                Ok(Err(_)) => Err(format!("node `{node}` disconnected before answering")),
                Err(_) => Err(format!(
                    "node `{node}` did not answer within {} ms",
                    timeout.as_millis()
                )),
            },
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(node.to_string(), id));
        result
    }

    /// Runs every health check of the matching instances now, on their
    /// agents, and reports each check's outcome.
    pub async fn verify(
        &self,
        service: &str,
        env: &str,
        timeout: Duration,
    ) -> Result<pb::VerifyResponse, StateError> {
        let status = self.status(service, env).await;
        if !service.is_empty() && status.services.is_empty() {
            return Err(StateError::ServiceNotFound {
                service: service.to_string(),
                env: if env.is_empty() { DEFAULT_ENV } else { env }.to_string(),
            });
        }
        let mut results = Vec::new();
        let mut by_node: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for s in &status.services {
            for i in &s.instances {
                let fail = |output: String| pb::VerifyResult {
                    service: s.name.clone(),
                    instance: i.id.clone(),
                    node: i.node.clone(),
                    healthy: false,
                    output,
                    ..Default::default()
                };
                if i.node.is_empty() {
                    results.push(fail(format!("not placed: {}", i.reason)));
                } else if !i.node_connected {
                    results.push(fail(format!("node `{}` is not connected", i.node)));
                } else {
                    by_node
                        .entry(i.node.clone())
                        .or_default()
                        .push((s.name.clone(), i.id.clone()));
                }
            }
        }
        let asks = by_node.into_iter().map(|(node, instances)| async move {
            let ids = instances.iter().map(|(_, id)| id.clone()).collect();
            let kind = pb::command::Kind::RunProbes(pb::RunProbes { workload_ids: ids });
            let answer = self.command(&node, kind, timeout).await;
            (node, instances, answer)
        });
        for (node, instances, answer) in futures::future::join_all(asks).await {
            for (svc, id) in instances {
                let base = pb::VerifyResult {
                    service: svc.clone(),
                    instance: id.clone(),
                    node: node.clone(),
                    ..Default::default()
                };
                match &answer {
                    Err(e) => results.push(pb::VerifyResult {
                        output: e.clone(),
                        ..base
                    }),
                    Ok(ack) if !ack.ok => results.push(pb::VerifyResult {
                        output: format!("the agent could not run the checks: {}", ack.error),
                        ..base
                    }),
                    Ok(ack) => {
                        let mine: Vec<_> = ack
                            .probe_results
                            .iter()
                            .filter(|r| r.workload_id == id)
                            .collect();
                        if mine.is_empty() {
                            results.push(pb::VerifyResult {
                                output: "the agent reported no result".into(),
                                ..base.clone()
                            });
                        }
                        for r in mine {
                            results.push(pb::VerifyResult {
                                probe: r.probe.clone(),
                                healthy: r.healthy,
                                output: r.output.clone(),
                                duration_ms: r.duration_ms,
                                ..base.clone()
                            });
                        }
                    }
                }
            }
        }
        results.sort_by(|a, b| {
            (&a.service, &a.instance, &a.probe).cmp(&(&b.service, &b.instance, &b.probe))
        });
        Ok(pb::VerifyResponse {
            healthy: results.iter().all(|r| r.healthy),
            results,
        })
    }

    pub async fn status(&self, service: &str, env: &str) -> pb::StatusResponse {
        let desired = self.desired.lock().await;
        let live = self.live();
        let mut services = Vec::new();
        for ((senv, name), rec) in &desired.services {
            if rec.deleted
                || (!service.is_empty() && service != name)
                || (!env.is_empty() && env != senv)
            {
                continue;
            }
            let hash = rec.spec.spec_hash();
            let mut instances = Vec::new();
            let mut running = 0;
            // Indexes (in `instances`) of running instances of this spec.
            let mut current = Vec::new();
            for (index, node) in &rec.assignments {
                let id = workload_id(senv, name, *index);
                let removed = node
                    .as_ref()
                    .and_then(|n| desired.nodes.get(n))
                    .is_some_and(|n| n.removed_unix_ms != 0);
                let node_live = node.as_ref().and_then(|n| live.nodes.get(n));
                let connected = node_live.is_some_and(NodeLive::ready);
                let reported = node_live.and_then(|l| l.workloads.get(&id));
                let mut inst = pb::InstanceStatus {
                    id: id.clone(),
                    index: *index,
                    node: node.clone().unwrap_or_default(),
                    node_connected: connected,
                    revision: rec.revision,
                    state: pb::WorkloadState::Pending as i32,
                    reason: match node {
                        None => "no node matches the placement constraints".to_string(),
                        Some(n) => format!("waiting for node `{n}` to report"),
                    },
                    ..Default::default()
                };
                if let Some(r) = reported {
                    inst.revision = r.revision;
                    inst.state = r.state;
                    inst.reason = r.reason.clone();
                    inst.restarts = r.restarts;
                    inst.container_id = r.container_id.clone();
                    inst.container_name = r.container_name.clone();
                    inst.updated_unix_ms = r.updated_unix_ms;
                    inst.health = r.health;
                    inst.health_output = r.health_output.clone();
                    inst.failing_probe = r.failing_probe.clone();
                    if r.state == pb::WorkloadState::Running as i32 && r.spec_hash == hash {
                        running += 1;
                        current.push(instances.len());
                    }
                }
                if removed {
                    inst.state = pb::WorkloadState::Lost as i32;
                    inst.reason =
                        format!("node `{}` was removed", node.as_deref().unwrap_or_default());
                }
                instances.push(inst);
            }
            // Checks come from the spec or from the image's own HEALTHCHECK,
            // so whether there are any is read from what agents report.
            let has_checks = spec_has_checks(&rec.spec)
                || instances
                    .iter()
                    .any(|i| i.health != pb::Health::Unspecified as i32);
            let healthy = current
                .iter()
                .filter(|&&i| {
                    let h = instances[i].health;
                    h == pb::Health::Healthy as i32
                        || (!has_checks && h == pb::Health::Unspecified as i32)
                })
                .count() as u32;
            services.push(pb::ServiceStatus {
                name: name.clone(),
                env: senv.clone(),
                revision: rec.revision,
                desired: rec.assignments.len() as u32,
                running,
                instances,
                updated_unix_ms: rec.updated_unix_ms,
                image: rec.spec.image().to_string(),
                healthy,
                has_checks,
                rollout: rec
                    .rollout
                    .as_ref()
                    .map(|r| rollout_info(r, rec.assignments.len())),
            });
        }
        pb::StatusResponse { services }
    }

    pub async fn nodes(&self) -> pb::ListNodesResponse {
        let desired = self.desired.lock().await;
        let live = self.live();
        let mut counts: HashMap<&str, u32> = HashMap::new();
        for rec in desired.services.values() {
            for node in rec.assignments.values().flatten() {
                *counts.entry(node.as_str()).or_default() += 1;
            }
        }
        let nodes = desired
            .nodes
            .values()
            .map(|rec| {
                let l = live.nodes.get(&rec.name);
                let session = l.and_then(|l| l.session.as_ref());
                pb::Node {
                    name: rec.name.clone(),
                    state: if rec.removed_unix_ms != 0 {
                        pb::NodeState::Removed
                    } else if l.is_some_and(NodeLive::ready) {
                        pb::NodeState::Ready
                    } else {
                        pb::NodeState::Lost
                    } as i32,
                    facts: Some((&rec.facts).into()),
                    agent_version: rec.agent_version.clone(),
                    connected_since_unix_ms: session
                        .map(|s| s.connected_since_unix_ms)
                        .unwrap_or(0),
                    last_heartbeat_unix_ms: l.map(|l| l.last_heartbeat_unix_ms).unwrap_or(0),
                    plan_generation: desired
                        .plans
                        .get(&rec.name)
                        .map(|p| p.generation)
                        .unwrap_or(0),
                    acked_generation: l.map(|l| l.acked_generation).unwrap_or(0),
                    workloads: counts.get(rec.name.as_str()).copied().unwrap_or(0),
                    metrics: l.and_then(|l| l.metrics),
                    address: session.map(|s| s.address.clone()).unwrap_or_default(),
                    certificate_expires_unix_ms: rec.certificate_expires_unix_ms,
                }
            })
            .collect();
        pb::ListNodesResponse { nodes }
    }
}

/// A unified diff of two specs, as pretty JSON (what `plan` shows).
pub fn spec_diff(old: &ServiceSpec, new: &ServiceSpec, old_rev: u64, new_rev: u64) -> String {
    let a = serde_json::to_string_pretty(old).unwrap_or_default() + "\n";
    let b = serde_json::to_string_pretty(new).unwrap_or_default() + "\n";
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(2)
        .header(&format!("r{old_rev}"), &format!("r{new_rev}"))
        .to_string()
}

/// One service of an apply (or a rollback): what to store.
struct Staged<'a> {
    env: &'a str,
    name: &'a str,
    spec: ServiceSpec,
    who: &'a str,
    source: &'a str,
    now: i64,
}

/// Stages a new spec for one service in `next`: placement, a new revision
/// when the spec changed, and the rollout that brings instances to it.
/// Returns the change, and the revision whose rollout it superseded.
fn stage_service(
    next: &mut Desired,
    candidates: &[Candidate<'_>],
    st: Staged<'_>,
    ops: &mut Vec<Op>,
) -> Result<(pb::ServiceChange, Option<u64>), StateError> {
    let Staged {
        env,
        name,
        spec: new_spec,
        who,
        source,
        now,
    } = st;
    let key = (env.to_string(), name.to_string());
    let old = next.services.get(&key).filter(|r| !r.deleted).cloned();
    let old_assign = old
        .as_ref()
        .map(|o| o.assignments.clone())
        .unwrap_or_default();
    let in_env = in_env(candidates, env);
    let assignments = placement::place(&new_spec, &old_assign, &in_env);
    let (action, revision, previous, fields) = match &old {
        Some(o) if o.spec == new_spec => (
            pb::ChangeAction::Unchanged,
            o.revision,
            o.revision,
            Vec::new(),
        ),
        Some(o) => (
            pb::ChangeAction::Update,
            o.revision + 1,
            o.revision,
            spec::changed_fields(&o.spec, &new_spec),
        ),
        None => {
            let last = next.services.get(&key).map(|r| r.revision).unwrap_or(0);
            (pb::ChangeAction::Create, last + 1, last, Vec::new())
        }
    };
    let new_hash = new_spec.spec_hash();
    let old_hash = old.as_ref().map(|o| o.spec.spec_hash());
    let instances = instance_changes(
        env,
        name,
        &old_assign,
        old_hash.as_deref(),
        &assignments,
        &new_hash,
    );
    let diff = match (&old, action) {
        (Some(o), pb::ChangeAction::Update) => spec_diff(&o.spec, &new_spec, previous, revision),
        _ => String::new(),
    };
    let change = pb::ServiceChange {
        service: name.to_string(),
        env: env.to_string(),
        action: action as i32,
        revision,
        previous_revision: previous,
        instances,
        changed_fields: fields,
        diff,
    };
    if action == pb::ChangeAction::Unchanged && assignments == old_assign {
        return Ok((change, None));
    }
    // The rollout that brings the instances to the new spec.
    let mut superseded = None;
    let rollout = match &old {
        Some(o) if old_hash.as_deref() != Some(new_hash.as_str()) => {
            // A rollout still under way (or failed and left as it was) is
            // superseded: instances it had not switched keep the revision
            // it started from, those it had switched go straight to the new
            // one (in the same batch), as Nomad and Kubernetes do.
            match o.rollout.as_ref().filter(|r| r.state.is_active()) {
                Some(r) => {
                    superseded = Some(r.to_revision);
                    let mut nr = Rollout::new(
                        r.from_revision,
                        revision,
                        r.from_spec.clone(),
                        new_spec.deploy.update.clone(),
                        now,
                    );
                    nr.switched = r.switched.keys().map(|i| (*i, now)).collect();
                    nr.blue = r.blue.clone();
                    nr.promoted = r.from_revision == 0;
                    Some(nr)
                }
                None => Some(Rollout::new(
                    o.revision,
                    revision,
                    o.spec.clone(),
                    new_spec.deploy.update.clone(),
                    now,
                )),
            }
        }
        // Same containers: whatever rollout there was goes on.
        Some(o) => o.rollout.clone(),
        // A new service: every instance is new, and its gates still tell
        // whether the deployment worked.
        None => {
            let mut r = Rollout::new(
                0,
                revision,
                new_spec.clone(),
                new_spec.deploy.update.clone(),
                now,
            );
            // Nothing to compare with: no canary phase, every instance new.
            r.promoted = true;
            for index in assignments.keys() {
                r.switched.insert(*index, now);
            }
            Some(r)
        }
    };
    // Blue-green: the new set runs beside the old one, under free numbers.
    let mut assignments = assignments;
    let mut rollout = rollout;
    if let Some(r) = rollout.as_mut().filter(|r| {
        r.policy.strategy == spec::Strategy::BlueGreen
            && r.from_revision != 0
            && r.switched.is_empty()
            && r.blue.is_empty()
    }) {
        let fresh = placement::place(&new_spec, &Assignments::new(), &in_env);
        r.blue = assignments.keys().copied().collect();
        let free: Vec<u32> = (1u32..)
            .filter(|i| !assignments.contains_key(i))
            .take(fresh.len())
            .collect();
        for (index, node) in free.into_iter().zip(fresh.into_values()) {
            assignments.insert(index, node);
            r.switched.insert(index, now);
        }
    }
    let created = next
        .services
        .get(&key)
        .map(|r| r.created_unix_ms)
        .unwrap_or(now);
    if action != pb::ChangeAction::Unchanged {
        ops.push(Op::put_json(
            revision_key(env, name, revision),
            &RevisionRecord {
                revision,
                spec: new_spec.clone(),
                created_unix_ms: now,
                created_by: who.to_string(),
                source: source.to_string(),
                outcome: String::new(),
            },
        ));
    }
    let rec = ServiceRecord {
        env: env.to_string(),
        name: name.to_string(),
        revision,
        spec: new_spec,
        deleted: false,
        assignments,
        created_unix_ms: created,
        updated_unix_ms: now,
        rollout,
    };
    ops.push(Op::put_json(service_key(env, name), &rec));
    next.services.insert(key, Arc::new(rec));
    Ok((change, superseded))
}

pub fn rollout_info(r: &Rollout, total: usize) -> pb::RolloutInfo {
    pb::RolloutInfo {
        from_revision: r.from_revision,
        to_revision: r.to_revision,
        state: r.state.word().to_string(),
        strategy: match r.policy.strategy {
            spec::Strategy::Rolling => "rolling",
            spec::Strategy::Canary => "canary",
            spec::Strategy::BlueGreen => "blue-green",
        }
        .to_string(),
        updated: r.switched.len() as u32,
        healthy: r.done.len() as u32,
        failed: r.failed.len() as u32,
        total: total as u32,
        reason: r.reason.clone(),
        started_unix_ms: r.started_unix_ms,
        updated_unix_ms: r.updated_unix_ms,
        is_rollback: r.is_rollback,
        promoted: r.promoted,
        summary: rollout::describe(r, total),
    }
}

/// Whether the spec itself asks for checks (Docker's healthcheck).
fn spec_has_checks(spec: &ServiceSpec) -> bool {
    !spec.probes.is_empty()
        || spec
            .container_spec()
            .healthcheck
            .is_some_and(|h| !h.disable && h.test.first().is_some_and(|t| t != "NONE"))
}

fn remember_certificate(record: &mut NodeRecord, certificate: &str) {
    if !record.certificates.iter().any(|c| c == certificate) {
        record.certificates.push(certificate.to_string());
        let excess = record.certificates.len().saturating_sub(CERTIFICATES_KEPT);
        record.certificates.drain(..excess);
    }
}

/// Each known node's name, facts and whether its agent is connected.
fn node_views(
    next: &Desired,
    connected: &HashMap<String, bool>,
) -> Vec<(String, pb::NodeFacts, bool)> {
    next.nodes
        .values()
        .map(|n| {
            let up = connected.get(&n.name).copied().unwrap_or(false);
            (n.name.clone(), pb::NodeFacts::from(&n.facts), up)
        })
        .collect()
}

/// The node label that names the environments a node serves
/// (comma-separated; `*`: every one). Nodes without it serve `default`.
pub use convoy_api::env::ENV_LABEL;

/// Whether a node with these facts serves environment `env`.
pub fn node_serves(facts: &pb::NodeFacts, env: &str) -> bool {
    match facts.labels.get(ENV_LABEL) {
        None => env == DEFAULT_ENV,
        Some(list) => list.split(',').map(str::trim).any(|e| e == "*" || e == env),
    }
}

/// The candidates of environment `env`: placement never crosses them.
fn in_env<'a>(candidates: &[Candidate<'a>], env: &str) -> Vec<Candidate<'a>> {
    candidates
        .iter()
        .filter(|c| node_serves(c.facts, env))
        .cloned()
        .collect()
}

/// Environment names: lowercase letters, digits and `-`, up to 63.
pub fn check_env_name(env: &str) -> Result<(), StateError> {
    let ok = !env.is_empty()
        && env.len() <= 63
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !env.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(StateError::Invalid(format!(
            "invalid environment `{env}`: use lowercase letters, digits and `-` (up to 63)"
        )))
    }
}

fn candidates(views: &[(String, pb::NodeFacts, bool)]) -> Vec<Candidate<'_>> {
    views
        .iter()
        .map(|(name, facts, connected)| Candidate {
            name,
            facts,
            connected: *connected,
        })
        .collect()
}

/// What a batch of registrations changes in desired state.
enum Registered {
    /// Placement and plans were run again on a copy.
    Replanned(Box<Desired>, Vec<(String, Arc<pb::NodePlan>)>),
    /// Only these node records, and the empty plans of nodes new here.
    Nodes(BTreeMap<String, NodeRecord>, Vec<(String, PlanRecord)>),
}

/// Whether registering the `staged` node records may change placement or
/// plans. Placement never moves an instance that has a node, so nodes that
/// come back as they were (not removed, same facts), and nodes new here,
/// change nothing unless an instance waits for a node: a replicated
/// service with an unplaced instance, or a global one that one of these
/// nodes is eligible for and has no instance of.
fn may_place(desired: &Desired, staged: &BTreeMap<String, NodeRecord>) -> bool {
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
            let facts = pb::NodeFacts::from(&record.facts);
            node_serves(&facts, &rec.env)
                && rec
                    .spec
                    .constraints()
                    .iter()
                    .all(|k| k.matches(name, &facts))
        })
    })
}

/// Re-runs placement for every live service (new nodes may take pending
/// instances or global ones); existing assignments never move here.
fn replace_all(next: &mut Desired, connected: &HashMap<String, bool>, ops: &mut Vec<Op>) {
    let nodes = node_views(next, connected);
    let candidates = candidates(&nodes);
    for rec in next.services.values_mut().filter(|r| !r.deleted) {
        // Both sets of a blue-green rollout stay where they are until it ends.
        if rec
            .rollout
            .as_ref()
            .is_some_and(|r| r.state.is_active() && r.has_blue())
        {
            continue;
        }
        let placed = placement::place(&rec.spec, &rec.assignments, &in_env(&candidates, &rec.env));
        if placed != rec.assignments {
            let rec = Arc::make_mut(rec);
            rec.assignments = placed;
            rec.updated_unix_ms = now_unix_ms();
            ops.push(Op::put_json(service_key(&rec.env, &rec.name), &*rec));
        }
    }
}

/// Which plans [`compute_plans`] hands back.
#[derive(Clone, Copy, PartialEq)]
enum Publish {
    /// Every node's (on load: nothing is published yet).
    All,
    /// Only plans whose content changed (agents already hold the others).
    Changed,
}

/// Builds every node's plan from desired state; bumps the generation of
/// each plan whose content changed and records it in `ops`. Returns the
/// plans to hand to sessions once `ops` are stored.
fn compute_plans(
    next: &mut Desired,
    ops: &mut Vec<Op>,
    publish: Publish,
) -> Vec<(String, Arc<pb::NodePlan>)> {
    let mut per_node: BTreeMap<String, Vec<pb::Workload>> = BTreeMap::new();
    for node in next.nodes.keys().chain(next.plans.keys()) {
        per_node.entry(node.clone()).or_default();
    }
    for rec in next.services.values().filter(|r| !r.deleted) {
        let runtime = |spec: &ServiceSpec, revision: u64| {
            (revision, spec.spec_hash(), spec.probes(), spec.runtime())
        };
        let new = runtime(&rec.spec, rec.revision);
        let start_first = rec.spec.deploy.update.order == spec::UpdateOrder::StartFirst;
        // While a rollout is active, instances it has not switched yet keep
        // the revision they run.
        let rollout = rec.rollout.as_ref().filter(|r| r.state.is_active());
        let old = rollout.map(|r| runtime(&r.from_spec, r.from_revision));
        for (index, node) in &rec.assignments {
            let Some(node) = node else { continue };
            let (revision, spec_hash, probes, runtime) = match (&old, rollout) {
                (Some(old), Some(r)) if !r.is_switched(*index) => old,
                _ => &new,
            };
            per_node
                .entry(node.clone())
                .or_default()
                .push(pb::Workload {
                    id: workload_id(&rec.env, &rec.name, *index),
                    service: rec.name.clone(),
                    env: rec.env.clone(),
                    index: *index,
                    revision: *revision,
                    spec_hash: spec_hash.clone(),
                    probes: probes.clone(),
                    start_first,
                    runtime: Some(runtime.clone()),
                });
        }
    }
    let mut updates = Vec::new();
    let mut fresh = None;
    for (node, mut workloads) in per_node {
        workloads.sort_by(|a, b| a.id.cmp(&b.id));
        let hash = plan_hash(&workloads);
        let generation = match next.plans.get(&node) {
            Some(rec) if rec.hash == hash => {
                if publish == Publish::Changed {
                    continue;
                }
                rec.generation
            }
            _ => {
                let generation = *fresh.get_or_insert_with(|| {
                    next.plan_generation += 1;
                    next.plan_generation
                });
                let rec = PlanRecord { generation, hash };
                Arc::make_mut(&mut next.plans).insert(node.clone(), rec);
                generation
            }
        };
        updates.push((
            node,
            Arc::new(pb::NodePlan {
                generation,
                workloads,
            }),
        ));
    }
    if let Some(generation) = fresh {
        ops.push(Op::put_json(PLAN_GENERATION_KEY, &generation));
    }
    updates
}

/// What a node's plan holds, as stored in its [`PlanRecord`]; `workloads`
/// sorted by id.
fn plan_hash(workloads: &[pb::Workload]) -> String {
    let mut h = Sha256::new();
    for w in workloads {
        h.update(w.id.as_bytes());
        h.update([0]);
        h.update(w.revision.to_be_bytes());
        h.update(w.spec_hash.as_bytes());
        h.update([0, u8::from(w.start_first)]);
    }
    hex::encode(h.finalize())
}

/// What an apply does to each instance, node by node.
fn instance_changes(
    env: &str,
    service: &str,
    old: &Assignments,
    old_hash: Option<&str>,
    new: &Assignments,
    new_hash: &str,
) -> Vec<pb::InstanceChange> {
    use pb::ChangeAction as A;
    let mut out = Vec::new();
    let mut push = |index: u32, node: &Option<String>, action: A| {
        out.push(pb::InstanceChange {
            instance_id: workload_id(env, service, index),
            node: node.clone().unwrap_or_default(),
            action: action as i32,
        })
    };
    let indices: std::collections::BTreeSet<u32> = old.keys().chain(new.keys()).copied().collect();
    for index in indices {
        match (old.get(&index), new.get(&index)) {
            (None, Some(n)) => push(index, n, if n.is_some() { A::Create } else { A::Pending }),
            (Some(o), None) => {
                if o.is_some() {
                    push(index, o, A::Remove)
                }
            }
            (Some(o), Some(n)) if o == n => match n {
                None => push(index, n, A::Pending),
                Some(_) if old_hash == Some(new_hash) => push(index, n, A::Unchanged),
                Some(_) => push(index, n, A::Replace),
            },
            (Some(o), Some(n)) => {
                if o.is_some() {
                    push(index, o, A::Remove);
                }
                push(index, n, if n.is_some() { A::Create } else { A::Pending });
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sled store in a fresh temporary directory (kept while the guard lives).
    fn temp_store() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        (store, dir)
    }

    /// An agent's Hello with empty facts.
    fn hello() -> pb::Hello {
        pb::Hello {
            facts: Some(pb::NodeFacts::default()),
            agent_version: "t".into(),
            last_applied_generation: 0,
        }
    }

    fn a(pairs: &[(u32, Option<&str>)]) -> Assignments {
        pairs
            .iter()
            .map(|(i, n)| (*i, n.map(str::to_string)))
            .collect()
    }

    fn actions(changes: &[pb::InstanceChange]) -> Vec<(String, String, i32)> {
        changes
            .iter()
            .map(|c| (c.instance_id.clone(), c.node.clone(), c.action))
            .collect()
    }

    #[test]
    fn plan_diff_names_creates_replaces_and_removals() {
        use pb::ChangeAction as A;
        let old = a(&[(1, Some("n1")), (2, Some("n2")), (3, Some("n1"))]);
        let new = a(&[(1, Some("n1")), (2, Some("n2"))]);
        let got = instance_changes("default", "web", &old, Some("h1"), &new, "h2");
        assert_eq!(
            actions(&got),
            vec![
                ("default/web/1".into(), "n1".into(), A::Replace as i32),
                ("default/web/2".into(), "n2".into(), A::Replace as i32),
                ("default/web/3".into(), "n1".into(), A::Remove as i32),
            ]
        );
        let same = instance_changes("default", "web", &new, Some("h2"), &new, "h2");
        assert!(same.iter().all(|c| c.action == A::Unchanged as i32));
        let fresh = instance_changes(
            "default",
            "web",
            &Assignments::new(),
            None,
            &a(&[(1, None)]),
            "h",
        );
        assert_eq!(fresh[0].action, A::Pending as i32);
    }

    #[tokio::test]
    async fn apply_stores_a_revision_and_a_plan_survives_reload() {
        let (store, _dir) = temp_store();
        let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let mut session = coord
            .register("n1", "fp-n1", 0, hello(), None)
            .await
            .unwrap();
        let spec = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 2\n";
        let r = coord.apply("a.yaml", spec, false, "test").await.unwrap();
        assert_eq!(r.services[0].revision, 1);
        let plan = session.plan_rx.borrow_and_update().clone().unwrap();
        assert_eq!(plan.workloads.len(), 2);
        let generation = plan.generation;

        // Same spec again: unchanged, no new generation.
        let r = coord.apply("a.yaml", spec, false, "test").await.unwrap();
        assert_eq!(r.services[0].action, pb::ChangeAction::Unchanged as i32);
        assert!(
            !session.plan_rx.has_changed().unwrap(),
            "an unchanged apply must not resend plans"
        );
        drop(coord);

        let again = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let status = again.status("", "").await;
        assert_eq!(status.services[0].revision, 1);
        assert_eq!(status.services[0].instances.len(), 2);
        // The plan is handed out again under a newer generation: a node's
        // generations only grow, across restarts too.
        let nodes = again.nodes().await;
        assert!(
            nodes.nodes[0].plan_generation > generation,
            "{} after a reload, {generation} before",
            nodes.nodes[0].plan_generation
        );
        let mut session = again
            .register("n1", "fp-n1", 0, pb::Hello::default(), None)
            .await
            .unwrap();
        let plan = session.plan_rx.borrow_and_update().clone().unwrap();
        assert_eq!(plan.generation, nodes.nodes[0].plan_generation);
        assert_eq!(plan.workloads.len(), 2);
    }

    #[tokio::test]
    async fn plan_generations_of_old_per_node_records_carry_over_and_the_records_go() {
        let (store, _dir) = temp_store();
        let old = PlanRecord {
            generation: 41,
            hash: "h".into(),
        };
        store
            .apply(vec![Op::put_json("plans/n1", &old)])
            .await
            .unwrap();
        let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let mut session = coord
            .register("n1", "fp-n1", 0, pb::Hello::default(), None)
            .await
            .unwrap();
        let plan = session.plan_rx.borrow_and_update().clone().unwrap();
        assert!(plan.generation > 41, "generation {}", plan.generation);
        assert!(store.scan_prefix("plans/").await.unwrap().is_empty());
        let stored = store::get_json::<u64>(&*store, PLAN_GENERATION_KEY)
            .await
            .unwrap()
            .unwrap();
        assert!(
            stored >= plan.generation,
            "stored {stored}, handed out {}",
            plan.generation
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_registrations_are_group_committed_and_each_gets_its_plan() {
        let (store, _dir) = temp_store();
        let coord = Arc::new(
            Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
                .await
                .unwrap(),
        );
        let spec = "services:\n  g:\n    image: x:1\n    deploy:\n      mode: global\n";
        coord.apply("a.yaml", spec, false, "t").await.unwrap();

        // 60 nodes at once, and node n0 twice: the later session wins.
        let mut tasks = Vec::new();
        for i in 0..60 {
            let c = coord.clone();
            let h = hello();
            tasks.push(tokio::spawn(async move {
                c.register(&format!("n{i}"), &format!("fp-{i}"), 0, h, None)
                    .await
            }));
        }
        let mut handles = Vec::new();
        for t in tasks {
            handles.push(t.await.unwrap().unwrap());
        }
        let mut again = coord
            .register("n0", "fp-0", 0, hello(), None)
            .await
            .unwrap();
        assert!(
            handles[0].cancel.is_cancelled(),
            "the replaced session is cancelled"
        );
        assert!(!again.cancel.is_cancelled());

        let ids: std::collections::HashSet<u64> = handles.iter().map(|h| h.conn_id).collect();
        assert_eq!(ids.len(), 60, "every session has its own connection id");
        for (i, h) in handles.iter_mut().enumerate().skip(1) {
            let plan = h.plan_rx.borrow_and_update().clone().unwrap();
            assert_eq!(plan.workloads.len(), 1, "node n{i}: {plan:?}");
            assert!(plan.workloads[0].id.starts_with("default/g/"), "{plan:?}");
        }
        let plan = again.plan_rx.borrow_and_update().clone().unwrap();
        assert_eq!(plan.workloads.len(), 1);
        let nodes = coord.nodes().await;
        assert_eq!(nodes.nodes.len(), 60);
        assert!(
            nodes
                .nodes
                .iter()
                .all(|n| n.state == pb::NodeState::Ready as i32),
            "{nodes:?}"
        );
        let status = coord.status("", "").await;
        assert_eq!(status.services[0].instances.len(), 60);

        // The batch was stored: a reload knows every node.
        drop(handles);
        drop(again);
        drop(coord);
        let reloaded = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(reloaded.nodes().await.nodes.len(), 60);
    }

    /// Agents heartbeat only through silences: any message counts as one,
    /// so a node that keeps sending status reports is never swept as lost,
    /// and a report from a silent node brings it back.
    #[tokio::test]
    async fn any_message_shows_a_node_alive() {
        let (store, _dir) = temp_store();
        let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let session = coord.register("n1", "fp", 0, hello(), None).await.unwrap();
        let status = |state: pb::WorkloadState| pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
                workloads: vec![pb::WorkloadStatus {
                    id: "default/x/1".into(),
                    state: state as i32,
                    ..Default::default()
                }],
                ..Default::default()
            })),
        };
        let ready = |coord: &Coordinator| {
            let live = coord.live();
            live.nodes["n1"].ready()
        };
        // Sweeps 2.4 s and 2.6 s after a report: the 2.5 s window counts
        // from the report.
        let registered = coord.live().nodes["n1"].last_heartbeat_unix_ms;
        coord.handle("n1", session.conn_id, status(pb::WorkloadState::Running));
        let heard = coord.live().nodes["n1"].last_heartbeat_unix_ms;
        assert!(heard >= registered);
        coord.sweep(heard + 2_400);
        assert!(ready(&coord), "a node that reported is not lost");
        coord.sweep(heard + 2_600);
        assert!(!ready(&coord), "silence past the window is loss");
        let mut events = coord.events.subscribe();
        coord.handle("n1", session.conn_id, status(pb::WorkloadState::Exited));
        assert!(ready(&coord), "a report from a silent node brings it back");
        let mut kinds = Vec::new();
        while let Ok(ev) = events.try_recv() {
            kinds.push(ev.kind.clone());
        }
        assert!(kinds.iter().any(|k| k == "node.ready"), "{kinds:?}");
    }

    /// After a restart, nodes that come back as they were take the quick
    /// path (no placement, no plan computation) and still get the plans
    /// they had; a node that instances waited for gets them.
    #[tokio::test]
    async fn nodes_coming_back_keep_their_plans_and_take_what_waited_for_them() {
        let (store, _dir) = temp_store();
        let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let mut sessions = Vec::new();
        for n in ["n1", "n2", "n3"] {
            sessions.push(coord.register(n, n, 0, hello(), None).await.unwrap());
        }
        coord.disconnect("n3", sessions[2].conn_id);
        // `r` may only run on n3, which is away; `g` runs on every node up.
        let spec = "services:\n  r:\n    image: x:1\n    deploy:\n      placement: {constraints: [\"node.name == n3\"]}\n  g:\n    image: x:1\n    deploy:\n      mode: global\n";
        coord.apply("a.yaml", spec, false, "t").await.unwrap();
        let placed = |status: &pb::StatusResponse, service: &str| -> Vec<String> {
            let s = status.services.iter().find(|s| s.name == service).unwrap();
            let mut nodes: Vec<String> = s.instances.iter().map(|i| i.node.clone()).collect();
            nodes.sort();
            nodes
        };
        let before = coord.status("", "").await;
        assert_eq!(placed(&before, "r"), vec![String::new()], "r waits for n3");
        assert_eq!(placed(&before, "g"), vec!["n1".to_string(), "n2".into()]);
        let plan_of = |h: &mut SessionHandle| -> Vec<String> {
            let plan = h.plan_rx.borrow_and_update().clone().unwrap();
            let mut ids: Vec<String> = plan.workloads.iter().map(|w| w.id.clone()).collect();
            ids.sort();
            ids
        };
        let n1_before = plan_of(&mut sessions[0]);
        assert_eq!(n1_before.len(), 1, "{n1_before:?}");
        drop(sessions);
        drop(coord);

        // A restart: n3 comes back first and takes r and a g instance.
        let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let mut n3 = coord.register("n3", "n3", 0, hello(), None).await.unwrap();
        let n3_plan = plan_of(&mut n3);
        assert_eq!(n3_plan.len(), 2, "{n3_plan:?}");
        assert!(
            n3_plan.iter().any(|id| id.starts_with("default/r/")),
            "{n3_plan:?}"
        );
        // Nothing waits any more: n1 and n2 come back as they were.
        let mut n1 = coord.register("n1", "n1", 0, hello(), None).await.unwrap();
        let mut n2 = coord.register("n2", "n2", 0, hello(), None).await.unwrap();
        assert_eq!(plan_of(&mut n1), n1_before);
        assert_eq!(plan_of(&mut n2).len(), 1);
        let after = coord.status("", "").await;
        assert_eq!(placed(&after, "r"), vec!["n3".to_string()]);
        assert_eq!(
            placed(&after, "g"),
            vec!["n1".to_string(), "n2".into(), "n3".into()]
        );
        let nodes = coord.nodes().await;
        assert!(
            nodes
                .nodes
                .iter()
                .all(|n| n.state == pb::NodeState::Ready as i32),
            "{nodes:?}"
        );
        // A node that comes back with other facts is placed again: n2 now
        // carries a label; its record is stored either way.
        let mut hello2 = hello();
        hello2
            .facts
            .as_mut()
            .unwrap()
            .labels
            .insert("zone".into(), "b".into());
        drop(n2);
        let _n2 = coord.register("n2", "n2", 0, hello2, None).await.unwrap();
        let nodes = coord.nodes().await;
        let n2 = nodes.nodes.iter().find(|n| n.name == "n2").unwrap();
        assert_eq!(
            n2.facts
                .as_ref()
                .unwrap()
                .labels
                .get("zone")
                .map(String::as_str),
            Some("b")
        );
    }

    #[tokio::test]
    async fn a_registration_whose_caller_gave_up_leaves_no_session() {
        let (store, _dir) = temp_store();
        let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        // Hold the lock so the first registration stays queued, then drop it.
        {
            let guard = coord.desired.lock().await;
            let mut queued = Box::pin(coord.register("gone", "fp-g", 0, hello(), None));
            assert!(futures::poll!(queued.as_mut()).is_pending());
            drop(queued);
            drop(guard);
        }
        // The next registration commits the queued one too, then undoes it.
        let _b = coord.register("b", "fp-b", 0, hello(), None).await.unwrap();
        let nodes = coord.nodes().await;
        let gone = nodes.nodes.iter().find(|n| n.name == "gone").unwrap();
        assert_eq!(gone.state, pb::NodeState::Lost as i32, "{gone:?}");
        let b = nodes.nodes.iter().find(|n| n.name == "b").unwrap();
        assert_eq!(b.state, pb::NodeState::Ready as i32, "{b:?}");
    }

    #[tokio::test]
    async fn a_node_cannot_report_for_or_receive_another_nodes_instances() {
        let (store, _dir) = temp_store();
        let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let mut a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
        let mut b = coord.register("b", "fp-b", 0, hello(), None).await.unwrap();
        let spec = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 2\n";
        coord.apply("a.yaml", spec, false, "t").await.unwrap();
        // Each session sees only its own node's plan.
        let plan_a = a.plan_rx.borrow_and_update().clone().unwrap();
        let plan_b = b.plan_rx.borrow_and_update().clone().unwrap();
        let status = coord.status("", "").await;
        let on = |node: &str| -> Vec<String> {
            status.services[0]
                .instances
                .iter()
                .filter(|i| i.node == node)
                .map(|i| i.id.clone())
                .collect()
        };
        let ids = |p: &pb::NodePlan| p.workloads.iter().map(|w| w.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&plan_a), on("a"));
        assert_eq!(ids(&plan_b), on("b"));

        // Node a claims b's instance runs: b's instance stays unreported.
        let b_instance = on("b")[0].clone();
        let report = pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
                full_snapshot: false,
                workloads: vec![pb::WorkloadStatus {
                    id: b_instance.clone(),
                    state: pb::WorkloadState::Running as i32,
                    ..Default::default()
                }],
                removed: vec![],
            })),
        };
        coord.handle("a", a.conn_id, report);
        let status = coord.status("", "").await;
        let inst = status.services[0]
            .instances
            .iter()
            .find(|i| i.id == b_instance)
            .unwrap();
        assert_eq!(inst.state, pb::WorkloadState::Pending as i32, "{inst:?}");
        assert_eq!(status.services[0].running, 0);
    }

    #[tokio::test]
    async fn status_reports_become_ordered_state_and_health_events() {
        let (store, _dir) = temp_store();
        let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let (replay, mut rx) = coord.events().subscribe_with_replay();
        assert!(replay.is_empty());
        let a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
        let spec = "services:\n  web:\n    image: x:1\n";
        coord.apply("a.yaml", spec, false, "t").await.unwrap();
        let report =
            |state: pb::WorkloadState, health: pb::Health, output: &str| pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
                    full_snapshot: false,
                    workloads: vec![pb::WorkloadStatus {
                        id: "default/web/1".into(),
                        state: state as i32,
                        health: health as i32,
                        health_output: output.into(),
                        failing_probe: if output.is_empty() { "" } else { "http" }.into(),
                        revision: 1,
                        ..Default::default()
                    }],
                    removed: vec![],
                })),
            };
        use pb::{Health as H, WorkloadState as S};
        coord.handle("a", a.conn_id, report(S::Running, H::Starting, ""));
        coord.handle("a", a.conn_id, report(S::Running, H::Healthy, ""));
        coord.handle("a", a.conn_id, report(S::Running, H::Unhealthy, "HTTP 500"));
        // An unchanged report says nothing new.
        coord.handle("a", a.conn_id, report(S::Running, H::Unhealthy, "HTTP 500"));
        // Another node's instance is not this node's to report.
        coord.handle(
            "a",
            a.conn_id,
            pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
                    full_snapshot: false,
                    workloads: vec![pb::WorkloadStatus {
                        id: "default/other/1".into(),
                        state: S::Running as i32,
                        ..Default::default()
                    }],
                    removed: vec![],
                })),
            },
        );
        coord.disconnect("a", a.conn_id);
        let mut got = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            got.push((
                ev.kind.clone(),
                ev.fields
                    .get("state")
                    .or(ev.fields.get("health"))
                    .cloned()
                    .unwrap_or_default(),
            ));
        }
        let want: Vec<(String, String)> = [
            ("node.joined", ""),
            ("service.deployed", ""),
            ("instance.placed", ""),
            ("instance.state", "running"),
            ("instance.health", "starting"),
            ("instance.health", "healthy"),
            ("instance.health", "unhealthy"),
            ("node.lost", ""),
        ]
        .iter()
        .map(|(k, f)| (k.to_string(), f.to_string()))
        .collect();
        assert_eq!(got, want);
        let status = coord.status("web", "").await;
        let svc = &status.services[0];
        assert!(svc.has_checks);
        assert_eq!(svc.healthy, 0);
        assert_eq!(svc.instances[0].health_output, "HTTP 500");
        let counts = coord.events().counts();
        assert_eq!(counts.get("instance.health"), Some(&3));
    }

    #[tokio::test]
    async fn a_bad_spec_stores_nothing() {
        let (store, _dir) = temp_store();
        let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let err = coord
            .apply("bad.yaml", "services:\n  web:\n    imag: x\n", false, "t")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("bad.yaml:3"), "{err}");
        assert!(store.scan_prefix("").await.unwrap().is_empty());
    }
}

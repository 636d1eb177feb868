//! The coordinator's state. Desired state (services, revisions, placement,
//! node plans) is durable in the store and changed only under one async lock,
//! store first, memory second. Live state (agent sessions, reported workload
//! status, heartbeats) is memory only: agents resend a full snapshot after
//! every reconnect, so a restart loses nothing.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
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
    events::{Ev, EventBus, EventKind},
    metrics::Metrics,
    placement::{self, Assignments, Candidate},
    report::{
        AgentHello, AgentReport, CommandAck, Health, HostMetrics, InstanceState, WorkloadReport,
    },
    rollout::{self, Effect, InstanceView, Rollout, RolloutState},
    secrets::{Sealer, SecretsError},
    spec::{self, ServiceSpec},
    store::{self, Op, Store, StoreError},
    tls::Revoked,
};

mod analysis;
mod apply;
mod commit;
mod delete;
mod drain;
mod envs;
mod exec;
mod hooks;
mod live;
mod logs;
mod messages;
mod mirror;
mod notifiers;
mod outcome;
mod plans;
mod records;
mod register;
mod registries;
mod rollout_commands;
mod rollouts;
mod secrets;
mod split;
mod stage;
mod status;
mod swarm;
mod verify;
mod view;
mod volumes;

pub use apply::ApplyOptions;
pub use envs::{check_env_name, node_serves, ENV_LABEL};
pub use exec::{ExecError, Execution, Interactive};
pub use live::{GpuMetricSample, Liveness, MetricSample, HISTORY};
pub use logs::{instance_label, LogTarget, LogsError, LogsQuery, LOG_BUFFER};
pub use mirror::{followed, FOLLOWED};
pub use notifiers::{
    check_event_patterns, NewNotifier, NotifierTarget, NotifierTargets, NotifyFormat,
    DEFAULT_EVENTS, MAX_NOTIFIERS,
};
pub use outcome::{
    ApplyOutcome, ChangeAction, Cordoned, Deleted, DrainStarted, InstanceChange, NodeRemoved,
    NodeVolume, SecretAction, SecretChange, ServiceChange, VerifyReport, VerifyResult, VolumesView,
};
pub use plans::PLAN_GENERATION_KEY;
pub use records::{
    EnrollRecord, Facts, Gpu, NodeRecord, PlanRecord, RevisionRecord, RevokedRecord, ServiceRecord,
    MAX_GPUS,
};
pub use register::SessionHandle;
pub use registries::{RegistryInfo, RegistryLogin, RegistryRecord};
pub use rollout_commands::RolloutCommand;
pub use secrets::{
    check_secret_name, Charset, Rewrapped, SecretInfo, SecretRecord, SecretValue,
    SecretVersionInfo, SecretWrite, DEFAULT_GENERATED_LENGTH, KEEP_VERSIONS, MAX_GENERATED_LENGTH,
    MAX_SECRET_BYTES, MAX_SECRET_NAME,
};
pub use stage::spec_diff;
pub use status::rollout_view;
pub use view::{
    HistoryView, InstanceStatusView, NodeState, NodeView, NodesView, RevisionView, RolloutView,
    ServiceView, StatusView, SwarmServiceView,
};

#[allow(unused_imports)]
use self::{
    apply::*, commit::*, drain::*, envs::*, live::*, messages::*, notifiers::*, plans::*,
    records::*, register::*, registries::*, rollouts::*, secrets::*, stage::*, status::*,
    verify::*,
};

/// The environment of services whose spec names none.
pub use convoy_api::env::DEFAULT_ENV;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Spec(#[from] spec::SpecError),
    /// A pre-deploy hook failed (its output is in the text).
    #[error("{0}")]
    PreDeploy(String),
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
    /// The caller's role may not do this (e.g. a deployer applying units).
    #[error("{0}")]
    NotAllowed(String),
    #[error("no login is stored for registry `{0}` (`convoy registry ls` lists them)")]
    RegistryNotFound(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("secret `{name}` not found in environment `{env}` (`convoy secret list` lists them)")]
    SecretNotFound { name: String, env: String },
    /// A secret exists already, or is in use.
    #[error("{0}")]
    SecretConflict(String),
    #[error("no notifier is named `{0}` (`convoy notify ls` lists them)")]
    NotifierNotFound(String),
}

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
    /// Private registries' logins, by server (`registries.rs`).
    registries: Arc<BTreeMap<String, RegistryLogin>>,
    /// Secrets, sealed, by (environment, name) (`secrets.rs`).
    secrets: Arc<BTreeMap<(String, String), SecretRecord>>,
    /// Webhook notifiers, by name (`notifiers.rs`).
    notifiers: NotifierTargets,
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
    pending: Mutex<HashMap<(String, String), oneshot::Sender<CommandAck>>>,
    next_command: AtomicU64,
    /// Woken when agents report status, so rollouts step at once.
    pub status_changed: tokio::sync::Notify,
    /// Reads spec files off the async workers, under limits.
    specs: apply::SpecReader,
    /// Seals secrets (registry passwords) at rest.
    sealer: Sealer,
    /// The coordinators and the store, for status and `/metrics` (set once
    /// by the server; absent in tests that build a bare coordinator).
    control_plane: std::sync::OnceLock<Arc<dyn crate::ha::ControlPlane>>,
    /// The notifiers, for the delivery engine (`crate::notify`).
    notifiers: watch::Sender<NotifierTargets>,
    /// Verdicts of rollout analyses (`crate::analysis`).
    analyses: crate::analysis::Analyses,
    /// The agents' latest proxy figures (`crate::proxy_stats`).
    proxy_figures: crate::proxy_stats::ProxyFigures,
    /// Drains in progress and their gates (`drain.rs`).
    drains: Mutex<drain::DrainBook>,
    /// Tunnels asked of agents, not yet opened (`crate::tunnels`).
    tunnels: crate::tunnels::Tunnels,
}

pub use convoy_api::clock::now_unix_ms;

/// What [`Coordinator::dump_store`] read.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreDump {
    /// "sled" or "etcd".
    pub backend: String,
    /// The sled directory, or the etcd endpoints.
    pub location: String,
    /// Every key and value, in key order.
    pub entries: Vec<(String, Vec<u8>)>,
}

impl Coordinator {
    /// Loads desired state from the store and prepares every node's plan,
    /// with secrets sealed under a key held in memory only (tests; `convoyd`
    /// uses [`Self::load_sealed`] with its key file).
    pub async fn load(
        store: Arc<dyn Store>,
        liveness: Liveness,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, StateError> {
        Self::load_sealed(store, liveness, shutdown, Sealer::ephemeral()).await
    }

    /// Loads desired state, opening stored secrets with `sealer`.
    pub async fn load_sealed(
        store: Arc<dyn Store>,
        liveness: Liveness,
        shutdown: CancellationToken,
        sealer: Sealer,
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
        let revoked: HashSet<String> = store::scan_json::<RevokedRecord>(&*store, "revoked/")
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
            specs: apply::SpecReader::default(),
            sealer,
            control_plane: std::sync::OnceLock::new(),
            notifiers: watch::Sender::new(NotifierTargets::default()),
            analyses: crate::analysis::Analyses::default(),
            proxy_figures: crate::proxy_stats::ProxyFigures::default(),
            drains: Mutex::new(drain::DrainBook::default()),
            tunnels: crate::tunnels::Tunnels::default(),
        });
        desired.registries = Arc::new(coord.load_registries().await?);
        desired.secrets = Arc::new(coord.load_secrets().await?);
        desired.notifiers = Arc::new(coord.load_notifiers().await?);
        coord.resume_drains(&desired);
        coord.mark_all_lost(&desired, now_unix_ms());
        let mut txn = coord.begin("load").await;
        *txn.stage() = desired;
        txn.ops().extend(ops);
        txn.replan_all();
        txn.commit().await?;
        coord.publish_notifiers().await;
        Ok(coord)
    }

    /// Every key and value of the store, read while holding the
    /// desired-state lock, so no commit is half in it (snapshots, issue 18).
    /// Tokens and audit entries are written outside that lock, one key at a
    /// time, so they are whole too.
    pub async fn dump_store(&self) -> Result<StoreDump, StateError> {
        let _desired = self.desired.lock().await;
        let health = self.store.health().await;
        let entries = self.store.dump().await?;
        Ok(StoreDump {
            backend: health.backend,
            location: health.location,
            entries,
        })
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

    /// Tells the coordinator about the control plane it is part of.
    pub fn set_control_plane(&self, plane: Arc<dyn crate::ha::ControlPlane>) {
        let _ = self.control_plane.set(plane);
    }

    /// The coordinators and the store, when the server said.
    pub async fn control_plane(&self) -> Option<crate::ha::ControlPlaneView> {
        match self.control_plane.get() {
            Some(plane) => Some(plane.view().await),
            None => None,
        }
    }

    /// Whether this coordinator leads (always, alone on its store).
    pub fn is_leader(&self) -> bool {
        self.control_plane.get().is_none_or(|p| p.is_leader())
    }

    /// The revoked certificate fingerprints, for the TLS verifier.
    pub fn revoked(&self) -> Revoked {
        self.revoked.clone()
    }

    pub fn is_revoked(&self, fingerprint: &str) -> bool {
        self.revoked
            .read()
            .map(|set| set.contains(fingerprint))
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests;

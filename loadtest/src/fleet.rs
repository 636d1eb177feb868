//! The simulated agents. Each is one task holding its own certificate, its
//! own mTLS connection (a tonic Channel over a freezable socket) and its own
//! `AgentService.Session` stream. It says Hello with facts and a full status
//! snapshot, acknowledges every NodePlan and reports its instances running
//! (at once or after a set delay: the runtime is fake), answers Pings and
//! commands, heartbeats at the interval the Welcome gives, and reconnects
//! with the real agent's backoff. Everything the benchmarks time is stamped
//! here, in the harness, as the agent sees it.

mod agent;
mod sim;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::{
    sync::{watch, Semaphore},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity};

use crate::freeze::Freeze;

use agent::Agent;
use sim::Sim;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub agent_addr: SocketAddr,
    /// More coordinators' agent ports (standbys on one etcd): agent `i`
    /// connects to the `i % (1 + len)`th of `agent_addr` and these.
    pub also_agent_addrs: Vec<SocketAddr>,
    pub ca_pem: String,
    /// From a plan to its instances reported running (0: at once).
    pub start_delay: Duration,
    /// The service whose revisions the agents time (fan-out).
    pub tracked_service: String,
    /// TLS handshakes and Session calls in flight at once (the floor uses 256).
    pub connect_concurrency: usize,
    /// A session this long resets the reconnect backoff (the agent: 120 s).
    pub healthy_session: Duration,
}

/// What agents send beyond their heartbeats, fleet-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestKind {
    /// A status report flipping one instance's health: one
    /// `instance.health` event each.
    Status,
    /// An extra heartbeat with host metrics.
    Heartbeat,
}

#[derive(Debug, Clone, Copy)]
pub struct Ingest {
    /// Per agent.
    pub every: Duration,
    pub kind: IngestKind,
}

/// Fleet-wide counts.
#[derive(Default)]
pub struct Counters {
    pub welcomes: AtomicU64,
    pub session_errors: AtomicU64,
    pub plans: AtomicU64,
    pub heartbeats: AtomicU64,
    pub pongs: AtomicU64,
    /// Ingest messages put on the stream.
    pub ingest_sent: AtomicU64,
    /// Ingest messages not sent: the agent's outbound queue was full.
    pub ingest_skipped: AtomicU64,
    /// How late a heartbeat tick fired at worst (a starved harness).
    pub max_heartbeat_late_us: AtomicU64,
    last_error: Mutex<String>,
}

impl Counters {
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn error(&self, e: String) {
        self.session_errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }
}

/// One agent as the harness reads it.
pub struct AgentState {
    pub name: String,
    pub freeze: Arc<Freeze>,
    frozen: watch::Sender<bool>,
    /// Sessions the coordinator welcomed.
    pub welcomes: AtomicU64,
    /// The session (its `welcomes` count) in which the last plan was acked.
    pub acked_in_session: AtomicU64,
    pub plan_generation: AtomicU64,
    /// Highest revision of the tracked service in an acknowledged plan.
    pub tracked_revision: AtomicU64,
    /// When it was acknowledged, µs since the fleet's epoch.
    pub tracked_at_us: AtomicU64,
}

impl AgentState {
    /// Connected and in sync: welcomed, and the plan of this session acked.
    pub fn in_sync(&self) -> bool {
        let w = self.welcomes.load(Ordering::Acquire);
        w > 0 && self.acked_in_session.load(Ordering::Acquire) == w
    }
}

struct Shared {
    cfg: FleetConfig,
    url: String,
    ca: Certificate,
    epoch: Instant,
    connect: Semaphore,
    counters: Counters,
}

impl Shared {
    fn us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

pub struct Fleet {
    pub agents: Vec<Arc<AgentState>>,
    shared: Arc<Shared>,
    ingest: watch::Sender<Option<Ingest>>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Starts one task per agent; they connect at once (at most
    /// `connect_concurrency` handshakes in flight).
    pub fn start(cfg: FleetConfig, agents: Vec<(String, Identity)>) -> Self {
        let shared = Arc::new(Shared {
            url: format!("https://{}", cfg.agent_addr),
            ca: Certificate::from_pem(cfg.ca_pem.as_bytes()),
            connect: Semaphore::new(cfg.connect_concurrency.max(1)),
            epoch: Instant::now(),
            counters: Counters::default(),
            cfg,
        });
        let (ingest, ingest_rx) = watch::channel(None);
        let shutdown = CancellationToken::new();
        let mut states = Vec::with_capacity(agents.len());
        let mut tasks = Vec::with_capacity(agents.len());
        let addrs: Vec<SocketAddr> = std::iter::once(shared.cfg.agent_addr)
            .chain(shared.cfg.also_agent_addrs.iter().copied())
            .collect();
        for (i, (name, identity)) in agents.into_iter().enumerate() {
            let (frozen, frozen_rx) = watch::channel(false);
            let state = Arc::new(AgentState {
                name,
                freeze: Arc::new(Freeze::default()),
                frozen,
                welcomes: AtomicU64::new(0),
                acked_in_session: AtomicU64::new(0),
                plan_generation: AtomicU64::new(0),
                tracked_revision: AtomicU64::new(0),
                tracked_at_us: AtomicU64::new(0),
            });
            let agent = Agent {
                shared: shared.clone(),
                addr: addrs[i % addrs.len()],
                me: state.clone(),
                identity,
                frozen: frozen_rx,
                ingest: ingest_rx.clone(),
                shutdown: shutdown.clone(),
                sim: Sim::default(),
            };
            tasks.push(tokio::spawn(agent.run()));
            states.push(state);
        }
        Self {
            agents: states,
            shared,
            ingest,
            shutdown,
            tasks,
        }
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// µs since the fleet's epoch, the clock of `tracked_at_us`.
    pub fn now_us(&self) -> u64 {
        self.shared.us()
    }

    /// Freezes (or thaws) agent `i`: its task and its socket stand still.
    pub fn freeze(&self, i: usize, frozen: bool) {
        let a = &self.agents[i];
        a.freeze.set(frozen);
        a.frozen.send_replace(frozen);
    }

    pub fn set_ingest(&self, ingest: Option<Ingest>) {
        self.ingest.send_replace(ingest);
    }

    pub fn count(&self, pred: impl Fn(&AgentState) -> bool) -> usize {
        self.agents.iter().filter(|a| pred(a)).count()
    }

    /// Waits until `pred` holds for every agent; the time it took, or how
    /// many still fail it at the deadline.
    pub async fn wait_all(
        &self,
        timeout: Duration,
        pred: impl Fn(&AgentState) -> bool,
    ) -> Result<Duration, usize> {
        let t0 = Instant::now();
        loop {
            let missing = self.agents.iter().filter(|a| !pred(a)).count();
            if missing == 0 {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > timeout {
                return Err(missing);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

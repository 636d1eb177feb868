//! convoy-agent: makes a host match the NodePlan its coordinator sends, and
//! reports back. `run` is the whole agent; the binary and the coordinator's
//! dev mode both call it.

pub mod controller;
pub mod enroll;
pub mod exec;
pub mod facts;
pub mod gpu;
pub mod install;
pub mod logs;
pub mod pki;
pub mod plan;
pub mod probe;
pub mod proxy;
pub mod reconcile;
pub mod renew;
pub mod runtime;
pub mod secrets;
pub mod session;
pub mod state;
pub mod status;
pub mod swarm;
pub mod tunnel;
pub mod units;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use crate::reconcile::{Reconciler, Snapshot};
use crate::runtime::systemd::DbusSystemd;
use crate::runtime::DockerRuntime;
use crate::session::Session;
use crate::units::{UnitReconciler, UnitsConfig};

/// How the agent finds its coordinators, identity and local state.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// `host:port` of each coordinator, tried in turn.
    pub coordinators: Vec<String>,
    /// Holds `ca.pem`, `agent.pem` and `agent.key`.
    pub pki_dir: PathBuf,
    /// Where `plan.pb` lives; its filesystem's use goes out with heartbeats.
    pub data_dir: PathBuf,
    /// Reported in NodeFacts for placement.
    pub labels: BTreeMap<String, String>,
    /// Test-only: the node's GPUs from this JSON file instead of NVML or
    /// nvidia-smi (`--gpu-facts-file`, docs/GPU.md).
    pub gpu_facts_file: Option<PathBuf>,
    /// Normalised roots under which containers may bind-mount host paths
    /// (`--allow-bind`); reported in NodeFacts and enforced on create.
    pub allowed_binds: Vec<String>,
    /// The kinds of host access containers may have (`--allow-host-access`:
    /// `privileged`, `cap_add`, ..., or `all`); reported in NodeFacts and
    /// enforced on create.
    pub allowed_host_access: Vec<String>,
    /// Where secret values are kept (`--secrets-dir`): must be on tmpfs.
    pub secrets_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no coordinator address given: pass --coordinator HOST:PORT")]
    NoCoordinator,
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the proxy cannot listen on {addr}: {source}")]
    ProxyListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the agent's {task} task failed: {source}")]
    Task {
        task: &'static str,
        source: tokio::task::JoinError,
    },
}

/// What an agent may be given besides its `AgentConfig`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub units: UnitsConfig,
    /// Says READY=1 and sends watchdog keep-alives to systemd (the binary
    /// under its unit; not an agent embedded in another daemon).
    pub notify_systemd: bool,
    /// Where the ingress proxy listens (`--proxy-listen`); `None`: no proxy.
    pub proxy_listen: Option<std::net::SocketAddr>,
    /// Where the proxy terminates TLS (`--proxy-tls-listen`); only with
    /// `proxy_listen`.
    pub proxy_tls_listen: Option<std::net::SocketAddr>,
    /// Threads serving each proxy listener; `None`:
    /// [`proxy::default_threads`].
    pub proxy_threads: Option<usize>,
    /// How often the proxy's figures are sent; `None`:
    /// [`session::PROXY_STATS_EVERY`].
    pub proxy_stats_every: Option<std::time::Duration>,
}

/// Runs until `shutdown` is cancelled. Containers are left running on exit.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), Error> {
    run_with(config, RunOptions::default(), shutdown).await
}

/// `run`, with the unit directory and systemd notifications chosen.
pub async fn run_with(
    config: AgentConfig,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let RunOptions {
        units,
        notify_systemd,
        proxy_listen,
        proxy_tls_listen,
        proxy_threads,
        proxy_stats_every,
    } = options;
    let AgentConfig {
        coordinators,
        pki_dir,
        data_dir,
        labels,
        gpu_facts_file,
        allowed_binds,
        allowed_host_access,
        secrets_dir,
    } = config;
    if coordinators.is_empty() {
        return Err(Error::NoCoordinator);
    }
    let identity = pki::Pki::load(&pki_dir).await?;
    let node = identity.node_name.clone();
    tokio::fs::create_dir_all(&data_dir)
        .await
        .map_err(|source| Error::DataDir {
            path: data_dir.clone(),
            source,
        })?;
    let plan = match state::load_valid(&data_dir).await {
        Ok(plan) => plan,
        Err(e) => {
            // Treated like no plan at all: nothing is removed until one comes.
            warn!("{e}; waiting for a plan from the coordinator");
            None
        }
    };
    match &plan {
        Some(p) => info!(node = %node, generation = p.generation(), "enforcing the stored plan"),
        None => info!(node = %node, "no stored plan; waiting for one from the coordinator"),
    }
    let secrets = {
        let dir = secrets_dir.clone();
        tokio::task::spawn_blocking(move || secrets::NodeSecrets::open(dir))
            .await
            .map_err(|source| Error::Task {
                task: "secrets",
                source,
            })?
    };
    if let Some(problem) = secrets.problem() {
        warn!(node = %node, "{problem}; workloads that need a secret will fail");
    }
    let secrets = Arc::new(secrets);
    // The stored plan holds no values: those it references come from the
    // node's cache (tmpfs), until the coordinator sends them again.
    let plan = match plan {
        Some(plan) if !plan.secret_refs().is_empty() => {
            let refs = plan.secret_refs();
            let cache = secrets.clone();
            let wanted = refs.clone();
            let values = tokio::task::spawn_blocking(move || cache.load_cache(wanted))
                .await
                .unwrap_or_default();
            if values.len() < refs.len() {
                warn!(
                    node = %node,
                    missing = refs.len() - values.len(),
                    "secret values of the stored plan are not in {}: the workloads that need                      them wait for the coordinator",
                    secrets.dir().display()
                );
            }
            Some(plan.with_secret_values(values))
        }
        other => other,
    };

    if !allowed_host_access.is_empty() {
        info!(node = %node, kinds = ?allowed_host_access, "containers may have this host access");
    }
    if !allowed_binds.is_empty() {
        info!(node = %node, roots = ?allowed_binds, "containers may bind-mount host paths under these roots");
    }
    let runtime = Arc::new(
        DockerRuntime::with_allowed_binds(allowed_binds.clone())
            .with_allowed_host_access(allowed_host_access.clone())
            .with_config_dir(data_dir.join("configs")),
    );
    // Bound before anything runs, so a taken port fails the start.
    let proxy_listener = match proxy_listen {
        Some(addr) => {
            Some(proxy::bind(addr).map_err(|source| Error::ProxyListen { addr, source })?)
        }
        None => None,
    };
    let proxy_tls_listener = match (proxy_listen, proxy_tls_listen) {
        (Some(_), Some(addr)) => {
            Some(proxy::bind(addr).map_err(|source| Error::ProxyListen { addr, source })?)
        }
        (None, Some(addr)) => {
            return Err(Error::ProxyListen {
                addr,
                source: std::io::Error::other(
                    "the TLS listener needs the cleartext one too (--proxy-listen)",
                ),
            })
        }
        _ => None,
    };
    let pools = proxy::Pools::new();
    let proxy_stats = proxy::Stats::new();
    let (plan_tx, plan_rx) = watch::channel(plan.map(Arc::new));
    let (containers_tx, containers_rx) = watch::channel(Snapshot::default());
    let (units_tx, units_rx) = watch::channel(BTreeMap::new());
    let (swarm_tx, swarm_rx) = watch::channel(BTreeMap::new());
    let (snapshot_tx, snapshot_rx) = watch::channel(Snapshot::default());
    let (events_tx, _) = broadcast::channel(256);

    let reconciler = Reconciler::new(
        runtime.clone(),
        node.clone(),
        containers_tx,
        events_tx.clone(),
    )
    .with_secrets(secrets.clone())
    .with_drains(pools.clone());
    let proxy_task = proxy_listener.map(|listener| {
        tokio::spawn(
            proxy::run(
                proxy::Listeners {
                    http: listener,
                    tls: proxy_tls_listener,
                    threads: proxy_threads.unwrap_or_else(proxy::default_threads),
                },
                (pools.clone(), proxy_stats.clone()),
                runtime.clone(),
                node.clone(),
                plan_tx.subscribe(),
                containers_rx.clone(),
                shutdown.clone(),
            )
            .instrument(info_span!("proxy", node = %node)),
        )
    });
    let reconcile_task = tokio::spawn(
        reconciler
            .run(plan_rx, shutdown.clone())
            .instrument(info_span!("reconcile", node = %node)),
    );
    // Connects to the system bus only once the plan has a unit in it.
    let unit_reconciler = UnitReconciler::new(
        Arc::new(DbusSystemd::new()),
        node.clone(),
        units,
        units_tx,
        events_tx.clone(),
    )
    .with_secrets(secrets.clone());
    let units_task = tokio::spawn(
        unit_reconciler
            .run(plan_tx.subscribe(), shutdown.clone())
            .instrument(info_span!("units", node = %node)),
    );
    // Touches Swarm only while the plan says this node drives its cluster.
    let swarm_driver = swarm::SwarmDriver::new(
        Arc::new(swarm::DockerSwarm::new()),
        swarm_tx,
        events_tx.clone(),
    );
    let swarm_task = tokio::spawn(
        swarm_driver
            .run(plan_tx.subscribe(), shutdown.clone())
            .instrument(info_span!("swarm", node = %node)),
    );
    let merge_task = tokio::spawn(
        status::run(
            containers_rx,
            units_rx,
            swarm_rx,
            snapshot_tx,
            shutdown.clone(),
        )
        .instrument(info_span!("statuses", node = %node)),
    );
    let session = Session {
        coordinators,
        pki_dir,
        data_dir,
        labels,
        gpus: gpu::detect(gpu_facts_file).await,
        allowed_binds,
        allowed_host_access,
        node: node.clone(),
        runtime,
        plan: plan_tx,
        snapshot: snapshot_rx,
        events: events_tx,
        secrets,
        swarm_check: session::SWARM_CHECK,
        proxy_stats: proxy_listen.map(|_| {
            (
                proxy_stats,
                proxy_stats_every.unwrap_or(session::PROXY_STATS_EVERY),
            )
        }),
    };
    let session_task = tokio::spawn(
        session
            .run(shutdown.clone())
            .instrument(info_span!("session", node = %node)),
    );

    let notify_task = notify_systemd.then(|| {
        tokio::spawn(
            convoy_api::notify::supervise(shutdown.clone()).instrument(info_span!("sd_notify")),
        )
    });

    let (reconciled, units_done, swarm_done, merged, sessions) = tokio::join!(
        reconcile_task,
        units_task,
        swarm_task,
        merge_task,
        session_task
    );
    if let Some(task) = notify_task {
        let _ = task.await;
    }
    if let Some(task) = proxy_task {
        task.await.map_err(|source| Error::Task {
            task: "proxy",
            source,
        })?;
    }
    reconciled.map_err(|source| Error::Task {
        task: "reconcile",
        source,
    })?;
    units_done.map_err(|source| Error::Task {
        task: "units",
        source,
    })?;
    swarm_done.map_err(|source| Error::Task {
        task: "swarm",
        source,
    })?;
    merged.map_err(|source| Error::Task {
        task: "statuses",
        source,
    })?;
    sessions.map_err(|source| Error::Task {
        task: "session",
        source,
    })?;
    info!(node = %node, "agent stopped; containers and units left running");
    Ok(())
}

/// An error and its sources on one line (`convoy_api::errors::chain`).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    convoy_api::errors::chain(error)
}

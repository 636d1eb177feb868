//! The benchmarks. Each starts (or reaches) a coordinator, connects a fleet
//! of simulated agents and prints its figures as `key=value` lines, one per
//! round and a summary (median and range over rounds).

pub mod fanout;
pub mod ingest;
pub mod loss;
pub mod memory;
pub mod reconnect;

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::PathBuf,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{
    child::{self, Coordinator, Target},
    control::{self, Control},
    fleet::{Fleet, FleetConfig},
    identity,
};

/// The service the scenarios apply: `deploy.mode: global`, one instance on
/// every node. Agents time its revisions.
pub const SERVICE: &str = "bench-global";

/// Options every scenario takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// The convoyd to start (default: beside this executable).
    #[arg(long)]
    pub convoyd: Option<PathBuf>,
    /// `convoyd --node-lost-after` for the started coordinator.
    #[arg(long, default_value = "2500ms")]
    pub lost_after: String,
    /// Use a running coordinator's agent address instead of starting one
    /// (needs --api and --data-dir).
    #[arg(long, requires_all = ["api", "data_dir"])]
    pub coordinator: Option<SocketAddr>,
    /// The running coordinator's API address.
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// The running coordinator's data dir (its CA signs the agents'
    /// certificates; admin.token).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The running coordinator's pid (memory and CPU figures).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Other coordinators' agent ports (standbys on the same etcd, which
    /// serve agents too): the fleet's agents are spread over the
    /// coordinator and these, in turn.
    #[arg(long, value_delimiter = ',', requires = "coordinator")]
    pub also_agents: Vec<SocketAddr>,
    /// TLS handshakes and Session calls in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Simulated time from a plan to its instances running.
    #[arg(long, default_value_t = 0)]
    pub start_delay_ms: u64,
    /// Node names are PREFIX-00001, ...
    #[arg(long, default_value = "sim")]
    pub name_prefix: String,
    /// How long connecting the whole fleet may take.
    #[arg(long, default_value_t = 600)]
    pub connect_timeout_secs: u64,
    /// A session this long resets an agent's reconnect backoff (the real
    /// agent's: 120 s).
    #[arg(long, default_value_t = 120)]
    pub healthy_session_secs: u64,
}

impl Common {
    pub fn for_test(convoyd: PathBuf, n: usize) -> Self {
        Self {
            n,
            convoyd: Some(convoyd),
            lost_after: "2500ms".into(),
            coordinator: None,
            api: None,
            data_dir: None,
            pid: None,
            also_agents: Vec::new(),
            connect_concurrency: 64,
            start_delay_ms: 0,
            name_prefix: "sim".into(),
            connect_timeout_secs: 60,
            healthy_session_secs: 120,
        }
    }

    fn target(&self) -> Target {
        match (self.coordinator, self.api, &self.data_dir) {
            (Some(agent_addr), Some(api_addr), Some(data_dir)) => Target::External {
                agent_addr,
                api_addr,
                data_dir: data_dir.clone(),
                pid: self.pid,
            },
            _ => Target::Spawn {
                bin: self.convoyd.clone().unwrap_or_else(child::default_convoyd),
                lost_after: self.lost_after.clone(),
            },
        }
    }
}

/// Figures of connecting the fleet.
#[derive(Debug, Clone, Copy)]
pub struct Connect {
    pub certs_s: f64,
    /// Every agent welcomed (harness view).
    pub welcomed_s: f64,
    /// Every node ready (coordinator view, ListNodes).
    pub ready_s: f64,
}

/// A coordinator, its API and (once connected) the fleet.
pub struct Bench {
    pub coord: Coordinator,
    pub control: Control,
    pub fleet: Option<Fleet>,
    pub names: Vec<String>,
    pub common: Common,
}

impl Bench {
    /// Starts (or reaches) the coordinator; no agents yet.
    pub async fn coordinator(common: &Common) -> Result<Self> {
        let limit = crate::raise_nofile_limit().context("cannot raise RLIMIT_NOFILE")?;
        if (limit as usize) < common.n + 256 {
            eprintln!(
                "warning: the open-file limit is {limit}; {} agents need more (and so does the coordinator)",
                common.n
            );
        }
        let coord = Coordinator::start(common.target()).await?;
        let control = Control::connect(coord.api_addr, coord.http_addr, &coord.data_dir).await?;
        Ok(Self {
            coord,
            control,
            fleet: None,
            names: Vec::new(),
            common: common.clone(),
        })
    }

    /// Starts (or reaches) the coordinator and connects the fleet.
    pub async fn start(common: &Common) -> Result<Self> {
        let mut bench = Self::coordinator(common).await?;
        bench.connect().await?;
        Ok(bench)
    }

    pub fn fleet(&self) -> &Fleet {
        self.fleet.as_ref().expect("the fleet is connected")
    }

    /// Issues N certificates, starts N agents and waits until the
    /// coordinator lists them all ready.
    pub async fn connect(&mut self) -> Result<Connect> {
        let n = self.common.n;
        self.names = (1..=n)
            .map(|i| format!("{}-{i:05}", self.common.name_prefix))
            .collect();
        let t = Instant::now();
        let data_dir = self.coord.data_dir.clone();
        let names = self.names.clone();
        let identities =
            tokio::task::spawn_blocking(move || identity::issue(&data_dir, &names)).await??;
        let certs_s = t.elapsed().as_secs_f64();
        let cfg = FleetConfig {
            agent_addr: self.coord.agent_addr,
            also_agent_addrs: self.common.also_agents.clone(),
            ca_pem: identity::ca_pem(&self.coord.data_dir)?,
            start_delay: Duration::from_millis(self.common.start_delay_ms),
            tracked_service: SERVICE.into(),
            connect_concurrency: self.common.connect_concurrency,
            healthy_session: Duration::from_secs(self.common.healthy_session_secs),
        };
        let t = Instant::now();
        let fleet = Fleet::start(cfg, self.names.iter().cloned().zip(identities).collect());
        let timeout = Duration::from_secs(self.common.connect_timeout_secs);
        let welcomed = {
            let progress = async {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    eprintln!(
                        "connect: {} of {n} welcomed after {:.0} s, {} session errors",
                        fleet.count(|a| a.welcomes.load(Ordering::Relaxed) > 0),
                        t.elapsed().as_secs_f64(),
                        fleet.counters().session_errors.load(Ordering::Relaxed),
                    );
                }
            };
            tokio::select! {
                w = fleet.wait_all(timeout, |a| a.welcomes.load(Ordering::Acquire) > 0) => w,
                _ = progress => unreachable!("the progress loop never ends"),
            }
        };
        self.fleet = Some(fleet);
        let welcomed = match welcomed {
            Ok(d) => d,
            Err(missing) => bail!(
                "{missing} of {n} agents were not welcomed within {timeout:?}; last error: {}",
                self.fleet().counters().last_error()
            ),
        };
        self.wait_coordinator_view(timeout, false).await?;
        let c = Connect {
            certs_s,
            welcomed_s: welcomed.as_secs_f64(),
            ready_s: t.elapsed().as_secs_f64(),
        };
        println!(
            "connect n={n} certs_s={:.2} all_welcomed_s={:.2} ({:.0} sessions/s) coordinator_all_ready_s={:.2} session_errors={}",
            c.certs_s,
            c.welcomed_s,
            n as f64 / c.welcomed_s,
            c.ready_s,
            self.fleet().counters().session_errors.load(Ordering::Relaxed),
        );
        Ok(c)
    }

    /// Polls ListNodes until every agent's node is ready (and, with
    /// `acked`, has acknowledged its current plan). API errors (a
    /// restarting coordinator) are retried.
    pub async fn wait_coordinator_view(&self, timeout: Duration, acked: bool) -> Result<Duration> {
        let t0 = Instant::now();
        let names: HashSet<&str> = self.names.iter().map(String::as_str).collect();
        let every = Duration::from_millis(if self.names.len() > 2000 { 500 } else { 100 });
        loop {
            let last = match self.control.nodes().await {
                Ok(nodes) => {
                    let (ready, done) = control::all_ready_and_acked(&nodes, &names);
                    if ready == names.len() && (!acked || done == names.len()) {
                        return Ok(t0.elapsed());
                    }
                    format!("{ready} ready, {done} acked of {}", names.len())
                }
                Err(e) => format!("{e:#}"),
            };
            if t0.elapsed() > timeout {
                bail!("the coordinator's view did not settle within {timeout:?}: {last}");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Applies the global service (with `round` in its environment, so each
    /// call is a new revision); returns the new revision.
    pub async fn apply_global(&self, round: u64) -> Result<u64> {
        let spec = format!(
            "services:\n  {SERVICE}:\n    image: convoy-bench/fake:1\n    environment:\n      ROUND: \"{round}\"\n    deploy:\n      mode: global\n"
        );
        let resp = self.control.apply("bench-global.yaml", &spec).await?;
        let svc = resp
            .services
            .iter()
            .find(|s| s.service == SERVICE)
            .context("the apply answered without the service")?;
        Ok(svc.revision)
    }

    /// Applies the global service and waits until every agent acked it.
    pub async fn deploy_everywhere(&self, round: u64) -> Result<Duration> {
        let t0 = Instant::now();
        let rev = self.apply_global(round).await?;
        let timeout = Duration::from_secs(self.common.connect_timeout_secs);
        self.fleet()
            .wait_all(timeout, |a| {
                a.tracked_revision.load(Ordering::Acquire) >= rev
            })
            .await
            .map_err(|missing| anyhow::anyhow!("{missing} agents never acked revision {rev}"))?;
        Ok(t0.elapsed())
    }

    /// Waits until the global service's rollout is no longer running.
    pub async fn wait_rollout_done(&self, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            let state = self
                .control
                .status(SERVICE)
                .await
                .ok()
                .and_then(|s| s.rollout)
                .map(|r| r.state);
            if state.as_deref().is_none_or(|s| s != "running") {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > timeout {
                bail!("the rollout of {SERVICE} still runs after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(f) = self.fleet.take() {
            f.stop().await;
        }
    }
}

/// Samples RSS `count` times, `every` apart; the median.
pub async fn rss_median(coord: &Coordinator, count: usize, every: Duration) -> Option<u64> {
    let mut v = Vec::with_capacity(count);
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        v.push(coord.rss_kib()?);
    }
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

//! The agent's half of `AgentService.Session`: dials a coordinator over mTLS,
//! says Hello with a full status snapshot, stores and acknowledges plans,
//! answers commands and pings, and streams status changes, events and
//! heartbeats; reconnects with backoff, taking turns over the coordinators
//! given (a short hop to the next one, the backoff once all have failed).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use convoy_proto::agent_service_client::AgentServiceClient;
use convoy_proto::{
    ack, agent_message, command, coordinator_message, Ack, AgentMessage, Command,
    CoordinatorMessage, Event, Heartbeat, Hello, NodePlan, Ping, Pong, RenewRequest, RunProbes,
    StatusReport, VolumeInfo, Welcome, WorkloadStatus, COORDINATOR_SERVER_NAME,
};
use futures::FutureExt;
use rand::Rng;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::error_chain;
use crate::facts;
use crate::pki::Pki;
use crate::plan::Plan;
use crate::probe;
use crate::reconcile::{unix_ms, Snapshot};
use crate::renew::Renewal;
use crate::runtime::Runtime;
use crate::secrets::NodeSecrets;
use crate::state;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the coordinator may take to answer the Session call.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(2000);
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
const RECONNECT_START: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// The pause before dialing the next coordinator after one failed, while
/// others are left to try: when the leader dies, a standby leads within
/// seconds, and the agent should not sit out a backoff before dialing it.
const NEXT_COORDINATOR: Duration = Duration::from_millis(250);
/// A session that lasted this long resets the reconnect backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(120);
const OUTBOUND_BUFFER: usize = 256;
/// The largest message the coordinator may send (a node's plan): gRPC's
/// default 4 MiB is too small for a plan whose instances carry configs
/// (up to 512 KiB each, once per instance), and a plan the agent cannot
/// decode would leave the node without any plan.
const MAX_PLAN_BYTES: usize = 256 << 20;
/// How often the certificate's age is checked against its lifetime.
/// How often the proxy's figures go out by default (`--proxy-stats-interval-ms`).
pub const PROXY_STATS_EVERY: Duration = Duration::from_secs(5);
const RENEW_CHECK: Duration = Duration::from_secs(1);
/// How often the engine's Swarm state is compared with the one sent in
/// Hello (one `docker info` each time).
pub const SWARM_CHECK: Duration = Duration::from_secs(10);
/// Any message shows the coordinator the agent is alive, so a heartbeat is
/// only sent after an interval without one; but host metrics ride on
/// heartbeats, so one goes out at least this often.
const METRICS_MAX_AGE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error("coordinator address `{addr}`: {reason}")]
    Address { addr: String, reason: String },
    #[error("cannot reach the coordinator at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error(
        "the coordinator at {addr} refused this agent's certificate ({reason}): \
         is agent.pem issued by the coordinator's CA, and is the node still allowed?"
    )]
    CertificateRefused { addr: String, reason: String },
    #[error(
        "the coordinator at {addr} presented a certificate this agent does not trust \
         ({reason}): check ca.pem"
    )]
    CoordinatorNotTrusted { addr: String, reason: String },
    #[error("session with {addr} failed: {reason}")]
    Stream { addr: String, reason: String },
}

/// How a session ended without an error.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Shutdown,
    /// The coordinator closed the stream.
    Closed,
    /// The engine's Swarm state changed since Hello: say Hello again.
    SwarmChanged,
}

/// Everything a session needs; one per agent, serving one stream at a time.
pub struct Session<R: Runtime> {
    pub coordinators: Vec<String>,
    pub pki_dir: PathBuf,
    pub data_dir: PathBuf,
    pub labels: BTreeMap<String, String>,
    /// The node's GPUs: facts with each Hello, figures with each heartbeat.
    pub gpus: crate::gpu::Gpus,
    /// Roots under which containers may bind-mount host paths (facts).
    pub allowed_binds: Vec<String>,
    /// The kinds of host access containers may have (facts).
    pub allowed_host_access: Vec<String>,
    /// The node name, from the agent's certificate.
    pub node: String,
    pub runtime: Arc<R>,
    /// The plan the reconciler enforces; the session replaces it.
    pub plan: watch::Sender<Option<Arc<Plan>>>,
    pub snapshot: watch::Receiver<Snapshot>,
    pub events: broadcast::Sender<Event>,
    /// Where the secret values of each new plan are cached (tmpfs).
    pub secrets: Arc<NodeSecrets>,
    /// How often the engine's Swarm state is compared with Hello's
    /// ([`SWARM_CHECK`]; shorter in tests).
    pub swarm_check: Duration,
    /// The proxy's request figures and how often they are sent (when they
    /// changed); `None`: no proxy.
    pub proxy_stats: Option<(Arc<crate::proxy::Stats>, Duration)>,
}

impl<R: Runtime> Session<R> {
    /// Connects, serves and reconnects until `shutdown`, trying the
    /// coordinators in turn.
    pub async fn run(mut self, shutdown: CancellationToken) {
        if self.coordinators.is_empty() {
            warn!("no coordinator to connect to");
            shutdown.cancelled().await;
            return;
        }
        let mut failures = 0u32;
        let mut turn = 0usize;
        // Outlives sessions: CPU use is measured between heartbeats.
        let mut sampler =
            facts::HostSampler::new(self.data_dir.clone()).with_gpus(self.gpus.clone());
        loop {
            let addr = self.coordinators[turn % self.coordinators.len()].clone();
            turn = turn.wrapping_add(1);
            let mut connected_at = None;
            let result = self
                .serve(&addr, &shutdown, &mut connected_at, &mut sampler)
                .await;
            if connected_at.is_some_and(|t: Instant| t.elapsed() >= HEALTHY_SESSION) {
                failures = 0;
            }
            match result {
                Ok(End::Shutdown) => return,
                Ok(End::Closed) => info!("the coordinator at {addr} closed the session"),
                Ok(End::SwarmChanged) => {
                    // Facts go up only with Hello: reconnect at once, to the same coordinator.
                    turn = turn.wrapping_sub(1);
                    continue;
                }
                Err(e) => warn!("{e}"),
            }
            if shutdown.is_cancelled() {
                return;
            }
            failures = failures.saturating_add(1);
            let delay = next_delay(
                self.coordinators.len(),
                failures,
                rand::rng().random_range(0.5..=1.0),
            );
            debug!("reconnecting in {delay:?}");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One session with one coordinator, from dial to end.
    async fn serve(
        &mut self,
        addr: &str,
        shutdown: &CancellationToken,
        connected_at: &mut Option<Instant>,
        sampler: &mut facts::HostSampler,
    ) -> Result<End, SessionError> {
        let pki = Pki::load(&self.pki_dir).await?;
        if pki.node_name != self.node {
            warn!(
                "agent.pem now names node `{}`, this agent runs as `{}`; restart it to switch",
                pki.node_name, self.node
            );
        }
        let channel = tokio::select! {
            _ = shutdown.cancelled() => return Ok(End::Shutdown),
            channel = connect(addr, &pki) => channel?,
        };
        // Tunnels (logs, exec, run) dial connections of their own.
        let dialer = crate::tunnel::Dialer {
            addr: addr.to_string(),
            pki_dir: self.pki_dir.clone(),
        };
        let mut client = AgentServiceClient::new(channel).max_decoding_message_size(MAX_PLAN_BYTES);

        let (tx, rx) = mpsc::channel::<AgentMessage>(OUTBOUND_BUFFER);
        let mut events = self.events.subscribe();
        let mut facts =
            facts::collect(self.runtime.as_ref(), &self.labels, &self.allowed_binds).await;
        facts.allowed_host_access = self.allowed_host_access.clone();
        facts.gpus = sampler.gpu_devices().await;
        let hello_swarm = facts.swarm.clone();
        let last_applied_generation = self
            .plan
            .borrow()
            .as_ref()
            .map_or(0, |plan| plan.generation());
        let mut sent = self.snapshot.borrow_and_update().statuses.clone();
        let hello = Hello {
            facts: Some(facts),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            last_applied_generation,
            capabilities: vec![convoy_proto::CAPABILITY_ENCODED_PLAN.to_string()],
        };
        let full = StatusReport {
            full_snapshot: true,
            workloads: sent.values().cloned().collect(),
            removed: Vec::new(),
        };
        // The buffer is empty: these cannot block.
        for msg in [
            agent_message::Msg::Hello(hello),
            agent_message::Msg::Status(full),
        ] {
            tx.send(AgentMessage { msg: Some(msg) })
                .await
                .map_err(|_| stream_error(addr, "outbound stream closed"))?;
        }

        let opened = tokio::select! {
            _ = shutdown.cancelled() => return Ok(End::Shutdown),
            opened = tokio::time::timeout(OPEN_TIMEOUT, client.session(ReceiverStream::new(rx))) => opened,
        };
        let mut inbound = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(refused_or(classify(addr, &status))),
            Err(_) => {
                return Err(SessionError::Unreachable {
                    addr: addr.to_string(),
                    reason: format!("no answer to Session within {}s", OPEN_TIMEOUT.as_secs()),
                })
            }
        };
        *connected_at = Some(Instant::now());
        info!("session open with the coordinator at {addr}");

        let mut heartbeat = heartbeat_timer(DEFAULT_HEARTBEAT);
        let mut last_beat = Instant::now();
        let mut renewal = Renewal::new(self.pki_dir.clone(), self.node.clone(), &pki.cert_pem);
        let mut renew_check = heartbeat_timer(RENEW_CHECK);
        // Figures go out only when they changed; the first of each
        // session always does (the coordinator forgot the node's).
        let mut proxy_tick = heartbeat_timer(
            self.proxy_stats
                .as_ref()
                .map_or(Duration::from_secs(3600), |s| s.1),
        );
        let mut proxy_sent: Option<convoy_proto::ProxyStats> = None;
        let every = self.swarm_check;
        let mut swarm_check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        swarm_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // RunProbes answers take up to a probe timeout: they run beside the
        // loop, which keeps answering pings. Dropped (aborted) with the
        // session.
        let mut probe_runs = JoinSet::new();
        // Tunnels the coordinator asked for; they end with the session.
        let mut tunnels = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(End::Shutdown),
                Some(_) = probe_runs.join_next(), if !probe_runs.is_empty() => {}
                Some(_) = tunnels.join_next(), if !tunnels.is_empty() => {}
                message = inbound.message() => match message {
                    Ok(Some(CoordinatorMessage {
                        msg: Some(coordinator_message::Msg::Certificate(answer)),
                    })) => renewal.answer(answer),
                    Ok(Some(CoordinatorMessage {
                        msg: Some(coordinator_message::Msg::Command(Command {
                            id,
                            kind: Some(command::Kind::RunProbes(run)),
                        })),
                    })) => {
                        probe_runs.spawn(
                            self.run_probes(id, run, tx.clone())
                                .instrument(info_span!("run_probes")),
                        );
                    }
                    Ok(Some(CoordinatorMessage {
                        msg: Some(coordinator_message::Msg::Command(Command {
                            id,
                            kind: Some(command::Kind::OpenLogs(open)),
                        })),
                    })) => {
                        let statuses = self.snapshot.borrow().statuses.clone();
                        let resolved = crate::tunnel::resolve(open, &statuses, &self.node);
                        let (ok, error) = match resolved {
                            Ok(request) => {
                                tunnels.spawn(
                                    crate::tunnel::serve_logs(
                                        dialer.clone(),
                                        self.node.clone(),
                                        self.runtime.clone(),
                                        request,
                                    )
                                    .instrument(info_span!("logs_tunnel")),
                                );
                                (true, String::new())
                            }
                            Err(error) => (false, error),
                        };
                        let ack = Ack {
                            target: Some(ack::Target::CommandId(id)),
                            ok,
                            error,
                            probe_results: Vec::new(),
                            volumes: Vec::new(),
                        };
                        send(&tx, addr, agent_message::Msg::Ack(ack)).await?;
                        postpone(&mut heartbeat, last_beat);
                    }
                    Ok(Some(CoordinatorMessage {
                        msg: Some(coordinator_message::Msg::Command(Command {
                            id,
                            kind: Some(kind @ (command::Kind::OpenExec(_) | command::Kind::RunOnce(_))),
                        })),
                    })) => {
                        let resolved = match kind {
                            command::Kind::OpenExec(open) => {
                                let statuses = self.snapshot.borrow().statuses.clone();
                                crate::exec::resolve_exec(open, &statuses, &self.node).map(|request| {
                                    crate::exec::serve_exec(dialer.clone(), self.runtime.clone(), request)
                                        .instrument(info_span!("exec_tunnel"))
                                        .boxed()
                                })
                            }
                            command::Kind::RunOnce(open) => {
                                let plan = self.plan.borrow().clone();
                                crate::exec::resolve_run(open, plan.as_deref(), &self.node).map(|request| {
                                    crate::exec::serve_run(
                                        dialer.clone(),
                                        self.node.clone(),
                                        self.runtime.clone(),
                                        self.secrets.clone(),
                                        request,
                                    )
                                    .instrument(info_span!("run_tunnel"))
                                    .boxed()
                                })
                            }
                            _ => Err("not a tunnel command".to_string()),
                        };
                        let (ok, error) = match resolved {
                            Ok(task) => {
                                tunnels.spawn(task);
                                (true, String::new())
                            }
                            Err(error) => (false, error),
                        };
                        let ack = Ack {
                            target: Some(ack::Target::CommandId(id)),
                            ok,
                            error,
                            probe_results: Vec::new(),
                            volumes: Vec::new(),
                        };
                        send(&tx, addr, agent_message::Msg::Ack(ack)).await?;
                        postpone(&mut heartbeat, last_beat);
                    }
                    Ok(Some(message)) => {
                        if let Some(reply) = self.handle(addr, message, &mut heartbeat).await {
                            send(&tx, addr, reply).await?;
                            postpone(&mut heartbeat, last_beat);
                        }
                    }
                    Ok(None) => return Ok(End::Closed),
                    Err(status) => return Err(classify(addr, &status)),
                },
                _ = renew_check.tick() => {
                    if let Some(csr_pem) = renewal.request_if_due(SystemTime::now()) {
                        send(&tx, addr, agent_message::Msg::Renew(RenewRequest { csr_pem })).await?;
                        postpone(&mut heartbeat, last_beat);
                    }
                }
                _ = swarm_check.tick() => {
                    // An engine that does not answer changes nothing.
                    if let Some(now) = facts::swarm(self.runtime.as_ref()).await {
                        if now != hello_swarm {
                            info!("the engine's Swarm state changed; saying Hello again with the new facts");
                            return Ok(End::SwarmChanged);
                        }
                    }
                }
                _ = proxy_tick.tick(), if self.proxy_stats.is_some() => {
                    if let Some((stats, _)) = &self.proxy_stats {
                        let now = stats.report();
                        if proxy_sent.as_ref() != Some(&now) && !(proxy_sent.is_none() && now.entries.is_empty()) {
                            send(&tx, addr, agent_message::Msg::ProxyStats(now.clone())).await?;
                            postpone(&mut heartbeat, last_beat);
                            proxy_sent = Some(now);
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    let containers = self.snapshot.borrow().containers;
                    let beat = Heartbeat {
                        sent_unix_ms: unix_ms(SystemTime::now()),
                        metrics: Some(sampler.sample(containers).await),
                    };
                    send(&tx, addr, agent_message::Msg::Heartbeat(beat)).await?;
                    last_beat = Instant::now();
                }
                changed = self.snapshot.changed() => {
                    if changed.is_err() {
                        // The reconciler is gone: only at shutdown.
                        shutdown.cancelled().await;
                        return Ok(End::Shutdown);
                    }
                    let current = self.snapshot.borrow_and_update().statuses.clone();
                    if let Some(report) = diff(&sent, &current) {
                        send(&tx, addr, agent_message::Msg::Status(report)).await?;
                        postpone(&mut heartbeat, last_beat);
                    }
                    sent = current;
                }
                event = events.recv() => match event {
                    Ok(event) => {
                        send(&tx, addr, agent_message::Msg::Event(event)).await?;
                        postpone(&mut heartbeat, last_beat);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!("dropped {n} events: the coordinator reads too slowly");
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        shutdown.cancelled().await;
                        return Ok(End::Shutdown);
                    }
                },
            }
        }
    }

    /// Handles one coordinator message; returns the reply, if any.
    async fn handle(
        &mut self,
        addr: &str,
        message: CoordinatorMessage,
        heartbeat: &mut tokio::time::Interval,
    ) -> Option<agent_message::Msg> {
        match message.msg {
            Some(coordinator_message::Msg::Welcome(Welcome {
                node_name,
                heartbeat_interval_ms,
            })) => {
                info!("the coordinator at {addr} welcomes node `{node_name}`");
                if node_name != self.node {
                    warn!(
                        "the coordinator calls this node `{node_name}`, its certificate says `{}`",
                        self.node
                    );
                }
                let every = if heartbeat_interval_ms == 0 {
                    DEFAULT_HEARTBEAT
                } else {
                    Duration::from_millis(heartbeat_interval_ms).max(MIN_HEARTBEAT)
                };
                *heartbeat = heartbeat_timer(every);
                None
            }
            Some(coordinator_message::Msg::Plan(plan)) => Some(self.accept_plan(plan).await),
            Some(coordinator_message::Msg::EncodedPlan(bytes)) => {
                match <NodePlan as prost::Message>::decode(bytes) {
                    Ok(plan) => Some(self.accept_plan(plan).await),
                    Err(e) => {
                        warn!("cannot decode a plan from the coordinator: {e}");
                        None
                    }
                }
            }
            Some(coordinator_message::Msg::Ping(Ping { nonce })) => {
                Some(agent_message::Msg::Pong(Pong { nonce }))
            }
            Some(coordinator_message::Msg::Command(Command { id, kind })) => {
                let answered =
                    |done: Result<Vec<VolumeInfo>, crate::runtime::RuntimeError>| match done {
                        Ok(volumes) => (true, String::new(), volumes),
                        Err(e) => (false, e.to_string(), Vec::new()),
                    };
                let (ok, error, volumes) = match kind {
                    // Facts go out with the next Hello; nothing is cached to refresh.
                    Some(command::Kind::RefreshFacts(_)) => (true, String::new(), Vec::new()),
                    // Answered beside the loop (`run_probes`, tunnels); not reached.
                    Some(
                        command::Kind::RunProbes(_)
                        | command::Kind::OpenLogs(_)
                        | command::Kind::OpenExec(_)
                        | command::Kind::RunOnce(_),
                    ) => (
                        false,
                        "RunProbes is answered elsewhere".to_string(),
                        Vec::new(),
                    ),
                    Some(command::Kind::ListVolumes(list)) => {
                        answered(self.runtime.list_volumes(&list.env).await)
                    }
                    Some(command::Kind::RemoveVolumes(remove)) => {
                        answered(self.runtime.remove_volumes(&remove.env, &remove.keys).await)
                    }
                    None => (
                        false,
                        "this agent does not know that command".to_string(),
                        Vec::new(),
                    ),
                };
                Some(agent_message::Msg::Ack(Ack {
                    target: Some(ack::Target::CommandId(id)),
                    ok,
                    error,
                    probe_results: Vec::new(),
                    volumes,
                }))
            }
            // Answered in the session loop, which holds the renewal state.
            Some(coordinator_message::Msg::Certificate(_)) => None,
            None => {
                debug!("ignoring a message of a kind this agent does not know");
                None
            }
        }
    }

    /// Checks the plan, stores it, hands it to the reconcilers and says how
    /// that went. An invalid plan is refused (the plan in force stays); a
    /// valid one is enforced even when it could not be stored.
    async fn accept_plan(&mut self, plan: NodePlan) -> agent_message::Msg {
        let generation = plan.generation;
        let ack = |ok: bool, error: String| {
            agent_message::Msg::Ack(Ack {
                target: Some(ack::Target::PlanGeneration(generation)),
                ok,
                error,
                probe_results: Vec::new(),
                volumes: Vec::new(),
            })
        };
        let plan = match Plan::try_from(plan) {
            Ok(plan) => plan,
            Err(e) => {
                let error = format!(
                    "plan {generation} refused on node `{}`: {e}; the plan in force stays",
                    self.node
                );
                warn!("{error}");
                return ack(false, error);
            }
        };
        let unchanged = self.plan.borrow().as_deref() == Some(&plan);
        let stored = if unchanged {
            Ok(())
        } else {
            state::store(&self.data_dir, &plan.to_stored()).await
        };
        if !unchanged {
            info!(
                generation,
                workloads = plan.workloads().len(),
                secrets = plan.secret_values().len(),
                "new plan from the coordinator"
            );
            self.cache_secrets(&plan).await;
            self.plan.send_replace(Some(Arc::new(plan)));
        }
        match stored {
            Ok(()) => ack(true, String::new()),
            Err(e) => {
                warn!("{e}; enforcing the plan from memory");
                ack(false, e.to_string())
            }
        }
    }

    /// Keeps the plan's secret values in the node's cache (tmpfs), so that
    /// a restarted agent finds them without its coordinator; values the
    /// plan no longer holds are deleted. A failure is logged (never a value).
    async fn cache_secrets(&self, plan: &Plan) {
        let secrets = self.secrets.clone();
        let values = plan.secret_values().clone();
        if values.is_empty() && secrets.problem().is_some() {
            return;
        }
        let stored = tokio::task::spawn_blocking(move || secrets.store_cache(&values))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = stored {
            if !plan.secret_values().is_empty() {
                warn!("cannot cache the plan's secret values: {e}");
            }
        }
    }

    /// Runs the probes RunProbes asks for, and sends the Ack with their
    /// results.
    fn run_probes(
        &self,
        id: String,
        run: RunProbes,
        tx: mpsc::Sender<AgentMessage>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let RunProbes { workload_ids } = run;
        let runtime = self.runtime.clone();
        let plan = self.plan.borrow().clone();
        let statuses = self.snapshot.borrow().statuses.clone();
        async move {
            let probe_results =
                probe::run_now(runtime.as_ref(), plan.as_deref(), &statuses, &workload_ids).await;
            debug!(command = %id, results = probe_results.len(), "probes run");
            let ack = Ack {
                target: Some(ack::Target::CommandId(id)),
                ok: true,
                error: String::new(),
                probe_results,
                volumes: Vec::new(),
            };
            // A closed stream: the session is over and so is the question.
            let _ = tx
                .send(AgentMessage {
                    msg: Some(agent_message::Msg::Ack(ack)),
                })
                .await;
        }
    }
}

async fn send(
    tx: &mpsc::Sender<AgentMessage>,
    addr: &str,
    msg: agent_message::Msg,
) -> Result<(), SessionError> {
    tx.send(AgentMessage { msg: Some(msg) })
        .await
        .map_err(|_| stream_error(addr, "the outbound stream closed"))
}

fn stream_error(addr: &str, reason: &str) -> SessionError {
    SessionError::Stream {
        addr: addr.to_string(),
        reason: reason.to_string(),
    }
}

/// A message other than a heartbeat went out: the next heartbeat waits a
/// whole interval from now, unless the last one (with host metrics) is
/// [`METRICS_MAX_AGE`] old.
fn postpone(heartbeat: &mut tokio::time::Interval, last_beat: Instant) {
    if last_beat.elapsed() < METRICS_MAX_AGE {
        heartbeat.reset();
    }
}

fn heartbeat_timer(every: Duration) -> tokio::time::Interval {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// Dials `addr` (`host:port`, or a full `https://` URL) with the agent's
/// certificate, verifying the coordinator's name.
pub(crate) async fn connect(addr: &str, pki: &Pki) -> Result<Channel, SessionError> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("https://{addr}")
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .identity(Identity::from_pem(&pki.cert_pem, &pki.key_pem))
        .domain_name(COORDINATOR_SERVER_NAME);
    let address_error = |reason: String| SessionError::Address {
        addr: addr.to_string(),
        reason,
    };
    let endpoint = Endpoint::from_shared(url)
        .map_err(|e| address_error(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| address_error(error_chain(&e)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(classify_text(addr, error_chain(&e))),
        Err(_) => Err(SessionError::Unreachable {
            addr: addr.to_string(),
            reason: format!("no connection within {}s", (CONNECT_TIMEOUT * 2).as_secs()),
        }),
    }
}

fn classify(addr: &str, status: &tonic::Status) -> SessionError {
    let mut text = format!("{}: {}", code_name(status.code()), status.message());
    if let Some(source) = std::error::Error::source(status) {
        let chain = error_chain(source);
        // The source often repeats the message.
        let chain = chain
            .strip_prefix(status.message())
            .map(|rest| rest.trim_start_matches(": "))
            .unwrap_or(&chain);
        if !chain.is_empty() {
            text.push_str(": ");
            text.push_str(chain);
        }
    }
    classify_text(addr, text)
}

/// Tells a refused TLS handshake from an unreachable coordinator from any
/// other failure, by what the error chain says.
fn classify_text(addr: &str, reason: String) -> SessionError {
    let lower = reason.to_lowercase();
    let addr = addr.to_string();
    if lower.contains("invalid peer certificate") {
        SessionError::CoordinatorNotTrusted { addr, reason }
    } else if lower.contains("alert")
        || lower.contains("certificate")
        || lower.contains("handshake")
    {
        SessionError::CertificateRefused { addr, reason }
    } else if lower.contains("connect")
        || lower.contains("refused")
        || lower.contains("unavailable")
        || lower.contains("dns")
        || lower.contains("timed out")
    {
        SessionError::Unreachable { addr, reason }
    } else {
        SessionError::Stream { addr, reason }
    }
}

/// A connection that closes between a completed handshake and the first
/// answer: with TLS 1.3 the server checks the client certificate after the
/// client's side of the handshake is done, and its alert can be lost.
fn refused_or(error: SessionError) -> SessionError {
    match error {
        SessionError::Unreachable { addr, reason } | SessionError::Stream { addr, reason }
            if ["closed", "cancel", "reset", "broken pipe"]
                .iter()
                .any(|w| reason.to_lowercase().contains(w)) =>
        {
            SessionError::CertificateRefused {
                addr,
                reason: format!("it closed the connection right after the TLS handshake: {reason}"),
            }
        }
        other => other,
    }
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}").to_lowercase()
}

/// The pause before the next attempt after `failures` (1, 2, ...) failed
/// ones in a row, taking turns over `addresses` coordinators: a short hop
/// ([`NEXT_COORDINATOR`]) while the round of addresses is not over, and the
/// backoff, exponential from 1 s to 30 s, once each has failed (with one
/// address, every failure ends a round). `jitter` (0.5 to 1) scales either.
fn next_delay(addresses: usize, failures: u32, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.5, 1.0);
    let addresses = u32::try_from(addresses.max(1)).unwrap_or(u32::MAX);
    if !failures.is_multiple_of(addresses) {
        return NEXT_COORDINATOR.mul_f64(jitter);
    }
    let rounds = failures / addresses;
    let base = RECONNECT_START
        .checked_mul(
            1u32.checked_shl(rounds.saturating_sub(1))
                .unwrap_or(u32::MAX),
        )
        .unwrap_or(RECONNECT_MAX)
        .min(RECONNECT_MAX);
    base.mul_f64(jitter)
}

/// The report that turns `sent` into `current`; `None` when they agree.
fn diff(
    sent: &BTreeMap<String, WorkloadStatus>,
    current: &BTreeMap<String, WorkloadStatus>,
) -> Option<StatusReport> {
    let workloads: Vec<WorkloadStatus> = current
        .iter()
        .filter(|(id, status)| sent.get(*id) != Some(*status))
        .map(|(_, status)| status.clone())
        .collect();
    let removed: Vec<String> = sent
        .keys()
        .filter(|id| !current.contains_key(*id))
        .cloned()
        .collect();
    if workloads.is_empty() && removed.is_empty() {
        None
    } else {
        Some(StatusReport {
            full_snapshot: false,
            workloads,
            removed,
        })
    }
}

#[cfg(test)]
mod tests;

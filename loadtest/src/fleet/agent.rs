//! One simulated agent's task: connect, Hello, the session stream (plans
//! acknowledged, Pings and commands answered, heartbeats and ingest), and
//! reconnects with the real agent's backoff.

use std::{
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use convoy_proto as pb;
use pb::{agent_message::Msg, coordinator_message::Msg as In};
use rand::Rng;
use tokio::{
    sync::{mpsc, watch},
    time::{Interval, MissedTickBehavior, Sleep},
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{ClientTlsConfig, Endpoint, Identity};

use super::sim::{unix_ms, Sim};
use super::{AgentState, Ingest, IngestKind, Shared};
use crate::freeze::connector;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(2);
/// The real agent's backoff: 1 s doubling to 30 s, jittered, reset after a
/// healthy session (120 s in the agent,
/// [`FleetConfig::healthy_session`](super::FleetConfig::healthy_session)).
const RECONNECT_START: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// Messages an agent may have queued for the stream: small on purpose.
const OUTBOUND: usize = 16;
/// As the real agent: any message stands for a heartbeat, so one is sent
/// only after an interval without another, and at least this often (host
/// metrics ride on heartbeats).
const METRICS_MAX_AGE: Duration = Duration::from_secs(5);

fn msg(m: Msg) -> pb::AgentMessage {
    pb::AgentMessage { msg: Some(m) }
}

pub(super) struct Agent {
    pub(super) shared: Arc<Shared>,
    /// The coordinator agent port this agent connects to.
    pub(super) addr: std::net::SocketAddr,
    pub(super) me: Arc<AgentState>,
    pub(super) identity: Identity,
    pub(super) frozen: watch::Receiver<bool>,
    pub(super) ingest: watch::Receiver<Option<Ingest>>,
    pub(super) shutdown: CancellationToken,
    pub(super) sim: Sim,
}

/// Why a session ended.
enum End {
    Shutdown,
    Failed(String),
}

impl Agent {
    pub(super) async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let mut connected_at = None;
            match self.session(&mut connected_at).await {
                End::Shutdown => return,
                End::Failed(e) => self.shared.counters.error(e),
            }
            if connected_at.is_some_and(|t: Instant| t.elapsed() >= self.shared.cfg.healthy_session)
            {
                failures = 0;
            }
            let delay = reconnect_delay(failures);
            failures = failures.saturating_add(1);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            // A frozen agent does not reconnect either.
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.frozen.wait_for(|f| !*f) => {}
            }
        }
    }

    fn hello(&self) -> pb::Hello {
        pb::Hello {
            facts: Some(pb::NodeFacts {
                hostname: self.me.name.clone(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                kernel: "6.1.0-sim".into(),
                arch: "x86_64".into(),
                cpus: 2,
                memory_bytes: 4 << 30,
                docker_version: "20.10.24+sim".into(),
                labels: Default::default(),
                platform_os: "linux".into(),
                allowed_bind_paths: Vec::new(),
                allowed_host_access: Vec::new(),
                gpus: Vec::new(),
                swarm: None,
            }),
            agent_version: "convoy-bench".into(),
            last_applied_generation: self.sim.generation,
            // As the real agent: plans come encoded once, shared by streams.
            capabilities: vec![pb::CAPABILITY_ENCODED_PLAN.to_string()],
        }
    }

    async fn session(&mut self, connected_at: &mut Option<Instant>) -> End {
        let shared = self.shared.clone();
        let (tx, rx) = mpsc::channel::<pb::AgentMessage>(OUTBOUND);
        let opened = {
            let _permit = tokio::select! {
                _ = self.shutdown.cancelled() => return End::Shutdown,
                p = shared.connect.acquire() => p,
            };
            let tls = ClientTlsConfig::new()
                .ca_certificate(shared.ca.clone())
                .identity(self.identity.clone())
                .domain_name(convoy_proto::COORDINATOR_SERVER_NAME);
            let endpoint =
                match Endpoint::from_shared(shared.url.clone()).and_then(|e| e.tls_config(tls)) {
                    Ok(e) => e
                        .connect_timeout(CONNECT_TIMEOUT)
                        .http2_keep_alive_interval(Duration::from_secs(10))
                        .keep_alive_timeout(Duration::from_secs(10))
                        .keep_alive_while_idle(true),
                    Err(e) => return End::Failed(format!("endpoint: {e}")),
                };
            let dial =
                endpoint.connect_with_connector(connector(self.addr, self.me.freeze.clone()));
            let channel = tokio::select! {
                _ = self.shutdown.cancelled() => return End::Shutdown,
                c = tokio::time::timeout(CONNECT_TIMEOUT * 2, dial) => match c {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return End::Failed(format!("connect: {}", chain(&e))),
                    Err(_) => return End::Failed("connect: timed out".into()),
                },
            };
            let _ = tx.try_send(msg(Msg::Hello(self.hello())));
            let _ = tx.try_send(msg(Msg::Status(self.sim.snapshot())));
            let mut client = pb::agent_service_client::AgentServiceClient::new(channel);
            tokio::select! {
                _ = self.shutdown.cancelled() => return End::Shutdown,
                r = tokio::time::timeout(OPEN_TIMEOUT, client.session(ReceiverStream::new(rx))) => r,
            }
        };
        let mut inbound = match opened {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return End::Failed(format!("session: {status}")),
            Err(_) => return End::Failed("session: no answer".into()),
        };
        *connected_at = Some(Instant::now());
        let mut session_no = 0;
        let mut heartbeat: Option<Interval> = None;
        let mut last_beat = Instant::now();
        let mut starting: Option<Pin<Box<Sleep>>> = None;
        let mut ingesting = ingest_timer(*self.ingest.borrow_and_update());
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return End::Shutdown,
                changed = self.frozen.changed() => {
                    if changed.is_err() {
                        return End::Shutdown;
                    }
                    if *self.frozen.borrow_and_update() {
                        // Stand still, as a stopped process does.
                        tokio::select! {
                            _ = self.shutdown.cancelled() => return End::Shutdown,
                            _ = self.frozen.wait_for(|f| !*f) => {}
                        }
                        if let Some(h) = heartbeat.as_mut() {
                            h.reset_immediately();
                        }
                    }
                }
                changed = self.ingest.changed() => {
                    if changed.is_err() {
                        return End::Shutdown;
                    }
                    ingesting = ingest_timer(*self.ingest.borrow_and_update());
                }
                message = inbound.message() => {
                    let m = match message {
                        Ok(Some(m)) => m,
                        Ok(None) => return End::Failed("the coordinator closed the stream".into()),
                        Err(s) => return End::Failed(format!("stream: {s}")),
                    };
                    let incoming = match m.msg {
                        Some(In::EncodedPlan(bytes)) => match <pb::NodePlan as prost::Message>::decode(bytes) {
                            Ok(plan) => Some(In::Plan(plan)),
                            Err(e) => return End::Failed(format!("undecodable plan: {e}")),
                        },
                        other => other,
                    };
                    match incoming {
                        Some(In::Welcome(w)) => {
                            let every = match w.heartbeat_interval_ms {
                                0 => DEFAULT_HEARTBEAT,
                                ms => Duration::from_millis(ms).max(Duration::from_millis(100)),
                            };
                            let mut h = tokio::time::interval(every);
                            h.set_missed_tick_behavior(MissedTickBehavior::Delay);
                            heartbeat = Some(h);
                            session_no = self.me.welcomes.fetch_add(1, Ordering::AcqRel) + 1;
                            shared.counters.welcomes.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(In::Plan(plan)) => {
                            shared.counters.plans.fetch_add(1, Ordering::Relaxed);
                            let delay = shared.cfg.start_delay;
                            let state = if delay.is_zero() {
                                pb::WorkloadState::Running
                            } else {
                                pb::WorkloadState::Starting
                            };
                            let report = self.sim.apply(&plan, state);
                            let ack = pb::Ack {
                                target: Some(pb::ack::Target::PlanGeneration(plan.generation)),
                                ok: true,
                                ..Default::default()
                            };
                            if tx.send(msg(Msg::Ack(ack))).await.is_err() {
                                return End::Failed("outbound closed".into());
                            }
                            postpone(&mut heartbeat, last_beat);
                            let tracked = plan
                                .workloads
                                .iter()
                                .filter(|w| w.service == shared.cfg.tracked_service)
                                .map(|w| w.revision)
                                .max()
                                .unwrap_or(0);
                            if tracked > self.me.tracked_revision.load(Ordering::Relaxed) {
                                self.me.tracked_at_us.store(shared.us(), Ordering::Relaxed);
                                self.me.tracked_revision.store(tracked, Ordering::Release);
                            }
                            self.me.plan_generation.store(plan.generation, Ordering::Relaxed);
                            self.me.acked_in_session.store(session_no, Ordering::Release);
                            if let Some(r) = report {
                                if tx.send(msg(Msg::Status(r))).await.is_err() {
                                    return End::Failed("outbound closed".into());
                                }
                                postpone(&mut heartbeat, last_beat);
                                if !delay.is_zero() {
                                    starting = Some(Box::pin(tokio::time::sleep(delay)));
                                }
                            }
                        }
                        Some(In::Ping(p)) => {
                            shared.counters.pongs.fetch_add(1, Ordering::Relaxed);
                            if tx.send(msg(Msg::Pong(pb::Pong { nonce: p.nonce }))).await.is_err() {
                                return End::Failed("outbound closed".into());
                            }
                            postpone(&mut heartbeat, last_beat);
                        }
                        Some(In::Command(c)) => {
                            let ack = pb::Ack {
                                target: Some(pb::ack::Target::CommandId(c.id)),
                                ok: true,
                                ..Default::default()
                            };
                            if tx.send(msg(Msg::Ack(ack))).await.is_err() {
                                return End::Failed("outbound closed".into());
                            }
                            postpone(&mut heartbeat, last_beat);
                        }
                        // Encoded plans were decoded into `Plan` above.
                        Some(In::Certificate(_) | In::EncodedPlan(_)) | None => {}
                    }
                }
                scheduled = tick(&mut heartbeat) => {
                    let late = scheduled.elapsed().as_micros() as u64;
                    shared.counters.max_heartbeat_late_us.fetch_max(late, Ordering::Relaxed);
                    shared.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                    if tx.send(msg(Msg::Heartbeat(self.heartbeat()))).await.is_err() {
                        return End::Failed("outbound closed".into());
                    }
                    last_beat = Instant::now();
                }
                _ = sleep_opt(&mut starting) => {
                    starting = None;
                    if let Some(r) = self.sim.started() {
                        if tx.send(msg(Msg::Status(r))).await.is_err() {
                            return End::Failed("outbound closed".into());
                        }
                        postpone(&mut heartbeat, last_beat);
                    }
                }
                _ = tick(&mut ingesting) => {
                    let kind = self.ingest.borrow().map(|i| i.kind);
                    let m = match kind {
                        Some(IngestKind::Status) => self.sim.flip_health().map(Msg::Status),
                        Some(IngestKind::Heartbeat) => Some(Msg::Heartbeat(self.heartbeat())),
                        None => None,
                    };
                    let counters = &shared.counters;
                    // Never wait: a full queue is backpressure, counted.
                    let sent = m.is_some_and(|m| tx.try_send(msg(m)).is_ok());
                    if sent {
                        postpone(&mut heartbeat, last_beat);
                    }
                    let counter = if sent {
                        &counters.ingest_sent
                    } else {
                        &counters.ingest_skipped
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn heartbeat(&self) -> pb::Heartbeat {
        pb::Heartbeat {
            sent_unix_ms: unix_ms(),
            metrics: Some(pb::HostMetrics {
                load1: 0.1,
                load5: 0.1,
                load15: 0.1,
                memory_used_bytes: 1 << 30,
                memory_total_bytes: 4 << 30,
                containers: self.sim.running.len() as u32,
                cpu_percent: 2.0,
                disk_used_bytes: 10 << 30,
                disk_total_bytes: 40 << 30,
                gpus: Vec::new(),
            }),
        }
    }
}

/// Per-agent ingest ticks, each agent at its own phase.
fn ingest_timer(ingest: Option<Ingest>) -> Option<Interval> {
    let every = ingest?.every.max(Duration::from_micros(100));
    let phase = every.mul_f64(rand::rng().random_range(0.0..1.0));
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    Some(t)
}

/// Another message went out: the next heartbeat waits a whole interval,
/// unless the last one is [`METRICS_MAX_AGE`] old (the real agent's rule).
fn postpone(heartbeat: &mut Option<Interval>, last_beat: Instant) {
    if let Some(h) = heartbeat {
        if last_beat.elapsed() < METRICS_MAX_AGE {
            h.reset();
        }
    }
}

async fn tick(timer: &mut Option<Interval>) -> Instant {
    match timer {
        Some(t) => t.tick().await.into_std(),
        None => std::future::pending().await,
    }
}

async fn sleep_opt(sleep: &mut Option<Pin<Box<Sleep>>>) {
    match sleep {
        Some(s) => s.as_mut().await,
        None => std::future::pending().await,
    }
}

fn reconnect_delay(failures: u32) -> Duration {
    let base = RECONNECT_START
        .checked_mul(1u32.checked_shl(failures).unwrap_or(u32::MAX))
        .unwrap_or(RECONNECT_MAX)
        .min(RECONNECT_MAX);
    base.mul_f64(rand::rng().random_range(0.5..=1.0))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

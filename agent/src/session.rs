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
}

mod dial;
mod handle;
mod serve;

pub(crate) use self::dial::connect;

#[allow(unused_imports)]
use self::{dial::*, serve::*};

#[cfg(test)]
mod tests;

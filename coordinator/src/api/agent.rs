//! `AgentService.Session`: one long-lived stream per agent. The node name
//! comes from the verified client certificate, never from a message.

use std::{pin::Pin, sync::Arc, time::Duration};

use convoy_proto as pb;
use pb::{agent_message::Msg, coordinator_message::Msg as Out};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::{
    pki::{self, Ca},
    state::Coordinator,
    tls,
};

/// How long an agent has to say Hello after opening its stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AgentApi {
    coord: Arc<Coordinator>,
    /// Signs renewals.
    ca: Arc<Ca>,
    /// Lifetime of renewed certificates.
    validity: time::Duration,
}

impl AgentApi {
    pub fn new(coord: Arc<Coordinator>, ca: Arc<Ca>, validity: time::Duration) -> Self {
        Self {
            coord,
            ca,
            validity,
        }
    }

    /// Signs a renewal CSR from the stream of `node`: same node name, a new
    /// key; the new certificate is remembered so `node remove` revokes it.
    async fn renew(&self, node: &str, csr_pem: &str) -> pb::RenewedCertificate {
        let refused = |error: String| {
            tracing::warn!(%error, "refused a certificate renewal");
            pb::RenewedCertificate {
                error,
                ..Default::default()
            }
        };
        if csr_pem.len() > pki::MAX_CSR_BYTES {
            return refused("renewal CSR too large".into());
        }
        let (name, pem) = match self.ca.sign_agent_csr(csr_pem, self.validity) {
            Ok(x) => x,
            Err(e) => return refused(e.to_string()),
        };
        if name != node {
            return refused(format!(
                "a renewal must keep the node name `{node}`, the CSR asks for `{name}`"
            ));
        }
        let der = match pki::pem_der(&pem) {
            Ok(d) => d,
            Err(e) => return refused(e.to_string()),
        };
        let expires = pki::expiry_unix_ms(&der).unwrap_or(0);
        if let Err(e) = self
            .coord
            .renewed(node, &tls::fingerprint(&der), expires)
            .await
        {
            return refused(e.to_string());
        }
        tracing::info!(expires_unix_ms = expires, "certificate renewed");
        pb::RenewedCertificate {
            certificate_pem: pem,
            expires_unix_ms: expires,
            error: String::new(),
        }
    }
}

/// Metadata of an agent stream a standby relays to the leader (issue 18):
/// the agent's identity as the standby's mTLS handshake with the agent
/// established it. Believed only from a caller whose certificate is a
/// coordinator's (`pki::coordinator_name_from_der`).
pub const RELAY_NODE: &str = "x-convoy-relay-node";
/// The agent's certificate fingerprint (hex SHA-256).
pub const RELAY_CERTIFICATE: &str = "x-convoy-relay-certificate";
/// The agent's certificate expiry (Unix ms).
pub const RELAY_EXPIRES: &str = "x-convoy-relay-expires";
/// The agent's address, as the standby sees it.
pub const RELAY_ADDRESS: &str = "x-convoy-relay-address";

/// What the outbound half of a session needs once the agent is registered.
struct Registered {
    welcome: pb::CoordinatorMessage,
    plans: tokio::sync::watch::Receiver<Option<Arc<pb::NodePlan>>>,
    /// A standby relays the stream and sends the agent its plans itself,
    /// from its copy of desired state: none are sent here.
    relayed: bool,
    /// The agent decodes `encoded_plan` (its Hello said so).
    encoded_plans: bool,
    commands: mpsc::Receiver<Box<pb::CoordinatorMessage>>,
    cancel: tokio_util::sync::CancellationToken,
}

/// The session's answer before registration: the registered session, or
/// why the agent was refused.
type Start = oneshot::Sender<Result<Registered, Status>>;

type OutboundStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

/// Who is on the other end of an agent call: its certificate's node name,
/// fingerprint and expiry, and where it connected from; for a relayed
/// stream, the relaying coordinator.
struct Peer {
    node: String,
    certificate: String,
    expires: i64,
    address: Option<std::net::SocketAddr>,
    relayed_by: Option<String>,
}

fn peer<T>(req: &Request<T>) -> Result<Peer, Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    if let Some(coordinator) = pki::coordinator_name_from_der(leaf.as_ref()) {
        return relayed_peer(req, coordinator);
    }
    let node = pki::node_name_from_der(leaf.as_ref())
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
    Ok(Peer {
        node,
        certificate: tls::fingerprint(leaf.as_ref()),
        expires: pki::expiry_unix_ms(leaf.as_ref()).unwrap_or(0),
        address: req.remote_addr(),
        relayed_by: None,
    })
}

/// The agent a coordinator relays, from the call's metadata.
fn relayed_peer<T>(req: &Request<T>, coordinator: String) -> Result<Peer, Status> {
    let get = |key: &str| {
        req.metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "coordinator `{coordinator}` relayed an agent stream without `{key}`"
                ))
            })
    };
    let node = get(RELAY_NODE)?;
    pki::validate_node_name(node).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let certificate = get(RELAY_CERTIFICATE)?;
    if certificate.len() != 64 || !certificate.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Status::invalid_argument(format!(
            "`{RELAY_CERTIFICATE}` is not a certificate fingerprint"
        )));
    }
    let expires = get(RELAY_EXPIRES)?
        .parse::<i64>()
        .map_err(|_| Status::invalid_argument(format!("`{RELAY_EXPIRES}` is not a time")))?;
    Ok(Peer {
        node: node.to_string(),
        certificate: certificate.to_ascii_lowercase(),
        expires,
        address: get(RELAY_ADDRESS).ok().and_then(|a| a.parse().ok()),
        relayed_by: Some(coordinator),
    })
}

type TunnelDownStream = Pin<Box<dyn Stream<Item = Result<pb::TunnelDown, Status>> + Send>>;

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for AgentApi {
    type SessionStream = OutboundStream;
    type TunnelStream = TunnelDownStream;

    /// A tunnel the coordinator asked the agent for (`crate::tunnels`):
    /// the first message names it, the certificate says which node opens
    /// it, and it goes to the caller waiting for it.
    async fn tunnel(
        &self,
        req: Request<Streaming<pb::TunnelUp>>,
    ) -> Result<Response<Self::TunnelStream>, Status> {
        let peer = peer(&req)?;
        if self.coord.is_revoked(&peer.certificate) {
            return Err(Status::unauthenticated("this certificate was revoked"));
        }
        let node = peer.node;
        let mut up = req.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, up.message())
            .await
            .map_err(|_| Status::deadline_exceeded("a tunnel must name itself at once"))??;
        let Some(pb::TunnelUp {
            msg: Some(pb::tunnel_up::Msg::Open(pb::TunnelOpen { tunnel_id })),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message of a tunnel must be `open`",
            ));
        };
        let down = self.coord.tunnels().accept(&node, &tunnel_id, up)?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(down).map(Ok),
        )))
    }

    async fn session(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let Peer {
            node,
            certificate,
            expires,
            address,
            relayed_by,
        } = peer(&req)?;
        let inbound = req.into_inner();
        let (start, started) = oneshot::channel();
        let span = match &relayed_by {
            Some(by) => tracing::info_span!("session", node = %node, relayed_by = %by),
            None => tracing::info_span!("session", node = %node),
        };
        // Hello and registration run in their own boxed future, freed once
        // the agent is registered: a task keeps the space of its largest
        // await for its whole life, and 10,000 sessions live for days
        // (heaptrack: the session task was 3.7 KiB when it held them).
        let opened = Box::pin(open_session(
            self.clone(),
            node,
            (certificate, expires),
            (address, relayed_by.is_some()),
            inbound,
            start,
        ));
        tokio::spawn(
            async move {
                if let Some(session) = opened.await {
                    session.run().await;
                }
            }
            .instrument(span),
        );
        Ok(Response::new(outbound(started)))
    }
}

/// A registered session's inbound half: only what its loop needs.
struct Session {
    api: AgentApi,
    node: String,
    conn_id: u64,
    cancel: tokio_util::sync::CancellationToken,
    replies: mpsc::Sender<Box<pb::CoordinatorMessage>>,
    inbound: Streaming<pb::AgentMessage>,
    /// The ping in flight (one at a time), to time the round trip.
    in_flight: Option<(u64, std::time::Instant)>,
    nonce: u64,
}

/// What one turn of a session's loop leaves to do.
enum Step {
    Continue,
    Stop,
    /// A renewal CSR to answer.
    Renew(String),
}

/// Waits for the agent's Hello, registers it and answers the stream's
/// opening; the session to run, or `None` when the agent was refused or
/// went away.
async fn open_session(
    api: AgentApi,
    node: String,
    (certificate, expires): (String, i64),
    (address, relayed): (Option<std::net::SocketAddr>, bool),
    mut inbound: Streaming<pb::AgentMessage>,
    start: Start,
) -> Option<Session> {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(pb::AgentMessage {
            msg: Some(Msg::Hello(h)),
        }))) => h,
        Ok(Ok(Some(_))) => {
            let _ = start.send(Err(Status::invalid_argument(
                "the first message must be Hello",
            )));
            return None;
        }
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "stream failed before Hello");
            return None;
        }
        Err(_) => {
            let _ = start.send(Err(Status::deadline_exceeded("no Hello within 10 s")));
            return None;
        }
    };
    let coord = api.coord.clone();
    let agent_version = hello.agent_version.clone();
    let hello = crate::report::AgentHello::from(hello);
    let encoded_plans = hello.takes_encoded_plans();
    let handle = match Box::pin(coord.register(&node, &certificate, expires, hello, address)).await
    {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "refused the agent");
            let _ = start.send(Err(Status::from(e)));
            return None;
        }
    };
    tracing::info!(?address, agent_version, "agent connected");
    let conn_id = handle.conn_id;
    let cancel = handle.cancel.clone();
    let welcome = pb::CoordinatorMessage {
        msg: Some(Out::Welcome(pb::Welcome {
            node_name: node.clone(),
            heartbeat_interval_ms: coord.heartbeat_interval.as_millis() as u64,
        })),
    };
    let registered = Registered {
        welcome,
        plans: handle.plan_rx,
        relayed,
        encoded_plans,
        commands: handle.commands_rx,
        cancel: cancel.clone(),
    };
    if start.send(Ok(registered)).is_err() {
        // The response stream is gone: the agent hung up meanwhile.
        cancel.cancel();
        coord.disconnect(&node, conn_id);
        return None;
    }
    Some(Session {
        api,
        node,
        conn_id,
        cancel,
        replies: handle.commands,
        inbound,
        in_flight: None,
        nonce: 0,
    })
}

impl Session {
    /// Takes the agent's messages until the stream ends or the session is
    /// cancelled (replaced, or the node removed), pinging now and then.
    async fn run(mut self) {
        let coord = self.api.coord.clone();
        // Round trips are timed here: one ping in flight at a time, every ten
        // heartbeat intervals (at 10,000 agents a ping per heartbeat cost a
        // fifth of a core; BENCHMARKS.md, scale).
        let mut ping_every =
            tokio::time::interval((coord.heartbeat_interval * 10).max(Duration::from_secs(5)));
        ping_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One wait for cancellation for the whole session: a new one per
        // turn registers and unregisters with the token at every message.
        let mut cancelled = Box::pin(self.cancel.clone().cancelled_owned());
        loop {
            // Each turn's futures and message are gone before the only
            // await outside the select (a renewal), so the task stays small.
            let step = tokio::select! {
                _ = &mut cancelled => Step::Stop,
                _ = ping_every.tick() => {
                    self.ping();
                    Step::Continue
                }
                msg = self.inbound.message() => match msg {
                    Ok(Some(m)) => self.take(m),
                    Ok(None) => Step::Stop,
                    Err(e) => {
                        tracing::debug!(error = %e, "agent stream ended with an error");
                        Step::Stop
                    }
                },
            };
            match step {
                Step::Continue => {}
                Step::Stop => break,
                Step::Renew(csr_pem) => {
                    let answer = Box::pin(self.api.renew(&self.node, &csr_pem)).await;
                    let msg = pb::CoordinatorMessage {
                        msg: Some(Out::Certificate(answer)),
                    };
                    if self.replies.send(Box::new(msg)).await.is_err() {
                        break;
                    }
                }
            }
        }
        self.cancel.cancel();
        coord.disconnect(&self.node, self.conn_id);
    }

    /// Sends a ping unless one is in flight; never waits on a full queue.
    fn ping(&mut self) {
        if self.in_flight.is_none() {
            self.nonce += 1;
            let ping = pb::CoordinatorMessage {
                msg: Some(Out::Ping(pb::Ping { nonce: self.nonce })),
            };
            if self.replies.try_send(Box::new(ping)).is_ok() {
                self.in_flight = Some((self.nonce, std::time::Instant::now()));
            }
        }
    }

    /// One message from the agent: every message, pongs and renewals too,
    /// shows the agent alive.
    fn take(&mut self, m: pb::AgentMessage) -> Step {
        let coord = &self.api.coord;
        let mut step = Step::Continue;
        match &m.msg {
            Some(Msg::Pong(p)) => {
                if let Some((n, sent)) = self.in_flight {
                    if n == p.nonce {
                        coord.metrics().observe_rtt(sent.elapsed().as_secs_f64());
                        self.in_flight = None;
                    }
                }
            }
            Some(Msg::Renew(r)) => step = Step::Renew(r.csr_pem.clone()),
            _ => {}
        }
        match crate::report::AgentReport::try_from(m) {
            Ok(report) => coord.handle(&self.node, self.conn_id, report),
            Err(e) => tracing::warn!(error = %e, "refused an agent message"),
        }
        step
    }
}

/// The coordinator's half of a session, polled by tonic itself (no task and
/// no queue of its own): the refusal, or the Welcome and then the node's
/// plan every time it changes (latest wins, so a slow agent never sees plans
/// out of order) interleaved with commands, pings and renewal answers.
fn outbound(started: oneshot::Receiver<Result<Registered, Status>>) -> OutboundStream {
    enum State {
        Starting(oneshot::Receiver<Result<Registered, Status>>),
        Running(Registered),
        Done,
    }
    let stream = futures::stream::unfold(State::Starting(started), |state| async move {
        match state {
            State::Starting(started) => match started.await {
                Ok(Ok(mut s)) => {
                    s.plans.mark_changed();
                    let welcome = std::mem::take(&mut s.welcome);
                    Some((Ok(welcome), State::Running(s)))
                }
                Ok(Err(refused)) => Some((Err(refused), State::Done)),
                Err(_) => None,
            },
            State::Running(mut s) => loop {
                let Registered {
                    plans,
                    relayed,
                    encoded_plans,
                    commands,
                    cancel,
                    ..
                } = &mut s;
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    Some(cmd) = commands.recv() => return Some((Ok(*cmd), State::Running(s))),
                    changed = plans.changed(), if !*relayed => {
                        if changed.is_err() {
                            return None;
                        }
                        let plan = plans.borrow_and_update().clone();
                        if let Some(plan) = plan {
                            // Encoded straight from the shared plan (no
                            // copy of it per stream); older agents get a copy.
                            let out = if *encoded_plans {
                                Out::EncodedPlan(prost::Message::encode_to_vec(&*plan).into())
                            } else {
                                Out::Plan(pb::NodePlan::clone(&plan))
                            };
                            let msg = pb::CoordinatorMessage { msg: Some(out) };
                            return Some((Ok(msg), State::Running(s)));
                        }
                    }
                }
            },
            State::Done => None,
        }
    });
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// The outbound half of a session with this plan, for an agent that
    /// does or does not take encoded plans; returns the message after the
    /// Welcome.
    async fn first_plan_message(encoded_plans: bool, plan: pb::NodePlan) -> Out {
        let (_tx, plans) = tokio::sync::watch::channel(Some(Arc::new(plan)));
        let (_cmd_tx, commands) = mpsc::channel(1);
        let (start, started) = oneshot::channel();
        let registered = Registered {
            welcome: pb::CoordinatorMessage {
                msg: Some(Out::Welcome(pb::Welcome::default())),
            },
            plans,
            relayed: false,
            encoded_plans,
            commands,
            cancel: tokio_util::sync::CancellationToken::new(),
        };
        assert!(start.send(Ok(registered)).is_ok());
        let mut stream = outbound(started);
        let welcome = stream.next().await.unwrap().unwrap();
        assert!(matches!(welcome.msg, Some(Out::Welcome(_))));
        stream.next().await.unwrap().unwrap().msg.unwrap()
    }

    #[tokio::test]
    async fn agents_that_say_so_get_the_plan_encoded_from_the_shared_copy_others_a_copy() {
        let plan = pb::NodePlan {
            generation: 7,
            workloads: vec![pb::Workload {
                id: "default/web/1".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        match first_plan_message(true, plan.clone()).await {
            Out::EncodedPlan(bytes) => {
                let decoded = <pb::NodePlan as prost::Message>::decode(bytes).unwrap();
                assert_eq!(decoded, plan);
            }
            other => panic!("expected an encoded plan, got {other:?}"),
        }
        match first_plan_message(false, plan.clone()).await {
            Out::Plan(p) => assert_eq!(p, plan),
            other => panic!("expected a plan, got {other:?}"),
        }
    }
}

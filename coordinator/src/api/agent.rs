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

/// What the outbound half of a session needs once the agent is registered.
struct Registered {
    welcome: pb::CoordinatorMessage,
    plans: tokio::sync::watch::Receiver<Option<Arc<pb::NodePlan>>>,
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
/// fingerprint and expiry.
struct Peer {
    node: String,
    certificate: String,
    expires: i64,
}

fn peer<T>(req: &Request<T>) -> Result<Peer, Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let node = pki::node_name_from_der(leaf.as_ref())
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
    Ok(Peer {
        node,
        certificate: tls::fingerprint(leaf.as_ref()),
        expires: pki::expiry_unix_ms(leaf.as_ref()).unwrap_or(0),
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
        } = peer(&req)?;
        let address = req.remote_addr();
        let inbound = req.into_inner();
        let (start, started) = oneshot::channel();
        let span = tracing::info_span!("session", node = %node);
        tokio::spawn(
            run_session(
                self.clone(),
                node,
                (certificate, expires),
                address,
                inbound,
                start,
            )
            .instrument(span),
        );
        Ok(Response::new(outbound(started)))
    }
}

async fn run_session(
    api: AgentApi,
    node: String,
    (certificate, expires): (String, i64),
    address: Option<std::net::SocketAddr>,
    mut inbound: Streaming<pb::AgentMessage>,
    start: Start,
) {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(pb::AgentMessage {
            msg: Some(Msg::Hello(h)),
        }))) => h,
        Ok(Ok(Some(_))) => {
            let _ = start.send(Err(Status::invalid_argument(
                "the first message must be Hello",
            )));
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "stream failed before Hello");
            return;
        }
        Err(_) => {
            let _ = start.send(Err(Status::deadline_exceeded("no Hello within 10 s")));
            return;
        }
    };
    let coord = api.coord.clone();
    let agent_version = hello.agent_version.clone();
    // Boxed, as the renewal below: the task keeps the space of its largest
    // await for the session's whole life, and these two are the largest.
    let hello = crate::report::AgentHello::from(hello);
    let encoded_plans = hello.takes_encoded_plans();
    let handle = match Box::pin(coord.register(&node, &certificate, expires, hello, address)).await
    {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "refused the agent");
            let _ = start.send(Err(Status::from(e)));
            return;
        }
    };
    tracing::info!(?address, agent_version, "agent connected");
    let conn_id = handle.conn_id;
    let cancel = handle.cancel.clone();
    let replies = handle.commands;
    let welcome = pb::CoordinatorMessage {
        msg: Some(Out::Welcome(pb::Welcome {
            node_name: node.clone(),
            heartbeat_interval_ms: coord.heartbeat_interval.as_millis() as u64,
        })),
    };
    let registered = Registered {
        welcome,
        plans: handle.plan_rx,
        encoded_plans,
        commands: handle.commands_rx,
        cancel: cancel.clone(),
    };
    if start.send(Ok(registered)).is_err() {
        // The response stream is gone: the agent hung up meanwhile.
        cancel.cancel();
        coord.disconnect(&node, conn_id);
        return;
    }
    // Round trips are timed here: one ping in flight at a time, every ten
    // heartbeat intervals (at 10,000 agents a ping per heartbeat cost a
    // fifth of a core; BENCHMARKS.md, scale).
    let mut ping_every =
        tokio::time::interval((coord.heartbeat_interval * 10).max(Duration::from_secs(5)));
    ping_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight: Option<(u64, std::time::Instant)> = None;
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ping_every.tick() => {
                if in_flight.is_none() {
                    nonce += 1;
                    let ping = pb::CoordinatorMessage { msg: Some(Out::Ping(pb::Ping { nonce })) };
                    // Never wait on a full outbound queue for a ping.
                    if replies.try_send(Box::new(ping)).is_ok() {
                        in_flight = Some((nonce, std::time::Instant::now()));
                    }
                }
            }
            msg = inbound.message() => match msg {
                Ok(Some(m)) => {
                    match &m.msg {
                        Some(Msg::Pong(p)) => {
                            if let Some((n, sent)) = in_flight {
                                if n == p.nonce {
                                    coord.metrics().observe_rtt(sent.elapsed().as_secs_f64());
                                    in_flight = None;
                                }
                            }
                        }
                        Some(Msg::Renew(r)) => {
                            let answer = Box::pin(api.renew(&node, &r.csr_pem)).await;
                            let msg = pb::CoordinatorMessage { msg: Some(Out::Certificate(answer)) };
                            if replies.send(Box::new(msg)).await.is_err() {
                                break;
                            }
                        }
                        _ => {}
                    }
                    // Every message, these two too, shows the agent alive.
                    match crate::report::AgentReport::try_from(m) {
                        Ok(report) => coord.handle(&node, conn_id, report),
                        Err(e) => tracing::warn!(error = %e, "refused an agent message"),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "agent stream ended with an error");
                    break;
                }
            },
        }
    }
    cancel.cancel();
    coord.disconnect(&node, conn_id);
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
                    encoded_plans,
                    commands,
                    cancel,
                    ..
                } = &mut s;
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    Some(cmd) = commands.recv() => return Some((Ok(*cmd), State::Running(s))),
                    changed = plans.changed() => {
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

//! A standby's agent port (issue 18): agents may connect to any
//! coordinator. A standby sends its agents their plans itself, from its
//! copy of desired state ([`super::mirror`]), and relays everything else
//! of the stream (Hello, reports, acks, pings, commands, renewals) and
//! agents' tunnels to the leader, which registers the agent, runs the
//! controllers on what it reports and sends it commands as for an agent
//! of its own, but no plans. The relay authenticates to the leader with a
//! coordinator's client certificate (issued from the shared CA, never to
//! an agent) and names the agent, its certificate and address in the
//! call's metadata (`crate::api::agent::RELAY_*`); the leader believes
//! that metadata only from a coordinator's certificate.
//!
//! When the leader's stream ends (it died, or stepped down) the agent's
//! stream ends too, and the agent connects again (to this or another
//! coordinator), so no stream outlives the term it was registered in.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use convoy_proto as pb;
use futures::{Stream, StreamExt};
use pb::{agent_message::Msg, coordinator_message::Msg as Out};
use tokio::sync::watch;
use tonic::{
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
    Request, Response, Status, Streaming,
};

use super::{mirror::Following, Election};
use crate::{
    api::agent::{RELAY_ADDRESS, RELAY_CERTIFICATE, RELAY_EXPIRES, RELAY_NODE},
    pki::{self, Ca},
    tls,
};

/// How long an agent has to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting to the leader's agent port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The relay's client certificate lives this long; a new one is issued
/// once it is a day old.
const RELAY_CERT_DAYS: i64 = 7;
const RELAY_CERT_RENEW: Duration = Duration::from_secs(24 * 3600);

/// The relay to the leader's agent port.
pub struct Relay {
    election: Arc<Election>,
    ca: Arc<Ca>,
    following: watch::Receiver<Following>,
    /// (leader's agent address, when its channel's certificate was
    /// issued, the channel).
    channel: Mutex<Option<(String, Instant, Channel)>>,
    /// Agent streams relayed now.
    sessions: Arc<AtomicUsize>,
}

/// Counts one relayed stream while it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type OutboundStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;
type TunnelDownStream = Pin<Box<dyn Stream<Item = Result<pb::TunnelDown, Status>> + Send>>;

/// An agent on this standby's port, from its verified certificate.
struct Agent {
    node: String,
    certificate: String,
    expires: i64,
    address: Option<std::net::SocketAddr>,
}

fn agent<T>(req: &Request<T>) -> Result<Agent, Status> {
    let leaf = req
        .peer_certs()
        .and_then(|c| c.first().cloned())
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let node = pki::node_name_from_der(leaf.as_ref())
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
    Ok(Agent {
        node,
        certificate: tls::fingerprint(leaf.as_ref()),
        expires: pki::expiry_unix_ms(leaf.as_ref()).unwrap_or(0),
        address: req.remote_addr(),
    })
}

impl Relay {
    pub fn new(
        election: Arc<Election>,
        ca: Arc<Ca>,
        following: watch::Receiver<Following>,
    ) -> Self {
        Self {
            election,
            ca,
            following,
            channel: Mutex::new(None),
            sessions: Arc::default(),
        }
    }

    /// The agent streams this standby relays now.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    fn me(&self) -> &str {
        &self.election.me().id
    }

    /// A channel to the leader's agent port, as this coordinator.
    async fn leader(&self) -> Result<Channel, Status> {
        let leader = self.election.leader().await.ok_or_else(|| {
            Status::unavailable(format!(
                "standby: coordinator `{}` stands by and no coordinator leads right now",
                self.me()
            ))
        })?;
        if leader.id == self.me() {
            return Err(Status::unavailable(format!(
                "standby: coordinator `{}` is taking the lead; connect again",
                self.me()
            )));
        }
        let mut cached = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((addr, issued, ch)) = cached.as_ref() {
            if *addr == leader.agents && issued.elapsed() < RELAY_CERT_RENEW {
                return Ok(ch.clone());
            }
        }
        let unreachable = |e: &dyn std::fmt::Display| {
            Status::unavailable(format!(
                "standby: coordinator `{}` cannot relay to the leader `{}` at {}: {e}",
                self.me(),
                leader.id,
                leader.agents
            ))
        };
        let issued = self
            .ca
            .issue_coordinator(self.me(), time::Duration::days(RELAY_CERT_DAYS))
            .map_err(|e| unreachable(&e))?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca.cert_pem()))
            .identity(Identity::from_pem(&issued.cert_pem, &issued.key_pem))
            .domain_name(convoy_proto::COORDINATOR_SERVER_NAME);
        let ch = Endpoint::from_shared(format!("https://{}", leader.agents))
            .and_then(|e| e.tls_config(tls))
            .map_err(|e| unreachable(&e))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10))
            .connect_lazy();
        *cached = Some((leader.agents.clone(), Instant::now(), ch.clone()));
        Ok(ch)
    }

    /// The agent's identity on a call to the leader.
    fn relayed<T>(&self, agent: &Agent, body: T) -> Result<Request<T>, Status> {
        let mut req = Request::new(body);
        let md = req.metadata_mut();
        let value = |v: &str| {
            MetadataValue::try_from(v).map_err(|_| Status::internal("a relay header is not ASCII"))
        };
        md.insert(RELAY_NODE, value(&agent.node)?);
        md.insert(RELAY_CERTIFICATE, value(&agent.certificate)?);
        md.insert(RELAY_EXPIRES, value(&agent.expires.to_string())?);
        if let Some(a) = agent.address {
            md.insert(RELAY_ADDRESS, value(&a.to_string())?);
        }
        Ok(req)
    }

    /// The copy of desired state, once loaded; `UNAVAILABLE` before.
    fn copy(&self) -> Result<Arc<crate::state::Coordinator>, Status> {
        self.following.borrow().coord.clone().ok_or_else(|| {
            Status::unavailable(format!(
                "standby: coordinator `{}` has not read desired state yet",
                self.me()
            ))
        })
    }
}

/// The agent port's service on a standby.
#[derive(Clone)]
pub struct RelayApi(pub Arc<Relay>);

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for RelayApi {
    type SessionStream = OutboundStream;
    type TunnelStream = TunnelDownStream;

    async fn session(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let relay = &self.0;
        let agent = agent(&req)?;
        let copy = relay.copy()?;
        if copy.is_revoked(&agent.certificate) {
            tracing::warn!(node = %agent.node, "refused an agent: its certificate was revoked");
            return Err(Status::unauthenticated("this certificate was revoked"));
        }
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(
                m @ pb::AgentMessage {
                    msg: Some(Msg::Hello(_)),
                },
            ))) => m,
            Ok(Ok(Some(_))) => {
                return Err(Status::invalid_argument("the first message must be Hello"))
            }
            Ok(Ok(None)) => return Err(Status::cancelled("the agent went away before Hello")),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        let encoded = match &hello.msg {
            Some(Msg::Hello(h)) => crate::report::AgentHello::from(h.clone()).takes_encoded_plans(),
            _ => false,
        };
        let up = futures::stream::once(async move { hello }).chain(
            inbound
                .take_while(|m| std::future::ready(m.is_ok()))
                .filter_map(|m| std::future::ready(m.ok())),
        );
        let mut client = pb::agent_service_client::AgentServiceClient::new(relay.leader().await?);
        let upstream = client
            .session(relay.relayed(&agent, up)?)
            .await?
            .into_inner();
        tracing::info!(node = %agent.node, "relaying an agent to the leader");
        Ok(Response::new(outbound(
            upstream,
            copy.plan_receiver(&agent.node),
            encoded,
            relay.following.clone(),
            copy,
            Counted::new(&relay.sessions),
        )))
    }

    async fn tunnel(
        &self,
        req: Request<Streaming<pb::TunnelUp>>,
    ) -> Result<Response<Self::TunnelStream>, Status> {
        let relay = &self.0;
        let agent = agent(&req)?;
        if relay.copy()?.is_revoked(&agent.certificate) {
            tracing::warn!(node = %agent.node, "refused a tunnel: its certificate was revoked");
            return Err(Status::unauthenticated("this certificate was revoked"));
        }
        let up = req
            .into_inner()
            .take_while(|m| std::future::ready(m.is_ok()))
            .filter_map(|m| std::future::ready(m.ok()));
        let mut client = pb::agent_service_client::AgentServiceClient::new(relay.leader().await?);
        let down = client
            .tunnel(relay.relayed(&agent, up)?)
            .await?
            .into_inner();
        Ok(Response::new(Box::pin(down)))
    }
}

/// The agent's side of a relayed session: the leader's messages (its
/// Welcome first; it sends no plans on a relayed stream), and after the
/// Welcome this standby's plan for the node each time it changes (latest
/// wins). Ends when the leader's stream ends, or when the copy of desired
/// state is replaced (its watch started over): the agent then connects
/// again.
fn outbound(
    upstream: Streaming<pb::CoordinatorMessage>,
    plans: watch::Receiver<Option<Arc<pb::NodePlan>>>,
    encoded: bool,
    following: watch::Receiver<Following>,
    copy: Arc<crate::state::Coordinator>,
    counted: Counted,
) -> OutboundStream {
    struct State {
        upstream: Streaming<pb::CoordinatorMessage>,
        plans: watch::Receiver<Option<Arc<pb::NodePlan>>>,
        welcomed: bool,
        following: watch::Receiver<Following>,
        copy: Arc<crate::state::Coordinator>,
        done: bool,
        _counted: Counted,
    }
    let state = State {
        upstream,
        plans,
        welcomed: false,
        following,
        copy,
        done: false,
        _counted: counted,
    };
    let stream = futures::stream::unfold(state, move |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            tokio::select! {
                msg = s.upstream.message() => match msg {
                    Ok(Some(m)) => match m.msg {
                        Some(Out::Plan(_)) | Some(Out::EncodedPlan(_)) => continue,
                        Some(Out::Welcome(_)) => {
                            s.welcomed = true;
                            s.plans.mark_changed();
                            return Some((Ok(m), s));
                        }
                        _ => return Some((Ok(m), s)),
                    },
                    Ok(None) => {
                        s.done = true;
                        return Some((Err(Status::unavailable(
                            "standby: the leader ended the relayed stream; connect again",
                        )), s));
                    }
                    Err(status) => {
                        s.done = true;
                        return Some((Err(status), s));
                    }
                },
                changed = s.plans.changed(), if s.welcomed => {
                    if changed.is_err() {
                        return None;
                    }
                    let plan = s.plans.borrow_and_update().clone();
                    if let Some(plan) = plan {
                        let out = if encoded {
                            Out::EncodedPlan(prost::Message::encode_to_vec(&*plan).into())
                        } else {
                            Out::Plan(pb::NodePlan::clone(&plan))
                        };
                        return Some((Ok(pb::CoordinatorMessage { msg: Some(out) }), s));
                    }
                }
                changed = s.following.changed() => {
                    let replaced = changed.is_err()
                        || !s
                            .following
                            .borrow_and_update()
                            .coord
                            .as_ref()
                            .is_some_and(|c| Arc::ptr_eq(c, &s.copy));
                    if replaced {
                        s.done = true;
                        return Some((Err(Status::unavailable(
                            "standby: this coordinator's copy of desired state was reloaded; connect again",
                        )), s));
                    }
                }
            }
        }
    });
    Box::pin(stream)
}

/// `EnrollService.Join` on a standby's agent port: forwarded to the
/// leader, which checks the join token and signs the certificate.
#[derive(Clone)]
pub struct EnrollRelay(pub Arc<Relay>);

#[tonic::async_trait]
impl pb::enroll_service_server::EnrollService for EnrollRelay {
    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let mut client =
            pb::enroll_service_client::EnrollServiceClient::new(self.0.leader().await?);
        client.join(req.into_inner()).await
    }
}

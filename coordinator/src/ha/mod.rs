//! Several coordinators on one etcd: one leads, the others stand by.
//!
//! Every coordinator holds an etcd lease (`--leader-ttl`), kept alive a few
//! times per TTL, registers itself under `ha/members/ID` on that lease and
//! campaigns in etcd's election for `ha/leader`. The winner serves the
//! control API, the agent port and the dashboard and runs the controllers;
//! every store write it makes is fenced on its election key's creation
//! revision, so once its lease is gone (killed, frozen, cut off from etcd)
//! nothing it still tries to write lands. A leader that cannot renew its
//! lease steps down before the lease can expire on the etcd side, so no two
//! coordinators act as leader at once. Standbys serve only `/healthz`,
//! `/readyz` (503) and `/metrics` until they win.
//!
//! Standbys forward their API and HTTP ports' calls to the leader
//! ([`forward`]), so the CLI and the dashboard work through any
//! coordinator. Agent streams are served by the leader only: a standby's
//! agent port stays closed and agents move on to the next address.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

mod agents;
mod forward;
pub mod mirror;
mod serve;

pub use forward::FORWARDED_BY;
pub use serve::serve;

use etcd_client::{Client, GetOptions, PutOptions};
use serde::{Deserialize, Serialize};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

/// The election's name, under the store's prefix.
pub const LEADER_KEY: &str = "ha/leader";
/// Where coordinators announce themselves, under the store's prefix.
pub const MEMBERS_PREFIX: &str = "ha/members/";
/// How long one etcd call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One coordinator, as it announces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Member {
    /// `--name`, unique among the coordinators of one store.
    pub id: String,
    pub hostname: String,
    /// Control API (`https://…`).
    pub api: String,
    /// Agent port (`host:port`).
    pub agents: String,
    /// HTTP port (`http://…`).
    pub http: String,
    pub version: String,
    pub started_unix_ms: i64,
}

/// This coordinator's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Waiting to lead.
    Standby,
    /// Leading since `since_unix_ms`; `term` is the election key's creation
    /// revision (grows with every new leadership).
    Leader { term: i64, since_unix_ms: i64 },
}

impl Role {
    pub fn is_leader(&self) -> bool {
        matches!(self, Role::Leader { .. })
    }
}

/// Sets or lifts the store's write fence: `(etcd key, creation revision)`.
pub type Fencer = Arc<dyn Fn(Option<(String, i64)>) + Send + Sync>;

/// A coordinator in the control plane, as `convoy status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub member: Member,
    pub leader: bool,
}

/// The control plane as one coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlPlaneView {
    pub members: Vec<MemberView>,
    /// Who leads (its id), empty when nobody does right now.
    pub leader: String,
    pub store: crate::store::StoreHealth,
}

/// The election of one coordinator; see the module docs.
pub struct Election {
    client: Client,
    /// The store's key prefix (`/convoy/`).
    prefix: String,
    me: Member,
    ttl: Duration,
    role: watch::Sender<Role>,
    fence: Fencer,
    /// Leaderships won by this process.
    pub terms_won: AtomicU64,
    /// Last error of the election loop (for `/readyz` and logs).
    last_error: Mutex<String>,
    /// Woken when the leader cannot serve: it resigns (see [`Self::abdicate`]).
    abdicate: tokio::sync::Notify,
    /// One client per etcd member, for lease renewals (see
    /// `EtcdStore::pinned_clients`); empty: renewals use `client`.
    renewers: Vec<Client>,
}

impl Election {
    pub fn new(
        client: Client,
        prefix: &str,
        me: Member,
        ttl: Duration,
        fence: Fencer,
    ) -> Arc<Self> {
        Self::with_renewers(client, Vec::new(), prefix, me, ttl, fence)
    }

    /// [`Self::new`], renewing the lease through `renewers` in turn.
    pub fn with_renewers(
        client: Client,
        renewers: Vec<Client>,
        prefix: &str,
        me: Member,
        ttl: Duration,
        fence: Fencer,
    ) -> Arc<Self> {
        Arc::new(Self {
            renewers,
            client,
            prefix: prefix.to_string(),
            me,
            ttl: ttl.max(Duration::from_secs(1)),
            role: watch::Sender::new(Role::Standby),
            fence,
            terms_won: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            abdicate: tokio::sync::Notify::new(),
        })
    }

    /// This coordinator.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// Gives the lead up (a leader that cannot serve, e.g. its store load
    /// failed, must not hold the lease others could serve with): resigns,
    /// and waits one TTL before campaigning again.
    pub fn abdicate(&self) {
        self.abdicate.notify_one();
    }

    /// This coordinator's role, now and as it changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Why the election loop last failed (empty when it did not).
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Campaigns, leads, steps down and campaigns again until `shutdown`;
    /// on shutdown a leader resigns, so a standby takes over at once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        while !shutdown.is_cancelled() {
            match self.term(&shutdown).await {
                Ok(()) => backoff = Duration::from_millis(250),
                Err(e) => {
                    tracing::warn!(error = %e, "election: {e}");
                    if let Ok(mut last) = self.last_error.lock() {
                        *last = e.clone();
                    }
                    let pause = backoff.mul_f64(rand::random_range(0.5..=1.0));
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// One lease: campaign on it, lead while it lives.
    async fn term(&self, shutdown: &CancellationToken) -> Result<(), String> {
        let mut client = self.client.clone();
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let lease = call(client.lease_grant(ttl_secs, None))
            .await
            .map_err(|e| format!("cannot get a lease from etcd: {e}"))?;
        let granted_ttl = Duration::from_secs(u64::try_from(lease.ttl()).unwrap_or(1).max(1));
        let lease = lease.id();
        let lost = CancellationToken::new();
        let renewers = if self.renewers.is_empty() {
            vec![client.clone()]
        } else {
            self.renewers.clone()
        };
        let keeper = tokio::spawn(keep_lease(renewers, lease, granted_ttl, lost.clone()));
        let _stop_keeper = Abort(keeper);

        let value = serde_json::to_vec(&self.me).unwrap_or_default();
        call(client.put(
            self.key(&format!("{MEMBERS_PREFIX}{}", self.me.id)),
            value.clone(),
            Some(PutOptions::new().with_lease(lease)),
        ))
        .await
        .map_err(|e| format!("cannot announce this coordinator in etcd: {e}"))?;

        let mut election = client.election_client();
        let won = tokio::select! {
            _ = shutdown.cancelled() => {
                revoke(&mut client, lease).await;
                return Ok(());
            }
            _ = lost.cancelled() => return Err("the lease was lost while campaigning".into()),
            won = election.campaign(self.key(LEADER_KEY), value, lease) => {
                won.map_err(|e| format!("campaign failed: {e}"))?
            }
        };
        let Some(leader) = won.leader().cloned() else {
            revoke(&mut client, lease).await;
            return Err("etcd answered the campaign without a leader key".into());
        };
        let key = String::from_utf8_lossy(leader.key()).into_owned();
        let term = leader.rev();
        (self.fence)(Some((key.clone(), term)));
        self.terms_won.fetch_add(1, Ordering::Relaxed);
        let since_unix_ms = crate::state::now_unix_ms();
        tracing::info!(term, coordinator = %self.me.id, "this coordinator leads");
        self.role.send_replace(Role::Leader {
            term,
            since_unix_ms,
        });

        tokio::select! {
            _ = lost.cancelled() => {
                // A fence no key can match: whatever still runs writes nothing.
                (self.fence)(Some((key, i64::MAX)));
                self.role.send_replace(Role::Standby);
                Err("lost the lease (etcd unreachable or too slow): stepped down".into())
            }
            _ = shutdown.cancelled() => {
                (self.fence)(Some((key, i64::MAX)));
                self.role.send_replace(Role::Standby);
                let _ = call(election.resign(Some(etcd_client::ResignOptions::new().with_leader(leader)))).await;
                revoke(&mut client, lease).await;
                Ok(())
            }
            _ = self.abdicate.notified() => {
                (self.fence)(Some((key, i64::MAX)));
                self.role.send_replace(Role::Standby);
                let _ = call(election.resign(Some(etcd_client::ResignOptions::new().with_leader(leader)))).await;
                revoke(&mut client, lease).await;
                tracing::warn!("gave the lead up; campaigning again in {:?}", self.ttl);
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(self.ttl) => {}
                }
                Ok(())
            }
        }
    }

    /// The coordinator that leads, as etcd's election says; `None` when
    /// nobody does or etcd does not answer in time.
    pub async fn leader(&self) -> Option<Member> {
        let mut election = self.client.election_client();
        let resp = call_within(VIEW_TIMEOUT, election.leader(self.key(LEADER_KEY)))
            .await
            .ok()?;
        resp.kv()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok())
    }

    /// The coordinators announced in etcd and who leads.
    pub async fn view(&self, store: crate::store::StoreHealth) -> ControlPlaneView {
        let mut client = self.client.clone();
        let mut members: Vec<Member> = match call_within(
            VIEW_TIMEOUT,
            client.get(
                self.key(MEMBERS_PREFIX),
                Some(GetOptions::new().with_prefix()),
            ),
        )
        .await
        {
            Ok(resp) => resp
                .kvs()
                .iter()
                .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
                .collect(),
            Err(_) => vec![self.me.clone()],
        };
        let leader: Option<Member> = call_within(
            VIEW_TIMEOUT,
            client.election_client().leader(self.key(LEADER_KEY)),
        )
        .await
        .ok()
        .and_then(|r| {
            r.kv()
                .and_then(|kv| serde_json::from_slice(kv.value()).ok())
        });
        let leader_id = leader.as_ref().map(|m| m.id.clone()).unwrap_or_default();
        if let Some(l) = leader {
            if !members.iter().any(|m| m.id == l.id) {
                members.push(l);
            }
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        ControlPlaneView {
            members: members
                .into_iter()
                .map(|member| MemberView {
                    leader: member.id == leader_id,
                    member,
                })
                .collect(),
            leader: leader_id,
            store,
        }
    }
}

/// Aborts a task when dropped.
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn call<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    call_within(CALL_TIMEOUT, f).await
}

/// How long the reads of [`Election::view`] may take: it answers status
/// requests and probes, which must not hang on a lost etcd.
const VIEW_TIMEOUT: Duration = Duration::from_millis(1500);

async fn call_within<T>(
    within: Duration,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(within, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("etcd did not answer within {within:?}")),
    }
}

async fn revoke(client: &mut Client, lease: i64) {
    let _ = call(client.lease_revoke(lease)).await;
}

/// Renews `lease` three times per TTL; cancels `lost` when a renewal cannot
/// be confirmed before the lease could have expired on etcd's side (a fifth
/// of the TTL early, so the step-down comes first). A renewal that fails or
/// takes over a quarter of the TTL is tried again at once through the next
/// member's client: one dead etcd member must not cost the lead.
async fn keep_lease(clients: Vec<Client>, lease: i64, ttl: Duration, lost: CancellationToken) {
    let margin = ttl / 5;
    let mut deadline = Instant::now() + ttl - margin;
    let mut stream: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> = None;
    let mut at = 0usize;
    loop {
        let sent = Instant::now();
        if sent >= deadline || clients.is_empty() {
            tracing::warn!(lease, "no lease renewal confirmed in time");
            lost.cancel();
            return;
        }
        let attempt = deadline.min(sent + ttl / 4);
        let client = &clients[at % clients.len()];
        match tokio::time::timeout_at(attempt, renew(client, lease, &mut stream)).await {
            Ok(Ok(ttl_left)) if ttl_left > 0 => {
                let left = Duration::from_secs(u64::try_from(ttl_left).unwrap_or(0));
                deadline = sent + left - margin.min(left);
            }
            Ok(Ok(_)) => {
                tracing::warn!(lease, "the lease expired");
                lost.cancel();
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(lease, error = %e, "lease renewal failed; next member");
                stream = None;
                at = at.wrapping_add(1);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(_) => {
                tracing::debug!(lease, "lease renewal slow; next member");
                stream = None;
                at = at.wrapping_add(1);
                continue;
            }
        }
        tokio::time::sleep(ttl / 3).await;
    }
}

/// One renewal; the TTL left as etcd says (0: expired).
async fn renew(
    client: &Client,
    lease: i64,
    stream: &mut Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>,
) -> Result<i64, etcd_client::Error> {
    if stream.is_none() {
        *stream = Some(client.clone().lease_keep_alive(lease).await?);
    }
    let Some((keeper, responses)) = stream.as_mut() else {
        return Ok(0);
    };
    keeper.keep_alive().await?;
    match responses.message().await? {
        Some(resp) => Ok(resp.ttl()),
        None => Err(etcd_client::Error::LeaseKeepAliveError(
            "the keep-alive stream ended".into(),
        )),
    }
}

/// Where the coordinator learns about the control plane: one coordinator
/// on its own store, or an election among several.
#[async_trait::async_trait]
pub trait ControlPlane: Send + Sync {
    async fn view(&self) -> ControlPlaneView;
    /// Whether this coordinator leads now.
    fn is_leader(&self) -> bool;
    /// This coordinator's id and leadership term, when elected among
    /// several: every commit records them (`meta/writer`), so the store's
    /// history shows which leader wrote what.
    fn term(&self) -> Option<Writer> {
        None
    }
}

/// Who wrote a commit, stored at [`WRITER_KEY`] with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Writer {
    pub coordinator: String,
    pub term: i64,
}

/// Where each commit of an elected leader records its writer.
pub const WRITER_KEY: &str = "meta/writer";

/// One coordinator alone on its store (sled): it always leads.
pub struct Alone {
    pub me: Member,
    pub store: Arc<dyn crate::store::Store>,
}

#[async_trait::async_trait]
impl ControlPlane for Alone {
    async fn view(&self) -> ControlPlaneView {
        ControlPlaneView {
            members: vec![MemberView {
                member: self.me.clone(),
                leader: true,
            }],
            leader: self.me.id.clone(),
            store: self.store.health().await,
        }
    }
    fn is_leader(&self) -> bool {
        true
    }
}

/// One of several coordinators on etcd.
pub struct Elected {
    pub election: Arc<Election>,
    pub store: Arc<dyn crate::store::Store>,
}

#[async_trait::async_trait]
impl ControlPlane for Elected {
    async fn view(&self) -> ControlPlaneView {
        let health = self.store.health().await;
        self.election.view(health).await
    }
    fn is_leader(&self) -> bool {
        self.election.role.borrow().is_leader()
    }
    fn term(&self) -> Option<Writer> {
        match *self.election.role.borrow() {
            Role::Leader { term, .. } => Some(Writer {
                coordinator: self.election.me.id.clone(),
                term,
            }),
            Role::Standby => None,
        }
    }
}

impl From<&ControlPlaneView> for convoy_proto::ControlPlane {
    fn from(v: &ControlPlaneView) -> Self {
        let ControlPlaneView {
            members,
            leader,
            store,
        } = v;
        let crate::store::StoreHealth {
            backend,
            location,
            healthy,
            members: store_members,
            error,
            probe_seconds: _,
        } = store;
        convoy_proto::ControlPlane {
            coordinators: members
                .iter()
                .map(|m| convoy_proto::CoordinatorInfo {
                    id: m.member.id.clone(),
                    hostname: m.member.hostname.clone(),
                    api: m.member.api.clone(),
                    agents: m.member.agents.clone(),
                    http: m.member.http.clone(),
                    version: m.member.version.clone(),
                    started_unix_ms: m.member.started_unix_ms,
                    leader: m.leader,
                })
                .collect(),
            leader: leader.clone(),
            store: Some(convoy_proto::StoreHealth {
                backend: backend.clone(),
                location: location.clone(),
                healthy: *healthy,
                members: store_members.clone(),
                error: error.clone(),
            }),
        }
    }
}

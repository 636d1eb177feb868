//! Starts the coordinator: data directory, CA and server certificate, store,
//! admin token, and the two TLS listeners (API: TLS + token; agents: mTLS).
//! TLS handshakes are done here so refused peers are logged with the reason.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use convoy_proto as pb;
use rustls::ServerConfig;
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tracing::Instrument;

use crate::{
    api::{agent::AgentApi, auth, control::ControlApi, enroll::EnrollApi},
    audit::Audit,
    http,
    pki::{self, Ca, PkiPaths},
    state::{Coordinator, Liveness},
    store::{SledStore, Store},
    tls::ServerCert,
    tokens::Tokens,
};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub agent_listen: SocketAddr,
    pub sans: Vec<String>,
    /// Lifetime of the certificates agents get when they join.
    pub agent_cert_validity: time::Duration,
    /// A CA to use (certificate, key) instead of the generated one.
    pub ca_files: Option<(PathBuf, PathBuf)>,
    /// Heartbeat interval and the silence after which a node is lost.
    pub liveness: Liveness,
    /// Address of the HTTP port: dashboard, `/api/`, `/metrics`, probes.
    pub http_listen: SocketAddr,
    /// `/metrics` needs a token like the dashboard.
    pub metrics_auth: bool,
    /// The largest spec file `apply` reads, in bytes.
    pub max_spec_bytes: usize,
    /// This coordinator's name among those sharing a store.
    pub name: String,
    /// Where rollout analyses query by default (`--prometheus-url`).
    pub prometheus_url: String,
}

/// A started coordinator.
pub struct Running {
    pub api_addr: SocketAddr,
    pub agent_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub token_path: PathBuf,
    pub pki: PkiPaths,
    pub tasks: Vec<JoinHandle<()>>,
    pub tokens: Arc<Tokens>,
    pub audit: Arc<Audit>,
}

/// The largest request the control API decodes: room for a spec of
/// `max_spec_bytes` and a bit over, and never less than tonic's 4 MiB.
fn grpc_limit(max_spec_bytes: usize) -> usize {
    (4 << 20).max(max_spec_bytes.saturating_add(1 << 20))
}

/// Starts a coordinator alone on the sled store in its data directory.
pub async fn start(cfg: ServeConfig, shutdown: CancellationToken) -> Result<Running> {
    pki::create_dir_private(&cfg.data_dir)?;
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&cfg.data_dir.join("store"))?);
    start_on(cfg, store, None, shutdown).await
}

/// The store key holding the CA's fingerprint: coordinators sharing a
/// store must share the CA (agents trust one).
const CA_KEY: &str = "meta/ca-fingerprint";

/// Starts a coordinator on `store`; `plane` says which control plane it
/// is part of (none: alone, always leading).
pub async fn start_on(
    cfg: ServeConfig,
    store: Arc<dyn Store>,
    plane: Option<Arc<dyn crate::ha::ControlPlane>>,
    shutdown: CancellationToken,
) -> Result<Running> {
    pki::create_dir_private(&cfg.data_dir)?;
    let paths = PkiPaths::new(&cfg.data_dir);
    let ca = match &cfg.ca_files {
        Some((cert, key)) => Ca::import(&paths, cert, key)?,
        None => Ca::load_or_create(&paths)?,
    };
    let server = ca.issue_server(&cfg.sans)?;
    pki::write_private(&paths.server_key(), server.key_pem.as_bytes())?;
    pki::write_private(&paths.server_cert(), server.cert_pem.as_bytes())?;
    let token_path = cfg.data_dir.join("admin.token");
    let tokens = Arc::new(Tokens::load(store.clone(), &token_path).await?);
    let audit = Arc::new(Audit::load(store.clone()).await?);
    // Before the store is read: a bad key file stops the start, naming it.
    let sealer = crate::secrets::Sealer::open_or_create(&cfg.data_dir)?;
    check_trust(&*store, &ca.fingerprint(), &sealer, &paths, true).await?;
    let coord_store = store.clone();
    let coord = Coordinator::load_sealed(store, cfg.liveness, shutdown.clone(), sealer).await?;
    coord.set_spec_limits(crate::spec::Limits::with_max_bytes(cfg.max_spec_bytes));
    coord.set_control_plane(plane.unwrap_or_else(|| {
        Arc::new(crate::ha::Alone {
            me: crate::ha::Member {
                id: cfg.name.clone(),
                hostname: cfg.name.clone(),
                api: format!("https://{}", cfg.api_listen),
                agents: cfg.agent_listen.to_string(),
                http: format!("http://{}", cfg.http_listen),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_unix_ms: crate::state::now_unix_ms(),
            },
            store: coord_store.clone(),
        })
    }));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_cert = Arc::new(ServerCert::new(
        &server.cert_pem,
        &server.key_pem,
        ca.cert_pem(),
        provider.clone(),
    )?);
    save_sans(&paths, &cfg.sans)?;

    // A client without a certificate gets through the handshake only to
    // reach EnrollService.Join; the agent stream refuses it (no peer
    // certificate). A certificate that is presented must chain to the CA
    // and not be revoked.
    let agent_tls = crate::tls::server_config(
        server_cert.clone(),
        crate::tls::Clients::Agents {
            ca_pem: ca.cert_pem(),
            revoked: Some(coord.revoked()),
        },
    )?;
    let api_tls = crate::tls::server_config(server_cert.clone(), crate::tls::Clients::Anyone)?;

    let api_listener = TcpListener::bind(cfg.api_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--api-listen)", cfg.api_listen))?;
    let agent_listener = listen(cfg.agent_listen, AGENT_BACKLOG)
        .with_context(|| format!("cannot listen on {} (--agent-listen)", cfg.agent_listen))?;
    let http_listener = http::bind(cfg.http_listen).await?;
    let api_addr = api_listener.local_addr()?;
    let agent_addr = agent_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::control_service_server::ControlServiceServer<ControlApi>>()
        .await;
    health
        .set_serving::<pb::agent_service_server::AgentServiceServer<AgentApi>>()
        .await;

    // Webhook notifications: the queue left by a previous term (or run)
    // is read back before any event of this one is queued.
    let notifier =
        crate::notify::Notifier::load(coord.clone(), coord_store.clone(), &cfg.name).await?;
    let auth = auth::TokenAuth::new(tokens.clone());
    // A spec just over the limit reaches `apply`, which names the file and
    // the flag; far larger messages stop at gRPC's own limit (4 MiB by
    // default), and the CLI checks the size before it sends.
    let control = tonic::service::interceptor::InterceptedService::new(
        pb::control_service_server::ControlServiceServer::new(
            ControlApi::new(
                coord.clone(),
                tokens.clone(),
                audit.clone(),
                ca.fingerprint(),
            )
            .with_notifier(notifier.clone()),
        )
        .max_decoding_message_size(grpc_limit(cfg.max_spec_bytes)),
        move |req| auth.check(req),
    );
    let signer = Arc::new(Ca::load(&paths)?);
    let agents = pb::agent_service_server::AgentServiceServer::new(AgentApi::new(
        coord.clone(),
        signer.clone(),
        cfg.agent_cert_validity,
    ));
    let enroll = pb::enroll_service_server::EnrollServiceServer::new(EnrollApi::new(
        coord.clone(),
        signer,
        tokens.clone(),
        audit.clone(),
        cfg.agent_cert_validity,
    ));

    let mut tasks = Vec::new();
    let http_opts = http::HttpOptions {
        metrics_auth: cfg.metrics_auth,
        ..Default::default()
    };
    let routes = http::router(
        coord.clone(),
        tokens.clone(),
        audit.clone(),
        http_opts,
        shutdown.clone(),
    );
    tasks.push(tokio::spawn(
        http::serve(http_listener, routes, http_opts.sse.stall, shutdown.clone())
            .instrument(tracing::info_span!("http")),
    ));
    tasks.push(tokio::spawn(
        sweep_silent_nodes(coord.clone(), shutdown.clone())
            .instrument(tracing::info_span!("liveness")),
    ));
    tasks.push(tokio::spawn(
        drive_rollouts(coord.clone(), shutdown.clone()).instrument(tracing::info_span!("rollouts")),
    ));
    tasks.push(tokio::spawn(
        notifier
            .run(shutdown.clone())
            .instrument(tracing::info_span!("notify")),
    ));
    tasks.push(tokio::spawn(
        crate::analysis::drive(coord.clone(), cfg.prometheus_url.clone(), shutdown.clone())
            .instrument(tracing::info_span!("analysis")),
    ));
    tasks.push(tokio::spawn(
        watch_server_cert(
            paths.clone(),
            ca.cert_pem().to_string(),
            server_cert,
            shutdown.clone(),
        )
        .instrument(tracing::info_span!("server-cert")),
    ));
    let incoming = tls_incoming(api_listener, api_tls, "api", shutdown.clone());
    let sd = shutdown.clone();
    let health_api = health_svc.clone();
    tasks.push(tokio::spawn(
        async move {
            if let Err(e) = Server::builder()
                .add_service(health_api)
                .add_service(control)
                .serve_with_incoming_shutdown(incoming, sd.cancelled())
                .await
            {
                tracing::error!(error = %e, "API server failed");
            }
        }
        .instrument(tracing::info_span!("api")),
    ));
    let incoming = tls_incoming(agent_listener, agent_tls, "agents", shutdown.clone());
    let sd = shutdown.clone();
    tasks.push(tokio::spawn(
        async move {
            if let Err(e) = Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(10)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .add_service(health_svc)
                .add_service(agents)
                .add_service(enroll)
                .serve_with_incoming_shutdown(incoming, sd.cancelled())
                .await
            {
                tracing::error!(error = %e, "agent server failed");
            }
        }
        .instrument(tracing::info_span!("agents")),
    ));
    Ok(Running {
        api_addr,
        agent_addr,
        http_addr,
        token_path,
        pki: paths,
        tasks,
        tokens,
        audit,
    })
}

/// Where the store keeps a value sealed under the secrets key, to tell at
/// start whether this coordinator's `secrets.key` is the store's.
pub const KEY_CHECK_KEY: &str = "meta/secrets-key-check";
const KEY_CHECK_CONTEXT: &str = "convoy/secrets-key-check";

/// [`check_trust`] for `cfg`'s data directory (its CA and secrets key),
/// without writing: what a standby checks before it campaigns.
pub async fn check_shared_trust(cfg: &ServeConfig, store: &dyn Store, write: bool) -> Result<()> {
    pki::create_dir_private(&cfg.data_dir)?;
    let paths = PkiPaths::new(&cfg.data_dir);
    let ca = match &cfg.ca_files {
        Some((cert, key)) => Ca::import(&paths, cert, key)?,
        None => Ca::load_or_create(&paths)?,
    };
    let sealer = crate::secrets::Sealer::open_or_create(&cfg.data_dir)?;
    check_trust(store, &ca.fingerprint(), &sealer, &paths, write).await
}

/// Refuses a store written under another CA or another secrets key, and
/// (with `write`) records both in a store that has none: agents trust one
/// CA, and every coordinator on one store must open its secrets, so all of
/// them need the first one's `pki/ca.pem`, `pki/ca.key` and `secrets.key`.
pub async fn check_trust(
    store: &dyn Store,
    fingerprint: &str,
    sealer: &crate::secrets::Sealer,
    paths: &PkiPaths,
    write: bool,
) -> Result<()> {
    let dir = paths
        .dir
        .parent()
        .unwrap_or(&paths.dir)
        .display()
        .to_string();
    let mut ops = Vec::new();
    match crate::store::get_json::<String>(store, CA_KEY).await? {
        Some(stored) if stored == fingerprint => {}
        Some(stored) => anyhow::bail!(
            "the store was written under another CA ({stored}) than {} ({fingerprint}): \
             every coordinator on one store needs the same CA; copy pki/ca.pem and pki/ca.key \
             from the first coordinator's data directory into {dir} (or pass --ca-cert and --ca-key)",
            paths.ca_cert().display()
        ),
        None => ops.push(crate::store::Op::put_json(CA_KEY, &fingerprint)),
    }
    match crate::store::get_json::<crate::secrets::Sealed>(store, KEY_CHECK_KEY).await? {
        Some(sealed) => {
            if sealer.open(KEY_CHECK_CONTEXT, &sealed).is_err() {
                anyhow::bail!(
                    "the store's secrets are sealed under another key than {dir}/secrets.key: \
                     every coordinator on one store needs the same key; copy secrets.key from \
                     the first coordinator's data directory"
                );
            }
        }
        None => ops.push(key_check(sealer)),
    }
    if write && !ops.is_empty() {
        store.apply(ops).await?;
    }
    Ok(())
}

/// The key check's record under `sealer` (also written by a re-wrap).
pub fn key_check(sealer: &crate::secrets::Sealer) -> crate::store::Op {
    crate::store::Op::put_json(
        KEY_CHECK_KEY,
        &sealer.seal(KEY_CHECK_CONTEXT, b"convoy secrets key check"),
    )
}

/// Marks nodes lost whose heartbeats stopped, ten times a second (a pass
/// over 10,000 nodes takes well under a millisecond).
async fn sweep_silent_nodes(coord: Arc<Coordinator>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                coord.sweep(crate::state::now_unix_ms());
                // A Swarm cluster whose driver's agent is gone gets another
                // manager's agent, checked once a second.
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(10) {
                    coord.fail_over_swarm().await;
                    // Instances of nodes lost past their service's
                    // `reschedule_after` move (nothing to do while no node
                    // is lost).
                    coord.reschedule_lost().await;
                }
                // Drains step twice a second (nothing while none runs).
                if ticks.is_multiple_of(5) {
                    coord.drive_drains().await;
                }
            }
        }
    }
}

/// Steps running rollouts a few times a second (their state is in the
/// store, so a restarted coordinator goes on where it was).
async fn drive_rollouts(coord: Arc<Coordinator>, shutdown: CancellationToken) {
    // Status reports wake it at once; the tick serves the time-based gates
    // (min_healthy_time, deadlines, delays).
    let mut every = tokio::time::interval(Duration::from_millis(100));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
            _ = coord.status_changed.notified() => {}
        }
        let started = tokio::time::Instant::now();
        coord.drive_rollouts().await;
        // While reports pour in (10,000 agents replacing an instance each)
        // passes would run back to back; resting four times as long as a
        // pass took keeps the driver under a fifth of a core, and the
        // reports of that time coalesce into the next pass.
        let rest =
            (started.elapsed() * 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
        tokio::time::sleep(rest).await;
    }
}

/// How often the server certificate file is checked for a rotation.
const CERT_WATCH: Duration = Duration::from_secs(1);

/// The `--san`s the coordinator runs with, kept so `convoyd rotate-cert`
/// issues the same names.
fn save_sans(paths: &PkiPaths, sans: &[String]) -> Result<()> {
    let text = serde_json::to_string(sans)?;
    std::fs::write(paths.dir.join("server-sans.json"), text)
        .with_context(|| format!("cannot write {}", paths.dir.display()))
}

/// The `--san`s saved by the running coordinator.
pub fn saved_sans(paths: &PkiPaths) -> Vec<String> {
    std::fs::read_to_string(paths.dir.join("server-sans.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes a new server certificate signed by the CA into `DATA/pki`; a
/// running coordinator installs it within a second or two. Agents need
/// nothing: they trust the CA. The key is written before the certificate,
/// whose change is what the watcher looks for.
pub fn rotate_server_cert(paths: &PkiPaths, extra_sans: &[String]) -> Result<()> {
    let ca = Ca::load(paths)?;
    let mut sans = saved_sans(paths);
    sans.extend(extra_sans.iter().cloned());
    let server = ca.issue_server(&sans)?;
    pki::write_private(&paths.server_key(), server.key_pem.as_bytes())?;
    pki::write_private(&paths.server_cert(), server.cert_pem.as_bytes())?;
    Ok(())
}

/// Installs the server certificate again whenever its file changes.
async fn watch_server_cert(
    paths: PkiPaths,
    ca_pem: String,
    cert: Arc<ServerCert>,
    shutdown: CancellationToken,
) {
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = modified(&paths.server_cert());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CERT_WATCH) => {}
        }
        let now = modified(&paths.server_cert());
        if now == seen {
            continue;
        }
        seen = now;
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p);
        match (read(paths.server_cert()), read(paths.server_key())) {
            (Ok(c), Ok(k)) => match cert.replace(&c, &k, &ca_pem) {
                Ok(()) => tracing::info!("server certificate reloaded"),
                Err(e) => tracing::warn!(error = %e, "kept the old server certificate"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot read the rotated server certificate")
            }
        }
    }
}

type Incoming = ReceiverStream<Result<TlsStream<tokio::net::TcpStream>, std::io::Error>>;

/// Accepts TCP connections and completes their TLS handshakes off the accept
/// loop; refused handshakes are logged with the peer and the reason.
/// Pending connections the agent port queues (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default), above tokio's 1,024: in a
/// reconnect storm of 10,000 agents a full queue drops SYNs, which clients
/// only retry after 1, 3, 7 s.
pub(crate) const AGENT_BACKLOG: u32 = 8192;

/// A listener with `backlog` pending connections (SO_REUSEADDR, as
/// `TcpListener::bind` sets, so a restart can take the port at once).
pub(crate) fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

pub(crate) fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    name: &'static str,
    shutdown: CancellationToken,
) -> Incoming {
    let acceptor = TlsAcceptor::from(config);
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(
        async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(listener = name, %peer, error = %e, "refused TLS connection")
                        }
                        Err(_) => {
                            tracing::warn!(listener = name, %peer, "TLS handshake timed out")
                        }
                    }
                });
            }
        }
        .instrument(tracing::info_span!("tls", listener = name)),
    );
    ReceiverStream::new(rx)
}

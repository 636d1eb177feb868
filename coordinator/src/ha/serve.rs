//! `convoyd serve --store etcd://…`: stand by, lead, step down, stand by.
//!
//! While standing by, the coordinator forwards what comes to its API and
//! HTTP ports to the leader ([`super::forward`]), and answers `/healthz`,
//! `/readyz` (503, naming the leader: a load balancer that must reach the
//! leader directly can use it) and `/metrics` itself. Its agent port is
//! closed, so agents, given every coordinator's address, find the leader.
//! Once elected it starts a whole coordinator on the store (loading desired
//! state fresh, so nothing from a previous term is trusted); when it loses
//! the lease it stops that coordinator (agents reconnect to the next
//! leader) and stands by again.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use axum::{http::StatusCode, response::IntoResponse, routing::get, Router};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    agents::{EnrollRelay, Relay, RelayApi},
    forward::Forwarder,
    mirror::{self, Following},
    ControlPlane, Elected, Election, Member, Role,
};
use crate::{
    server::{self, ServeConfig},
    store::{EtcdTls, StoreUrl},
};

/// How long a term's tasks get to finish after it ends.
const DRAIN: Duration = Duration::from_secs(10);

/// Runs one of several coordinators on etcd until `shutdown`.
pub async fn serve(
    cfg: ServeConfig,
    url: &StoreUrl,
    tls: Option<EtcdTls>,
    ttl: Duration,
    shutdown: CancellationToken,
) -> Result<()> {
    crate::pki::create_dir_private(&cfg.data_dir)?;
    let opened = crate::store::open_store(url, &cfg.data_dir, tls)
        .await
        .context("cannot open the store")?;
    let store = opened.store;
    let etcd = opened
        .etcd
        .context("several coordinators need an etcd store")?;
    // Until elected, nothing this process writes may land.
    let fence_key = format!("{}{}", etcd.prefix(), super::LEADER_KEY);
    etcd.set_fence(Some(crate::store::Fence {
        key: fence_key.clone(),
        create_revision: i64::MAX,
    }));
    let fencer: super::Fencer = {
        let etcd = etcd.clone();
        Arc::new(move |fence: Option<(String, i64)>| {
            etcd.set_fence(fence.map(|(key, create_revision)| crate::store::Fence {
                key,
                create_revision,
            }))
        })
    };
    let me = Member {
        id: cfg.name.clone(),
        hostname: hostname(),
        api: format!("https://{}", advertised(cfg.api_listen)),
        agents: advertised(cfg.agent_listen),
        http: format!("http://{}", advertised(cfg.http_listen)),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_unix_ms: crate::state::now_unix_ms(),
    };
    // A coordinator that could not serve must not win the election: check
    // the CA and the secrets key against the store's before campaigning.
    server::check_shared_trust(&cfg, &*store, false).await?;
    let sealer = crate::secrets::Sealer::open_or_create(&cfg.data_dir)?;
    let client = etcd.unbounded_client().await?;
    let renewers = etcd.pinned_clients().await;
    let election = Election::with_renewers(client, renewers, etcd.prefix(), me, ttl, fencer);
    let plane = Arc::new(Elected {
        election: election.clone(),
        store: store.clone(),
    });
    let ca = Arc::new(load_ca(&cfg)?);
    let forwarder = Arc::new(Forwarder::new(election.clone(), ca.cert_pem().to_string()));
    let elections = tokio::spawn(
        election
            .clone()
            .run(shutdown.clone())
            .instrument(tracing::info_span!("election")),
    );
    println!(
        "convoyd standing by: coordinator `{}` on {} (http=http://{})",
        cfg.name, url, cfg.http_listen
    );
    let mut role = election.role();
    loop {
        // Stand by until elected, following desired state.
        let standby = shutdown.child_token();
        let (following_tx, following) = tokio::sync::watch::channel(Following::default());
        let mut mirror = tokio::spawn(
            mirror::follow(store.clone(), sealer.clone(), standby.clone(), following_tx)
                .instrument(tracing::info_span!("follow")),
        );
        let relay = Arc::new(Relay::new(election.clone(), ca.clone(), following.clone()));
        let mut http = tokio::spawn(standby_http(
            cfg.clone(),
            plane.clone(),
            forwarder.clone(),
            (following.clone(), relay.clone()),
            standby.clone(),
        ));
        let mut api = tokio::spawn(standby_api(cfg.clone(), forwarder.clone(), standby.clone()));
        let mut agents = tokio::spawn(standby_agents(cfg.clone(), relay.clone(), standby.clone()));
        let elected = tokio::select! {
            _ = shutdown.cancelled() => false,
            r = role.wait_for(Role::is_leader) => r.is_ok(),
        };
        standby.cancel();
        // Kept-alive scrapes and CLI connections must not keep the ports
        // from the leader's servers.
        for task in [&mut http, &mut api, &mut agents, &mut mirror] {
            if tokio::time::timeout(Duration::from_secs(1), &mut *task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
        if !elected {
            break;
        }

        // Lead until the lease is gone.
        let term = shutdown.child_token();
        let running = match server::start_on(
            cfg.clone(),
            store.clone(),
            Some(plane.clone() as Arc<dyn ControlPlane>),
            term.clone(),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                // E.g. the store failed while loading: another coordinator
                // may serve, so this one must not sit on the lease.
                tracing::error!(error = %format!("{e:#}"), "cannot serve as leader; giving the lead up");
                term.cancel();
                election.abdicate();
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = role.wait_for(|r| !r.is_leader()) => {}
                }
                continue;
            }
        };
        println!(
            "convoyd ready: api=https://{} agents={} http=http://{} (leading)",
            running.api_addr, running.agent_addr, running.http_addr
        );
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = role.wait_for(|r| !r.is_leader()) => {
                tracing::warn!("no longer the leader: closing the API and agent ports");
            }
        }
        term.cancel();
        let drain = futures::future::join_all(running.tasks);
        if tokio::time::timeout(DRAIN, drain).await.is_err() {
            tracing::warn!("the last term's tasks still run after {DRAIN:?}");
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    // The election resigns on shutdown, so a standby takes over at once.
    let _ = tokio::time::timeout(Duration::from_secs(5), elections).await;
    Ok(())
}

/// A standby's HTTP port: probes and metrics of its own; everything else
/// (the dashboard, `/api/…`) forwarded to the leader.
async fn standby_http(
    cfg: ServeConfig,
    plane: Arc<Elected>,
    forwarder: Arc<Forwarder>,
    (following, relay): (tokio::sync::watch::Receiver<Following>, Arc<Relay>),
    stop: CancellationToken,
) {
    let listener = match crate::http::bind(cfg.http_listen).await {
        Ok(l) => l,
        Err(e) => {
            // The previous term's server may hold it a moment longer.
            tracing::warn!(error = %format!("{e:#}"), "standby HTTP port");
            return;
        }
    };
    let leader_text = {
        let plane = plane.clone();
        move || {
            let plane = plane.clone();
            async move {
                let view = plane.view().await;
                let leader = view.members.iter().find(|m| m.leader);
                match leader {
                    Some(l) => format!(
                        "standby: coordinator `{}` leads (api {}, dashboard {})\n",
                        l.member.id, l.member.api, l.member.http
                    ),
                    None => "standby: no coordinator leads right now\n".to_string(),
                }
            }
        }
    };
    let ready = leader_text;
    let metrics_plane = plane.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let text = ready.clone();
                async move { (StatusCode::SERVICE_UNAVAILABLE, text().await) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let plane = metrics_plane.clone();
                let following = following.borrow().clone();
                let relayed = relay.sessions();
                async move {
                    standby_metrics(&plane, &following, relayed)
                        .await
                        .into_response()
                }
            }),
        )
        .fallback(move |req: axum::extract::Request| {
            let forwarder = forwarder.clone();
            async move {
                match forwarder.http(req).await {
                    Ok(resp) => resp,
                    Err(why) => why.http().into_response(),
                }
            }
        });
    let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
    if let Err(e) = serve.await {
        tracing::warn!(error = %e, "standby HTTP server failed");
    }
}

/// A standby's API port: TLS like the leader's, and every call forwarded
/// to the leader; one that cannot be is answered `UNAVAILABLE` with
/// `standby: …` and why, on which a CLI moves on to its next address (the
/// agent port stays closed: agents move on at once).
async fn standby_api(cfg: ServeConfig, forwarder: Arc<Forwarder>, stop: CancellationToken) {
    let tls = match standby_tls(&cfg) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "standby API port: no TLS");
            return;
        }
    };
    let listener = match tokio::net::TcpListener::bind(cfg.api_listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "standby API port {}", cfg.api_listen);
            return;
        }
    };
    let incoming = server::tls_incoming(listener, tls, "api", stop.clone());
    let app = Router::new().fallback(move |req: axum::extract::Request| {
        let forwarder = forwarder.clone();
        async move {
            match forwarder.grpc(req).await {
                Ok(resp) => resp,
                Err(why) => why.status().into_http::<axum::body::Body>(),
            }
        }
    });
    if let Err(e) = tonic::transport::Server::builder()
        .add_routes(tonic::service::Routes::from(app))
        .serve_with_incoming_shutdown(incoming, stop.cancelled())
        .await
    {
        tracing::warn!(error = %e, "standby API server failed");
    }
}

/// A standby's agent port: agents get their plans from this coordinator's
/// copy of desired state, and the rest of their streams is relayed to the
/// leader ([`super::agents`]); joins are forwarded to it.
async fn standby_agents(cfg: ServeConfig, relay: Arc<Relay>, stop: CancellationToken) {
    let tls = match standby_agent_tls(&cfg) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "standby agent port: no TLS");
            return;
        }
    };
    let listener = match server::listen(cfg.agent_listen, server::AGENT_BACKLOG) {
        Ok(l) => l,
        Err(e) => {
            // The previous term's server may hold it a moment longer.
            tracing::warn!(error = %e, "standby agent port {}", cfg.agent_listen);
            return;
        }
    };
    let incoming = server::tls_incoming(listener, tls, "agents", stop.clone());
    if let Err(e) = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(convoy_proto::agent_service_server::AgentServiceServer::new(
            RelayApi(relay.clone()),
        ))
        .add_service(
            convoy_proto::enroll_service_server::EnrollServiceServer::new(EnrollRelay(relay)),
        )
        .serve_with_incoming_shutdown(incoming, stop.cancelled())
        .await
    {
        tracing::warn!(error = %e, "standby agent server failed");
    }
}

/// The agent port's TLS on a standby, as the leader's, except that a
/// relayed session checks revocation against the copy of desired state
/// (a join presents no certificate).
fn standby_agent_tls(cfg: &ServeConfig) -> Result<Arc<rustls::ServerConfig>> {
    standby_tls_for(cfg, true)
}

/// The shared CA, as the leader's servers load it.
fn load_ca(cfg: &ServeConfig) -> Result<crate::pki::Ca> {
    use crate::pki::{Ca, PkiPaths};
    let paths = PkiPaths::new(&cfg.data_dir);
    Ok(match &cfg.ca_files {
        Some((cert, key)) => Ca::import(&paths, cert, key)?,
        None => Ca::load_or_create(&paths)?,
    })
}

/// A standby's TLS for `clients`: a server certificate from the shared
/// CA, as the leader's ports have.
fn standby_tls_for(cfg: &ServeConfig, agents: bool) -> Result<Arc<rustls::ServerConfig>> {
    let ca = load_ca(cfg)?;
    let issued = ca.issue_server(&cfg.sans)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = Arc::new(crate::tls::ServerCert::new(
        &issued.cert_pem,
        &issued.key_pem,
        ca.cert_pem(),
        provider,
    )?);
    let clients = if agents {
        crate::tls::Clients::Agents {
            ca_pem: ca.cert_pem(),
            revoked: None,
        }
    } else {
        crate::tls::Clients::Anyone
    };
    crate::tls::server_config(cert, clients)
}

/// The API port's TLS.
fn standby_tls(cfg: &ServeConfig) -> Result<Arc<rustls::ServerConfig>> {
    standby_tls_for(cfg, false)
}

async fn standby_metrics(
    plane: &Elected,
    following: &Following,
    relayed: usize,
) -> impl IntoResponse {
    use prometheus_client::{encoding::text::encode, registry::Registry};
    let view = plane.view().await;
    let mut reg = Registry::with_prefix("convoy");
    crate::metrics::register_control_plane(&mut reg, &view, plane.is_leader());
    crate::metrics::register_follower(&mut reg, following, relayed);
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::PROMETHEUS_TEXT,
        )],
        crate::metrics::to_prometheus_text(&out),
    )
}

/// How other coordinators reach `addr`: as it is, or by this host's name
/// where it listens on every address.
fn advertised(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        let host = hostname();
        if !host.is_empty() {
            return format!("{host}:{}", addr.port());
        }
    }
    addr.to_string()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

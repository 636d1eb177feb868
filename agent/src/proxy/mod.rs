//! The per-host ingress proxy (docs/PROXY.md): HTTP/1.1 and HTTP/2
//! (cleartext) on `--proxy-listen`, routed by `x-convoy.ingress` to the
//! node's own running, healthy instances of each service. It runs inside
//! the agent: it reads the reconciler's live statuses (no second copy of
//! health to keep in step) and the reconciler drains an instance through
//! it before stopping the container.

mod forward;
mod local;
mod pool;
mod routes;
mod stats;
mod threads;
pub mod tls;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

pub use forward::{handle, Downstream, Https, Shared};
pub use pool::{ready, wanted, Backend, Candidate, InFlightGuard, Outdated, Pools, Wanted};
pub use routes::{prefix_matches, request_host, HostMatch, Route, RouteTable, ServiceKey};
pub use stats::{Counters, Stats};
pub use threads::{bind, default_threads, MAX_THREADS};

use crate::plan::Plan;
use crate::reconcile::Snapshot;
use crate::runtime::Runtime;

/// A client that sends no request head within this is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 streams at once per client connection.
const MAX_STREAMS: u32 = 256;
/// The table is rebuilt at least this often (an address not found yet).
const REFRESH: Duration = Duration::from_secs(5);
/// How long open connections may finish once the agent stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// A TLS client that has not finished its handshake within this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy's sockets, made by [`bind`] (so that more threads can share
/// their addresses), and how many threads serve each.
pub struct Listeners {
    pub http: TcpListener,
    pub tls: Option<TcpListener>,
    pub threads: usize,
}

/// Serves the proxy on `listeners` until `shutdown`, keeping the pools in
/// step with `plan` and the reconciler's `statuses`, counting requests in
/// `stats` (the session sends them).
pub async fn run<R: Runtime>(
    Listeners {
        http: listener,
        tls: tls_listener,
        threads,
    }: Listeners,
    (pools, stats): (Arc<Pools>, Arc<Stats>),
    runtime: Arc<R>,
    node: String,
    plan: watch::Receiver<Option<Arc<Plan>>>,
    statuses: watch::Receiver<Snapshot>,
    shutdown: CancellationToken,
) {
    let certs = tls::Certificates::new();
    let cert_updater = tls_listener.is_some().then(|| {
        tokio::spawn(
            tls::keep_certs(certs.clone(), plan.clone(), shutdown.clone())
                .instrument(tracing::Span::current()),
        )
    });
    let updater = tokio::spawn(
        keep_pools(
            pools.clone(),
            stats.clone(),
            runtime,
            plan,
            statuses,
            shutdown.clone(),
        )
        .instrument(tracing::Span::current()),
    );
    let https = match tls_listener.as_ref().map(TcpListener::local_addr) {
        Some(Ok(addr)) => Some(Https {
            certs: certs.clone(),
            port: addr.port(),
        }),
        _ => None,
    };
    let shared = Arc::new(Shared {
        pools,
        client: forward::upstream(),
        node,
        stats,
        https,
    });
    let tls_server = match (tls_listener, tls::server_config(certs)) {
        (Some(l), Ok(config)) => {
            let (shared, stop) = (shared.clone(), shutdown.clone());
            let serve_one = move |l| serve_tls(l, config, shared, stop);
            let spread = threads::spread(l, threads, shutdown.clone(), serve_one);
            Some(tokio::spawn(
                async move {
                    if let Err(e) = spread.await {
                        warn!("the proxy's TLS listener failed: {e}");
                    }
                }
                .instrument(tracing::Span::current()),
            ))
        }
        (Some(_), Err(e)) => {
            warn!("the proxy's TLS listener cannot start: {e}");
            None
        }
        (None, _) => None,
    };
    let stop = shutdown.clone();
    let served = threads::spread(listener, threads, shutdown.clone(), move |l| {
        serve(l, shared, stop)
    })
    .await;
    if let Err(e) = served {
        warn!("the proxy failed: {e}");
    }
    for (what, task) in [
        ("pool updater", Some(updater)),
        ("TLS listener", tls_server),
    ]
    .into_iter()
    .chain([("certificate updater", cert_updater)])
    {
        if let Some(Err(e)) = match task {
            Some(t) => Some(t.await),
            None => None,
        } {
            warn!("the proxy's {what} ended badly: {e}");
        }
    }
}

/// The HTTP side of a client connection, cleartext or after TLS.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().max_concurrent_streams(MAX_STREAMS);
    builder
}

/// The next client connection, or `None` once `shutdown`.
async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer));
                }
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    warn!("proxy accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Lets open connections finish for a while once the listener is gone.
async fn finish(graceful: GracefulShutdown) {
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        info!("proxy connections still open at shutdown were closed");
    }
}

/// Accepts TLS connections until `shutdown`: each handshake runs in the
/// connection's own task (at most [`HANDSHAKE_TIMEOUT`]), then the
/// connection is served as a cleartext one, its requests marked
/// `X-Forwarded-Proto: https`.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let builder = http_builder();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let graceful = GracefulShutdown::new();
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "proxy listening (TLS: HTTP/1.1 and HTTP/2)");
    }
    while let Some((stream, peer)) = accept(&listener, &shutdown).await {
        let (shared, acceptor, builder) = (shared.clone(), acceptor.clone(), builder.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        debug!(%peer, "proxy TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "proxy TLS handshake took too long");
                        return;
                    }
                };
            let local = local::Local::new();
            let service = service_fn(move |req| {
                handle(
                    shared.clone(),
                    local.clone(),
                    Downstream { peer, tls: true },
                    req,
                )
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                debug!(%peer, "proxy TLS connection ended: {e}");
            }
        });
    }
    drop(listener);
    finish(graceful).await;
}

/// Accepts connections until `shutdown`, then lets open ones finish for
/// a while.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let builder = http_builder();
    let graceful = GracefulShutdown::new();
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "proxy listening (HTTP/1.1 and HTTP/2 cleartext)");
    }
    while let Some((stream, peer)) = accept(&listener, &shutdown).await {
        let shared = shared.clone();
        // Connections to instances this client connection's task drives.
        let local = local::Local::new();
        let client = Downstream { peer, tls: false };
        let service = service_fn(move |req| handle(shared.clone(), local.clone(), client, req));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, "proxy connection ended: {e}");
            }
        });
    }
    drop(listener);
    finish(graceful).await;
}

/// Serves the proxy on `listen` with one route (any host, `/`) to
/// `backends` (one port for all), until `shutdown`: the request path of
/// `run` without a plan or Docker, for benchmarks (bench/proxy.sh).
pub async fn serve_fixed(
    listen: std::net::SocketAddr,
    backends: &[std::net::SocketAddr],
    threads: usize,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let port = backends.first().map_or(80, |b| b.port());
    if backends.iter().any(|b| b.port() != port) {
        return Err(std::io::Error::other(
            "every backend must listen on the same port (a route has one)",
        ));
    }
    let service = ServiceKey {
        env: "bench".into(),
        service: "web".into(),
    };
    let candidates: Vec<Candidate> = backends
        .iter()
        .enumerate()
        .map(|(i, _)| Candidate {
            service: service.clone(),
            container_id: format!("backend-{i}"),
            workload_id: format!("bench/web/{}", i + 1),
            revision: 1,
            drain_timeout: Duration::from_secs(1),
        })
        .collect();
    let ips: HashMap<String, IpAddr> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("backend-{i}"), b.ip()))
        .collect();
    let present: HashSet<String> = ips.keys().cloned().collect();
    let pools = Pools::new();
    pools.install(
        &Wanted {
            routes: vec![Route {
                host: HostMatch::Any,
                path_prefix: "/".into(),
                service,
                port,
            }],
            candidates,
            conflicts: Vec::new(),
            splits: Default::default(),
            actives: Default::default(),
        },
        &ips,
        &present,
    );
    let shared = Arc::new(Shared {
        pools,
        client: forward::upstream(),
        node: "bench".into(),
        stats: Stats::new(),
        https: None,
    });
    if threads == 0 {
        let listener = TcpListener::bind(listen).await?;
        serve(listener, shared, shutdown).await;
        return Ok(());
    }
    let stop = shutdown.clone();
    threads::spread(threads::bind(listen)?, threads, shutdown, move |l| {
        serve(l, shared, stop)
    })
    .await
}

/// Rebuilds the table whenever the plan, a status or a drain changes it,
/// finding each new instance's address once.
async fn keep_pools<R: Runtime>(
    pools: Arc<Pools>,
    stats: Arc<Stats>,
    runtime: Arc<R>,
    mut plan: watch::Receiver<Option<Arc<Plan>>>,
    mut statuses: watch::Receiver<Snapshot>,
    shutdown: CancellationToken,
) {
    let mut ips: HashMap<String, IpAddr> = HashMap::new();
    let mut conflicts: Vec<String> = Vec::new();
    loop {
        let workloads: Vec<convoy_proto::Workload> = plan
            .borrow_and_update()
            .as_ref()
            .map(|p| p.containers().cloned().collect())
            .unwrap_or_default();
        let snapshot = statuses.borrow_and_update().statuses.clone();
        let outdated = pools.outdated();
        let present: HashSet<String> = snapshot
            .values()
            .map(|s| s.container_id.clone())
            .filter(|id| !id.is_empty())
            .chain(outdated.iter().map(|o| o.container_id.clone()))
            .collect();
        let want = wanted(&workloads, &snapshot, &outdated, &pools.draining());
        if want.conflicts != conflicts {
            for c in &want.conflicts {
                warn!("route conflict: {c}; the first service (by env/name) keeps it");
            }
            conflicts = want.conflicts.clone();
        }
        ips.retain(|id, _| present.contains(id));
        for c in &want.candidates {
            if ips.contains_key(&c.container_id) {
                continue;
            }
            match runtime.inspect(&c.container_id).await {
                Ok(info) => match info.ip {
                    Some(ip) => {
                        ips.insert(c.container_id.clone(), ip);
                    }
                    None => debug!(workload = %c.workload_id, "no address yet; not in the pool"),
                },
                Err(e) => debug!(workload = %c.workload_id, "inspect failed: {e}"),
            }
        }
        pools.install(&want, &ips, &present);
        stats.retain(
            &want
                .candidates
                .iter()
                .map(|c| (c.service.clone(), c.revision))
                .collect(),
            &want.routes.iter().map(|r| r.service.clone()).collect(),
        );
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = plan.changed() => if r.is_err() { return },
            r = statuses.changed() => if r.is_err() { return },
            () = pools.changed.notified() => {}
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

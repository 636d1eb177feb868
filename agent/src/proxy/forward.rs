//! One request through the proxy: find its route, pick an instance, send
//! it on over HTTP/1.1 (a pooled connection), and stream the answer back;
//! WebSocket (and other HTTP/1.1) upgrades are passed through as a byte
//! tunnel once the instance agrees.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::{debug, warn};

use super::local::{Local, LocalBody};
use super::pool::{InFlightGuard, Pools};
use super::routes::request_host;
use super::stats::Stats;

pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;
pub type Upstream = Client<HttpConnector, ProxyBody>;

/// A connection to an instance that is not up within this is a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections to instances are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per instance address.
const POOL_MAX_IDLE: usize = 256;

/// Headers of one hop, never passed on (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The client all requests to instances go through.
pub fn upstream() -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(POOL_MAX_IDLE)
        .build(connector)
}

/// What every request handler shares.
pub struct Shared {
    pub pools: Arc<Pools>,
    pub client: Upstream,
    /// Named in answers the proxy makes itself.
    pub node: String,
    /// Requests, errors and latencies per service and revision.
    pub stats: Arc<Stats>,
    /// The TLS listener, when there is one: cleartext requests for a host
    /// whose certificate asks for it are redirected there.
    pub https: Option<Https>,
}

/// Where the TLS listener is, for redirects.
pub struct Https {
    pub certs: Arc<super::tls::Certificates>,
    /// Its port; left out of a redirect when 443.
    pub port: u16,
}

/// `308 Permanent Redirect` to the same host and path over https (the
/// method and body are kept, unlike 301).
fn to_https(host: &str, port: u16, uri: &hyper::Uri) -> Response<ProxyBody> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = if port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            let mut response = answer(
                StatusCode::PERMANENT_REDIRECT,
                format!("{host} is served over https: {location}\n"),
            );
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => answer(
            StatusCode::BAD_REQUEST,
            "the request's host or path cannot be redirected\n".to_string(),
        ),
    }
}

/// A response body that keeps its request counted as in flight until the
/// body is done (or dropped: the client went away).
struct Guarded<B> {
    inner: B,
    _guard: InFlightGuard,
}

impl<B: Body<Data = Bytes, Error = hyper::Error> + Unpin> Body for Guarded<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// An answer the proxy makes itself: short, plain text.
fn answer(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Methods a retry cannot do twice what the client asked once.
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether the connection header lists `token`.
fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// An HTTP/1.1 upgrade request (`Connection: upgrade` and `Upgrade:`).
fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_has(req.headers(), "upgrade")
}

/// Drops the hop-by-hop headers and those the `Connection` header names;
/// for an upgrade, keeps `Connection: upgrade` and `Upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let upgrade_to = upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if let Some(to) = upgrade_to {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, to);
    }
}

/// Who sent a request, and how.
#[derive(Clone, Copy, Debug)]
pub struct Downstream {
    pub peer: SocketAddr,
    /// It came over the TLS listener.
    pub tls: bool,
}

/// Adds `X-Forwarded-For` (appended), `-Proto` and `-Host`.
fn forwarded(headers: &mut HeaderMap, Downstream { peer, tls }: Downstream, host: &str) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let ip = peer.ip().to_string();
    let value = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
        Some(before) => format!("{before}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(xff, v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    if let Ok(v) = HeaderValue::from_str(host) {
        if !host.is_empty() {
            headers.insert(HeaderName::from_static("x-forwarded-host"), v);
        }
    }
}

/// Handles one request; never fails (errors are answers).
pub async fn handle(
    shared: Arc<Shared>,
    local: Arc<Local>,
    client: Downstream,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let host = request_host(
        req.uri().authority().map(|a| a.as_str()),
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok()),
    );
    if let Some(https) = shared.https.as_ref().filter(|_| !client.tls) {
        if https.certs.table().redirects(&host) {
            return Ok(to_https(&host, https.port, req.uri()));
        }
    }
    let path = req.uri().path();
    let table = shared.pools.table();
    let Some(route) = table.routes.find(&host, path) else {
        return Ok(answer(
            StatusCode::NOT_FOUND,
            format!(
                "no route on node `{}` for host `{host}` and path `{path}`\n",
                shared.node
            ),
        ));
    };
    let (service, port) = (route.service.clone(), route.port);
    drop(table);

    let upgrade = is_upgrade(&req);
    let mut client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let retryable = !upgrade && idempotent(req.method()) && req.body().is_end_stream();
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers, upgrade);
    forwarded(&mut headers, client, &host);
    if !headers.contains_key(header::HOST) {
        // HTTP/2 carries the host in `:authority`; HTTP/1.1 needs it.
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(header::HOST, v);
        }
    }
    // Shares the request's bytes: no copy, no parse per try.
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));

    let mut body = Some(body.boxed_unsync());
    let mut tried: Vec<String> = Vec::new();
    let mut stale_retried = false;
    // The revision whose instance could not be reached (its 502 counts).
    let mut unreached: Option<u64> = None;
    let started = Instant::now();
    loop {
        let Some((backend, guard)) = shared.pools.pick(&service, &tried) else {
            if let Some(revision) = unreached {
                shared
                    .stats
                    .counters(&service, revision)
                    .record(true, started.elapsed());
            }
            return Ok(match tried.last() {
                None => answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "no healthy instance of `{service}` on node `{}`\n",
                        shared.node
                    ),
                ),
                Some(_) => answer(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "no instance of `{service}` on node `{}` could be reached\n",
                        shared.node
                    ),
                ),
            });
        };
        let target = SocketAddr::new(backend.ip, port);
        let result = if client_upgrade.is_some() {
            send_upgrade(
                &shared,
                target,
                &parts.method,
                &path_and_query,
                &headers,
                &mut body,
            )
            .await
        } else {
            send_local(
                &local,
                target,
                &parts.method,
                &path_and_query,
                &headers,
                &mut body,
            )
            .await
        };
        match result {
            Ok(Sent::Upgrade(mut response)) => {
                shared
                    .stats
                    .counters(&service, backend.revision)
                    .record(response.status().is_server_error(), started.elapsed());
                if let Some(client_upgrade) = client_upgrade.take() {
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                        let server_upgrade = hyper::upgrade::on(&mut response);
                        tokio::spawn(tunnel(client_upgrade, server_upgrade, guard));
                        let (parts, _) = response.into_parts();
                        return Ok(Response::from_parts(parts, empty()));
                    }
                }
                let (mut parts, incoming) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers, false);
                let body = Guarded {
                    inner: incoming,
                    _guard: guard,
                };
                return Ok(Response::from_parts(parts, body.boxed_unsync()));
            }
            Ok(Sent::Local(response)) => {
                shared
                    .stats
                    .counters(&service, backend.revision)
                    .record(response.status().is_server_error(), started.elapsed());
                let (mut parts, incoming) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers, false);
                let body = Guarded {
                    inner: incoming,
                    _guard: guard,
                };
                return Ok(Response::from_parts(parts, body.boxed_unsync()));
            }
            Err(Failed::BadPath) => {
                return Ok(answer(
                    StatusCode::BAD_REQUEST,
                    "the request's path cannot be forwarded\n".to_string(),
                ))
            }
            Err(Failed::Send { stale, why, .. }) if stale && retryable && !stale_retried => {
                // Once, on a fresh connection to the same instance.
                stale_retried = true;
                debug!(workload = %backend.workload_id, %target, "a kept connection failed, retrying on a new one: {why}");
                continue;
            }
            Err(Failed::Send { connect, why, .. }) => {
                tried.push(backend.container_id.clone());
                unreached = Some(backend.revision);
                // Nothing reached the instance: another one may take it.
                if connect && retryable && tried.len() < 2 {
                    debug!(workload = %backend.workload_id, %target, "connect failed, retrying once elsewhere: {why}");
                    continue;
                }
                warn!(workload = %backend.workload_id, %target, "proxying failed: {why}");
                shared
                    .stats
                    .counters(&service, backend.revision)
                    .record(true, started.elapsed());
                return Ok(answer(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "instance `{}` of `{service}` at {target} failed: {why}\n",
                        backend.workload_id
                    ),
                ));
            }
        }
    }
}

/// An instance's answer: through the shared pool (an upgrade) or on a
/// connection of the client connection's own.
enum Sent {
    Upgrade(Response<Incoming>),
    Local(Response<LocalBody>),
}

enum Failed {
    BadPath,
    /// `connect`: nothing reached the instance; `stale`: a kept
    /// connection failed before any answer (a fresh one may work).
    Send {
        connect: bool,
        stale: bool,
        why: String,
    },
}

/// The request to send on, its body taken from `body` (a retry has none:
/// only bodyless requests are retried).
fn upstream_request(
    uri: Uri,
    method: &Method,
    headers: &HeaderMap,
    body: &mut Option<ProxyBody>,
) -> Request<ProxyBody> {
    let mut req = Request::new(body.take().unwrap_or_else(empty));
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers.clone();
    req
}

/// An upgrade goes through the shared pool, which hands the upgraded
/// connection over.
async fn send_upgrade(
    shared: &Shared,
    target: SocketAddr,
    method: &Method,
    path_and_query: &PathAndQuery,
    headers: &HeaderMap,
    body: &mut Option<ProxyBody>,
) -> Result<Sent, Failed> {
    let uri: Uri = format!("http://{target}{}", path_and_query.as_str())
        .parse()
        .map_err(|_| Failed::BadPath)?;
    let req = upstream_request(uri, method, headers, body);
    shared
        .client
        .request(req)
        .await
        .map(Sent::Upgrade)
        .map_err(|e| Failed::Send {
            connect: e.is_connect(),
            stale: false,
            why: crate::error_chain(&e),
        })
}

/// Any other request goes on a connection this client connection owns.
async fn send_local(
    local: &Arc<Local>,
    target: SocketAddr,
    method: &Method,
    path_and_query: &PathAndQuery,
    headers: &HeaderMap,
    body: &mut Option<ProxyBody>,
) -> Result<Sent, Failed> {
    let uri = Uri::from(path_and_query.clone());
    let req = upstream_request(uri, method, headers, body);
    local
        .send(target, req, CONNECT_TIMEOUT)
        .await
        .map(Sent::Local)
        .map_err(|e| Failed::Send {
            connect: e.is_connect(),
            stale: e.is_stale(),
            why: e.to_string(),
        })
}

/// Copies bytes both ways between the client's and the instance's
/// upgraded connections until either side closes.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    server: hyper::upgrade::OnUpgrade,
    guard: InFlightGuard,
) {
    let (client, server) = match tokio::try_join!(client, server) {
        Ok(both) => both,
        Err(e) => {
            debug!("upgrade did not complete: {e}");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut server = TokioIo::new(server);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
        debug!("upgraded connection ended: {e}");
    }
    drop(guard);
}

//! The coordinator's HTTP port: the live dashboard (static files embedded in
//! the binary), its JSON API under `/api/` and the Server-Sent Events stream
//! that keeps it current, `/metrics` for Prometheus, `/healthz` and
//! `/readyz`, the spec format's JSON Schema at `/api/schema`, and a
//! service's live logs at `/api/logs` (docs/LOGS.md). Everything but
//! the probes, the sign-in page, the schema and (unless
//! `--metrics-auth`) `/metrics` needs a CLI token of any role, sent as
//! `Authorization: Bearer` or in the cookie `POST /login` sets.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    extract::{connect_info::Connected, ConnectInfo, Extension, Form, Query, Request, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{
        sse::{Event, KeepAlive, Sse},
        Html, IntoResponse, Redirect, Response,
    },
    routing::{get, post},
    Json, Router,
};
use convoy_api::views::{EventJson, NodesJson, StatusJson};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    api::{
        auth::{self, Caller},
        rbac::{authorize, Action},
    },
    audit::Audit,
    events::{Filter, SharedEvent},
    metrics::Metrics,
    state::{now_unix_ms, Coordinator, MetricSample},
    tokens::Tokens,
};

mod logs;
mod sign_in;
mod sse;
mod stall;

use self::{logs::*, sign_in::*, sse::*, stall::*};

const INDEX_HTML: &str = include_str!("http/index.html");
const APP_JS: &str = include_str!("http/app.js");
const STYLE_CSS: &str = include_str!("http/style.css");
const LOGIN_HTML: &str = include_str!("http/login.html");

/// The cookie `POST /login` sets: the token itself, HttpOnly, so page
/// scripts never see it and each request is checked against the live token
/// records (a revoked token stops working at once).
const COOKIE: &str = "convoy_token";
/// Events the dashboard's feed starts with.
const FEED_REPLAY: usize = 200;

/// What the HTTP port serves, beyond the coordinator itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpOptions {
    /// `/metrics` wants a token too (`--metrics-auth`).
    pub metrics_auth: bool,
    pub sse: SseLimits,
}

/// How dashboard streams are bounded, so slow or many clients cost the
/// coordinator a fixed amount of memory and never slow it down.
#[derive(Debug, Clone, Copy)]
pub struct SseLimits {
    /// Streams open at once; more are refused with 503.
    pub max_clients: usize,
    /// Messages queued for one client beyond what its connection buffers.
    pub buffer: usize,
    /// Snapshots after a change are at most this frequent.
    pub debounce: Duration,
    /// A snapshot is sent at least this often (heartbeat ages, metrics).
    pub refresh: Duration,
    /// Log streams (`/api/logs`) open at once; more are refused with 503.
    pub max_log_clients: usize,
    /// A client that takes nothing for this long while there is something
    /// to send is dropped, and a connection whose writes make no progress
    /// this long is closed.
    pub stall: Duration,
    pub keep_alive: Duration,
}

impl Default for SseLimits {
    fn default() -> Self {
        Self {
            max_clients: 64,
            max_log_clients: 16,
            buffer: 64,
            debounce: Duration::from_secs(1),
            refresh: Duration::from_secs(2),
            stall: Duration::from_secs(10),
            keep_alive: Duration::from_secs(15),
        }
    }
}

#[derive(Clone)]
struct App {
    coord: Arc<Coordinator>,
    tokens: Arc<Tokens>,
    sse: SseLimits,
    sse_slots: Arc<Semaphore>,
    log_slots: Arc<Semaphore>,
    /// Where `/api/logs` records who read what, as `convoy logs` does.
    audit: Arc<Audit>,
    shutdown: CancellationToken,
}

/// The HTTP port's routes.
pub fn router(
    coord: Arc<Coordinator>,
    tokens: Arc<Tokens>,
    audit: Arc<Audit>,
    opts: HttpOptions,
    shutdown: CancellationToken,
) -> Router {
    let app = App {
        coord,
        tokens,
        sse: opts.sse,
        sse_slots: Arc::new(Semaphore::new(opts.sse.max_clients)),
        log_slots: Arc::new(Semaphore::new(opts.sse.max_log_clients)),
        audit,
        shutdown,
    };
    let require_token = || middleware::from_fn_with_state(app.clone(), require_token);
    // `layer`, not `route_layer`: unknown paths need a token too, so a
    // caller without one learns nothing about what exists.
    let protected = Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/api/nodes", get(api_nodes))
        .route("/api/services", get(api_services))
        .route("/api/events", get(api_events))
        .route("/api/metrics-history", get(api_metrics_history))
        .route("/api/stream", get(api_stream))
        .route("/api/logs", get(api_logs))
        .fallback(not_found)
        .layer(require_token());
    let mut metrics = Router::new().route("/metrics", get(metrics));
    if opts.metrics_auth {
        metrics = metrics.route_layer(require_token());
    }
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        // The sign-in page's look; no data in it.
        .route("/style.css", get(style_css))
        // The spec format's JSON Schema: no secret in it, and editors
        // (yaml-language-server) fetch it without a token.
        .route("/api/schema", get(api_schema))
        .merge(metrics)
        .merge(protected)
        .layer(middleware::map_response(security_headers))
        .with_state(app)
}

/// Binds the HTTP port.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--http-listen)"))
}

/// Serves `router` on `listener` until `shutdown`; dashboard streams end on
/// shutdown, so the drain does not wait for them.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stall: Duration,
    shutdown: CancellationToken,
) {
    let listener = StallGuardListener {
        inner: listener,
        stall,
    };
    let app = router.into_make_service_with_connect_info::<Conn>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

// ---- authentication --------------------------------------------------

async fn security_headers(mut res: Response) -> Response {
    let headers = res.headers_mut();
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &'static str| {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-store");
    res
}

// ---- pages and probes ------------------------------------------------

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

/// `GET /api/schema`: docs/convoy-spec.schema.json, made once.
async fn api_schema() -> impl IntoResponse {
    static SCHEMA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/schema+json")],
        SCHEMA.get_or_init(crate::spec::json_schema).clone(),
    )
}

async fn style_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api/") {
        let body = Json(serde_json::json!({ "error": format!("no such endpoint: {path}") }));
        (StatusCode::NOT_FOUND, body).into_response()
    } else {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

async fn readyz(State(app): State<App>) -> (StatusCode, &'static str) {
    if app.coord.ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(app): State<App>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (content_type, text) = app.coord.metrics().render_for(&app.coord, accept).await;
    ([(header::CONTENT_TYPE, content_type)], text)
}

// ---- JSON API --------------------------------------------------------

async fn api_nodes(State(app): State<App>) -> Json<NodesJson> {
    Json(NodesJson::from(&convoy_proto::ListNodesResponse::from(
        app.coord.nodes().await,
    )))
}

async fn api_services(State(app): State<App>) -> Json<StatusJson> {
    let mut status = convoy_proto::StatusResponse::from(app.coord.status("", "").await);
    status.control_plane = app
        .coord
        .control_plane()
        .await
        .as_ref()
        .map(convoy_proto::ControlPlane::from);
    Json(StatusJson::from(&status))
}

#[derive(Deserialize, Default)]
struct EventQuery {
    #[serde(default)]
    service: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    env: String,
}

async fn api_events(State(app): State<App>, Query(q): Query<EventQuery>) -> Json<Vec<EventJson>> {
    let filter = Filter {
        service: q.service,
        node: q.node,
        env: q.env,
    };
    Json(
        app.coord
            .events()
            .recent()
            .iter()
            .filter(|ev| filter.matches(ev))
            .map(|ev| EventJson::from(ev.as_ref()))
            .collect(),
    )
}

async fn api_metrics_history(State(app): State<App>) -> Json<BTreeMap<String, Vec<MetricSample>>> {
    Json(app.coord.metrics_history())
}

#[cfg(test)]
mod tests;

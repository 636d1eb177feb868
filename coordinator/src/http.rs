//! The coordinator's HTTP port: the live dashboard (static files embedded in
//! the binary), its JSON API under `/api/` and the Server-Sent Events stream
//! that keeps it current, `/metrics` for Prometheus, `/healthz` and
//! `/readyz`. Everything but the probes, the sign-in page and (unless
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
    events::{Filter, SharedEvent},
    metrics::Metrics,
    state::{now_unix_ms, Coordinator, MetricSample},
    tokens::Tokens,
};

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
    shutdown: CancellationToken,
}

/// The HTTP port's routes.
pub fn router(
    coord: Arc<Coordinator>,
    tokens: Arc<Tokens>,
    opts: HttpOptions,
    shutdown: CancellationToken,
) -> Router {
    let app = App {
        coord,
        tokens,
        sse: opts.sse,
        sse_slots: Arc::new(Semaphore::new(opts.sse.max_clients)),
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

/// The token a request carries: `Authorization: Bearer T`, else the cookie.
fn presented_token(headers: &HeaderMap) -> Result<&str, String> {
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        return h
            .to_str()
            .ok()
            .and_then(auth::bearer)
            .ok_or_else(|| "malformed authorization header".to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            "no token: sign in at /login or send `Authorization: Bearer TOKEN`".to_string()
        })
}

impl App {
    /// The caller, if it holds a CLI token that may read the cluster.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, String> {
        let caller = auth::authenticate(&self.tokens, presented_token(headers)?)?;
        authorize(&caller, Action::Status)?;
        Ok(caller)
    }
}

async fn require_token(State(app): State<App>, mut req: Request, next: Next) -> Response {
    match app.caller(req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(why) => unauthorized(req.uri().path(), &why),
    }
}

/// 401 and nothing else: a JSON error for the API and `/metrics`, the
/// sign-in form for pages.
fn unauthorized(path: &str, why: &str) -> Response {
    if path.starts_with("/api/") || path == "/metrics" {
        let body = Json(serde_json::json!({ "error": format!("unauthorized: {why}") }));
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            body,
        )
            .into_response()
    } else {
        (StatusCode::UNAUTHORIZED, sign_in_form(None)).into_response()
    }
}

fn sign_in_form(error: Option<&str>) -> Html<String> {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", html_escape(e)))
        .unwrap_or_default();
    Html(LOGIN_HTML.replace("<!--error-->", &error))
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn login_page() -> Html<String> {
    sign_in_form(None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(State(app): State<App>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    let caller = auth::authenticate(&app.tokens, token)
        .and_then(|c| authorize(&c, Action::Status).map(|()| c));
    match caller {
        // A live token is `convoy_` + hex: nothing that could break the
        // cookie header.
        Ok(caller)
            if token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            tracing::info!(who = %caller.who(), "signed in to the dashboard");
            let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            (
                [(header::SET_COOKIE, cookie)],
                Redirect::to("/").into_response(),
            )
                .into_response()
        }
        Ok(_) => (
            StatusCode::UNAUTHORIZED,
            sign_in_form(Some("invalid token")),
        )
            .into_response(),
        Err(why) => (StatusCode::UNAUTHORIZED, sign_in_form(Some(&why))).into_response(),
    }
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/login").into_response(),
    )
        .into_response()
}

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
    Json(NodesJson::from(&app.coord.nodes().await))
}

async fn api_services(State(app): State<App>) -> Json<StatusJson> {
    Json(StatusJson::from(&app.coord.status("", "").await))
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

// ---- the live stream -------------------------------------------------

/// What the dashboard draws: `event: snapshot` data.
#[derive(Serialize)]
struct Snapshot {
    now_unix_ms: i64,
    #[serde(flatten)]
    nodes: NodesJson,
    #[serde(flatten)]
    services: StatusJson,
    /// Metric samples newer than the previous snapshot's, per node.
    history: BTreeMap<String, Vec<MetricSample>>,
    /// The first snapshot only: the recent events, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<EventJson>>,
}

/// `GET /api/stream`: a snapshot at once, then every cluster event, and a
/// new snapshot after changes (debounced) and every few seconds. Each client
/// has a small queue fed by its own task from the event bus. A client that
/// takes nothing for [`SseLimits::stall`], or falls so far behind that the
/// bus's bounded window passes it by (Lagged), is dropped; its browser
/// reconnects and starts again from a fresh snapshot. Bursts up to the bus's
/// window get through to a client that reads.
async fn api_stream(
    State(app): State<App>,
    conn: Option<Extension<ConnectInfo<Conn>>>,
) -> Response {
    let Ok(slot) = app.sse_slots.clone().try_acquire_owned() else {
        let body = Json(serde_json::json!({
            "error": format!(
                "too many dashboard streams ({} open): try again later",
                app.sse.max_clients
            )
        }));
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    };
    let (tx, rx) = mpsc::channel(app.sse.buffer.max(2));
    let (replay, events) = app.coord.events().subscribe_with_replay();
    let stalled = conn.map(|Extension(ConnectInfo(c))| c.stalled);
    tokio::spawn(
        feed(app.clone(), replay, events, tx, slot, stalled)
            .instrument(tracing::debug_span!("sse")),
    );
    Sse::new(ReceiverStream::new(rx).map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(app.sse.keep_alive))
        .into_response()
}

/// Why a stream's feeder stopped sending.
enum Stop {
    /// The client went away, or the coordinator is shutting down.
    Gone,
    /// The client fell behind.
    Slow(String),
}

/// Queues a message for the client, waiting at most `stall` for room.
async fn offer(app: &App, tx: &mpsc::Sender<Event>, ev: Event) -> Result<(), Stop> {
    tokio::select! {
        sent = tx.send(ev) => sent.map_err(|_| Stop::Gone),
        _ = tokio::time::sleep(app.sse.stall) => {
            Err(Stop::Slow(format!("it took nothing for {:?}", app.sse.stall)))
        }
        _ = app.shutdown.cancelled() => Err(Stop::Gone),
    }
}

async fn feed(
    app: App,
    replay: Vec<SharedEvent>,
    mut events: broadcast::Receiver<SharedEvent>,
    tx: mpsc::Sender<Event>,
    _slot: OwnedSemaphorePermit,
    stalled: Option<Arc<AtomicBool>>,
) {
    let coord = app.coord.clone();
    let _open = Metrics::open(&coord.metrics().sse_clients);
    let start = replay.len().saturating_sub(FEED_REPLAY);
    let replay = replay[start..]
        .iter()
        .map(|ev| EventJson::from(&**ev))
        .collect();
    let mut since = BTreeMap::new();
    let stop = async {
        offer(&app, &tx, snapshot(&coord, &mut since, Some(replay)).await).await?;
        let mut tick = tokio::time::interval(app.sse.debounce);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = false;
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = app.shutdown.cancelled() => return Err(Stop::Gone),
                _ = tx.closed() => return Err(Stop::Gone),
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        dirty = true;
                        offer(&app, &tx, cluster_event(&ev)).await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        return Err(Stop::Slow(format!("it missed {n} events")));
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(Stop::Gone),
                },
                _ = tick.tick() => {
                    if dirty || last.elapsed() >= app.sse.refresh {
                        dirty = false;
                        last = Instant::now();
                        offer(&app, &tx, snapshot(&coord, &mut since, None).await).await?;
                    }
                }
            }
        }
    };
    let stop: Result<Infallible, Stop> = stop.await;
    let stop = match stop {
        Ok(never) => match never {},
        Err(stop) => stop,
    };
    let slow = match stop {
        Stop::Slow(why) => Some(why),
        // Its connection was closed for not reading (see StallGuard).
        Stop::Gone if stalled.is_some_and(|s| s.load(Ordering::Relaxed)) => Some(format!(
            "its connection took nothing for {:?}",
            app.sse.stall
        )),
        Stop::Gone => None,
    };
    if let Some(why) = slow {
        coord.metrics().sse_dropped();
        tracing::info!(reason = %why, "dropped a dashboard stream that fell behind");
    }
}

fn cluster_event(ev: &SharedEvent) -> Event {
    let data = serde_json::to_string(&EventJson::from(&**ev)).unwrap_or_default();
    Event::default()
        .event("cluster")
        .id(ev.seq.to_string())
        .data(data)
}

/// A snapshot of nodes and services, with the metric samples newer than
/// `since` (per node; updated).
async fn snapshot(
    coord: &Coordinator,
    since: &mut BTreeMap<String, i64>,
    events: Option<Vec<EventJson>>,
) -> Event {
    let nodes = NodesJson::from(&coord.nodes().await);
    let services = StatusJson::from(&coord.status("", "").await);
    let mut history = coord.metrics_history();
    for (node, samples) in history.iter_mut() {
        let after = since.get(node).copied().unwrap_or(i64::MIN);
        samples.retain(|s| s.unix_ms > after);
        if let Some(last) = samples.last() {
            since.insert(node.clone(), last.unix_ms);
        }
    }
    history.retain(|_, samples| !samples.is_empty());
    let snap = Snapshot {
        now_unix_ms: now_unix_ms(),
        nodes,
        services,
        history,
        events,
    };
    Event::default()
        .event("snapshot")
        .data(serde_json::to_string(&snap).unwrap_or_default())
}

// ---- slow readers ----------------------------------------------------

/// Accepts connections wrapped in [`StallGuard`].
struct StallGuardListener {
    inner: TcpListener,
    stall: Duration,
}

impl axum::serve::Listener for StallGuardListener {
    type Io = StallGuard<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    return (StallGuard::new(tcp, self.stall), peer);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// What the handlers know of a connection: whether [`StallGuard`] closed it.
#[derive(Clone, Debug)]
struct Conn {
    stalled: Arc<AtomicBool>,
}

impl Connected<axum::serve::IncomingStream<'_, StallGuardListener>> for Conn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, StallGuardListener>) -> Self {
        Self {
            stalled: stream.io().timed_out.clone(),
        }
    }
}

/// A connection whose writes make no progress for `limit` fails, so a client
/// that stops reading cannot pin its connection's buffers forever.
pub struct StallGuard<T> {
    io: T,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    /// Set once the limit was hit.
    timed_out: Arc<AtomicBool>,
}

impl<T> StallGuard<T> {
    pub fn new(io: T, limit: Duration) -> Self {
        Self {
            io,
            limit,
            stalled: None,
            timed_out: Arc::new(AtomicBool::new(false)),
        }
    }

    /// After the inner write returned Pending: Ready(error) once stalled
    /// for too long; Pending (with a timer armed) until then.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {limit:?}"),
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        inner: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match inner {
            Poll::Pending => self.poll_stall(cx).map(Err),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let inner = Pin::new(&mut this.io).poll_write(cx, buf);
        this.guard(cx, inner)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let inner = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.guard(cx, inner)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let inner = Pin::new(&mut this.io).poll_flush(cx);
        this.guard(cx, inner)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let inner = Pin::new(&mut this.io).poll_shutdown(cx);
        this.guard(cx, inner)
    }
}

#[cfg(test)]
mod tests;

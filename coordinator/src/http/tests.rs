use std::time::Instant as StdInstant;

use axum::body::Body;
use axum::http::Request as HttpRequest;
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use super::*;
use crate::{
    events::Ev,
    state::Liveness,
    store::{SledStore, Store},
    tokens::{NewToken, Role},
};

struct Fixture {
    _dir: tempfile::TempDir,
    coord: Arc<Coordinator>,
    tokens: Arc<Tokens>,
    audit: Arc<Audit>,
    shutdown: CancellationToken,
    admin: String,
    viewer: String,
    /// A deployer in every environment, and one for `staging` only.
    deployer: String,
    staging: String,
    join: String,
    revoked: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("s")).unwrap());
    let path = dir.path().join("admin.token");
    let tokens = Arc::new(Tokens::load(store.clone(), &path).await.unwrap());
    let audit = Arc::new(Audit::load(store.clone()).await.unwrap());
    let shutdown = CancellationToken::new();
    let coord = Coordinator::load(store, Liveness::default(), shutdown.clone())
        .await
        .unwrap();
    let admin = std::fs::read_to_string(&path).unwrap().trim().to_string();
    let new = |name: &str, role| NewToken {
        name: name.into(),
        role,
        envs: vec![],
        ttl_ms: 0,
    };
    let (_, viewer) = tokens
        .create(new("ro", Role::Viewer), "admin (admin)")
        .await
        .unwrap();
    let (_, deployer) = tokens
        .create(new("ci", Role::Deployer), "admin (admin)")
        .await
        .unwrap();
    let (_, staging) = tokens
        .create(
            NewToken {
                envs: vec!["staging".into()],
                ..new("stage", Role::Deployer)
            },
            "admin (admin)",
        )
        .await
        .unwrap();
    let (rec, revoked) = tokens
        .create(new("old", Role::Viewer), "admin (admin)")
        .await
        .unwrap();
    tokens.revoke(&rec.id).await.unwrap();
    let (_, join) = tokens
        .create_join(Default::default(), "admin (admin)")
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        coord,
        tokens,
        audit,
        shutdown,
        admin,
        viewer,
        deployer,
        staging,
        join,
        revoked,
    }
}

impl Fixture {
    fn router(&self, opts: HttpOptions) -> Router {
        router(
            self.coord.clone(),
            self.tokens.clone(),
            self.audit.clone(),
            opts,
            self.shutdown.clone(),
        )
    }

    fn app(&self) -> Router {
        self.router(HttpOptions::default())
    }
}

enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

fn request(method: &str, path: &str, auth: Auth<'_>) -> HttpRequest<Body> {
    let mut req = HttpRequest::builder().method(method).uri(path);
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
        Auth::Cookie(t) => req = req.header("cookie", format!("theme=dark; {COOKIE}={t}")),
    }
    req.body(Body::empty()).unwrap()
}

/// Sends one request; reads the body unless it is an event stream.
async fn send(app: &Router, req: HttpRequest<Body>) -> (StatusCode, HeaderMap, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let text = if parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        String::new()
    } else {
        let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    (parts.status, parts.headers, text)
}

async fn get(app: &Router, path: &str, auth: Auth<'_>) -> (StatusCode, HeaderMap, String) {
    send(app, request("GET", path, auth)).await
}

const PROTECTED: &[&str] = &[
    "/",
    "/app.js",
    "/api/nodes",
    "/api/services",
    "/api/events",
    "/api/metrics-history",
    "/api/stream",
    "/api/logs?target=web",
    "/api/nope",
];

#[tokio::test]
async fn without_a_valid_token_every_page_and_api_call_is_401_and_nothing_else() {
    let f = fixture().await;
    f.coord
        .events()
        .emit(Ev::new("node.joined").node("secret-node"));
    let app = f.app();
    let bad = [
        Auth::None,
        Auth::Bearer("nope"),
        Auth::Cookie("convoy_0000"),
        Auth::Bearer(&f.join),
        Auth::Cookie(&f.join),
        Auth::Bearer(&f.revoked),
    ];
    for path in PROTECTED {
        for auth in &bad {
            let auth = match auth {
                Auth::None => Auth::None,
                Auth::Bearer(t) => Auth::Bearer(t),
                Auth::Cookie(t) => Auth::Cookie(t),
            };
            let (status, headers, body) = get(&app, path, auth).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
            assert!(!body.contains("secret-node"), "{path} leaked data: {body}");
            if path.starts_with("/api/") {
                let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                let error = json["error"].as_str().unwrap();
                assert!(error.starts_with("unauthorized: "), "{error}");
                assert_eq!(json.as_object().unwrap().len(), 1, "{body}");
            } else {
                assert!(body.contains("action=\"/login\""), "{path}: {body}");
                assert!(!body.contains("app.js"), "{path}: {body}");
            }
            assert!(headers.get(header::SET_COOKIE).is_none());
        }
    }
    // Each refusal says why, never echoing the secret.
    let (_, _, body) = get(&app, "/api/nodes", Auth::Bearer(&f.join)).await;
    assert!(body.contains("join token"), "{body}");
    assert!(!body.contains(&f.join), "{body}");
    let (_, _, body) = get(&app, "/api/nodes", Auth::Bearer(&f.revoked)).await;
    assert!(body.contains("revoked"), "{body}");
    let (_, _, body) = get(&app, "/api/nodes", Auth::None).await;
    assert!(body.contains("no token"), "{body}");
    let (status, _, body) = send(
        &app,
        HttpRequest::get("/api/nodes")
            .header("authorization", "Basic abc")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("malformed authorization header"), "{body}");
}

#[tokio::test]
async fn a_viewer_token_reads_the_dashboard_and_api_by_header_or_cookie() {
    let f = fixture().await;
    f.coord
        .events()
        .emit(Ev::new("service.deployed").service("default", "web"));
    f.coord
        .events()
        .emit(Ev::new("node.joined").node("n1").msg("node n1 joined"));
    let app = f.app();
    for auth in [Auth::Bearer(&f.viewer), Auth::Cookie(&f.viewer)] {
        let auth2 = match &auth {
            Auth::Bearer(t) => Auth::Bearer(t),
            Auth::Cookie(t) => Auth::Cookie(t),
            Auth::None => Auth::None,
        };
        let (status, headers, body) = get(&app, "/", auth).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("data-testid=\"event-feed\""), "{body}");
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let (status, _, _) = get(&app, "/api/stream", auth2).await;
        assert_eq!(status, StatusCode::OK);
    }
    let viewer = Auth::Bearer(&f.viewer);
    let (status, headers, js) = get(&app, "/app.js", viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(js.contains("EventSource"));

    let (status, _, body) = get(&app, "/api/nodes", Auth::Bearer(&f.viewer)).await;
    assert_eq!(status, StatusCode::OK);
    let nodes: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(nodes["nodes"].is_array(), "{body}");
    let (status, _, body) = get(&app, "/api/services", Auth::Bearer(&f.admin)).await;
    assert_eq!(status, StatusCode::OK);
    let services: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(services["services"].is_array(), "{body}");
    let (status, _, body) = get(&app, "/api/metrics-history", Auth::Bearer(&f.viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(serde_json::from_str::<serde_json::Value>(&body)
        .unwrap()
        .is_object());

    let (status, _, body) = get(&app, "/api/events", Auth::Bearer(&f.viewer)).await;
    assert_eq!(status, StatusCode::OK);
    let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(all.len(), 2, "{body}");
    let (_, _, body) = get(&app, "/api/events?node=n1", Auth::Bearer(&f.viewer)).await;
    let some: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(some.len(), 1, "{body}");
    assert_eq!(some[0]["kind"], "node.joined");
    assert_eq!(some[0]["message"], "node n1 joined");
    let (_, _, body) = get(
        &app,
        "/api/events?service=web&env=prod",
        Auth::Cookie(&f.admin),
    )
    .await;
    assert_eq!(body, "[]");

    let (status, _, body) = get(&app, "/api/nope", Auth::Bearer(&f.viewer)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn login_sets_an_httponly_strict_cookie_and_logout_clears_it() {
    let f = fixture().await;
    let app = f.app();
    let (status, _, body) = get(&app, "/login", Auth::None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("name=\"token\""), "{body}");

    let login = |token: &str| {
        HttpRequest::post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap()
    };
    let (status, headers, _) = send(&app, login(&f.viewer)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("convoy_token=")
        .unwrap();
    let (status, _, _) = get(&app, "/api/nodes", Auth::Cookie(value)).await;
    assert_eq!(status, StatusCode::OK);

    for bad in ["nope", f.join.as_str(), f.revoked.as_str(), ""] {
        let (status, headers, body) = send(&app, login(bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {body}");
        assert!(headers.get(header::SET_COOKIE).is_none());
        assert!(body.contains("class=\"error\""), "{body}");
        assert!(bad.is_empty() || !body.contains(bad), "{body}");
    }

    let (status, headers, _) = send(&app, request("POST", "/logout", Auth::None)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with("convoy_token=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
}

#[tokio::test]
async fn probes_and_metrics_are_open_and_pages_carry_security_headers() {
    let f = fixture().await;
    let app = f.app();
    let (status, _, body) = get(&app, "/healthz", Auth::None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, _) = get(&app, "/readyz", Auth::None).await;
    assert_eq!(status, StatusCode::OK);
    // OpenMetrics for scrapers that ask for it (Prometheus), else the
    // classic text format.
    let (status, headers, body) = send(
        &app,
        HttpRequest::get("/metrics")
            .header("accept", "application/openmetrics-text;version=1.0.0")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], crate::metrics::OPENMETRICS);
    assert!(body.contains("convoy_sse_dropped_total 0"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    let (status, headers, body) = get(&app, "/metrics", Auth::None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        crate::metrics::PROMETHEUS_TEXT
    );
    assert!(body.contains("convoy_sse_dropped_total 0"), "{body}");
    let (status, _, _) = get(&app, "/style.css", Auth::None).await;
    assert_eq!(status, StatusCode::OK);

    for (path, auth) in [("/", Auth::Bearer(&f.viewer)), ("/login", Auth::None)] {
        let (_, headers, _) = get(&app, path, auth).await;
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(headers.get("access-control-allow-origin").is_none());
    }

    f.shutdown.cancel();
    let (status, _, _) = get(&app, "/readyz", Auth::None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn metrics_auth_puts_metrics_behind_a_token() {
    let f = fixture().await;
    let app = f.router(HttpOptions {
        metrics_auth: true,
        ..Default::default()
    });
    let (status, _, body) = get(&app, "/metrics", Auth::None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.starts_with("{\"error\":\"unauthorized: "), "{body}");
    let (status, _, _) = get(&app, "/metrics", Auth::Bearer(&f.join)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = get(&app, "/metrics", Auth::Bearer(&f.viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("convoy_build_info"), "{body}");
    let (status, _, _) = get(&app, "/healthz", Auth::None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_stream_sends_a_snapshot_then_each_event_then_fresh_snapshots() {
    let f = fixture().await;
    f.coord.events().emit(Ev::new("node.joined").node("n1"));
    let app = f.router(HttpOptions {
        sse: SseLimits {
            debounce: Duration::from_millis(50),
            ..Default::default()
        },
        ..Default::default()
    });
    let res = app
        .clone()
        .oneshot(request("GET", "/api/stream", Auth::Bearer(&f.viewer)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut stream = res.into_body().into_data_stream();
    let mut text = String::new();
    let deadline = StdInstant::now() + Duration::from_secs(5);
    let mut emitted = false;
    // snapshot (with the replayed event), the live event, a new snapshot.
    while !(text.contains("event: cluster") && text.matches("event: snapshot").count() >= 2) {
        assert!(StdInstant::now() < deadline, "got only {text}");
        if text.contains("event: snapshot") && !emitted {
            f.coord
                .events()
                .emit(Ev::new("instance.health").instance("default/web/1"));
            emitted = true;
        }
        if let Ok(Some(chunk)) =
            tokio::time::timeout(Duration::from_millis(200), stream.next()).await
        {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    }
    let snapshot = text
        .lines()
        .skip_while(|l| *l != "event: snapshot")
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let snap: serde_json::Value = serde_json::from_str(snapshot).unwrap();
    assert!(
        snap["nodes"].is_array() && snap["services"].is_array(),
        "{snap}"
    );
    assert_eq!(snap["events"][0]["kind"], "node.joined", "{snap}");
    assert!(snap["now_unix_ms"].as_i64().unwrap() > 0);
    assert!(text.contains("\"kind\":\"instance.health\""), "{text}");
    assert!(text.contains("id: 2\n"), "{text}");
    assert_eq!(
        f.coord.metrics().sse_clients.load(Ordering::Relaxed),
        1,
        "one stream open"
    );
    drop(stream);
    wait_for("the stream to close", || {
        f.coord.metrics().sse_clients.load(Ordering::Relaxed) == 0
    })
    .await;
}

use std::sync::atomic::Ordering;

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = StdInstant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(StdInstant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn streams_beyond_the_limit_get_503_until_one_closes() {
    let f = fixture().await;
    let app = f.router(HttpOptions {
        sse: SseLimits {
            max_clients: 2,
            ..Default::default()
        },
        ..Default::default()
    });
    let open = || {
        app.clone()
            .oneshot(request("GET", "/api/stream", Auth::Bearer(&f.viewer)))
    };
    let a = open().await.unwrap();
    let b = open().await.unwrap();
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    let c = open().await.unwrap();
    assert_eq!(c.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(c.into_body(), 1 << 16).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("too many dashboard streams"));
    drop(a);
    wait_for("a slot to free", || {
        f.coord.metrics().sse_clients.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(open().await.unwrap().status(), StatusCode::OK);
    drop(b);
}

#[tokio::test]
async fn streams_end_on_shutdown() {
    let f = fixture().await;
    let app = f.app();
    let res = app
        .oneshot(request("GET", "/api/stream", Auth::Bearer(&f.viewer)))
        .await
        .unwrap();
    let mut stream = res.into_body().into_data_stream();
    f.shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = stream.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived the shutdown");
}

#[tokio::test]
async fn a_stalled_writer_fails_after_the_limit() {
    let (a, _b) = tokio::io::duplex(64);
    let mut guarded = StallGuard::new(a, Duration::from_millis(200));
    let started = StdInstant::now();
    let err = loop {
        if let Err(e) = guarded.write_all(&[0; 64]).await {
            break e;
        }
    };
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---- a slow client against the real server ---------------------------

/// One HTTP/1.1 request over a fresh connection: status and time taken.
async fn timed_request(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Duration) {
    let started = StdInstant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let head = String::from_utf8_lossy(&raw[..raw.len().min(64)]).to_string();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, started.elapsed())
}

fn dropped_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("convoy_sse_dropped_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Issue 4, bad input: "a slow SSE client is dropped rather than slowing the
/// coordinator (bounded buffers, measured)". The client opens the stream and
/// never reads; events are emitted (~40,000/s) until it is dropped.
/// Meanwhile /healthz and the API keep answering, and once dropped its
/// connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_while_the_server_keeps_answering() {
    let f = fixture().await;
    let limits = SseLimits {
        stall: Duration::from_secs(1),
        ..Default::default()
    };
    let app = f.router(HttpOptions {
        sse: limits,
        ..Default::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app, limits.stall, f.shutdown.clone()));

    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        format!(
            "GET /api/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
            f.viewer
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    wait_for("the stream to open", || {
        f.coord.metrics().sse_clients.load(Ordering::Relaxed) == 1
    })
    .await;

    // A probe loop measuring how fast the server answers during the flood.
    let flooding = CancellationToken::new();
    let probe = {
        let flooding = flooding.clone();
        let viewer = f.viewer.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut answered = 0;
            while !flooding.is_cancelled() {
                for (path, token) in [("/healthz", None), ("/api/nodes", Some(viewer.as_str()))] {
                    let (code, took) = timed_request(addr, path, token).await;
                    assert_eq!(code, 200, "{path}");
                    worst = worst.max(took);
                    answered += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (answered, worst)
        })
    };

    let message = "x".repeat(200);
    let started = StdInstant::now();
    let mut emitted = 0u64;
    let mut event_bytes = 0usize;
    let mut worst_emit = Duration::ZERO;
    while dropped_total(&f.coord.metrics().render(&f.coord).await) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "a client that never reads was not dropped after {emitted} events"
        );
        for _ in 0..200 {
            let t = StdInstant::now();
            let ev = f.coord.events().emit(
                Ev::new("instance.state")
                    .instance("default/web/1")
                    .msg(message.clone()),
            );
            worst_emit = worst_emit.max(t.elapsed());
            event_bytes += serde_json::to_string(&EventJson::from(ev.as_ref()))
                .unwrap()
                .len();
            emitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let to_drop = started.elapsed();
    flooding.cancel();
    let (answered, worst) = probe.await.unwrap();
    eprintln!(
        "slow SSE client dropped after {emitted} events ({event_bytes} bytes of event JSON) in \
         {to_drop:?} (stall limit {:?}); slowest emit {worst_emit:?}; meanwhile {answered} \
         requests to /healthz and /api/nodes answered, the slowest in {worst:?}",
        limits.stall
    );
    assert!(
        worst < Duration::from_millis(500),
        "the server slowed down: {worst:?}"
    );
    wait_for("the dropped stream to be counted closed", || {
        f.coord.metrics().sse_clients.load(Ordering::Relaxed) == 0
    })
    .await;

    // Its connection ends: reading now drains what was in flight, then the
    // stream's last chunk or the close (its writes stalled past the limit).
    tokio::time::sleep(limits.stall + Duration::from_millis(500)).await;
    let mut read = 0usize;
    let mut tail = Vec::new();
    let mut buf = vec![0; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    read += n;
                    tail.extend_from_slice(&buf[..n]);
                    let keep = tail.len().saturating_sub(16);
                    tail.drain(..keep);
                    if tail.ends_with(b"\r\n0\r\n\r\n") {
                        return;
                    }
                }
            }
        }
    })
    .await;
    eprintln!("the slow client's connection held {read} bytes in flight");
    assert!(ended.is_ok(), "the slow client's connection was left open");
    let (code, took) = timed_request(addr, "/healthz", None).await;
    assert_eq!(code, 200);
    assert!(took < Duration::from_secs(1));
}

/// A client that reads is not dropped by a burst: the bus's window (4096
/// events) is what a stream may fall behind, not its small queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_client_gets_every_event_of_a_burst() {
    let f = fixture().await;
    let app = f.app();
    let res = app
        .oneshot(request("GET", "/api/stream", Auth::Bearer(&f.viewer)))
        .await
        .unwrap();
    let mut stream = res.into_body().into_data_stream();
    let burst = 3000;
    for i in 0..burst {
        f.coord
            .events()
            .emit(Ev::new("instance.state").msg(format!("burst {i}")));
    }
    let mut text = String::new();
    let deadline = StdInstant::now() + Duration::from_secs(20);
    while !text.contains(&format!("burst {}\"", burst - 1)) {
        assert!(StdInstant::now() < deadline, "the burst did not arrive");
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the stream stalled")
            .expect("the stream ended");
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert_eq!(text.matches("event: cluster").count(), burst);
    assert_eq!(dropped_total(&f.coord.metrics().render(&f.coord).await), 0);
}

/// Issue 19: the spec format's JSON Schema is served without a token (it
/// holds no secret; editors fetch it without one), and is the file the
/// repository keeps.
#[tokio::test]
async fn the_spec_schema_is_open_and_is_the_file_in_docs() {
    let f = fixture().await;
    let app = f.app();
    let (status, headers, body) = get(&app, "/api/schema", Auth::None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/schema+json");
    assert_eq!(body, include_str!("../../../docs/convoy-spec.schema.json"));
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(parsed["$defs"]["Service"]["properties"]["image"].is_object());
}

// ---- the log panel (issue 19) ----------------------------------------

/// The audit entries of `logs`, as (who's name, target, result).
async fn logs_audit(f: &Fixture) -> Vec<(String, String, String)> {
    f.audit
        .list(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "logs")
        .map(|r| (r.who, r.target, r.result))
        .collect()
}

fn error_of(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    json["error"].as_str().unwrap().to_string()
}

/// Issue 19: `/api/logs` is `convoy logs`'s access: no token is 401, a
/// viewer (or a deployer of another environment) 403 with the reason, a bad
/// parameter 400 naming it, an unknown target 404 with `convoy logs`'s
/// message; refusals and lookups are audited as the gRPC call's are.
#[tokio::test]
async fn dashboard_logs_need_deployer_rights_and_refusals_name_the_reason() {
    let f = fixture().await;
    let app = f.app();

    let (status, _, body) = get(&app, "/api/logs?env=default&target=web", Auth::None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error_of(&body).contains("no token"), "{body}");

    let (status, _, body) = get(
        &app,
        "/api/logs?env=default&target=web",
        Auth::Cookie(&f.viewer),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        error_of(&body),
        "token `ro` (viewer) may only read (status, nodes, events, verify, history); \
         `logs` needs a deployer or admin token"
    );
    let (status, _, body) = get(
        &app,
        "/api/logs?env=prod&target=web",
        Auth::Bearer(&f.staging),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        error_of(&body).contains("may not touch environment `prod`"),
        "{body}"
    );

    for (query, parameter) in [
        ("env=default", "`target` is missing"),
        ("target=", "`target` is missing"),
        ("target=web&tail=ten", "`tail`: `ten` is not a line count"),
        ("target=web&tail=-1", "`tail`: `-1` is not a line count"),
        ("target=web&since_unix_ms=soon", "`since_unix_ms`: `soon`"),
        (
            "target=web&since_unix_ms=-5",
            "`since_unix_ms`: -5 is before 1970",
        ),
        ("target=web&follow=0", "unknown parameter `follow`"),
        ("target=web&target=db", "`target` is given twice"),
    ] {
        let (status, _, body) =
            get(&app, &format!("/api/logs?{query}"), Auth::Bearer(&f.admin)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(error_of(&body).contains(parameter), "{query}: {body}");
    }

    let (status, _, body) = get(
        &app,
        "/api/logs?env=staging&target=nosuch",
        Auth::Bearer(&f.staging),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        error_of(&body),
        "no service, instance or unit `nosuch` in environment `staging` \
         (`convoy status --env staging` lists them)"
    );
    // No env: the default one, as `convoy logs` without `--env`.
    let (status, _, body) = get(&app, "/api/logs?target=nosuch", Auth::Bearer(&f.admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error_of(&body).contains("environment `default`"), "{body}");

    let audit = logs_audit(&f).await;
    let has = |who: &str, target: &str, result: &str| {
        audit
            .iter()
            .any(|(w, t, r)| w.ends_with(&format!("({who})")) && t == target && r.contains(result))
    };
    assert!(has("ro", "default/web", "may only read"), "{audit:#?}");
    assert!(has("stage", "prod/web", "may not touch"), "{audit:#?}");
    assert!(has("stage", "staging/nosuch", "no service"), "{audit:#?}");
    assert!(has("admin", "default/nosuch", "no service"), "{audit:#?}");
    // A bad parameter is refused before anything is looked up or recorded.
    assert_eq!(audit.len(), 4, "{audit:#?}");
    assert_eq!(f.coord.metrics().log_streams.load(Ordering::Relaxed), 0);
}

/// A node registered with one instance of `web` placed on it.
async fn web_on_n1(f: &Fixture) -> crate::state::SessionHandle {
    let hello = crate::report::AgentHello::from(convoy_proto::Hello {
        facts: Some(convoy_proto::NodeFacts::default()),
        agent_version: "t".into(),
        last_applied_generation: 0,
        capabilities: vec![],
    });
    let session = f
        .coord
        .register("n1", "fp-n1", 0, hello, None)
        .await
        .unwrap();
    let spec = "services:\n  web:\n    image: x:1\n";
    f.coord.apply("a.yaml", spec, false, "test").await.unwrap();
    session
}

/// The next command the node's session is sent.
async fn next_command(session: &mut crate::state::SessionHandle) -> convoy_proto::Command {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), session.commands_rx.recv())
            .await
            .expect("no command within 10 s")
            .expect("the session ended");
        if let Some(convoy_proto::coordinator_message::Msg::Command(c)) = msg.msg {
            return c;
        }
    }
}

/// Reads an event stream until `until` appears (or 10 s pass).
async fn read_until<S, E>(stream: &mut S, until: &str) -> String
where
    S: futures::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Debug,
{
    let mut text = String::new();
    let deadline = StdInstant::now() + Duration::from_secs(10);
    while !text.contains(until) {
        assert!(StdInstant::now() < deadline, "no {until:?} in {text}");
        match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            Ok(Some(chunk)) => text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap()),
            Ok(None) => break,
            Err(_) => {}
        }
    }
    text
}

/// Issue 19: a deployer's `/api/logs` asks the service's node for its
/// instances' logs (following, the tail asked) over the node's session and
/// streams what comes as `line` events: here the node refuses, so one
/// `convoy` line says why, then `end`. Audited as `convoy logs` is.
#[tokio::test]
async fn a_deployer_gets_a_services_logs_from_its_node_as_events() {
    let f = fixture().await;
    let mut session = web_on_n1(&f).await;
    let app = f.app();
    let res = app
        .oneshot(request(
            "GET",
            "/api/logs?env=default&target=web&tail=100",
            Auth::Cookie(&f.deployer),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(f.coord.metrics().log_streams.load(Ordering::Relaxed), 1);

    let command = next_command(&mut session).await;
    let Some(convoy_proto::command::Kind::OpenLogs(open)) = command.kind else {
        panic!("not an OpenLogs: {command:?}");
    };
    assert_eq!(
        open.sources,
        [convoy_proto::LogSource {
            workload_id: "default/web/1".into(),
            instance: "web-1".into(),
        }]
    );
    assert!(open.follow && open.has_tail && open.tail == 100, "{open:?}");
    assert_eq!(open.since_unix_ms, 0);
    f.coord.handle(
        "n1",
        session.conn_id,
        crate::report::AgentReport::CommandAck(crate::report::CommandAck {
            id: command.id,
            result: Err("no Docker here".into()),
            probe_results: vec![],
            volumes: vec![],
        }),
    );

    let mut stream = res.into_body().into_data_stream();
    let text = read_until(&mut stream, "event: end").await;
    let data = text
        .lines()
        .skip_while(|l| *l != "event: line")
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no line event in {text}"));
    let line: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(line["instance"], "web-1", "{line}");
    assert_eq!(line["node"], "n1", "{line}");
    assert_eq!(line["stream"], "convoy", "{line}");
    assert_eq!(
        line["text"], "[convoy: node `n1` cannot send these logs: no Docker here]",
        "{line}"
    );
    assert!(line["unix_nanos"].as_i64().unwrap() > 0, "{line}");
    drop(stream);
    assert_eq!(f.coord.metrics().log_streams.load(Ordering::Relaxed), 0);

    let audit = logs_audit(&f).await;
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert!(audit[0].0.ends_with("(ci)"), "{audit:#?}");
    assert_eq!(audit[0].1, "default/web");
    assert_eq!(audit[0].2, "ok (1 instance, following)");
}

/// Log streams are bounded in number as well as in lines: past the limit
/// 503; a stream whose client goes away frees its slot at once, and
/// streams end on shutdown.
#[tokio::test]
async fn log_streams_beyond_the_limit_get_503_and_a_client_going_away_frees_its_slot() {
    let f = fixture().await;
    let mut session = web_on_n1(&f).await;
    let app = f.router(HttpOptions {
        sse: SseLimits {
            max_log_clients: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    let open = || {
        app.clone().oneshot(request(
            "GET",
            "/api/logs?target=web-1",
            Auth::Bearer(&f.admin),
        ))
    };
    let first = open().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    next_command(&mut session).await;
    let (status, _, body) = send(
        &app,
        request("GET", "/api/logs?target=web", Auth::Bearer(&f.admin)),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(error_of(&body).contains("too many log streams"), "{body}");
    // The browser goes away: its stream (and receiver) is dropped.
    drop(first);
    assert_eq!(f.coord.metrics().log_streams.load(Ordering::Relaxed), 0);
    let again = open().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let mut stream = again.into_body().into_data_stream();
    f.shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = stream.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(ended.is_ok(), "the log stream outlived the shutdown");
}

#[test]
fn log_parameters_are_read_by_name() {
    let pairs = |q: &[(&str, &str)]| {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        LogsParams::parse(pairs(&[
            ("target", "web-2"),
            ("env", "prod"),
            ("tail", "100"),
            ("since_unix_ms", "1700000000000"),
        ])),
        Ok(LogsParams {
            env: "prod".into(),
            target: "web-2".into(),
            tail: Some(100),
            since_unix_ms: 1_700_000_000_000,
        })
    );
    assert_eq!(
        LogsParams::parse(pairs(&[("target", "web")])),
        Ok(LogsParams {
            target: "web".into(),
            ..Default::default()
        })
    );
}

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use convoy_proto::{Health, Ingress, IngressRoute, Workload, WorkloadState, WorkloadStatus};
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;

fn key(service: &str) -> ServiceKey {
    ServiceKey {
        env: "prod".into(),
        service: service.into(),
    }
}

fn route(host: &str, prefix: &str, service: &str) -> Route {
    Route {
        host: HostMatch::parse(host),
        path_prefix: prefix.into(),
        service: key(service),
        port: 8080,
    }
}

fn found<'a>(table: &'a RouteTable, host: &str, path: &str) -> Option<&'a str> {
    table.find(host, path).map(|r| r.service.service.as_str())
}

#[test]
fn the_longest_prefix_of_the_most_specific_host_wins() {
    let table = RouteTable::new(vec![
        route("", "/", "catchall"),
        route("", "/api", "api"),
        route("", "/api/v2/", "api2"),
        route("*.example.com", "/", "wild"),
        route("shop.example.com", "/", "shop"),
        route("shop.example.com", "/cart", "cart"),
    ]);
    assert_eq!(found(&table, "other.org", "/"), Some("catchall"));
    assert_eq!(found(&table, "other.org", "/api"), Some("api"));
    assert_eq!(found(&table, "other.org", "/api/users"), Some("api"));
    assert_eq!(found(&table, "other.org", "/api/v2/users"), Some("api2"));
    // Prefixes match whole segments.
    assert_eq!(found(&table, "other.org", "/apis"), Some("catchall"));
    // The host's own routes first, then the wildcard's, then any host's.
    assert_eq!(found(&table, "shop.example.com", "/cart/1"), Some("cart"));
    assert_eq!(found(&table, "shop.example.com", "/api"), Some("shop"));
    assert_eq!(found(&table, "a.example.com", "/api"), Some("wild"));
    assert_eq!(found(&table, "a.b.example.com", "/"), Some("wild"));
    // The wildcard is for subdomains, not the bare domain.
    assert_eq!(found(&table, "example.com", "/api"), Some("api"));
    let only_host = RouteTable::new(vec![route("app.example.com", "/", "app")]);
    assert_eq!(found(&only_host, "other.example.com", "/"), None);
}

#[test]
fn a_route_claimed_twice_stays_with_the_first_service() {
    let table = RouteTable::new(vec![route("", "/x", "first"), route("", "/x", "second")]);
    assert_eq!(table.routes().len(), 1);
    assert_eq!(found(&table, "h", "/x"), Some("first"));
}

#[test]
fn the_request_host_is_read_without_port_in_lower_case() {
    assert_eq!(
        request_host(None, Some("Shop.Example.COM:8080")),
        "shop.example.com"
    );
    assert_eq!(
        request_host(Some("a.example.com"), Some("ignored")),
        "a.example.com"
    );
    assert_eq!(request_host(None, Some("[::1]:80")), "::1");
    assert_eq!(request_host(None, Some("example.com.")), "example.com");
    assert_eq!(request_host(None, None), "");
    assert!(prefix_matches("/api/", "/api/x"));
    assert!(!prefix_matches("/api/", "/api"));
    assert!(prefix_matches("/", "/anything"));
}

fn workload(service: &str, index: u32, revision: u64, ingress: Option<Ingress>) -> Workload {
    Workload {
        id: format!("prod/{service}/{index}"),
        service: service.into(),
        env: "prod".into(),
        index,
        revision,
        ingress,
        ..Default::default()
    }
}

fn ingress(routes: &[(&str, &str, u32)], drain_ms: u64) -> Option<Ingress> {
    Some(Ingress {
        routes: routes
            .iter()
            .map(|(h, p, port)| IngressRoute {
                host: (*h).into(),
                path_prefix: (*p).into(),
                port: *port,
            })
            .collect(),
        drain_timeout_ms: drain_ms,
        canary_revision: 0,
        canary_weight_percent: 0,
        active_revision: 0,
        tls: Vec::new(),
        https_redirect: false,
    })
}

fn status(id: &str, container: &str, revision: u64, health: Health) -> (String, WorkloadStatus) {
    (
        id.to_string(),
        WorkloadStatus {
            id: id.into(),
            revision,
            container_id: container.into(),
            state: WorkloadState::Running as i32,
            health: health as i32,
            ..Default::default()
        },
    )
}

#[test]
fn only_running_healthy_instances_that_are_not_draining_are_candidates() {
    let web = ingress(&[("", "/", 8080)], 5_000);
    let workloads = vec![
        workload("web", 1, 1, web.clone()),
        workload("web", 2, 1, web.clone()),
        workload("web", 3, 1, web.clone()),
        workload("web", 4, 1, web.clone()),
        workload("web", 5, 1, web.clone()),
        workload("db", 1, 1, None),
    ];
    let mut statuses: BTreeMap<String, WorkloadStatus> = BTreeMap::from([
        status("prod/web/1", "c1", 1, Health::Healthy),
        status("prod/web/2", "c2", 1, Health::Starting),
        status("prod/web/3", "c3", 1, Health::Unhealthy),
        // No checks at all: ready once it runs.
        status("prod/web/4", "c4", 1, Health::Unspecified),
        status("prod/web/5", "c5", 1, Health::Healthy),
        status("prod/db/1", "d1", 1, Health::Healthy),
    ]);
    statuses.get_mut("prod/web/5").unwrap().state = WorkloadState::Exited as i32;
    let draining = HashSet::from(["c4".to_string()]);
    let want = wanted(&workloads, &statuses, &[], &draining);
    let ids: Vec<&str> = want
        .candidates
        .iter()
        .map(|c| c.container_id.as_str())
        .collect();
    assert_eq!(ids, ["c1"]);
    assert_eq!(want.candidates[0].drain_timeout, Duration::from_secs(5));
    assert_eq!(want.routes.len(), 1);
    let want = wanted(&workloads, &statuses, &[], &HashSet::new());
    let ids: Vec<&str> = want
        .candidates
        .iter()
        .map(|c| c.container_id.as_str())
        .collect();
    assert_eq!(ids, ["c1", "c4"]);
}

#[test]
fn the_newest_revision_gives_the_routes_and_a_taken_route_is_a_conflict() {
    let workloads = vec![
        workload("web", 1, 1, ingress(&[("", "/old", 8080)], 1000)),
        workload("web", 2, 2, ingress(&[("", "/new", 8080)], 1000)),
        workload("api", 1, 1, ingress(&[("", "/new", 9090)], 1000)),
    ];
    let want = wanted(&workloads, &BTreeMap::new(), &[], &HashSet::new());
    let routes: Vec<(&str, &str)> = want
        .routes
        .iter()
        .map(|r| (r.path_prefix.as_str(), r.service.service.as_str()))
        .collect();
    // Services in (env, name) order: `api` takes `/new` first.
    assert_eq!(routes, [("/new", "api")]);
    assert_eq!(want.conflicts.len(), 1, "{:?}", want.conflicts);
    assert!(
        want.conflicts[0].contains("prod/web"),
        "{:?}",
        want.conflicts
    );
}

fn candidate(container: &str, drain: Duration) -> Candidate {
    Candidate {
        service: key("web"),
        container_id: container.into(),
        workload_id: format!("prod/web/{container}"),
        revision: 1,
        drain_timeout: drain,
    }
}

/// Pools with `web` on the given containers, all at 127.0.0.1 unless `ips` says.
fn pools_with(containers: &[(&str, IpAddr)], drain: Duration, port: u16) -> Arc<Pools> {
    let pools = Pools::new();
    let want = Wanted {
        routes: vec![Route {
            port,
            ..route("", "/", "web")
        }],
        candidates: containers
            .iter()
            .map(|(c, _)| candidate(c, drain))
            .collect(),
        conflicts: Vec::new(),
        splits: Default::default(),
        actives: Default::default(),
    };
    let ips: HashMap<String, IpAddr> = containers
        .iter()
        .map(|(c, ip)| (c.to_string(), *ip))
        .collect();
    let present: HashSet<String> = ips.keys().cloned().collect();
    pools.install(&want, &ips, &present);
    pools
}

fn local(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

#[test]
fn picks_go_to_the_least_loaded_instance_and_take_turns_when_equal() {
    let pools = pools_with(
        &[("a", local(1)), ("b", local(2)), ("c", local(3))],
        Duration::from_secs(1),
        80,
    );
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (b, _guard) = pools.pick(&key("web"), &[]).unwrap();
        seen.push(b.container_id);
    }
    // Each guard is dropped at once: equal loads, in turn.
    assert_eq!(seen.iter().filter(|c| *c == "a").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|c| *c == "b").count(), 2, "{seen:?}");
    // Two held on `a` and `b`: the next goes to `c`.
    let (x, _gx) = pools.pick(&key("web"), &["c".into()]).unwrap();
    let (y, _gy) = pools.pick(&key("web"), &["c".into()]).unwrap();
    assert_ne!(x.container_id, y.container_id);
    let (z, _gz) = pools.pick(&key("web"), &[]).unwrap();
    assert_eq!(z.container_id, "c");
    assert!(pools.pick(&key("nope"), &[]).is_none());
}

#[tokio::test]
async fn a_drain_takes_the_instance_out_at_once_and_waits_for_its_requests() {
    let pools = pools_with(
        &[("a", local(1)), ("b", local(2))],
        Duration::from_secs(5),
        80,
    );
    let mut held = None;
    for _ in 0..2 {
        let (b, g) = pools.pick(&key("web"), &[]).unwrap();
        if b.container_id == "a" {
            held = Some(g);
        }
    }
    let held = held.expect("a picked once");
    let started = Instant::now();
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
    });
    let drain = {
        let pools = pools.clone();
        tokio::spawn(async move { pools.drain("a").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // While it drains, every new request goes to `b`.
    for _ in 0..5 {
        assert_eq!(pools.pick(&key("web"), &[]).unwrap().0.container_id, "b");
    }
    assert_eq!(drain.await.unwrap(), 0, "nothing left in flight");
    releaser.await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(280),
        "returned before the request ended: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(pools.draining().contains("a"));
    // A container never in a pool drains at once.
    assert_eq!(pools.drain("never-seen").await, 0);
}

#[tokio::test]
async fn a_drain_gives_up_at_the_drain_timeout() {
    let pools = pools_with(&[("a", local(1))], Duration::from_millis(200), 80);
    let (_, _held) = pools.pick(&key("web"), &[]).unwrap();
    let started = Instant::now();
    assert_eq!(pools.drain("a").await, 1);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(pools.pick(&key("web"), &[]).is_none());
}

/// A backend answering `NAME PATH host=HOST xff=X-FORWARDED-FOR` on
/// `ip`:`port`.
async fn backend(name: &'static str, ip: IpAddr, port: u16) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(SocketAddr::new(ip, port)).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string()
                    };
                    let text = format!(
                        "{name} {} host={} xff={} conn={}",
                        req.uri().path(),
                        h("host"),
                        h("x-forwarded-for"),
                        h("connection"),
                    );
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                        Bytes::from(text),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The proxy serving `pools` on a free port of 127.0.0.1.
async fn proxy(pools: Arc<Pools>, shutdown: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Arc::new(Shared {
        pools,
        client: forward::upstream(),
        node: "n1".into(),
        stats: Stats::new(),
        https: None,
    });
    tokio::spawn(serve(listener, shared, shutdown));
    addr
}

/// One HTTP/1.1 request on its own connection: status and body.
async fn get(addr: SocketAddr, method: &str, host: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn requests_are_proxied_to_healthy_instances_with_forwarding_headers() {
    let port = free_port().await;
    let _a = backend("a", local(11), port).await;
    let _b = backend("b", local(12), port).await;
    let pools = pools_with(
        &[("a", local(11)), ("b", local(12))],
        Duration::from_secs(1),
        port,
    );
    let shutdown = CancellationToken::new();
    let addr = proxy(pools.clone(), shutdown.clone()).await;
    let mut names = HashSet::new();
    for _ in 0..4 {
        let (code, body) = get(addr, "GET", "Shop.example.com", "/x/y?q=1", "").await;
        assert_eq!(code, 200, "{body}");
        assert!(
            body.contains(" /x/y host=Shop.example.com xff=127.0.0.1"),
            "{body}"
        );
        // The client's `Connection: close` is its hop's, not the backend's.
        assert!(body.ends_with("conn=-"), "{body}");
        names.insert(body[..1].to_string());
    }
    assert_eq!(names.len(), 2, "both instances answered: {names:?}");
    // No route: 404; no instance: 503, naming the service.
    let empty = Pools::new();
    empty.install(
        &Wanted {
            routes: vec![route("", "/api", "web")],
            ..Wanted::default()
        },
        &HashMap::new(),
        &HashSet::new(),
    );
    let addr2 = proxy(empty, shutdown.clone()).await;
    let (code, body) = get(addr2, "GET", "h", "/other", "").await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = get(addr2, "GET", "h", "/api", "").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no healthy instance of `prod/web`"), "{body}");
    shutdown.cancel();
}

#[tokio::test]
async fn a_refused_connection_is_retried_elsewhere_for_idempotent_requests_only() {
    let port = free_port().await;
    let _b = backend("b", local(22), port).await;
    // 127.0.0.21 has no listener: connections to it are refused.
    let pools = pools_with(
        &[("dead", local(21)), ("b", local(22))],
        Duration::from_secs(1),
        port,
    );
    let shutdown = CancellationToken::new();
    let addr = proxy(pools, shutdown.clone()).await;
    let mut bad_posts = 0;
    for _ in 0..6 {
        let (code, body) = get(addr, "GET", "h", "/", "").await;
        assert_eq!(code, 200, "{body}");
        assert!(body.starts_with("b "), "{body}");
        let (code, body) = get(addr, "POST", "h", "/", "data").await;
        if code == 502 {
            assert!(body.contains("prod/web/dead"), "{body}");
            bad_posts += 1;
        } else {
            assert_eq!(code, 200, "{body}");
        }
    }
    // POSTs that went to the dead instance were not sent again.
    assert!(bad_posts > 0, "no POST was sent to the dead instance");
    shutdown.cancel();
}

#[tokio::test]
async fn http2_cleartext_clients_are_served() {
    let port = free_port().await;
    let _a = backend("a", local(31), port).await;
    let pools = pools_with(&[("a", local(31))], Duration::from_secs(1), port);
    let shutdown = CancellationToken::new();
    let addr = proxy(pools, shutdown.clone()).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for path in ["/one", "/two"] {
        let req = Request::builder()
            .uri(format!("http://app.example.com{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.starts_with(&format!("a {path} host=app.example.com")),
            "{body}"
        );
    }
    shutdown.cancel();
}

#[tokio::test]
async fn websocket_upgrades_are_passed_through_and_held_in_flight() {
    // A backend that agrees to any upgrade, then echoes bytes.
    let port = free_port().await;
    let listener = TcpListener::bind(SocketAddr::new(local(41), port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.contains("upgrade: websocket"), "{head}");
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            s.write_all(&buf[..n]).await.unwrap();
        }
    });
    let pools = pools_with(&[("ws", local(41))], Duration::from_secs(1), port);
    let shutdown = CancellationToken::new();
    let addr = proxy(pools.clone(), shutdown.clone()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");
    // The open tunnel counts as a request in flight.
    let backends = &pools.table().services[&key("web")].backends;
    assert_eq!(backends[0].in_flight(), 1);
    drop(s);
    shutdown.cancel();
}

#[test]
fn an_outdated_container_keeps_serving_until_drained_and_a_gone_one_is_closed() {
    let web = ingress(&[("", "/", 8080)], 1000);
    // The plan moved `web/1` to revision 2; its revision-1 container runs on.
    let workloads = vec![
        workload("web", 1, 2, web.clone()),
        workload("web", 2, 2, web),
    ];
    let mut statuses = BTreeMap::from([status("prod/web/2", "new2", 2, Health::Healthy)]);
    let (_, mut pending) = status("prod/web/1", "", 2, Health::Unspecified);
    pending.state = WorkloadState::Pending as i32;
    statuses.insert("prod/web/1".into(), pending);
    let outdated = vec![
        Outdated {
            workload_id: "prod/web/1".into(),
            container_id: "old1".into(),
            revision: 1,
        },
        // Not in the plan: no service to serve.
        Outdated {
            workload_id: "prod/gone/1".into(),
            container_id: "x".into(),
            revision: 1,
        },
    ];
    let want = wanted(&workloads, &statuses, &outdated, &HashSet::new());
    let ids: Vec<(&str, u64)> = want
        .candidates
        .iter()
        .map(|c| (c.container_id.as_str(), c.revision))
        .collect();
    assert_eq!(ids, [("new2", 2), ("old1", 1)]);
    let want = wanted(
        &workloads,
        &statuses,
        &outdated,
        &HashSet::from(["old1".into()]),
    );
    assert_eq!(want.candidates.len(), 1);

    // A container that leaves every pool is closed: a request holding an
    // older table cannot start on it, and a drain of it returns at once.
    let pools = pools_with(
        &[("a", local(1)), ("b", local(2))],
        Duration::from_secs(5),
        80,
    );
    let old_table = pools.table();
    let want = Wanted {
        routes: vec![route("", "/", "web")],
        candidates: vec![candidate("b", Duration::from_secs(5))],
        conflicts: Vec::new(),
        splits: Default::default(),
        actives: Default::default(),
    };
    pools.install(
        &want,
        &HashMap::from([("b".to_string(), local(2))]),
        &HashSet::from(["b".to_string()]),
    );
    let a = old_table.services[&key("web")]
        .backends
        .iter()
        .find(|b| b.container_id == "a")
        .unwrap();
    assert_eq!(a.in_flight(), 0);
    for _ in 0..4 {
        assert_eq!(pools.pick(&key("web"), &[]).unwrap().0.container_id, "b");
    }
}

/// A weighted canary (issue 20): 10 % of picks go to the one canary of
/// revision 2, 90 % to the three instances of revision 1, whatever their
/// numbers; with no canary ready, everything goes to the others.
#[test]
fn a_weighted_canary_gets_its_share_of_picks_whatever_the_instance_counts() {
    let pools = Pools::new();
    let mut candidates: Vec<Candidate> = ["a", "b", "c"]
        .iter()
        .map(|c| candidate(c, Duration::from_secs(1)))
        .collect();
    candidates.push(Candidate {
        revision: 2,
        ..candidate("canary", Duration::from_secs(1))
    });
    let mut splits = BTreeMap::new();
    splits.insert(key("web"), (2, 10));
    let want = Wanted {
        routes: vec![route("", "/", "web")],
        candidates,
        conflicts: Vec::new(),
        splits,
        actives: Default::default(),
    };
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let ips: HashMap<String, IpAddr> = ["a", "b", "c", "canary"]
        .iter()
        .map(|c| (c.to_string(), ip))
        .collect();
    let present: HashSet<String> = ips.keys().cloned().collect();
    pools.install(&want, &ips, &present);
    let mut canary = 0;
    for _ in 0..4000 {
        let (backend, _guard) = pools.pick(&key("web"), &[]).unwrap();
        if backend.revision == 2 {
            canary += 1;
        }
    }
    // 10 % of 4,000 is 400; a binomial's 5 sigma is about ±95.
    assert!(
        (300..=500).contains(&canary),
        "{canary} of 4000 to the canary"
    );

    // Without a canary in the pool, the stable instances take everything.
    let want = Wanted {
        candidates: want
            .candidates
            .iter()
            .filter(|c| c.revision == 1)
            .cloned()
            .collect(),
        ..want
    };
    pools.install(&want, &ips, &present);
    for _ in 0..100 {
        let (backend, _guard) = pools.pick(&key("web"), &[]).unwrap();
        assert_eq!(backend.revision, 1);
    }
}

/// A blue-green rollout (issue 20): every pick goes to the active
/// revision's instances, whatever the other set's size; moving the active
/// revision moves every pick at once; a node without any of the active set
/// serves with what it has.
#[test]
fn a_blue_green_active_revision_takes_every_pick() {
    let pools = Pools::new();
    let mut candidates: Vec<Candidate> = ["blue-1", "blue-2"]
        .iter()
        .map(|c| candidate(c, Duration::from_secs(1)))
        .collect();
    for c in ["green-1", "green-2", "green-3"] {
        candidates.push(Candidate {
            revision: 2,
            ..candidate(c, Duration::from_secs(1))
        });
    }
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let ips: HashMap<String, IpAddr> = candidates
        .iter()
        .map(|c| (c.container_id.clone(), ip))
        .collect();
    let present: HashSet<String> = ips.keys().cloned().collect();
    let with_active = |active: Option<u64>, candidates: Vec<Candidate>| Wanted {
        routes: vec![route("", "/", "web")],
        candidates,
        conflicts: Vec::new(),
        splits: Default::default(),
        actives: active.map(|a| (key("web"), a)).into_iter().collect(),
    };
    let picks = |pools: &Pools| -> BTreeMap<u64, u32> {
        let mut seen = BTreeMap::new();
        for _ in 0..200 {
            let (backend, _guard) = pools.pick(&key("web"), &[]).unwrap();
            *seen.entry(backend.revision).or_default() += 1;
        }
        seen
    };
    pools.install(&with_active(Some(1), candidates.clone()), &ips, &present);
    assert_eq!(picks(&pools), BTreeMap::from([(1, 200)]));
    pools.install(&with_active(Some(2), candidates.clone()), &ips, &present);
    assert_eq!(picks(&pools), BTreeMap::from([(2, 200)]));
    // No active choice: both sets take requests.
    pools.install(&with_active(None, candidates.clone()), &ips, &present);
    assert_eq!(picks(&pools).len(), 2);
    // The active set has no instance here: the other one serves.
    let blue_only: Vec<Candidate> = candidates.into_iter().filter(|c| c.revision == 1).collect();
    pools.install(&with_active(Some(2), blue_only), &ips, &present);
    assert_eq!(picks(&pools), BTreeMap::from([(1, 200)]));
}

/// A client connection's requests reuse its own connection to the
/// instance (local.rs): 20 requests on one kept-alive client connection
/// are one connection at the instance, answers with and without a body
/// alike; a second client connection gets a connection of its own; an
/// instance that closed an idle connection gets a new one, and the
/// request still succeeds.
#[tokio::test]
async fn a_client_connection_reuses_its_own_connection_to_the_instance() {
    let shutdown = CancellationToken::new();
    let port = free_port().await;
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    // `/empty` answers 204 with no body; `/close` closes after.
                    let mut response = Response::new(http_body_util::Full::new(Bytes::from(
                        if req.uri().path() == "/empty" {
                            ""
                        } else {
                            "hello"
                        },
                    )));
                    if req.uri().path() == "/empty" {
                        *response.status_mut() = hyper::StatusCode::NO_CONTENT;
                    }
                    if req.uri().path() == "/close" {
                        response.headers_mut().insert(
                            hyper::header::CONNECTION,
                            hyper::header::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let pools = pools_with(&[("a", local(1))], Duration::from_secs(5), port);
    let addr = proxy(pools, shutdown.clone()).await;
    let count = || accepted.load(std::sync::atomic::Ordering::SeqCst);

    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut ask = async |client: &mut TcpStream, path: &str| -> String {
        client
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: web\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let n = client.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    for i in 0..20 {
        let path = if i % 2 == 0 { "/" } else { "/empty" };
        let answer = ask(&mut client, path).await;
        let want = if i % 2 == 0 {
            "200 OK"
        } else {
            "204 No Content"
        };
        assert!(answer.contains(want), "{path}: {answer}");
    }
    assert_eq!(count(), 1, "20 requests of one client connection");

    let mut other = TcpStream::connect(addr).await.unwrap();
    assert!(ask(&mut other, "/").await.contains("200 OK"));
    assert_eq!(count(), 2, "a second client connection has its own");

    // The instance closes the connection after answering: the next
    // request of that client connection opens a new one.
    assert!(ask(&mut client, "/close").await.contains("200 OK"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ask(&mut client, "/").await.contains("200 OK"));
    assert_eq!(count(), 3, "a closed connection is replaced");
    shutdown.cancel();
}

/// A kept connection that fails before any answer (its peer gone) is not
/// the client's failure: a bodyless idempotent request is sent again once
/// on a fresh connection (local.rs `Stale`).
#[tokio::test]
async fn a_kept_connection_that_dies_unanswered_is_retried_on_a_fresh_one() {
    let shutdown = CancellationToken::new();
    let port = free_port().await;
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    // Each connection answers its first request and drops the second
    // unanswered.
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if s.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
                    .await;
                let _ = s.read(&mut buf).await;
            });
        }
    });
    let pools = pools_with(&[("a", local(1))], Duration::from_secs(5), port);
    let addr = proxy(pools, shutdown.clone()).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    for i in 0..3 {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
            .await
            .unwrap();
        let n = client.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("first"),
            "request {i}: {answer}"
        );
    }
    shutdown.cancel();
}

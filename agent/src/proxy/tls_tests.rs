//! The proxy's TLS listener: which certificate a plan gives each host, and
//! real handshakes against `serve_tls`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use convoy_proto::{Ingress, IngressTls, SecretRef, Workload};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::tls::{build, certified_key, Certificates, Parsed};
use super::*;
use crate::secrets::{Origin, SecretKey, SecretValues};

struct Site {
    cert: String,
    key: String,
}

fn site(names: &[&str]) -> Site {
    let c =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    Site {
        cert: c.cert.pem(),
        key: c.key_pair.serialize_pem(),
    }
}

fn secret(name: &str, version: u64) -> Option<SecretRef> {
    Some(SecretRef {
        name: name.into(),
        version,
    })
}

/// `prod/SERVICE` at `revision` with one certificate entry whose chain and
/// key are secrets `CERT` and `CERT-key` at `version`.
fn routed(service: &str, revision: u64, hosts: &[&str], cert: &str, version: u64) -> Workload {
    Workload {
        id: format!("prod/{service}/1"),
        env: "prod".into(),
        service: service.into(),
        index: 1,
        revision,
        ingress: Some(Ingress {
            tls: vec![IngressTls {
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                certificate: secret(cert, version),
                key: secret(&format!("{cert}-key"), version),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn values(sites: &[(&str, u64, &Site)]) -> SecretValues {
    let mut v = SecretValues::with_origin(Origin::Coordinator);
    for (name, version, site) in sites {
        let key = |name: String| SecretKey {
            env: "prod".into(),
            name,
            version: *version,
        };
        v.insert(key(name.to_string()), site.cert.clone().into_bytes());
        v.insert(key(format!("{name}-key")), site.key.clone().into_bytes());
    }
    v
}

/// The DER of the certificate `table` presents for `name`.
fn presented(table: &super::tls::CertTable, name: &str) -> Option<Vec<u8>> {
    table.find(name).map(|c| c.cert[0].as_ref().to_vec())
}

fn der(site: &Site) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_slice(site.cert.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

#[test]
fn each_host_gets_its_services_certificate_exact_names_before_wildcards() {
    let (app, shop, other) = (
        site(&["app.example.com"]),
        site(&["*.shop.example.com"]),
        site(&["app.example.com"]),
    );
    let plan = [
        routed("web", 1, &["app.example.com"], "app", 1),
        routed("shop", 1, &["*.shop.example.com"], "shop", 1),
        // Another service claims a taken host: the first by env/service
        // (`shop` < `web`... here `api` < `web`) keeps it.
        routed("zz", 1, &["app.example.com"], "other", 1),
    ];
    let v = values(&[("app", 1, &app), ("shop", 1, &shop), ("other", 1, &other)]);
    let (table, problems) = build(&plan, &v, &mut Parsed::new());
    assert_eq!(presented(&table, "app.example.com"), Some(der(&app)));
    assert_eq!(presented(&table, "a.shop.example.com"), Some(der(&shop)));
    // One label only, as certificates match; the bare parent is not one.
    assert_eq!(presented(&table, "a.b.shop.example.com"), None);
    assert_eq!(presented(&table, "shop.example.com"), None);
    assert_eq!(presented(&table, "unknown.example.com"), None);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("prod/web and prod/zz both have a certificate")
            && problems[0].contains("app.example.com"),
        "{problems:?}"
    );
}

#[test]
fn the_newest_revision_of_a_service_gives_its_certificates() {
    let (old, new) = (site(&["app.example.com"]), site(&["app.example.com"]));
    let plan = [
        routed("web", 1, &["app.example.com"], "app", 1),
        routed("web", 2, &["app.example.com"], "app", 2),
    ];
    let v = values(&[("app", 1, &old), ("app", 2, &new)]);
    let (table, problems) = build(&plan, &v, &mut Parsed::new());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(presented(&table, "app.example.com"), Some(der(&new)));
}

#[test]
fn a_missing_value_or_a_bad_pair_is_a_problem_and_leaves_the_rest_served() {
    let (app, shop, stranger) = (
        site(&["app.example.com"]),
        site(&["shop.example.com"]),
        site(&["x"]),
    );
    let plan = [
        routed("web", 1, &["app.example.com"], "app", 1),
        routed("shop", 1, &["shop.example.com"], "shop", 1),
        routed("api", 1, &["api.example.com"], "api", 1),
    ];
    // `app` has its value; `shop`'s key is another certificate's; `api`'s
    // values never came.
    let mut v = values(&[("app", 1, &app)]);
    v.insert(
        SecretKey {
            env: "prod".into(),
            name: "shop".into(),
            version: 1,
        },
        shop.cert.clone().into_bytes(),
    );
    v.insert(
        SecretKey {
            env: "prod".into(),
            name: "shop-key".into(),
            version: 1,
        },
        stranger.key.clone().into_bytes(),
    );
    let (table, problems) = build(&plan, &v, &mut Parsed::new());
    assert_eq!(presented(&table, "app.example.com"), Some(der(&app)));
    assert_eq!(table.len(), 1);
    let all = problems.join("\n");
    assert!(
        all.contains("prod/api: the plan lacks the value of prod/api@v1"),
        "{all}"
    );
    assert!(
        all.contains("prod/shop") && all.contains("the private key is not the certificate's"),
        "{all}"
    );
    assert!(
        !all.contains("PRIVATE KEY"),
        "no key text in a problem: {all}"
    );
}

#[test]
fn a_certificate_is_parsed_once_while_the_plans_keep_it() {
    let app = site(&["app.example.com"]);
    let plan = [routed("web", 1, &["app.example.com"], "app", 1)];
    let v = values(&[("app", 1, &app)]);
    let mut parsed = Parsed::new();
    let (first, _) = build(&plan, &v, &mut parsed);
    let (second, _) = build(&plan, &v, &mut parsed);
    assert!(Arc::ptr_eq(
        &first.find("app.example.com").unwrap(),
        &second.find("app.example.com").unwrap()
    ));
    let (_, _) = build(&[], &v, &mut parsed);
    assert!(parsed.is_empty(), "a certificate no plan uses is forgotten");
}

#[test]
fn a_chain_and_key_in_one_secret_are_read_from_it() {
    let app = site(&["app.example.com"]);
    let both = format!("{}{}", app.cert, app.key);
    certified_key(both.as_bytes(), both.as_bytes()).expect("one PEM with both");
    assert!(certified_key(app.key.as_bytes(), app.cert.as_bytes()).is_err());
}

/// An instance answering with the request's forwarding headers.
async fn echo(ip: IpAddr) -> u16 {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-")
                            .to_string()
                    };
                    let text = format!(
                        "proto={} host={} version={:?}",
                        h("x-forwarded-proto"),
                        h("host"),
                        req.version()
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
    });
    port
}

/// `web` on one instance at `ip:port`, for every host.
fn pools_to(ip: IpAddr, port: u16) -> Arc<Pools> {
    let pools = Pools::new();
    let service = ServiceKey {
        env: "prod".into(),
        service: "web".into(),
    };
    pools.install(
        &Wanted {
            routes: vec![Route {
                host: HostMatch::Any,
                path_prefix: "/".into(),
                service: service.clone(),
                port,
            }],
            candidates: vec![Candidate {
                service,
                container_id: "c1".into(),
                workload_id: "prod/web/1".into(),
                revision: 1,
                drain_timeout: Duration::from_secs(1),
            }],
            ..Wanted::default()
        },
        &HashMap::from([("c1".to_string(), ip)]),
        &HashSet::from(["c1".to_string()]),
    );
    pools
}

/// A TLS connection to `addr` asking for `name`, trusting `site` only,
/// offering `alpn`.
async fn connect(
    addr: SocketAddr,
    name: &str,
    site: &Site,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(site).into()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
}

async fn get_over(
    mut stream: tokio_rustls::client::TlsStream<TcpStream>,
    host: &str,
) -> (u16, String) {
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // A peer closing without close_notify is fine here.
    let _ = stream.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out).to_string();
    let code = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn tls_clients_get_the_certificate_of_the_name_they_ask_for_and_a_new_plan_swaps_it() {
    let ip = IpAddr::from([127, 0, 0, 31]);
    let port = echo(ip).await;
    let (app, shop, renewed) = (
        site(&["app.example.com"]),
        site(&["*.shop.example.com"]),
        site(&["app.example.com"]),
    );
    let certs = Certificates::new();
    let plan = [
        routed("web", 1, &["app.example.com"], "app", 1),
        routed("shop", 1, &["*.shop.example.com"], "shop", 1),
    ];
    let (table, problems) = build(
        &plan,
        &values(&[("app", 1, &app), ("shop", 1, &shop)]),
        &mut Parsed::new(),
    );
    assert!(problems.is_empty(), "{problems:?}");
    certs.install(table);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Arc::new(Shared {
        pools: pools_to(ip, port),
        client: forward::upstream(),
        node: "n1".into(),
        stats: Stats::new(),
        https: None,
    });
    let shutdown = CancellationToken::new();
    tokio::spawn(serve_tls(
        listener,
        tls::server_config(certs.clone()).unwrap(),
        shared,
        shutdown.clone(),
    ));

    let stream = connect(addr, "app.example.com", &app, &[b"http/1.1"])
        .await
        .expect("app.example.com's certificate, trusted");
    let (code, body) = get_over(stream, "app.example.com").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("proto=https host=app.example.com"),
        "{body}"
    );
    // The wildcard's certificate for a name under it.
    let stream = connect(addr, "x.shop.example.com", &shop, &[])
        .await
        .expect("the wildcard certificate");
    assert_eq!(get_over(stream, "x.shop.example.com").await.0, 200);
    // The other site's certificate is not the one asked for.
    assert!(connect(addr, "app.example.com", &shop, &[]).await.is_err());
    // A name no service has: refused in the handshake.
    let e = connect(addr, "unknown.example.com", &app, &[])
        .await
        .expect_err("no certificate for it");
    assert!(e.to_string().contains("fatal alert"), "{e}");

    // HTTP/2 by ALPN; the instance still gets HTTP/1.1.
    let stream = connect(addr, "app.example.com", &app, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let answer = sender
        .send_request(
            Request::get("https://app.example.com/")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("proto=https") && body.contains("HTTP/1.1"),
        "{body}"
    );

    // A renewed certificate in a new plan: the next handshake presents it.
    let plan = [routed("web", 2, &["app.example.com"], "app", 2)];
    let (table, _) = build(&plan, &values(&[("app", 2, &renewed)]), &mut Parsed::new());
    certs.install(table);
    assert!(connect(addr, "app.example.com", &app, &[]).await.is_err());
    let stream = connect(addr, "app.example.com", &renewed, &[])
        .await
        .expect("the renewed certificate");
    assert_eq!(get_over(stream, "app.example.com").await.0, 200);
    assert!(
        connect(addr, "x.shop.example.com", &shop, &[])
            .await
            .is_err(),
        "a service gone from the plan has no certificate any more"
    );
    shutdown.cancel();
}

/// One HTTP/1.1 request in clear: status, `Location`, body.
async fn plain_get(addr: SocketAddr, host: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or("")
        .to_string();
    (code, location, body.to_string())
}

#[tokio::test]
async fn cleartext_requests_for_a_host_with_a_certificate_are_redirected_to_https() {
    let ip = IpAddr::from([127, 0, 0, 32]);
    let port = echo(ip).await;
    let (app, shop) = (site(&["app.example.com"]), site(&["*.shop.example.com"]));
    let mut kept = routed("shop", 1, &["*.shop.example.com"], "shop", 1);
    kept.ingress.as_mut().unwrap().https_redirect = false;
    let mut redirected = routed("web", 1, &["app.example.com"], "app", 1);
    redirected.ingress.as_mut().unwrap().https_redirect = true;
    let (table, problems) = build(
        &[redirected, kept],
        &values(&[("app", 1, &app), ("shop", 1, &shop)]),
        &mut Parsed::new(),
    );
    assert!(problems.is_empty(), "{problems:?}");
    let certs = Certificates::new();
    certs.install(table);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let shared = |port| {
        Arc::new(Shared {
            pools: pools_to(ip, port),
            client: forward::upstream(),
            node: "n1".into(),
            stats: Stats::new(),
            https: Some(Https {
                certs: certs.clone(),
                port: 8443,
            }),
        })
    };
    tokio::spawn(serve(listener, shared(port), shutdown.clone()));

    let (code, location, _) = plain_get(addr, "App.Example.com:80", "/a/b?c=1").await;
    assert_eq!(code, 308);
    assert_eq!(location, "https://app.example.com:8443/a/b?c=1");
    // A service that keeps cleartext, and a host without a certificate.
    let (code, _, body) = plain_get(addr, "x.shop.example.com", "/").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("proto=http "), "{body}");
    assert_eq!(plain_get(addr, "other.example.com", "/").await.0, 200);
    // On 443 the port is left out.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let on_443 = Arc::new(Shared {
        https: Some(Https {
            certs: certs.clone(),
            port: 443,
        }),
        ..Arc::try_unwrap(shared(port)).ok().unwrap()
    });
    tokio::spawn(serve(listener, on_443, shutdown.clone()));
    let (code, location, _) = plain_get(addr, "app.example.com", "/").await;
    assert_eq!((code, location.as_str()), (308, "https://app.example.com/"));
    shutdown.cancel();
}

//! TLS termination in the agent's proxy (docs/PROXY.md), on real Docker
//! with curl as the client: each host name gets its service's certificate
//! (SNI), a certificate and key given as Compose `secrets:` files or as one
//! PEM, HTTP/2 by ALPN; a bad certificate is refused at apply with nothing
//! stored; a rotation of the certificate's secret presents the new one
//! without restarting the container; an agent restarted while the
//! coordinator is down presents them again.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::ensure;
use convoy_tests::cluster::free_port;
use convoy_tests::{skip_without_docker, wait_until, Cluster, SETTLE};

/// A self-signed certificate for `names`: (chain PEM, key PEM).
fn certificate(names: &[&str]) -> (String, String) {
    let c =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    (c.cert.pem(), c.key_pair.serialize_pem())
}

/// `curl https://NAME:PORT/` through the proxy on 127.0.0.1, trusting only
/// `ca`: its output (`CODE HTTP_VERSION BODY`) or its error.
fn curl(port: u16, name: &str, ca: &Path) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2"])
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .arg("--cacert")
        .arg(ca)
        .args(["-w", " %{http_code} %{http_version}"])
        .arg(format!("https://{name}:{port}/"))
        .output()
        .expect("curl runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until `name` answers 200 over HTTP/2 with `greeting`, trusting `ca`.
fn wait_served(port: u16, name: &str, ca: &Path, greeting: &str) {
    wait_until(
        format!("https://{name} answers through the proxy"),
        SETTLE,
        Duration::from_millis(300),
        || {
            let out = curl(port, name, ca);
            let t = text(&out);
            ensure!(out.status.success(), "curl: {t}");
            ensure!(
                t.contains(&format!(": {greeting}")) && t.ends_with(" 200 2"),
                "answered {t}"
            );
            Ok(())
        },
    );
}

#[test]
fn the_proxy_terminates_tls_with_each_hosts_certificate_and_a_rotation_swaps_it() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let port = free_port();
    // Two free ports, not the same one twice.
    let tls_port = std::iter::repeat_with(free_port)
        .find(|p| *p != port)
        .unwrap();
    let node = c.add_agent_with_args(&[
        "--proxy-listen",
        &format!("127.0.0.1:{port}"),
        "--proxy-tls-listen",
        &format!("127.0.0.1:{tls_port}"),
    ]);
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let svc = c.service_name("tls");
    let image = c.image();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    // app.test: chain and key in two secrets; *.shop.test: one PEM.
    let (app_cert, app_key) = certificate(&["app.test"]);
    let app_ca = write("app.crt", &app_cert);
    write("app.key", &app_key);
    let (shop_cert, shop_key) = certificate(&["*.shop.test"]);
    let shop_ca = write("shop.crt", &shop_cert);
    write("shop.pem", &format!("{shop_cert}{shop_key}"));
    let spec = |app_file: &str, key_file: &str| {
        format!(
            "services:\n  {svc}:\n    image: {image}\n    environment: {{GREETING: v1}}\n    \
             x-convoy:\n      ingress:\n        routes: [{{port: 8080}}]\n        tls:\n          \
             - {{hosts: [app.test], certificate: app_cert, key: app_key}}\n          \
             - {{hosts: ['*.shop.test'], certificate: shop}}\n\
             secrets:\n  app_cert: {{file: ./{app_file}}}\n  app_key: {{file: ./{key_file}}}\n  \
             shop: {{file: ./shop.pem}}\n"
        )
    };

    // A certificate for another name: refused, nothing stored.
    let (other_cert, other_key) = certificate(&["other.test"]);
    write("other.crt", &other_cert);
    write("other.key", &other_key);
    let bad = write("bad.yaml", &spec("other.crt", "other.key"));
    let out = c.cli(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success(), "apply: {}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "services.{svc}.x-convoy.ingress.tls: [0]: the certificate in secret `app_cert` does not cover host `app.test`"
        )),
        "{}",
        text(&out)
    );
    let secrets = c.cli(&["secret", "ls"]);
    assert!(
        !text(&secrets).contains("app_cert"),
        "no secret stored: {}",
        text(&secrets)
    );

    let file = write("stack.yaml", &spec("app.crt", "app.key"));
    let out = c.cli(&["apply", "-f", file.to_str().unwrap(), "--wait"]);
    assert!(out.status.success(), "apply: {}", text(&out));
    let ct = c.wait_service_running(&svc, 1, 1).remove(0);

    // Each name gets its own certificate, over HTTP/2 (ALPN).
    wait_served(tls_port, "app.test", &app_ca, "v1");
    wait_served(tls_port, "a.shop.test", &shop_ca, "v1");
    // The other site's certificate is not trusted for app.test, and a name
    // no service has is refused in the handshake.
    // (curl's exit codes: 60, a certificate not trusted; 35, a failed
    // handshake.)
    let out = curl(tls_port, "app.test", &shop_ca);
    assert_eq!(out.status.code(), Some(60), "{}", text(&out));
    let out = curl(tls_port, "unknown.test", &app_ca);
    assert_eq!(out.status.code(), Some(35), "{}", text(&out));
    // The cleartext listener sends those hosts to https (308), which curl
    // follows.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-L"])
        .args(["--resolve", &format!("app.test:{port}:127.0.0.1")])
        .args(["--resolve", &format!("app.test:{tls_port}:127.0.0.1")])
        .arg("--cacert")
        .arg(&app_ca)
        .args(["-w", " %{http_code} %{num_redirects} %{url_effective}"])
        .arg(format!("http://app.test:{port}/"))
        .output()
        .unwrap();
    assert!(
        out.status.success()
            && text(&out).contains(": v1")
            && text(&out).ends_with(&format!(" 200 1 https://app.test:{tls_port}/")),
        "{}",
        text(&out)
    );

    // A renewal of the one-PEM certificate by rotation: presented without
    // restarting the container.
    let (renewed_cert, renewed_key) = certificate(&["*.shop.test"]);
    let renewed_ca = write("renewed.crt", &renewed_cert);
    let out = c.cli_with_input(
        &["secret", "rotate", "shop"],
        format!("{renewed_cert}{renewed_key}").as_bytes(),
    );
    assert!(out.status.success(), "rotate: {}", text(&out));
    wait_served(tls_port, "b.shop.test", &renewed_ca, "v1");
    let out = curl(tls_port, "b.shop.test", &shop_ca);
    assert_eq!(
        out.status.code(),
        Some(60),
        "the old certificate is gone: {}",
        text(&out)
    );
    let running: Vec<String> = c
        .containers_of(&svc)
        .unwrap()
        .into_iter()
        .filter(|x| x.state.running)
        .map(|x| x.id)
        .collect();
    assert_eq!(
        running,
        std::slice::from_ref(&ct.id),
        "the container was not restarted"
    );

    // A rotation to something that is not a certificate is refused.
    let out = c.cli_with_input(&["secret", "rotate", "shop"], b"not a certificate");
    assert!(!out.status.success(), "rotate: {}", text(&out));
    assert!(text(&out).contains("was not rotated"), "{}", text(&out));
    wait_served(tls_port, "b.shop.test", &renewed_ca, "v1");

    // The agent restarted while the coordinator is away presents the
    // certificates again from its tmpfs cache (the stored plan holds no
    // value).
    c.stop_coordinator();
    c.stop_agent(&node);
    c.start_agent(&node);
    wait_served(tls_port, "b.shop.test", &renewed_ca, "v1");
    wait_served(tls_port, "app.test", &app_ca, "v1");
}

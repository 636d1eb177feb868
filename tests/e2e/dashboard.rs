//! The dashboard in a real headless Chromium, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`): sign in with a token, see the
//! node and the service, and watch an instance turn unhealthy and the event
//! arrive without a reload. Screenshots go to `target/test-artifacts/`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use convoy_tests::cluster::free_port;
use convoy_tests::spec::compose;
use convoy_tests::{http, skip_without_docker, Cluster, ServiceSpec};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// How long the page gets to show a change (the stream debounces to 1 s).
const PAGE_WAIT: Duration = Duration::from_secs(30);

/// A program the test needs, or a failure saying how to get it.
pub(crate) fn need(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not on PATH: the dashboard test needs Debian's chromium and \
                 chromium-driver; run scripts/test.sh (it installs them) or \
                 `apt-get install chromium chromium-driver`"
            )
        })
}

/// `chromedriver` on a free loopback port, killed on drop.
pub(crate) struct ChromeDriver {
    child: Child,
    url: String,
    pub(crate) log: PathBuf,
}

impl ChromeDriver {
    pub(crate) fn start(log: PathBuf) -> Result<ChromeDriver> {
        let program = need("chromedriver");
        let port = free_port();
        let out = std::fs::File::create(&log)?;
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start chromedriver")?;
        let mut driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = driver.child.try_wait()? {
                bail!("chromedriver exited ({status}): {}", driver.log_text());
            }
            // It keeps connections open (no `Connection: close`), so a
            // bound port is the readiness check.
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return Ok(driver);
            }
            if Instant::now() > deadline {
                bail!(
                    "chromedriver did not answer within 20 s: {}",
                    driver.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session, 1400x1000.
pub(crate) async fn browser(driver: &ChromeDriver) -> Result<Client> {
    let chromium = need("chromium");
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1400,1000",
                "--no-first-run",
            ],
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .map_err(|e| anyhow!("cannot open a Chromium session through chromedriver: {e}"))
}

/// Waits until `css` matches an element; fails with the page's text.
pub(crate) async fn wait_for(
    client: &Client,
    what: &str,
    css: &str,
) -> Result<fantoccini::elements::Element> {
    match client
        .wait()
        .at_most(PAGE_WAIT)
        .every(Duration::from_millis(100))
        .for_element(Locator::Css(css))
        .await
    {
        Ok(el) => Ok(el),
        Err(e) => {
            let text = match client.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            bail!("the page never showed {what} ({css}): {e}\npage text:\n{text}")
        }
    }
}

/// Where screenshots go: `target/test-artifacts/`.
fn artifacts() -> PathBuf {
    let dir = convoy_tests::bins::profile_dir()
        .parent()
        .map(|p| p.join("test-artifacts"))
        .unwrap_or_else(|| convoy_tests::bins::workspace_root().join("target/test-artifacts"));
    std::fs::create_dir_all(&dir).expect("cannot create target/test-artifacts");
    dir
}

pub(crate) async fn screenshot(client: &Client, name: &str) -> Result<PathBuf> {
    let png = client.screenshot().await?;
    let path = artifacts().join(format!("dashboard-{name}.png"));
    std::fs::write(&path, png)?;
    eprintln!("screenshot: {}", path.display());
    Ok(path)
}

/// `GET path` on the HTTP port with optional extra headers: status, headers
/// and body as text.
fn get_with(addr: SocketAddr, path: &str, headers: &str) -> Result<(u16, String, String)> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    tcp.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP head in {raw:?}"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
    Ok((code, head.to_string(), body.to_string()))
}

#[test]
fn dashboard_shows_the_cluster_and_follows_a_health_change_without_reload() {
    skip_without_docker!();
    need("chromium");
    need("chromedriver");
    let c = Cluster::with_agents(1);
    let node = c.node_names()[0].clone();
    let svc = c.service_name("web");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(2).extra(
        "x-convoy: { probes: [ { http: { port: 8080, path: /healthz }, interval: 1s, failure_threshold: 1 } ] }",
    );
    let file = c.write_spec("web.yaml", &compose(&[&spec]));
    c.apply(&file);
    let containers = c.wait_service_running(&svc, 2, 1);
    let first = format!("default/{svc}/1");

    // Without a token the page is the sign-in form and nothing else.
    let (code, _, body) = get_with(c.http_addr, "/", "").unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("action=\"/login\""), "{body}");
    assert!(!body.contains(&svc) && !body.contains(&node), "{body}");
    let (code, _, body) = get_with(c.http_addr, "/api/services", "").unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains(&svc), "{body}");

    let driver =
        ChromeDriver::start(c.root().join("chromedriver.log")).unwrap_or_else(|e| panic!("{e:#}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(async {
        let client = browser(&driver).await?;
        let outcome = drive(&c, &client, &node, &svc, &first, containers[0].addr(8080)?).await;
        if outcome.is_err() {
            let _ = screenshot(&client, "failure").await;
        }
        let _ = client.close().await;
        outcome
    });
    if let Err(e) = result {
        panic!("{e:#}\nchromedriver log: {}", driver.log.display());
    }
}

async fn drive(
    c: &Cluster,
    client: &Client,
    node: &str,
    svc: &str,
    first: &str,
    first_addr: SocketAddr,
) -> Result<()> {
    // Sign in with the admin token through the form.
    client.goto(&format!("{}/login", c.http_url())).await?;
    let input = wait_for(client, "the token field", "input[name=token]").await?;
    input.send_keys(&c.admin_token()).await?;
    client
        .find(Locator::Css(
            "form[data-testid=login-form] button[type=submit]",
        ))
        .await?
        .click()
        .await?;

    // The node, with its facts, and the service with both instances healthy.
    wait_for(
        client,
        "the node, ready",
        &format!("[data-testid='node-{node}'][data-state='ready']"),
    )
    .await?;
    wait_for(
        client,
        "the service",
        &format!("[data-testid='service-{svc}']"),
    )
    .await?;
    for i in 1..=2 {
        wait_for(
            client,
            "a healthy instance",
            &format!("[data-testid='instance-default/{svc}/{i}'][data-health='healthy']"),
        )
        .await?;
    }
    wait_until_text(
        client,
        &format!("[data-testid='rollup-{svc}']"),
        "2/2 healthy",
    )
    .await?;
    let row = client
        .find(Locator::Css(&format!("[data-testid='node-{node}']")))
        .await?
        .text()
        .await?;
    let facts = c
        .try_nodes()?
        .into_iter()
        .find(|n| n.name == node)
        .ok_or_else(|| anyhow!("convoy nodes does not list {node}"))?;
    for want in [
        &facts.hostname,
        &facts.os,
        &facts.arch,
        &facts.docker_version,
    ] {
        if !row.contains(want.as_str()) {
            bail!("the node row lacks {want:?}: {row:?}");
        }
    }
    if !row.contains(" s ago") {
        bail!("the node row shows no heartbeat age: {row:?}");
    }
    // A mark that only survives if the page is never reloaded.
    let loaded_at = client
        .execute(
            "window.__dashboardTest = 'no reload'; return window.convoy.loadedAt;",
            vec![],
        )
        .await?;
    let feed_before = client
        .find_all(Locator::Css("[data-testid='event-feed'] li"))
        .await?
        .len();
    if feed_before == 0 {
        bail!("the event feed is empty after a deployment");
    }
    screenshot(client, "before").await?;

    // Make instance 1 fail its probe; the page must follow by itself.
    let (code, body) = http::request(first_addr, "POST", "/fail")?;
    if code != 200 {
        bail!("POST /fail to {first} answered {code}: {body}");
    }
    wait_for(
        client,
        "instance 1 unhealthy",
        &format!("[data-testid='instance-{first}'][data-health='unhealthy']"),
    )
    .await?;
    wait_for(
        client,
        "the health event in the feed",
        &format!(
            "[data-testid='event-feed'] li[data-kind='instance.health'][data-instance='{first}'][data-health='unhealthy']"
        ),
    )
    .await?;
    wait_until_text(
        client,
        &format!("[data-testid='rollup-{svc}']"),
        "1/2 healthy",
    )
    .await?;
    let output = client
        .find(Locator::Css(&format!(
            "[data-testid='instance-{first}'] td.output"
        )))
        .await?
        .text()
        .await?;
    if output.trim().is_empty() {
        bail!("the unhealthy instance shows no probe output");
    }
    let still = client
        .execute(
            "return [window.__dashboardTest, window.convoy.loadedAt];",
            vec![],
        )
        .await?;
    if still != json!(["no reload", loaded_at]) {
        bail!("the page was reloaded: {still}");
    }
    screenshot(client, "after").await?;

    // And back, still live.
    let (code, body) = http::request(first_addr, "POST", "/recover")?;
    if code != 200 {
        bail!("POST /recover to {first} answered {code}: {body}");
    }
    wait_for(
        client,
        "instance 1 healthy again",
        &format!("[data-testid='instance-{first}'][data-health='healthy']"),
    )
    .await?;
    wait_until_text(
        client,
        &format!("[data-testid='rollup-{svc}']"),
        "2/2 healthy",
    )
    .await?;

    // Signing out clears the cookie: the dashboard is the sign-in form again.
    client
        .find(Locator::Css("form[action='/logout'] button"))
        .await?
        .click()
        .await?;
    wait_for(client, "the sign-in form", "form[data-testid=login-form]").await?;
    client.goto(&format!("{}/", c.http_url())).await?;
    wait_for(client, "the sign-in form", "form[data-testid=login-form]").await?;
    if !client
        .find_all(Locator::Css(&format!("[data-testid='service-{svc}']")))
        .await?
        .is_empty()
    {
        bail!("the dashboard still shows the service after signing out");
    }
    Ok(())
}

/// Waits until the element's text contains `want`.
async fn wait_until_text(client: &Client, css: &str, want: &str) -> Result<()> {
    let deadline = Instant::now() + PAGE_WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(el) = client.find(Locator::Css(css)).await {
            last = el.text().await.unwrap_or_default();
            if last.contains(want) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{css} never said {want:?}; last {last:?}")
}

#[test]
fn dashboard_login_refuses_bad_tokens_and_the_cookie_is_httponly() {
    skip_without_docker!();
    let c = Cluster::start();
    let addr = c.http_addr;
    let post = |token: &str| -> Result<(u16, String, String)> {
        let form = format!("token={token}");
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            tcp,
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        )?;
        let mut raw = String::new();
        tcp.read_to_string(&mut raw)?;
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((code, head.to_string(), body.to_string()))
    };
    let (code, head, _) = post("convoy_0123").unwrap();
    assert_eq!(code, 401, "{head}");
    assert!(!head.to_ascii_lowercase().contains("set-cookie"), "{head}");

    let admin = c.admin_token();
    let (code, head, _) = post(&admin).unwrap();
    assert_eq!(code, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no cookie in {head}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let (code, head, body) = get_with(addr, "/api/nodes", &format!("Cookie: {pair}\r\n")).unwrap();
    assert_eq!(code, 200, "{head}{body}");
    let (code, _, body) = get_with(addr, "/healthz", "").unwrap();
    assert_eq!((code, body.as_str()), (200, "ok"));

    // The token never reaches the coordinator's log.
    assert!(
        !c.coordinator_log().contains(&admin),
        "convoyd logged a token"
    );
    let printed = c.coordinator_log();
    assert!(
        printed.contains(&format!("http=http://{addr}"))
            && printed.contains(&format!("dashboard: http://{addr}/")),
        "convoyd did not print its HTTP address: {printed}"
    );
}

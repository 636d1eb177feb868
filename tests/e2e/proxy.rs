//! The agent's ingress proxy on real Docker (docs/PROXY.md): a rolling
//! update of three replicas under constant load loses no request, and a
//! route change moves traffic without restarting a container.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use convoy_tests::cluster::free_port;
use convoy_tests::spec::compose;
use convoy_tests::{docker, skip_without_docker, wait_until, Cluster, ServiceSpec};

/// Concurrent keep-alive connections of the load.
const CONNECTIONS: usize = 8;
/// Pause between a connection's requests: about 8 × 50 = 400 requests/s.
const PACE: Duration = Duration::from_millis(20);

/// The testapp behind the proxy, greeting `greeting`, with Docker's
/// healthcheck and `ingress` as the service's `x-convoy.ingress`.
fn web(c: &Cluster, svc: &str, greeting: &str, ingress: &str) -> ServiceSpec {
    ServiceSpec::new(svc, &c.image())
        .replicas(3)
        .env("GREETING", greeting)
        .deploy("update_config: { parallelism: 1, monitor: 1s }")
        .extra(
            "healthcheck: { test: [\"CMD\", \"/convoy-testapp\", \"--probe\", \"http://127.0.0.1:8080/healthz\"], interval: 1s, timeout: 2s, retries: 1 }",
        )
        .extra(&format!("x-convoy: {{ ingress: {ingress} }}"))
}

/// One HTTP/1.1 request on a kept-alive connection: status and body.
fn request(
    conn: &mut BufReader<TcpStream>,
    host: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    write!(
        conn.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: convoy-e2e\r\n\r\n"
    )?;
    conn.get_mut().flush()?;
    let mut status_line = String::new();
    conn.read_line(&mut status_line)?;
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer: {status_line:?}"))?;
    let mut length = None;
    let mut close = false;
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line)? == 0 {
            return Err(anyhow!("connection closed in the head"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse::<usize>().ok(),
            "connection" => close = value.trim().eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let length = length.ok_or_else(|| anyhow!("no content-length"))?;
    let mut body = vec![0; length.min(64 * 1024)];
    conn.read_exact(&mut body)?;
    ensure!(!close, "the proxy closed a kept-alive connection");
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

fn connect(port: u16) -> anyhow::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    Ok(BufReader::new(s))
}

/// One request on a fresh connection.
fn get(port: u16, host: &str, path: &str) -> anyhow::Result<(u16, String)> {
    request(&mut connect(port)?, host, path)
}

/// What the load saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    /// Every failure: a status other than 200, or an I/O error.
    failures: Vec<String>,
    /// Greeting (the part after `: `) → answers.
    greetings: BTreeMap<String, u64>,
    /// Greetings of the answers after `mark` was set.
    after_mark: BTreeMap<String, u64>,
}

/// `CONNECTIONS` threads, each a kept-alive connection through the proxy,
/// until `stop`; a failed connection is opened again (its failure counted).
fn load(
    port: u16,
    stop: Arc<AtomicBool>,
    mark: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Tally>> {
    (0..CONNECTIONS)
        .map(|_| {
            let (stop, mark) = (stop.clone(), mark.clone());
            std::thread::spawn(move || {
                let mut t = Tally::default();
                let mut conn = None;
                while !stop.load(Ordering::Relaxed) {
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => match connect(port) {
                            Ok(c) => conn.insert(c),
                            Err(e) => {
                                t.failures.push(format!("connect: {e}"));
                                std::thread::sleep(PACE);
                                continue;
                            }
                        },
                    };
                    let marked = mark.load(Ordering::Relaxed);
                    match request(c, "web.test", "/") {
                        Ok((200, body)) => {
                            t.ok += 1;
                            let greeting =
                                body.trim().rsplit(": ").next().unwrap_or("").to_string();
                            *t.greetings.entry(greeting.clone()).or_default() += 1;
                            if marked {
                                *t.after_mark.entry(greeting).or_default() += 1;
                            }
                        }
                        Ok((code, body)) => t.failures.push(format!("{code}: {}", body.trim())),
                        Err(e) => {
                            t.failures.push(format!("{e:#}"));
                            conn = None;
                        }
                    }
                    std::thread::sleep(PACE);
                }
                t
            })
        })
        .collect()
}

/// `wrk` through the proxy (Host `web.test`), 4 connections each pausing
/// 10 ms between requests (a few hundred requests/s: a constant load that
/// leaves the two cores to the rollout), until `finish`.
struct Wrk {
    child: std::process::Child,
}

/// What wrk printed, and its request count.
struct WrkReport {
    report: String,
    requests: u64,
}

impl Wrk {
    fn start(port: u16, dir: &std::path::Path) -> Wrk {
        let script = dir.join("pace.lua");
        std::fs::write(&script, "function delay()\n  return 10\nend\n").unwrap();
        let child = std::process::Command::new("wrk")
            .args(["-t1", "-c4", "-d600s", "-H", "Host: web.test"])
            .arg("-s")
            .arg(&script)
            .arg(format!("http://127.0.0.1:{port}/"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("wrk runs (apt-get install wrk)");
        Wrk { child }
    }

    /// SIGINT: wrk stops and prints its figures.
    fn finish(self) -> WrkReport {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -INT wrk");
        let out = self.child.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // "  5310 requests in 16.21s, 1.01MB read"
        let requests = report
            .lines()
            .find(|l| l.contains(" requests in "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        WrkReport { report, requests }
    }
}

/// Running containers of `svc`: id → GREETING.
fn running(c: &Cluster, svc: &str) -> BTreeMap<String, String> {
    c.containers_of(svc)
        .unwrap()
        .into_iter()
        .filter(|ct| ct.state.running)
        .map(|ct| {
            let greeting = ct.env_var("GREETING").unwrap_or_default().to_string();
            (ct.id, greeting)
        })
        .collect()
}

fn healthy(svc: &str) -> usize {
    docker::docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=io.convoy.service={svc}"),
        "--filter",
        "health=healthy",
    ])
    .map(|out| out.lines().filter(|l| !l.trim().is_empty()).count())
    .unwrap_or(0)
}

fn apply_wait(c: &Cluster, file: &std::path::Path) {
    let out = c.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert!(
        out.status.success(),
        "apply --wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_rolling_update_behind_the_proxy_fails_no_request_under_load() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let node = c.add_agent_with_args(&["--proxy-listen", &listen]);
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let svc = c.service_name("proxied");
    let ingress = "{ routes: [{ port: 8080 }], drain_timeout: 10s }";
    let file = c.write_spec("web.yaml", &compose(&[&web(&c, &svc, "v1", ingress)]));
    apply_wait(&c, &file);

    // All three instances answer through the proxy.
    wait_until(
        "three healthy v1 instances answer through the proxy",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            ensure!(healthy(&svc) == 3, "not all healthy per Docker yet");
            let mut hosts = std::collections::BTreeSet::new();
            for _ in 0..12 {
                let (code, body) = get(port, "web.test", "/")?;
                ensure!(
                    code == 200 && body.trim().ends_with(": v1"),
                    "{code} {body}"
                );
                hosts.insert(body.split(':').next().unwrap_or("").to_string());
            }
            ensure!(hosts.len() == 3, "answered by {hosts:?}");
            Ok(())
        },
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mark = Arc::new(AtomicBool::new(false));
    let workers = load(port, stop.clone(), mark.clone());
    // A real load generator beside ours, counting on its own.
    let wrk = Wrk::start(port, c.root());
    std::thread::sleep(Duration::from_secs(2));
    let file = c.write_spec("web.yaml", &compose(&[&web(&c, &svc, "v2", ingress)]));
    let started = Instant::now();
    apply_wait(&c, &file);
    let took = started.elapsed();
    // The rollout is done: from now on only v2 answers.
    mark.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let wrk = wrk.finish();
    eprintln!("wrk during the rolling update:\n{}", wrk.report);
    assert!(
        wrk.requests >= 1000,
        "wrk sent too few requests to prove anything:\n{}",
        wrk.report
    );
    assert!(
        !wrk.report.contains("Socket errors") && !wrk.report.contains("Non-2xx"),
        "wrk counted failures:\n{}",
        wrk.report
    );
    let mut all = Tally::default();
    for w in workers {
        let t = w.join().expect("a load thread panicked");
        all.ok += t.ok;
        all.failures.extend(t.failures);
        for (g, n) in t.greetings {
            *all.greetings.entry(g).or_default() += n;
        }
        for (g, n) in t.after_mark {
            *all.after_mark.entry(g).or_default() += n;
        }
    }
    let seconds = (took + Duration::from_secs(4)).as_secs_f64();
    let rate = all.ok as f64 / seconds;
    eprintln!(
        "rolling update behind the proxy took {took:?}; {} requests ({rate:.0}/s), {} failed, by greeting {:?}",
        all.ok,
        all.failures.len(),
        all.greetings
    );
    assert!(
        all.failures.is_empty(),
        "{} failed requests, first ones: {:?}",
        all.failures.len(),
        &all.failures[..all.failures.len().min(10)]
    );
    assert!(
        rate >= 200.0,
        "the load was too light to prove anything: {rate:.0}/s"
    );
    assert!(
        all.greetings.get("v1").copied().unwrap_or(0) > 0,
        "{:?}",
        all.greetings
    );
    assert!(
        all.greetings.get("v2").copied().unwrap_or(0) > 0,
        "{:?}",
        all.greetings
    );
    assert_eq!(all.greetings.len(), 2, "{:?}", all.greetings);
    assert_eq!(
        all.after_mark.keys().collect::<Vec<_>>(),
        ["v2"],
        "answers after the rollout: {:?}",
        all.after_mark
    );

    // Docker runs three v2 containers, and each old one was drained first.
    let now = running(&c, &svc);
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(now.values().all(|g| g == "v2"), "{now:?}");
    let log = c.agent_log(&node);
    assert!(
        log.matches("drained from the proxy").count() >= 3,
        "the agent's log shows fewer than 3 drains:\n{log}"
    );

    // A route change restarts nothing and moves traffic at once.
    let before = now;
    let host_only = "{ routes: [{ host: web.example.com, port: 8080 }], drain_timeout: 10s }";
    let file = c.write_spec("web.yaml", &compose(&[&web(&c, &svc, "v2", host_only)]));
    let out = c.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        "the proxy takes the new route",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let (code, body) = get(port, "web.test", "/")?;
            ensure!(
                code == 404 && body.contains("no route"),
                "web.test: {code} {body}"
            );
            let (code, body) = get(port, "Web.Example.com:80", "/").context("web.example.com")?;
            ensure!(
                code == 200 && body.trim().ends_with(": v2"),
                "{code} {body}"
            );
            Ok(())
        },
    );
    assert_eq!(
        running(&c, &svc),
        before,
        "a route change replaced containers"
    );
}

/// `convoy status`'s rollout of `svc`.
fn rollout_of(c: &Cluster, svc: &str) -> serde_json::Value {
    let v: serde_json::Value = c.cli_json(&["status", svc]);
    v["services"][0]["rollout"].clone()
}

/// Greetings of `n` requests through the proxy, over 4 kept-alive
/// connections taking turns.
fn greetings(port: u16, n: usize) -> BTreeMap<String, u64> {
    let mut conns: Vec<_> = (0..4).map(|_| connect(port).unwrap()).collect();
    let mut out = BTreeMap::new();
    for i in 0..n {
        let (code, body) = request(&mut conns[i % 4], "web.test", "/").unwrap();
        assert_eq!(code, 200, "{body}");
        let greeting = body.trim().rsplit(": ").next().unwrap_or("").to_string();
        *out.entry(greeting).or_insert(0) += 1;
    }
    out
}

/// Issue 20: a canary by share of requests. Three replicas, one canary,
/// `canary_weights: [10, 50]`: while it waits for promotion the one canary
/// gets 7-13 % of 2,000 requests (not the 25 % its count would give); a
/// promote moves it to about 50 %; the last promote rolls out the rest.
#[test]
fn a_ten_percent_canary_gets_its_share_of_requests_whatever_the_instance_count() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let node = c.add_agent_with_args(&["--proxy-listen", &listen]);
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let svc = c.service_name("weighted");
    let spec = |greeting: &str| {
        let s = ServiceSpec::new(&svc, &c.image())
            .replicas(3)
            .env("GREETING", greeting)
            .extra(
                "healthcheck: { test: [\"CMD\", \"/convoy-testapp\", \"--probe\", \"http://127.0.0.1:8080/healthz\"], interval: 1s, timeout: 2s, retries: 1 }",
            )
            .extra(
                "x-convoy: { ingress: { routes: [{ port: 8080 }], drain_timeout: 5s }, update: { strategy: canary, canaries: 1, canary_weights: [10, 50], min_healthy_time: 1s } }",
            );
        c.write_spec("weighted.yaml", &compose(&[&s]))
    };
    apply_wait(&c, &spec("v1"));
    wait_until(
        "three healthy v1 instances answer through the proxy",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            ensure!(healthy(&svc) == 3, "not all healthy per Docker yet");
            let (code, body) = get(port, "web.test", "/")?;
            ensure!(
                code == 200 && body.trim().ends_with(": v1"),
                "{code} {body}"
            );
            Ok(())
        },
    );
    c.apply(&spec("v2"));
    wait_until(
        "the canary waits for promotion, healthy, in the pool",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let r = rollout_of(&c, &svc);
            ensure!(r["state"] == "waiting-promotion", "rollout: {r}");
            ensure!(healthy(&svc) == 3, "not all healthy per Docker yet");
            let seen = greetings(port, 200);
            ensure!(
                seen.contains_key("v2"),
                "no answer from the canary yet: {seen:?}"
            );
            Ok(())
        },
    );
    let seen = greetings(port, 2000);
    let canary = seen.get("v2").copied().unwrap_or(0);
    assert_eq!(seen.values().sum::<u64>(), 2000, "{seen:?}");
    assert!(
        (140..=260).contains(&canary),
        "the 10 % canary got {canary} of 2000 ({seen:?})"
    );
    // The next weight: about half.
    let out = c.cli(&["promote", &svc]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let half = wait_until(
        "the canary gets about half of the requests",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let seen = greetings(port, 1000);
            let v2 = seen.get("v2").copied().unwrap_or(0);
            ensure!((400..=600).contains(&v2), "{seen:?}");
            Ok(v2)
        },
    );
    assert!((400..=600).contains(&half));
    let r = rollout_of(&c, &svc);
    assert_eq!(r["state"], "waiting-promotion", "{r}");
    // The last promote rolls out the rest: then only v2 answers.
    let out = c.cli(&["promote", &svc]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        "every answer comes from v2",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let r = rollout_of(&c, &svc);
            ensure!(r["state"] == "succeeded", "rollout: {r}");
            let seen = greetings(port, 200);
            ensure!(seen.keys().all(|g| g == "v2"), "{seen:?}");
            Ok(())
        },
    );
    c.delete(&svc);
    c.wait_service_gone(&svc);
}

/// Docker's healthcheck of the testapp.
const HEALTHCHECK: &str = "healthcheck: { test: [\"CMD\", \"/convoy-testapp\", \"--probe\", \"http://127.0.0.1:8080/healthz\"], interval: 1s, timeout: 2s, retries: 1 }";

/// What the load threads saw, added up.
fn join_load(workers: Vec<std::thread::JoinHandle<Tally>>) -> Tally {
    let mut all = Tally::default();
    for w in workers {
        let t = w.join().expect("a load thread panicked");
        all.ok += t.ok;
        all.failures.extend(t.failures);
        for (g, n) in t.greetings {
            *all.greetings.entry(g).or_default() += n;
        }
    }
    all
}

/// Waits until every one of 100 answers through the proxy comes from
/// `greeting`, then checks 300 more.
fn all_answers_from(port: u16, greeting: &str, what: &str) {
    wait_until(
        what,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let mut conn = connect(port)?;
            let mut seen = BTreeMap::new();
            for _ in 0..100 {
                let (code, body) = request(&mut conn, "web.test", "/")?;
                ensure!(code == 200, "{code} {body}");
                let g = body.trim().rsplit(": ").next().unwrap_or("").to_string();
                *seen.entry(g).or_insert(0u64) += 1;
            }
            ensure!(seen.keys().all(|g| g == greeting), "{seen:?}");
            Ok(())
        },
    );
    let seen = greetings(port, 300);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        [greeting],
        "{what}: {seen:?}"
    );
}

/// Issue 20: a blue-green switch moves traffic in the proxy. While the new
/// set runs and passes its checks before promotion, it gets no request;
/// `convoy promote` moves every request to it at once; `convoy rollback`
/// while the old set still runs moves every request back. A steady load
/// through the whole story fails no request.
#[test]
fn blue_green_moves_all_traffic_at_promotion_and_back_at_rollback() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let node = c.add_agent_with_args(&["--proxy-listen", &listen]);
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let svc = c.service_name("bluegreen");
    let spec = |greeting: &str| {
        let s = ServiceSpec::new(&svc, &c.image())
            .replicas(2)
            .env("GREETING", greeting)
            .extra(HEALTHCHECK)
            .extra(
                "x-convoy: { ingress: { routes: [{ port: 8080 }], drain_timeout: 5s }, update: { strategy: blue-green, min_healthy_time: 1s, scale_down_delay: 10m } }",
            );
        c.write_spec("bluegreen.yaml", &compose(&[&s]))
    };
    apply_wait(&c, &spec("v1"));
    all_answers_from(port, "v1", "two healthy v1 instances answer");

    let stop = Arc::new(AtomicBool::new(false));
    let mark = Arc::new(AtomicBool::new(false));
    let workers = load(port, stop.clone(), mark);
    c.apply(&spec("v2"));
    wait_until(
        "the new set runs, healthy, waiting for promotion",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || {
            let r = rollout_of(&c, &svc);
            ensure!(r["state"] == "waiting-promotion", "rollout: {r}");
            ensure!(healthy(&svc) == 4, "not all four healthy per Docker yet");
            Ok(())
        },
    );
    // Healthy and running, and still no request reaches the new set.
    let seen = greetings(port, 500);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["v1"],
        "before promotion: {seen:?}"
    );

    let out = c.cli(&["promote", &svc]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    all_answers_from(port, "v2", "every answer comes from the new set");
    assert_eq!(running(&c, &svc).len(), 4, "the old set still runs");

    let out = c.cli(&["rollback", &svc]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    all_answers_from(port, "v1", "every answer comes from the old set again");
    wait_until(
        "the new set is stopped, the old one runs",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || {
            let now = running(&c, &svc);
            ensure!(now.len() == 2 && now.values().all(|g| g == "v1"), "{now:?}");
            Ok(())
        },
    );
    stop.store(true, Ordering::Relaxed);
    let all = join_load(workers);
    eprintln!(
        "blue-green behind the proxy: {} requests, {} failed, by greeting {:?}",
        all.ok,
        all.failures.len(),
        all.greetings
    );
    assert!(
        all.failures.is_empty(),
        "{} failed requests, first ones: {:?}",
        all.failures.len(),
        &all.failures[..all.failures.len().min(10)]
    );
    assert_eq!(all.greetings.len(), 2, "{:?}", all.greetings);
    c.delete(&svc);
    c.wait_service_gone(&svc);
}

/// Issue 20: `canary_pause` moves a weighted canary on by itself: 20 %,
/// then 60 %, then the rest, with no `convoy promote`.
#[test]
fn canary_weights_with_a_pause_move_on_by_themselves_to_the_end() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let node = c.add_agent_with_args(&["--proxy-listen", &listen]);
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let svc = c.service_name("paused");
    let spec = |greeting: &str| {
        let s = ServiceSpec::new(&svc, &c.image())
            .replicas(2)
            .env("GREETING", greeting)
            .extra(HEALTHCHECK)
            .extra(
                "x-convoy: { ingress: { routes: [{ port: 8080 }], drain_timeout: 5s }, update: { strategy: canary, canaries: 1, canary_weights: [20, 60], canary_pause: 6s, min_healthy_time: 1s } }",
            );
        c.write_spec("paused.yaml", &compose(&[&s]))
    };
    apply_wait(&c, &spec("v1"));
    all_answers_from(port, "v1", "two healthy v1 instances answer");
    c.apply(&spec("v2"));
    // The first weight: about 20 % (not the 50 % one canary of two gets).
    wait_until(
        "the canary gets about a fifth of the requests",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let r = rollout_of(&c, &svc);
            ensure!(
                r["summary"]
                    .as_str()
                    .unwrap_or("")
                    .contains("20% of requests"),
                "rollout: {r}"
            );
            let seen = greetings(port, 400);
            let v2 = seen.get("v2").copied().unwrap_or(0);
            ensure!((40..=130).contains(&v2), "{seen:?}");
            Ok(())
        },
    );
    // Then 60 %, by itself.
    wait_until(
        "the canary gets about 60 % of the requests, with no promote",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let r = rollout_of(&c, &svc);
            ensure!(
                r["summary"]
                    .as_str()
                    .unwrap_or("")
                    .contains("60% of requests"),
                "rollout: {r}"
            );
            let seen = greetings(port, 400);
            let v2 = seen.get("v2").copied().unwrap_or(0);
            ensure!((190..=290).contains(&v2), "{seen:?}");
            Ok(())
        },
    );
    // Then promoted by itself, the rest rolls out.
    wait_until(
        "the rollout ends by itself, every answer from v2",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let r = rollout_of(&c, &svc);
            ensure!(r["state"] == "succeeded", "rollout: {r}");
            let seen = greetings(port, 100);
            ensure!(seen.keys().all(|g| g == "v2"), "{seen:?}");
            Ok(())
        },
    );
    c.delete(&svc);
    c.wait_service_gone(&svc);
}

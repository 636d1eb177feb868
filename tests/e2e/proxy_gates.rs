//! Issue 20's proof: rollout gates on what the agents' proxies measure
//! (docs/ANALYSIS.md, "Proxy gates"), on real Docker behind a real agent's
//! `--proxy-listen`. Under steady load through the proxy, a healthy new
//! revision passes `proxy: error-rate, max: 0.05`; one answering 20 % of
//! its requests with 500 is rolled back by the analysis, with the
//! measured error rate in the reason and the history; the coordinator's
//! `/metrics` shows the proxies' figures.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, ensure};
use convoy_tests::cluster::free_port;
use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, wait_until, Cluster, ServiceSpec};
use serde_json::Value;

/// Kept-alive connections of the load, each pausing `PACE` between
/// requests: about 2 × 40 = 80 requests/s.
const CONNECTIONS: usize = 2;
const PACE: Duration = Duration::from_millis(25);

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Three testapps behind the proxy, greeting `greeting`, answering
/// `fail_percent` % of `GET /` with 500; `gated`: on the proxy's error
/// rate (a first deployment is not judged: no traffic reaches it before
/// it runs; the test deploys v1 gated to prove it).
fn web(c: &Cluster, svc: &str, greeting: &str, fail_percent: u32, gated: bool) -> ServiceSpec {
    ServiceSpec::new(svc, &c.image())
        .replicas(3)
        .env("GREETING", greeting)
        .env("FAIL_PERCENT", &fail_percent.to_string())
        .extra(
            "healthcheck: { test: [\"CMD\", \"/convoy-testapp\", \"--probe\", \"http://127.0.0.1:8080/healthz\"], interval: 1s, timeout: 2s, retries: 1 }",
        )
        .extra(&format!(
            "x-convoy: {{ ingress: {{ routes: [{{ port: 8080 }}], drain_timeout: 5s }}, update: {{ max_parallel: 1, min_healthy_time: 1s{} }} }}",
            if gated {
                ", analysis: { interval: 2s, failure_limit: 2, queries: [{ name: errors, proxy: error-rate, max: 0.05 }] }"
            } else {
                ""
            }
        ))
}

fn apply_wait(c: &Cluster, spec: &ServiceSpec) -> Output {
    let file = c.write_spec("gated.yaml", &compose(&[spec]));
    c.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "120s",
    ])
}

/// One HTTP/1.1 request on a kept-alive connection: its status.
fn request(conn: &mut BufReader<TcpStream>) -> anyhow::Result<u16> {
    write!(
        conn.get_mut(),
        "GET / HTTP/1.1\r\nHost: web.test\r\nUser-Agent: convoy-e2e\r\n\r\n"
    )?;
    conn.get_mut().flush()?;
    let mut status_line = String::new();
    conn.read_line(&mut status_line)?;
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer: {status_line:?}"))?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line)? == 0 {
            return Err(anyhow!("connection closed in the head"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>()?;
            }
        }
    }
    let mut body = vec![0; length.min(64 * 1024)];
    conn.read_exact(&mut body)?;
    Ok(code)
}

fn connect(port: u16) -> anyhow::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(BufReader::new(s))
}

/// Steady requests through the proxy until `stop`: answers by status.
fn load(port: u16, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<BTreeMap<u16, u64>>> {
    (0..CONNECTIONS)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = BTreeMap::new();
                let mut conn = None;
                while !stop.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        conn = connect(port).ok();
                    }
                    if let Some(c) = conn.as_mut() {
                        match request(c) {
                            Ok(code) => *seen.entry(code).or_insert(0) += 1,
                            Err(_) => conn = None,
                        }
                    }
                    std::thread::sleep(PACE);
                }
                seen
            })
        })
        .collect()
}

/// The number after "`errors` measured " in `text`.
fn measured(text: &str) -> Option<f64> {
    let rest = text.split("`errors` measured ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `metric{...service="svc"...} VALUE` lines of the coordinator's `/metrics`, summed.
fn metric_sum(c: &Cluster, metric: &str, svc: &str) -> anyhow::Result<f64> {
    let (code, body) = convoy_tests::http::request(c.http_addr, "GET", "/metrics")?;
    ensure!(code == 200, "/metrics answered {code}: {body}");
    let label = format!("service=\"{svc}\"");
    Ok(body
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

#[test]
fn a_revision_answering_twenty_percent_errors_is_rolled_back_by_the_proxy_gate() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let node = c.add_agent_with_args(&[
        "--proxy-listen",
        &listen,
        "--proxy-stats-interval-ms",
        "500",
    ]);
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let svc = c.service_name("web");

    let out = apply_wait(&c, &web(&c, &svc, "v1", 0, true));
    assert!(out.status.success(), "v1: {}", said(&out));
    wait_until(
        "v1 answers through the proxy",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let code = request(&mut connect(port)?)?;
            ensure!(code == 200, "{code}");
            Ok(())
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let threads = load(port, stop.clone());

    // A healthy v2 keeps the gate (no 5xx): the rollout succeeds.
    let out = apply_wait(&c, &web(&c, &svc, "v2", 0, true));
    assert!(out.status.success(), "the healthy v2: {}", said(&out));

    // v3 answers every fifth request with 500: 0.2 > max 0.05, three
    // measurements in a row (failure_limit 2), and the rollout fails.
    let out = apply_wait(&c, &web(&c, &svc, "v3", 20, true));
    let err = said(&out);
    assert!(!out.status.success(), "v3 must fail: {err}");
    assert!(
        err.contains("analysis failed 3 time(s) in a row (failure_limit 2)"),
        "{err}"
    );
    let rate = measured(&err).unwrap_or_else(|| panic!("no measured error rate in: {err}"));
    assert!((0.1..=0.3).contains(&rate), "measured {rate}: {err}");
    assert!(err.contains("> max 0.05"), "{err}");

    wait_until(
        "the rollback puts v2 back on every instance",
        Duration::from_secs(90),
        Duration::from_millis(250),
        || {
            let s: Value = c.cli_json(&["status", &svc]);
            let r = &s["services"][0]["rollout"];
            ensure!(
                r["is_rollback"] == true && r["state"] == "succeeded",
                "rollout: {r}"
            );
            let greetings: Vec<String> = c
                .containers_of(&svc)?
                .into_iter()
                .filter(|ct| ct.state.running)
                .map(|ct| ct.env_var("GREETING").unwrap_or_default().to_string())
                .collect();
            ensure!(greetings == ["v2", "v2", "v2"], "running: {greetings:?}");
            Ok(())
        },
    );
    stop.store(true, Ordering::Relaxed);
    let mut seen: BTreeMap<u16, u64> = BTreeMap::new();
    for t in threads {
        for (code, n) in t.join().unwrap() {
            *seen.entry(code).or_insert(0) += n;
        }
    }
    assert!(
        seen.get(&500).copied().unwrap_or(0) > 0 && seen.get(&200).copied().unwrap_or(0) > 500,
        "the load saw {seen:?}"
    );

    let h: Value = c.cli_json(&["history", &svc]);
    let failed = h["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["revision"] == 3)
        .unwrap_or_else(|| panic!("revision 3 in the history: {h:#}"))
        .clone();
    let outcome = failed["outcome"].as_str().unwrap_or_default();
    let in_history = measured(outcome).unwrap_or_else(|| panic!("{h:#}"));
    assert!((0.1..=0.3).contains(&in_history), "{outcome}");

    // The proxies' figures on /metrics, summed over nodes.
    let requests = metric_sum(&c, "convoy_proxy_requests_total", &svc).unwrap();
    let errors = metric_sum(&c, "convoy_proxy_errors_total", &svc).unwrap();
    assert!(
        requests > 0.0 && errors > 0.0,
        "requests {requests}, errors {errors}"
    );
    let count = metric_sum(&c, "convoy_proxy_request_duration_seconds_count", &svc).unwrap();
    assert!(count > 0.0, "histogram count {count}");

    c.delete(&svc);
    c.wait_service_gone(&svc);
}

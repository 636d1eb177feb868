use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use convoy_proto::{
    probe, ExecProbe, Health, HttpProbe, NodePlan, Probe, TcpProbe, Workload, WorkloadState,
    WorkloadStatus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::runtime::fake::FakeRuntime;
use crate::runtime::{ContainerState, DockerHealth, ExecOutput};

fn config(failure_threshold: u32, success_threshold: u32, start_period: Duration) -> ProbeConfig {
    ProbeConfig {
        name: "http".into(),
        check: Check::Tcp { port: 1 },
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        failure_threshold,
        success_threshold,
        start_period,
    }
}

fn http_probe(port: u16, path: &str, timeout_ms: u64) -> Probe {
    Probe {
        name: String::new(),
        interval_ms: 50,
        timeout_ms,
        failure_threshold: 1,
        success_threshold: 1,
        start_period_ms: 0,
        check: Some(probe::Check::Http(HttpProbe {
            port: port.into(),
            path: path.into(),
            expect_status: 0,
        })),
    }
}

fn exec_probe(command: &[&str], timeout_ms: u64) -> Probe {
    Probe {
        name: "cmd".into(),
        interval_ms: 50,
        timeout_ms,
        failure_threshold: 1,
        success_threshold: 1,
        start_period_ms: 0,
        check: Some(probe::Check::Exec(ExecProbe {
            command: command.iter().map(|s| s.to_string()).collect(),
        })),
    }
}

const S: Duration = Duration::from_secs(100);

// ---- configuration ----

#[test]
fn zero_fields_take_the_defaults_and_the_name_defaults_to_the_kind() {
    let c = ProbeConfig::from_proto(&Probe {
        check: Some(probe::Check::Tcp(TcpProbe { port: 5432 })),
        ..Probe::default()
    });
    assert_eq!(c.name, "tcp");
    assert_eq!(c.check, Check::Tcp { port: 5432 });
    assert_eq!(c.interval, DEFAULT_INTERVAL);
    assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    assert_eq!(c.failure_threshold, 3);
    assert_eq!(c.success_threshold, 1);
    assert_eq!(c.start_period, Duration::ZERO);
    let http = ProbeConfig::from_proto(&http_probe(8080, "", 0));
    assert_eq!(
        http.check,
        Check::Http {
            port: 8080,
            path: "/".into(),
            expect_status: 0
        }
    );
}

#[test]
fn a_probe_the_plan_got_wrong_fails_with_the_reason() {
    let mut wrong = http_probe(1, "/", 0);
    if let Some(probe::Check::Http(http)) = &mut wrong.check {
        http.port = 70000;
    }
    let c = ProbeConfig::from_proto(&wrong);
    assert_eq!(
        c.check,
        Check::Invalid("port 70000 is out of range 1-65535".into())
    );
    let c = ProbeConfig::from_proto(&Probe::default());
    assert!(matches!(c.check, Check::Invalid(_)), "{c:?}");
}

// ---- the state machine ----

#[test]
fn probe_is_starting_until_it_first_passes() {
    let c = config(3, 1, Duration::ZERO);
    let mut s = ProbeState::default();
    assert_eq!(s.health, Health::Starting);
    assert!(!s.record(&c, false, "refused".into(), S));
    assert_eq!(s.health, Health::Starting);
    assert!(s.record(&c, true, "ok".into(), S));
    assert_eq!(s.health, Health::Healthy);
    assert_eq!(s.output, "ok");
}

#[test]
fn healthy_probe_turns_unhealthy_after_failure_threshold_failures_in_a_row() {
    let c = config(3, 1, Duration::ZERO);
    let mut s = ProbeState::default();
    s.record(&c, true, "ok".into(), S);
    assert!(!s.record(&c, false, "500".into(), S));
    assert!(!s.record(&c, false, "500".into(), S));
    // A pass in between starts the count again.
    assert!(!s.record(&c, true, "ok".into(), S));
    assert!(!s.record(&c, false, "500".into(), S));
    assert!(!s.record(&c, false, "500".into(), S));
    assert_eq!(s.health, Health::Healthy);
    assert!(s.record(&c, false, "HTTP 500".into(), S));
    assert_eq!(s.health, Health::Unhealthy);
    assert_eq!(s.output, "HTTP 500");
}

#[test]
fn starting_probe_that_never_passes_turns_unhealthy() {
    let c = config(2, 1, Duration::ZERO);
    let mut s = ProbeState::default();
    s.record(&c, false, "refused".into(), S);
    assert!(s.record(&c, false, "refused".into(), S));
    assert_eq!(s.health, Health::Unhealthy);
}

#[test]
fn unhealthy_probe_needs_success_threshold_passes_to_be_healthy_again() {
    let c = config(1, 2, Duration::ZERO);
    let mut s = ProbeState::default();
    s.record(&c, false, "down".into(), S);
    assert_eq!(s.health, Health::Unhealthy);
    assert!(!s.record(&c, true, "ok".into(), S));
    assert_eq!(s.health, Health::Unhealthy);
    assert!(s.record(&c, true, "ok".into(), S));
    assert_eq!(s.health, Health::Healthy);
}

#[test]
fn failures_in_the_start_period_do_not_count_while_starting() {
    let period = Duration::from_secs(30);
    let c = config(1, 1, period);
    let mut s = ProbeState::default();
    for _ in 0..5 {
        assert!(!s.record(&c, false, "refused".into(), Duration::from_secs(10)));
    }
    assert_eq!((s.health, s.failures), (Health::Starting, 0));
    // After the period, failures count.
    assert!(s.record(&c, false, "refused".into(), Duration::from_secs(31)));
    assert_eq!(s.health, Health::Unhealthy);
}

#[test]
fn a_pass_in_the_start_period_ends_it() {
    let c = config(1, 1, Duration::from_secs(30));
    let mut s = ProbeState::default();
    s.record(&c, true, "ok".into(), Duration::from_secs(1));
    assert_eq!(s.health, Health::Healthy);
    assert!(s.record(&c, false, "down".into(), Duration::from_secs(2)));
    assert_eq!(s.health, Health::Unhealthy);
}

// ---- combining ----

fn view(name: &str, health: Health, output: &str) -> CheckView {
    CheckView {
        name: name.into(),
        health,
        output: output.into(),
    }
}

#[test]
fn no_checks_is_unspecified_health() {
    assert_eq!(combine(&[]), Combined::default());
    assert_eq!(combine(&[]).health, Health::Unspecified);
}

#[test]
fn any_unhealthy_check_makes_the_instance_unhealthy_and_names_it() {
    let combined = combine(&[
        view("docker", Health::Healthy, "ok"),
        view("http", Health::Starting, ""),
        view("ready", Health::Unhealthy, "HTTP 500"),
        view("tcp", Health::Unhealthy, "refused"),
    ]);
    assert_eq!(
        combined,
        Combined {
            health: Health::Unhealthy,
            failing_probe: "ready".into(),
            output: "HTTP 500".into(),
        }
    );
}

#[test]
fn any_starting_check_makes_the_instance_starting_else_it_is_healthy() {
    let starting = combine(&[
        view("docker", Health::Starting, ""),
        view("http", Health::Healthy, "ok"),
    ]);
    assert_eq!(starting.health, Health::Starting);
    assert_eq!(starting.failing_probe, "");
    let healthy = combine(&[
        view("docker", Health::Healthy, "ok"),
        view("http", Health::Healthy, "ok"),
    ]);
    assert_eq!(healthy.health, Health::Healthy);
    assert_eq!(healthy.output, "");
}

// ---- HTTP ----

/// A server that answers every request with `response`, or never when
/// `None`. Returns its port.
async fn server(response: Option<&'static str>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                match response {
                    Some(text) => {
                        let _ = stream.write_all(text.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    port
}

/// The HTTP probe's verdict and output against a server answering `text`.
async fn get(text: &'static str) -> (bool, String, u16) {
    let port = server(Some(text)).await;
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (passed, output) = http::http_get(target, "/healthz", 0).await;
    (passed, output, port)
}

#[tokio::test]
async fn an_http_answer_gives_its_status_reason_and_body() {
    let (passed, output, port) = get(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\
         content-length: 8\r\n\r\nfailing\n",
    )
    .await;
    assert!(!passed);
    assert_eq!(
        output,
        format!("GET http://127.0.0.1:{port}/healthz: HTTP 500 Internal Server Error: failing")
    );
    // Only what the content length says is body.
    let (passed, output, port) = get("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA").await;
    assert!(passed);
    assert_eq!(
        output,
        format!("GET http://127.0.0.1:{port}/healthz: HTTP 200 OK: ok")
    );
}

#[tokio::test]
async fn an_answer_cut_short_fails_the_probe_saying_so() {
    for text in ["", "HTTP/1.1 200 OK\r\nConte", "HTT"] {
        let (passed, output, port) = get(text).await;
        assert!(!passed, "{text:?}: {output}");
        assert_eq!(
            output,
            format!(
                "GET http://127.0.0.1:{port}/healthz: the connection closed before a complete \
                 answer"
            ),
            "{text:?}"
        );
    }
}

#[tokio::test]
async fn an_answer_without_reason_or_with_chunks_is_read() {
    let (passed, output, port) = get("HTTP/1.0 204\r\n\r\n").await;
    assert!(passed, "{output}");
    assert!(
        output.starts_with(&format!("GET http://127.0.0.1:{port}/healthz: HTTP 204")),
        "{output}"
    );
    // A chunked body is decoded now (the hand-written client showed none).
    let (passed, output, port) =
        get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await;
    assert!(passed, "{output}");
    assert_eq!(
        output,
        format!("GET http://127.0.0.1:{port}/healthz: HTTP 200 OK: hello")
    );
}

#[tokio::test]
async fn an_answer_that_is_not_http_is_an_error() {
    for text in ["SSH-2.0-OpenSSH_9.2\r\n", "HTTP/1.1 abc OK\r\n\r\n"] {
        let (passed, output, port) = get(text).await;
        assert!(!passed, "{text:?}: {output}");
        assert_eq!(
            output,
            format!("GET http://127.0.0.1:{port}/healthz: the answer is not HTTP"),
            "{text:?}"
        );
    }
}

#[tokio::test]
async fn a_long_http_body_is_cut_to_1_kib() {
    let body: &'static str = Box::leak(
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5000\r\n\r\n{}",
            "y".repeat(5000)
        )
        .into_boxed_str(),
    );
    let port = server(Some(body)).await;
    let (fake, id) = fake_with_container(Some(LOCAL));
    let config = ProbeConfig::from_proto(&http_probe(port, "/healthz", 1000));
    let run = run_check(fake.as_ref(), &id, &config, &mut None).await;
    assert!(!run.passed);
    assert_eq!(run.output.len(), 1024);
    assert!(
        run.output.starts_with("GET http://127.0.0.1:"),
        "{}",
        run.output
    );
}

fn fake_with_container(ip: Option<IpAddr>) -> (Arc<FakeRuntime>, String) {
    let fake = Arc::new(FakeRuntime::default());
    let w = Workload {
        id: "default/web/1".into(),
        ..Workload::default()
    };
    let id = fake.add("n1", &w, ContainerState::Running);
    if let Some(ip) = ip {
        fake.lock().ips.insert(id.clone(), ip);
    }
    (fake, id)
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn http_probe_passes_on_2xx_and_fails_on_500_with_the_body() {
    let ok = server(Some(
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
    ))
    .await;
    let failing = server(Some(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 8\r\n\r\nfailing\n",
    ))
    .await;
    let (fake, id) = fake_with_container(Some(LOCAL));
    let run = |port| {
        let fake = fake.clone();
        let id = id.clone();
        async move {
            let config = ProbeConfig::from_proto(&http_probe(port, "/healthz", 1000));
            run_check(fake.as_ref(), &id, &config, &mut None).await
        }
    };
    let passed = run(ok).await;
    assert!(passed.passed, "{passed:?}");
    assert_eq!(
        passed.output,
        format!("GET http://127.0.0.1:{ok}/healthz: HTTP 200 OK: ok")
    );
    let failed = run(failing).await;
    assert!(!failed.passed);
    assert_eq!(
        failed.output,
        format!("GET http://127.0.0.1:{failing}/healthz: HTTP 500 Internal Server Error: failing")
    );
}

#[tokio::test]
async fn http_probe_with_expect_status_wants_exactly_that_status() {
    let port = server(Some("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")).await;
    let (fake, id) = fake_with_container(Some(LOCAL));
    let mut probe = http_probe(port, "/", 1000);
    if let Some(probe::Check::Http(http)) = &mut probe.check {
        http.expect_status = 204;
    }
    let run = run_check(
        fake.as_ref(),
        &id,
        &ProbeConfig::from_proto(&probe),
        &mut None,
    )
    .await;
    assert!(!run.passed);
    assert!(
        run.output.ends_with("HTTP 200 OK (expected 204)"),
        "{}",
        run.output
    );
}

#[tokio::test]
async fn hanging_http_server_fails_the_probe_after_its_timeout() {
    let port = server(None).await;
    let (fake, id) = fake_with_container(Some(LOCAL));
    let config = ProbeConfig::from_proto(&http_probe(port, "/healthz", 300));
    let began = Instant::now();
    let run = run_check(fake.as_ref(), &id, &config, &mut None).await;
    assert!(!run.passed);
    assert_eq!(run.output, "no answer within 300ms");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn tcp_probe_passes_when_the_port_accepts_and_fails_when_refused() {
    let open = server(None).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (fake, id) = fake_with_container(Some(LOCAL));
    let tcp = |port: u16| {
        ProbeConfig::from_proto(&Probe {
            check: Some(probe::Check::Tcp(TcpProbe { port: port.into() })),
            ..Probe::default()
        })
    };
    let run = run_check(fake.as_ref(), &id, &tcp(open), &mut None).await;
    assert!(run.passed, "{run:?}");
    let run = run_check(fake.as_ref(), &id, &tcp(closed), &mut None).await;
    assert!(!run.passed);
    assert!(
        run.output
            .starts_with(&format!("connecting to 127.0.0.1:{closed}: ")),
        "{}",
        run.output
    );
}

#[tokio::test]
async fn container_without_an_address_fails_http_and_tcp_probes_saying_so() {
    let (fake, id) = fake_with_container(None);
    let config = ProbeConfig::from_proto(&http_probe(8080, "/", 500));
    let run = run_check(fake.as_ref(), &id, &config, &mut None).await;
    assert!(!run.passed);
    assert_eq!(
        run.output,
        "the container has no IP address and does not publish port 8080"
    );
}

// ---- exec ----

#[tokio::test]
async fn exec_probe_passes_on_exit_0_and_fails_with_the_output_otherwise() {
    let (fake, id) = fake_with_container(None);
    fake.lock().programs.insert(
        "/ok".into(),
        ExecOutput {
            exit_code: Some(0),
            output: "fine".into(),
        },
    );
    fake.lock().programs.insert(
        "/bad".into(),
        ExecOutput {
            exit_code: Some(2),
            output: "db down\n".into(),
        },
    );
    let run = |cmd: &'static str| {
        let fake = fake.clone();
        let id = id.clone();
        async move {
            let config = ProbeConfig::from_proto(&exec_probe(&[cmd, "-q"], 1000));
            run_check(fake.as_ref(), &id, &config, &mut None).await
        }
    };
    let ok = run("/ok").await;
    assert_eq!((ok.passed, ok.output.as_str()), (true, "fine"));
    let bad = run("/bad").await;
    assert_eq!(
        (bad.passed, bad.output.as_str()),
        (false, "exit code 2: db down")
    );
}

#[tokio::test]
async fn exec_of_a_missing_command_is_unhealthy_with_the_error() {
    let (fake, id) = fake_with_container(None);
    let config = ProbeConfig {
        failure_threshold: 1,
        ..ProbeConfig::from_proto(&exec_probe(&["/no-such-check"], 1000))
    };
    let run = run_check(fake.as_ref(), &id, &config, &mut None).await;
    assert!(!run.passed);
    assert!(
        run.output.contains("executable file not found"),
        "{}",
        run.output
    );
    let mut state = ProbeState::default();
    state.record(&config, run.passed, run.output, S);
    assert_eq!(state.health, Health::Unhealthy);
}

#[tokio::test]
async fn hanging_exec_is_bounded_by_the_timeout() {
    let (fake, id) = fake_with_container(None);
    fake.lock().hanging.insert("/sleep".into());
    let config = ProbeConfig::from_proto(&exec_probe(&["/sleep"], 200));
    let began = Instant::now();
    let run = run_check(fake.as_ref(), &id, &config, &mut None).await;
    assert!(!run.passed);
    assert!(
        run.output.contains("no exit within 200ms"),
        "{}",
        run.output
    );
    assert!(began.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn long_output_is_cut_to_1_kib() {
    let (fake, id) = fake_with_container(None);
    fake.lock().programs.insert(
        "/chatty".into(),
        ExecOutput {
            exit_code: Some(1),
            output: "x".repeat(5000),
        },
    );
    let config = ProbeConfig::from_proto(&exec_probe(&["/chatty"], 1000));
    let run = run_check(fake.as_ref(), &id, &config, &mut None).await;
    assert_eq!(run.output.len(), 1024);
}

// ---- the probe tasks ----

/// Waits for the prober's next change, at most 5 s.
async fn next_change(prober: &mut Prober<FakeRuntime>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let update = tokio::time::timeout_at(deadline.into(), prober.next())
            .await
            .expect("no probe update within 5s");
        if prober.apply(update) {
            return;
        }
    }
}

#[tokio::test]
async fn prober_runs_probes_of_its_targets_and_stops_with_them() {
    let (fake, id) = fake_with_container(None);
    fake.lock().programs.insert(
        "/ok".into(),
        ExecOutput {
            exit_code: Some(0),
            output: "fine".into(),
        },
    );
    let mut prober = Prober::new(fake.clone());
    let target = Target {
        workload_id: "default/web/1".into(),
        container_id: id.clone(),
        started_at: None,
        probes: vec![exec_probe(&["/ok"], 1000)],
    };
    prober.sync(vec![target.clone()]);
    let starting = prober.views("default/web/1", &id);
    assert_eq!(starting, vec![view("cmd", Health::Starting, "")]);
    next_change(&mut prober).await;
    assert_eq!(
        prober.views("default/web/1", &id),
        vec![view("cmd", Health::Healthy, "fine")]
    );
    assert!(prober
        .views("default/web/1", "another-container")
        .is_empty());

    // The same target again keeps the task; none stops it.
    prober.sync(vec![target]);
    assert_eq!(
        prober.views("default/web/1", &id)[0].health,
        Health::Healthy
    );
    prober.sync(vec![]);
    assert!(prober.views("default/web/1", &id).is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let calls = fake.take_calls().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.calls().len(),
        0,
        "probes ran on after their target left ({calls} before)"
    );
}

#[tokio::test]
async fn prober_reports_a_failing_probe_turning_unhealthy() {
    let (fake, id) = fake_with_container(None);
    let mut prober = Prober::new(fake.clone());
    prober.sync(vec![Target {
        workload_id: "w".into(),
        container_id: id.clone(),
        started_at: None,
        probes: vec![exec_probe(&["/missing"], 1000)],
    }]);
    next_change(&mut prober).await;
    let views = prober.views("w", &id);
    assert_eq!(views[0].health, Health::Unhealthy);
    assert!(views[0].output.contains("executable file not found"));
}

// ---- RunProbes ----

fn status(id: &str, state: WorkloadState, container_id: &str, reason: &str) -> WorkloadStatus {
    WorkloadStatus {
        id: id.into(),
        state: state as i32,
        container_id: container_id.into(),
        reason: reason.into(),
        ..WorkloadStatus::default()
    }
}

fn container() -> Option<convoy_proto::workload::Runtime> {
    Some(convoy_proto::workload::Runtime::Container(
        convoy_proto::ContainerSpec {
            image: "app:1".into(),
            ..convoy_proto::ContainerSpec::default()
        },
    ))
}

#[tokio::test]
async fn run_now_runs_every_check_and_reports_docker_health_and_plain_instances() {
    let fake = Arc::new(FakeRuntime::default());
    let probed = Workload {
        id: "default/web/1".into(),
        probes: vec![exec_probe(&["/ok"], 1000), exec_probe(&["/missing"], 1000)],
        runtime: container(),
        ..Workload::default()
    };
    // Two probes with one name would be refused by the spec; rename one.
    let mut probed = probed;
    probed.probes[1].name = "other".into();
    let plain = Workload {
        id: "default/db/1".into(),
        runtime: container(),
        ..Workload::default()
    };
    let stopped = Workload {
        id: "default/job/1".into(),
        runtime: container(),
        ..Workload::default()
    };
    let web = fake.add("n1", &probed, ContainerState::Running);
    let db = fake.add("n1", &plain, ContainerState::Running);
    fake.set_health(
        &web,
        Some(DockerHealth {
            status: Health::Unhealthy,
            output: "exit code 1: curl failed".into(),
        }),
    );
    fake.lock().programs.insert(
        "/ok".into(),
        ExecOutput {
            exit_code: Some(0),
            output: "fine".into(),
        },
    );
    let plan = crate::plan::Plan::try_from(NodePlan {
        generation: 1,
        workloads: vec![probed.clone(), plain.clone(), stopped.clone()],
        ..Default::default()
    })
    .unwrap();
    let statuses = BTreeMap::from([
        (
            probed.id.clone(),
            status(&probed.id, WorkloadState::Running, &web, ""),
        ),
        (
            plain.id.clone(),
            status(&plain.id, WorkloadState::Running, &db, ""),
        ),
        (
            stopped.id.clone(),
            status(&stopped.id, WorkloadState::Exited, "", "exited with code 3"),
        ),
    ]);
    let mut results = run_now(fake.as_ref(), Some(&plan), &statuses, &[]).await;
    results.sort_by(|a, b| (&a.workload_id, &a.probe).cmp(&(&b.workload_id, &b.probe)));
    let summary: Vec<(&str, &str, bool)> = results
        .iter()
        .map(|r| (r.workload_id.as_str(), r.probe.as_str(), r.healthy))
        .collect();
    assert_eq!(
        summary,
        [
            ("default/db/1", "running", true),
            ("default/job/1", "running", false),
            ("default/web/1", "cmd", true),
            ("default/web/1", "docker", false),
            ("default/web/1", "other", false),
        ]
    );
    assert_eq!(
        results[1].output,
        "not running: exited (exited with code 3)"
    );
    assert_eq!(results[3].output, "exit code 1: curl failed");
    assert!(results[4].output.contains("executable file not found"));

    // Only the listed ones; an unknown id says so.
    let results = run_now(
        fake.as_ref(),
        Some(&plan),
        &statuses,
        &["default/db/1".into(), "default/nope/1".into()],
    )
    .await;
    assert_eq!(results.len(), 2);
    assert_eq!(results[1].output, "not in this node's plan");
    assert!(!results[1].healthy);
}

#[tokio::test]
async fn run_now_answers_for_a_unit_with_systemds_state_and_its_probes_on_loopback() {
    let fake = Arc::new(FakeRuntime::default());
    let unit = |id: &str, probes: Vec<Probe>| Workload {
        id: id.into(),
        probes,
        runtime: Some(convoy_proto::workload::Runtime::Unit(
            convoy_proto::UnitSpec::default(),
        )),
        ..Workload::default()
    };
    let port = server(Some("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
    let plain = unit("default/exporter/1", vec![]);
    let probed = unit(
        "default/api/1",
        vec![
            http_probe(port, "/", 1000),
            exec_probe(&["/bin/true"], 1000),
        ],
    );
    let failed = unit("default/bad/1", vec![]);
    let with_unit = |id: &str, state: WorkloadState, active: &str, reason: &str| {
        let mut s = status(id, state, "", reason);
        s.unit = Some(convoy_proto::UnitStatus {
            unit_name: "x.service".into(),
            active_state: active.into(),
            sub_state: if active == "active" {
                "running"
            } else {
                "failed"
            }
            .into(),
            ..convoy_proto::UnitStatus::default()
        });
        s
    };
    let statuses = BTreeMap::from([
        (
            plain.id.clone(),
            with_unit(&plain.id, WorkloadState::Running, "active", ""),
        ),
        (
            probed.id.clone(),
            with_unit(&probed.id, WorkloadState::Running, "active", ""),
        ),
        (
            failed.id.clone(),
            with_unit(
                &failed.id,
                WorkloadState::Failed,
                "failed",
                "unit `x.service` failed: it exited with status 3",
            ),
        ),
    ]);
    let plan = crate::plan::Plan::try_from(NodePlan {
        generation: 1,
        workloads: vec![plain, probed, failed],
        ..Default::default()
    })
    .unwrap();
    let mut results = run_now(fake.as_ref(), Some(&plan), &statuses, &[]).await;
    results.sort_by(|a, b| (&a.workload_id, &a.probe).cmp(&(&b.workload_id, &b.probe)));
    let summary: Vec<(&str, &str, bool)> = results
        .iter()
        .map(|r| (r.workload_id.as_str(), r.probe.as_str(), r.healthy))
        .collect();
    assert_eq!(
        summary,
        [
            ("default/api/1", "cmd", false),
            ("default/api/1", "http", true),
            ("default/api/1", "systemd", true),
            ("default/bad/1", "systemd", false),
            ("default/exporter/1", "systemd", true),
        ]
    );
    assert!(results[0].output.contains("a unit has none"));
    assert_eq!(
        results[3].output,
        "failed (failed): unit `x.service` failed: it exited with status 3"
    );
    assert_eq!(results[4].output, "active (running)");
}

//! Specs that are wrong, and a coordinator that is not there: one clear
//! line, a failing exit code, nothing stored.

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use convoy_tests::cluster::free_port;
use convoy_tests::spec::compose;
use convoy_tests::{docker, skip_without_docker, Cluster, ServiceSpec};

/// A cluster with one service applied, to show that a bad apply leaves it be.
fn cluster_with_one_service() -> (Cluster, String, ServiceSpec) {
    let c = Cluster::with_agents(1);
    let svc = c.service_name("good");
    let spec = ServiceSpec::new(&svc, &c.image());
    let file = c.write_spec("good.yaml", &compose(&[&spec]));
    c.apply(&file);
    c.wait_service_running(&svc, 1, 1);
    (c, svc, spec)
}

/// `convoy apply -f FILE` must fail with exit code 1 and one line on
/// stderr naming `FILE:LINE` and every one of `words`.
fn assert_refused(c: &Cluster, file: &Path, line: u32, words: &[&str]) -> String {
    let out: Output = c.cli(&["apply", "-f", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "apply of a bad spec should exit 1; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    let msg = lines[0];
    assert!(msg.starts_with("error: "), "{msg}");
    let name = file.file_name().unwrap().to_str().unwrap();
    let at = format!("{name}:{line}");
    let pos = msg
        .find(&at)
        .unwrap_or_else(|| panic!("stderr does not name `{at}`: {msg}"));
    assert!(
        !msg[pos + at.len()..].starts_with(|ch: char| ch.is_ascii_digit()),
        "stderr names another line than {line}: {msg}"
    );
    for word in words {
        assert!(msg.contains(word), "stderr does not name `{word}`: {msg}");
    }
    msg.to_string()
}

/// Nothing of the bad file was stored or started; the good service is as
/// it was.
fn assert_nothing_stored(c: &Cluster, good: &str, bad: &str) {
    std::thread::sleep(Duration::from_secs(1));
    let services = c.try_status().unwrap();
    assert!(
        services.iter().all(|s| s.name != bad),
        "{bad} was stored: {services:#?}"
    );
    let status = c.service_status(good);
    assert_eq!(status.revision, 1, "{}", status.describe());
    assert!(docker::of_service(bad).unwrap().is_empty());
    c.wait_service_running(good, 1, 1);
}

#[test]
fn yaml_syntax_error_is_refused_naming_file_and_line() {
    skip_without_docker!();
    let (c, good, _) = cluster_with_one_service();
    let bad = c.service_name("bad");
    let yaml = format!(
        "services:\n  {bad}:\n    image: convoy-testapp:latest: oops\n    deploy:\n      replicas: 1\n"
    );
    let file = c.write_spec("syntax.yaml", &yaml);
    assert_refused(&c, &file, 3, &[]);
    assert_nothing_stored(&c, &good, &bad);
}

#[test]
fn wrong_type_is_refused_naming_file_line_and_key() {
    skip_without_docker!();
    let (c, good, spec) = cluster_with_one_service();
    let bad = c.service_name("bad");
    // The good service changes too: all or nothing.
    let changed = spec.env("GREETING", "changed");
    let yaml = format!(
        "services:\n{}  {bad}:\n    image: {}\n    deploy:\n      replicas: three\n",
        changed.yaml(),
        c.image()
    );
    let line = yaml
        .lines()
        .position(|l| l.contains("replicas: three"))
        .unwrap() as u32
        + 1;
    let file = c.write_spec("type.yaml", &yaml);
    assert_refused(&c, &file, line, &["replicas"]);
    assert_nothing_stored(&c, &good, &bad);
}

#[test]
fn unknown_key_is_refused_naming_file_line_and_key() {
    skip_without_docker!();
    let (c, good, spec) = cluster_with_one_service();
    let bad = c.service_name("bad");
    let changed = spec.env("GREETING", "changed");
    let yaml = format!(
        "services:\n{}  {bad}:\n    imagee: convoy-testapp:latest\n",
        changed.yaml()
    );
    let line = yaml.lines().position(|l| l.contains("imagee")).unwrap() as u32 + 1;
    let file = c.write_spec("unknown.yaml", &yaml);
    assert_refused(&c, &file, line, &["imagee"]);
    assert_nothing_stored(&c, &good, &bad);
}

#[test]
fn unsupported_compose_key_is_warned_about_and_applied() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let svc = c.service_name("warn");
    // `logging` was the example until it was supported (issue 14).
    let spec = ServiceSpec::new(&svc, &c.image())
        .extra("blkio_config:")
        .extra("  weight: 300");
    let file = c.write_spec("warn.yaml", &compose(&[&spec]));
    let report = c.apply(&file);
    assert!(
        report.warnings.iter().any(|w| w.contains("blkio_config")),
        "no warning names blkio_config: {:?}",
        report.warnings
    );
    assert_eq!(report.service(&svc).action, "create");
    c.wait_service_running(&svc, 1, 1);
}

/// Runs the CLI against `addr` and returns (output, seconds it took).
fn cli_against(c: &Cluster, addr: &str) -> (Output, Duration) {
    let started = Instant::now();
    let out = convoy_tests::process::output_within(
        c.cli_command().args(["--addr", addr, "status"]),
        Duration::from_secs(30),
    )
    .unwrap();
    (out, started.elapsed())
}

#[test]
fn unreachable_coordinator_fails_fast_naming_its_address() {
    // No Docker needed: the coordinator only supplies a real CA file.
    let c = Cluster::start();

    // Nobody listens: refused at once.
    let closed = format!("127.0.0.1:{}", free_port());
    let (out, took) = cli_against(&c, &format!("https://{closed}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        stderr.contains(&closed),
        "stderr does not name {closed}: {stderr}"
    );
    assert!(
        stderr.contains("cannot reach the coordinator"),
        "stderr: {stderr}"
    );

    // Something listens but never answers (TLS never starts): the CLI must
    // give up by itself. INTERFACES.md says "within ~5 s"; allow for a slow
    // process start on a loaded CI machine.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = silent.local_addr().unwrap().to_string();
    let (out, took) = cli_against(&c, &format!("https://{hung}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(took < Duration::from_secs(7), "took {took:?}");
    assert!(
        stderr.contains(&hung),
        "stderr does not name {hung}: {stderr}"
    );
    drop(silent);
}

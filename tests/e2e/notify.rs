//! Webhook notifications (issue 20, notifications): a receiver that is down
//! while a rollout runs and is rolled back, and stays down across a
//! coordinator restart, gets every notification once it is back, in order,
//! each signed with an HMAC-SHA256 that `openssl` (not Convoy's code)
//! verifies. `notify test`, `notify ls` and the admin-only rule are checked
//! on the real coordinator.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::ensure;
use convoy_tests::cluster::free_port;
use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, wait_until, Cluster, ServiceSpec};
use serde_json::Value;

const SIGNING_SECRET: &str = "whsec-7d1c-e2e-signing";

/// One request a receiver got: its headers (lowercase names) and body.
#[derive(Debug, Clone)]
struct Received {
    headers: BTreeMap<String, String>,
    body: String,
}

/// A webhook receiver on `port`: answers every POST 200 and keeps it.
fn receiver(port: u16) -> Arc<Mutex<Vec<Received>>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut headers = BTreeMap::new();
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            keep.lock().unwrap().push(Received {
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    got
}

/// `sha256=HEX` of HMAC-SHA256(key, body), computed by `openssl`.
fn openssl_hmac(key: &str, body: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.trim().rsplit(' ').next().unwrap_or_default();
    format!("sha256={hex}")
}

fn cli_stdin(c: &Cluster, args: &[&str], input: &str) -> Output {
    c.cli_with_input(args, input.as_bytes())
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn notifier(c: &Cluster, name: &str) -> Value {
    let list: Value = c.cli_json(&["notify", "ls"]);
    list["notifiers"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn a_receiver_down_during_a_rollback_gets_it_after_a_coordinator_restart_signed() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(1);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/convoy");

    // Bad input is refused with what and where; nothing is stored.
    let out = c.cli(&[
        "notify",
        "add",
        "ops",
        "--url",
        &url,
        "--events",
        "rollout.*,node.lots",
    ]);
    assert!(!out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("`node.lots`"), "{}", said(&out));
    let out = c.cli(&["notify", "add", "ops", "--url", "ftp://x/y"]);
    assert!(
        said(&out).contains("use http:// or https://"),
        "{}",
        said(&out)
    );
    // Admin only: a deployer may not point the coordinator at a URL.
    let deployer: Value = c.cli_json(&["token", "create", "--name", "d", "--role", "deployer"]);
    let out = c.cli_with_token(
        deployer["token"].as_str().unwrap(),
        &["notify", "add", "ops", "--url", &url],
    );
    assert!(!out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("needs an admin token"),
        "{}",
        said(&out)
    );

    let out = cli_stdin(
        &c,
        &[
            "notify",
            "add",
            "ops",
            "--url",
            &url,
            "--events",
            "rollout.started,rollout.succeeded,rollout.rolled_back",
            "--signing-secret-stdin",
        ],
        &format!("{SIGNING_SECRET}\n"),
    );
    assert!(out.status.success(), "{}", said(&out));
    assert!(!said(&out).contains(SIGNING_SECRET));

    // Nobody listens: `notify test` says so and exits non-zero.
    let out = c.cli(&["notify", "test", "ops"]);
    assert!(!out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("got no answer"), "{}", said(&out));

    // A rollout and a rollback while the receiver is down.
    let svc = c.service_name("notified");
    let v1 = ServiceSpec::new(&svc, &c.image()).env("GREETING", "one");
    let v2 = ServiceSpec::new(&svc, &c.image()).env("GREETING", "two");
    for spec in [&v1, &v2] {
        let file = c.write_spec("n.yaml", &compose(&[spec]));
        let out = c.cli(&[
            "apply",
            "-f",
            file.to_str().unwrap(),
            "--wait",
            "--timeout",
            "60s",
        ]);
        assert!(out.status.success(), "{}", said(&out));
    }
    let out = c.cli(&["rollback", &svc]);
    assert!(out.status.success(), "{}", said(&out));
    // Started r2; succeeded r1, r2 and the rollback's r3; rolled back.
    wait_until(
        "the notifications queue up while the receiver is down",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let n = notifier(&c, "ops");
            let queued = n["queued"].as_u64().unwrap_or(0);
            ensure!(queued >= 5, "{n}");
            ensure!(
                n["last_error"].as_str().is_some_and(|e| !e.is_empty()),
                "{n}"
            );
            Ok(())
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let queued = notifier(&c, "ops")["queued"].as_u64().unwrap();

    // The coordinator restarts; the queue is in the store.
    c.stop_coordinator();
    c.start_coordinator();
    let n = notifier(&c, "ops");
    assert_eq!(n["queued"].as_u64(), Some(queued), "{n}");

    // The receiver comes back: everything arrives, in order, signed.
    let got = receiver(port);
    let received = wait_until(
        "every queued notification is delivered",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let got = got.lock().unwrap().clone();
            ensure!(got.len() as u64 >= queued, "{} of {queued}", got.len());
            Ok(got)
        },
    );
    let kinds: Vec<String> = received
        .iter()
        .map(|r| r.headers["x-convoy-event"].clone())
        .collect();
    for r in &received {
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body["kind"].as_str(),
            Some(r.headers["x-convoy-event"].as_str())
        );
        assert_eq!(
            r.headers
                .get("x-convoy-signature")
                .cloned()
                .unwrap_or_default(),
            openssl_hmac(SIGNING_SECRET, &r.body),
            "the HMAC verifies: {r:?}"
        );
        assert!(!r.body.contains(SIGNING_SECRET));
    }
    let rolled_back = received
        .iter()
        .find(|r| r.headers["x-convoy-event"] == "rollout.rolled_back")
        .unwrap_or_else(|| panic!("no rollout.rolled_back in {kinds:?}"));
    let body: Value = serde_json::from_str(&rolled_back.body).unwrap();
    assert_eq!(body["service"].as_str(), Some(svc.as_str()), "{body}");
    // In the order they happened: started, succeeded (r1), started,
    // succeeded (r2), then the rollback.
    let first_started = kinds.iter().position(|k| k == "rollout.started");
    let rb = kinds.iter().position(|k| k == "rollout.rolled_back");
    assert!(first_started < rb, "{kinds:?}");
    let ids: std::collections::BTreeSet<&String> = received
        .iter()
        .map(|r| &r.headers["x-convoy-delivery"])
        .collect();
    assert_eq!(ids.len(), received.len(), "delivery ids are unique");
    wait_until(
        "the queue is empty",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let n = notifier(&c, "ops");
            ensure!(n["queued"].as_u64() == Some(0), "{n}");
            ensure!(n["last_error"] == "", "{n}");
            Ok(())
        },
    );

    // `notify test` now reaches it.
    let out = c.cli(&["notify", "test", "ops"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("answered HTTP 200"), "{}", said(&out));
    wait_until(
        "the test event arrives",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let got = got.lock().unwrap();
            ensure!(
                got.iter()
                    .any(|r| r.headers["x-convoy-event"] == "notify.test"),
                "not yet"
            );
            Ok(())
        },
    );

    // The audit log has the adds and tests, never the secret.
    let audit = said(&c.cli(&["audit"]));
    assert!(audit.contains("notify.add"), "{audit}");
    assert!(audit.contains("notify.test"), "{audit}");
    assert!(!audit.contains(SIGNING_SECRET));
    let out = c.cli(&["notify", "rm", "ops"]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(notifier(&c, "ops"), Value::Null);
}

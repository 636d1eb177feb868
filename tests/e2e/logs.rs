//! Issue 19: `convoy logs` on real Docker: lines of every instance,
//! streamed from the agents through their tunnels, `--since`, `--tail`,
//! `-f`; a reader that stops reading loses lines (and is told) but never
//! delays the agents' heartbeats. (A unit's journal: `systemd.rs`.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::ensure;
use convoy_tests::events::EventWatch;
use convoy_tests::process::signal;
use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, wait_until, Cluster, ServiceSpec};

/// The testapp writing `tick N from HOST` every `every_ms`, `lines` at a
/// time, padded with `pad` bytes.
fn ticker(c: &Cluster, name: &str, replicas: u32, every_ms: u32, lines: u32, pad: u32) -> String {
    let svc = c.service_name(name);
    let (every, lines, pad) = (every_ms.to_string(), lines.to_string(), pad.to_string());
    let spec = ServiceSpec::new(&svc, &c.image())
        .replicas(replicas)
        .command(&[
            "/convoy-testapp",
            "--listen",
            "0.0.0.0:8080",
            "--log-every",
            &every,
            "--log-lines",
            &lines,
            "--log-pad",
            &pad,
        ]);
    let file = c.write_spec(&format!("{name}.yaml"), &compose(&[&spec]));
    c.apply(&file);
    c.wait_service_running(&svc, replicas as usize, 1);
    svc
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `convoy logs ARGS` to completion; its stdout lines.
fn logs(c: &Cluster, args: &[&str]) -> Vec<String> {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    let out = c.cli(&all);
    assert!(
        out.status.success(),
        "convoy {all:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// The sequence number of a `tick N from HOST` line.
fn seq(line: &str) -> Option<u64> {
    let rest = &line[line.find("tick ")? + 5..];
    rest.split_whitespace().next()?.parse().ok()
}

/// `convoy logs -f ...` running, its lines collected as they come.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Follower {
    fn start(mut cmd: Command, args: &[&str]) -> Follower {
        let mut child = cmd
            .arg("logs")
            .arg("-f")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("convoy logs -f");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                seen.lock().unwrap().push((Instant::now(), line));
            }
        });
        Follower { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    fn lines_after(&self, t: Instant) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at > t)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Logs of a 2-instance service (one on each node): both in one stream,
/// each line prefixed with its instance; `--tail`, `--since`, an instance
/// alone, `-f` as lines are written; an unknown target is an error naming
/// it; the call is audited.
#[test]
fn logs_show_both_instances_with_tail_since_and_follow() {
    skip_without_docker!();
    let c = Cluster::with_agents(2);
    c.wait_nodes_ready(&c.node_names());
    let svc = ticker(&c, "talk", 2, 200, 1, 0);
    let (one, two) = (format!("{svc}-1 |"), format!("{svc}-2 |"));

    // --tail: the last 3 lines of each instance, sorted by time.
    let tail = wait_until(
        "three lines of each instance",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let lines = logs(&c, &[&svc, "--tail", "3"]);
            ensure!(lines.len() == 6, "{lines:#?}");
            Ok(lines)
        },
    );
    assert_eq!(
        tail.iter().filter(|l| l.starts_with(&one)).count(),
        3,
        "{tail:#?}"
    );
    assert_eq!(
        tail.iter().filter(|l| l.starts_with(&two)).count(),
        3,
        "{tail:#?}"
    );
    // stdout and stderr both come (every tenth tick goes to stderr).
    let all = logs(&c, &[&svc]);
    assert!(
        all.iter()
            .any(|l| l.starts_with(&one) && l.contains("listening on")),
        "{all:#?}"
    );
    let stderr_line = wait_until(
        "a tick written to stderr",
        Duration::from_secs(10),
        Duration::from_millis(500),
        || {
            let all = logs(&c, &[&svc]);
            all.into_iter()
                .find(|l| seq(l).is_some_and(|n| n % 10 == 0))
                .ok_or_else(|| anyhow::anyhow!("no tick divisible by 10 yet"))
        },
    );
    assert!(stderr_line.contains("tick"), "{stderr_line}");

    // --since: the start-up line is older than 2 s, the last ticks are not.
    thread::sleep(Duration::from_secs(3));
    let recent = logs(&c, &[&svc, "--since", "2s", "--timestamps"]);
    assert!(!recent.is_empty(), "nothing in the last 2 s");
    assert!(
        recent.iter().all(|l| !l.contains("listening on")),
        "{recent:#?}"
    );
    assert!(recent.iter().any(|l| l.starts_with(&one)), "{recent:#?}");
    assert!(recent.iter().any(|l| l.starts_with(&two)), "{recent:#?}");
    // --timestamps puts an RFC 3339 time after the prefix.
    let stamp = recent[0].split('|').nth(1).unwrap().trim_start();
    assert!(
        stamp.starts_with("20") && stamp.as_bytes().get(10) == Some(&b'T'),
        "{stamp}"
    );

    // One instance alone.
    let only = logs(&c, &[&format!("{svc}-2"), "--tail", "2"]);
    assert_eq!(only.len(), 2, "{only:#?}");
    assert!(
        only.iter().all(|l| l.starts_with(&format!("{svc}-2 "))),
        "{only:#?}"
    );

    // -f: lines from both, as they are written (numbers past those that
    // existed when it started).
    let before = logs(&c, &[&svc]);
    let newest = before.iter().filter_map(|l| seq(l)).max().unwrap_or(0);
    let follow = Follower::start(c.cli_command(), &[&svc, "--tail", "1"]);
    let lines = wait_until(
        "convoy logs -f shows new lines of both instances",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || {
            let lines = follow.lines();
            for prefix in [&one, &two] {
                ensure!(
                    lines
                        .iter()
                        .any(|l| l.starts_with(prefix.as_str()) && seq(l) > Some(newest + 5)),
                    "no new line of {prefix} yet: {lines:#?}"
                );
            }
            Ok(lines)
        },
    );
    assert!(lines
        .iter()
        .all(|l| l.starts_with(&one) || l.starts_with(&two)));
    drop(follow);

    // An unknown target: an error naming it, non-zero.
    let out = c.cli(&["logs", "nosuch"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no service, instance or unit `nosuch` in environment `default`"),
        "{err}"
    );
    // Audited: who, what, where.
    let audit = text(&c.cli(&["audit"]).stdout);
    assert!(
        audit.contains("logs") && audit.contains(&format!("default/{svc}")),
        "{audit}"
    );
    c.delete(&svc);
    c.wait_service_gone(&svc);
}

/// A `convoy logs -f` stopped for 30 s (SIGSTOP) while its instance writes
/// ~0.5 MB/s: the agent's heartbeats go on (the node never counts as
/// lost), and once the reader goes on it is told how many lines it lost.
#[test]
fn a_paused_reader_does_not_delay_heartbeats_and_is_told_what_it_lost() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let nodes = c.node_names();
    c.wait_nodes_ready(&nodes);
    let events = EventWatch::start(c.cli_command(), &[]).unwrap();
    // 20 lines of ~230 bytes every 10 ms.
    let svc = ticker(&c, "loud", 1, 10, 20, 200);
    let follow = Follower::start(c.cli_command(), &[&svc]);
    wait_until(
        "the follower reads lines",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || {
            ensure!(follow.lines().len() > 100, "{} lines", follow.lines().len());
            Ok(())
        },
    );
    signal(follow.child.id(), "STOP").unwrap();
    let paused = Instant::now();
    // Sampled through the pause: the node stays ready, its heartbeat fresh.
    while paused.elapsed() < Duration::from_secs(30) {
        let v: serde_json::Value = c.cli_json(&["nodes"]);
        let node = &v["nodes"][0];
        assert_eq!(node["state"], "ready", "{node}");
        thread::sleep(Duration::from_secs(2));
    }
    let resumed = Instant::now();
    signal(follow.child.id(), "CONT").unwrap();
    let marker = wait_until(
        "the reader is told lines were dropped",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            follow
                .lines_after(resumed)
                .into_iter()
                .find(|l| l.contains("dropped, the reader was too slow"))
                .ok_or_else(|| anyhow::anyhow!("no drop marker yet"))
        },
    );
    assert!(marker.starts_with(&format!("{svc}-1 |")), "{marker}");
    // And it reads live lines again.
    let live = wait_until(
        "new lines after the marker",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || {
            let after = follow.lines_after(resumed);
            ensure!(after.iter().filter(|l| seq(l).is_some()).count() > 100);
            Ok(after.len())
        },
    );
    assert!(live > 100);
    let lost: Vec<_> = events
        .events()
        .into_iter()
        .filter(|e| e.kind == "node.lost")
        .collect();
    assert!(lost.is_empty(), "{}", events.describe());
    drop(follow);
    c.delete(&svc);
    c.wait_service_gone(&svc);
}

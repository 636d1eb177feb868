//! Hostile specs against a running coordinator: each is refused with one
//! line naming the file and the limit, while `/healthz` keeps answering and
//! the connected node is never marked lost (the parser runs on a bounded
//! blocking pool, never on the async workers, and in linear time).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use convoy_tests::events::EventWatch;
use convoy_tests::{http, skip_without_docker, Cluster};

fn with_service(extra: &str) -> String {
    format!("services:\n  web:\n    image: nginx:1.27\n{extra}")
}

fn deep_nesting() -> String {
    // The shape that once kept a worker busy for 77 s.
    with_service(&format!("    labels: {}\n", "[".repeat(100_000)))
}

fn many_keys() -> String {
    // About 1.4 MiB: under this coordinator's 2 MiB limit, over its node limit.
    let mut text = with_service("    environment:\n");
    for i in 0..120_000 {
        text.push_str(&format!("      K{i}: v\n"));
    }
    text
}

fn alias_bomb() -> String {
    let mut text = String::from("x-a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let prev = format!("*a{}", level - 1);
        let items = [prev.as_str(); 10].join(", ");
        text.push_str(&format!("x-a{level}: &a{level} [{items}]\n"));
    }
    text.push_str("services:\n  web:\n    image: nginx:1.27\n    labels:\n      x: *a9\n");
    text
}

fn too_large() -> String {
    with_service(&format!("    x-pad: \"{}\"\n", "a".repeat(3 << 20)))
}

/// `/healthz` polled every 100 ms until stopped: the slowest answer and
/// every failure.
struct HealthPoll {
    stop: Arc<AtomicBool>,
    slowest: Arc<Mutex<Duration>>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl HealthPoll {
    fn start(c: &Cluster) -> Self {
        let addr = c.http_addr;
        let stop = Arc::new(AtomicBool::new(false));
        let slowest = Arc::new(Mutex::new(Duration::ZERO));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, w, f) = (stop.clone(), slowest.clone(), failures.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let start = Instant::now();
                match http::get(addr, "/healthz") {
                    Ok((200, _)) => {}
                    Ok((code, body)) => f.lock().unwrap().push(format!("{code}: {body}")),
                    Err(e) => f.lock().unwrap().push(format!("{e:#}")),
                }
                let took = start.elapsed();
                let mut slowest = w.lock().unwrap();
                *slowest = (*slowest).max(took);
                drop(slowest);
                thread::sleep(Duration::from_millis(100));
            }
        });
        HealthPoll {
            stop,
            slowest,
            failures,
            thread: Some(thread),
        }
    }

    /// Stops polling; the slowest answer and the failures.
    fn finish(mut self) -> (Duration, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let slowest = *self.slowest.lock().unwrap();
        let failures = self.failures.lock().unwrap().clone();
        (slowest, failures)
    }
}

/// Runs `convoy apply -f FILE` (with `cli_env`) and returns its exit code
/// and its stderr.
fn apply(c: &Cluster, file: &Path, cli_env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = c.cli_command();
    for (k, v) in cli_env {
        cmd.env(k, v);
    }
    let out = cmd
        .args(["apply", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[test]
fn hostile_specs_are_refused_while_healthz_answers_and_no_node_is_lost() {
    skip_without_docker!();
    let mut c = Cluster::start_with_env(&[("CONVOY_MAX_SPEC_BYTES", "2MiB")]);
    let node = c.add_agent();
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let watch = EventWatch::start(c.cli_command(), &["--node", &node]).unwrap();
    let files = [
        ("deep.yaml", deep_nesting(), "nests deeper than 32 levels"),
        ("keys.yaml", many_keys(), "more than 100000 keys"),
        ("bomb.yaml", alias_bomb(), "alias"),
    ];
    let paths: Vec<(PathBuf, &str)> = files
        .iter()
        .map(|(name, text, words)| (c.write_spec(name, text), *words))
        .collect();
    let big = c.write_spec("big.yaml", &too_large());

    let poll = HealthPoll::start(&c);
    // Each hostile file four times at once, from a CLI that lets large
    // files through, so that the coordinator does the refusing.
    let cli_env = [("CONVOY_MAX_SPEC_BYTES", "64MiB")];
    let results: Vec<(String, &str, Option<i32>, String)> = thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .flat_map(|(path, words)| (0..4).map(move |_| (path, *words)))
            .chain(std::iter::once((&big, "--max-spec-bytes")))
            .map(|(path, words)| {
                let c = &c;
                s.spawn(move || {
                    let (code, err) = apply(c, path, &cli_env);
                    (path.display().to_string(), words, code, err)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The default CLI refuses the large file before sending it.
    let (code, err) = apply(&c, &big, &[]);
    let (slowest, failures) = poll.finish();

    for (path, words, code, err) in &results {
        assert_eq!(*code, Some(1), "{path}: {err}");
        let name = PathBuf::from(path);
        let name = name.file_name().unwrap().to_str().unwrap();
        assert!(err.starts_with("error: "), "{path}: {err}");
        assert!(err.contains(name), "{path}: does not name the file: {err}");
        assert!(err.contains(words), "{path}: does not say `{words}`: {err}");
        assert_eq!(err.lines().count(), 1, "{path}: {err}");
    }
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("big.yaml: the spec is 3 MiB") && err.contains("CONVOY_MAX_SPEC_BYTES"),
        "{err}"
    );
    assert!(failures.is_empty(), "/healthz failed: {failures:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "/healthz took {slowest:?} while the specs were refused"
    );
    // Longer than the 2.5 s after which a silent node is lost.
    thread::sleep(Duration::from_secs(3));
    let lost: Vec<_> = watch
        .events()
        .into_iter()
        .filter(|e| e.kind == "node.lost")
        .collect();
    assert!(lost.is_empty(), "node lost: {lost:?}");
    let nodes = c.try_nodes().unwrap();
    assert!(nodes.iter().all(|n| n.state == "ready"), "{nodes:#?}");
    assert!(
        c.try_status().unwrap().is_empty(),
        "a hostile spec was stored"
    );
    c.assert_healthy();
}

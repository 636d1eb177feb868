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

/// Issue 19, "the dashboard shows a service's logs live", in a real
/// headless Chromium: a service's "Logs" opens the log panel, which shows
/// the instance's last 100 lines (prefixed with the instance, as Docker has
/// them) and then newer ticks as they are written, without a reload;
/// "Close" closes the stream, and the coordinator drops its side. A
/// viewer's panel shows why it may not read them.
#[test]
fn dashboard_log_panel_shows_a_services_lines_and_follows_new_ones() {
    use crate::dashboard::{browser, need, screenshot, wait_for, ChromeDriver};
    use fantoccini::Locator;

    skip_without_docker!();
    need("chromium");
    need("chromedriver");
    let c = Cluster::with_agents(1);
    c.wait_nodes_ready(&c.node_names());
    // 5 lines every 200 ms: well over 100 lines before the panel opens.
    let svc = ticker(&c, "panel", 1, 200, 5, 0);
    let container = c.wait_service_running(&svc, 1, 1).remove(0);
    let instance = format!("{svc}-1");
    wait_until(
        "150 lines written",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let last = logs(&c, &[&svc, "--tail", "1"]);
            ensure!(
                last.iter().any(|l| seq(l).is_some_and(|n| n >= 150)),
                "{last:?}"
            );
            Ok(())
        },
    );

    let driver =
        ChromeDriver::start(c.root().join("chromedriver.log")).unwrap_or_else(|e| panic!("{e:#}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result: anyhow::Result<()> = runtime.block_on(async {
        let client = browser(&driver).await?;
        let outcome = async {
            client.goto(&format!("{}/login", c.http_url())).await?;
            let input = wait_for(&client, "the token field", "input[name=token]").await?;
            input.send_keys(&c.admin_token()).await?;
            client
                .find(Locator::Css(
                    "form[data-testid=login-form] button[type=submit]",
                ))
                .await?
                .click()
                .await?;
            open_log_panel(&client, &svc).await?;
            let title = client
                .find(Locator::Css("[data-testid='logs-title']"))
                .await?
                .text()
                .await?;
            ensure!(title == format!("Logs: {svc} (default)"), "title {title:?}");
            wait_for(
                &client,
                "a tick of the instance in the log panel",
                &format!("[data-testid='log-line'][data-instance='{instance}']"),
            )
            .await?;
            let first = wait_until_async("the last 100 lines", Duration::from_secs(20), || async {
                let lines = panel_lines(&client).await?;
                ensure!(lines.len() >= 100, "{} lines", lines.len());
                Ok(lines)
            })
            .await?;
            let ticks: Vec<u64> = first.iter().filter_map(|(_, _, text)| seq(text)).collect();
            let (oldest, newest) = (
                ticks.iter().copied().min().unwrap_or(0),
                ticks.iter().copied().max().unwrap_or(0),
            );
            // The last 100 when it opened, not the start-up line nor tick 1.
            ensure!(
                oldest > 50 && first.iter().all(|(_, _, t)| !t.contains("listening on")),
                "not the last 100 lines: {first:#?}"
            );
            ensure!(
                first.iter().all(|(i, _, _)| *i == instance),
                "lines of another instance: {first:#?}"
            );
            // Prefixed with the instance.
            let prefix = client
                .find(Locator::Css("[data-testid='log-line'] .instance"))
                .await?
                .text()
                .await?;
            ensure!(prefix == instance, "prefix {prefix:?}");
            // Live: a tick written after the panel opened arrives by itself.
            let later = wait_until_async(
                "a newer tick in the log panel",
                Duration::from_secs(20),
                || async {
                    let lines = panel_lines(&client).await?;
                    lines
                        .into_iter()
                        .find(|(_, stream, text)| {
                            stream == "stdout" && seq(text).is_some_and(|n| n > newest + 2)
                        })
                        .ok_or_else(|| anyhow::anyhow!("no tick after {newest} yet"))
                },
            )
            .await?;
            // The lines are the container's own output, as Docker keeps it.
            let docker_logs = convoy_tests::docker::docker(&["logs", &container.id])?;
            ensure!(
                docker_logs.lines().any(|l| l == later.2),
                "{:?} is not in `docker logs` of {}",
                later.2,
                container.id
            );
            let status = client
                .find(Locator::Css("[data-testid='logs-status']"))
                .await?
                .attr("data-state")
                .await?;
            ensure!(status.as_deref() == Some("live"), "status {status:?}");
            ensure!(
                log_streams(&c)? == 1,
                "the coordinator counts no log stream"
            );
            // It keeps to the newest line, unless the reader scrolled up.
            let gap = "const b = document.querySelector(\"[data-testid='log-lines']\"); \
                       return [b.scrollHeight - b.clientHeight - b.scrollTop, b.scrollTop, \
                       b.children.length];";
            let at = client.execute(gap, vec![]).await?;
            ensure!(at[0].as_f64().is_some_and(|g| g <= 4.0), "not at the end: {at}");
            ensure!(at[1].as_f64().is_some_and(|t| t > 0.0), "nothing to scroll: {at}");
            client
                .execute(
                    "document.querySelector(\"[data-testid='log-lines']\").scrollTop = 0; return null;",
                    vec![],
                )
                .await?;
            let before = at[2].as_u64().unwrap_or(0);
            let up = wait_until_async("more lines while scrolled up", Duration::from_secs(20), || async {
                let now = client.execute(gap, vec![]).await?;
                ensure!(now[2].as_u64().unwrap_or(0) > before + 10, "{now}");
                Ok(now)
            })
            .await?;
            ensure!(up[1].as_f64() == Some(0.0), "scrolled while the reader read: {up}");
            screenshot(&client, "logs").await?;

            // Close: the EventSource is closed, the panel hidden, and the
            // coordinator drops the stream (and with it the tunnel).
            client
                .execute(
                    "window.__logStream = window.convoy.logs.es; return null;",
                    vec![],
                )
                .await?;
            client
                .find(Locator::Css("[data-testid='logs-close']"))
                .await?
                .click()
                .await?;
            let state = client
                .execute(
                    "return [window.__logStream.readyState, \
                     document.querySelector(\"[data-testid='logs-panel']\").hidden, \
                     document.querySelectorAll(\"[data-testid='log-line']\").length];",
                    vec![],
                )
                .await?;
            ensure!(
                state == serde_json::json!([2, true, 0]),
                "after close: {state}"
            );
            wait_until_async(
                "the coordinator to drop the closed stream",
                Duration::from_secs(30),
                || async {
                    let open = log_streams(&c)?;
                    ensure!(open == 0, "{open} log streams open");
                    Ok(())
                },
            )
            .await?;

            // A viewer may see the service but not its logs: the panel
            // says why.
            let viewer: serde_json::Value = c.cli_json(&["token", "create", "--role", "viewer"]);
            let viewer = viewer["token"].as_str().unwrap_or_default().to_string();
            client
                .find(Locator::Css("form[action='/logout'] button"))
                .await?
                .click()
                .await?;
            let input = wait_for(&client, "the token field", "input[name=token]").await?;
            input.send_keys(&viewer).await?;
            client
                .find(Locator::Css(
                    "form[data-testid=login-form] button[type=submit]",
                ))
                .await?
                .click()
                .await?;
            open_log_panel(&client, &svc).await?;
            let refused = wait_for(
                &client,
                "the refusal in the log panel",
                "[data-testid='logs-status'][data-state='refused']",
            )
            .await?
            .text()
            .await?;
            ensure!(
                refused.contains("(viewer) may only read")
                    && refused.contains("`logs` needs a deployer or admin token"),
                "refusal {refused:?}"
            );
            ensure!(log_streams(&c)? == 0, "a refused stream is counted open");
            Ok(())
        }
        .await;
        if outcome.is_err() {
            let _ = screenshot(&client, "logs-failure").await;
        }
        let _ = client.close().await;
        outcome
    });
    if let Err(e) = result {
        panic!("{e:#}\nchromedriver log: {}", driver.log.display());
    }
    // Audited as `convoy logs` is.
    let audit = text(&c.cli(&["audit"]).stdout);
    assert!(
        audit.lines().any(|l| l.contains("logs")
            && l.contains(&format!("default/{svc}"))
            && l.contains("following")),
        "{audit}"
    );
    c.delete(&svc);
    c.wait_service_gone(&svc);
}

/// Clicks the service's "Logs" until the panel shows. Cards are redrawn
/// with each snapshot, so a click may land on one just replaced.
async fn open_log_panel(client: &fantoccini::Client, svc: &str) -> anyhow::Result<()> {
    use fantoccini::Locator;
    let button = format!("[data-testid='logs-{svc}']");
    crate::dashboard::wait_for(client, "the service's Logs button", &button).await?;
    let started = Instant::now();
    loop {
        if let Ok(b) = client.find(Locator::Css(&button)).await {
            let _ = b.click().await;
        }
        let panel = client
            .find(Locator::Css("[data-testid='logs-panel']"))
            .await?;
        if panel.attr("hidden").await?.is_none() {
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the log panel never opened"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The log panel's lines: (instance, stream, text).
async fn panel_lines(client: &fantoccini::Client) -> anyhow::Result<Vec<(String, String, String)>> {
    let v = client
        .execute(
            "return Array.from(document.querySelectorAll(\"[data-testid='log-line']\"))\
             .map((e) => [e.dataset.instance, e.dataset.stream, e.querySelector('.text').textContent]);",
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(v)?)
}

/// `convoy_log_streams` on the coordinator's `/metrics`.
fn log_streams(c: &Cluster) -> anyhow::Result<i64> {
    let (code, body) = convoy_tests::http::request(c.http_addr, "GET", "/metrics")?;
    ensure!(code == 200, "/metrics answered {code}: {body}");
    body.lines()
        .find_map(|l| l.strip_prefix("convoy_log_streams "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no convoy_log_streams in /metrics"))
}

/// Polls `check` every 250 ms until it succeeds or `limit` passes.
async fn wait_until_async<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => {
                anyhow::bail!("timed out waiting for {what}: {e:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

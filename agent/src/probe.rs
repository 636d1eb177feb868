//! Convoy's probes: the agent checks each running instance over HTTP, TCP or
//! a command run in the container, and folds the results and Docker's own
//! healthcheck into one health per instance. `ProbeState` and `combine` are
//! pure; `Prober` runs one task per probed container; `run_now` answers
//! `RunProbes`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use convoy_proto::{
    probe, workload, ExecProbe, Health, HttpProbe, Probe, ProbeResult, TcpProbe, WorkloadState,
    WorkloadStatus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info_span, Instrument};

use crate::plan::Plan;
use crate::runtime::{cut_output, ContainerState, Runtime, MAX_OUTPUT};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
/// The name Docker's healthcheck goes by in results and statuses.
pub const DOCKER: &str = "docker";
/// The one result of an instance without checks: is its container running?
pub const RUNNING: &str = "running";
/// How long reading a container's state may take in `run_now`.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A response head larger than this is not an HTTP server's.
const MAX_HEAD: usize = 16 * 1024;

/// A probe with the defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    pub name: String,
    pub check: Check,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub start_period: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    Http {
        port: u16,
        path: String,
        expect_status: u16,
    },
    Tcp {
        port: u16,
    },
    Exec {
        command: Vec<String>,
    },
    /// A probe the plan got wrong: it fails with this reason every time.
    Invalid(String),
}

impl ProbeConfig {
    pub fn from_proto(probe: &Probe) -> Self {
        let Probe {
            name,
            interval_ms,
            timeout_ms,
            failure_threshold,
            success_threshold,
            start_period_ms,
            check,
        } = probe;
        let or = |ms: u64, default: Duration| {
            if ms == 0 {
                default
            } else {
                Duration::from_millis(ms)
            }
        };
        let port = |port: u32| {
            u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("port {port} is out of range 1-65535"))
        };
        let check = match check {
            Some(probe::Check::Http(HttpProbe {
                port: p,
                path,
                expect_status,
            })) => match port(*p) {
                Ok(port) => Check::Http {
                    port,
                    path: if path.is_empty() {
                        "/".to_string()
                    } else {
                        path.clone()
                    },
                    expect_status: u16::try_from(*expect_status).unwrap_or(u16::MAX),
                },
                Err(e) => Check::Invalid(e),
            },
            Some(probe::Check::Tcp(TcpProbe { port: p })) => match port(*p) {
                Ok(port) => Check::Tcp { port },
                Err(e) => Check::Invalid(e),
            },
            Some(probe::Check::Exec(ExecProbe { command })) if !command.is_empty() => Check::Exec {
                command: command.clone(),
            },
            Some(probe::Check::Exec(_)) => Check::Invalid("the command is empty".to_string()),
            None => Check::Invalid("the plan gives this probe no check".to_string()),
        };
        let name = if name.is_empty() {
            match &check {
                Check::Http { .. } => "http",
                Check::Tcp { .. } => "tcp",
                Check::Exec { .. } => "exec",
                Check::Invalid(_) => "probe",
            }
            .to_string()
        } else {
            name.clone()
        };
        ProbeConfig {
            name,
            check,
            interval: or(*interval_ms, DEFAULT_INTERVAL),
            timeout: or(*timeout_ms, DEFAULT_TIMEOUT),
            failure_threshold: if *failure_threshold == 0 {
                DEFAULT_FAILURE_THRESHOLD
            } else {
                *failure_threshold
            },
            success_threshold: if *success_threshold == 0 {
                DEFAULT_SUCCESS_THRESHOLD
            } else {
                *success_threshold
            },
            start_period: Duration::from_millis(*start_period_ms),
        }
    }
}

// ---- the state machine ----

/// One probe's health, from its consecutive results: starting until it
/// passes `success_threshold` times in a row, unhealthy after
/// `failure_threshold` failures in a row, healthy again after
/// `success_threshold` passes. Failures while starting inside the start
/// period do not count (Docker's `start_period`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeState {
    pub health: Health,
    pub successes: u32,
    pub failures: u32,
    /// The last run's output or error.
    pub output: String,
}

impl Default for ProbeState {
    fn default() -> Self {
        ProbeState {
            health: Health::Starting,
            successes: 0,
            failures: 0,
            output: String::new(),
        }
    }
}

impl ProbeState {
    /// Records one run that ended `since_start` after the container
    /// started. Returns whether the health changed.
    pub fn record(
        &mut self,
        config: &ProbeConfig,
        passed: bool,
        output: String,
        since_start: Duration,
    ) -> bool {
        let before = self.health;
        self.output = output;
        if passed {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.successes >= config.success_threshold {
                self.health = Health::Healthy;
            }
        } else {
            self.successes = 0;
            if self.health == Health::Starting && since_start < config.start_period {
                self.failures = 0;
            } else {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= config.failure_threshold {
                    self.health = Health::Unhealthy;
                }
            }
        }
        self.health != before
    }
}

/// One check's health, as `combine` takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckView {
    pub name: String,
    pub health: Health,
    pub output: String,
}

/// An instance's health as statuses carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Combined {
    pub health: Health,
    /// While unhealthy: the first failing check, and its last output.
    pub failing_probe: String,
    pub output: String,
}

/// Unhealthy if any check is, starting if any is, healthy if all are;
/// unspecified without checks.
pub fn combine(checks: &[CheckView]) -> Combined {
    if let Some(failing) = checks.iter().find(|c| c.health == Health::Unhealthy) {
        return Combined {
            health: Health::Unhealthy,
            failing_probe: failing.name.clone(),
            output: failing.output.clone(),
        };
    }
    let health = if checks.is_empty() {
        Health::Unspecified
    } else if checks.iter().any(|c| c.health != Health::Healthy) {
        Health::Starting
    } else {
        Health::Healthy
    };
    Combined {
        health,
        ..Combined::default()
    }
}

// ---- running checks ----

/// One run of a check: whether it passed, and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult {
    pub passed: bool,
    pub output: String,
    pub took: Duration,
}

/// Runs `config`'s check once against container `container_id`, bounded by
/// its timeout. `address` caches where the container listens; it is cleared
/// after a failure so that the next run looks again.
pub async fn run_check<R: Runtime>(
    runtime: &R,
    container_id: &str,
    config: &ProbeConfig,
    address: &mut Option<SocketAddr>,
) -> RunResult {
    let started = Instant::now();
    let (passed, output) = match &config.check {
        Check::Invalid(reason) => (false, format!("invalid probe: {reason}")),
        // The runtime bounds it: the command is killed with the exec.
        Check::Exec { command } => {
            match runtime.exec(container_id, command, config.timeout).await {
                Ok(out) => exec_verdict(out.exit_code, &out.output),
                Err(e) => (false, e.to_string()),
            }
        }
        Check::Http { port, .. } | Check::Tcp { port } => {
            let port = *port;
            let run = async {
                let target = match address {
                    Some(target) => *target,
                    None => resolve(runtime, container_id, port).await?,
                };
                let result = match &config.check {
                    Check::Http {
                        path,
                        expect_status,
                        ..
                    } => http_get(target, path, *expect_status).await,
                    _ => tcp_connect(target).await,
                };
                Ok::<_, String>((target, result))
            };
            match tokio::time::timeout(config.timeout, run).await {
                Ok(Ok((target, (passed, output)))) => {
                    *address = passed.then_some(target);
                    (passed, output)
                }
                Ok(Err(e)) => {
                    *address = None;
                    (false, e)
                }
                Err(_) => {
                    *address = None;
                    (false, format!("no answer within {}", human(config.timeout)))
                }
            }
        }
    };
    RunResult {
        passed,
        output: cut_output(&output),
        took: started.elapsed(),
    }
}

async fn resolve<R: Runtime>(
    runtime: &R,
    container_id: &str,
    port: u16,
) -> Result<SocketAddr, String> {
    let info = runtime
        .inspect(container_id)
        .await
        .map_err(|e| e.to_string())?;
    info.address(port)
        .ok_or_else(|| format!("the container has no IP address and does not publish port {port}"))
}

fn exec_verdict(exit_code: Option<i64>, output: &str) -> (bool, String) {
    let output = output.trim();
    match exit_code {
        Some(0) => (true, output.to_string()),
        Some(code) if output.is_empty() => (false, format!("exit code {code}")),
        Some(code) => (false, format!("exit code {code}: {output}")),
        None if output.is_empty() => (false, "the command's exit code is unknown".to_string()),
        None => (false, format!("exit code unknown: {output}")),
    }
}

async fn tcp_connect(target: SocketAddr) -> (bool, String) {
    match TcpStream::connect(target).await {
        Ok(_) => (true, format!("connected to {target}")),
        Err(e) => (false, format!("connecting to {target}: {e}")),
    }
}

/// A minimal HTTP/1.1 GET: enough of the answer for its status line and
/// the start of its body.
async fn http_get(target: SocketAddr, path: &str, expect_status: u16) -> (bool, String) {
    let url = format!("http://{target}{path}");
    let fail = |e: std::io::Error| (false, format!("GET {url}: {e}"));
    let mut stream = match TcpStream::connect(target).await {
        Ok(stream) => stream,
        Err(e) => return fail(e),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: convoy-agent/{}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return fail(e);
    }
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) => return fail(e),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_response_head(&buf) {
            Ok(Some(head)) if head.body_complete(buf.len()) => break,
            Ok(Some(_)) => {}
            Ok(None) if buf.len() > MAX_HEAD => {
                return (false, format!("GET {url}: the response head is too large"))
            }
            Ok(None) => {}
            Err(e) => return (false, format!("GET {url}: {e}")),
        }
    }
    match parse_response_head(&buf) {
        Ok(Some(head)) => {
            let passed = if expect_status == 0 {
                (200..400).contains(&head.status)
            } else {
                head.status == expect_status
            };
            let body = head.body(&buf);
            let mut output = format!("GET {url}: HTTP {} {}", head.status, head.reason);
            if !body.is_empty() {
                output.push_str(": ");
                output.push_str(&body);
            }
            if !passed && expect_status != 0 {
                output.push_str(&format!(" (expected {expect_status})"));
            }
            (passed, output)
        }
        Ok(None) if buf.is_empty() => (
            false,
            format!("GET {url}: the connection closed without an answer"),
        ),
        Ok(None) => (
            false,
            format!("GET {url}: the connection closed in the middle of the answer"),
        ),
        Err(e) => (false, format!("GET {url}: {e}")),
    }
}

/// The head of an HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    /// Bytes up to and including the blank line.
    pub head_len: usize,
    pub content_length: Option<usize>,
    pub chunked: bool,
}

impl ResponseHead {
    /// Whether `have` bytes hold as much of the body as a probe shows.
    fn body_complete(&self, have: usize) -> bool {
        let body = have.saturating_sub(self.head_len);
        if self.chunked || matches!(self.status, 100..=199 | 204 | 304) {
            return true;
        }
        match self.content_length {
            Some(len) => body >= len.min(MAX_OUTPUT),
            // Read to the end of the connection, up to what is shown.
            None => body >= MAX_OUTPUT,
        }
    }

    /// The start of the body as text, on one line; empty for a chunked one.
    fn body(&self, buf: &[u8]) -> String {
        if self.chunked {
            return String::new();
        }
        let end = match self.content_length {
            Some(len) => buf.len().min(self.head_len + len),
            None => buf.len(),
        };
        let body = buf.get(self.head_len..end).unwrap_or_default();
        let body = &body[..body.len().min(MAX_OUTPUT)];
        String::from_utf8_lossy(body)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Parses a response head; `Ok(None)` while it is incomplete.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if !buf.is_empty() && !b"HTTP/".starts_with(&buf[..buf.len().min(5)]) {
            return Err("the answer is not HTTP".to_string());
        }
        return Ok(None);
    };
    let head_len = end + 4;
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") {
        return Err(format!("not an HTTP status line: `{status_line}`"));
    }
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .filter(|code| (100..=999).contains(code))
        .ok_or_else(|| format!("not an HTTP status line: `{status_line}`"))?;
    let reason = parts.next().unwrap_or_default().trim().to_string();
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Ok(Some(ResponseHead {
        status,
        reason,
        head_len,
        content_length,
        chunked,
    }))
}

/// `2s`, `1500ms`.
pub fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

// ---- the probe tasks ----

/// A running container to probe.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub workload_id: String,
    pub container_id: String,
    /// When the container (last) started; a restart starts the probes anew.
    pub started_at: Option<SystemTime>,
    pub probes: Vec<Probe>,
}

/// A probe whose state changed.
#[derive(Clone, Debug)]
pub struct Update {
    /// The task it came from: updates of a stopped task are dropped.
    serial: u64,
    index: usize,
    health: Health,
    output: String,
}

/// One probed container: its task and what its probes last said.
struct Instance {
    serial: u64,
    target: Target,
    names: Vec<String>,
    states: Vec<(Health, String)>,
    _task: AbortOnDrop,
}

/// Aborts the task when dropped: a removed instance's probes stop with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the probes of every running instance that has any, one task per
/// container; dropping it stops them all.
pub struct Prober<R: Runtime> {
    runtime: Arc<R>,
    instances: HashMap<String, Instance>,
    tx: mpsc::UnboundedSender<Update>,
    rx: mpsc::UnboundedReceiver<Update>,
    next_serial: u64,
}

impl<R: Runtime> Prober<R> {
    pub fn new(runtime: Arc<R>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Prober {
            runtime,
            instances: HashMap::new(),
            tx,
            rx,
            next_serial: 0,
        }
    }

    /// Makes the running tasks match `targets`: starts the new ones, stops
    /// those of containers that are gone, stopped or restarted.
    pub fn sync(&mut self, targets: Vec<Target>) {
        let mut wanted: HashMap<String, Target> = targets
            .into_iter()
            .filter(|t| !t.probes.is_empty())
            .map(|t| (t.workload_id.clone(), t))
            .collect();
        self.instances
            .retain(|id, instance| wanted.get(id) == Some(&instance.target));
        for (id, target) in wanted.drain() {
            if self.instances.contains_key(&id) {
                continue;
            }
            self.next_serial += 1;
            let serial = self.next_serial;
            let configs: Vec<ProbeConfig> =
                target.probes.iter().map(ProbeConfig::from_proto).collect();
            let names = configs.iter().map(|c| c.name.clone()).collect();
            let states = vec![(Health::Starting, String::new()); configs.len()];
            let task = tokio::spawn(
                watch(
                    self.runtime.clone(),
                    target.container_id.clone(),
                    target.started_at,
                    configs,
                    serial,
                    self.tx.clone(),
                )
                .instrument(info_span!("probes", workload = %id)),
            );
            debug!(workload = %id, container = %target.container_id, "probing");
            self.instances.insert(
                id,
                Instance {
                    serial,
                    target,
                    names,
                    states,
                    _task: AbortOnDrop(task),
                },
            );
        }
    }

    /// The next probe update; never returns while there is none.
    pub async fn next(&mut self) -> Update {
        match self.rx.recv().await {
            Some(update) => update,
            // Never: `self` holds a sender.
            None => std::future::pending().await,
        }
    }

    /// Takes in an update; returns whether it changed anything.
    pub fn apply(&mut self, update: Update) -> bool {
        let Some(instance) = self
            .instances
            .values_mut()
            .find(|i| i.serial == update.serial)
        else {
            return false;
        };
        let Some(state) = instance.states.get_mut(update.index) else {
            return false;
        };
        let next = (update.health, update.output);
        if *state == next {
            return false;
        }
        *state = next;
        true
    }

    /// What the probes of `workload_id` last said, while they run against
    /// `container_id`; empty when they do not.
    pub fn views(&self, workload_id: &str, container_id: &str) -> Vec<CheckView> {
        match self.instances.get(workload_id) {
            Some(i) if i.target.container_id == container_id => i
                .names
                .iter()
                .zip(&i.states)
                .map(|(name, (health, output))| CheckView {
                    name: name.clone(),
                    health: *health,
                    output: output.clone(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Runs every probe of one container on its own schedule until aborted.
async fn watch<R: Runtime>(
    runtime: Arc<R>,
    container_id: String,
    started_at: Option<SystemTime>,
    configs: Vec<ProbeConfig>,
    serial: u64,
    tx: mpsc::UnboundedSender<Update>,
) {
    let loops = configs.into_iter().enumerate().map(|(index, config)| {
        let runtime = runtime.clone();
        let container_id = container_id.clone();
        let tx = tx.clone();
        async move {
            let mut state = ProbeState::default();
            let mut address = None;
            loop {
                let began = Instant::now();
                let run = run_check(runtime.as_ref(), &container_id, &config, &mut address).await;
                let since_start = started_at
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or_default();
                let before = (state.health, state.output.clone());
                state.record(&config, run.passed, run.output, since_start);
                if (state.health, &state.output) != (before.0, &before.1) {
                    let update = Update {
                        serial,
                        index,
                        health: state.health,
                        output: state.output.clone(),
                    };
                    if tx.send(update).is_err() {
                        return;
                    }
                }
                tokio::time::sleep_until((began + config.interval).into()).await;
            }
        }
    });
    futures::future::join_all(loops).await;
}

// ---- RunProbes ----

/// Runs every check of the listed workloads (all of the plan's when empty)
/// now, in parallel, each bounded by its timeout. `statuses` are the
/// reconciler's, for the container of each workload.
pub async fn run_now<R: Runtime>(
    runtime: &R,
    plan: Option<&Plan>,
    statuses: &BTreeMap<String, WorkloadStatus>,
    workload_ids: &[String],
) -> Vec<ProbeResult> {
    let workloads: Vec<_> = plan
        .map(|p| p.workloads().iter().collect())
        .unwrap_or_default();
    let ids: Vec<String> = if workload_ids.is_empty() {
        workloads.iter().map(|w| w.id.clone()).collect()
    } else {
        workload_ids.to_vec()
    };
    let runs = ids.into_iter().map(|id| {
        let workload = workloads.iter().find(|w| w.id == id).copied();
        let status = statuses.get(&id);
        async move {
            let Some(workload) = workload else {
                return vec![not_running(&id, "not in this node's plan".to_string())];
            };
            if matches!(workload.runtime, Some(workload::Runtime::Unit(_))) {
                return probe_unit(&id, &workload.probes, status).await;
            }
            probe_workload(runtime, &id, &workload.probes, status).await
        }
    });
    futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn not_running(workload_id: &str, output: String) -> ProbeResult {
    ProbeResult {
        workload_id: workload_id.to_string(),
        probe: RUNNING.to_string(),
        healthy: false,
        output,
        duration_ms: 0,
    }
}

/// The state in words: `exited`, `pending`, ...
fn state_name(state: i32) -> String {
    WorkloadState::try_from(state)
        .unwrap_or(WorkloadState::Unspecified)
        .as_str_name()
        .trim_start_matches("WORKLOAD_STATE_")
        .to_lowercase()
}

async fn probe_workload<R: Runtime>(
    runtime: &R,
    id: &str,
    probes: &[Probe],
    status: Option<&WorkloadStatus>,
) -> Vec<ProbeResult> {
    let Some(status) = status else {
        return vec![not_running(id, "no container yet".to_string())];
    };
    let running = status.state == WorkloadState::Running as i32 && !status.container_id.is_empty();
    if !running {
        let mut output = format!("not running: {}", state_name(status.state));
        if !status.reason.is_empty() {
            output.push_str(&format!(" ({})", status.reason));
        }
        return vec![not_running(id, output)];
    }
    let container_id = status.container_id.as_str();
    let info = match tokio::time::timeout(INSPECT_TIMEOUT, runtime.inspect(container_id)).await {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => return vec![not_running(id, e.to_string())],
        Err(_) => {
            return vec![not_running(
                id,
                format!("docker did not answer within {}", human(INSPECT_TIMEOUT)),
            )]
        }
    };
    if info.state != Some(ContainerState::Running) {
        let state = info
            .state
            .map_or("gone".to_string(), |s| format!("{s:?}").to_lowercase());
        return vec![not_running(id, format!("not running: {state}"))];
    }
    let mut results = Vec::new();
    if let Some(docker) = &info.health {
        let output = match docker.status {
            Health::Starting if docker.output.is_empty() => "starting".to_string(),
            Health::Starting => format!("starting: {}", docker.output),
            _ => docker.output.clone(),
        };
        results.push(ProbeResult {
            workload_id: id.to_string(),
            probe: DOCKER.to_string(),
            healthy: docker.status == Health::Healthy,
            output,
            duration_ms: 0,
        });
    }
    let configs: Vec<ProbeConfig> = probes.iter().map(ProbeConfig::from_proto).collect();
    let info = &info;
    let runs = configs.iter().map(|config| async move {
        let mut address = match &config.check {
            Check::Http { port, .. } | Check::Tcp { port } => info.address(*port),
            _ => None,
        };
        let run = run_check(runtime, container_id, config, &mut address).await;
        ProbeResult {
            workload_id: id.to_string(),
            probe: config.name.clone(),
            healthy: run.passed,
            output: run.output,
            duration_ms: u64::try_from(run.took.as_millis()).unwrap_or(u64::MAX),
        }
    });
    results.extend(futures::future::join_all(runs).await);
    if results.is_empty() {
        results.push(ProbeResult {
            workload_id: id.to_string(),
            probe: RUNNING.to_string(),
            healthy: true,
            output: "running; it has no health checks".to_string(),
            duration_ms: 0,
        });
    }
    results
}

/// A unit's checks: systemd's state (probe `systemd`: healthy while
/// active), then its HTTP and TCP probes against the host's loopback.
async fn probe_unit(
    id: &str,
    probes: &[Probe],
    status: Option<&WorkloadStatus>,
) -> Vec<ProbeResult> {
    let unit = status.and_then(|s| s.unit.as_ref());
    let active = unit.is_some_and(|u| u.active_state == "active");
    let output = match (unit, status) {
        (Some(u), Some(s)) if !s.reason.is_empty() => {
            format!("{} ({}): {}", u.active_state, u.sub_state, s.reason)
        }
        (Some(u), _) if !u.active_state.is_empty() => {
            format!("{} ({})", u.active_state, u.sub_state)
        }
        (_, Some(s)) if !s.reason.is_empty() => s.reason.clone(),
        _ => "systemd has not reported the unit yet".to_string(),
    };
    let mut results = vec![ProbeResult {
        workload_id: id.to_string(),
        probe: crate::units::status::SYSTEMD.to_string(),
        healthy: active,
        output: cut_output(&output),
        duration_ms: 0,
    }];
    let runs = probes
        .iter()
        .map(ProbeConfig::from_proto)
        .map(|config| async move {
            let started = Instant::now();
            let (passed, output) = match &config.check {
                Check::Http { port, .. } | Check::Tcp { port } => {
                    let target = SocketAddr::from(([127, 0, 0, 1], *port));
                    let run = async {
                        match &config.check {
                            Check::Http {
                                path,
                                expect_status,
                                ..
                            } => http_get(target, path, *expect_status).await,
                            _ => tcp_connect(target).await,
                        }
                    };
                    tokio::time::timeout(config.timeout, run)
                        .await
                        .unwrap_or_else(|_| {
                            (false, format!("no answer within {}", human(config.timeout)))
                        })
                }
                Check::Exec { .. } => (
                    false,
                    "invalid probe: exec probes run in containers; a unit has none".to_string(),
                ),
                Check::Invalid(reason) => (false, format!("invalid probe: {reason}")),
            };
            ProbeResult {
                workload_id: id.to_string(),
                probe: config.name.clone(),
                healthy: passed,
                output: cut_output(&output),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            }
        });
    results.extend(futures::future::join_all(runs).await);
    results
}

#[cfg(test)]
mod tests;

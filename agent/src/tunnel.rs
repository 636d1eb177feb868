//! The agent's side of tunnels (docs/LOGS.md): when the coordinator asks
//! for a workload's output (`Command.open_logs`), the agent checks the
//! sources are its own, acknowledges, and opens `AgentService.Tunnel` on
//! a connection of its own ([`Dialer`]), naming the tunnel in the first
//! message. Each source (a container through Docker's logs API,
//! a unit through `journalctl`) is read by its own task into its own
//! bounded channel that never waits: when the coordinator reads too
//! slowly, lines are dropped and a marker says how many. The tunnel ends
//! when every source has ended (not following), or when the coordinator
//! closes it (the reader left): the readers are then stopped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use convoy_api::logs::{cap_line, journal_entry, InstanceLine, LogEntry, LogStream};
use convoy_proto::agent_service_client::AgentServiceClient;
use convoy_proto::{
    tunnel_up, LogLine, OpenLogs, TunnelDown, TunnelEnd, TunnelLines, TunnelOpen, TunnelUp,
    WorkloadStatus,
};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;
use tracing::{debug, warn};

use crate::logs::{LogQuery, LossySender};
use crate::pki::Pki;
use crate::runtime::Runtime;

/// Lines buffered per source before they are dropped.
const SOURCE_BUFFER: usize = 512;
/// At most this many bytes of lines per tunnel message (the coordinator
/// decodes messages of up to 4 MiB).
const BATCH_BYTES: usize = 1 << 20;
/// How long the coordinator has to answer the Tunnel call.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest journal entry (one JSON line) read whole; a longer one is
/// skipped with a marker.
const MAX_JOURNAL_LINE: u64 = 256 * 1024;

/// Where one source's lines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    Container(String),
    Unit(String),
}

/// One workload's output, labelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub instance: String,
    pub kind: SourceKind,
}

/// What the coordinator asked, checked against this node's workloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogsTunnel {
    pub tunnel_id: String,
    pub sources: Vec<Source>,
    pub query: LogQuery,
}

/// Checks an OpenLogs against the node's reported workloads: each source
/// must be a workload of this node with a container or a unit. The error
/// is the Ack's reason.
pub fn resolve(
    open: OpenLogs,
    statuses: &BTreeMap<String, WorkloadStatus>,
    node: &str,
) -> Result<LogsTunnel, String> {
    let OpenLogs {
        tunnel_id,
        sources,
        follow,
        since_unix_ms,
        has_tail,
        tail,
    } = open;
    if tunnel_id.is_empty() || tunnel_id.len() > 128 {
        return Err("the tunnel id is empty or too long".to_string());
    }
    if since_unix_ms < 0 {
        return Err(format!("since {since_unix_ms} is before 1970"));
    }
    let mut out = Vec::with_capacity(sources.len());
    for source in sources {
        let Some(status) = statuses.get(&source.workload_id) else {
            return Err(format!(
                "`{}` ({}) does not run on node `{node}`",
                source.instance, source.workload_id
            ));
        };
        let kind = match &status.unit {
            Some(unit) if !unit.unit_name.is_empty() => SourceKind::Unit(unit.unit_name.clone()),
            _ if !status.container_id.is_empty() => {
                SourceKind::Container(status.container_id.clone())
            }
            _ => {
                return Err(format!(
                    "`{}` has no container on node `{node}` yet{}",
                    source.instance,
                    if status.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", status.reason)
                    }
                ))
            }
        };
        let instance = if source.instance.is_empty() {
            source.workload_id.clone()
        } else {
            source.instance
        };
        out.push(Source { instance, kind });
    }
    if out.is_empty() {
        return Err("no workload to read".to_string());
    }
    Ok(LogsTunnel {
        tunnel_id,
        sources: out,
        query: LogQuery {
            since_unix_ms: (since_unix_ms > 0).then_some(since_unix_ms),
            tail: has_tail.then_some(tail),
            follow,
        },
    })
}

/// How a tunnel reaches the coordinator: a connection of its own (a new
/// TLS connection with the agent's certificate to the coordinator of the
/// session), so that no tunnel, however stalled, shares HTTP/2 flow
/// control with the Session stream and its heartbeats.
#[derive(Debug, Clone)]
pub struct Dialer {
    pub addr: String,
    pub pki_dir: PathBuf,
}

impl Dialer {
    async fn dial(&self) -> Result<Channel, String> {
        let pki = Pki::load(&self.pki_dir).await.map_err(|e| e.to_string())?;
        crate::session::connect(&self.addr, &pki)
            .await
            .map_err(|e| e.to_string())
    }

    /// Opens tunnel `tunnel_id`: what to send up, and what comes down.
    pub async fn open(
        &self,
        tunnel_id: String,
    ) -> Result<(mpsc::Sender<TunnelUp>, Streaming<TunnelDown>), String> {
        let channel = self.dial().await?;
        let (up, up_rx) = mpsc::channel::<TunnelUp>(4);
        let open = TunnelUp {
            msg: Some(tunnel_up::Msg::Open(TunnelOpen { tunnel_id })),
        };
        up.send(open)
            .await
            .map_err(|_| "the tunnel closed at once".to_string())?;
        let mut client = AgentServiceClient::new(channel);
        let call = tokio::time::timeout(OPEN_TIMEOUT, client.tunnel(ReceiverStream::new(up_rx)));
        match call.await {
            Ok(Ok(response)) => Ok((up, response.into_inner())),
            Ok(Err(status)) => Err(format!(
                "the coordinator refused the tunnel: {}",
                status.message()
            )),
            Err(_) => Err("the coordinator did not answer the tunnel in time".to_string()),
        }
    }
}

/// Opens the tunnel and streams the sources up it until they end or the
/// coordinator closes it.
pub async fn serve_logs<R: Runtime>(
    dialer: Dialer,
    node: String,
    runtime: Arc<R>,
    request: LogsTunnel,
) {
    let LogsTunnel {
        tunnel_id,
        sources,
        query,
    } = request;
    let (up, mut down) = match dialer.open(tunnel_id).await {
        Ok(opened) => opened,
        Err(e) => {
            warn!("logs tunnel: {e}");
            return;
        }
    };
    // One reader and one bounded channel per source; aborted (and any
    // journalctl killed) when this function returns.
    let mut readers = JoinSet::new();
    let mut streams = Vec::with_capacity(sources.len());
    for source in sources {
        let (tx, rx) = mpsc::channel::<LogEntry>(SOURCE_BUFFER);
        let label = source.instance.clone();
        streams.push(ReceiverStream::new(rx).map(move |entry| (label.clone(), entry)));
        let runtime = runtime.clone();
        let query = query.clone();
        readers.spawn(async move {
            let mut out = LossySender::new(tx);
            let read = match &source.kind {
                SourceKind::Container(id) => runtime
                    .logs(id, &query, &mut out)
                    .await
                    .map_err(|e| e.to_string()),
                SourceKind::Unit(unit) => unit_logs(unit, &query, &mut out).await,
            };
            if let Err(error) = read {
                let _ = out.send(LogEntry {
                    unix_nanos: now_nanos(),
                    stream: LogStream::Convoy,
                    text: format!("[convoy: {error}]"),
                });
            }
            let unmarked = out.dropped();
            if unmarked > 0 {
                // The last word: waited for.
                let _ = out
                    .send_waiting(LogEntry {
                        unix_nanos: now_nanos(),
                        stream: LogStream::Convoy,
                        text: convoy_api::logs::dropped_marker(unmarked),
                    })
                    .await;
            }
        });
    }
    let mut merged = futures::stream::select_all(streams);
    loop {
        let first = tokio::select! {
            line = merged.next() => line,
            closed = down.message() => {
                // Nothing comes down a logs tunnel: an end or an error is
                // the coordinator closing it (the reader left).
                if let Err(status) = closed {
                    debug!("logs tunnel closed: {}", status.message());
                }
                return;
            }
        };
        let Some(first) = first else { break };
        let mut batch = vec![line(&node, first)];
        let mut bytes = batch[0].text.len();
        while bytes < BATCH_BYTES {
            match merged.next().now_or_never_ready() {
                Some(next) => {
                    bytes += next.1.text.len();
                    batch.push(line(&node, next));
                }
                None => break,
            }
        }
        let message = TunnelUp {
            msg: Some(tunnel_up::Msg::Lines(TunnelLines { lines: batch })),
        };
        if up.send(message).await.is_err() {
            return;
        }
    }
    let end = TunnelUp {
        msg: Some(tunnel_up::Msg::End(TunnelEnd {
            error: String::new(),
        })),
    };
    let _ = up.send(end).await;
    drop(up);
    // Let the coordinator read the end before the connection's stream is
    // reset: wait for it to close its side.
    let _ = tokio::time::timeout(Duration::from_secs(5), down.message()).await;
    readers.abort_all();
}

/// Polls a stream once without waiting: `Some` when an item is ready.
trait NowOrNever<T> {
    fn now_or_never_ready(self) -> Option<T>;
}

impl<F, T> NowOrNever<T> for F
where
    F: std::future::Future<Output = Option<T>>,
{
    fn now_or_never_ready(self) -> Option<T> {
        futures::FutureExt::now_or_never(self).flatten()
    }
}

fn line(node: &str, (instance, entry): (String, LogEntry)) -> LogLine {
    InstanceLine {
        instance,
        node: node.to_string(),
        entry,
    }
    .into()
}

fn now_nanos() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_nanos()).unwrap_or(i64::MAX)
}

/// The `journalctl` arguments for a unit's output per `query`.
pub fn journalctl_args(unit: &str, query: &LogQuery) -> Vec<String> {
    let mut args = vec![
        "--unit".to_string(),
        unit.to_string(),
        "--output=json".to_string(),
        "--no-pager".to_string(),
        "--quiet".to_string(),
    ];
    if let Some(ms) = query.since_unix_ms {
        args.push(format!("--since=@{}", ms.div_euclid(1000)));
    }
    match query.tail {
        Some(n) => args.push(format!("--lines={n}")),
        // journalctl --follow shows the last 10 lines unless told.
        None if query.follow => args.push("--lines=all".to_string()),
        None => {}
    }
    if query.follow {
        args.push("--follow".to_string());
    }
    args
}

/// Reads a unit's journal with `journalctl -o json` (a child killed when
/// this is dropped) into `out`.
async fn unit_logs(unit: &str, query: &LogQuery, out: &mut LossySender) -> Result<(), String> {
    let mut child = tokio::process::Command::new("journalctl")
        .args(journalctl_args(unit, query))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running journalctl for {unit}: {e}"))?;
    let Some(stdout) = child.stdout.take() else {
        return Err("journalctl has no stdout".to_string());
    };
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_JOURNAL_LINE)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| format!("reading journalctl's output for {unit}: {e}"))?;
        if read == 0 {
            break;
        }
        if !buf.ends_with(b"\n") && read as u64 == MAX_JOURNAL_LINE {
            // Skip the rest of an oversized entry.
            let mut rest = Vec::new();
            let _ = reader.read_until(b'\n', &mut rest).await;
            let marker = LogEntry {
                unix_nanos: now_nanos(),
                stream: LogStream::Convoy,
                text: format!(
                    "[convoy: a journal entry over {} KiB was skipped]",
                    MAX_JOURNAL_LINE / 1024
                ),
            };
            if out.send(marker).is_err() {
                return Ok(());
            }
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        let entry = match journal_entry(text.trim_end()) {
            Ok(mut entry) => {
                entry.text = cap_line(&entry.text).0;
                entry
            }
            Err(e) => LogEntry {
                unix_nanos: now_nanos(),
                stream: LogStream::Convoy,
                text: format!("[convoy: an unreadable journal entry: {e}]"),
            },
        };
        if out.send(entry).is_err() {
            return Ok(());
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for journalctl: {e}"))?;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = (&mut stderr).take(4096).read_to_string(&mut err).await;
        }
        return Err(format!(
            "journalctl for {unit} failed ({status}): {}",
            err.trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use convoy_proto::{LogSource, UnitStatus};

    fn statuses() -> BTreeMap<String, WorkloadStatus> {
        let mut m = BTreeMap::new();
        m.insert(
            "prod/web/1".to_string(),
            WorkloadStatus {
                id: "prod/web/1".into(),
                container_id: "abc".into(),
                ..Default::default()
            },
        );
        m.insert(
            "prod/db/1".to_string(),
            WorkloadStatus {
                id: "prod/db/1".into(),
                unit: Some(UnitStatus {
                    unit_name: "convoy-db.service".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        m.insert(
            "prod/new/1".to_string(),
            WorkloadStatus {
                id: "prod/new/1".into(),
                reason: "pulling `x`".into(),
                ..Default::default()
            },
        );
        m
    }

    fn open(ids: &[(&str, &str)]) -> OpenLogs {
        OpenLogs {
            tunnel_id: "t1".into(),
            sources: ids
                .iter()
                .map(|(id, label)| LogSource {
                    workload_id: id.to_string(),
                    instance: label.to_string(),
                })
                .collect(),
            follow: true,
            since_unix_ms: 1_000,
            has_tail: true,
            tail: 5,
        }
    }

    #[test]
    fn sources_are_the_nodes_own_containers_and_units() {
        let t = resolve(
            open(&[("prod/web/1", "web-1"), ("prod/db/1", "db-1")]),
            &statuses(),
            "n1",
        )
        .unwrap();
        assert_eq!(
            t.sources,
            [
                Source {
                    instance: "web-1".into(),
                    kind: SourceKind::Container("abc".into())
                },
                Source {
                    instance: "db-1".into(),
                    kind: SourceKind::Unit("convoy-db.service".into())
                }
            ]
        );
        assert_eq!(
            t.query,
            LogQuery {
                since_unix_ms: Some(1_000),
                tail: Some(5),
                follow: true
            }
        );
    }

    #[test]
    fn a_workload_of_another_node_or_without_a_container_is_refused_by_name() {
        let e = resolve(open(&[("prod/api/1", "api-1")]), &statuses(), "n1").unwrap_err();
        assert_eq!(e, "`api-1` (prod/api/1) does not run on node `n1`");
        let e = resolve(open(&[("prod/new/1", "new-1")]), &statuses(), "n1").unwrap_err();
        assert_eq!(e, "`new-1` has no container on node `n1` yet: pulling `x`");
        let e = resolve(open(&[]), &statuses(), "n1").unwrap_err();
        assert_eq!(e, "no workload to read");
    }

    #[test]
    fn journalctl_follows_from_the_start_unless_a_tail_is_given() {
        let q = LogQuery {
            since_unix_ms: Some(1_500),
            tail: None,
            follow: true,
        };
        let args = journalctl_args("a.service", &q);
        assert_eq!(
            args,
            [
                "--unit",
                "a.service",
                "--output=json",
                "--no-pager",
                "--quiet",
                "--since=@1",
                "--lines=all",
                "--follow"
            ]
        );
        let q = LogQuery {
            since_unix_ms: None,
            tail: Some(3),
            follow: false,
        };
        assert_eq!(
            journalctl_args("a.service", &q)[4..],
            ["--quiet".to_string(), "--lines=3".to_string()]
        );
    }
}

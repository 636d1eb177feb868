//! `convoy logs` (docs/LOGS.md): which workloads a target names, and the
//! fan-out that asks each node for a tunnel and merges what comes up.
//!
//! Every hop reads promptly and hands lines on without waiting: the lines
//! of a reader slower than the workloads write are dropped and counted,
//! and a `LOG_STREAM_CONVOY` line says how many before the next line that
//! fits. A slow reader so never holds up a tunnel (nor, through HTTP/2
//! flow control, the agent), and tunnels never share a stream with the
//! agents' heartbeats.

use convoy_api::logs::{dropped_marker, InstanceLine, LogEntry, LogStream};

use super::*;

/// How long a node has to acknowledge an OpenLogs.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines buffered towards the caller before they are dropped.
pub const LOG_BUFFER: usize = 1024;

/// One workload whose output is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    pub node: String,
    pub workload_id: String,
    /// What its lines are labelled with: `web-2`.
    pub instance: String,
}

/// What to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogsQuery {
    pub follow: bool,
    /// Unix milliseconds.
    pub since_unix_ms: Option<i64>,
    pub tail: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogsError {
    #[error(
        "no service, instance or unit `{target}` in environment `{env}` \
         (`convoy status --env {env}` lists them)"
    )]
    NotFound { target: String, env: String },
    #[error(
        "`{service}` runs as a Docker Swarm service: read its logs with \
         `docker service logs {swarm_name}` on a manager of its cluster"
    )]
    Swarm { service: String, swarm_name: String },
    #[error("`{target}` has no instance on a node yet: {reason}")]
    NotPlaced { target: String, reason: String },
}

/// How `convoy logs` labels an instance: `web-2`, as Compose names them.
pub fn instance_label(service: &str, index: u32) -> String {
    format!("{service}-{index}")
}

impl Coordinator {
    /// The placed workloads `target` names in `env`: a service (all its
    /// instances), an instance (`web-2`, `web/2`, `ENV/web/2`), or a unit's
    /// systemd name (`nginx.service`, or `nginx`). A service name wins
    /// over an instance label that reads the same.
    pub async fn log_targets(&self, env: &str, target: &str) -> Result<Vec<LogTarget>, LogsError> {
        let desired = self.desired.lock().await;
        let live_services = || {
            desired
                .services
                .iter()
                .filter(move |((e, _), rec)| e == env && !rec.deleted)
        };
        let placed = |service: &str, rec: &ServiceRecord, only: Option<u32>| {
            rec.assignments
                .iter()
                .filter(|(index, _)| only.is_none_or(|o| o == **index))
                .filter_map(|(index, node)| {
                    node.as_ref().map(|node| LogTarget {
                        node: node.clone(),
                        workload_id: workload_id(env, service, *index),
                        instance: instance_label(service, *index),
                    })
                })
                .collect::<Vec<_>>()
        };
        let check = |service: &str, rec: &ServiceRecord, found: Vec<LogTarget>| {
            if rec.spec.swarm.is_some() {
                return Err(LogsError::Swarm {
                    service: service.to_string(),
                    swarm_name: plans::swarm_service_name(env, service),
                });
            }
            if found.is_empty() {
                return Err(LogsError::NotPlaced {
                    target: target.to_string(),
                    reason: "every instance waits for a node (see `convoy status`)".to_string(),
                });
            }
            Ok(found)
        };
        // A service.
        if let Some(((_, name), rec)) = live_services().find(|((_, n), _)| n == target) {
            return check(name, rec, placed(name, rec, None));
        }
        // An instance: ENV/SERVICE/INDEX, SERVICE/INDEX or SERVICE-INDEX.
        let parts: Vec<&str> = target.split('/').collect();
        let instance = match parts.as_slice() {
            [e, s, i] if *e == env => Some((*s, *i)),
            [s, i] => Some((*s, *i)),
            _ => target.rsplit_once('-'),
        };
        if let Some((service, index)) = instance {
            if let Ok(index) = index.parse::<u32>() {
                if let Some(((_, name), rec)) = live_services().find(|((_, n), _)| n == service) {
                    if rec.assignments.contains_key(&index) {
                        return check(name, rec, placed(name, rec, Some(index)));
                    }
                }
            }
        }
        // A unit by its systemd name.
        let unit = live_services().find(|(_, rec)| {
            rec.spec.unit.as_ref().is_some_and(|u| {
                u.unit_name == target || u.unit_name.strip_suffix(".service") == Some(target)
            })
        });
        if let Some(((_, name), rec)) = unit {
            return check(name, rec, placed(name, rec, None));
        }
        Err(LogsError::NotFound {
            target: target.to_string(),
            env: env.to_string(),
        })
    }

    /// Streams the output of `targets` from their nodes: one tunnel per
    /// node, merged into the receiver (bounded; see the module's docs).
    /// Without `follow` it ends once every node has sent what it has; it
    /// ends early when the receiver is dropped, closing every tunnel.
    pub fn stream_logs(
        self: &Arc<Self>,
        targets: Vec<LogTarget>,
        query: LogsQuery,
    ) -> mpsc::Receiver<InstanceLine> {
        let (tx, rx) = mpsc::channel(LOG_BUFFER);
        let mut by_node: BTreeMap<String, Vec<LogTarget>> = BTreeMap::new();
        for t in targets {
            by_node.entry(t.node.clone()).or_default().push(t);
        }
        for (node, targets) in by_node {
            let coord = self.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut out = LossyLines::new(tx);
                let first = targets[0].instance.clone();
                if let Err(error) = coord.node_logs(&node, targets, query, &mut out).await {
                    out.convoy_line(&first, &node, format!("[convoy: {error}]"))
                        .await;
                }
                out.finish(&first, &node).await;
            });
        }
        rx
    }

    /// One node's part of [`Self::stream_logs`].
    async fn node_logs(
        &self,
        node: &str,
        targets: Vec<LogTarget>,
        query: LogsQuery,
        out: &mut LossyLines,
    ) -> Result<(), String> {
        let pending = self.tunnels.expect(node);
        let open = pb::OpenLogs {
            tunnel_id: pending.id.clone(),
            sources: targets
                .iter()
                .map(|t| pb::LogSource {
                    workload_id: t.workload_id.clone(),
                    instance: t.instance.clone(),
                })
                .collect(),
            follow: query.follow,
            since_unix_ms: query.since_unix_ms.unwrap_or(0),
            has_tail: query.tail.is_some(),
            tail: query.tail.unwrap_or(0),
        };
        let ack = self
            .command(node, pb::command::Kind::OpenLogs(open), ACK_TIMEOUT)
            .await?;
        ack.result
            .map_err(|e| format!("node `{node}` cannot send these logs: {e}"))?;
        let mut tunnel = pending.opened(crate::tunnels::OPEN_TIMEOUT).await?;
        let labels: HashSet<&str> = targets.iter().map(|t| t.instance.as_str()).collect();
        loop {
            let message = tokio::select! {
                _ = out.closed() => return Ok(()),
                m = tunnel.up.message() => m,
            };
            match message {
                Ok(Some(pb::TunnelUp {
                    msg: Some(pb::tunnel_up::Msg::Lines(pb::TunnelLines { lines })),
                })) => {
                    for line in lines {
                        // Checked: only the instances asked of this node,
                        // labelled with the node that really sent them.
                        let Ok(mut line) = InstanceLine::try_from(line) else {
                            continue;
                        };
                        if !labels.contains(line.instance.as_str()) {
                            continue;
                        }
                        line.node = node.to_string();
                        out.send(line);
                    }
                }
                Ok(Some(pb::TunnelUp {
                    msg: Some(pb::tunnel_up::Msg::End(pb::TunnelEnd { error })),
                })) => {
                    return if error.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("node `{node}`: {error}"))
                    };
                }
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(status) => {
                    return Err(format!(
                        "the tunnel from node `{node}` broke: {}",
                        status.message()
                    ))
                }
            }
        }
    }

    /// The tunnels asked of agents and not yet opened.
    pub fn tunnels(&self) -> &crate::tunnels::Tunnels {
        &self.tunnels
    }
}

/// Hands lines to the caller without waiting: a full buffer drops them,
/// and the next line that fits follows a marker saying how many.
struct LossyLines {
    tx: mpsc::Sender<InstanceLine>,
    dropped: u64,
}

impl LossyLines {
    fn new(tx: mpsc::Sender<InstanceLine>) -> Self {
        Self { tx, dropped: 0 }
    }

    async fn closed(&self) {
        self.tx.closed().await
    }

    fn send(&mut self, line: InstanceLine) {
        let need = if self.dropped > 0 { 2 } else { 1 };
        if self.tx.capacity() < need {
            self.dropped += 1;
            return;
        }
        if self.dropped > 0 {
            let marker = marker_line(
                &line.instance,
                &line.node,
                line.entry.unix_nanos,
                self.dropped,
            );
            if self.tx.try_send(marker).is_err() {
                self.dropped += 1;
                return;
            }
            self.dropped = 0;
        }
        if self.tx.try_send(line).is_err() {
            self.dropped += 1;
        }
    }

    /// A line of Convoy's own (an error), waited for: it is the last word.
    async fn convoy_line(&mut self, instance: &str, node: &str, text: String) {
        let line = InstanceLine {
            instance: instance.to_string(),
            node: node.to_string(),
            entry: LogEntry {
                unix_nanos: now_unix_ms().saturating_mul(1_000_000),
                stream: LogStream::Convoy,
                text,
            },
        };
        let _ = self.tx.send(line).await;
    }

    /// Marks drops not yet marked: waited for, as the stream ends.
    async fn finish(&mut self, instance: &str, node: &str) {
        if self.dropped > 0 {
            let marker = marker_line(
                instance,
                node,
                now_unix_ms().saturating_mul(1_000_000),
                self.dropped,
            );
            self.dropped = 0;
            let _ = self.tx.send(marker).await;
        }
    }
}

fn marker_line(instance: &str, node: &str, unix_nanos: i64, dropped: u64) -> InstanceLine {
    InstanceLine {
        instance: instance.to_string(),
        node: node.to_string(),
        entry: LogEntry {
            unix_nanos,
            stream: LogStream::Convoy,
            text: dropped_marker(dropped),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: i64) -> InstanceLine {
        InstanceLine {
            instance: "web-1".into(),
            node: "n1".into(),
            entry: LogEntry {
                unix_nanos: n,
                stream: LogStream::Stdout,
                text: format!("line {n}"),
            },
        }
    }

    #[tokio::test]
    async fn a_full_buffer_drops_lines_and_marks_them_before_the_next() {
        let (tx, mut rx) = mpsc::channel(3);
        let mut out = LossyLines::new(tx);
        for n in 0..10 {
            out.send(line(n));
        }
        // Three fit; seven were dropped.
        let got: Vec<_> = (0..3).map(|_| rx.try_recv().unwrap().entry.text).collect();
        assert_eq!(got, ["line 0", "line 1", "line 2"]);
        out.send(line(10));
        let marker = rx.try_recv().unwrap();
        assert_eq!(marker.entry.stream, LogStream::Convoy);
        assert_eq!(marker.entry.text, dropped_marker(7));
        assert_eq!(rx.try_recv().unwrap().entry.text, "line 10");
        // Drops at the end are marked as the stream ends.
        for n in 11..20 {
            out.send(line(n));
        }
        while rx.try_recv().is_ok() {}
        out.send(line(20));
        out.send(line(21));
        out.send(line(22));
        out.send(line(23));
        let mut texts = Vec::new();
        while let Ok(l) = rx.try_recv() {
            texts.push(l.entry.text);
        }
        let finish = tokio::spawn(async move { out.finish("web-1", "n1").await });
        let last = rx.recv().await.unwrap();
        finish.await.unwrap();
        // 14..19 were dropped; 20 comes after their marker, 22 and 23 are
        // dropped again and marked at the end.
        assert_eq!(texts, [dropped_marker(6).as_str(), "line 20", "line 21"]);
        assert_eq!(last.entry.text, dropped_marker(2));
    }

    #[test]
    fn instances_are_labelled_as_compose_names_them() {
        assert_eq!(instance_label("web", 2), "web-2");
    }
}

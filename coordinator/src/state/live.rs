//! Live state, in memory only: agent sessions, liveness (heartbeats, the
//! lost sweep), reported workload status and host metric history. Agents
//! resend a full snapshot after every reconnect, so a restart loses nothing.

use super::*;

pub(super) struct SessionInfo {
    pub(super) conn_id: u64,
    pub(super) connected_since_unix_ms: i64,
    pub(super) address: String,
    pub(super) cancel: CancellationToken,
    /// Commands for the agent (answered by an Ack with the command's id).
    /// Boxed: the queue's first block of slots is allocated per session.
    pub(super) commands: mpsc::Sender<Box<pb::CoordinatorMessage>>,
}

/// Commands a session may have queued before new ones are refused.
pub(super) const COMMAND_QUEUE: usize = 64;

#[derive(Default)]
pub(super) struct NodeLive {
    pub(super) session: Option<SessionInfo>,
    /// The stream is open but heartbeats stopped (a frozen or cut-off host).
    pub(super) silent: bool,
    /// When the agent was last heard from (any message; heartbeats fill silences).
    pub(super) last_heartbeat_unix_ms: i64,
    pub(super) metrics: Option<HostMetrics>,
    pub(super) acked_generation: u64,
    pub(super) workloads: HashMap<String, WorkloadReport>,
    pub(super) history: VecDeque<Sample>,
}

/// A history point as kept in memory (32 bytes, plus 12 per GPU; the
/// node's total memory is its latest heartbeat's).
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub(super) unix_ms: i64,
    pub(super) cpu_percent: f32,
    pub(super) memory_used_kib: u32,
    /// The heartbeat's GPU figures (empty, and no allocation, without GPUs).
    pub(super) gpus: Box<[GpuPoint]>,
}

/// One GPU's figures in a history point.
#[derive(Debug, Clone, Copy)]
pub(super) struct GpuPoint {
    pub(super) index: u32,
    pub(super) utilization_percent: f32,
    pub(super) memory_used_mib: u32,
}

impl NodeLive {
    /// Connected and heard from recently.
    pub(super) fn ready(&self) -> bool {
        self.session.is_some() && !self.silent
    }
}

/// How agents prove they are alive: the heartbeat interval they are told to
/// use, and the silence after which a node is marked lost.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub heartbeat: Duration,
    pub lost_after: Duration,
}

impl Liveness {
    /// Three heartbeats fit in the window, so one late beat is no loss.
    pub fn from_lost_after(lost_after: Duration) -> Self {
        Self {
            heartbeat: (lost_after / 3).max(Duration::from_millis(100)),
            lost_after,
        }
    }
}

impl Default for Liveness {
    fn default() -> Self {
        Self::from_lost_after(Duration::from_millis(2500))
    }
}

#[derive(Default)]
pub(super) struct Live {
    pub(super) nodes: HashMap<String, NodeLive>,
    /// Latest plan per node; sessions forward changes (latest wins, in order).
    pub(super) plans: HashMap<String, watch::Sender<Option<Arc<pb::NodePlan>>>>,
    /// Nodes not heard from (lost, disconnected, or not connected since
    /// this coordinator started), for the reschedule pass (`drain.rs`).
    pub(super) lost: HashMap<String, drain::LostNode>,
}

/// One point of a node's CPU / memory / GPU history (dashboard sparklines).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSample {
    pub unix_ms: i64,
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// Per GPU; absent on nodes without GPUs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuMetricSample>,
}

/// One GPU's point in a node's history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GpuMetricSample {
    pub index: u32,
    pub utilization_percent: f64,
    pub memory_used_bytes: u64,
}

/// Samples kept per node, at least a second apart: two minutes or more.
pub const HISTORY: usize = 120;

/// The least time between two history samples of a node.
pub(super) const HISTORY_STEP_MS: i64 = 1000;

impl Coordinator {
    /// Each node's recent CPU / memory samples, oldest first.
    pub fn metrics_history(&self) -> BTreeMap<String, Vec<MetricSample>> {
        self.live()
            .nodes
            .iter()
            .map(|(n, l)| {
                let total = l.metrics.as_ref().map_or(0, |m| m.memory_total_bytes);
                let samples = l
                    .history
                    .iter()
                    .map(|s| MetricSample {
                        unix_ms: s.unix_ms,
                        cpu_percent: f64::from(s.cpu_percent),
                        memory_used_bytes: u64::from(s.memory_used_kib) * 1024,
                        memory_total_bytes: total,
                        gpus: s
                            .gpus
                            .iter()
                            .map(|g| GpuMetricSample {
                                index: g.index,
                                utilization_percent: f64::from(g.utilization_percent),
                                memory_used_bytes: u64::from(g.memory_used_mib) << 20,
                            })
                            .collect(),
                    })
                    .collect();
                (n.clone(), samples)
            })
            .collect()
    }

    pub(super) fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        // A panic while holding this lock would be a bug in a few lines of
        // bookkeeping; keep serving with the state as it is.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn connected(&self) -> HashMap<String, bool> {
        self.live()
            .nodes
            .iter()
            .map(|(n, l)| (n.clone(), l.ready()))
            .collect()
    }

    /// Marks lost every connected node whose heartbeats stopped for longer
    /// than the lost-after window (its stream may still look open: a frozen
    /// process or a cut cable sends no FIN). Called every few hundred ms.
    pub fn sweep(&self, now_unix_ms: i64) {
        let limit = self.lost_after.as_millis() as i64;
        let mut guard = self.live();
        let Live { nodes, lost, .. } = &mut *guard;
        for (node, n) in nodes.iter_mut() {
            let silent_for = now_unix_ms - n.last_heartbeat_unix_ms;
            if n.session.is_some() && !n.silent && silent_for > limit {
                n.silent = true;
                lost.entry(node.clone())
                    .or_insert(drain::LostNode::since(n.last_heartbeat_unix_ms));
                tracing::warn!(node = %node, silent_for_ms = silent_for, "node lost: no heartbeat");
                self.events.emit(
                    Ev::new(EventKind::NodeLost)
                        .node(node)
                        .msg(format!(
                            "node {node} lost: no heartbeat for {} ms",
                            silent_for
                        ))
                        .field("reason", "heartbeat")
                        .field("silent_for_ms", silent_for),
                );
            }
        }
    }

    /// Undoes a session whose registration was not stored: it is gone as
    /// if it never was (no `node.lost` for a node that never joined).
    pub(super) fn undo_session(&self, node: &str, conn_id: u64) {
        let mut guard = self.live();
        let Live { nodes, lost, .. } = &mut *guard;
        if let Some(n) = nodes.get_mut(node) {
            if n.session.as_ref().is_some_and(|s| s.conn_id == conn_id) {
                n.session = None;
                lost.entry(node.to_string())
                    .or_insert(drain::LostNode::since(now_unix_ms()));
            }
        }
    }

    /// Forgets a session, unless a newer one of the same node replaced it.
    pub fn disconnect(&self, node: &str, conn_id: u64) {
        let mut guard = self.live();
        let Live { nodes, lost, .. } = &mut *guard;
        if let Some(n) = nodes.get_mut(node) {
            if n.session.as_ref().is_some_and(|s| s.conn_id == conn_id) {
                let was_ready = n.ready();
                n.session = None;
                lost.entry(node.to_string())
                    .or_insert(drain::LostNode::since(now_unix_ms()));
                tracing::info!(node, "agent disconnected");
                if was_ready {
                    self.events.emit(
                        Ev::new(EventKind::NodeLost)
                            .node(node)
                            .msg(format!("node {node} lost: its stream closed"))
                            .field("reason", "disconnected"),
                    );
                }
            }
        }
    }
}

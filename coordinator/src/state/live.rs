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
    /// Up to [`HISTORY`] samples, oldest first; see [`NodeLive::record`].
    history: VecDeque<Sample>,
    /// The GPU figures of the samples in `history`, index for index; empty
    /// (no allocation) for a node that never reported a GPU, most of them.
    gpu_history: VecDeque<Box<[GpuPoint]>>,
}

/// A history point as kept in memory (16 bytes: a full history is about
/// 1.9 KiB a node; GPU figures apart, 12 bytes per GPU). The node's total
/// memory is its latest heartbeat's.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub(super) unix_ms: i64,
    pub(super) cpu_percent: f32,
    pub(super) memory_used_kib: u32,
}

/// One GPU's figures in a history point.
#[derive(Debug, Clone, Copy)]
pub(super) struct GpuPoint {
    pub(super) index: u32,
    pub(super) utilization_percent: f32,
    pub(super) memory_used_mib: u32,
}

impl NodeLive {
    /// When the last history sample was taken.
    pub(super) fn last_sample_unix_ms(&self) -> Option<i64> {
        self.history.back().map(|s| s.unix_ms)
    }

    /// Adds a history sample (and its GPU figures), dropping the oldest
    /// once [`HISTORY`] are kept.
    pub(super) fn record(&mut self, sample: Sample, gpus: Box<[GpuPoint]>) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
            self.gpu_history.pop_front();
        }
        if !gpus.is_empty() || !self.gpu_history.is_empty() {
            // A node that reports its first GPU now: earlier samples had none.
            while self.gpu_history.len() < self.history.len() {
                self.gpu_history.push_back(Box::default());
            }
            self.gpu_history.push_back(gpus);
        }
        self.history.push_back(sample);
    }

    /// The history, oldest first, each sample with its GPU figures.
    pub(super) fn samples(&self) -> impl Iterator<Item = (&Sample, &[GpuPoint])> {
        self.history
            .iter()
            .enumerate()
            .map(|(i, s)| (s, self.gpu_history.get(i).map_or(&[][..], |g| &g[..])))
    }

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
                    .samples()
                    .map(|(s, gpus)| MetricSample {
                        unix_ms: s.unix_ms,
                        cpu_percent: f64::from(s.cpu_percent),
                        memory_used_bytes: u64::from(s.memory_used_kib) * 1024,
                        memory_total_bytes: total,
                        gpus: gpus
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(unix_ms: i64) -> Sample {
        Sample {
            unix_ms,
            cpu_percent: 1.0,
            memory_used_kib: 1,
        }
    }

    fn gpu(utilization_percent: f32) -> Box<[GpuPoint]> {
        Box::new([GpuPoint {
            index: 0,
            utilization_percent,
            memory_used_mib: 1,
        }])
    }

    #[test]
    fn a_history_keeps_the_last_samples_and_their_gpus_index_for_index() {
        let mut n = NodeLive::default();
        // No GPU at first: nothing kept for GPUs.
        n.record(sample(1), Box::default());
        n.record(sample(2), Box::default());
        assert!(n.gpu_history.is_empty());
        // The first GPU figures line up with their own sample.
        n.record(sample(3), gpu(50.0));
        n.record(sample(4), Box::default());
        let seen: Vec<(i64, usize)> = n.samples().map(|(s, g)| (s.unix_ms, g.len())).collect();
        assert_eq!(seen, [(1, 0), (2, 0), (3, 1), (4, 0)]);
        // Full: the oldest goes, GPU figures with it.
        for t in 5..=(HISTORY as i64 + 2) {
            n.record(sample(t), gpu(t as f32));
        }
        assert_eq!(n.history.len(), HISTORY);
        assert_eq!(n.gpu_history.len(), HISTORY);
        let first = n.samples().next().unwrap();
        assert_eq!(first.0.unix_ms, 3);
        assert_eq!(first.1[0].utilization_percent, 50.0);
        let last = n.samples().last().unwrap();
        assert_eq!(last.0.unix_ms, HISTORY as i64 + 2);
        assert_eq!(last.1[0].utilization_percent, (HISTORY + 2) as f32);
    }

    #[test]
    fn a_history_point_without_gpus_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Sample>(), 16);
    }
}

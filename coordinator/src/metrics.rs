//! Prometheus metrics (`/metrics`). Counters and histograms live here and are
//! fed as things happen; gauges (nodes by state, instances by state and
//! health, ...) are computed from the coordinator's state at scrape time, so
//! they are never stale.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use crate::events::EventKind;
use crate::state::{now_unix_ms, Coordinator, NodeState, NodeView};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    state: String,
    health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    env: String,
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

/// One GPU of one node: its index, UUID and model, so series survive a
/// reboot that renumbers GPUs only in `gpu`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GpuLabels {
    node: String,
    gpu: String,
    uuid: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// What the coordinator measures as it runs.
pub struct Metrics {
    apply_duration: Histogram,
    rollout_duration: Family<OutcomeLabel, Histogram, fn() -> Histogram>,
    agent_rtt: Histogram,
    store_write: Histogram,
    sse_dropped: Counter,
    /// Open dashboard event streams.
    pub sse_clients: AtomicI64,
    /// Open `convoy events` / `status --watch` streams.
    pub watch_streams: AtomicI64,
    /// Open dashboard log streams (`/api/logs`).
    pub log_streams: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            // 1 ms .. ~16 s
            apply_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            // 1 s .. ~2.3 h
            rollout_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 2.0, 14))
            }),
            // 100 µs .. ~3 s
            agent_rtt: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            // 100 µs .. ~3 s
            store_write: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            sse_dropped: Counter::default(),
            sse_clients: AtomicI64::new(0),
            watch_streams: AtomicI64::new(0),
            log_streams: AtomicI64::new(0),
        }
    }
}

/// Decrements a gauge-like counter when dropped (a stream ended).
pub struct Open<'a>(&'a AtomicI64);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn observe_apply(&self, seconds: f64) {
        self.apply_duration.observe(seconds);
    }

    /// A rollout ended: "succeeded", "failed", "paused".
    pub fn observe_rollout(&self, outcome: &str, seconds: f64) {
        self.rollout_duration
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .observe(seconds);
    }

    /// One commit's store write (a sled batch + flush, or one etcd txn).
    pub fn observe_store_write(&self, seconds: f64) {
        self.store_write.observe(seconds);
    }

    pub fn observe_rtt(&self, seconds: f64) {
        self.agent_rtt.observe(seconds);
    }

    /// A slow SSE client was dropped.
    pub fn sse_dropped(&self) {
        self.sse_dropped.inc();
    }

    pub fn open(counter: &AtomicI64) -> Open<'_> {
        counter.fetch_add(1, Ordering::Relaxed);
        Open(counter)
    }

    /// The Prometheus text exposition of every metric.
    pub async fn render(&self, coord: &Coordinator) -> String {
        let nodes = coord.nodes().await.nodes;
        let services = coord.status("", "").await.services;
        let mut reg = Registry::with_prefix("convoy");

        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        reg.register("build_info", "Convoy's version", build);

        let by_state = Family::<StateLabel, Gauge>::default();
        for s in ["ready", "lost", "removed"] {
            let _ = by_state.get_or_create(&StateLabel { state: s.into() });
        }
        let ready = Family::<NodeLabel, Gauge>::default();
        let hb_age = Family::<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let cpu = Family::<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let mem = Family::<NodeLabel, Gauge>::default();
        let now = now_unix_ms();
        for n in &nodes {
            let state = n.state.as_str();
            by_state
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .inc();
            if state == "removed" {
                continue;
            }
            let l = NodeLabel {
                node: n.name.clone(),
            };
            ready.get_or_create(&l).set(i64::from(state == "ready"));
            if n.last_heartbeat_unix_ms > 0 {
                hb_age
                    .get_or_create(&l)
                    .set((now - n.last_heartbeat_unix_ms).max(0) as f64 / 1000.0);
            }
            if let Some(m) = &n.metrics {
                cpu.get_or_create(&l).set(m.cpu_percent);
                mem.get_or_create(&l).set(m.memory_used_bytes as i64);
            }
        }
        reg.register("nodes", "Nodes by state", by_state);
        reg.register("node_ready", "1 if the node is ready, 0 if lost", ready);
        reg.register(
            "node_heartbeat_age_seconds",
            "Seconds since the node's agent was last heard from (any message; heartbeats fill silences)",
            hb_age,
        );
        reg.register("node_cpu_percent", "Node CPU busy share, 0-100", cpu);
        reg.register("node_memory_used_bytes", "Node memory in use", mem);
        register_gpus(&mut reg, &nodes);

        let instances = Family::<InstanceLabels, Gauge>::default();
        let desired = Family::<ServiceLabels, Gauge>::default();
        let healthy = Family::<ServiceLabels, Gauge>::default();
        for s in &services {
            let l = ServiceLabels {
                env: s.env.clone(),
                service: s.name.clone(),
            };
            desired.get_or_create(&l).set(i64::from(s.desired));
            healthy.get_or_create(&l).set(i64::from(s.healthy));
            for i in &s.instances {
                instances
                    .get_or_create(&InstanceLabels {
                        state: i.state.as_str().into(),
                        health: i.health.as_str().into(),
                    })
                    .inc();
            }
        }
        let service_count = Gauge::<i64>::default();
        service_count.set(services.len() as i64);
        reg.register("services", "Services deployed", service_count);
        reg.register("instances", "Instances by state and health", instances);
        reg.register(
            "service_instances_desired",
            "Instances the service asks for",
            desired,
        );
        reg.register(
            "service_instances_healthy",
            "Instances of the current revision running and healthy",
            healthy,
        );

        let events = Family::<KindLabel, Counter>::default();
        // Known kinds start at 0, so `increase()` sees their first event.
        for kind in KNOWN_EVENT_KINDS {
            let _ = events.get_or_create(&KindLabel {
                kind: kind.as_str().to_string(),
            });
        }
        for (kind, n) in coord.events().counts() {
            events.get_or_create(&KindLabel { kind }).inc_by(n);
        }
        reg.register("events", "Cluster events emitted, by kind", events);

        let streams = Gauge::<i64>::default();
        streams.set(
            nodes
                .iter()
                .filter(|n| n.connected_since_unix_ms > 0)
                .count() as i64,
        );
        reg.register("agent_streams", "Open agent streams", streams);
        let watch = Gauge::<i64>::default();
        watch.set(self.watch_streams.load(Ordering::Relaxed));
        reg.register("event_watchers", "Open event watch streams", watch);
        let sse = Gauge::<i64>::default();
        sse.set(self.sse_clients.load(Ordering::Relaxed));
        reg.register("sse_clients", "Open dashboard event streams", sse);
        let logs = Gauge::<i64>::default();
        logs.set(self.log_streams.load(Ordering::Relaxed));
        reg.register("log_streams", "Open dashboard log streams", logs);
        reg.register(
            "sse_dropped",
            "Dashboard streams dropped for falling behind",
            self.sse_dropped.clone(),
        );
        reg.register(
            "apply_duration_seconds",
            "Time to validate and store an apply",
            self.apply_duration.clone(),
        );
        reg.register(
            "rollout_duration_seconds",
            "Time from the start of a rollout to its end, by outcome",
            self.rollout_duration.clone(),
        );
        reg.register(
            "agent_rtt_seconds",
            "Round trip of a ping over agent streams",
            self.agent_rtt.clone(),
        );

        reg.register(
            "store_write_duration_seconds",
            "Time of each commit's store write (sled batch and flush, or one etcd transaction)",
            self.store_write.clone(),
        );
        crate::proxy_stats::register_metrics(&mut reg, &coord.proxy_figures().totals());
        if let Some(plane) = coord.control_plane().await {
            register_control_plane(&mut reg, &plane, coord.is_leader());
        }

        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &reg);
        out
    }
}

/// `convoy_coordinator_leader`, `convoy_coordinators`, `convoy_store_healthy`
/// and the store probe's latency.
pub fn register_control_plane(
    reg: &mut Registry,
    plane: &crate::ha::ControlPlaneView,
    leader: bool,
) {
    let lead = Gauge::<i64>::default();
    lead.set(i64::from(leader));
    reg.register(
        "coordinator_leader",
        "1 if this coordinator leads (runs the controllers and serves), 0 if it stands by",
        lead,
    );
    let count = Gauge::<i64>::default();
    count.set(plane.members.len() as i64);
    reg.register("coordinators", "Coordinators announced in the store", count);
    let healthy = Gauge::<i64>::default();
    healthy.set(i64::from(plane.store.healthy));
    reg.register(
        "store_healthy",
        "1 if the store answered its last probe",
        healthy,
    );
    let probe = GaugeF64::default();
    probe.set(plane.store.probe_seconds);
    reg.register(
        "store_probe_seconds",
        "Round trip of the store's last health probe (a read)",
        probe,
    );
}

/// A standby's agents and its copy of desired state (`crate::ha::mirror`):
/// the agents it serves, the store revision it is at, the plans it holds,
/// and how often its watch broke.
pub fn register_follower(
    reg: &mut Registry,
    following: &crate::ha::mirror::Following,
    relayed: usize,
) {
    let agents = Gauge::<i64>::default();
    agents.set(relayed as i64);
    reg.register(
        "follower_agents",
        "Agents connected to this standby: it sends their plans and relays the rest to the leader",
        agents,
    );
    let revision = Gauge::<i64>::default();
    revision.set(following.revision);
    reg.register(
        "follower_revision",
        "Store revision this standby's copy of desired state is at (0: not loaded)",
        revision,
    );
    let plans = Gauge::<i64>::default();
    plans.set(following.coord.as_ref().map_or(0, |c| c.planned_nodes()) as i64);
    reg.register(
        "follower_plans",
        "Node plans this standby holds, computed from the store's watch",
        plans,
    );
    let restarts = Counter::<u64>::default();
    restarts.inc_by(following.restarts);
    reg.register(
        "follower_restarts",
        "Times this standby's watch of the store broke and was started over",
        restarts,
    );
}

type GaugeF64 = Gauge<f64, std::sync::atomic::AtomicU64>;

/// `convoy_node_gpu_*`: each GPU's memory from the node's facts, and its
/// figures from the latest heartbeat, matched by index. Removed nodes have
/// none.
fn register_gpus(reg: &mut Registry, nodes: &[NodeView]) {
    let total = Family::<GpuLabels, Gauge>::default();
    let utilization = Family::<GpuLabels, GaugeF64>::default();
    let used = Family::<GpuLabels, Gauge>::default();
    let temperature = Family::<GpuLabels, GaugeF64>::default();
    let power = Family::<GpuLabels, GaugeF64>::default();
    let mut any = false;
    for n in nodes {
        if n.state == NodeState::Removed {
            continue;
        }
        for g in &n.facts.gpus {
            any = true;
            let l = GpuLabels {
                node: n.name.clone(),
                gpu: g.index.to_string(),
                uuid: g.uuid.clone(),
                model: g.name.clone(),
            };
            total
                .get_or_create(&l)
                .set(i64::try_from(g.memory_total_bytes).unwrap_or(i64::MAX));
            let sample = n
                .metrics
                .as_ref()
                .and_then(|m| m.gpus.iter().find(|s| s.index == g.index));
            if let Some(s) = sample {
                utilization
                    .get_or_create(&l)
                    .set(s.utilization_percent / 100.0);
                used.get_or_create(&l)
                    .set(i64::try_from(s.memory_used_bytes).unwrap_or(i64::MAX));
                temperature.get_or_create(&l).set(s.temperature_c);
                power.get_or_create(&l).set(s.power_w);
            }
        }
    }
    if !any {
        // No GPU in the cluster: no empty families either.
        return;
    }
    reg.register(
        "node_gpu_memory_total_bytes",
        "GPU memory of each node's GPU",
        total,
    );
    reg.register(
        "node_gpu_utilization_ratio",
        "Share of the last sample period the GPU was busy, 0-1",
        utilization,
    );
    reg.register("node_gpu_memory_used_bytes", "GPU memory in use", used);
    reg.register(
        "node_gpu_temperature_celsius",
        "GPU temperature",
        temperature,
    );
    reg.register("node_gpu_power_watts", "GPU power draw", power);
}

/// Event kinds exported at 0 before their first occurrence.
pub const KNOWN_EVENT_KINDS: &[EventKind] = &[
    EventKind::ServiceDeployed,
    EventKind::ServiceDeleted,
    EventKind::InstancePlaced,
    EventKind::InstanceState,
    EventKind::InstanceHealth,
    EventKind::InstanceRestarted,
    EventKind::NodeJoined,
    EventKind::NodeReady,
    EventKind::NodeLost,
    EventKind::NodeRemoved,
    EventKind::RolloutProgress,
    EventKind::RolloutSucceeded,
    EventKind::RolloutFailed,
    EventKind::RolloutRolledBack,
    EventKind::RolloutPaused,
    EventKind::RolloutPromoted,
    EventKind::InstanceRescheduled,
    EventKind::NodeCordoned,
    EventKind::NodeUncordoned,
    EventKind::NodeDraining,
    EventKind::NodeDrained,
];

/// Content type of the OpenMetrics exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Metrics {
    /// OpenMetrics when the scraper asks for it (Prometheus does), else the
    /// classic text format (curl, `promtool check metrics`).
    pub async fn render_for(&self, coord: &Coordinator, accept: &str) -> (&'static str, String) {
        let text = self.render(coord).await;
        if accept.contains("application/openmetrics-text") {
            (OPENMETRICS, text)
        } else {
            (PROMETHEUS_TEXT, to_prometheus_text(&text))
        }
    }
}

/// OpenMetrics to the Prometheus text format: counters' families are named
/// with their `_total` suffix there, and there is no `# EOF` or `# UNIT`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let (name, rest) = line.strip_prefix(prefix)?.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {rest}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, name: &str) -> crate::state::Gpu {
        crate::state::Gpu {
            index,
            uuid: format!("GPU-{index}"),
            name: name.into(),
            memory_total_bytes: 85_520_809_984,
            ..crate::state::Gpu::default()
        }
    }

    fn node(
        name: &str,
        state: NodeState,
        gpus: Vec<crate::state::Gpu>,
        metrics: Option<crate::report::HostMetrics>,
    ) -> NodeView {
        NodeView {
            name: name.into(),
            state,
            facts: crate::state::Facts {
                gpus,
                ..crate::state::Facts::default()
            }
            .into(),
            agent_version: String::new(),
            connected_since_unix_ms: 0,
            last_heartbeat_unix_ms: 0,
            plan_generation: 0,
            acked_generation: 0,
            workloads: 0,
            metrics,
            address: String::new(),
            certificate_expires_unix_ms: 0,
            cordoned: false,
            draining: false,
            drain_blocked: Vec::new(),
            drain_waiting: Vec::new(),
            drained: false,
        }
    }

    fn render_gpus(nodes: &[NodeView]) -> String {
        let mut reg = Registry::with_prefix("convoy");
        register_gpus(&mut reg, nodes);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        to_prometheus_text(&out)
    }

    #[test]
    fn gpu_series_carry_node_index_uuid_and_model() {
        let nodes = [
            node(
                "gpu-1",
                NodeState::Ready,
                vec![
                    gpu(0, "NVIDIA H100 80GB HBM3"),
                    gpu(1, "NVIDIA H100 80GB HBM3"),
                ],
                Some(crate::report::HostMetrics {
                    gpus: vec![crate::report::GpuSample {
                        index: 1,
                        utilization_percent: 87.5,
                        memory_used_bytes: 1 << 30,
                        temperature_c: 66.0,
                        power_w: 512.25,
                    }],
                    ..crate::report::HostMetrics::default()
                }),
            ),
            node("gone", NodeState::Removed, vec![gpu(0, "Tesla T4")], None),
        ];
        let text = render_gpus(&nodes);
        let l1 = r#"{node="gpu-1",gpu="1",uuid="GPU-1",model="NVIDIA H100 80GB HBM3"}"#;
        let l0 = r#"{node="gpu-1",gpu="0",uuid="GPU-0",model="NVIDIA H100 80GB HBM3"}"#;
        for line in [
            format!("convoy_node_gpu_memory_total_bytes{l0} 85520809984"),
            format!("convoy_node_gpu_memory_total_bytes{l1} 85520809984"),
            format!("convoy_node_gpu_utilization_ratio{l1} 0.875"),
            format!("convoy_node_gpu_memory_used_bytes{l1} 1073741824"),
            format!("convoy_node_gpu_temperature_celsius{l1} 66.0"),
            format!("convoy_node_gpu_power_watts{l1} 512.25"),
            "# TYPE convoy_node_gpu_utilization_ratio gauge".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        // GPU 0 has no sample yet; the removed node has no series.
        assert!(!text.contains(&format!("convoy_node_gpu_utilization_ratio{l0}")));
        assert!(!text.contains("gone"), "{text}");
        // No GPU anywhere: no GPU families at all.
        assert_eq!(render_gpus(&nodes[1..]), "");
    }

    #[test]
    fn prometheus_text_names_counter_families_with_total() {
        let om = "# HELP convoy_events Cluster events.\n# TYPE convoy_events counter\nconvoy_events_total{kind=\"a\"} 1\n# HELP convoy_services Services.\n# TYPE convoy_services gauge\nconvoy_services 2\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP convoy_events_total Cluster events.\n# TYPE convoy_events_total counter\nconvoy_events_total{kind=\"a\"} 1\n# HELP convoy_services Services.\n# TYPE convoy_services gauge\nconvoy_services 2\n"
        );
    }
}

//! Prometheus metrics (`/metrics`). Counters and histograms live here and are
//! fed as things happen; gauges (nodes by state, instances by state and
//! health, ...) are computed from the coordinator's state at scrape time, so
//! they are never stale.

use std::sync::atomic::{AtomicI64, Ordering};

use convoy_proto as pb;
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
use crate::state::{now_unix_ms, Coordinator};

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
    sse_dropped: Counter,
    /// Open dashboard event streams.
    pub sse_clients: AtomicI64,
    /// Open `convoy events` / `status --watch` streams.
    pub watch_streams: AtomicI64,
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
            sse_dropped: Counter::default(),
            sse_clients: AtomicI64::new(0),
            watch_streams: AtomicI64::new(0),
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
            let state = node_state(n.state);
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
                        state: workload_state(i.state).into(),
                        health: health(i.health).into(),
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

        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &reg);
        out
    }
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

pub fn node_state(s: i32) -> &'static str {
    match pb::NodeState::try_from(s) {
        Ok(pb::NodeState::Ready) => "ready",
        Ok(pb::NodeState::Removed) => "removed",
        _ => "lost",
    }
}

pub fn workload_state(s: i32) -> &'static str {
    match pb::WorkloadState::try_from(s) {
        Ok(pb::WorkloadState::Pending) => "pending",
        Ok(pb::WorkloadState::Starting) => "starting",
        Ok(pb::WorkloadState::Running) => "running",
        Ok(pb::WorkloadState::Failed) => "failed",
        Ok(pb::WorkloadState::Exited) => "exited",
        Ok(pb::WorkloadState::Lost) => "lost",
        _ => "unknown",
    }
}

pub fn health(h: i32) -> &'static str {
    match pb::Health::try_from(h) {
        Ok(pb::Health::Starting) => "starting",
        Ok(pb::Health::Healthy) => "healthy",
        Ok(pb::Health::Unhealthy) => "unhealthy",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counter_families_with_total() {
        let om = "# HELP convoy_events Cluster events.\n# TYPE convoy_events counter\nconvoy_events_total{kind=\"a\"} 1\n# HELP convoy_services Services.\n# TYPE convoy_services gauge\nconvoy_services 2\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP convoy_events_total Cluster events.\n# TYPE convoy_events_total counter\nconvoy_events_total{kind=\"a\"} 1\n# HELP convoy_services Services.\n# TYPE convoy_services gauge\nconvoy_services 2\n"
        );
    }
}

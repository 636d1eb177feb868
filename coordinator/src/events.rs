//! The cluster's one event stream: deployments, instance state and health
//! changes, node joins and losses. Every view (CLI watch, dashboard, metrics)
//! reads it. Recent events are kept in memory for late subscribers; the
//! stream is a bounded broadcast, so a slow reader lags (and is dropped by its
//! server side) instead of slowing the coordinator.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use convoy_proto as pb;
use tokio::sync::broadcast;

pub use convoy_api::events::EventKind;

use crate::state::now_unix_ms;

/// Events kept for replay (`convoy events --replay`, the dashboard's feed).
pub const RECENT: usize = 1000;
/// Events a subscriber may fall behind before it is told it lagged: about
/// a second of events at 10,000 agents under heavy status churn (~30,000/s
/// on 2 cores), where a watcher's connection task can wait its turn behind
/// thousands of session tasks. The ring keeps the last this many events
/// alive (`Arc`s of ~300-400 bytes each).
pub const CHANNEL: usize = 32_768;

pub type SharedEvent = Arc<pb::ClusterEvent>;

/// An event being built: `Ev::new(EventKind::NodeLost).node("n1").msg("...")`.
#[derive(Debug, Clone, Default)]
pub struct Ev(pb::ClusterEvent);

impl Ev {
    pub fn new(kind: impl AsRef<str>) -> Self {
        Self(pb::ClusterEvent {
            kind: kind.as_ref().to_string(),
            ..Default::default()
        })
    }
    pub fn service(mut self, env: &str, service: &str) -> Self {
        self.0.env = env.to_string();
        self.0.service = service.to_string();
        self
    }
    /// An instance id "ENV/SERVICE/INDEX"; sets env and service from it.
    pub fn instance(mut self, id: &str) -> Self {
        let mut parts = id.splitn(3, '/');
        if let (Some(env), Some(svc), Some(_)) = (parts.next(), parts.next(), parts.next()) {
            self.0.env = env.to_string();
            self.0.service = svc.to_string();
        }
        self.0.instance = id.to_string();
        self
    }
    /// The environment alone (events of no one service).
    pub fn env(mut self, env: &str) -> Self {
        self.0.env = env.to_string();
        self
    }
    pub fn node(mut self, node: &str) -> Self {
        self.0.node = node.to_string();
        self
    }
    pub fn msg(mut self, message: impl Into<String>) -> Self {
        self.0.message = message.into();
        self
    }
    pub fn field(mut self, key: &str, value: impl ToString) -> Self {
        self.0.fields.insert(key.to_string(), value.to_string());
        self
    }
}

/// A filter on events, as `convoy events --service S --node N --env E` asks.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub service: String,
    pub node: String,
    pub env: String,
}

impl Filter {
    pub fn matches(&self, ev: &pb::ClusterEvent) -> bool {
        (self.service.is_empty() || self.service == ev.service)
            && (self.node.is_empty() || self.node == ev.node)
            && (self.env.is_empty() || self.env == ev.env)
    }
}

struct Inner {
    recent: VecDeque<SharedEvent>,
    counts: BTreeMap<String, u64>,
}

pub struct EventBus {
    seq: AtomicU64,
    tx: broadcast::Sender<SharedEvent>,
    inner: Mutex<Inner>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(CHANNEL)
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        Self {
            seq: AtomicU64::new(0),
            tx: broadcast::channel(capacity.max(1)).0,
            inner: Mutex::new(Inner {
                recent: VecDeque::with_capacity(RECENT),
                counts: BTreeMap::new(),
            }),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stamps and sends an event. Never blocks.
    pub fn emit(&self, ev: Ev) -> SharedEvent {
        let mut ev = ev.0;
        let mut inner = self.inner();
        // Under the lock, so sequence order is send order and replay + live
        // never skip or repeat an event.
        ev.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if ev.unix_ms == 0 {
            ev.unix_ms = now_unix_ms();
        }
        let ev = Arc::new(ev);
        if inner.recent.len() == RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(ev.clone());
        match inner.counts.get_mut(&ev.kind) {
            Some(n) => *n += 1,
            None => {
                inner.counts.insert(ev.kind.clone(), 1);
            }
        }
        let _ = self.tx.send(ev.clone());
        drop(inner);
        tracing::debug!(kind = %ev.kind, seq = ev.seq, "{}", ev.message);
        ev
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SharedEvent> {
        self.tx.subscribe()
    }

    /// The recent events and a subscription that continues exactly after them.
    pub fn subscribe_with_replay(&self) -> (Vec<SharedEvent>, broadcast::Receiver<SharedEvent>) {
        let inner = self.inner();
        let rx = self.tx.subscribe();
        (inner.recent.iter().cloned().collect(), rx)
    }

    pub fn recent(&self) -> Vec<SharedEvent> {
        self.inner().recent.iter().cloned().collect()
    }

    /// Events emitted since start, by kind.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.inner().counts.clone()
    }

    /// Current subscribers (watch streams, SSE clients, ...).
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_then_live_neither_skips_nor_repeats() {
        let bus = EventBus::new(16);
        bus.emit(Ev::new("a"));
        bus.emit(Ev::new("b"));
        let (replay, mut rx) = bus.subscribe_with_replay();
        bus.emit(Ev::new("c"));
        let seqs: Vec<u64> = replay.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(rx.try_recv().unwrap().seq, 3);
        assert_eq!(bus.counts().get("a"), Some(&1));
    }

    #[test]
    fn a_slow_subscriber_lags_instead_of_blocking() {
        let bus = EventBus::new(4);
        let mut rx = bus.subscribe();
        for _ in 0..10 {
            bus.emit(Ev::new("x"));
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(6))
        ));
    }

    #[test]
    fn instance_sets_env_and_service_and_filter_matches() {
        let ev = Ev::new(EventKind::InstanceHealth)
            .instance("prod/web/2")
            .node("n1")
            .0;
        assert_eq!((ev.env.as_str(), ev.service.as_str()), ("prod", "web"));
        let f = Filter {
            service: "web".into(),
            ..Default::default()
        };
        assert!(f.matches(&ev));
        let f = Filter {
            node: "n2".into(),
            ..Default::default()
        };
        assert!(!f.matches(&ev));
    }
}

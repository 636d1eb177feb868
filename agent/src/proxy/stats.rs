//! The proxy's request figures (docs/PROXY.md, "Metrics"): per environment,
//! service and revision of the instance that answered, requests, errors
//! (5xx answers and the proxy's own 502s) and a latency histogram (time
//! until the response head). Cumulative atomics behind an `Arc` found by
//! key under a read lock (written only for a new key); the session sends
//! them every few seconds ([`Stats::report`]). Bounded: entries of
//! services and revisions no longer among the proxy's instances are
//! dropped when the pools are rebuilt ([`Stats::retain`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use convoy_proto::PROXY_LATENCY_BOUNDS;

use super::ServiceKey;

/// Buckets: one per bound, then +Inf.
const BUCKETS: usize = PROXY_LATENCY_BOUNDS.len() + 1;

/// One (service, revision)'s figures.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
    sum_micros: AtomicU64,
}

impl Counters {
    /// One answered request: `error` for a 5xx or the proxy's 502, `took`
    /// until the response head.
    pub fn record(&self, error: bool, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = PROXY_LATENCY_BOUNDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        // Last: a report never shows a request without its bucket.
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}

type Key = (ServiceKey, u64);

/// Every (service, revision)'s figures on this node.
#[derive(Debug, Default)]
pub struct Stats {
    entries: RwLock<HashMap<Key, Arc<Counters>>>,
}

impl Stats {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counters of `service` at `revision`, made on first use.
    pub fn counters(&self, service: &ServiceKey, revision: u64) -> Arc<Counters> {
        let key = (service.clone(), revision);
        if let Some(c) = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return c.clone();
        }
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }

    /// Keeps only the entries of these (service, revision)s: the pools'
    /// instances. A request still in flight to a dropped one counts in
    /// its own `Arc`, lost; a revision that comes back starts from zero
    /// (the coordinator takes a drop as a reset).
    pub fn retain(&self, keep: &HashSet<(ServiceKey, u64)>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.keys().any(|k| !keep.contains(k)) {
            entries.retain(|k, _| keep.contains(k));
        }
    }

    /// The figures as sent to the coordinator, sorted by key.
    pub fn report(&self) -> convoy_proto::ProxyStats {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<convoy_proto::ProxyRevisionStats> = entries
            .iter()
            .map(
                |((service, revision), c)| convoy_proto::ProxyRevisionStats {
                    env: service.env.clone(),
                    service: service.service.clone(),
                    revision: *revision,
                    requests: c.requests.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    buckets: c
                        .buckets
                        .iter()
                        .map(|b| b.load(Ordering::Relaxed))
                        .collect(),
                    duration_sum_micros: c.sum_micros.load(Ordering::Relaxed),
                },
            )
            .collect();
        drop(entries);
        out.sort_by(|a, b| (&a.env, &a.service, a.revision).cmp(&(&b.env, &b.service, b.revision)));
        convoy_proto::ProxyStats {
            bucket_bounds: PROXY_LATENCY_BOUNDS.to_vec(),
            entries: out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> ServiceKey {
        ServiceKey {
            env: "prod".into(),
            service: "web".into(),
        }
    }

    #[test]
    fn requests_land_in_their_bucket_and_errors_count() {
        let stats = Stats::new();
        let c = stats.counters(&web(), 2);
        c.record(false, Duration::from_micros(300));
        c.record(true, Duration::from_millis(30));
        c.record(false, Duration::from_secs(60));
        assert!(Arc::ptr_eq(&c, &stats.counters(&web(), 2)));
        let r = stats.report();
        assert_eq!(r.bucket_bounds.len() + 1, r.entries[0].buckets.len());
        let e = &r.entries[0];
        assert_eq!((e.revision, e.requests, e.errors), (2, 3, 1));
        assert_eq!(e.buckets[0], 1, "300 µs ≤ 0.5 ms");
        assert_eq!(e.buckets[6], 1, "30 ms ≤ 50 ms");
        assert_eq!(e.buckets[BUCKETS - 1], 1, "60 s: +Inf");
        assert_eq!(e.duration_sum_micros, 300 + 30_000 + 60_000_000);
    }

    #[test]
    fn entries_of_instances_gone_are_dropped() {
        let stats = Stats::new();
        stats.counters(&web(), 1).record(false, Duration::ZERO);
        stats.counters(&web(), 2).record(false, Duration::ZERO);
        stats.retain(&HashSet::from([(web(), 2)]));
        let r = stats.report();
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.entries[0].revision, 2);
    }
}

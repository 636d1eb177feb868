//! The proxy's request figures (docs/PROXY.md, "Metrics"): per environment,
//! service and revision of the instance that answered, requests, errors
//! (5xx answers and the proxy's own 502s) and a latency histogram (time
//! until the response head). Cumulative atomics behind an `Arc` found by
//! key under a read lock (written only for a new key); the session sends
//! them every few seconds ([`Stats::report`]). Bounded: when the pools are
//! rebuilt ([`Stats::retain`]), entries of services no longer routed by
//! the plan are dropped, and of a service's other revisions only the
//! [`KEPT_REVISIONS`] newest stay besides those with instances (a revision
//! rolled back keeps its figures a while).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use convoy_proto::PROXY_LATENCY_BOUNDS;

use super::ServiceKey;

/// Revisions of a service kept besides those with instances.
pub const KEPT_REVISIONS: usize = 4;

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

/// Every (service, revision)'s figures on this node: by service, then
/// revision (a lookup without building a key).
#[derive(Debug, Default)]
pub struct Stats {
    entries: RwLock<HashMap<ServiceKey, HashMap<u64, Arc<Counters>>>>,
}

impl Stats {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counters of `service` at `revision`, made on first use.
    pub fn counters(&self, service: &ServiceKey, revision: u64) -> Arc<Counters> {
        if let Some(c) = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(service)
            .and_then(|revisions| revisions.get(&revision))
        {
            return c.clone();
        }
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(service.clone())
            .or_default()
            .entry(revision)
            .or_default()
            .clone()
    }

    /// Drops the services not in `routed`; of the others, keeps the
    /// revisions of `instances` (the pools' (service, revision)s) and the
    /// [`KEPT_REVISIONS`] newest others. A request still in flight to a dropped one
    /// counts in its own `Arc`, lost; a revision that comes back starts
    /// from zero (the coordinator takes a drop as a reset).
    pub fn retain(&self, instances: &HashSet<(ServiceKey, u64)>, routed: &HashSet<ServiceKey>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|service, _| routed.contains(service));
        for (service, revisions) in entries.iter_mut() {
            let mut others: Vec<u64> = revisions
                .keys()
                .filter(|r| !instances.contains(&(service.clone(), **r)))
                .copied()
                .collect();
            others.sort_unstable_by(|a, b| b.cmp(a));
            for old in others.into_iter().skip(KEPT_REVISIONS) {
                revisions.remove(&old);
            }
        }
        entries.retain(|_, revisions| !revisions.is_empty());
    }

    /// The figures as sent to the coordinator, sorted by key.
    pub fn report(&self) -> convoy_proto::ProxyStats {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<convoy_proto::ProxyRevisionStats> = entries
            .iter()
            .flat_map(|(service, revisions)| revisions.iter().map(move |(r, c)| (service, r, c)))
            .map(|(service, revision, c)| convoy_proto::ProxyRevisionStats {
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
            })
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
    fn entries_of_services_gone_and_old_revisions_are_dropped() {
        let stats = Stats::new();
        for rev in 1..=7 {
            stats.counters(&web(), rev).record(false, Duration::ZERO);
        }
        let api = ServiceKey {
            env: "prod".into(),
            service: "api".into(),
        };
        stats.counters(&api, 1).record(false, Duration::ZERO);
        // Revision 1 has instances; 4 newest of the others stay.
        stats.retain(&HashSet::from([(web(), 1)]), &HashSet::from([web()]));
        let revisions: Vec<(String, u64)> = stats
            .report()
            .entries
            .iter()
            .map(|e| (e.service.clone(), e.revision))
            .collect();
        let web_revs = |revs: &[u64]| {
            revs.iter()
                .map(|r| ("web".to_string(), *r))
                .collect::<Vec<_>>()
        };
        assert_eq!(revisions, web_revs(&[1, 4, 5, 6, 7]));
        // A service no longer routed: gone.
        stats.retain(&HashSet::new(), &HashSet::new());
        assert!(stats.report().entries.is_empty());
    }
}

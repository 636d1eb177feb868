//! The agents' proxy figures (docs/PROXY.md, "Metrics"): requests, errors
//! and latency histograms per environment, service and revision, as each
//! node's proxy counted them since its agent started. Agents send their
//! cumulative figures every few seconds; the latest of each node are kept
//! here, in memory (not in the store), under their own lock (never the
//! desired state's). A figure that goes down is a reset (the agent
//! restarted, or dropped and made the entry again): the totals kept here
//! carry on from where they were, so they only grow. `/metrics` sums them
//! over nodes; the analysis' proxy gates (`crate::analysis`) difference
//! them over each interval.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use convoy_proto as pb;
use convoy_proto::PROXY_LATENCY_BOUNDS;

/// Buckets of a histogram: one per bound, then +Inf.
pub const BUCKETS: usize = PROXY_LATENCY_BOUNDS.len() + 1;
/// The most entries one report may hold (services × revisions on a node).
pub const MAX_ENTRIES: usize = 1024;
/// The longest environment or service name accepted.
const MAX_NAME: usize = 253;

/// (environment, service, revision).
pub type RevisionKey = (String, String, u64);

/// Cumulative figures of one revision (on one node, or summed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    pub requests: u64,
    pub errors: u64,
    /// Per bucket (not cumulative), [`BUCKETS`] of them.
    pub buckets: Vec<u64>,
    pub sum_micros: u64,
}

impl Default for Figures {
    fn default() -> Self {
        Figures {
            requests: 0,
            errors: 0,
            buckets: vec![0; BUCKETS],
            sum_micros: 0,
        }
    }
}

impl Figures {
    /// Whether any figure is below `before`'s: a reset.
    fn went_down_from(&self, before: &Figures) -> bool {
        self.requests < before.requests
            || self.errors < before.errors
            || self.sum_micros < before.sum_micros
            || self.buckets.iter().zip(&before.buckets).any(|(a, b)| a < b)
    }

    pub fn add(&mut self, other: &Figures) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a = a.saturating_add(*b);
        }
    }

    /// What was counted since `before`; after a reset, everything counted
    /// since (the figures themselves).
    pub fn since(&self, before: &Figures) -> Figures {
        if self.went_down_from(before) {
            return self.clone();
        }
        Figures {
            requests: self.requests - before.requests,
            errors: self.errors - before.errors,
            sum_micros: self.sum_micros - before.sum_micros,
            buckets: self
                .buckets
                .iter()
                .zip(&before.buckets)
                .map(|(a, b)| a - b)
                .collect(),
        }
    }

    /// Errors per request; `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// The `q` quantile (0-1) of the latencies, in seconds, as Prometheus'
    /// `histogram_quantile` computes it: linear within the bucket that
    /// holds it (the first from 0), and the highest finite bound when it
    /// falls in +Inf. `None` without requests.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count: u64 = self.buckets.iter().sum();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            let upto = below + n;
            if (upto as f64) >= rank && *n > 0 {
                let Some(upper) = PROXY_LATENCY_BOUNDS.get(i) else {
                    return PROXY_LATENCY_BOUNDS.last().copied();
                };
                let lower = if i == 0 {
                    0.0
                } else {
                    PROXY_LATENCY_BOUNDS[i - 1]
                };
                let within = (rank - below as f64) / *n as f64;
                return Some(lower + (upper - lower) * within);
            }
            below = upto;
        }
        PROXY_LATENCY_BOUNDS.last().copied()
    }
}

/// One node's report, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyReport {
    pub entries: Vec<(RevisionKey, Figures)>,
}

/// Why a proxy report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidProxyStats {
    #[error("proxy figures: {0} entries, at most {MAX_ENTRIES}")]
    TooManyEntries(usize),
    #[error("proxy figures: latency bucket bounds other than the coordinator's (agent of another version?)")]
    OtherBounds,
    #[error(
        "proxy figures of `{env}/{service}` revision {revision}: {got} buckets, {BUCKETS} expected"
    )]
    BucketCount {
        env: String,
        service: String,
        revision: u64,
        got: usize,
    },
    #[error("proxy figures: an entry without an environment or service name, or one over {MAX_NAME} bytes")]
    BadName,
    #[error("proxy figures of `{env}/{service}` revision {revision}: more errors than requests")]
    MoreErrorsThanRequests {
        env: String,
        service: String,
        revision: u64,
    },
    #[error("proxy figures: `{env}/{service}` revision {revision} twice")]
    Duplicate {
        env: String,
        service: String,
        revision: u64,
    },
}

impl TryFrom<pb::ProxyStats> for ProxyReport {
    type Error = InvalidProxyStats;

    fn try_from(stats: pb::ProxyStats) -> Result<Self, InvalidProxyStats> {
        let pb::ProxyStats {
            bucket_bounds,
            entries,
        } = stats;
        if entries.len() > MAX_ENTRIES {
            return Err(InvalidProxyStats::TooManyEntries(entries.len()));
        }
        if bucket_bounds != PROXY_LATENCY_BOUNDS {
            return Err(InvalidProxyStats::OtherBounds);
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let pb::ProxyRevisionStats {
                env,
                service,
                revision,
                requests,
                errors,
                buckets,
                duration_sum_micros,
            } = e;
            let bad_name = |s: &str| s.is_empty() || s.len() > MAX_NAME;
            if bad_name(&env) || bad_name(&service) {
                return Err(InvalidProxyStats::BadName);
            }
            if buckets.len() != BUCKETS {
                return Err(InvalidProxyStats::BucketCount {
                    env,
                    service,
                    revision,
                    got: buckets.len(),
                });
            }
            if errors > requests {
                return Err(InvalidProxyStats::MoreErrorsThanRequests {
                    env,
                    service,
                    revision,
                });
            }
            let key = (env, service, revision);
            if !seen.insert(key.clone()) {
                let (env, service, revision) = key;
                return Err(InvalidProxyStats::Duplicate {
                    env,
                    service,
                    revision,
                });
            }
            out.push((
                key,
                Figures {
                    requests,
                    errors,
                    buckets,
                    sum_micros: duration_sum_micros,
                },
            ));
        }
        Ok(ProxyReport { entries: out })
    }
}

/// One revision on one node: what the agent said last, and the total that
/// carries on over resets.
#[derive(Debug, Clone)]
struct Entry {
    raw: Figures,
    total: Figures,
}

/// The latest figures of every node.
#[derive(Debug, Default)]
pub struct ProxyFigures {
    nodes: Mutex<HashMap<String, HashMap<RevisionKey, Entry>>>,
}

/// One service's figures per (node, revision), at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    figures: HashMap<(String, u64), Figures>,
}

impl Snapshot {
    /// What `revision` counted since `before`, over all nodes (a node new
    /// since then counts from zero, a reset from the reset).
    pub fn since(&self, before: &Snapshot, revision: u64) -> Figures {
        let mut out = Figures::default();
        for ((node, rev), now) in &self.figures {
            if *rev != revision {
                continue;
            }
            let delta = match before.figures.get(&(node.clone(), *rev)) {
                Some(then) => now.since(then),
                None => now.clone(),
            };
            out.add(&delta);
        }
        out
    }
}

impl ProxyFigures {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<RevisionKey, Entry>>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `node`'s latest report: it replaces the node's entries (one
    /// it no longer has is gone).
    pub fn record(&self, node: &str, report: ProxyReport) {
        let mut nodes = self.lock();
        let before = nodes.remove(node).unwrap_or_default();
        let mut now = HashMap::with_capacity(report.entries.len());
        for (key, raw) in report.entries {
            let total = match before.get(&key) {
                Some(old) => {
                    let mut total = old.total.clone();
                    total.add(&raw.since(&old.raw));
                    total
                }
                None => raw.clone(),
            };
            now.insert(key, Entry { raw, total });
        }
        if !now.is_empty() {
            nodes.insert(node.to_string(), now);
        }
    }

    /// Forgets a removed node's figures.
    pub fn forget_node(&self, node: &str) {
        self.lock().remove(node);
    }

    /// Every revision's totals, summed over nodes (for `/metrics`).
    pub fn totals(&self) -> BTreeMap<RevisionKey, Figures> {
        let nodes = self.lock();
        let mut out: BTreeMap<RevisionKey, Figures> = BTreeMap::new();
        for entries in nodes.values() {
            for (key, e) in entries {
                out.entry(key.clone()).or_default().add(&e.total);
            }
        }
        out
    }

    /// `env/service`'s totals per node and revision, now.
    pub fn snapshot(&self, env: &str, service: &str) -> Snapshot {
        let nodes = self.lock();
        let mut figures = HashMap::new();
        for (node, entries) in nodes.iter() {
            for ((e, s, rev), entry) in entries {
                if e == env && s == service {
                    figures.insert((node.clone(), *rev), entry.total.clone());
                }
            }
        }
        Snapshot { figures }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RevisionLabels {
    env: String,
    service: String,
    revision: String,
}

/// `convoy_proxy_request_duration_seconds`: histograms whose buckets are
/// counted elsewhere (the agents), encoded as they are.
#[derive(Debug, Default)]
struct Histograms(Vec<(RevisionLabels, Figures)>);

impl prometheus_client::encoding::EncodeMetric for Histograms {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        for (labels, f) in &self.0 {
            let buckets: Vec<(f64, u64)> = PROXY_LATENCY_BOUNDS
                .iter()
                .copied()
                .chain(std::iter::once(f64::MAX))
                .zip(f.buckets.iter().copied())
                .collect();
            let count: u64 = f.buckets.iter().sum();
            encoder
                .encode_family(labels)?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    f.sum_micros as f64 / 1e6,
                    count,
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

/// The proxies' figures on `/metrics`, summed over nodes (no node label:
/// one series per revision, whatever the number of nodes).
pub fn register_metrics(
    reg: &mut prometheus_client::registry::Registry,
    totals: &BTreeMap<RevisionKey, Figures>,
) {
    use prometheus_client::metrics::{counter::Counter, family::Family};
    let requests = Family::<RevisionLabels, Counter>::default();
    let errors = Family::<RevisionLabels, Counter>::default();
    let mut histograms = Histograms::default();
    for ((env, service, revision), f) in totals {
        let labels = RevisionLabels {
            env: env.clone(),
            service: service.clone(),
            revision: revision.to_string(),
        };
        requests.get_or_create(&labels).inc_by(f.requests);
        errors.get_or_create(&labels).inc_by(f.errors);
        histograms.0.push((labels, f.clone()));
    }
    reg.register(
        "proxy_requests",
        "Requests the agents' proxies answered, by the revision of the instance (or the proxy's own 502 for an instance it could not reach)",
        requests,
    );
    reg.register(
        "proxy_errors",
        "Of those, 5xx answers of instances and the proxy's 502s",
        errors,
    );
    reg.register(
        "proxy_request_duration_seconds",
        "Time from the request to the instance's response head, through the agents' proxies",
        histograms,
    );
}

#[cfg(test)]
mod tests;

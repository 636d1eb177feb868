//! A service's `deploy`: how many instances run, where, and how a new
//! revision replaces the running one (the update policy the rollout
//! controller follows).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Constraint;

/// How many instances run, and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeploySpec {
    pub mode: DeployMode,
    /// Ignored in global mode.
    pub replicas: u32,
    pub constraints: Vec<Constraint>,
    /// `placement.preferences`' `spread`s: the node labels (keys of
    /// `node.labels.KEY`) whose values new instances are spread evenly
    /// over, the first one first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spread: Vec<String>,
    /// `placement.max_replicas_per_node` (0: no limit).
    #[serde(skip_serializing_if = "is_zero")]
    pub max_replicas_per_node: u32,
    /// `deploy.labels`: the service's own labels (not its containers'),
    /// shown in its status.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// How a new revision replaces the running one.
    #[serde(default)]
    pub update: UpdatePolicy,
    /// `deploy.rollback_config`: how a rollback (automatic, or `convoy
    /// rollback`) replaces the instances; `None`: the update policy's gates,
    /// every instance at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<UpdatePolicy>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Default for DeploySpec {
    fn default() -> Self {
        DeploySpec {
            mode: DeployMode::Replicated,
            replicas: 1,
            constraints: Vec::new(),
            spread: Vec::new(),
            max_replicas_per_node: 0,
            labels: BTreeMap::new(),
            update: UpdatePolicy::default(),
            rollback: None,
        }
    }
}

/// A service's update strategy: Compose's `deploy.update_config` (and
/// `deploy.rollback_config`), with Convoy's additions under
/// `x-convoy.update`. Durations in milliseconds. A setting written in both
/// blocks is refused, as are settings of another strategy (`canaries`
/// without `strategy: canary`, ...). `rollback_config` makes the policy of
/// rollbacks (`DeploySpec::rollback`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdatePolicy {
    pub strategy: Strategy,
    /// Instances replaced at a time (`update_config.parallelism`,
    /// `x-convoy.update.max_parallel`); 0: all at once.
    pub max_parallel: u32,
    /// Pause between batches (`update_config.delay`).
    pub delay_ms: u64,
    /// An updated instance must stay healthy (running, without checks) this
    /// long before the next batch (`update_config.monitor`,
    /// `x-convoy.update.min_healthy_time`).
    pub min_healthy_time_ms: u64,
    /// An updated instance not healthy within this is a failure.
    pub healthy_deadline_ms: u64,
    /// The whole rollout must make progress (one more instance done) within
    /// this, or it fails.
    pub progress_deadline_ms: u64,
    pub order: UpdateOrder,
    pub failure_action: FailureAction,
    /// Failed instances tolerated, in thousandths of the instances being
    /// updated (`update_config.max_failure_ratio` 0.25 is 250).
    pub max_failure_permille: u32,
    /// On failure, roll back to the last revision that was fully healthy
    /// (`x-convoy.update.auto_rollback`, or `failure_action: rollback`;
    /// `pause` and `continue` turn it off).
    pub auto_rollback: bool,
    /// Canary: new instances first, then wait for `promote`. 1 when
    /// `strategy: canary` does not say.
    pub canaries: u32,
    /// Canary / blue-green: promote by itself after the new instances
    /// stayed healthy for `min_healthy_time`.
    pub auto_promote: bool,
    /// Blue-green: the old set is stopped this long after promotion.
    pub scale_down_delay_ms: u64,
    /// Measurements that must hold while the rollout runs
    /// (`x-convoy.update.analysis`, docs/ANALYSIS.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// Canary by share of requests (`x-convoy.update.canary_weights`,
    /// docs/PROXY.md): while the canaries wait for promotion, the agents'
    /// proxies send this percentage of the requests to them, one step per
    /// `convoy promote`; the last promote rolls out the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary_weights: Vec<u32>,
    /// How long each of `canary_weights` holds before the next comes by
    /// itself (`x-convoy.update.canary_pause`), while the canaries (and the
    /// analysis, if any) stay healthy; after the last, the rollout is
    /// promoted. 0: each step waits for `convoy promote`.
    #[serde(default, skip_serializing_if = "is_zero_ms")]
    pub canary_pause_ms: u64,
}

fn is_zero_ms(n: &u64) -> bool {
    *n == 0
}

/// `x-convoy.update.analysis`: PromQL queries evaluated every `interval`
/// while a rollout runs; a measurement outside its bounds more than
/// `failure_limit` times in a row fails the rollout (and rolls it back),
/// with the measured value in the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// Prometheus' base URL; empty: the coordinator's `--prometheus-url`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prometheus: String,
    pub interval_ms: u64,
    /// Failed measurements in a row tolerated (0: the first fails it).
    pub failure_limit: u32,
    pub queries: Vec<AnalysisQuery>,
}

/// One query of an [`Analysis`] and its bounds (at least one): a PromQL
/// `query`, or one of the proxy's own figures (`proxy`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisQuery {
    pub name: String,
    /// PromQL; empty when `proxy` says what is measured.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// What the agents' proxies measured of the new revision over the
    /// interval (docs/ANALYSIS.md, "Proxy gates").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyMeasure>,
    /// The new revision's value may be at most this many percent above the
    /// stable one's (`max_worse_than_stable: 10%`); proxy gates only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_worse_than_stable_percent: Option<f64>,
}

/// A figure of the agents' proxies an analysis query can bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyMeasure {
    /// Errors (5xx and the proxy's 502s) per request, 0-1.
    ErrorRate,
    /// Latency until the response head, seconds, 95th percentile.
    LatencyP95,
    /// The same, 99th percentile.
    LatencyP99,
    /// Requests per second.
    RequestRate,
}

impl ProxyMeasure {
    pub const ALL: [ProxyMeasure; 4] = [
        Self::ErrorRate,
        Self::LatencyP95,
        Self::LatencyP99,
        Self::RequestRate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ErrorRate => "error-rate",
            Self::LatencyP95 => "latency-p95",
            Self::LatencyP99 => "latency-p99",
            Self::RequestRate => "request-rate",
        }
    }
}

// Bounds are finite numbers (the parser refuses NaN), so equality is one.
impl Eq for AnalysisQuery {}

impl AnalysisQuery {
    /// Why `value` is out of bounds, if it is.
    pub fn violation(&self, value: f64) -> Option<String> {
        if value.is_nan() {
            return Some("NaN".into());
        }
        if let Some(max) = self.max.filter(|m| value > *m) {
            return Some(format!("{value} > max {max}"));
        }
        if let Some(min) = self.min.filter(|m| value < *m) {
            return Some(format!("{value} < min {min}"));
        }
        None
    }
}

impl UpdatePolicy {
    /// The policy a rollback runs under: `rollback` when the service has
    /// one, else these gates with every instance at once. Always rolling,
    /// and a failed rollback is not rolled back again.
    pub fn for_rollback(&self, rollback: Option<&UpdatePolicy>) -> UpdatePolicy {
        let mut policy = match rollback {
            Some(rollback) => rollback.clone(),
            None => UpdatePolicy {
                max_parallel: 0,
                ..self.clone()
            },
        };
        policy.strategy = Strategy::Rolling;
        policy.auto_rollback = false;
        // Going back to what ran before is not judged again: a rollback
        // that an analysis could fail would leave nothing to go back to.
        policy.analysis = None;
        policy.canary_weights.clear();
        policy.canary_pause_ms = 0;
        policy
    }
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        // Without a policy a new revision replaces every instance at once,
        // as `docker compose up` does, still watched by the health gates.
        Self {
            strategy: Strategy::Rolling,
            max_parallel: 0,
            delay_ms: 0,
            min_healthy_time_ms: 0,
            healthy_deadline_ms: 5 * 60_000,
            progress_deadline_ms: 10 * 60_000,
            order: UpdateOrder::StopFirst,
            failure_action: FailureAction::Rollback,
            max_failure_permille: 0,
            auto_rollback: true,
            canaries: 0,
            auto_promote: false,
            scale_down_delay_ms: 0,
            analysis: None,
            canary_weights: Vec::new(),
            canary_pause_ms: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    Rolling,
    Canary,
    BlueGreen,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Roll back (Convoy's default; Compose's is pause).
    #[default]
    Rollback,
    Pause,
    Continue,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployMode {
    /// `replicas` instances, wherever they fit.
    #[default]
    Replicated,
    /// One instance on every node that matches the constraints.
    Global,
}

//! The update strategy: Compose's `deploy.update_config` and
//! `rollback_config`, Convoy's `x-convoy.update`, and the one policy made of
//! both, refusing settings that clash or that no rollout could meet.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::keys::{next_key, ConvoyUpdateKey, UpdateConfigKey};
use super::seeds::{scalar, value};
use super::Note;
use crate::spec::locate::Seg;
use crate::spec::{
    values, DeployMode, DeploySpec, FailureAction, Strategy, UpdateOrder, UpdatePolicy,
};

/// `deploy.update_config` or `deploy.rollback_config`, as written: `None`
/// where a key is not.
#[derive(Default)]
pub(super) struct UpdateConfig {
    parallelism: Option<u32>,
    delay_ms: Option<u64>,
    failure_action: Option<FailureAction>,
    monitor_ms: Option<u64>,
    max_failure_permille: Option<u32>,
    order: Option<UpdateOrder>,
}

/// `rollback`: reading `rollback_config`, whose failure action cannot be
/// another rollback.
pub(super) struct UpdateConfigSeed {
    pub(super) rollback: bool,
}

impl<'de> DeserializeSeed<'de> for UpdateConfigSeed {
    type Value = UpdateConfig;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<UpdateConfig, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UpdateConfigSeed {
    type Value = UpdateConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `{parallelism: 1, delay: 10s}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UpdateConfig, A::Error> {
        let mut seen = super::keys::Seen::default();
        // `UpdateConfigKey` ignores nothing: no notes come back.
        let mut notes = Vec::new();
        let mut config = UpdateConfig::default();
        let rollback = self.rollback;
        let duration = || scalar("a duration such as `10s`", values::duration_ms);
        while let Some(key) = next_key::<A, UpdateConfigKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                UpdateConfigKey::Parallelism => {
                    config.parallelism = value(
                        &mut map,
                        scalar("a number of instances, 0 for all", values::parallelism),
                    )?;
                }
                UpdateConfigKey::Delay => config.delay_ms = value(&mut map, duration())?,
                UpdateConfigKey::FailureAction => {
                    let expecting = if rollback {
                        "`pause` or `continue`"
                    } else {
                        "`rollback`, `pause` or `continue`"
                    };
                    config.failure_action = value(
                        &mut map,
                        scalar(expecting, |s: &str| values::failure_action(s, rollback)),
                    )?;
                }
                UpdateConfigKey::Monitor => config.monitor_ms = value(&mut map, duration())?,
                UpdateConfigKey::MaxFailureRatio => {
                    config.max_failure_permille = value(
                        &mut map,
                        scalar("a fraction from 0 to 1", values::failure_ratio),
                    )?;
                }
                UpdateConfigKey::Order => {
                    config.order = value(
                        &mut map,
                        scalar("`stop-first` or `start-first`", values::update_order),
                    )?;
                }
            }
        }
        Ok(config)
    }
}

/// `x-convoy.update`, as written: `None` where a key is not.
#[derive(Default)]
pub(super) struct ConvoyUpdate {
    strategy: Option<Strategy>,
    max_parallel: Option<u32>,
    delay_ms: Option<u64>,
    min_healthy_time_ms: Option<u64>,
    healthy_deadline_ms: Option<u64>,
    progress_deadline_ms: Option<u64>,
    order: Option<UpdateOrder>,
    auto_rollback: Option<bool>,
    canaries: Option<u32>,
    auto_promote: Option<bool>,
    scale_down_delay_ms: Option<u64>,
    analysis: Option<crate::spec::Analysis>,
    canary_weights: Option<Vec<u32>>,
    canary_pause_ms: Option<u64>,
}

pub(super) struct ConvoyUpdateSeed;

/// `canary_weights`: percentages, each 1-99, increasing.
struct WeightsSeed;

impl<'de> DeserializeSeed<'de> for WeightsSeed {
    type Value = Vec<u32>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u32>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for WeightsSeed {
    type Value = Vec<u32>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of percentages of requests such as `[5, 25, 50]`")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u32>, A::Error> {
        use serde::de::Error as _;
        let mut out: Vec<u32> = Vec::new();
        while let Some(w) = seq.next_element::<u64>()? {
            if !(1..=99).contains(&w) {
                return Err(A::Error::custom(format!(
                    "{w} is not a share of requests from 1 to 99 (100 is `convoy promote`'s last step)"
                )));
            }
            let w = w as u32;
            if out.last().is_some_and(|&last| w <= last) {
                return Err(A::Error::custom(format!(
                    "the weights must grow step by step: {w} comes after {}",
                    out.last().copied().unwrap_or_default()
                )));
            }
            out.push(w);
        }
        if out.is_empty() {
            return Err(A::Error::custom(
                "give at least one weight, e.g. `[10]`, or leave the key out",
            ));
        }
        Ok(out)
    }
}

impl<'de> DeserializeSeed<'de> for ConvoyUpdateSeed {
    type Value = ConvoyUpdate;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ConvoyUpdate, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ConvoyUpdateSeed {
    type Value = ConvoyUpdate;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `{strategy: canary, canaries: 1}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ConvoyUpdate, A::Error> {
        let mut seen = super::keys::Seen::default();
        // `ConvoyUpdateKey` ignores nothing: no notes come back.
        let mut notes = Vec::new();
        let mut update = ConvoyUpdate::default();
        let duration = || scalar("a duration such as `30s`", values::duration_ms);
        let positive = || scalar("a duration such as `5m`", values::positive_duration_ms);
        let boolean = || scalar("`true` or `false`", values::boolean);
        while let Some(key) = next_key::<A, ConvoyUpdateKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                ConvoyUpdateKey::Strategy => {
                    update.strategy = value(
                        &mut map,
                        scalar("`rolling`, `canary` or `blue-green`", values::strategy),
                    )?;
                }
                ConvoyUpdateKey::MaxParallel => {
                    update.max_parallel = value(
                        &mut map,
                        scalar("a number of instances, 0 for all", values::parallelism),
                    )?;
                }
                ConvoyUpdateKey::Delay => update.delay_ms = value(&mut map, duration())?,
                ConvoyUpdateKey::MinHealthyTime => {
                    update.min_healthy_time_ms = value(&mut map, duration())?
                }
                // A zero deadline would fail every instance, every rollout.
                ConvoyUpdateKey::HealthyDeadline => {
                    update.healthy_deadline_ms = value(&mut map, positive())?
                }
                ConvoyUpdateKey::ProgressDeadline => {
                    update.progress_deadline_ms = value(&mut map, positive())?
                }
                ConvoyUpdateKey::Order => {
                    update.order = value(
                        &mut map,
                        scalar("`stop-first` or `start-first`", values::update_order),
                    )?;
                }
                ConvoyUpdateKey::AutoRollback => update.auto_rollback = value(&mut map, boolean())?,
                ConvoyUpdateKey::Canaries => {
                    update.canaries = value(
                        &mut map,
                        scalar("a number of instances, at least 1", values::canaries),
                    )?;
                }
                ConvoyUpdateKey::AutoPromote => update.auto_promote = value(&mut map, boolean())?,
                ConvoyUpdateKey::ScaleDownDelay => {
                    update.scale_down_delay_ms = value(&mut map, duration())?
                }
                ConvoyUpdateKey::Analysis => {
                    update.analysis = value(&mut map, super::analysis::AnalysisSeed)?
                }
                ConvoyUpdateKey::CanaryWeights => {
                    update.canary_weights = value(&mut map, WeightsSeed)?;
                }
                ConvoyUpdateKey::CanaryPause => {
                    update.canary_pause_ms = value(&mut map, positive())?;
                }
            }
        }
        Ok(update)
    }
}

/// The rollback policy from `deploy.rollback_config`: what it sets, over
/// the service's update policy's gates (deadlines, failure ratio, monitor),
/// every instance at once where it sets no `parallelism` (as Convoy's
/// rollbacks without it).
pub(super) fn rollback_policy(rollback: &UpdateConfig, update: &UpdatePolicy) -> UpdatePolicy {
    let mut policy = update.for_rollback(None);
    if let Some(n) = rollback.parallelism {
        policy.max_parallel = n;
    }
    if let Some(ms) = rollback.delay_ms {
        policy.delay_ms = ms;
    }
    if let Some(ms) = rollback.monitor_ms {
        policy.min_healthy_time_ms = ms;
    }
    if let Some(order) = rollback.order {
        policy.order = order;
    }
    if let Some(action) = rollback.failure_action {
        policy.failure_action = action;
    }
    if let Some(permille) = rollback.max_failure_permille {
        policy.max_failure_permille = permille;
    }
    policy
}

/// The service's update policy from `deploy.update_config` and
/// `x-convoy.update`, or the first key that does not fit with the others:
/// its path from the service, and why.
///
/// One setting written in both blocks is an error naming both, rather than
/// one block winning: a reader of the file would otherwise have to know the
/// rule to tell which applies.
pub(super) fn update_policy(
    compose: &UpdateConfig,
    convoy: &ConvoyUpdate,
    deploy: &DeploySpec,
    replicas_written: bool,
) -> Result<UpdatePolicy, Note> {
    let path = |block: [&str; 2], key: &str| -> Vec<Seg> {
        [block[0], block[1], key]
            .into_iter()
            .map(|seg| Seg::Key(seg.to_owned()))
            .collect()
    };
    let ours = |key: &str| path(["x-convoy", "update"], key);
    let compose_key = |key: &str| path(["deploy", "update_config"], key);
    let problem = |path: Vec<Seg>, message: String| Note { path, message };

    // The settings both blocks have: ours, whether written, Compose's,
    // whether written, and what they set.
    let same_setting = [
        (
            "max_parallel",
            convoy.max_parallel.is_some(),
            "parallelism",
            compose.parallelism.is_some(),
            "how many instances are replaced at a time",
        ),
        (
            "delay",
            convoy.delay_ms.is_some(),
            "delay",
            compose.delay_ms.is_some(),
            "the pause between batches",
        ),
        (
            "min_healthy_time",
            convoy.min_healthy_time_ms.is_some(),
            "monitor",
            compose.monitor_ms.is_some(),
            "how long a new instance must stay healthy",
        ),
        (
            "order",
            convoy.order.is_some(),
            "order",
            compose.order.is_some(),
            "whether an old instance stops before its replacement starts",
        ),
        (
            "auto_rollback",
            convoy.auto_rollback.is_some(),
            "failure_action",
            compose.failure_action.is_some(),
            "what a failed rollout does",
        ),
    ];
    for (key, ours_written, compose_name, compose_written, what) in same_setting {
        if ours_written && compose_written {
            return Err(problem(
                ours(key),
                format!(
                    "both this and `deploy.update_config.{compose_name}` set {what}: keep one \
                     of the two"
                ),
            ));
        }
    }

    let mut policy = UpdatePolicy::default();
    if let Some(n) = compose.parallelism.or(convoy.max_parallel) {
        policy.max_parallel = n;
    }
    if let Some(ms) = compose.delay_ms.or(convoy.delay_ms) {
        policy.delay_ms = ms;
    }
    if let Some(ms) = compose.monitor_ms.or(convoy.min_healthy_time_ms) {
        policy.min_healthy_time_ms = ms;
    }
    if let Some(order) = compose.order.or(convoy.order) {
        policy.order = order;
    }
    if let Some(action) = compose.failure_action {
        policy.failure_action = action;
        policy.auto_rollback = action == FailureAction::Rollback;
    }
    // `auto_rollback: false` keeps the failure action: a failed rollout
    // stops and stays as it is.
    if let Some(auto) = convoy.auto_rollback {
        policy.auto_rollback = auto;
    }
    if let Some(permille) = compose.max_failure_permille {
        policy.max_failure_permille = permille;
    }
    if let Some(ms) = convoy.healthy_deadline_ms {
        policy.healthy_deadline_ms = ms;
    }
    if let Some(ms) = convoy.progress_deadline_ms {
        policy.progress_deadline_ms = ms;
    }
    if let Some(strategy) = convoy.strategy {
        policy.strategy = strategy;
    }
    if let Some(auto) = convoy.auto_promote {
        policy.auto_promote = auto;
    }
    if let Some(ms) = convoy.scale_down_delay_ms {
        policy.scale_down_delay_ms = ms;
    }
    if let Some(analysis) = &convoy.analysis {
        policy.analysis = Some(analysis.clone());
    }

    // Settings that belong to other strategies.
    let strategy = policy.strategy;
    let name = values::strategy_name(strategy);
    let strategy_here = match convoy.strategy {
        Some(_) => format!("`{name}`"),
        None => format!("`{name}` (the default)"),
    };
    if deploy.mode == DeployMode::Global && strategy != Strategy::Rolling {
        return Err(problem(
            ours("strategy"),
            format!(
                "`{name}` is not supported with `deploy.mode: global`, which runs one instance \
                 on every matching node: use `rolling`"
            ),
        ));
    }
    match (convoy.canaries, strategy) {
        (Some(_), Strategy::Rolling | Strategy::BlueGreen) => {
            return Err(problem(
                ours("canaries"),
                format!("is for `strategy: canary`, and the strategy here is {strategy_here}"),
            ));
        }
        (Some(n), Strategy::Canary) => {
            if deploy.mode == DeployMode::Replicated && n > deploy.replicas {
                let replicas = if replicas_written {
                    format!("`deploy.replicas` is {}", deploy.replicas)
                } else {
                    "`deploy.replicas` is not set, so 1".to_owned()
                };
                return Err(problem(
                    ours("canaries"),
                    format!(
                        "{n} canaries are more instances than the service runs ({replicas}): \
                         give at most that many"
                    ),
                ));
            }
            policy.canaries = n;
        }
        // One canary unless told otherwise: a canary rollout without any
        // would wait for `promote` before it replaced anything.
        (None, Strategy::Canary) => policy.canaries = 1,
        (None, Strategy::Rolling | Strategy::BlueGreen) => {}
    }
    if convoy.auto_promote.is_some() && strategy == Strategy::Rolling {
        return Err(problem(
            ours("auto_promote"),
            format!(
                "is for `strategy: canary` or `blue-green`, and the strategy here is \
                 {strategy_here}"
            ),
        ));
    }
    if let Some(weights) = &convoy.canary_weights {
        if strategy != Strategy::Canary {
            return Err(problem(
                ours("canary_weights"),
                format!("is for `strategy: canary`, and the strategy here is {strategy_here}"),
            ));
        }
        if convoy.auto_promote == Some(true) {
            return Err(problem(
                ours("canary_weights"),
                "steps through its weights with `convoy promote`: remove `auto_promote`".to_owned(),
            ));
        }
        policy.canary_weights = weights.clone();
    }
    if let Some(pause) = convoy.canary_pause_ms {
        if convoy.canary_weights.is_none() {
            return Err(problem(
                ours("canary_pause"),
                "is how long each of `canary_weights` holds before the next: give \
                 `canary_weights` too"
                    .to_owned(),
            ));
        }
        policy.canary_pause_ms = pause;
    }
    if convoy.scale_down_delay_ms.is_some() && strategy != Strategy::BlueGreen {
        return Err(problem(
            ours("scale_down_delay"),
            format!("is for `strategy: blue-green`, and the strategy here is {strategy_here}"),
        ));
    }

    // Deadlines that no instance could meet. The healthy deadline is checked
    // only when written: the controller measures it until an instance is
    // first healthy, so a long `monitor` with the default deadline works;
    // one written shorter than the min healthy time is most likely the two
    // mixed up.
    let min_healthy = if convoy.min_healthy_time_ms.is_some() {
        Some((
            "`x-convoy.update.min_healthy_time`",
            ours("min_healthy_time"),
        ))
    } else if compose.monitor_ms.is_some() {
        Some(("`deploy.update_config.monitor`", compose_key("monitor")))
    } else {
        None
    };
    let show = values::show_duration;
    if let (Some(deadline), Some((min_name, _))) = (convoy.healthy_deadline_ms, &min_healthy) {
        if deadline < policy.min_healthy_time_ms {
            return Err(problem(
                ours("healthy_deadline"),
                format!(
                    "{} is shorter than the min healthy time ({} from {min_name}): give the \
                     deadline at least that long",
                    show(deadline),
                    show(policy.min_healthy_time_ms),
                ),
            ));
        }
    }
    // An instance counts as progress only after `delay` and then
    // `min_healthy_time`: a progress deadline not longer than that fails
    // every rollout.
    let step = policy.min_healthy_time_ms + policy.delay_ms;
    if step >= policy.progress_deadline_ms {
        let delay_key = if convoy.delay_ms.is_some() {
            ours("delay")
        } else {
            compose_key("delay")
        };
        let at = if convoy.progress_deadline_ms.is_some() {
            ours("progress_deadline")
        } else {
            min_healthy.map_or(delay_key, |(_, path)| path)
        };
        let deadline = match convoy.progress_deadline_ms {
            Some(ms) => show(ms),
            None => format!(
                "{}, the default",
                show(UpdatePolicy::default().progress_deadline_ms)
            ),
        };
        return Err(problem(
            at,
            format!(
                "a new instance counts as progress after the delay ({}) and the min healthy time \
                 ({}), which together are not shorter than the progress deadline ({deadline}): \
                 every rollout would fail; make `x-convoy.update.progress_deadline` longer",
                show(policy.delay_ms),
                show(policy.min_healthy_time_ms),
            ),
        ));
    }
    Ok(policy)
}

impl UpdateConfig {
    /// As Swarm takes it: what is not written stays empty, Swarm's default.
    pub(super) fn to_swarm(&self) -> crate::spec::SwarmUpdate {
        let UpdateConfig {
            parallelism,
            delay_ms,
            failure_action,
            monitor_ms,
            max_failure_permille,
            order,
        } = self;
        crate::spec::SwarmUpdate {
            parallelism: parallelism.unwrap_or(0).into(),
            delay_ms: delay_ms.unwrap_or(0),
            failure_action: match failure_action {
                None => String::new(),
                Some(FailureAction::Rollback) => "rollback".to_owned(),
                Some(FailureAction::Pause) => "pause".to_owned(),
                Some(FailureAction::Continue) => "continue".to_owned(),
            },
            monitor_ms: monitor_ms.unwrap_or(0),
            max_failure_permille: max_failure_permille.unwrap_or(0),
            order: match order {
                None => String::new(),
                Some(UpdateOrder::StopFirst) => "stop-first".to_owned(),
                Some(UpdateOrder::StartFirst) => "start-first".to_owned(),
            },
        }
    }
}

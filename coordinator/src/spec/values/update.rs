//! The values of the update strategy (`deploy.update_config`,
//! `x-convoy.update`): parallelism, failure ratio and action, order,
//! strategy, canaries.

use super::count;
use crate::spec::{FailureAction, Strategy, UpdateOrder};

/// `update_config.parallelism` and `x-convoy.update.max_parallel`: 0 is all
/// at once, as in Compose.
pub(in crate::spec) fn parallelism(text: &str) -> Result<u32, String> {
    if text.starts_with('-') {
        return Err(format!(
            "`{text}` is negative: give the number of instances to replace at a time, or 0 for \
             all at once"
        ));
    }
    count(text)
}

/// `update_config.max_failure_ratio`, a fraction from 0 to 1, in thousandths.
pub(in crate::spec) fn failure_ratio(text: &str) -> Result<u32, String> {
    let ratio: f64 = text
        .parse()
        .ok()
        .filter(|r: &f64| r.is_finite())
        .ok_or_else(|| format!("`{text}` is not a number: write a fraction such as `0.25`"))?;
    if !(0.0..=1.0).contains(&ratio) {
        return Err(format!(
            "`{text}` is out of range: the ratio of failed instances tolerated is from 0 to 1 \
             (`0.25` tolerates one in four)"
        ));
    }
    Ok((ratio * 1000.0).round() as u32)
}

/// `update_config.failure_action`; a rollback's own failure cannot roll
/// back, so `rollback_config` takes only `pause` and `continue`.
pub(in crate::spec) fn failure_action(text: &str, rollback: bool) -> Result<FailureAction, String> {
    match text {
        "rollback" if rollback => Err(
            "`rollback` is not a failure action for a rollback: expected `pause` or `continue`"
                .to_owned(),
        ),
        "rollback" => Ok(FailureAction::Rollback),
        "pause" => Ok(FailureAction::Pause),
        "continue" => Ok(FailureAction::Continue),
        other if rollback => Err(format!(
            "unknown failure action `{other}`, expected `pause` or `continue`"
        )),
        other => Err(format!(
            "unknown failure action `{other}`, expected one of `rollback`, `pause`, `continue`"
        )),
    }
}

/// `update_config.order` and `x-convoy.update.order`.
pub(in crate::spec) fn update_order(text: &str) -> Result<UpdateOrder, String> {
    match text {
        "stop-first" => Ok(UpdateOrder::StopFirst),
        "start-first" => Ok(UpdateOrder::StartFirst),
        other => Err(format!(
            "unknown order `{other}`, expected `stop-first` or `start-first`"
        )),
    }
}

/// `x-convoy.update.strategy`.
pub(in crate::spec) fn strategy(text: &str) -> Result<Strategy, String> {
    match text {
        "rolling" => Ok(Strategy::Rolling),
        "canary" => Ok(Strategy::Canary),
        "blue-green" => Ok(Strategy::BlueGreen),
        other => Err(format!(
            "unknown strategy `{other}`, expected one of `rolling`, `canary`, `blue-green`"
        )),
    }
}

/// A strategy as the spec writes it.
pub(in crate::spec) fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Rolling => "rolling",
        Strategy::Canary => "canary",
        Strategy::BlueGreen => "blue-green",
    }
}

/// `x-convoy.update.canaries`.
pub(in crate::spec) fn canaries(text: &str) -> Result<u32, String> {
    match count(text)? {
        0 => Err(
            "must be at least 1: the number of new instances started before the others".to_owned(),
        ),
        n => Ok(n),
    }
}

//! Rollouts: how a new revision replaces the running one, batch by batch,
//! gated by health. This module is the pure state machine (a rollout record
//! plus what the instances look like now → what to do next), driven by the
//! coordinator's rollout loop with the wall clock and tested here with a
//! fake one. The record lives in the service's record in the store, so a
//! restarted coordinator continues where it was.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::spec::{FailureAction, ServiceSpec, Strategy, UpdatePolicy};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    #[default]
    Running,
    /// Stopped by `failure_action: pause` or by the user; nothing moves.
    Paused,
    /// Canary: the canaries are healthy; waiting for `convoy promote`.
    WaitingPromotion,
    Succeeded,
    /// Failed and left as it is (`auto_rollback: false`).
    Failed,
    /// Failed, and a rollback to the previous revision was started.
    RolledBack,
}

impl RolloutState {
    /// Whether instances may still be at the old revision.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Running | Self::Paused | Self::WaitingPromotion | Self::Failed
        )
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::WaitingPromotion => "waiting-promotion",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RolledBack => "rolled-back",
        }
    }
}

/// One rollout of a service from one revision to the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub from_revision: u64,
    pub to_revision: u64,
    /// What instances not switched yet keep running.
    pub from_spec: ServiceSpec,
    pub policy: UpdatePolicy,
    pub state: RolloutState,
    /// This rollout undoes a failed one (its gates are the same).
    #[serde(default)]
    pub is_rollback: bool,
    pub started_unix_ms: i64,
    pub updated_unix_ms: i64,
    /// The last time an instance was done (or the start).
    pub last_progress_unix_ms: i64,
    /// When the last batch was completed (for `delay`).
    #[serde(default)]
    pub batch_done_unix_ms: i64,
    /// Instances switched to the new revision, and when.
    pub switched: BTreeMap<u32, i64>,
    /// Since when a switched instance has been healthy without a break.
    #[serde(default)]
    pub healthy_since: BTreeMap<u32, i64>,
    /// Switched instances that stayed healthy for `min_healthy_time`.
    pub done: BTreeSet<u32>,
    /// Switched instances that missed `healthy_deadline`.
    pub failed: BTreeSet<u32>,
    #[serde(default)]
    pub promoted: bool,
    #[serde(default)]
    pub promoted_unix_ms: i64,
    /// Blue-green: the old set, kept running beside the new one until
    /// `scale_down_delay` after promotion (an instant way back until then).
    #[serde(default)]
    pub blue: BTreeSet<u32>,
    /// Why it failed or paused, in words.
    #[serde(default)]
    pub reason: String,
    /// Canary by weight: the index of the current step in the policy's
    /// `canary_weights` (each `convoy promote` moves one on).
    #[serde(default)]
    pub weight_step: u32,
    /// Canary by weight: since when the current weight holds (for
    /// `canary_pause`).
    #[serde(default)]
    pub weight_since_unix_ms: i64,
}

impl Rollout {
    /// The share of requests (percent) the agents' proxies send to the new
    /// revision's instances now: while a weighted canary has not been
    /// fully promoted and still runs. `None`: no split.
    pub fn canary_weight(&self) -> Option<u32> {
        if self.policy.strategy != Strategy::Canary
            || self.promoted
            || !self.state.is_active()
            || self.state == RolloutState::Failed
        {
            return None;
        }
        let weights = &self.policy.canary_weights;
        let last = weights.len().checked_sub(1)?;
        weights.get((self.weight_step as usize).min(last)).copied()
    }

    /// Blue-green while both sets run: the revision whose instances get
    /// the requests (the old set's until promotion, the new set's after).
    pub fn active_revision(&self) -> Option<u64> {
        if self.policy.strategy != Strategy::BlueGreen
            || !self.state.is_active()
            || self.blue.is_empty()
        {
            return None;
        }
        Some(if self.promoted {
            self.to_revision
        } else {
            self.from_revision
        })
    }

    /// Whether a `convoy promote` moves a weighted canary to its next
    /// weight rather than promoting it.
    pub fn has_next_weight(&self) -> bool {
        (self.weight_step as usize) + 1 < self.policy.canary_weights.len()
    }

    pub fn new(
        from_revision: u64,
        to_revision: u64,
        from_spec: ServiceSpec,
        policy: UpdatePolicy,
        now: i64,
    ) -> Self {
        Self {
            from_revision,
            to_revision,
            from_spec,
            policy,
            state: RolloutState::Running,
            is_rollback: false,
            started_unix_ms: now,
            updated_unix_ms: now,
            last_progress_unix_ms: now,
            batch_done_unix_ms: 0,
            switched: BTreeMap::new(),
            healthy_since: BTreeMap::new(),
            done: BTreeSet::new(),
            failed: BTreeSet::new(),
            promoted: false,
            promoted_unix_ms: 0,
            blue: BTreeSet::new(),
            reason: String::new(),
            weight_step: 0,
            weight_since_unix_ms: 0,
        }
    }

    /// Blue-green with the old set still there.
    pub fn has_blue(&self) -> bool {
        self.policy.strategy == Strategy::BlueGreen && !self.blue.is_empty()
    }

    /// Whether instance `index` runs the new revision's spec.
    pub fn is_switched(&self, index: u32) -> bool {
        !self.state.is_active() || self.switched.contains_key(&index)
    }
}

/// What one instance looks like now, as far as the gates care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceView {
    pub index: u32,
    /// Running the new revision's spec and healthy (or running, without
    /// checks).
    pub healthy: bool,
    /// Set when what runs the instance has given up on the new revision
    /// (a Swarm update paused or rolled back by Swarm): the gate fails at
    /// once, with this as the reason, instead of at the healthy deadline.
    pub failure: Option<String>,
}

/// What the rollout loop must do after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// These instances now run the new revision: publish the plans.
    Switched(Vec<u32>),
    /// These instances passed their gate.
    Done(Vec<u32>),
    /// Canaries are healthy; waiting for `convoy promote`.
    AwaitingPromotion,
    /// A weighted canary's weight held for `canary_pause`: the next one.
    WeightAdvanced,
    Promoted,
    /// Blue-green: the old set's time is up; remove these instances.
    RetireBlue(Vec<u32>),
    Succeeded,
    /// The gates failed: `reason`. The state says what follows (failed,
    /// paused, or rolled back by the caller).
    Failed(String),
}

/// Advances `r` by what `instances` show at time `now` (unix ms). Only a
/// running rollout moves. Instances the service no longer has are ignored.
pub fn step(r: &mut Rollout, instances: &[InstanceView], now: i64) -> Vec<Effect> {
    let mut effects = Vec::new();
    if r.state == RolloutState::WaitingPromotion {
        return step_waiting(r, instances, now);
    }
    if r.state != RolloutState::Running {
        return effects;
    }
    let total = instances.len() as u32;
    let present: BTreeSet<u32> = instances.iter().map(|i| i.index).collect();
    r.switched.retain(|i, _| present.contains(i));
    r.done.retain(|i| present.contains(i));
    r.failed.retain(|i| present.contains(i));
    r.healthy_since.retain(|i, _| present.contains(i));

    // Gates of the instances in flight.
    let mut newly_done = Vec::new();
    let mut failures = Vec::new();
    for inst in instances {
        let Some(&switched_at) = r.switched.get(&inst.index) else {
            continue;
        };
        if r.done.contains(&inst.index) || r.failed.contains(&inst.index) {
            continue;
        }
        if inst.healthy {
            let since = *r.healthy_since.entry(inst.index).or_insert(now);
            if now - since >= r.policy.min_healthy_time_ms as i64 {
                r.done.insert(inst.index);
                newly_done.push(inst.index);
            }
        } else {
            r.healthy_since.remove(&inst.index);
            if let Some(why) = &inst.failure {
                r.failed.insert(inst.index);
                failures.push(format!("instance {}: {why}", inst.index));
            } else if now - switched_at > r.policy.healthy_deadline_ms as i64 {
                r.failed.insert(inst.index);
            }
        }
    }
    if !newly_done.is_empty() {
        r.last_progress_unix_ms = now;
        effects.push(Effect::Done(newly_done));
    }

    // Too many failures?
    let allowed = (u64::from(total) * u64::from(r.policy.max_failure_permille) / 1000) as usize;
    if r.failed.len() > allowed && r.policy.failure_action != FailureAction::Continue {
        if !failures.is_empty() {
            return fail(r, effects, failures.join("; "));
        }
        let failed: Vec<String> = r.failed.iter().map(u32::to_string).collect();
        return fail(
            r,
            effects,
            format!(
                "instance(s) {} not healthy within the healthy deadline ({} ms)",
                failed.join(", "),
                r.policy.healthy_deadline_ms
            ),
        );
    }
    let finished = |r: &Rollout| r.done.len() + r.failed.len();
    if now - r.last_progress_unix_ms > r.policy.progress_deadline_ms as i64
        && finished(r) < total as usize
    {
        return fail(
            r,
            effects,
            format!(
                "no instance became healthy for {} ms (progress deadline)",
                r.policy.progress_deadline_ms
            ),
        );
    }

    if r.policy.strategy == Strategy::BlueGreen {
        return step_blue_green(r, effects, now);
    }

    // Canary: the canaries first, then wait for promotion.
    let canary = r.policy.strategy == Strategy::Canary && !r.promoted;
    let limit = if canary {
        r.policy.canaries.min(total)
    } else {
        total
    };
    let in_flight = r.switched.len() - finished(r);
    if canary && r.switched.len() as u32 >= limit && in_flight == 0 {
        if r.policy.auto_promote {
            r.promoted = true;
            effects.push(Effect::Promoted);
        } else {
            r.state = RolloutState::WaitingPromotion;
            r.weight_since_unix_ms = now;
            r.updated_unix_ms = now;
            effects.push(Effect::AwaitingPromotion);
            return effects;
        }
    }
    let limit = if r.promoted || !canary { total } else { limit };

    // The next batch, once the previous one is through and the delay passed.
    let parallel = match r.policy.max_parallel {
        0 => total,
        n => n.min(total.max(1)),
    } as usize;
    if in_flight == 0 && !r.switched.is_empty() && r.batch_done_unix_ms == 0 {
        r.batch_done_unix_ms = now;
    }
    let delay_ok = r.batch_done_unix_ms == 0
        || in_flight > 0
        || now - r.batch_done_unix_ms >= r.policy.delay_ms as i64;
    if in_flight < parallel && delay_ok {
        let room =
            (parallel - in_flight).min(limit as usize - r.switched.len().min(limit as usize));
        let next: Vec<u32> = instances
            .iter()
            .map(|i| i.index)
            .filter(|i| !r.switched.contains_key(i))
            .take(room)
            .collect();
        if !next.is_empty() {
            for i in &next {
                r.switched.insert(*i, now);
            }
            r.batch_done_unix_ms = 0;
            effects.push(Effect::Switched(next));
        }
    }

    if finished(r) == total as usize && r.switched.len() == total as usize {
        r.state = RolloutState::Succeeded;
        effects.push(Effect::Succeeded);
    }
    if !effects.is_empty() {
        r.updated_unix_ms = now;
    }
    effects
}

/// Waiting for promotion: a switched instance whose gate reports a failure
/// (a failed analysis) fails the rollout; a weighted canary whose weight
/// held for `canary_pause` while every switched instance stayed healthy
/// moves on by itself (after the last weight: promoted).
fn step_waiting(r: &mut Rollout, instances: &[InstanceView], now: i64) -> Vec<Effect> {
    let effects = Vec::new();
    let switched: Vec<&InstanceView> = instances
        .iter()
        .filter(|i| r.switched.contains_key(&i.index))
        .collect();
    if let Some(why) = switched.iter().find_map(|i| i.failure.clone()) {
        r.updated_unix_ms = now;
        return fail(r, effects, why);
    }
    let pause = r.policy.canary_pause_ms as i64;
    if r.policy.strategy != Strategy::Canary
        || r.policy.canary_weights.is_empty()
        || pause == 0
        || now - r.weight_since_unix_ms < pause
        || switched.is_empty()
        || !switched.iter().all(|i| i.healthy)
    {
        return effects;
    }
    r.updated_unix_ms = now;
    r.last_progress_unix_ms = now;
    r.weight_since_unix_ms = now;
    if r.has_next_weight() {
        r.weight_step += 1;
        vec![Effect::WeightAdvanced]
    } else {
        r.promoted = true;
        r.promoted_unix_ms = now;
        r.state = RolloutState::Running;
        vec![Effect::Promoted]
    }
}

/// Blue-green: the new set (all switched from the start) must pass its
/// gates; then promotion (by hand or automatic), then the old set goes after
/// `scale_down_delay`.
fn step_blue_green(r: &mut Rollout, mut effects: Vec<Effect>, now: i64) -> Vec<Effect> {
    let green_done = r.done.len() + r.failed.len() == r.switched.len();
    if !r.promoted {
        if !green_done {
            if !effects.is_empty() {
                r.updated_unix_ms = now;
            }
            return effects;
        }
        r.updated_unix_ms = now;
        if r.policy.auto_promote {
            r.promoted = true;
            r.promoted_unix_ms = now;
            effects.push(Effect::Promoted);
        } else {
            r.state = RolloutState::WaitingPromotion;
            effects.push(Effect::AwaitingPromotion);
            return effects;
        }
    }
    if now - r.promoted_unix_ms >= r.policy.scale_down_delay_ms as i64 {
        let blue: Vec<u32> = std::mem::take(&mut r.blue).into_iter().collect();
        if !blue.is_empty() {
            effects.push(Effect::RetireBlue(blue));
        }
        r.state = RolloutState::Succeeded;
        r.updated_unix_ms = now;
        effects.push(Effect::Succeeded);
    }
    effects
}

fn fail(r: &mut Rollout, mut effects: Vec<Effect>, reason: String) -> Vec<Effect> {
    r.reason = reason.clone();
    r.state = match r.policy.failure_action {
        FailureAction::Pause => RolloutState::Paused,
        _ if r.policy.auto_rollback && !r.is_rollback => RolloutState::RolledBack,
        _ => RolloutState::Failed,
    };
    effects.push(Effect::Failed(reason));
    effects
}

/// A rollout's progress in words, for status and events.
pub fn describe(r: &Rollout, total: usize) -> String {
    let verb = if r.is_rollback { "rollback" } else { "rollout" };
    format!(
        "{verb} r{} → r{}: {} ({}/{} updated, {} healthy, {} failed){}{}{}",
        r.from_revision,
        r.to_revision,
        r.state.word(),
        r.switched.len(),
        total,
        r.done.len(),
        r.failed.len(),
        match r.canary_weight() {
            Some(w) => format!(
                "; the canaries get {w}% of requests (step {} of {})",
                r.weight_step + 1,
                r.policy.canary_weights.len()
            ),
            None => String::new(),
        },
        match r.active_revision() {
            Some(active) if active == r.to_revision => {
                format!("; requests go to the new set (r{active})")
            }
            Some(active) => format!("; requests go to the old set (r{active})"),
            None => String::new(),
        },
        if r.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", r.reason)
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> UpdatePolicy {
        UpdatePolicy {
            max_parallel: 1,
            min_healthy_time_ms: 1000,
            healthy_deadline_ms: 5000,
            progress_deadline_ms: 60_000,
            ..UpdatePolicy::default()
        }
    }

    fn views(healthy: &[(u32, bool)]) -> Vec<InstanceView> {
        healthy
            .iter()
            .map(|&(index, healthy)| InstanceView {
                index,
                healthy,
                failure: None,
            })
            .collect()
    }

    /// One step where instances 1..=n are healthy iff switched (the new
    /// revision works).
    fn tick(r: &mut Rollout, n: u32, now: i64) -> Vec<Effect> {
        let views: Vec<InstanceView> = (1..=n)
            .map(|index| InstanceView {
                index,
                healthy: r.switched.contains_key(&index),
                failure: None,
            })
            .collect();
        step(r, &views, now)
    }

    #[test]
    fn a_reported_failure_fails_the_gate_at_once_with_its_reason() {
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), policy(), 0);
        assert_eq!(tick(&mut r, 1, 0), vec![Effect::Switched(vec![1])]);
        // Long before the healthy deadline (5 s), Swarm says it rolled back.
        let failing = [InstanceView {
            index: 1,
            healthy: false,
            failure: Some("Swarm rollback_completed: update rolled back".into()),
        }];
        let effects = step(&mut r, &failing, 100);
        assert!(
            matches!(effects.last(), Some(Effect::Failed(why))
                if why == "instance 1: Swarm rollback_completed: update rolled back"),
            "{effects:?}"
        );
        assert_eq!(
            r.reason,
            "instance 1: Swarm rollback_completed: update rolled back"
        );
    }

    #[test]
    fn rolling_one_at_a_time_waits_for_each_gate() {
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), policy(), 0);
        assert_eq!(tick(&mut r, 3, 0), vec![Effect::Switched(vec![1])]);
        // Seen healthy at 100; not for min_healthy_time yet: nothing moves.
        assert_eq!(tick(&mut r, 3, 100), vec![]);
        assert_eq!(tick(&mut r, 3, 1000), vec![]);
        assert_eq!(
            tick(&mut r, 3, 1100),
            vec![Effect::Done(vec![1]), Effect::Switched(vec![2])]
        );
        assert_eq!(tick(&mut r, 3, 1200), vec![]);
        let e = tick(&mut r, 3, 2200);
        assert_eq!(e, vec![Effect::Done(vec![2]), Effect::Switched(vec![3])]);
        assert!(tick(&mut r, 3, 2300).is_empty());
        let e = tick(&mut r, 3, 3300);
        assert_eq!(e, vec![Effect::Done(vec![3]), Effect::Succeeded]);
        assert_eq!(r.state, RolloutState::Succeeded);
        assert!(r.is_switched(1) && r.is_switched(3));
    }

    #[test]
    fn a_health_flap_restarts_the_healthy_clock() {
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), policy(), 0);
        tick(&mut r, 2, 0);
        step(&mut r, &views(&[(1, true), (2, false)]), 100);
        step(&mut r, &views(&[(1, false), (2, false)]), 900);
        assert_eq!(step(&mut r, &views(&[(1, true), (2, false)]), 1200), vec![]);
        assert_eq!(
            step(&mut r, &views(&[(1, true), (2, false)]), 2200),
            vec![Effect::Done(vec![1]), Effect::Switched(vec![2])]
        );
    }

    #[test]
    fn an_instance_unhealthy_past_the_deadline_fails_and_rolls_back() {
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), policy(), 0);
        let bad = views(&[(1, false), (2, false), (3, false)]);
        assert_eq!(step(&mut r, &bad, 0), vec![Effect::Switched(vec![1])]);
        assert_eq!(step(&mut r, &bad, 5000), vec![]);
        let e = step(&mut r, &bad, 5001);
        assert!(
            matches!(e.as_slice(), [Effect::Failed(m)] if m.contains("instance(s) 1")),
            "{e:?}"
        );
        assert_eq!(r.state, RolloutState::RolledBack);
        // Only the first instance was ever switched.
        assert!(!r.is_switched(2) || !r.state.is_active());
        assert_eq!(r.switched.len(), 1);
    }

    #[test]
    fn without_auto_rollback_it_stays_failed_and_pause_pauses() {
        let mut p = policy();
        p.auto_rollback = false;
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p.clone(), 0);
        let bad = views(&[(1, false)]);
        step(&mut r, &bad, 0);
        step(&mut r, &bad, 6000);
        assert_eq!(r.state, RolloutState::Failed);
        assert!(
            !r.is_switched(2),
            "a failed rollout keeps the rest at the old revision"
        );

        p.failure_action = FailureAction::Pause;
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p, 0);
        step(&mut r, &bad, 0);
        step(&mut r, &bad, 6000);
        assert_eq!(r.state, RolloutState::Paused);
        assert_eq!(
            step(&mut r, &bad, 9000),
            vec![],
            "a paused rollout does not move"
        );
    }

    #[test]
    fn a_failure_ratio_tolerates_some_failures() {
        let mut p = policy();
        p.max_parallel = 0;
        p.max_failure_permille = 250; // 1 of 4
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p, 0);
        let mixed = views(&[(1, false), (2, true), (3, true), (4, true)]);
        assert_eq!(
            step(&mut r, &mixed, 0),
            vec![Effect::Switched(vec![1, 2, 3, 4])]
        );
        assert_eq!(step(&mut r, &mixed, 100), vec![]);
        let e = step(&mut r, &mixed, 6000);
        assert_eq!(
            e,
            vec![Effect::Done(vec![2, 3, 4]), Effect::Succeeded],
            "{r:?}"
        );
        assert_eq!(r.failed.len(), 1);
    }

    #[test]
    fn a_weighted_canary_steps_through_its_weights_then_has_no_split() {
        let mut p = policy();
        p.strategy = Strategy::Canary;
        p.canaries = 1;
        p.canary_weights = vec![10, 50];
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p, 0);
        assert_eq!(r.canary_weight(), Some(10));
        assert!(r.has_next_weight());
        r.weight_step = 1;
        assert_eq!(r.canary_weight(), Some(50));
        assert!(!r.has_next_weight());
        assert!(describe(&r, 3).contains("the canaries get 50% of requests (step 2 of 2)"));
        r.promoted = true;
        assert_eq!(r.canary_weight(), None);
        let mut rolled = r.clone();
        rolled.promoted = false;
        rolled.state = RolloutState::RolledBack;
        assert_eq!(rolled.canary_weight(), None, "no split once rolled back");
    }

    #[test]
    fn canary_waits_for_promotion_then_rolls_the_rest() {
        let mut p = policy();
        p.strategy = Strategy::Canary;
        p.canaries = 1;
        p.max_parallel = 2;
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p, 0);
        assert_eq!(tick(&mut r, 4, 0), vec![Effect::Switched(vec![1])]);
        assert_eq!(tick(&mut r, 4, 100), vec![]);
        let e = tick(&mut r, 4, 1100);
        assert_eq!(e, vec![Effect::Done(vec![1]), Effect::AwaitingPromotion]);
        assert_eq!(r.state, RolloutState::WaitingPromotion);
        assert_eq!(tick(&mut r, 4, 60_000), vec![]);
        // `convoy promote`:
        r.promoted = true;
        r.state = RolloutState::Running;
        r.last_progress_unix_ms = 60_000;
        assert_eq!(tick(&mut r, 4, 60_000), vec![Effect::Switched(vec![2, 3])]);
    }

    #[test]
    fn canary_with_auto_promote_goes_on_by_itself() {
        let mut p = policy();
        p.strategy = Strategy::Canary;
        p.canaries = 1;
        p.auto_promote = true;
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p, 0);
        tick(&mut r, 2, 0);
        tick(&mut r, 2, 100);
        let e = tick(&mut r, 2, 1100);
        assert_eq!(
            e,
            vec![
                Effect::Done(vec![1]),
                Effect::Promoted,
                Effect::Switched(vec![2])
            ]
        );
    }

    #[test]
    fn delay_separates_batches_and_progress_deadline_fails_a_stuck_rollout() {
        let mut p = policy();
        p.delay_ms = 2000;
        p.progress_deadline_ms = 10_000;
        p.healthy_deadline_ms = 60_000;
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p, 0);
        tick(&mut r, 2, 0);
        tick(&mut r, 2, 0);
        assert_eq!(tick(&mut r, 2, 1000), vec![Effect::Done(vec![1])]);
        assert_eq!(tick(&mut r, 2, 2000), vec![]);
        assert_eq!(tick(&mut r, 2, 3000), vec![Effect::Switched(vec![2])]);
        let stuck = views(&[(1, true), (2, false)]);
        let e = step(&mut r, &stuck, 13_001);
        assert!(
            matches!(e.as_slice(), [Effect::Failed(m)] if m.contains("progress")),
            "{e:?}"
        );
    }

    #[test]
    fn blue_green_waits_for_the_new_set_then_promotion_then_the_delay() {
        let p = UpdatePolicy {
            strategy: Strategy::BlueGreen,
            min_healthy_time_ms: 1000,
            scale_down_delay_ms: 5000,
            ..UpdatePolicy::default()
        };
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p, 0);
        r.blue = [1, 2].into_iter().collect();
        r.switched = [(3, 0), (4, 0)].into_iter().collect();
        let views = views(&[(1, false), (2, false), (3, true), (4, true)]);
        assert_eq!(step(&mut r, &views, 0), vec![]);
        assert_eq!(
            step(&mut r, &views, 1000),
            vec![Effect::Done(vec![3, 4]), Effect::AwaitingPromotion]
        );
        assert!(r.has_blue());
        // `convoy promote` at 2000:
        r.promoted = true;
        r.promoted_unix_ms = 2000;
        r.state = RolloutState::Running;
        assert_eq!(step(&mut r, &views, 6999), vec![]);
        assert_eq!(
            step(&mut r, &views, 7000),
            vec![Effect::RetireBlue(vec![1, 2]), Effect::Succeeded]
        );
        assert!(!r.has_blue());
    }

    #[test]
    fn all_at_once_by_default() {
        let p = UpdatePolicy {
            min_healthy_time_ms: 0,
            ..UpdatePolicy::default()
        };
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p, 0);
        assert_eq!(tick(&mut r, 3, 0), vec![Effect::Switched(vec![1, 2, 3])]);
        assert_eq!(
            tick(&mut r, 3, 10),
            vec![Effect::Done(vec![1, 2, 3]), Effect::Succeeded]
        );
        assert!(!r.state.is_active());
    }

    #[test]
    fn a_weighted_canary_with_a_pause_moves_on_by_itself_while_healthy() {
        let mut p = policy();
        p.strategy = Strategy::Canary;
        p.canaries = 1;
        p.canary_weights = vec![10, 50];
        p.canary_pause_ms = 5000;
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p, 0);
        tick(&mut r, 3, 0);
        tick(&mut r, 3, 0);
        let e = tick(&mut r, 3, 1000);
        assert_eq!(e, vec![Effect::Done(vec![1]), Effect::AwaitingPromotion]);
        assert_eq!(
            (r.canary_weight(), r.weight_since_unix_ms),
            (Some(10), 1000)
        );
        assert_eq!(tick(&mut r, 3, 5999), vec![]);
        // An unhealthy canary holds the weight where it is.
        let sick = views(&[(1, false), (2, false), (3, false)]);
        assert_eq!(step(&mut r, &sick, 7000), vec![]);
        assert_eq!(r.canary_weight(), Some(10));
        assert_eq!(tick(&mut r, 3, 7000), vec![Effect::WeightAdvanced]);
        assert_eq!(
            (r.canary_weight(), r.weight_since_unix_ms),
            (Some(50), 7000)
        );
        assert_eq!(r.state, RolloutState::WaitingPromotion);
        assert_eq!(tick(&mut r, 3, 11_999), vec![]);
        // After the last weight's pause: promoted, the rest rolls out.
        assert_eq!(tick(&mut r, 3, 12_000), vec![Effect::Promoted]);
        assert_eq!((r.state, r.canary_weight()), (RolloutState::Running, None));
        assert_eq!(tick(&mut r, 3, 12_000), vec![Effect::Switched(vec![2])]);
    }

    #[test]
    fn a_failure_reported_while_waiting_for_promotion_fails_the_rollout() {
        let mut p = policy();
        p.strategy = Strategy::Canary;
        p.canaries = 1;
        p.canary_weights = vec![10];
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p, 0);
        tick(&mut r, 2, 0);
        tick(&mut r, 2, 0);
        tick(&mut r, 2, 1000);
        assert_eq!(r.state, RolloutState::WaitingPromotion);
        // Without a pause nothing moves by itself.
        assert_eq!(tick(&mut r, 2, 600_000), vec![]);
        let failing = vec![
            InstanceView {
                index: 1,
                healthy: false,
                failure: Some("analysis failed: `errors` measured 0.2 > max 0.05".into()),
            },
            InstanceView {
                index: 2,
                healthy: false,
                failure: None,
            },
        ];
        let e = step(&mut r, &failing, 600_500);
        assert_eq!(
            e,
            vec![Effect::Failed(
                "analysis failed: `errors` measured 0.2 > max 0.05".into()
            )]
        );
        assert_eq!(r.state, RolloutState::RolledBack);
        assert_eq!(r.canary_weight(), None);
    }

    #[test]
    fn a_blue_green_sends_requests_to_the_old_set_until_promotion_then_the_new() {
        let p = UpdatePolicy {
            strategy: Strategy::BlueGreen,
            scale_down_delay_ms: 5000,
            ..UpdatePolicy::default()
        };
        let mut r = Rollout::new(1, 2, ServiceSpec::default(), p, 0);
        assert_eq!(r.active_revision(), None, "no old set recorded");
        r.blue = [1, 2].into_iter().collect();
        r.switched = [(3, 0), (4, 0)].into_iter().collect();
        assert_eq!(r.active_revision(), Some(1));
        assert!(
            describe(&r, 4).contains("requests go to the old set (r1)"),
            "{}",
            describe(&r, 4)
        );
        let views = views(&[(1, false), (2, false), (3, true), (4, true)]);
        step(&mut r, &views, 0);
        assert_eq!(r.state, RolloutState::WaitingPromotion);
        assert_eq!(r.active_revision(), Some(1));
        r.promoted = true;
        r.promoted_unix_ms = 1000;
        r.state = RolloutState::Running;
        assert_eq!(r.active_revision(), Some(2));
        assert!(describe(&r, 4).contains("requests go to the new set (r2)"));
        step(&mut r, &views, 6000);
        assert_eq!(r.state, RolloutState::Succeeded);
        assert_eq!(r.active_revision(), None, "the old set is gone");
    }
}

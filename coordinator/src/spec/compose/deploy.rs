//! A service's `deploy`: `mode`, `replicas`, `placement` and
//! `restart_policy`; `update_config` and `rollback_config` are read by
//! `update`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::environment::EntriesSeed;
use super::keys::{next_key, DeployKey, PlacementKey, PreferenceKey, RestartPolicyKey};
use super::seeds::{list, scalar, value};
use super::update::{UpdateConfig, UpdateConfigSeed};
use super::{nest, Note};
use crate::spec::locate::Seg;
use crate::spec::swarm::swarm_constraint;
use crate::spec::{values, Constraint, DeployMode, RestartCondition, RestartSpec};

pub(super) struct Deploy {
    pub(super) mode: DeployMode,
    pub(super) replicas: u32,
    /// Whether `replicas` was written, for messages.
    pub(super) replicas_written: bool,
    pub(super) placement: Placement,
    /// `deploy.labels`.
    pub(super) labels: BTreeMap<String, String>,
    pub(super) restart: Option<RestartSpec>,
    /// `restart_policy`'s `delay` and `window`: only Swarm uses them.
    pub(super) restart_timing: RestartTiming,
    pub(super) update: Option<UpdateConfig>,
    /// `rollback_config`, when written.
    pub(super) rollback: Option<UpdateConfig>,
    /// `resources`, when written.
    pub(super) resources: Option<super::resources::Resources>,
    pub(super) notes: Vec<Note>,
}

pub(super) struct DeploySeed;

impl<'de> DeserializeSeed<'de> for DeploySeed {
    type Value = Deploy;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Deploy, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DeploySeed {
    type Value = Deploy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `replicas: 2`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Deploy, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut mode = None;
        let mut replicas = None;
        let mut placement = Placement::default();
        let mut labels = BTreeMap::new();
        let mut restart = None;
        let mut restart_timing = RestartTiming::default();
        let mut update = None;
        let mut rollback = None;
        let mut resources = None;
        while let Some(key) = next_key::<A, DeployKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                // `replicas` and `mode: global` exclude each other; whichever
                // comes second is the error, so it points at a line.
                DeployKey::Mode => {
                    let has_replicas = replicas.is_some();
                    mode = value(
                        &mut map,
                        scalar("`replicated` or `global`", |s: &str| {
                            match values::mode(s)? {
                            DeployMode::Global if has_replicas => Err(
                                "`global` runs one instance on every matching node, so it cannot be \
                                 combined with `replicas`"
                                    .to_owned(),
                            ),
                            mode => Ok(mode),
                        }
                        }),
                    )?;
                }
                DeployKey::Replicas => {
                    let global = mode == Some(DeployMode::Global);
                    replicas = value(
                        &mut map,
                        scalar("a number of replicas", |s: &str| {
                            if global {
                                return Err(
                                    "cannot be set with `mode: global`, which runs one instance \
                                            on every matching node"
                                        .to_owned(),
                                );
                            }
                            values::count(s)
                        }),
                    )?;
                }
                DeployKey::Placement => {
                    if let Some((read, placement_notes)) = value(&mut map, PlacementSeed)? {
                        placement = read;
                        nest(
                            &mut notes,
                            Seg::Key("placement".to_owned()),
                            placement_notes,
                        );
                    }
                }
                DeployKey::Labels => {
                    labels = value(&mut map, EntriesSeed::LABELS)?
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(name, val)| (name, val.unwrap_or_default()))
                        .collect();
                }
                DeployKey::RestartPolicy => {
                    if let Some((policy, timing, policy_notes)) =
                        value(&mut map, RestartPolicySeed)?
                    {
                        restart = Some(policy);
                        restart_timing = timing;
                        nest(
                            &mut notes,
                            Seg::Key("restart_policy".to_owned()),
                            policy_notes,
                        );
                    }
                }
                DeployKey::Resources => {
                    if let Some(mut read) = value(&mut map, super::resources::ResourcesSeed)? {
                        let read_notes = std::mem::take(&mut read.notes);
                        nest(&mut notes, Seg::Key("resources".to_owned()), read_notes);
                        resources = Some(read);
                    }
                }
                DeployKey::UpdateConfig => {
                    update = value(&mut map, UpdateConfigSeed { rollback: false })?;
                }
                DeployKey::RollbackConfig => {
                    rollback = value(&mut map, UpdateConfigSeed { rollback: true })?;
                }
            }
        }
        Ok(Deploy {
            mode: mode.unwrap_or_default(),
            replicas: replicas.unwrap_or(1),
            replicas_written: replicas.is_some(),
            placement,
            labels,
            restart,
            restart_timing,
            update,
            rollback,
            resources,
            notes,
        })
    }
}

/// `deploy.placement`.
#[derive(Default)]
pub(super) struct Placement {
    /// The constraints Convoy's own parser reads.
    pub(super) constraints: Vec<Constraint>,
    /// Every constraint as written, for a Swarm service (Swarm reads them).
    pub(super) raw_constraints: Vec<String>,
    /// The constraints in Swarm's syntax that Convoy's parser refuses
    /// (`node.role == manager`), by index, with its reason: an error for a
    /// plain container, fine for a Swarm service.
    pub(super) convoy_refused: Vec<(usize, String)>,
    /// The label keys of `preferences: [{spread: node.labels.KEY}]`.
    pub(super) spread: Vec<String>,
    pub(super) max_replicas_per_node: u32,
}

struct PlacementSeed;

impl<'de> DeserializeSeed<'de> for PlacementSeed {
    type Value = (Placement, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PlacementSeed {
    type Value = (Placement, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `constraints:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut placement = Placement::default();
        while let Some(key) = next_key::<A, PlacementKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                PlacementKey::Constraints => {
                    let read = value(
                        &mut map,
                        list("a list of constraints", |_| {
                            scalar(
                                "a constraint such as `node.labels.zone == eu`",
                                |s: &str| match s.parse::<Constraint>() {
                                    Ok(constraint) => Ok((s.to_owned(), Ok(constraint))),
                                    // Swarm's syntax with an attribute Convoy
                                    // does not know: whether that is an error
                                    // shows once the service is known to run
                                    // on Swarm or not.
                                    Err(why) => match swarm_constraint(s) {
                                        Ok(()) => Ok((s.to_owned(), Err(why))),
                                        Err(_) => Err(why),
                                    },
                                },
                            )
                        }),
                    )?
                    .unwrap_or_default();
                    for (index, (raw, parsed)) in read.into_iter().enumerate() {
                        match parsed {
                            Ok(constraint) => placement.constraints.push(constraint),
                            Err(why) => placement.convoy_refused.push((index, why)),
                        }
                        placement.raw_constraints.push(raw);
                    }
                }
                PlacementKey::Preferences => {
                    placement.spread = value(
                        &mut map,
                        list(
                            "a list of preferences such as `- spread: node.labels.zone`",
                            |_| PreferenceSeed,
                        ),
                    )?
                    .unwrap_or_default();
                }
                PlacementKey::MaxReplicasPerNode => {
                    placement.max_replicas_per_node = value(
                        &mut map,
                        scalar("a number of instances", |s: &str| {
                            let n = values::count(s)?;
                            if n == 0 {
                                return Err(
                                    "must be at least 1 (leave it out for no limit)".to_owned()
                                );
                            }
                            Ok(n)
                        }),
                    )?
                    .unwrap_or(0);
                }
            }
        }
        Ok((placement, notes))
    }
}

/// One entry of `placement.preferences`: `spread: node.labels.KEY`, read
/// as `KEY`.
struct PreferenceSeed;

impl<'de> DeserializeSeed<'de> for PreferenceSeed {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PreferenceSeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `spread: node.labels.zone`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        let mut seen = super::keys::Seen::default();
        // Compose names no other key here: nothing is skipped with a note.
        let mut notes = Vec::new();
        let mut spread = None;
        while let Some(key) = next_key::<A, PreferenceKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                PreferenceKey::Spread => {
                    spread = value(
                        &mut map,
                        scalar("a node label such as `node.labels.zone`", spread_label),
                    )?;
                }
            }
        }
        spread.ok_or_else(|| de::Error::custom("a preference needs `spread: node.labels.KEY`"))
    }
}

/// `node.labels.KEY` → `KEY`: what a spread preference may name.
fn spread_label(s: &str) -> Result<String, String> {
    match s.trim().strip_prefix("node.labels.") {
        Some(key) if !key.is_empty() && !key.contains(char::is_whitespace) => Ok(key.to_owned()),
        _ => Err(format!(
            "`{s}`: Convoy spreads over node labels only; write `node.labels.KEY`"
        )),
    }
}

struct RestartPolicySeed;

/// `restart_policy`'s `delay` and `window`, when written.
#[derive(Default)]
pub(super) struct RestartTiming {
    pub(super) delay_ms: Option<u64>,
    pub(super) window_ms: Option<u64>,
}

impl<'de> DeserializeSeed<'de> for RestartPolicySeed {
    type Value = (RestartSpec, RestartTiming, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RestartPolicySeed {
    type Value = (RestartSpec, RestartTiming, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `condition:` and `max_attempts:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut policy = RestartSpec::default();
        let mut timing = RestartTiming::default();
        let duration = || scalar("a duration such as `5s`", values::duration_ms);
        while let Some(key) = next_key::<A, RestartPolicyKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                RestartPolicyKey::Condition => {
                    policy.condition = value(
                        &mut map,
                        scalar("`none`, `on-failure` or `any`", values::condition),
                    )?
                    .unwrap_or(RestartCondition::Any);
                }
                RestartPolicyKey::MaxAttempts => {
                    policy.max_attempts =
                        value(&mut map, scalar("a number of attempts", values::count))?
                            .unwrap_or(0);
                }
                RestartPolicyKey::Delay => timing.delay_ms = value(&mut map, duration())?,
                RestartPolicyKey::Window => timing.window_ms = value(&mut map, duration())?,
            }
        }
        Ok((policy, timing, notes))
    }
}

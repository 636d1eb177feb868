//! A service's `deploy`: `mode`, `replicas`, `placement` and
//! `restart_policy`; `update_config` and `rollback_config` are read by
//! `update`.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::keys::{next_key, DeployKey, PlacementKey, RestartPolicyKey};
use super::seeds::{list, scalar, value};
use super::update::{UpdateConfig, UpdateConfigSeed};
use super::{nest, Note};
use crate::spec::locate::Seg;
use crate::spec::{values, Constraint, DeployMode, RestartCondition, RestartSpec};

pub(super) struct Deploy {
    pub(super) mode: DeployMode,
    pub(super) replicas: u32,
    /// Whether `replicas` was written, for messages.
    pub(super) replicas_written: bool,
    pub(super) constraints: Vec<Constraint>,
    pub(super) restart: Option<RestartSpec>,
    pub(super) update: Option<UpdateConfig>,
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
        let mut constraints = Vec::new();
        let mut restart = None;
        let mut update = None;
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
                        constraints = read;
                        nest(
                            &mut notes,
                            Seg::Key("placement".to_owned()),
                            placement_notes,
                        );
                    }
                }
                DeployKey::RestartPolicy => {
                    if let Some((policy, policy_notes)) = value(&mut map, RestartPolicySeed)? {
                        restart = Some(policy);
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
                    // Read for its errors; the rollout controller rolls back
                    // under the same gates as it rolls forward.
                    if value(&mut map, UpdateConfigSeed { rollback: true })?.is_some() {
                        notes.push(Note::new(
                            "rollback_config",
                            "Convoy rolls back under update_config's gates; rollback_config is \
                             ignored",
                        ));
                    }
                }
            }
        }
        Ok(Deploy {
            mode: mode.unwrap_or_default(),
            replicas: replicas.unwrap_or(1),
            replicas_written: replicas.is_some(),
            constraints,
            restart,
            update,
            resources,
            notes,
        })
    }
}

struct PlacementSeed;

impl<'de> DeserializeSeed<'de> for PlacementSeed {
    type Value = (Vec<Constraint>, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PlacementSeed {
    type Value = (Vec<Constraint>, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `constraints:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut constraints = Vec::new();
        while let Some(key) = next_key::<A, PlacementKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                PlacementKey::Constraints => {
                    constraints = value(
                        &mut map,
                        list("a list of constraints", |_| {
                            scalar(
                                "a constraint such as `node.labels.zone == eu`",
                                |s: &str| s.parse(),
                            )
                        }),
                    )?
                    .unwrap_or_default();
                }
            }
        }
        Ok((constraints, notes))
    }
}

struct RestartPolicySeed;

impl<'de> DeserializeSeed<'de> for RestartPolicySeed {
    type Value = (RestartSpec, Vec<Note>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RestartPolicySeed {
    type Value = (RestartSpec, Vec<Note>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping with `condition:` and `max_attempts:`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut policy = RestartSpec::default();
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
            }
        }
        Ok((policy, notes))
    }
}

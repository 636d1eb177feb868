//! `x-convoy`, the block of Convoy's own settings in a service or unit:
//! every key in it is Convoy's, so an unknown one is an error. Its parts
//! are read by `probes`, `update` and `secrets` (`secret_env`).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::keys::{next_key, ConvoyKey, TopConvoyKey};
use super::probes::ProbesSeed;
use super::secrets::SecretEnvSeed;
use super::seeds::value;
use super::update::{ConvoyUpdate, ConvoyUpdateSeed};
use crate::spec::ProbeSpec;

/// What `x-convoy` holds.
pub(super) struct Convoy {
    pub(super) probes: Vec<ProbeSpec>,
    pub(super) update: Option<ConvoyUpdate>,
    /// `secret_env`: variable → secret key, as written.
    pub(super) secret_env: Vec<(String, String)>,
    /// `gpu_sharing: true`: the service's GPU request may share GPUs.
    pub(super) gpu_sharing: bool,
    /// `swarm`, when written.
    pub(super) swarm: Option<SwarmChoice>,
    /// `reschedule_after` in ms (0: `never`), when written.
    pub(super) reschedule_after: Option<u64>,
    /// `pre_deploy`, when written.
    pub(super) pre_deploy: Option<crate::spec::PreDeploy>,
    /// `ingress`, when written.
    pub(super) ingress: Option<crate::spec::IngressSpec>,
}

/// `x-convoy.pre_deploy: {command: ..., timeout: 5m}`.
pub(super) struct PreDeploySeed;

impl<'de> DeserializeSeed<'de> for PreDeploySeed {
    type Value = crate::spec::PreDeploy;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PreDeploySeed {
    type Value = crate::spec::PreDeploy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `command: [\"/app\", \"migrate\"]` and `timeout: 5m`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut hook = crate::spec::PreDeploy {
            command: Vec::new(),
            timeout_ms: crate::spec::DEFAULT_PRE_DEPLOY_TIMEOUT_MS,
        };
        while let Some(key) =
            next_key::<A, super::keys::PreDeployKey>(&mut map, &mut seen, &mut notes)?
        {
            match key {
                super::keys::PreDeployKey::Command => {
                    hook.command =
                        value(&mut map, super::service::CommandSeed)?.unwrap_or_default();
                }
                super::keys::PreDeployKey::Timeout => {
                    let ms = value(
                        &mut map,
                        super::seeds::scalar(
                            "a duration such as `5m`",
                            crate::spec::values::duration_ms,
                        ),
                    )?;
                    if let Some(ms) = ms {
                        if ms == 0 {
                            return Err(A::Error::custom(
                                "the timeout must be longer than 0: give a duration such as `5m`",
                            ));
                        }
                        hook.timeout_ms = ms;
                    }
                }
            }
        }
        if hook.command.is_empty() {
            return Err(A::Error::custom(
                "missing field `command`: give the program and its arguments, e.g. \
                 `command: [\"/app\", \"migrate\"]`",
            ));
        }
        Ok(hook)
    }
}

/// Reads `x-convoy.reschedule_after`: a duration, or `never` (also `0`).
pub(super) fn reschedule_after(text: &str) -> Result<u64, String> {
    match text.trim() {
        "never" => Ok(0),
        other => crate::spec::values::duration_ms(other)
            .map_err(|e| format!("{e}, or `never` to keep instances on a lost node")),
    }
}

/// `x-convoy.swarm`: a cluster, or `false` to opt out of the file's
/// top-level one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SwarmChoice {
    Cluster(String),
    Off,
}

/// Reads `x-convoy.swarm`'s value.
pub(super) fn swarm_choice(s: &str) -> Result<SwarmChoice, String> {
    match s.trim() {
        "false" => Ok(SwarmChoice::Off),
        "true" => Err(
            "name the Swarm cluster (its ID, or the value of the managers' \
                       `convoy.swarm` node label), or write `false` to opt out"
                .to_owned(),
        ),
        "" => Err(
            "the Swarm cluster must not be empty: give its ID or the value of the \
                   managers' `convoy.swarm` node label"
                .to_owned(),
        ),
        cluster if cluster.chars().any(char::is_control) || cluster.len() > 128 => Err(format!(
            "`{}`: a Swarm cluster is an ID or a label value (at most 128 characters, no \
             control characters)",
            cluster.escape_default()
        )),
        cluster => Ok(SwarmChoice::Cluster(cluster.to_owned())),
    }
}

/// Reads an `x-convoy.swarm` value.
pub(super) fn swarm_value<'de, A: MapAccess<'de>>(
    map: &mut A,
) -> Result<Option<SwarmChoice>, A::Error> {
    value(
        map,
        super::seeds::scalar(
            "a Swarm cluster (ID or `convoy.swarm` label) or `false`",
            swarm_choice,
        ),
    )
}

/// The top-level `x-convoy`: `environment` (the CLI's, not used here) and
/// `swarm`, the default of every entry of `services:`.
pub(super) struct TopConvoySeed;

impl<'de> DeserializeSeed<'de> for TopConvoySeed {
    type Value = Option<SwarmChoice>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopConvoySeed {
    type Value = Option<SwarmChoice>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `swarm: prod` or `environment: prod`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = super::keys::Seen::default();
        let mut notes = Vec::new();
        let mut swarm = None;
        while let Some(key) = next_key::<A, TopConvoyKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                // The CLI's: it picked the environment before sending.
                TopConvoyKey::Environment => {
                    value(&mut map, super::seeds::text("an environment name"))?;
                }
                TopConvoyKey::Swarm => swarm = swarm_value(&mut map)?,
            }
        }
        Ok(swarm)
    }
}

pub(super) struct ConvoySeed;

impl<'de> DeserializeSeed<'de> for ConvoySeed {
    type Value = Convoy;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Convoy, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ConvoySeed {
    type Value = Convoy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping such as `probes: [...]` or `update: {...}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Convoy, A::Error> {
        let mut seen = super::keys::Seen::default();
        // Nothing in `x-convoy` is ignored with a note: `ConvoyKey` has no
        // ignored keys.
        let mut notes = Vec::new();
        let mut probes = Vec::new();
        let mut update = None;
        let mut secret_env = Vec::new();
        let mut gpu_sharing = false;
        let mut swarm = None;
        let mut reschedule = None;
        let mut pre_deploy = None;

        let mut ingress = None;
        while let Some(key) = next_key::<A, ConvoyKey>(&mut map, &mut seen, &mut notes)? {
            match key {
                ConvoyKey::Probes => probes = value(&mut map, ProbesSeed)?.unwrap_or_default(),
                ConvoyKey::Update => update = value(&mut map, ConvoyUpdateSeed)?,
                ConvoyKey::SecretEnv => {
                    secret_env = value(&mut map, SecretEnvSeed)?.unwrap_or_default();
                }
                ConvoyKey::GpuSharing => {
                    gpu_sharing = value(
                        &mut map,
                        super::seeds::scalar("`true` or `false`", crate::spec::values::boolean),
                    )?
                    .unwrap_or_default();
                }
                ConvoyKey::Swarm => swarm = swarm_value(&mut map)?,
                ConvoyKey::PreDeploy => pre_deploy = value(&mut map, PreDeploySeed)?,
                ConvoyKey::RescheduleAfter => {
                    reschedule = value(
                        &mut map,
                        super::seeds::scalar(
                            "a duration such as `2m`, or `never`",
                            reschedule_after,
                        ),
                    )?;
                }
                ConvoyKey::Ingress => ingress = value(&mut map, super::ingress::IngressSeed)?,
            }
        }
        Ok(Convoy {
            ingress,
            reschedule_after: reschedule,
            pre_deploy,
            probes,
            update,
            secret_env,
            gpu_sharing,
            swarm,
        })
    }
}

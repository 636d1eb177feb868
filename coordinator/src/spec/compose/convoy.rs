//! `x-convoy`, the block of Convoy's own settings in a service or unit:
//! every key in it is Convoy's, so an unknown one is an error. Its parts
//! are read by `probes`, `update` and `secrets` (`secret_env`).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::keys::{next_key, ConvoyKey};
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
            }
        }
        Ok(Convoy {
            probes,
            update,
            secret_env,
            gpu_sharing,
        })
    }
}

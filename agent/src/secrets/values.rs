//! Secret values in memory: the key of one secret version, and the values
//! a plan holds (zeroed on drop, `Debug` redacted).

use std::collections::BTreeMap;

use convoy_proto::SecretMount;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// One version of one secret of one environment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretKey {
    pub env: String,
    pub name: String,
    pub version: u64,
}

impl SecretKey {
    /// The key of the secret `mount` names, for a workload of `env`.
    pub fn of(env: &str, mount: &SecretMount) -> Self {
        Self {
            env: env.to_string(),
            name: mount.name.clone(),
            version: mount.version,
        }
    }

    /// The key of the secret `r` names (an ingress' certificate or key),
    /// for a workload of `env`.
    pub fn of_ref(env: &str, r: &convoy_proto::SecretRef) -> Self {
        Self {
            env: env.to_string(),
            name: r.name.clone(),
            version: r.version,
        }
    }

    /// The name of its file in the values cache: no name or environment in
    /// clear on the disk, and no path characters from the plan.
    pub(super) fn file_name(&self) -> String {
        hex::encode(Sha256::digest(self.to_string().as_bytes()))
    }
}

impl std::fmt::Display for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@v{}", self.env, self.name, self.version)
    }
}

/// A value, zeroed when dropped. No `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Value(pub(super) Zeroizing<Vec<u8>>);

/// Where the values a plan holds came from, for the error a missing one
/// gives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// Sent with the plan.
    #[default]
    Coordinator,
    /// Read back from `DIR/values` when the agent started with a stored plan.
    Cache,
}

/// The secret values a plan holds. `Debug` shows the keys, never a value.
#[derive(Clone, Default)]
pub struct SecretValues {
    pub(super) values: BTreeMap<SecretKey, Value>,
    pub(super) origin: Origin,
}

impl PartialEq for SecretValues {
    /// The same values, wherever they came from.
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValues")
            .field(
                "keys",
                &self
                    .values
                    .keys()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
            .field("values", &"<redacted>")
            .field("origin", &self.origin)
            .finish()
    }
}

impl SecretValues {
    pub fn with_origin(origin: Origin) -> Self {
        Self {
            values: BTreeMap::new(),
            origin,
        }
    }

    /// Adds (or replaces) one value; `value` is zeroed when dropped.
    pub fn insert(&mut self, key: SecretKey, value: Vec<u8>) {
        self.values.insert(key, Value(Zeroizing::new(value)));
    }

    pub fn get(&self, key: &SecretKey) -> Option<&[u8]> {
        self.values.get(key).map(|v| v.0.as_slice())
    }

    pub fn keys(&self) -> impl Iterator<Item = &SecretKey> {
        self.values.keys()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Those of `keys` it holds, with the same origin.
    pub fn subset<'a>(&self, keys: impl IntoIterator<Item = &'a SecretKey>) -> Self {
        let mut out = Self::with_origin(self.origin);
        for key in keys {
            if let Some(v) = self.values.get(key) {
                out.values.insert(key.clone(), v.clone());
            }
        }
        out
    }
}

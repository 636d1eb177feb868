//! The two shapes a secret takes: [`Sealed`] at rest (what the store
//! holds) and [`Secret`] in memory (redacted from `Debug`, zeroed on drop).

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Prefix of the sealed form: the scheme's version, so a later cipher can
/// be told apart.
const V1: &str = "xc20p1:";

/// A sealed value as stored: `xc20p1:HEX(nonce || ciphertext || tag)`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl Sealed {
    pub(super) fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(format!("{V1}{}", hex::encode(bytes)))
    }

    pub(super) fn bytes(&self) -> Result<Vec<u8>, &'static str> {
        let hex = self.0.strip_prefix(V1).ok_or("unknown sealing scheme")?;
        hex::decode(hex).map_err(|_| "not hex")
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(..)")
    }
}

/// A secret in memory: `Debug` prints `<redacted>`, and the value is zeroed
/// when dropped. Read it with [`Secret::expose`], only where it is used.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

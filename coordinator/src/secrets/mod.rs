//! Secrets at rest: values sealed with XChaCha20-Poly1305 under one key
//! kept in the coordinator's data directory (`secrets.key`, 32 random
//! bytes, mode 0600), so the store never holds a secret in plaintext.
//! Registry credentials are sealed under it directly; secrets (issue 15)
//! by envelope: each version's value under a fresh data key, the data key
//! sealed under this key-encryption key ([`Envelope`]), so a new key
//! re-wraps the data keys without touching the values.
//! Why this cipher and crate: docs/decisions/secrets-at-rest.md.

mod key;
mod sealed;

pub use key::{install_key, KEY_FILE, KEY_LEN};
pub use sealed::{Sealed, Secret};

use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Length of an XChaCha20-Poly1305 nonce: 192 bits, enough to draw at
/// random for every seal without counting.
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot {action} the secrets key {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secrets key {} holds {len} bytes, not {KEY_LEN}: restore it from a backup (the sealed secrets cannot be read without it)", path.display())]
    KeyLength { path: PathBuf, len: u64 },
    #[error("the secrets key {} is readable by other users (mode {mode:o}); run `chmod 600` on it", path.display())]
    KeyTooOpen { path: PathBuf, mode: u32 },
    #[error("the secrets key {} is not a regular file", path.display())]
    KeyNotFile { path: PathBuf },
    #[error("the sealed value for `{context}` is malformed: {reason}")]
    Malformed {
        context: String,
        reason: &'static str,
    },
    /// Wrong key, or the record was altered or moved to another key.
    #[error("the sealed value for `{context}` cannot be opened with this coordinator's secrets key (another key, or the record was altered)")]
    Open { context: String },
}

/// Seals and opens secrets with the coordinator's key. `context` (the
/// record's store key) is bound to each sealed value as associated data,
/// so a sealed value copied to another record does not open.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// The sealer of the key file in `data_dir`, created on first use.
    pub fn open_or_create(data_dir: &std::path::Path) -> Result<Self, SecretsError> {
        let key = key::load_or_create(&data_dir.join(KEY_FILE))?;
        Ok(Self::from_key(&key))
    }

    /// The sealer of an existing key file (`convoyd secrets rewrap
    /// --new-key FILE`): 32 bytes, mode 0600, never created here.
    pub fn from_key_file(path: &std::path::Path) -> Result<Self, SecretsError> {
        let key = key::load(path)?;
        Ok(Self::from_key(&key))
    }

    /// A sealer with a fresh key held in memory only (tests, and
    /// coordinators built without a data directory).
    pub fn ephemeral() -> Self {
        let key = zeroize::Zeroizing::new(rand::random::<[u8; KEY_LEN]>());
        Self::from_key(&key)
    }

    fn from_key(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Seals `plaintext` for the record `context`, with a random nonce.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Sealed {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        // Encryption fails only for messages over 256 GiB.
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Sealed::from_bytes(bytes)
    }

    /// Opens a value sealed for `context`.
    pub fn open(&self, context: &str, sealed: &Sealed) -> Result<Secret<Vec<u8>>, SecretsError> {
        let bytes = sealed.bytes().map_err(|reason| SecretsError::Malformed {
            context: context.to_string(),
            reason,
        })?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(SecretsError::Malformed {
                context: context.to_string(),
                reason: "too short",
            });
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        self.cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map(Secret::new)
            .map_err(|_| SecretsError::Open {
                context: context.to_string(),
            })
    }

    /// Opens a value sealed for `context` that must be UTF-8 text.
    pub fn open_string(
        &self,
        context: &str,
        sealed: &Sealed,
    ) -> Result<Secret<String>, SecretsError> {
        let bytes = self.open(context, sealed)?;
        String::from_utf8(bytes.expose().clone())
            .map(Secret::new)
            .map_err(|_| SecretsError::Malformed {
                context: context.to_string(),
                reason: "not UTF-8",
            })
    }
}

/// A value sealed by envelope: `value` under its own random data key, with
/// the record's context as associated data; `data_key` that key sealed
/// under the key-encryption key (the [`Sealer`]'s), with the context and
/// `#data-key` as associated data. Re-wrapping under a new key-encryption
/// key reseals `data_key` only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub data_key: Sealed,
    pub value: Sealed,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Envelope(..)")
    }
}

/// The associated data of a data key: its record's, told apart from the
/// value's so one cannot stand in for the other.
fn data_key_context(context: &str) -> String {
    format!("{context}#data-key")
}

impl Sealer {
    /// Seals `plaintext` for `context` under a fresh data key, and the data
    /// key under this key-encryption key.
    pub fn seal_envelope(&self, context: &str, plaintext: &[u8]) -> Envelope {
        let data_key = Zeroizing::new(rand::random::<[u8; KEY_LEN]>());
        let value = Self::from_key(&data_key).seal(context, plaintext);
        let data_key = self.seal(&data_key_context(context), &data_key[..]);
        Envelope { data_key, value }
    }

    /// Opens an envelope sealed for `context`.
    pub fn open_envelope(
        &self,
        context: &str,
        envelope: &Envelope,
    ) -> Result<Secret<Vec<u8>>, SecretsError> {
        let data_key = self.open_data_key(context, envelope)?;
        Self::from_key(&data_key).open(context, &envelope.value)
    }

    /// The envelope with its data key sealed under `to` instead of this
    /// key; the sealed value is unchanged.
    pub fn rewrap(
        &self,
        to: &Sealer,
        context: &str,
        envelope: &Envelope,
    ) -> Result<Envelope, SecretsError> {
        let data_key = self.open_data_key(context, envelope)?;
        Ok(Envelope {
            data_key: to.seal(&data_key_context(context), &data_key[..]),
            value: envelope.value.clone(),
        })
    }

    fn open_data_key(
        &self,
        context: &str,
        envelope: &Envelope,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, SecretsError> {
        let opened = self.open(&data_key_context(context), &envelope.data_key)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if opened.expose().len() != KEY_LEN {
            return Err(SecretsError::Malformed {
                context: context.to_string(),
                reason: "the data key is not 32 bytes",
            });
        }
        key.copy_from_slice(opened.expose());
        Ok(key)
    }
}

#[cfg(test)]
mod tests;

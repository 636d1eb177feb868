//! `convoy secret ... -o json`: secrets and their versions, never a value.

use convoy_proto as pb;
use serde::Serialize;

use crate::clock::rfc3339_ms;

// ---- Secrets (`convoy secret ...`; never a value) ----

/// A secret as `convoy secret set|generate|rotate|rm|list -o json` show it.
#[derive(Debug, Serialize, PartialEq)]
pub struct SecretJson {
    pub env: String,
    pub name: String,
    /// The current version.
    pub version: u64,
    /// When the current version was made (RFC 3339, UTC) and by which token.
    pub updated: String,
    pub updated_unix_ms: i64,
    pub updated_by: String,
    /// `set` or `generated (LENGTH CHARSET)`.
    pub origin: String,
    /// How many versions are kept.
    pub versions: u32,
    /// Each service or unit of its environment that uses it, by name;
    /// `NAME (vN)` when it runs another version than the current.
    pub used_by: Vec<String>,
}

impl From<pb::SecretInfo> for SecretJson {
    fn from(info: pb::SecretInfo) -> Self {
        let pb::SecretInfo {
            env,
            name,
            version,
            updated_unix_ms,
            updated_by,
            versions,
            used_by,
            origin,
        } = info;
        Self {
            env,
            name,
            version,
            updated: rfc3339_ms(updated_unix_ms),
            updated_unix_ms,
            updated_by,
            origin,
            versions,
            used_by,
        }
    }
}

/// `convoy secret list -o json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct SecretListJson {
    pub secrets: Vec<SecretJson>,
}

/// `convoy secret history -o json`: the kept versions, oldest first.
#[derive(Debug, Serialize, PartialEq)]
pub struct SecretHistoryJson {
    pub env: String,
    pub name: String,
    pub versions: Vec<SecretVersionJson>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SecretVersionJson {
    pub version: u64,
    pub created: String,
    pub created_unix_ms: i64,
    pub created_by: String,
    pub origin: String,
    pub current: bool,
}

impl From<pb::SecretVersionInfo> for SecretVersionJson {
    fn from(v: pb::SecretVersionInfo) -> Self {
        let pb::SecretVersionInfo {
            version,
            created_unix_ms,
            created_by,
            origin,
            current,
        } = v;
        Self {
            version,
            created: rfc3339_ms(created_unix_ms),
            created_unix_ms,
            created_by,
            origin,
            current,
        }
    }
}

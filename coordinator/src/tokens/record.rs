//! A token as stored at `tokens/ID`: its role, limits and lifetime, and
//! whether it may still be used.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{rfc3339, Role, TokenError};

/// A token as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Environments a deployer may touch; empty: all.
    #[serde(default)]
    pub envs: Vec<String>,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
    pub created_unix_ms: i64,
    /// 0: never.
    #[serde(default)]
    pub expires_unix_ms: i64,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub revoked_unix_ms: i64,
    #[serde(default)]
    pub created_by: String,
    /// Join tokens: labels every node enrolled with it gets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Join tokens: enrolments left.
    #[serde(default)]
    pub uses_left: u32,
    /// Join tokens: the only node name they enrol (empty: any).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
}

impl TokenRecord {
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_unix_ms != 0 && now_ms >= self.expires_unix_ms
    }

    fn kind(&self) -> &'static str {
        if self.role == Role::Join {
            "join token"
        } else {
            "token"
        }
    }

    pub fn info(&self) -> convoy_proto::TokenInfo {
        convoy_proto::TokenInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role.as_str().to_string(),
            envs: self.envs.clone(),
            created_unix_ms: self.created_unix_ms,
            expires_unix_ms: self.expires_unix_ms,
            revoked: self.revoked,
            created_by: self.created_by.clone(),
            uses_left: self.uses_left,
            labels: self.labels.clone().into_iter().collect(),
            node: self.node.clone(),
        }
    }
}

pub(super) fn check_live(rec: &TokenRecord, now_ms: i64) -> Result<(), TokenError> {
    if rec.revoked {
        return Err(TokenError::Revoked {
            kind: rec.kind(),
            id: rec.id.clone(),
        });
    }
    if rec.is_expired(now_ms) {
        return Err(TokenError::Expired {
            kind: rec.kind(),
            id: rec.id.clone(),
            at: rfc3339(rec.expires_unix_ms),
        });
    }
    Ok(())
}

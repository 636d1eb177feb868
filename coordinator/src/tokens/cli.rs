//! CLI tokens: made with a role (and, for deployers, the environments they
//! may touch), for `convoy` to call the coordinator with.

use std::collections::BTreeMap;

use super::{Role, TokenError, TokenRecord, Tokens};
use crate::{
    api::auth::{new_token, token_hash},
    state::now_unix_ms,
};

/// What a new CLI token is made with.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub envs: Vec<String>,
    /// 0: never expires.
    pub ttl_ms: i64,
}

impl Tokens {
    /// Makes a CLI token; returns its record and the secret (shown once).
    pub async fn create(
        &self,
        new: NewToken,
        created_by: &str,
    ) -> Result<(TokenRecord, String), TokenError> {
        if new.role == Role::Join {
            return Err(TokenError::Invalid(
                "join tokens are made with `convoy token create --join`".into(),
            ));
        }
        if new.role != Role::Deployer && !new.envs.is_empty() {
            return Err(TokenError::Invalid(format!(
                "--env limits deployer tokens only; a {} token cannot have one",
                new.role
            )));
        }
        if new.ttl_ms < 0 {
            return Err(TokenError::Invalid("the TTL must not be negative".into()));
        }
        let mut envs = new.envs;
        for e in &envs {
            if e.trim().is_empty() || e.contains(char::is_whitespace) {
                return Err(TokenError::Invalid(format!(
                    "invalid environment name `{e}`"
                )));
            }
        }
        envs.sort();
        envs.dedup();
        let secret = new_token();
        let now = now_unix_ms();
        let _w = self.write.lock().await;
        let id = self.fresh_id();
        let name = if new.name.trim().is_empty() {
            format!("{}-{id}", new.role)
        } else {
            new.name.trim().to_string()
        };
        let rec = TokenRecord {
            id,
            name,
            role: new.role,
            envs,
            sha256: token_hash(&secret),
            created_unix_ms: now,
            expires_unix_ms: if new.ttl_ms == 0 { 0 } else { now + new.ttl_ms },
            revoked: false,
            revoked_unix_ms: 0,
            created_by: created_by.to_string(),
            labels: BTreeMap::new(),
            uses_left: 0,
            node: String::new(),
        };
        self.save(rec.clone()).await?;
        Ok((rec, secret))
    }
}

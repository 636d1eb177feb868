//! Join tokens: made for `convoy-agent join`, each good for a number of
//! enrolments until it expires, and used up one enrolment at a time.

use std::collections::BTreeMap;

use super::{check_live, Role, TokenError, TokenRecord, Tokens};
use crate::{api::auth::token_hash, state::now_unix_ms};

/// A join token without a TTL lasts this long.
pub const DEFAULT_JOIN_TTL_MS: i64 = 3_600_000;

/// What a successful join grants the new node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGrant {
    pub token_id: String,
    pub labels: BTreeMap<String, String>,
}

/// What a new join token is made with.
#[derive(Debug, Clone, Default)]
pub struct NewJoinToken {
    /// 0: one hour.
    pub ttl_ms: i64,
    pub labels: BTreeMap<String, String>,
    /// 0: one.
    pub uses: u32,
    /// Empty: any node name.
    pub node: String,
}

impl Tokens {
    /// Makes a join token; returns its record and the secret (shown once).
    pub async fn create_join(
        &self,
        new: NewJoinToken,
        created_by: &str,
    ) -> Result<(TokenRecord, String), TokenError> {
        if new.ttl_ms < 0 {
            return Err(TokenError::Invalid("the TTL must not be negative".into()));
        }
        let bytes: [u8; 32] = rand::random();
        let secret = format!("convoyjoin_{}", hex::encode(bytes));
        let now = now_unix_ms();
        let ttl = if new.ttl_ms == 0 {
            DEFAULT_JOIN_TTL_MS
        } else {
            new.ttl_ms
        };
        let _w = self.write.lock().await;
        let id = self.fresh_id();
        let rec = TokenRecord {
            name: format!("join-{id}"),
            id,
            role: Role::Join,
            envs: Vec::new(),
            sha256: token_hash(&secret),
            created_unix_ms: now,
            expires_unix_ms: now + ttl,
            revoked: false,
            revoked_unix_ms: 0,
            created_by: created_by.to_string(),
            labels: new.labels,
            uses_left: new.uses.max(1),
            node: new.node,
        };
        self.save(rec.clone()).await?;
        Ok((rec, secret))
    }

    /// Atomically uses one use of a join token for `node`. A token made for
    /// another node name is refused without using it.
    pub async fn consume_join_token(
        &self,
        secret: &str,
        node: &str,
    ) -> Result<JoinGrant, TokenError> {
        let _w = self.write.lock().await;
        let mut rec = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            cache
                .by_secret(secret.trim())
                .filter(|r| r.role == Role::Join)
                .cloned()
                .ok_or(TokenError::Unknown)?
        };
        check_live(&rec, now_unix_ms())?;
        if !rec.node.is_empty() && rec.node != node {
            return Err(TokenError::Invalid(format!(
                "join token `{}` is for node `{}`, not `{node}`",
                rec.id, rec.node
            )));
        }
        if rec.uses_left == 0 {
            return Err(TokenError::UsedUp(rec.id));
        }
        rec.uses_left -= 1;
        self.save(rec.clone()).await?;
        Ok(JoinGrant {
            token_id: rec.id,
            labels: rec.labels,
        })
    }
}

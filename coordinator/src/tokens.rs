//! CLI tokens with roles, and join tokens for agent enrolment. Each token is
//! a record at `tokens/ID` holding the SHA-256 of its secret, never the
//! secret. An in-memory copy behind a `std::sync::RwLock` lets the (sync)
//! gRPC interceptor look a token up by hash; every change goes through one
//! tokio mutex, store first, then the copy, so two concurrent joins cannot
//! both take a join token's last use.
//!
//! This module keeps the records and their in-memory copy; `role` is what a
//! token may do, `record` a token as stored, `cli` and `join` make the two
//! kinds of token, `admin` the first admin token.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{Arc, RwLock},
};

use crate::{
    api::auth::token_hash,
    state::now_unix_ms,
    store::{self, Op, Store, StoreError},
};

mod admin;
mod cli;
mod join;
mod record;
mod role;
#[cfg(test)]
mod tests;

pub use admin::ADMIN_ID;
pub use cli::NewToken;
pub use join::{JoinGrant, NewJoinToken, DEFAULT_JOIN_TTL_MS};
pub use record::TokenRecord;
pub use role::Role;

use admin::{admin_record, LEGACY_ADMIN_KEY};
use record::check_live;

const PREFIX: &str = "tokens/";

/// Errors of token lookup and management. `Display` is a user-facing line.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("unknown token")]
    Unknown,
    #[error("{kind} `{id}` expired at {at}")]
    Expired {
        kind: &'static str,
        id: String,
        at: String,
    },
    #[error("join token `{0}` is used up")]
    UsedUp(String),
    #[error("{kind} `{id}` was revoked")]
    Revoked { kind: &'static str, id: String },
    #[error(
        "`{0}` is a join token: it enrols agents (`convoy-agent join`) and cannot be used with the CLI"
    )]
    JoinTokenAsCli(String),
    #[error("no token with id `{0}`: see `convoy token list`")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the admin token to {path}: {message}")]
    AdminFile { path: String, message: String },
}

#[derive(Default)]
struct Cache {
    by_id: BTreeMap<String, TokenRecord>,
    /// sha256 → id.
    by_hash: HashMap<String, String>,
}

impl Cache {
    fn put(&mut self, rec: TokenRecord) {
        self.by_hash.insert(rec.sha256.clone(), rec.id.clone());
        self.by_id.insert(rec.id.clone(), rec);
    }

    fn by_secret(&self, secret: &str) -> Option<&TokenRecord> {
        let id = self.by_hash.get(&token_hash(secret))?;
        self.by_id.get(id)
    }
}

pub struct Tokens {
    store: Arc<dyn Store>,
    cache: RwLock<Cache>,
    write: tokio::sync::Mutex<()>,
}

impl Tokens {
    /// Loads every token record. Creates the admin token on first start
    /// (its secret in `admin_token_file`, mode 0600) or migrates the hash
    /// kept at `auth/admin` by earlier versions.
    pub async fn load(store: Arc<dyn Store>, admin_token_file: &Path) -> Result<Self, TokenError> {
        let mut cache = Cache::default();
        for (_, rec) in store::scan_json::<TokenRecord>(&*store, PREFIX).await? {
            cache.put(rec);
        }
        if !cache.by_id.contains_key(ADMIN_ID) {
            let rec = admin_record(&*store, admin_token_file).await?;
            store
                .apply(vec![
                    Op::put_json(key(ADMIN_ID), &rec),
                    Op::Delete(LEGACY_ADMIN_KEY.to_string()),
                ])
                .await?;
            cache.put(rec);
        }
        Ok(Self {
            store,
            cache: RwLock::new(cache),
            write: tokio::sync::Mutex::new(()),
        })
    }

    /// The record of a CLI token, if it is known, not expired, not revoked
    /// and not a join token. Sync: the interceptor calls it.
    pub fn authenticate(&self, secret: &str, now_ms: i64) -> Result<TokenRecord, TokenError> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let rec = cache.by_secret(secret).ok_or(TokenError::Unknown)?;
        if rec.role == Role::Join {
            return Err(TokenError::JoinTokenAsCli(rec.id.clone()));
        }
        check_live(rec, now_ms)?;
        Ok(rec.clone())
    }

    /// Every token, oldest first.
    pub fn list(&self) -> Vec<TokenRecord> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = cache.by_id.values().cloned().collect();
        all.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        all
    }

    /// Revokes a token by id; its next call is refused. Revoking twice is
    /// not an error.
    pub async fn revoke(&self, id: &str) -> Result<TokenRecord, TokenError> {
        let _w = self.write.lock().await;
        let mut rec = self
            .get(id)
            .ok_or_else(|| TokenError::NotFound(id.to_string()))?;
        if !rec.revoked {
            rec.revoked = true;
            rec.revoked_unix_ms = now_unix_ms();
            self.save(rec.clone()).await?;
        }
        Ok(rec)
    }
    fn get(&self, id: &str) -> Option<TokenRecord> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.by_id.get(id).cloned()
    }

    /// A random 8-hex id no token has. Called with the write lock held.
    fn fresh_id(&self) -> String {
        loop {
            let bytes: [u8; 4] = rand::random();
            let id = hex::encode(bytes);
            if self.get(&id).is_none() {
                return id;
            }
        }
    }

    /// Store first, then the cache. Called with the write lock held.
    async fn save(&self, rec: TokenRecord) -> Result<(), TokenError> {
        self.store
            .apply(vec![Op::put_json(key(&rec.id), &rec)])
            .await?;
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .put(rec);
        Ok(())
    }
}

fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

pub use convoy_api::clock::rfc3339;

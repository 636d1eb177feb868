//! CLI tokens with roles, and join tokens for agent enrolment. Each token is
//! a record at `tokens/ID` holding the SHA-256 of its secret, never the
//! secret. An in-memory copy behind a `std::sync::RwLock` lets the (sync)
//! gRPC interceptor look a token up by hash; every change goes through one
//! tokio mutex, store first, then the copy, so two concurrent joins cannot
//! both take a join token's last use.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::Path,
    sync::{Arc, RwLock},
};

use serde::{Deserialize, Serialize};

use crate::{
    api::auth::{new_token, token_hash},
    pki,
    state::now_unix_ms,
    store::{self, Op, Store, StoreError},
};

/// The id of the admin token made on first start.
pub const ADMIN_ID: &str = "admin";
/// Before tokens had records, the admin token's hash lived here.
const LEGACY_ADMIN_KEY: &str = "auth/admin";
const PREFIX: &str = "tokens/";
/// A join token without a TTL lasts this long.
pub const DEFAULT_JOIN_TTL_MS: i64 = 3_600_000;

/// What a token may do; see `api::control` for the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Deployer,
    Viewer,
    /// Enrols agents; never accepted as a CLI token.
    Join,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
            Role::Viewer => "viewer",
            Role::Join => "join",
        }
    }

    /// A role a CLI token may be created with.
    pub fn parse_cli(s: &str) -> Result<Role, TokenError> {
        match s {
            "admin" => Ok(Role::Admin),
            "deployer" => Ok(Role::Deployer),
            "viewer" => Ok(Role::Viewer),
            other => Err(TokenError::Invalid(format!(
                "unknown role `{other}`: use admin, deployer or viewer"
            ))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// What a successful join grants the new node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGrant {
    pub token_id: String,
    pub labels: BTreeMap<String, String>,
}

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

/// What a new CLI token is made with.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub envs: Vec<String>,
    /// 0: never expires.
    pub ttl_ms: i64,
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

fn check_live(rec: &TokenRecord, now_ms: i64) -> Result<(), TokenError> {
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

#[derive(Deserialize)]
struct LegacyAdmin {
    sha256: String,
    created_unix_ms: i64,
}

/// The admin token's record: from `auth/admin` if an earlier version made
/// one, else a new token written to `path`.
async fn admin_record(store: &dyn Store, path: &Path) -> Result<TokenRecord, TokenError> {
    let (sha256, created_unix_ms) =
        match store::get_json::<LegacyAdmin>(store, LEGACY_ADMIN_KEY).await? {
            Some(old) => (old.sha256, old.created_unix_ms),
            None => {
                let token = new_token();
                pki::write_private(path, format!("{token}\n").as_bytes()).map_err(|e| {
                    TokenError::AdminFile {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    }
                })?;
                (token_hash(&token), now_unix_ms())
            }
        };
    Ok(TokenRecord {
        id: ADMIN_ID.to_string(),
        name: ADMIN_ID.to_string(),
        role: Role::Admin,
        envs: Vec::new(),
        sha256,
        created_unix_ms,
        expires_unix_ms: 0,
        revoked: false,
        revoked_unix_ms: 0,
        created_by: "convoyd".to_string(),
        labels: BTreeMap::new(),
        uses_left: 0,
        node: String::new(),
    })
}

pub use convoy_api::clock::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    async fn fresh() -> (tempfile::TempDir, Arc<dyn Store>, Tokens) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("store")).unwrap());
        let tokens = Tokens::load(store.clone(), &dir.path().join("admin.token"))
            .await
            .unwrap();
        (dir, store, tokens)
    }

    fn deployer(envs: &[&str], ttl_ms: i64) -> NewToken {
        NewToken {
            name: "ci".into(),
            role: Role::Deployer,
            envs: envs.iter().map(|s| s.to_string()).collect(),
            ttl_ms,
        }
    }

    #[tokio::test]
    async fn the_admin_token_is_made_once_and_found_by_its_secret() {
        let (dir, store, tokens) = fresh().await;
        let path = dir.path().join("admin.token");
        let secret = std::fs::read_to_string(&path).unwrap();
        let rec = tokens.authenticate(secret.trim(), now_unix_ms()).unwrap();
        assert_eq!((rec.id.as_str(), rec.role), ("admin", Role::Admin));
        drop(tokens);
        let again = Tokens::load(store, &path).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), secret);
        assert!(again.authenticate(secret.trim(), now_unix_ms()).is_ok());
    }

    #[tokio::test]
    async fn the_legacy_admin_hash_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("store")).unwrap());
        let secret = new_token();
        let legacy = serde_json::json!({"sha256": token_hash(&secret), "created_unix_ms": 5});
        store
            .apply(vec![Op::put_json(LEGACY_ADMIN_KEY, &legacy)])
            .await
            .unwrap();
        let path = dir.path().join("admin.token");
        let tokens = Tokens::load(store.clone(), &path).await.unwrap();
        assert!(!path.exists(), "no new admin token is written");
        let rec = tokens.authenticate(&secret, now_unix_ms()).unwrap();
        assert_eq!(
            (rec.id.as_str(), rec.name.as_str(), rec.created_unix_ms),
            ("admin", "admin", 5)
        );
        assert!(store.get(LEGACY_ADMIN_KEY).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn lookup_expiry_and_revocation() {
        let (_dir, store, tokens) = fresh().await;
        let (rec, secret) = tokens
            .create(deployer(&["staging"], 60_000), "admin (admin)")
            .await
            .unwrap();
        let now = now_unix_ms();
        assert_eq!(tokens.authenticate(&secret, now).unwrap().id, rec.id);
        assert!(matches!(
            tokens.authenticate("convoy_nope", now),
            Err(TokenError::Unknown)
        ));
        let err = tokens.authenticate(&secret, now + 61_000).unwrap_err();
        assert!(matches!(err, TokenError::Expired { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with(&format!("token `{}` expired at 20", rec.id)));

        tokens.revoke(&rec.id).await.unwrap();
        let err = tokens.authenticate(&secret, now).unwrap_err();
        assert_eq!(err.to_string(), format!("token `{}` was revoked", rec.id));
        assert!(matches!(
            tokens.revoke("nope").await,
            Err(TokenError::NotFound(_))
        ));

        // The store holds the hash, never the secret.
        for (_, bytes) in store.scan_prefix("").await.unwrap() {
            assert!(!String::from_utf8_lossy(&bytes).contains(&secret));
        }
        // Revocation survives a restart.
        drop(tokens);
        let again = Tokens::load(store, Path::new("/nonexistent/admin.token"))
            .await
            .unwrap();
        assert!(matches!(
            again.authenticate(&secret, now),
            Err(TokenError::Revoked { .. })
        ));
    }

    #[tokio::test]
    async fn envs_only_for_deployers_and_join_tokens_are_not_cli_tokens() {
        let (_dir, _store, tokens) = fresh().await;
        let mut viewer = deployer(&["x"], 0);
        viewer.role = Role::Viewer;
        assert!(matches!(
            tokens.create(viewer, "a").await,
            Err(TokenError::Invalid(_))
        ));
        let (_, join) = tokens
            .create_join(NewJoinToken::default(), "a")
            .await
            .unwrap();
        assert!(join.starts_with("convoyjoin_"));
        assert!(matches!(
            tokens.authenticate(&join, now_unix_ms()),
            Err(TokenError::JoinTokenAsCli(_))
        ));
        let (_, cli) = tokens.create(deployer(&[], 0), "a").await.unwrap();
        assert!(matches!(
            tokens.consume_join_token(&cli, "n1").await,
            Err(TokenError::Unknown)
        ));
    }

    #[tokio::test]
    async fn join_tokens_are_used_up_and_expire() {
        let (_dir, _store, tokens) = fresh().await;
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let (rec, secret) = tokens
            .create_join(
                NewJoinToken {
                    ttl_ms: 0,
                    labels: labels.clone(),
                    uses: 2,
                    node: String::new(),
                },
                "a",
            )
            .await
            .unwrap();
        assert!(rec.expires_unix_ms > now_unix_ms() + DEFAULT_JOIN_TTL_MS - 10_000);
        for _ in 0..2 {
            let grant = tokens.consume_join_token(&secret, "n1").await.unwrap();
            assert_eq!(grant.token_id, rec.id);
            assert_eq!(grant.labels, labels);
        }
        let err = tokens.consume_join_token(&secret, "n1").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("join token `{}` is used up", rec.id)
        );

        let (rec, secret) = tokens
            .create_join(
                NewJoinToken {
                    ttl_ms: 1,
                    ..Default::default()
                },
                "a",
            )
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let err = tokens.consume_join_token(&secret, "n1").await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("join token `{}` expired at ", rec.id)),
            "{err}"
        );

        let (rec, secret) = tokens
            .create_join(NewJoinToken::default(), "a")
            .await
            .unwrap();
        tokens.revoke(&rec.id).await.unwrap();
        assert!(matches!(
            tokens.consume_join_token(&secret, "n1").await,
            Err(TokenError::Revoked { .. })
        ));
        assert!(matches!(
            tokens.consume_join_token("convoyjoin_nope", "n1").await,
            Err(TokenError::Unknown)
        ));
    }

    #[tokio::test]
    async fn a_join_token_for_one_node_name_refuses_others_without_being_used() {
        let (_dir, _store, tokens) = fresh().await;
        let (rec, secret) = tokens
            .create_join(
                NewJoinToken {
                    node: "gpu-3".into(),
                    ..Default::default()
                },
                "a",
            )
            .await
            .unwrap();
        let err = tokens
            .consume_join_token(&secret, "gpu-4")
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("join token `{}` is for node `gpu-3`, not `gpu-4`", rec.id)
        );
        // Not used up by the refusal: the right node still enrols.
        tokens.consume_join_token(&secret, "gpu-3").await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_joins_cannot_both_take_the_last_use() {
        let (_dir, _store, tokens) = fresh().await;
        let tokens = Arc::new(tokens);
        let (_, secret) = tokens
            .create_join(
                NewJoinToken {
                    uses: 3,
                    ..Default::default()
                },
                "a",
            )
            .await
            .unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let t = tokens.clone();
                let s = secret.clone();
                tokio::spawn(async move { t.consume_join_token(&s, "n1").await.is_ok() })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        assert_eq!(ok, 3);
    }
}

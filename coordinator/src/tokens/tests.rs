use super::*;
use crate::api::auth::new_token;
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

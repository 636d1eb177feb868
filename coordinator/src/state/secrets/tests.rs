use super::*;

const CANARY: &str = "canary-7f3a9c-secret-value";

async fn coordinator(store: &Arc<dyn Store>, sealer: &Sealer) -> Arc<Coordinator> {
    Coordinator::load_sealed(
        store.clone(),
        Liveness::default(),
        CancellationToken::new(),
        sealer.clone(),
    )
    .await
    .unwrap()
}

fn given(value: &str) -> SecretValue {
    SecretValue::Given(Secret::new(value.as_bytes().to_vec()))
}

/// Every byte the sled store holds, as one lossy string.
fn store_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in walk(dir) {
        all.extend(std::fs::read(entry).unwrap_or_default());
    }
    all
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_secret_is_sealed_at_rest_versioned_and_opens_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
    let sealer = Sealer::ephemeral();
    let coord = coordinator(&store, &sealer).await;

    let info = coord
        .write_secret(
            "prod",
            "db-password",
            given(CANARY),
            SecretWrite::Create,
            "admin (a1)",
        )
        .await
        .unwrap();
    assert_eq!((info.env.as_str(), info.version), ("prod", 1));
    assert_eq!(info.updated_by, "admin (a1)");
    assert_eq!(info.origin, "set");
    assert!(info.used_by.is_empty());
    // `set` again is refused; `rotate` makes version 2.
    let err = coord
        .write_secret("prod", "db-password", given("x"), SecretWrite::Create, "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already exists") && err.contains("rotate"),
        "{err}"
    );
    let info = coord
        .write_secret(
            "prod",
            "db-password",
            SecretValue::Generate {
                length: 40,
                charset: Charset::Hex,
            },
            SecretWrite::Rotate,
            "deployer (d1)",
        )
        .await
        .unwrap();
    assert_eq!(info.version, 2);
    assert_eq!(info.origin, "generated (40 hex)");
    let generated = coord.open_secret("prod", "db-password").await.unwrap();
    assert_eq!(generated.expose().len(), 40);
    assert!(generated.expose().iter().all(u8::is_ascii_hexdigit));
    let generated = generated.expose().clone();
    coord
        .write_secret(
            "prod",
            "db-password",
            given(CANARY),
            SecretWrite::Rotate,
            "t",
        )
        .await
        .unwrap();

    // At rest: no value, in the record or anywhere in the store's files.
    let raw = store
        .get(&secret_key("prod", "db-password"))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains(CANARY), "{text}");
    assert!(
        text.contains("xc20p1:") && text.contains("data_key"),
        "{text}"
    );
    let (info, versions) = coord.secret_history("prod", "db-password").await.unwrap();
    assert_eq!(info.version, 3);
    let numbers: Vec<_> = versions.iter().map(|v| (v.version, v.current)).collect();
    assert_eq!(numbers, vec![(1, false), (2, false), (3, true)]);
    let listed = coord.secrets("", |_| true).await;
    assert_eq!(listed.len(), 1);
    assert!(coord.secrets("staging", |_| true).await.is_empty());
    assert!(coord.secrets("", |e| e != "prod").await.is_empty());

    // A restart with the same key opens the current value; another key
    // stops the load, naming the record.
    drop(coord);
    let coord = coordinator(&store, &sealer).await;
    let value = coord.open_secret("prod", "db-password").await.unwrap();
    assert_eq!(value.expose(), CANARY.as_bytes());
    assert_ne!(value.expose(), &generated);
    drop(coord);
    assert!(!contains(&store_bytes(dir.path()), CANARY.as_bytes()));
    let err = Coordinator::load_sealed(
        store.clone(),
        Liveness::default(),
        CancellationToken::new(),
        Sealer::ephemeral(),
    )
    .await
    .err()
    .expect("another key cannot open the secret");
    assert!(
        err.to_string().contains("secrets/prod/db-password"),
        "{err}"
    );

    // Removal: gone from memory and store; a second one says not found.
    let coord = coordinator(&store, &sealer).await;
    coord.remove_secret("prod", "db-password").await.unwrap();
    assert!(store
        .get(&secret_key("prod", "db-password"))
        .await
        .unwrap()
        .is_none());
    let err = coord
        .remove_secret("prod", "db-password")
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::SecretNotFound { .. }), "{err}");
    assert!(err.to_string().contains("`db-password`") && err.to_string().contains("`prod`"));
}

#[tokio::test]
async fn only_the_last_versions_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
    let coord = coordinator(&store, &Sealer::ephemeral()).await;
    coord
        .write_secret("", "token", given("v1"), SecretWrite::Create, "t")
        .await
        .unwrap();
    for i in 2..=14 {
        coord
            .write_secret(
                "",
                "token",
                given(&format!("v{i}")),
                SecretWrite::Rotate,
                "t",
            )
            .await
            .unwrap();
    }
    let (info, versions) = coord.secret_history("", "token").await.unwrap();
    assert_eq!(info.env, DEFAULT_ENV);
    assert_eq!((info.version, info.versions), (14, KEEP_VERSIONS as u32));
    let numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, (5..=14).collect::<Vec<_>>());
    assert_eq!(
        coord
            .open_secret(DEFAULT_ENV, "token")
            .await
            .unwrap()
            .expose(),
        b"v14"
    );
}

#[tokio::test]
async fn bad_names_values_and_lengths_are_refused_naming_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
    let coord = coordinator(&store, &Sealer::ephemeral()).await;
    let long = "a".repeat(MAX_SECRET_NAME + 1);
    for name in ["", "-x", ".x", "a/b", "a b", "é", long.as_str()] {
        let err = coord
            .write_secret("prod", name, given("v"), SecretWrite::Create, "t")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid secret name"), "{name}: {err}");
    }
    let ok = "a".repeat(MAX_SECRET_NAME);
    for name in ["a", "A_b.c-9", "9lives", ok.as_str()] {
        check_secret_name(name).unwrap();
    }
    let err = coord
        .write_secret("prod", "empty", given(""), SecretWrite::Create, "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`empty`") && err.contains("`prod`") && err.contains("empty"));
    let big = SecretValue::Given(Secret::new(vec![b'x'; MAX_SECRET_BYTES + 1]));
    let err = coord
        .write_secret("prod", "big", big, SecretWrite::Create, "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`big`") && err.contains("65536 bytes"),
        "{err}"
    );
    let big = SecretValue::Given(Secret::new(vec![b'x'; MAX_SECRET_BYTES]));
    coord
        .write_secret("prod", "big", big, SecretWrite::Create, "t")
        .await
        .unwrap();
    for length in [0, MAX_GENERATED_LENGTH + 1] {
        let err = coord
            .write_secret(
                "prod",
                "gen",
                SecretValue::Generate {
                    length,
                    charset: Charset::Alnum,
                },
                SecretWrite::Create,
                "t",
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("`gen`") && err.contains("length"), "{err}");
    }
    let err = coord
        .write_secret("Prod", "x", given("v"), SecretWrite::Create, "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid environment"), "{err}");
    let err = coord
        .write_secret("prod", "nope", given("v"), SecretWrite::Rotate, "t")
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::SecretNotFound { .. }), "{err}");
    assert!(Charset::parse("base32").is_err());
}

#[test]
fn generated_values_use_their_charset_and_differ() {
    for (charset, ok) in [
        (
            Charset::Alnum,
            (|b: &u8| b.is_ascii_alphanumeric()) as fn(&u8) -> bool,
        ),
        (Charset::Hex, |b: &u8| {
            b.is_ascii_hexdigit() && !b.is_ascii_uppercase()
        }),
        (Charset::Base64, |b: &u8| {
            b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/'
        }),
        (Charset::UrlSafe, |b: &u8| {
            b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'
        }),
    ] {
        let a = generate_value(64, charset);
        let b = generate_value(64, charset);
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().iter().all(ok), "{charset:?}");
        assert_ne!(a.expose(), b.expose());
        assert_eq!(Charset::parse(charset.word()).unwrap(), charset);
    }
}

#[tokio::test]
async fn a_rewrap_moves_every_value_to_the_new_key_and_the_old_key_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
    let old = Sealer::ephemeral();
    let coord = coordinator(&store, &old).await;
    coord
        .write_secret("prod", "a", given("one"), SecretWrite::Create, "t")
        .await
        .unwrap();
    coord
        .write_secret("prod", "a", given("two"), SecretWrite::Rotate, "t")
        .await
        .unwrap();
    coord
        .write_secret("staging", "b", given("three"), SecretWrite::Create, "t")
        .await
        .unwrap();
    coord
        .set_registry_auth("127.0.0.1:5000", "ci", Secret::new("pw".into()), "t")
        .await
        .unwrap();
    let before = store.scan_prefix("secrets/").await.unwrap();

    let new = Sealer::ephemeral();
    let done = coord.rewrap_all(&new).await.unwrap();
    assert_eq!(
        done,
        Rewrapped {
            secrets: 2,
            versions: 3,
            registry_logins: 1,
            notifiers: 0
        }
    );
    drop(coord);
    let after = store.scan_prefix("secrets/").await.unwrap();
    assert_ne!(before, after, "every data key was resealed");

    // The new key opens everything, registry login included.
    let coord = coordinator(&store, &new).await;
    assert_eq!(
        coord.open_secret("prod", "a").await.unwrap().expose(),
        b"two"
    );
    assert_eq!(
        coord.open_secret("staging", "b").await.unwrap().expose(),
        b"three"
    );
    let desired = coord.desired.lock().await;
    assert_eq!(desired.registries["127.0.0.1:5000"].password.expose(), "pw");
    for rec in desired.secrets.values() {
        for v in &rec.versions {
            let context = version_context(&rec.env, &rec.name, v.version);
            assert!(new.open_envelope(&context, &v.sealed).is_ok());
            let err = old.open_envelope(&context, &v.sealed).unwrap_err();
            assert!(matches!(err, SecretsError::Open { .. }), "{err}");
        }
    }
    drop(desired);
    drop(coord);
    // The old key opens nothing: the load stops at the first record.
    assert!(Coordinator::load_sealed(
        store.clone(),
        Liveness::default(),
        CancellationToken::new(),
        old,
    )
    .await
    .is_err());
}

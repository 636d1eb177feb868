use super::*;

fn sample() -> Snapshot {
    let dump = StoreDump {
        backend: "sled".into(),
        location: "/old/store".into(),
        entries: vec![
            ("audit/00000000000000000001-000000".into(), b"{}".to_vec()),
            (PLAN_GENERATION_KEY.into(), b"41".to_vec()),
            ("services/default/web".into(), vec![0, 1, 2, 255]),
        ],
    };
    let files = vec![
        ("pki/ca.pem".into(), b"CERT".to_vec()),
        ("pki/ca.key".into(), b"KEY".to_vec()),
        (ADMIN_TOKEN_FILE.into(), b"TOKEN".to_vec()),
    ];
    Snapshot::new(dump, files)
}

fn decode_err(bytes: &[u8]) -> String {
    Snapshot::decode(bytes, Path::new("/b/snap"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "decoded".into())
}

#[test]
fn a_snapshot_reads_back_as_written() {
    let snap = sample();
    let bytes = snap.encode();
    let back = Snapshot::decode(&bytes, Path::new("f")).unwrap();
    assert_eq!(back, snap);
    assert_eq!(back.header.keys, 3);
    // The header line alone is JSON.
    let first = bytes.split(|b| *b == b'\n').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(first).unwrap();
    assert_eq!(header["magic"], MAGIC);
    assert_eq!(header["format"], FORMAT);
}

#[test]
fn a_truncated_snapshot_is_refused_as_truncated_at_every_length() {
    let bytes = sample().encode();
    let header_end = bytes.iter().position(|b| *b == b'\n').unwrap();
    for len in 0..bytes.len() {
        let err = decode_err(&bytes[..len]);
        if len <= header_end {
            assert!(err.contains("is not a Convoy snapshot"), "{len}: {err}");
        } else {
            assert!(err.contains("is truncated"), "{len}: {err}");
        }
        assert!(err.starts_with("/b/snap "), "{err}");
    }
}

#[test]
fn a_flipped_byte_in_the_body_is_refused_by_the_checksum() {
    let mut bytes = sample().encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = decode_err(&bytes);
    assert!(
        err.contains("is corrupt") && err.contains("SHA-256"),
        "{err}"
    );
}

#[test]
fn other_files_and_other_formats_are_named() {
    assert!(decode_err(b"hello\nworld").contains("not a snapshot header"));
    let mut snap = sample();
    snap.header.magic = "other".into();
    assert!(decode_err(&snap.encode()).contains("says `other`"));
    let mut snap = sample();
    snap.header.format = 2;
    assert!(decode_err(&snap.encode()).contains("format 2"));
    let mut bytes = sample().encode();
    bytes.push(0);
    assert!(decode_err(&bytes).contains("follow the body"));
}

#[test]
fn a_file_record_cannot_name_a_path_outside_the_data_files() {
    let dump = StoreDump {
        backend: "sled".into(),
        location: "x".into(),
        entries: vec![],
    };
    let snap = Snapshot::new(dump, vec![("../../etc/passwd".into(), b"x".to_vec())]);
    let err = decode_err(&snap.encode());
    assert!(err.contains("`../../etc/passwd` is not one"), "{err}");
}

#[test]
fn write_file_refuses_an_existing_file_and_leaves_no_temp_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.snap");
    write_file(&file, b"one", false).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let err = write_file(&file, b"two", false).unwrap_err().to_string();
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"one");
    write_file(&file, b"two", true).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"two");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[tokio::test]
async fn restore_into_refuses_a_store_with_data_and_moves_the_plan_generation_on() {
    let snap = sample();
    let full = MemStore::new([("nodes/n1".to_string(), b"{}".to_vec())]);
    let err = restore_into(&full, &snap).await.unwrap_err().to_string();
    assert!(err.contains("already holds data (key `nodes/n1`)"), "{err}");
    assert_eq!(full.scan_prefix("").await.unwrap().len(), 1);

    let empty = MemStore::new([]);
    let generation = restore_into(&empty, &snap).await.unwrap();
    assert!(generation >= 41 + PLAN_GENERATION_MARGIN, "{generation}");
    let stored = crate::store::get_json::<u64>(&empty, PLAN_GENERATION_KEY)
        .await
        .unwrap();
    assert_eq!(stored, Some(generation));
    assert_eq!(
        empty.get("services/default/web").await.unwrap(),
        Some(vec![0, 1, 2, 255])
    );
    let audit = empty.scan_prefix("audit/").await.unwrap();
    assert_eq!(audit.len(), 2);
    assert!(String::from_utf8_lossy(&audit[1].1).contains("snapshot.restore"));
}

/// A real coordinator's store with a secret, saved offline and restored
/// into a new directory: with the key it loads and the secret opens;
/// without one it is refused before anything is written; with another key
/// too.
#[tokio::test]
async fn save_and_restore_through_sled_with_and_without_the_secrets_key() {
    let old = tempfile::tempdir().unwrap();
    let data = old.path().join("data");
    pki::create_dir_private(&data).unwrap();
    pki::Ca::load_or_create(&PkiPaths::new(&data)).unwrap();
    std::fs::write(data.join(ADMIN_TOKEN_FILE), "tok").unwrap();
    let sealer = Sealer::open_or_create(&data).unwrap();
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&data.join(STORE_DIR)).unwrap());
        let coord = Coordinator::load_sealed(
            store.clone(),
            Liveness::default(),
            CancellationToken::new(),
            sealer,
        )
        .await
        .unwrap();
        coord
            .write_secret(
                "default",
                "db",
                crate::state::SecretValue::Given(crate::secrets::Secret::new(b"pw".to_vec())),
                crate::state::SecretWrite::Create,
                "test",
            )
            .await
            .unwrap();
        let file = old.path().join("s.snap");
        let saved = save_from_store(&*store, &data, &file, false).await.unwrap();
        assert!(saved.keys >= 1, "{saved}");
        assert_eq!(saved.secrets, 1);
    }
    let file = old.path().join("s.snap");
    let snap = Snapshot::decode(&std::fs::read(&file).unwrap(), &file).unwrap();
    assert!(snap.has_sealed());
    assert!(!snap.files.iter().any(|(f, _)| f.contains("secrets")));

    // No key: refused, nothing written.
    let target = old.path().join("new");
    let err = restore(&file, &target, None).await.unwrap_err().to_string();
    assert!(err.contains("--secrets-key"), "{err}");
    assert!(!target.exists());

    // Another key: refused, nothing written.
    let other = old.path().join("other.key");
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&other)
            .unwrap();
        f.write_all(&[7u8; secrets::KEY_LEN]).unwrap();
    }
    let err = restore(&file, &target, Some(&other))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be opened"), "{err}");
    assert!(!target.exists());

    // The right key: restored, and the restored store loads with it.
    let key = data.join(secrets::KEY_FILE);
    let done = restore(&file, &target, Some(&key)).await.unwrap();
    assert!(done.key_checked, "{done}");
    assert_eq!(done.secrets, 1);
    assert_eq!(
        std::fs::read(target.join("pki/ca.key")).unwrap(),
        std::fs::read(data.join("pki/ca.key")).unwrap()
    );
    assert_eq!(
        std::fs::read(target.join(secrets::KEY_FILE)).unwrap(),
        std::fs::read(&key).unwrap()
    );

    // A second restore into the same directory is refused.
    let err = restore(&file, &target, Some(&key))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already has a store with data"), "{err}");
}

/// A snapshot with nothing sealed, restored without a key, leaves the old
/// key's check behind, so the new coordinator's own key passes
/// `server::check_trust`; with the key, the check comes back and passes.
#[tokio::test]
async fn the_key_check_travels_only_with_the_key() {
    let old = tempfile::tempdir().unwrap();
    let data = old.path().join("data");
    pki::create_dir_private(&data).unwrap();
    let paths = PkiPaths::new(&data);
    let ca = pki::Ca::load_or_create(&paths).unwrap();
    std::fs::write(data.join(ADMIN_TOKEN_FILE), "tok").unwrap();
    let sealer = Sealer::open_or_create(&data).unwrap();
    let file = old.path().join("s.snap");
    {
        let store = SledStore::open(&data.join(STORE_DIR)).unwrap();
        crate::server::check_trust(&store, &ca.fingerprint(), &sealer, &paths, true)
            .await
            .unwrap();
        assert!(store
            .get(crate::server::KEY_CHECK_KEY)
            .await
            .unwrap()
            .is_some());
        save_from_store(&store, &data, &file, false).await.unwrap();
    }

    // No key: the check is left out; a new key passes.
    let target = old.path().join("new");
    restore(&file, &target, None).await.unwrap();
    let store = SledStore::open(&target.join(STORE_DIR)).unwrap();
    assert!(store
        .get(crate::server::KEY_CHECK_KEY)
        .await
        .unwrap()
        .is_none());
    let fresh = Sealer::open_or_create(&target).unwrap();
    let tpaths = PkiPaths::new(&target);
    crate::server::check_trust(&store, &ca.fingerprint(), &fresh, &tpaths, true)
        .await
        .unwrap();
    drop(store);

    // With the key: the check comes back, and only that key passes it.
    let keyed = old.path().join("keyed");
    restore(&file, &keyed, Some(&data.join(secrets::KEY_FILE)))
        .await
        .unwrap();
    let store = SledStore::open(&keyed.join(STORE_DIR)).unwrap();
    let kpaths = PkiPaths::new(&keyed);
    crate::server::check_trust(&store, &ca.fingerprint(), &sealer, &kpaths, false)
        .await
        .unwrap();
    let err = crate::server::check_trust(&store, &ca.fingerprint(), &fresh, &kpaths, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("sealed under another key"), "{err}");
}

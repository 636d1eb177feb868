//! `convoyd snapshot restore`: the checks before anything is written, then
//! the data directory's files and the store, with the plan generation moved on.

use super::*;

/// What a restore wrote.
#[derive(Debug, Clone)]
pub struct Restored {
    pub keys: usize,
    pub services: usize,
    pub nodes: usize,
    pub secrets: usize,
    pub registry_logins: usize,
    pub plan_generation: u64,
    /// Whether the secrets key was checked against every sealed value.
    pub key_checked: bool,
    pub took: Duration,
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "restored {} keys ({} service records, {} nodes, {} secrets, {} registry logins) in {} ms; plan generations continue from {}",
            self.keys,
            self.services,
            self.nodes,
            self.secrets,
            self.registry_logins,
            self.took.as_millis(),
            self.plan_generation
        )?;
        if self.key_checked {
            write!(f, "; the secrets key opens every sealed value")?;
        }
        Ok(())
    }
}

/// Writes `snapshot`'s keys into `store`, which must be empty, in one
/// batch, with the plan generation moved past any the old coordinator may
/// have handed out after the save, and an audit entry saying so.
pub async fn restore_into(store: &dyn Store, snapshot: &Snapshot) -> Result<u64, SnapshotError> {
    let health = store.health().await;
    if let Some((key, _)) = store.scan_prefix("").await?.first() {
        return Err(SnapshotError::Refused(format!(
            "the {} store at {} already holds data (key `{key}`): restore into a new data directory or an empty store",
            health.backend, health.location
        )));
    }
    let now = now_unix_ms();
    let stored = snapshot
        .entries
        .iter()
        .find(|(k, _)| k == PLAN_GENERATION_KEY)
        .and_then(|(_, v)| serde_json::from_slice::<u64>(v).ok())
        .unwrap_or(0);
    let since_save =
        u64::try_from(now.saturating_sub(snapshot.header.created_unix_ms)).unwrap_or(0);
    let generation = stored
        .saturating_add(PLAN_GENERATION_MARGIN)
        .saturating_add(since_save);
    let mut ops: Vec<Op> = snapshot
        .entries
        .iter()
        .filter(|(k, _)| k != PLAN_GENERATION_KEY)
        .map(|(k, v)| Op::Put(k.clone(), v.clone()))
        .collect();
    ops.push(Op::put_json(PLAN_GENERATION_KEY, &generation));
    let audit = AuditRecord {
        unix_ms: now,
        who: "convoyd snapshot restore".into(),
        action: "snapshot.restore".into(),
        target: format!(
            "snapshot of {} ({} at {})",
            snapshot.header.created_unix_ms,
            snapshot.header.source_backend,
            snapshot.header.source_location
        ),
        result: "ok".into(),
    };
    // After every audit key of the snapshot (they are older).
    ops.push(Op::put_json(format!("audit/{now:020}-999999"), &audit));
    store.apply(ops).await?;
    Ok(generation)
}

/// Checks that `sealer` opens every sealed value of the snapshot and that
/// its records load, on a copy in memory: nothing is written.
pub async fn check_loads(snapshot: &Snapshot, sealer: Sealer) -> Result<(), SnapshotError> {
    let store = Arc::new(MemStore::new(snapshot.entries.iter().cloned()));
    Coordinator::load_sealed(store, Liveness::default(), CancellationToken::new(), sealer)
        .await
        .map(drop)
        .map_err(|e| SnapshotError::Refused(format!("the snapshot does not load: {e}")))
}

/// `convoyd snapshot restore`: checks the file, the target and the key
/// before anything is written; then the data directory's files and the
/// store.
pub async fn restore(
    file: &Path,
    data_dir: &Path,
    secrets_key: Option<&Path>,
) -> Result<Restored, SnapshotError> {
    restore_to(file, data_dir, secrets_key, None).await
}

/// [`restore()`], into `target` (an etcd store) instead of the data
/// directory's sled store; the data directory still gets the CA and the
/// admin token.
pub async fn restore_to(
    file: &Path,
    data_dir: &Path,
    secrets_key: Option<&Path>,
    target: Option<Arc<dyn Store>>,
) -> Result<Restored, SnapshotError> {
    let started = Instant::now();
    let bytes = std::fs::read(file).map_err(|source| SnapshotError::Io {
        action: "read",
        path: file.to_path_buf(),
        source,
    })?;
    let mut snapshot = Snapshot::decode(&bytes, file)?;
    drop(bytes);
    for (name, needed) in data_files() {
        if needed && !snapshot.files.iter().any(|(f, _)| *f == name) {
            return Err(SnapshotError::Invalid {
                file: file.to_path_buf(),
                problem: format!("holds no `{name}`: it cannot bring a coordinator back"),
            });
        }
    }
    // An existing store is opened (not created) and must be empty.
    let store_dir = data_dir.join(STORE_DIR);
    if let Some(target) = &target {
        refuse_data(&**target, data_dir).await?;
    }
    let existing = if target.is_some() {
        None
    } else if store_dir.exists() {
        let store = SledStore::open(&store_dir).map_err(|e| {
            SnapshotError::Refused(format!(
                "{} already has a store ({}) that cannot be opened ({e}): restore into a new data directory (--data-dir)",
                data_dir.display(),
                store_dir.display()
            ))
        })?;
        refuse_data(&store, data_dir).await?;
        Some(store)
    } else {
        None
    };
    let installed_key = data_dir.join(secrets::KEY_FILE);
    let key = match secrets_key {
        Some(k) => Some(k.to_path_buf()),
        None if installed_key.exists() => Some(installed_key.clone()),
        None => None,
    };
    let key_checked = match &key {
        Some(k) => {
            check_loads(&snapshot, Sealer::from_key_file(k)?)
                .await
                .map_err(|e| match e {
                    SnapshotError::Refused(m) => SnapshotError::Refused(format!(
                        "{m} (with the secrets key {}; nothing was written)",
                        k.display()
                    )),
                    e => e,
                })?;
            true
        }
        None if snapshot.has_sealed() => {
            return Err(SnapshotError::Refused(format!(
                "{} holds {} secrets and {} registry logins, sealed under the old coordinator's secrets key, and {} has no secrets.key: pass that key with --secrets-key FILE",
                file.display(),
                snapshot.count("secrets/"),
                snapshot.count("registries/"),
                data_dir.display()
            )));
        }
        None => {
            check_loads(&snapshot, Sealer::ephemeral()).await?;
            false
        }
    };

    if key.is_none() {
        // Nothing sealed comes back and the new coordinator makes a key of
        // its own: the old key's check would refuse it.
        snapshot
            .entries
            .retain(|(k, _)| k != crate::server::KEY_CHECK_KEY);
    }
    pki::create_dir_private(data_dir)?;
    pki::create_dir_private(&PkiPaths::new(data_dir).dir)?;
    let store: Arc<dyn Store> = match (target, existing) {
        (Some(target), _) => target,
        (None, Some(store)) => Arc::new(store),
        (None, None) => Arc::new(SledStore::open(&store_dir)?),
    };
    // Checked (again) on the opened store: it may have been filled since.
    refuse_data(&*store, data_dir).await?;
    for (name, contents) in &snapshot.files {
        pki::write_private(&data_dir.join(name), contents)?;
    }
    if let Some(k) = secrets_key {
        secrets::install_key(data_dir, k)?;
    }
    let plan_generation = restore_into(&*store, &snapshot).await?;
    Ok(Restored {
        keys: snapshot.entries.len(),
        services: snapshot.count("services/"),
        nodes: snapshot.count("nodes/"),
        secrets: snapshot.count("secrets/"),
        registry_logins: snapshot.count("registries/"),
        plan_generation,
        key_checked: key_checked && snapshot.has_sealed(),
        took: started.elapsed(),
    })
}

/// Refuses a store that holds any key, naming the data directory.
async fn refuse_data(store: &dyn Store, data_dir: &Path) -> Result<(), SnapshotError> {
    if let Some((key, _)) = store.scan_prefix("").await?.first() {
        let health = store.health().await;
        return Err(SnapshotError::Refused(format!(
            "{} already has a store with data ({}, key `{key}`): restore into a new data directory (--data-dir), or move that one away",
            data_dir.display(),
            health.location
        )));
    }
    Ok(())
}

//! Private registries' logins (`convoy registry login`): stored sealed at
//! `registries/SERVER` (crate::secrets), held open in memory to build plans,
//! and put only in the plans of nodes whose containers pull from that
//! registry. Setting, changing or removing one goes through the commit
//! path like any desired state, which resends the plans it changed.

use super::*;
use crate::secrets::{Sealed, Secret};

/// A registry login as stored: the password sealed, bound to its key.
#[derive(Clone, Serialize, Deserialize)]
pub struct RegistryRecord {
    pub server: String,
    pub username: String,
    pub password: Sealed,
    pub set_by: String,
    pub set_unix_ms: i64,
}

/// A registry login in memory: `Debug` hides the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryLogin {
    pub server: String,
    pub username: String,
    pub password: Secret<String>,
    pub set_by: String,
    pub set_unix_ms: i64,
}

/// What `convoy registry ls` shows of a login: never the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryInfo {
    pub server: String,
    pub username: String,
    pub set_by: String,
    pub set_unix_ms: i64,
}

impl RegistryLogin {
    fn info(&self) -> RegistryInfo {
        RegistryInfo {
            server: self.server.clone(),
            username: self.username.clone(),
            set_by: self.set_by.clone(),
            set_unix_ms: self.set_unix_ms,
        }
    }
}

pub(super) fn registry_key(server: &str) -> String {
    format!("registries/{server}")
}

/// The most bytes of a username or password (Docker's own logins are far
/// shorter; tokens of cloud registries reach a few KiB).
const MAX_CREDENTIAL_LEN: usize = 16 * 1024;

impl Coordinator {
    /// Opens every stored login (on load).
    pub(super) async fn load_registries(
        &self,
    ) -> Result<BTreeMap<String, RegistryLogin>, StateError> {
        let mut logins = BTreeMap::new();
        for (key, rec) in store::scan_json::<RegistryRecord>(&*self.store, "registries/").await? {
            let password = self.sealer.open_string(&key, &rec.password)?;
            logins.insert(
                rec.server.clone(),
                RegistryLogin {
                    server: rec.server,
                    username: rec.username,
                    password,
                    set_by: rec.set_by,
                    set_unix_ms: rec.set_unix_ms,
                },
            );
        }
        Ok(logins)
    }

    /// Sets (or replaces) the login of `server` (`HOST[:PORT]`), and
    /// resends the plans of the nodes that pull from it.
    pub async fn set_registry_auth(
        &self,
        server: &str,
        username: &str,
        password: Secret<String>,
        by: &str,
    ) -> Result<RegistryInfo, StateError> {
        let server = spec::registry_server(server).map_err(StateError::Invalid)?;
        if username.is_empty() {
            return Err(StateError::Invalid(
                "give the registry's username (`--username`)".into(),
            ));
        }
        if password.expose().is_empty() {
            return Err(StateError::Invalid(
                "the password is empty: pass it on standard input (`--password-stdin`)".into(),
            ));
        }
        if username.len() > MAX_CREDENTIAL_LEN || password.expose().len() > MAX_CREDENTIAL_LEN {
            return Err(StateError::Invalid(format!(
                "the username and password may each be at most {MAX_CREDENTIAL_LEN} bytes"
            )));
        }
        let key = registry_key(&server);
        let login = RegistryLogin {
            server: server.clone(),
            username: username.to_string(),
            password,
            set_by: by.to_string(),
            set_unix_ms: now_unix_ms(),
        };
        let record = RegistryRecord {
            server: server.clone(),
            username: login.username.clone(),
            password: self.sealer.seal(&key, login.password.expose().as_bytes()),
            set_by: login.set_by.clone(),
            set_unix_ms: login.set_unix_ms,
        };
        let info = login.info();
        let mut txn = self.begin("registry login").await;
        Arc::make_mut(&mut txn.stage().registries).insert(server, login);
        txn.put(Op::put_json(key, &record));
        txn.replan();
        txn.commit().await?;
        Ok(info)
    }

    /// Every registry login, by server, without passwords.
    pub async fn registry_auths(&self) -> Vec<RegistryInfo> {
        let desired = self.desired.lock().await;
        desired
            .registries
            .values()
            .map(RegistryLogin::info)
            .collect()
    }

    /// Removes the login of `server`; the nodes that pulled with it get
    /// plans without it.
    pub async fn remove_registry_auth(&self, server: &str) -> Result<RegistryInfo, StateError> {
        let server = spec::registry_server(server).map_err(StateError::Invalid)?;
        let mut txn = self.begin("registry logout").await;
        let Some(login) = Arc::make_mut(&mut txn.stage().registries).remove(&server) else {
            return Err(StateError::RegistryNotFound(server));
        };
        txn.put(Op::Delete(registry_key(&server)));
        txn.replan();
        txn.commit().await?;
        Ok(login.info())
    }
}

/// The registries whose login differs between `current` and `next`.
pub(super) fn changed_registries(current: &Desired, next: &Desired) -> HashSet<String> {
    if Arc::ptr_eq(&current.registries, &next.registries) {
        return HashSet::new();
    }
    let (a, b) = (&current.registries, &next.registries);
    a.keys()
        .chain(b.keys())
        .filter(|server| a.get(*server) != b.get(*server))
        .cloned()
        .collect()
}

/// The registry each container image of a service record pulls from (the
/// current spec's and, during a rollout, the one it started from).
pub(super) fn record_registries(rec: &ServiceRecord) -> impl Iterator<Item = &str> {
    let from = rec.rollout.as_ref().map(|r| &r.from_spec);
    std::iter::once(&rec.spec)
        .chain(from)
        .filter(|s| s.unit.is_none())
        .map(|s| spec::registry_of(&s.image))
}

/// The logins a node's plan carries: those of the registries its
/// containers' images come from, by server.
pub(super) fn plan_logins(
    registries: &BTreeMap<String, RegistryLogin>,
    workloads: &[pb::Workload],
) -> Vec<pb::RegistryAuth> {
    if registries.is_empty() {
        return Vec::new();
    }
    let used: std::collections::BTreeSet<&str> = workloads
        .iter()
        .filter_map(|w| match &w.runtime {
            Some(pb::workload::Runtime::Container(c)) => Some(spec::registry_of(&c.image)),
            _ => None,
        })
        .collect();
    used.into_iter()
        .filter_map(|server| registries.get(server))
        .map(|l| pb::RegistryAuth {
            server: l.server.clone(),
            username: l.username.clone(),
            password: l.password.expose().clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> AgentHello {
        AgentHello::from(pb::Hello {
            facts: Some(pb::NodeFacts::default()),
            agent_version: "t".into(),
            last_applied_generation: 0,
            capabilities: vec![],
        })
    }

    fn on(node: &str, name: &str, image: &str) -> String {
        format!(
            "services:\n  {name}:\n    image: {image}\n    deploy:\n      placement:\n        constraints: [\"node.name == {node}\"]\n"
        )
    }

    const REGISTRY: &str = "127.0.0.1:5000";
    const PASSWORD: &str = "s3cret-passw0rd";

    #[tokio::test]
    async fn a_login_is_sealed_at_rest_and_sent_only_to_the_nodes_that_pull_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let sealer = Sealer::ephemeral();
        let coord = Coordinator::load_sealed(
            store.clone(),
            Liveness::default(),
            CancellationToken::new(),
            sealer.clone(),
        )
        .await
        .unwrap();
        let mut a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
        let mut b = coord.register("b", "fp-b", 0, hello(), None).await.unwrap();
        let image = format!("{REGISTRY}/team/app:1");
        coord
            .apply("p.yaml", &on("a", "private", &image), false, "t")
            .await
            .unwrap();
        coord
            .apply("q.yaml", &on("b", "public", "nginx:1"), false, "t")
            .await
            .unwrap();
        a.plan_rx.borrow_and_update();
        b.plan_rx.borrow_and_update();

        let info = coord
            .set_registry_auth(REGISTRY, "ci", Secret::new(PASSWORD.into()), "admin (x)")
            .await
            .unwrap();
        assert_eq!(info.server, REGISTRY);
        assert!(
            a.plan_rx.has_changed().unwrap(),
            "a pulls from the registry"
        );
        assert!(!b.plan_rx.has_changed().unwrap(), "b does not");
        let plan = a.plan_rx.borrow_and_update().clone().unwrap();
        assert_eq!(plan.registry_auths.len(), 1);
        assert_eq!(plan.registry_auths[0].server, REGISTRY);
        assert_eq!(plan.registry_auths[0].username, "ci");
        assert_eq!(plan.registry_auths[0].password, PASSWORD);
        assert!(!format!("{plan:?}").contains(PASSWORD));

        // At rest: sealed, never the password.
        let raw = store.get(&registry_key(REGISTRY)).await.unwrap().unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert!(!raw.contains(PASSWORD), "{raw}");
        assert!(raw.contains("xc20p1:"), "{raw}");
        let listed = coord.registry_auths().await;
        assert_eq!(listed, vec![info.clone()]);

        // A new password reaches a again; b never hears of it.
        coord
            .set_registry_auth(REGISTRY, "ci", Secret::new("other".into()), "admin (x)")
            .await
            .unwrap();
        let plan = a.plan_rx.borrow_and_update().clone().unwrap();
        assert_eq!(plan.registry_auths[0].password, "other");
        assert!(!b.plan_rx.has_changed().unwrap());

        // A restart opens the sealed login with the same key.
        drop((a, b));
        drop(coord);
        let coord = Coordinator::load_sealed(
            store.clone(),
            Liveness::default(),
            CancellationToken::new(),
            sealer,
        )
        .await
        .unwrap();
        let mut a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
        let plan = a.plan_rx.borrow_and_update().clone().unwrap();
        assert_eq!(plan.registry_auths[0].password, "other");

        // Logout: a's plan goes out without it.
        coord.remove_registry_auth(REGISTRY).await.unwrap();
        let plan = a.plan_rx.borrow_and_update().clone().unwrap();
        assert!(plan.registry_auths.is_empty());
        assert!(store.get(&registry_key(REGISTRY)).await.unwrap().is_none());
        let err = coord.remove_registry_auth(REGISTRY).await.unwrap_err();
        assert!(matches!(err, StateError::RegistryNotFound(_)), "{err}");
    }

    #[tokio::test]
    async fn a_login_stored_under_another_key_stops_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        coord
            .set_registry_auth(REGISTRY, "ci", Secret::new(PASSWORD.into()), "t")
            .await
            .unwrap();
        drop(coord);
        let err = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .err()
            .expect("another key cannot open the login");
        assert!(
            err.to_string().contains("registries/127.0.0.1:5000"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_login_needs_a_registry_a_username_and_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        for (server, user, password, says) in [
            ("r.example/team", "u", "p", "HOST[:PORT]"),
            ("r.example", "", "p", "--username"),
            ("r.example", "u", "", "--password-stdin"),
        ] {
            let err = coord
                .set_registry_auth(server, user, Secret::new(password.into()), "t")
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{err}");
        }
        assert!(coord.registry_auths().await.is_empty());
    }
}

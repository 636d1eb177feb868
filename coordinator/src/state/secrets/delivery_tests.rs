//! Compose `secrets:` at apply, delivery in node plans, and rotation
//! (issue 15): versions pinned per service, values only in the plans of
//! nodes that run a consumer, exactly the consumers rolled.

use super::*;
use crate::spec::SecretInputs;

const CANARY: &str = "canary-delivery-5d1e";
const OTHER: &str = "canary-delivery-second";

pub(super) fn hello() -> AgentHello {
    AgentHello::from(pb::Hello {
        facts: Some(pb::NodeFacts::default()),
        agent_version: "t".into(),
        last_applied_generation: 0,
        capabilities: vec![],
    })
}

pub(super) async fn coordinator(store: &Arc<dyn Store>) -> Arc<Coordinator> {
    Coordinator::load_sealed(
        store.clone(),
        Liveness::default(),
        CancellationToken::new(),
        Sealer::ephemeral(),
    )
    .await
    .unwrap()
}

/// `web` on node a uses `db` (a file secret), `other` on node b uses
/// nothing; `api` (on a too) uses `db` when `with_api`.
fn stack(with_api: bool) -> String {
    let on = |node: &str| {
        format!("    deploy:\n      placement:\n        constraints: [\"node.name == {node}\"]\n")
    };
    let mut yaml = format!(
        "services:\n  web:\n    image: app:1\n    secrets: [db]\n{}  other:\n    image: app:1\n{}",
        on("a"),
        on("b")
    );
    if with_api {
        yaml.push_str(&format!(
            "  api:\n    image: app:1\n    secrets:\n      - source: db\n        target: password\n{}",
            on("a")
        ));
    }
    yaml.push_str("secrets:\n  db:\n    file: ./db.txt\n");
    yaml
}

fn with_file(value: &str) -> ApplyOptions {
    ApplyOptions {
        secrets: SecretInputs {
            files: [(
                "./db.txt".to_string(),
                Secret::new(value.as_bytes().to_vec()),
            )]
            .into(),
            env: BTreeMap::new(),
        },
        may_run_units: true,
        ..ApplyOptions::default()
    }
}

fn action_of(resp: &ApplyOutcome, service: &str) -> ChangeAction {
    let c = resp
        .services
        .iter()
        .find(|c| c.service == service)
        .unwrap_or_else(|| panic!("{service} is not in the response"));
    c.action
}

/// (name, version, value) of each secret value in `plan`.
fn values(plan: &pb::NodePlan) -> Vec<(String, u64, String)> {
    plan.secret_values
        .iter()
        .map(|v| {
            (
                v.name.clone(),
                v.version,
                String::from_utf8_lossy(&v.value).into_owned(),
            )
        })
        .collect()
}

fn pinned(plan: &pb::NodePlan, service: &str) -> Vec<(String, u64, String)> {
    plan.workloads
        .iter()
        .filter(|w| w.service == service)
        .flat_map(|w| match &w.runtime {
            Some(pb::workload::Runtime::Container(c)) => c.secrets.clone(),
            _ => Vec::new(),
        })
        .map(|m| (m.name, m.version, m.target))
        .collect()
}

#[tokio::test]
async fn a_file_secret_is_sealed_pinned_and_sent_only_to_the_node_running_its_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
    let coord = coordinator(&store).await;
    let mut a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
    let mut b = coord.register("b", "fp-b", 0, hello(), None).await.unwrap();

    let resp = coord
        .apply_with(
            "default",
            "s.yaml",
            &stack(false),
            &with_file(CANARY),
            false,
            "t",
        )
        .await
        .unwrap();
    assert_eq!(
        resp.secrets,
        vec![SecretChange {
            env: "default".into(),
            name: "db".into(),
            action: SecretAction::Created,
            version: 1,
        }]
    );
    assert!(!format!("{resp:?}").contains(CANARY));
    let plan_a = a.plan_rx.borrow_and_update().clone().unwrap();
    assert_eq!(values(&plan_a), vec![("db".into(), 1, CANARY.into())]);
    assert_eq!(
        pinned(&plan_a, "web"),
        vec![("db".into(), 1, "/run/secrets/db".into())]
    );
    assert!(!format!("{plan_a:?}").contains(CANARY), "{plan_a:?}");
    let plan_b = b.plan_rx.borrow_and_update().clone().unwrap();
    assert!(plan_b.secret_values.is_empty(), "b runs no consumer");
    assert!(!prost::Message::encode_to_vec(&*plan_b)
        .windows(CANARY.len())
        .any(|w| w == CANARY.as_bytes()));

    // Listed with its consumer; removal refused while it has one.
    let listed = coord.secrets("default", |_| true).await;
    assert_eq!(listed[0].used_by, vec!["web".to_string()]);
    let err = coord
        .remove_secret("default", "db")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("used by web"), "{err}");

    // The same value again changes nothing.
    let resp = coord
        .apply_with(
            "default",
            "s.yaml",
            &stack(false),
            &with_file(CANARY),
            false,
            "t",
        )
        .await
        .unwrap();
    assert_eq!(resp.secrets[0].action, SecretAction::Unchanged);
    assert_eq!(action_of(&resp, "web"), ChangeAction::Unchanged);
    assert!(!a.plan_rx.has_changed().unwrap());

    // A new value in the file is a new version, and web rolls onto it.
    let resp = coord
        .apply_with(
            "default",
            "s.yaml",
            &stack(false),
            &with_file(OTHER),
            false,
            "t",
        )
        .await
        .unwrap();
    assert_eq!(
        (resp.secrets[0].action, resp.secrets[0].version),
        (SecretAction::Rotated, 2)
    );
    assert_eq!(action_of(&resp, "web"), ChangeAction::Update);
    assert_eq!(action_of(&resp, "other"), ChangeAction::Unchanged);
    let web = resp.services.iter().find(|c| c.service == "web").unwrap();
    assert!(
        !web.diff.contains(OTHER) && !web.diff.contains(CANARY),
        "{}",
        web.diff
    );
    let plan_a = a.plan_rx.borrow_and_update().clone().unwrap();
    assert_eq!(values(&plan_a), vec![("db".into(), 2, OTHER.into())]);
    assert!(!b.plan_rx.has_changed().unwrap(), "b's plan is untouched");

    // At rest: ciphertext only.
    drop((a, b));
    let mut all = Vec::new();
    for entry in walkdir(dir.path()) {
        all.extend(std::fs::read(entry).unwrap_or_default());
    }
    for canary in [CANARY, OTHER] {
        assert!(!all.windows(canary.len()).any(|w| w == canary.as_bytes()));
    }
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_rotation_rolls_exactly_the_consumers_and_a_rollback_brings_the_old_value_back() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
    let coord = coordinator(&store).await;
    let mut a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
    let mut b = coord.register("b", "fp-b", 0, hello(), None).await.unwrap();
    coord
        .apply_with(
            "default",
            "s.yaml",
            &stack(true),
            &with_file(CANARY),
            false,
            "t",
        )
        .await
        .unwrap();
    let revision = |svc: &'static str| {
        let coord = coord.clone();
        async move { coord.history(svc, "default").await.unwrap().current }
    };
    let before = (
        revision("web").await,
        revision("api").await,
        revision("other").await,
    );
    a.plan_rx.borrow_and_update();
    b.plan_rx.borrow_and_update();

    let info = coord
        .write_secret(
            "default",
            "db",
            SecretValue::Given(Secret::new(OTHER.as_bytes().to_vec())),
            SecretWrite::Rotate,
            "deployer (d1)",
        )
        .await
        .unwrap();
    assert_eq!(info.version, 2);
    let mut users = info.used_by.clone();
    users.sort();
    assert_eq!(users, vec!["api".to_string(), "web".to_string()]);
    assert_eq!(revision("web").await, before.0 + 1);
    assert_eq!(revision("api").await, before.1 + 1);
    assert_eq!(revision("other").await, before.2, "other uses no secret");
    let history = coord.history("web", "default").await.unwrap();
    let last = history.revisions.last().unwrap();
    assert!(last.source.contains("secret rotate db"), "{}", last.source);
    let plan_a = a.plan_rx.borrow_and_update().clone().unwrap();
    assert_eq!(values(&plan_a), vec![("db".into(), 2, OTHER.into())]);
    assert_eq!(
        pinned(&plan_a, "api"),
        vec![("db".into(), 2, "/run/secrets/password".into())]
    );
    assert!(!b.plan_rx.has_changed().unwrap(), "b runs no consumer");

    // Back to the revision before: web runs version 1 again, and the node
    // gets both values (api still runs version 2).
    coord.rollback("web", "default", 0, "t").await.unwrap();
    let plan_a = a.plan_rx.borrow_and_update().clone().unwrap();
    let mut got = values(&plan_a);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("db".into(), 1, CANARY.into()),
            ("db".into(), 2, OTHER.into())
        ]
    );
    assert_eq!(pinned(&plan_a, "web")[0].1, 1);
    let listed = coord.secrets("default", |_| true).await;
    let mut users = listed[0].used_by.clone();
    users.sort();
    assert_eq!(users, vec!["api".to_string(), "web (v1)".to_string()]);
}

#[tokio::test]
async fn external_secrets_must_exist_and_generated_ones_are_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
    let coord = coordinator(&store).await;
    let _a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
    let external = "services:\n  web:\n    image: app:1\n    secrets: [api-key]\nsecrets:\n  api-key:\n    external: true\n";
    let err = coord
        .apply_with(
            "default",
            "e.yaml",
            external,
            &ApplyOptions::default(),
            false,
            "t",
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("api-key") && err.contains("convoy secret set api-key --env default"),
        "{err}"
    );
    assert!(
        coord.history("web", "default").await.is_err(),
        "nothing stored"
    );
    coord
        .write_secret(
            "default",
            "api-key",
            SecretValue::Given(Secret::new(b"k".to_vec())),
            SecretWrite::Create,
            "t",
        )
        .await
        .unwrap();
    let resp = coord
        .apply_with(
            "default",
            "e.yaml",
            external,
            &ApplyOptions::default(),
            false,
            "t",
        )
        .await
        .unwrap();
    assert_eq!(
        (resp.secrets[0].action, resp.secrets[0].version),
        (SecretAction::External, 1)
    );

    let generated = "services:\n  web:\n    image: app:1\n    secrets: [session]\nsecrets:\n  session:\n    x-convoy:\n      generate:\n        length: 48\n        charset: hex\n";
    // A dry run says what it would do and stores nothing.
    let resp = coord
        .apply_with(
            "default",
            "g.yaml",
            generated,
            &ApplyOptions::default(),
            true,
            "t",
        )
        .await
        .unwrap();
    assert_eq!(resp.secrets[0].action, SecretAction::Generated);
    assert!(coord.secret_history("default", "session").await.is_err());
    let resp = coord
        .apply_with(
            "default",
            "g.yaml",
            generated,
            &ApplyOptions::default(),
            false,
            "t",
        )
        .await
        .unwrap();
    assert_eq!(
        (resp.secrets[0].action, resp.secrets[0].version),
        (SecretAction::Generated, 1)
    );
    let value = coord.open_secret("default", "session").await.unwrap();
    assert_eq!(value.expose().len(), 48);
    assert!(value.expose().iter().all(|b| b.is_ascii_hexdigit()));
    let resp = coord
        .apply_with(
            "default",
            "g.yaml",
            generated,
            &ApplyOptions::default(),
            false,
            "t",
        )
        .await
        .unwrap();
    assert_eq!(resp.secrets[0].action, SecretAction::Unchanged);
    assert_eq!(
        coord.open_secret("default", "session").await.unwrap(),
        value
    );
}

//! A follower's plans against the leader's, write after write: the same
//! workloads, secret values and logins for every node, and, for plans a
//! write changed, the same generation.

use std::collections::BTreeMap;

use convoy_proto as pb;

use super::*;
use crate::{
    report::AgentHello,
    secrets::Secret,
    spec::SecretInputs,
    state::{ApplyOptions, SecretValue, SecretWrite},
};

fn hello() -> AgentHello {
    AgentHello::from(pb::Hello {
        facts: Some(pb::NodeFacts::default()),
        agent_version: "t".into(),
        last_applied_generation: 0,
        capabilities: vec![],
    })
}

/// `web` (3 replicas) uses secret `db`; `api` is pinned to node b.
fn stack(image: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n    secrets: [db]\n    deploy:\n      replicas: 3\n\
         \x20 api:\n    image: api:1\n    deploy:\n      placement:\n        constraints: [\"node.name == b\"]\n\
         secrets:\n  db:\n    file: ./db.txt\n"
    )
}

fn with_secret(value: &str) -> ApplyOptions {
    ApplyOptions {
        secrets: SecretInputs {
            files: [(
                "./db.txt".to_string(),
                Secret::new(value.as_bytes().to_vec()),
            )]
            .into(),
            env: BTreeMap::new(),
        },
        ..ApplyOptions::default()
    }
}

/// A plan without its generation.
fn content(plan: &pb::NodePlan) -> pb::NodePlan {
    pb::NodePlan {
        generation: 0,
        ..plan.clone()
    }
}

/// Waits until the follower's copy is at the store's revision.
async fn caught_up(state: &mut watch::Receiver<Following>, revision: i64) -> Arc<Coordinator> {
    let f = tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|f| f.coord.is_some() && f.revision >= revision),
    )
    .await
    .expect("the follower catches up within 10 s")
    .expect("the follower runs")
    .clone();
    f.coord.expect("loaded")
}

/// The store's revision now (a write to a key nobody follows bumps it).
async fn revision_of(store: &MemStore) -> i64 {
    let w = store.watch("").await.unwrap();
    w.revision
}

fn same_plans(leader: &Coordinator, follower: &Coordinator, nodes: &[&str], generations: bool) {
    for node in nodes {
        let l = leader.current_plan(node).expect("the leader has a plan");
        let f = follower
            .current_plan(node)
            .unwrap_or_else(|| panic!("the follower has no plan for {node}"));
        assert_eq!(content(&f), content(&l), "the plans of node {node}");
        if generations {
            assert_eq!(
                f.generation, l.generation,
                "the generation of {node}'s plan"
            );
        }
    }
}

#[tokio::test]
async fn a_follower_holds_the_leaders_plans_write_after_write() {
    let store = Arc::new(MemStore::new([]));
    let shared: Arc<dyn Store> = store.clone();
    let sealer = Sealer::ephemeral();
    let leader = Coordinator::load_sealed(
        shared.clone(),
        Liveness::default(),
        CancellationToken::new(),
        sealer.clone(),
    )
    .await
    .unwrap();
    let _a = leader
        .register("a", "fp-a", 0, hello(), None)
        .await
        .unwrap();
    let _b = leader
        .register("b", "fp-b", 0, hello(), None)
        .await
        .unwrap();
    leader
        .apply_with(
            "default",
            "s.yaml",
            &stack("web:1"),
            &with_secret("s3cr3t-1"),
            false,
            "t",
        )
        .await
        .unwrap();

    // The follower starts from what is there.
    let stop = CancellationToken::new();
    let (tx, mut rx) = watch::channel(Following::default());
    let task = tokio::spawn(follow(shared.clone(), sealer.clone(), stop.clone(), tx));
    let follower = caught_up(&mut rx, revision_of(&store).await).await;
    // Loaded: the same plans, with the leader's newest generation (which
    // each of its plans has here: the apply changed both).
    same_plans(&leader, &follower, &["a", "b"], true);
    let web_on_a = follower.current_plan("a").unwrap();
    assert!(
        web_on_a
            .secret_values
            .iter()
            .any(|v| v.value == b"s3cr3t-1"),
        "the follower opened the sealed secret for its plan"
    );

    // A new image: the plans that changed, with the leader's generation.
    leader
        .apply_with(
            "default",
            "s.yaml",
            &stack("web:2"),
            &with_secret("s3cr3t-1"),
            false,
            "t",
        )
        .await
        .unwrap();
    let follower = caught_up(&mut rx, revision_of(&store).await).await;
    same_plans(&leader, &follower, &["a", "b"], true);

    // A node joins (its record written by the leader), a secret rotates.
    let _c = leader
        .register("c", "fp-c", 0, hello(), None)
        .await
        .unwrap();
    leader
        .write_secret(
            "default",
            "db",
            SecretValue::Given(Secret::new(b"s3cr3t-2".to_vec())),
            SecretWrite::Rotate,
            "t",
        )
        .await
        .unwrap();
    let follower = caught_up(&mut rx, revision_of(&store).await).await;
    same_plans(&leader, &follower, &["a", "b", "c"], true);
    let rotated = ["a", "b", "c"]
        .iter()
        .filter_map(|n| follower.current_plan(n))
        .any(|p| p.secret_values.iter().any(|v| v.value == b"s3cr3t-2"));
    assert!(rotated, "the rotated value reached the follower's plans");

    // A service deleted: its instances leave the follower's plans too.
    leader.delete("api", "default").await.unwrap();
    let follower = caught_up(&mut rx, revision_of(&store).await).await;
    same_plans(&leader, &follower, &["a", "b", "c"], true);
    assert!(follower
        .current_plan("b")
        .unwrap()
        .workloads
        .iter()
        .all(|w| w.service != "api"));

    // A new leader loads (a failover): it hands every plan out again under
    // a new generation, and so does the follower.
    drop(leader);
    let leader = Coordinator::load_sealed(
        shared.clone(),
        Liveness::default(),
        CancellationToken::new(),
        sealer.clone(),
    )
    .await
    .unwrap();
    let before = follower.current_plan("a").unwrap().generation;
    let follower = caught_up(&mut rx, revision_of(&store).await).await;
    same_plans(&leader, &follower, &["a", "b", "c"], true);
    assert!(follower.current_plan("a").unwrap().generation > before);

    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_store_that_cannot_be_watched_is_retried_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
    let stop = CancellationToken::new();
    let (tx, mut rx) = watch::channel(Following::default());
    let task = tokio::spawn(follow(sled, Sealer::ephemeral(), stop.clone(), tx));
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|f| f.restarts >= 2))
        .await
        .expect("it tries again")
        .unwrap();
    assert!(rx.borrow().coord.is_none());
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("it stops when told")
        .unwrap();
}

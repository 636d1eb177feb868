//! The coordinator's store backends (issue 18): the same checks for sled
//! and for etcd, then what only etcd has (fencing, prefixes, members going
//! away, a dead cluster, etcd's size limits), each against a real etcd the
//! test starts (`convoy_tests::etcd::EtcdCluster`). What is written is read
//! back from etcd itself, not only through the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use convoy_coordinator::state::{Coordinator, Liveness};
use convoy_coordinator::store::{
    open_store, Change, EtcdConfig, EtcdStore, EtcdTls, Fence, Op, SledStore, Store, StoreError,
    StoreUrl,
};
use convoy_tests::etcd::EtcdCluster;
use tokio_util::sync::CancellationToken;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot build a runtime")
}

fn config(cluster: &EtcdCluster, prefix: &str) -> EtcdConfig {
    let mut cfg = EtcdConfig::new(cluster.endpoints());
    cfg.prefix = prefix.to_string();
    cfg
}

async fn connect(cluster: &EtcdCluster, prefix: &str) -> EtcdStore {
    EtcdStore::connect(config(cluster, prefix))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {:?}: {e}", cluster.endpoints()))
}

/// A key's value as etcd itself has it (full key, no prefix added).
async fn raw_get(store: &EtcdStore, key: &str) -> Option<Vec<u8>> {
    let mut resp = store
        .client()
        .get(key, None)
        .await
        .unwrap_or_else(|e| panic!("etcd get {key}: {e}"));
    resp.take_kvs()
        .into_iter()
        .next()
        .map(|kv| kv.value().to_vec())
}

fn keys(entries: &[(String, Vec<u8>)]) -> Vec<&str> {
    entries.iter().map(|(k, _)| k.as_str()).collect()
}

/// What every backend must do: put, get, ordered scans, deletes, the last
/// op on a key winning within a batch, scans and dumps longer than a page.
async fn conformance(store: &dyn Store) {
    assert_eq!(store.get("services/prod/web").await.unwrap(), None);
    store
        .apply(vec![
            Op::Put("services/prod/web".into(), b"w".to_vec()),
            Op::Put("services/prod/api".into(), b"a".to_vec()),
            Op::Put("services/dev/web".into(), b"d".to_vec()),
            Op::Put("nodes/n1".into(), b"n".to_vec()),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.get("services/prod/web").await.unwrap(),
        Some(b"w".to_vec())
    );
    let prod = store.scan_prefix("services/prod/").await.unwrap();
    assert_eq!(
        prod,
        vec![
            ("services/prod/api".to_string(), b"a".to_vec()),
            ("services/prod/web".to_string(), b"w".to_vec()),
        ]
    );
    assert_eq!(
        keys(&store.scan_prefix("services/").await.unwrap()),
        ["services/dev/web", "services/prod/api", "services/prod/web"]
    );

    // One batch: a delete, an overwrite, and two ops on one key (the last
    // wins, as when the batch is applied in order).
    store
        .apply(vec![
            Op::Delete("services/prod/api".into()),
            Op::Put("services/prod/web".into(), b"w2".to_vec()),
            Op::Put("nodes/n2".into(), b"x".to_vec()),
            Op::Delete("nodes/n2".into()),
            Op::Delete("nodes/n1".into()),
            Op::Put("nodes/n1".into(), b"n2".to_vec()),
        ])
        .await
        .unwrap();
    assert_eq!(store.get("services/prod/api").await.unwrap(), None);
    assert_eq!(store.get("nodes/n2").await.unwrap(), None);
    assert_eq!(store.get("nodes/n1").await.unwrap(), Some(b"n2".to_vec()));
    assert_eq!(
        store.scan_prefix("services/prod/").await.unwrap(),
        vec![("services/prod/web".to_string(), b"w2".to_vec())]
    );

    // More keys than one page (1,000): complete and in key order.
    let many: Vec<Op> = (0..2500)
        .map(|i| Op::Put(format!("many/{i:05}"), format!("v{i}").into_bytes()))
        .collect();
    store.apply(many).await.unwrap();
    let scanned = store.scan_prefix("many/").await.unwrap();
    assert_eq!(scanned.len(), 2500);
    for (i, (k, v)) in scanned.iter().enumerate() {
        assert_eq!(k, &format!("many/{i:05}"));
        assert_eq!(v, &format!("v{i}").into_bytes());
    }

    let dump = store.dump().await.unwrap();
    assert_eq!(dump.len(), 2500 + 3, "{:?}", &keys(&dump)[..5]);
    let mut sorted = keys(&dump);
    sorted.sort();
    assert_eq!(keys(&dump), sorted, "a dump is in key order");
    assert_eq!(&keys(&dump)[..1], ["many/00000"]);
    assert_eq!(
        &keys(&dump)[2500..],
        ["nodes/n1", "services/dev/web", "services/prod/web"]
    );
}

#[test]
fn sled_store_passes_the_conformance_checks() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        conformance(&store).await;
        assert_eq!(store.health().await.backend, "sled");
    });
}

#[test]
fn etcd_store_passes_the_conformance_checks_and_keeps_keys_under_its_prefix() {
    let cluster = EtcdCluster::start(1);
    rt().block_on(async {
        let store = connect(&cluster, "/convoy/").await;
        conformance(&store).await;
        // In etcd itself, under the prefix.
        assert_eq!(
            raw_get(&store, "/convoy/services/prod/web").await,
            Some(b"w2".to_vec())
        );
        assert_eq!(raw_get(&store, "services/prod/web").await, None);
        assert_eq!(raw_get(&store, "/convoy/services/prod/api").await, None);

        let health = store.health().await;
        assert!(health.healthy, "{health:?}");
        assert_eq!(health.backend, "etcd");
        assert_eq!(health.location, cluster.endpoints().join(","));
        assert_eq!(health.members.len(), 1, "{health:?}");
        assert!(
            health.members[0].starts_with(&format!(
                "m1 at {}: healthy (leader)",
                cluster.endpoints()[0]
            )),
            "{health:?}"
        );
    });
}

#[test]
fn two_prefixes_on_one_etcd_do_not_see_each_other() {
    let cluster = EtcdCluster::start(1);
    rt().block_on(async {
        // `/a/` is a string prefix of `/ab/`'s keys' neighbours: the
        // trailing `/` keeps them apart.
        let a = connect(&cluster, "/a").await;
        let ab = connect(&cluster, "/ab/").await;
        assert_eq!(a.prefix(), "/a/");
        a.apply(vec![Op::Put("k/1".into(), b"a".to_vec())])
            .await
            .unwrap();
        ab.apply(vec![
            Op::Put("k/1".into(), b"ab".to_vec()),
            Op::Put("k/2".into(), b"ab".to_vec()),
        ])
        .await
        .unwrap();
        assert_eq!(a.get("k/1").await.unwrap(), Some(b"a".to_vec()));
        assert_eq!(a.get("k/2").await.unwrap(), None);
        assert_eq!(keys(&a.dump().await.unwrap()), ["k/1"]);
        assert_eq!(keys(&ab.dump().await.unwrap()), ["k/1", "k/2"]);
        ab.apply(vec![Op::Delete("k/1".into())]).await.unwrap();
        assert_eq!(a.get("k/1").await.unwrap(), Some(b"a".to_vec()));
        assert_eq!(raw_get(&a, "/a/k/1").await, Some(b"a".to_vec()));
        assert_eq!(raw_get(&a, "/ab/k/1").await, None);
    });
}

#[test]
fn a_fenced_batch_is_written_only_while_the_fence_key_is_the_one_it_names() {
    let cluster = EtcdCluster::start(1);
    rt().block_on(async {
        let store = connect(&cluster, "/convoy/").await;
        let mut client = store.client();
        let fence_key = "/convoy-election/leader";
        let put = client.put(fence_key, "c1", None).await.unwrap();
        let created = put.header().unwrap().revision();
        store.set_fence(Some(Fence {
            key: fence_key.into(),
            create_revision: created,
        }));
        store
            .apply(vec![Op::Put("services/prod/web".into(), b"1".to_vec())])
            .await
            .unwrap();
        assert_eq!(
            raw_get(&store, "/convoy/services/prod/web").await,
            Some(b"1".to_vec())
        );
        // Overwriting the key keeps its create revision: still the same
        // leadership.
        client.put(fence_key, "c1 again", None).await.unwrap();
        store
            .apply(vec![Op::Put("services/prod/web".into(), b"2".to_vec())])
            .await
            .unwrap();

        // Another coordinator's leadership: the key made again.
        client.delete(fence_key, None).await.unwrap();
        client.put(fence_key, "c2", None).await.unwrap();
        let batch: Vec<Op> = (0..50)
            .map(|i| Op::Put(format!("fenced/{i}"), b"x".to_vec()))
            .chain([
                Op::Put("services/prod/web".into(), b"3".to_vec()),
                Op::Delete("services/prod/web".into()),
            ])
            .collect();
        match store.apply(batch.clone()).await {
            Err(StoreError::Fenced(why)) => assert!(why.contains(fence_key), "{why}"),
            other => panic!("a batch under a lost fence: {other:?}"),
        }
        // Nothing of it, in etcd itself.
        assert_eq!(
            raw_get(&store, "/convoy/services/prod/web").await,
            Some(b"2".to_vec())
        );
        assert_eq!(raw_get(&store, "/convoy/fenced/0").await, None);
        assert!(store.scan_prefix("fenced/").await.unwrap().is_empty());

        // The key gone altogether: refused too.
        client.delete(fence_key, None).await.unwrap();
        assert!(matches!(
            store.apply(batch.clone()).await,
            Err(StoreError::Fenced(_))
        ));

        // No fence: written.
        store.set_fence(None);
        store.apply(batch).await.unwrap();
        assert_eq!(store.scan_prefix("fenced/").await.unwrap().len(), 50);
        assert_eq!(raw_get(&store, "/convoy/services/prod/web").await, None);
    });
}

#[test]
fn reads_and_writes_go_on_with_one_of_three_members_killed() {
    let mut cluster = EtcdCluster::start(3);
    let runtime = rt();
    let store = runtime.block_on(connect(&cluster, "/convoy/"));
    let leader = runtime.block_on(async {
        store
            .apply(vec![Op::Put("before".into(), b"1".to_vec())])
            .await
            .unwrap();
        let health = store.health().await;
        assert!(health.healthy, "{health:?}");
        assert_eq!(health.members.len(), 3, "{health:?}");
        let leaders = health
            .members
            .iter()
            .filter(|m| m.ends_with("healthy (leader)"))
            .count();
        assert_eq!(leaders, 1, "{health:?}");
        (0..3)
            .find(|i| {
                health
                    .members
                    .iter()
                    .any(|m| m.starts_with(&format!("m{} at", i + 1)) && m.ends_with("(leader)"))
            })
            .expect("a leader")
    });

    // The leader goes away (the worst member to lose): the others elect
    // one of themselves and keep a quorum.
    cluster.kill(leader);
    runtime.block_on(async {
        for i in 0..20 {
            store
                .apply(vec![Op::Put(format!("after/{i:02}"), b"2".to_vec())])
                .await
                .unwrap_or_else(|e| panic!("write {i} with a member down: {e}"));
        }
        assert_eq!(store.get("before").await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.scan_prefix("after/").await.unwrap().len(), 20);
        let health = store.health().await;
        assert!(health.healthy, "{health:?}");
        let down = format!(
            "m{} at {}: unreachable",
            leader + 1,
            cluster.endpoints()[leader]
        );
        assert!(
            health.members.iter().any(|m| m.starts_with(&down)),
            "{health:?}"
        );
        // A coordinator starting now, given all three, connects.
        for _ in 0..5 {
            let late = connect(&cluster, "/convoy/").await;
            assert_eq!(late.get("after/19").await.unwrap(), Some(b"2".to_vec()));
        }
    });

    // Back, on its data: it has what was written while it was away.
    cluster.restart(leader);
    runtime.block_on(async {
        let only_it = EtcdConfig::new(vec![cluster.endpoints()[leader].clone()]);
        let only_it = EtcdStore::connect(only_it).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n = only_it.scan_prefix("after/").await.map(|v| v.len());
            if let Ok(20) = n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the old leader after a restart: {n:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn a_dead_cluster_gives_an_error_not_a_hang() {
    let mut cluster = EtcdCluster::start(1);
    let runtime = rt();
    let store = runtime.block_on(async {
        let mut cfg = config(&cluster, "/convoy/");
        cfg.request_timeout = Duration::from_secs(2);
        EtcdStore::connect(cfg).await.unwrap()
    });
    cluster.stop();
    runtime.block_on(async {
        let started = Instant::now();
        let written = store.apply(vec![Op::Put("k".into(), b"v".to_vec())]).await;
        let e = written.expect_err("a write to a dead cluster");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(e, StoreError::Backend { .. }), "{e}");
        assert!(store.get("k").await.is_err());
        assert!(store.scan_prefix("").await.is_err());
        let health = store.health().await;
        assert!(!health.healthy, "{health:?}");
        assert!(!health.error.is_empty(), "{health:?}");
        assert!(
            health.members.iter().all(|m| m.contains("unreachable")),
            "{health:?}"
        );

        // Connecting to it fails too, naming where.
        let endpoints = cluster.endpoints();
        let mut cfg = EtcdConfig::new(endpoints.clone());
        cfg.dial_timeout = Duration::from_secs(2);
        let started = Instant::now();
        let e = EtcdStore::connect(cfg).await.err().expect("a dead cluster");
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(e.to_string().contains(&endpoints[0]), "{e}");
    });
}

#[test]
fn etcd_refusing_a_big_batch_says_which_setting_to_raise() {
    let cluster =
        EtcdCluster::start_with(1, &["--max-txn-ops", "10", "--max-request-bytes", "100000"]);
    rt().block_on(async {
        let store = connect(&cluster, "/convoy/").await;
        let ops: Vec<Op> = (0..11)
            .map(|i| Op::Put(format!("k/{i}"), b"v".to_vec()))
            .collect();
        let e = store
            .apply(ops)
            .await
            .expect_err("11 ops over a limit of 10");
        let text = e.to_string();
        assert!(
            text.contains("--max-txn-ops") && text.contains("11 writes"),
            "{text}"
        );
        let big = vec![Op::Put("big".into(), vec![b'x'; 200_000])];
        let text = store.apply(big).await.expect_err("200 kB").to_string();
        assert!(text.contains("--max-request-bytes"), "{text}");
        // Nothing of either.
        assert!(store.dump().await.unwrap().is_empty());
        // Within the limits: written.
        let ops: Vec<Op> = (0..10)
            .map(|i| Op::Put(format!("k/{i}"), b"v".to_vec()))
            .collect();
        store.apply(ops).await.unwrap();
        assert_eq!(store.dump().await.unwrap().len(), 10);
    });
}

#[test]
fn a_coordinator_over_etcd_keeps_an_applied_service_across_loads() {
    let cluster = EtcdCluster::start(1);
    let data = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let url: StoreUrl = format!("{}/team-a", cluster.url()).parse().unwrap();
        let opened = open_store(&url, data.path(), None).await.unwrap();
        let etcd = opened.etcd.clone().expect("an etcd store");
        assert_eq!(etcd.prefix(), "/team-a/");
        let shutdown = CancellationToken::new();
        let coord = Coordinator::load(opened.store.clone(), Liveness::default(), shutdown.clone())
            .await
            .unwrap();
        let spec = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 2\n";
        let r = coord.apply("a.yaml", spec, false, "test").await.unwrap();
        assert_eq!(r.services[0].revision, 1);
        drop(coord);
        shutdown.cancel();

        // The records are in etcd, under the prefix.
        let dump = etcd.dump().await.unwrap();
        assert!(
            dump.iter().any(|(k, _)| k.contains("web")),
            "{:?}",
            keys(&dump)
        );
        let mut raw = etcd.client();
        let under = raw
            .get(
                "/team-a/",
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_count_only(),
                ),
            )
            .await
            .unwrap();
        assert_eq!(under.count() as usize, dump.len());

        // A second coordinator on its own connection sees the service.
        let again = open_store(&url, data.path(), None).await.unwrap();
        let store: Arc<dyn Store> = again.store;
        let shutdown = CancellationToken::new();
        let coord = Coordinator::load(store, Liveness::default(), shutdown.clone())
            .await
            .unwrap();
        let status = coord.status("", "").await;
        assert_eq!(status.services.len(), 1, "{status:?}");
        assert_eq!(status.services[0].name, "web");
        assert_eq!(status.services[0].revision, 1);
        assert_eq!(status.services[0].instances.len(), 2);
        shutdown.cancel();
    });
    // Nothing of it went to the data directory (no sled store there).
    assert!(!data.path().join("store").exists());
}

#[test]
fn a_scan_of_many_pages_is_one_point_in_time_while_another_writer_commits() {
    let cluster = EtcdCluster::start(1);
    rt().block_on(async {
        // 20 pages of 50; every commit of the writer rewrites all 1,000 keys
        // with one new value, so a scan that mixed revisions would see two.
        let mut cfg = config(&cluster, "/convoy/");
        cfg.scan_page = 50;
        let store = Arc::new(EtcdStore::connect(cfg).await.unwrap());
        let batch = |n: usize| -> Vec<Op> {
            (0..1000)
                .map(|i| Op::Put(format!("k/{i:04}"), format!("v{n}").into_bytes()))
                .collect()
        };
        store.apply(batch(0)).await.unwrap();
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 1..=40 {
                    store.apply(batch(n)).await.unwrap();
                }
            })
        };
        let mut scans = 0;
        let mut seen = std::collections::BTreeSet::new();
        while !writer.is_finished() || scans == 0 {
            let all = store.scan_prefix("k/").await.unwrap();
            assert_eq!(all.len(), 1000);
            let values: std::collections::BTreeSet<&[u8]> =
                all.iter().map(|(_, v)| v.as_slice()).collect();
            assert_eq!(values.len(), 1, "scan {scans} mixed commits: {values:?}");
            seen.insert(all[0].1.clone());
            scans += 1;
        }
        writer.await.unwrap();
        // The scans did run while commits landed.
        assert!(seen.len() > 1, "{scans} scans all saw one commit");
    });
}

#[test]
fn etcds_urls_talk_tls_with_a_client_certificate_and_are_refused_without_one() {
    let cluster = EtcdCluster::start_tls(1);
    let files = cluster.tls().expect("a TLS cluster").clone();
    let data = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let url: StoreUrl = cluster.url().parse().unwrap();
        assert!(cluster.url().starts_with("etcds://"), "{}", cluster.url());
        let tls = EtcdTls {
            ca: files.ca.clone(),
            cert: Some(files.client_cert.clone()),
            key: Some(files.client_key.clone()),
        };
        let opened = open_store(&url, data.path(), Some(tls.clone()))
            .await
            .unwrap_or_else(|e| panic!("etcds with a client certificate: {e}"));
        opened
            .store
            .apply(vec![Op::Put("services/prod/web".into(), b"tls".to_vec())])
            .await
            .unwrap();
        let etcd = opened.etcd.expect("an etcd store");
        assert_eq!(
            raw_get(&etcd, "/convoy/services/prod/web").await,
            Some(b"tls".to_vec())
        );
        let health = opened.store.health().await;
        assert!(health.healthy, "{health:?}");
        assert!(
            health.location.starts_with("https://127.0.0.1:"),
            "{health:?}"
        );
        assert!(
            health.members[0].ends_with("healthy (leader)"),
            "{health:?}"
        );

        // The members ask for a client certificate: none, no store.
        let no_cert = EtcdTls {
            cert: None,
            key: None,
            ..tls.clone()
        };
        let e = open_store(&url, data.path(), Some(no_cert))
            .await
            .err()
            .expect("no client certificate");
        assert!(matches!(e, StoreError::Open { .. }), "{e}");
        assert!(e.to_string().contains("127.0.0.1"), "{e}");
        assert!(e.to_string().contains("client certificate"), "{e}");

        // Another CA's certificate on the members: refused too.
        let other = tempfile::tempdir().unwrap();
        let other_ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        std::fs::write(other.path().join("ca.pem"), other_ca.cert.pem()).unwrap();
        let wrong_ca = EtcdTls {
            ca: other.path().join("ca.pem"),
            ..tls
        };
        assert!(open_store(&url, data.path(), Some(wrong_ca)).await.is_err());
    });
}

#[test]
fn a_snapshot_of_one_etcd_prefix_restores_into_another_and_loads() {
    use convoy_coordinator::snapshot;
    let cluster = EtcdCluster::start(1);
    let old_dir = tempfile::tempdir().unwrap();
    let new_dir = tempfile::tempdir().unwrap();
    let file = old_dir.path().join("snap.convoy");
    rt().block_on(async {
        // A coordinator's data dir (CA, admin token) and its store on /a/.
        convoy_coordinator::pki::Ca::load_or_create(&convoy_coordinator::pki::PkiPaths::new(
            old_dir.path(),
        ))
        .unwrap();
        std::fs::write(old_dir.path().join("admin.token"), "cvy_admin_test\n").unwrap();
        let a: StoreUrl = format!("{}/a", cluster.url()).parse().unwrap();
        let a = open_store(&a, old_dir.path(), None).await.unwrap().store;
        let shutdown = CancellationToken::new();
        let coord = Coordinator::load(a.clone(), Liveness::default(), shutdown.clone())
            .await
            .unwrap();
        let spec = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 2\n";
        coord.apply("a.yaml", spec, false, "test").await.unwrap();
        drop(coord);
        shutdown.cancel();

        snapshot::save_from_store(&*a, old_dir.path(), &file, false)
            .await
            .unwrap();
        let b: StoreUrl = format!("{}/b", cluster.url()).parse().unwrap();
        let b = open_store(&b, new_dir.path(), None).await.unwrap().store;
        let restored = snapshot::restore_to(&file, new_dir.path(), None, Some(b.clone()))
            .await
            .unwrap();
        assert_eq!(restored.services, 1, "{restored}");
        // Same keys on both prefixes, but the plan generation (bumped).
        let (old, new) = (a.dump().await.unwrap(), b.dump().await.unwrap());
        let differ: Vec<&String> = new
            .iter()
            .filter(|(k, v)| old.iter().find(|(ok, _)| ok == k).map(|(_, ov)| ov) != Some(v))
            .map(|(k, _)| k)
            .collect();
        assert!(
            differ
                .iter()
                .all(|k| k.starts_with("meta/") || k.starts_with("audit/")),
            "{differ:?}"
        );
        assert!(new_dir.path().join("pki/ca.key").exists());
        assert!(new_dir.path().join("admin.token").exists());
        assert!(
            !new_dir.path().join("store").exists(),
            "nothing went to sled"
        );

        let shutdown = CancellationToken::new();
        let coord = Coordinator::load(b.clone(), Liveness::default(), shutdown.clone())
            .await
            .unwrap();
        let status = coord.status("", "").await;
        assert_eq!(status.services.len(), 1, "{status:?}");
        assert_eq!(status.services[0].revision, 1);
        assert_eq!(status.services[0].instances.len(), 2);
        drop(coord);
        shutdown.cancel();

        // A prefix with data is not restored into.
        let again = snapshot::restore_to(&file, new_dir.path(), None, Some(b))
            .await
            .unwrap_err()
            .to_string();
        assert!(again.contains("already has a store with data"), "{again}");
    });
}

/// The next write a watch hands on, within 10 s.
async fn next(w: &mut convoy_coordinator::store::Watched) -> convoy_coordinator::store::Changes {
    tokio::time::timeout(Duration::from_secs(10), w.changes.recv())
        .await
        .expect("a change within 10 s")
        .expect("the watch goes on")
        .expect("no watch error")
}

/// A watch (what a standby follows desired state with): a consistent
/// start, then every later write under the prefix, whole, in order, with
/// the revision etcd gave it; nothing from another prefix.
#[test]
fn a_watch_starts_at_one_revision_and_hands_on_each_later_write_whole() {
    let cluster = EtcdCluster::start(1);
    rt().block_on(async {
        let store = connect(&cluster, "/convoy/").await;
        let other = connect(&cluster, "/other/").await;
        store
            .apply(vec![
                Op::Put("services/a".into(), b"1".to_vec()),
                Op::Put("nodes/n1".into(), b"x".to_vec()),
            ])
            .await
            .unwrap();
        let mut watched = store.watch("services/").await.unwrap();
        assert_eq!(keys(&watched.snapshot), ["services/a"]);
        assert!(watched.revision > 0);

        // One batch of three keys, two of them under the prefix.
        store
            .apply(vec![
                Op::Put("services/b".into(), b"2".to_vec()),
                Op::Delete("services/a".into()),
                Op::Put("nodes/n2".into(), b"y".to_vec()),
            ])
            .await
            .unwrap();
        other
            .apply(vec![Op::Put("services/z".into(), b"no".to_vec())])
            .await
            .unwrap();
        store
            .apply(vec![Op::Put("services/c".into(), b"3".to_vec())])
            .await
            .unwrap();
        let first = next(&mut watched).await;
        let mut got = first.changes.clone();
        got.sort_by(|a, b| a.key().cmp(b.key()));
        assert_eq!(
            got,
            vec![
                Change::Delete("services/a".into()),
                Change::Put("services/b".into(), b"2".to_vec()),
            ]
        );
        assert!(first.revision > watched.revision);
        let second = next(&mut watched).await;
        assert_eq!(
            second.changes,
            vec![Change::Put("services/c".into(), b"3".to_vec())]
        );
        // The other prefix's write came between, so the revisions are not
        // consecutive: they are etcd's own.
        assert_eq!(second.revision, first.revision + 2);

        // After a compaction of the history, a new watch (which starts at
        // the newest revision) still works.
        store
            .client()
            .compact(second.revision, None)
            .await
            .expect("compact");
        let mut fresh = store.watch("services/").await.unwrap();
        assert_eq!(keys(&fresh.snapshot), ["services/b", "services/c"]);
        store
            .apply(vec![Op::Put("services/d".into(), b"4".to_vec())])
            .await
            .unwrap();
        let after = next(&mut fresh).await;
        assert_eq!(
            after.changes,
            vec![Change::Put("services/d".into(), b"4".to_vec())]
        );
    });
}

//! Times `convoyd snapshot save` and `restore` at 10,000 nodes' worth of
//! state (issue 18; BENCHMARKS.md, "Snapshots (issue 18)"). Run it with
//! `bench/snapshot.sh` or:
//!
//! ```sh
//! cargo run --release -p convoy-coordinator --example snapshot_bench -- \
//!     [--nodes 10000] [--services 50] [--rounds 5]
//! ```
//!
//! Fills a sled store through the real record types: NODES node records
//! (facts and labels as agents report them), SERVICES services applied
//! through `Coordinator::apply` with their instances spread over the nodes,
//! and a few secrets; then, ROUNDS times, saves it offline
//! (`save_from_store`: dump, encode, write, fsync), reads the file back
//! (`Snapshot::decode`: checksum), and restores it into a new data
//! directory (`restore`: the key check on a copy in memory, then the files
//! and one `restore_into` batch). Prints medians and the file's size.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use convoy_coordinator::{
    pki::{self, PkiPaths},
    secrets::{Sealer, Secret},
    snapshot::{self, Snapshot},
    state::{Coordinator, Facts, Liveness, NodeRecord, SecretValue, SecretWrite, ServiceRecord},
    store::{self, Op, SledStore, Store},
};
use tokio_util::sync::CancellationToken;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let nodes = arg("--nodes", 10_000);
    let services = arg("--services", 50);
    let rounds = arg("--rounds", 5).max(1);
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    fill(&data, nodes, services).await;

    let (mut save, mut decode, mut restore) = (Vec::new(), Vec::new(), Vec::new());
    let mut size = 0;
    let mut keys = 0;
    for round in 0..rounds {
        let file = root.path().join(format!("s{round}.snap"));
        let store = SledStore::open(&data.join("store")).expect("open the store");
        let started = Instant::now();
        let saved = snapshot::save_from_store(&store, &data, &file, false)
            .await
            .expect("save");
        save.push(started.elapsed());
        drop(store);
        size = saved.bytes;
        keys = saved.keys;

        let started = Instant::now();
        let bytes = std::fs::read(&file).expect("read the snapshot");
        Snapshot::decode(&bytes, &file).expect("decode");
        decode.push(started.elapsed());

        let target = root.path().join(format!("restored{round}"));
        let key = data.join(convoy_coordinator::secrets::KEY_FILE);
        let started = Instant::now();
        let done = snapshot::restore(&file, &target, Some(&key))
            .await
            .expect("restore");
        restore.push(started.elapsed());
        assert!(done.key_checked);
        // sled's flusher may hold the lock a moment after the drop.
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("nodes={nodes} services={services} keys={keys} rounds={rounds}");
    println!("| step | median ms |");
    println!("|---|---:|");
    println!(
        "| save (dump, encode, write, fsync) | {:.0} |",
        median(save)
    );
    println!(
        "| read + verify (checksum, decode) | {:.0} |",
        median(decode)
    );
    println!(
        "| restore (verify, key check on a loaded copy, files, one batch) | {:.0} |",
        median(restore)
    );
    println!(
        "file: {} bytes ({:.1} MiB)",
        size,
        size as f64 / (1 << 20) as f64
    );
}

/// A data directory with a CA, an admin token, a secrets key and a store of
/// `nodes` nodes and `services` services spread over them.
async fn fill(data: &Path, nodes: usize, services: usize) {
    pki::create_dir_private(data).expect("data dir");
    pki::Ca::load_or_create(&PkiPaths::new(data)).expect("CA");
    pki::write_private(&data.join("admin.token"), b"convoy_bench").expect("token");
    let sealer = Sealer::open_or_create(data).expect("secrets key");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&data.join("store")).expect("store"));
    let names: Vec<String> = (0..nodes).map(|i| format!("node-{i:05}")).collect();
    let ops: Vec<Op> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let rec = NodeRecord {
                name: name.clone(),
                facts: Facts {
                    hostname: name.clone(),
                    os: "Ubuntu 24.04.1 LTS".into(),
                    kernel: "6.8.0-45-generic".into(),
                    arch: "x86_64".into(),
                    cpus: 16,
                    memory_bytes: 64 << 30,
                    docker_version: "27.3.1".into(),
                    labels: [
                        ("zone".to_string(), format!("zone-{}", i % 4)),
                        ("rack".to_string(), format!("r{}", i % 40)),
                    ]
                    .into(),
                    platform_os: "linux".into(),
                    ..Facts::default()
                }
                .into(),
                agent_version: "0.1.0".into(),
                first_seen_unix_ms: 1_700_000_000_000,
                last_seen_unix_ms: 1_700_000_000_000,
                certificates: vec![format!("{:064x}", i)],
                removed_unix_ms: 0,
                certificate_expires_unix_ms: 1_800_000_000_000,
                cordoned: false,
                draining: false,
                drained: false,
            };
            Op::put_json(format!("nodes/{name}"), &rec)
        })
        .collect();
    store.apply(ops).await.expect("write the nodes");

    let coord = Coordinator::load_sealed(
        store.clone(),
        Liveness::default(),
        CancellationToken::new(),
        sealer,
    )
    .await
    .expect("load");
    let per = nodes.div_ceil(services.max(1)).max(1);
    let mut yaml = String::from("services:\n");
    for s in 0..services {
        yaml.push_str(&format!(
            "  svc-{s:03}:\n    image: registry.example/app-{s}:1.{s}\n    \
             environment:\n      MODE: bench\n    ports: [\"8080\"]\n    \
             deploy:\n      replicas: {per}\n"
        ));
    }
    coord
        .apply("bench.yaml", &yaml, false, "bench")
        .await
        .expect("apply");
    for i in 0..10 {
        coord
            .write_secret(
                "default",
                &format!("secret-{i}"),
                SecretValue::Given(Secret::new(vec![b'x'; 64])),
                SecretWrite::Create,
                "bench",
            )
            .await
            .expect("secret");
    }
    drop(coord);
    // No agent is connected, so instances wait for a node: spread them over
    // the nodes in the records, as a running cluster's would be.
    let mut ops = Vec::new();
    for (i, (key, mut rec)) in store::scan_json::<ServiceRecord>(&*store, "services/")
        .await
        .expect("scan")
        .into_iter()
        .enumerate()
    {
        for (n, slot) in rec.assignments.values_mut().enumerate() {
            *slot = Some(names[(i * per + n) % names.len()].clone());
        }
        ops.push(Op::put_json(key, &rec));
    }
    store.apply(ops).await.expect("place");
}

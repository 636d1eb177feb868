//! `convoyd snapshot save|restore` (issue 18): a running coordinator saved
//! through its API, restored into a new data directory and started there;
//! agents come back on their own and nothing is redeployed. And the
//! refusals: a damaged file, a data directory that has a store, secrets
//! without their key, a deployer calling the Snapshot RPC.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use convoy_tests::bins::bin;
use convoy_tests::{skip_without_docker, wait_until, Cluster};
use serde_json::Value;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `convoyd snapshot ARGS...`.
fn convoyd_snapshot(args: &[&str]) -> Output {
    Command::new(bin("convoyd"))
        .arg("snapshot")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("cannot run convoyd snapshot")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Container id → StartedAt, as Docker has them.
fn started(c: &Cluster, svc: &str, replicas: usize, revision: u64) -> BTreeMap<String, String> {
    c.wait_service_running(svc, replicas, revision)
        .into_iter()
        .map(|ct| (ct.id, ct.state.started_at))
        .collect()
}

/// A stack of one service with two replicas reading secret `db` from a file.
fn stack(c: &Cluster, svc: &str, dir: &Path, tag: &str) -> String {
    std::fs::write(dir.join("db.txt"), "snapshot-canary-pw").unwrap();
    let yaml = format!(
        "services:\n  {svc}:\n    image: {}\n    environment:\n      TAG: \"{tag}\"\n    \
         deploy:\n      replicas: 2\n    secrets:\n      - source: db\n        target: db\n\
         secrets:\n  db:\n    file: ./db.txt\n",
        c.image()
    );
    let file = dir.join("stack.yaml");
    std::fs::write(&file, yaml).unwrap();
    path(&file).to_string()
}

#[test]
fn a_snapshot_taken_while_running_brings_the_coordinator_back_on_a_new_data_dir() {
    skip_without_docker!();
    let mut c = Cluster::with_agents(2);
    let svc = c.service_name("snap");
    let user = tempfile::tempdir().unwrap();
    let file = stack(&c, &svc, user.path(), "one");
    let out = c.cli(&["apply", "-f", &file]);
    assert!(out.status.success(), "apply: {}", text(&out));
    let before = started(&c, &svc, 2, 1);

    // Saved while convoyd runs: its store is locked, so through its API.
    let snap = c.root().join("backup.snap");
    let api = format!("https://{}", c.api_addr);
    let out = convoyd_snapshot(&[
        "save",
        path(&snap),
        "--data-dir",
        path(&c.data_dir),
        "--api",
        &api,
    ]);
    assert!(out.status.success(), "save: {}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("through") && said.contains("2 nodes") && said.contains("1 secrets"),
        "{said}"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&snap).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the snapshot's mode");
    }
    // The key is not in it (the file holds the secret sealed only).
    let bytes = std::fs::read(&snap).unwrap();
    let key = std::fs::read(c.data_dir.join("secrets.key")).unwrap();
    assert!(
        !bytes.windows(key.len()).any(|w| w == key.as_slice()),
        "secrets.key is in the snapshot"
    );
    assert!(
        !bytes
            .windows(b"snapshot-canary-pw".len())
            .any(|w| w == b"snapshot-canary-pw"),
        "a secret value is in the snapshot in plaintext"
    );
    // The save is audited.
    let audit: Value = c.cli_json(&["audit"]);
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "store.snapshot" && e["result"] == "ok"),
        "{audit:#}"
    );
    // A second save to the same file is refused without --force.
    let out = convoyd_snapshot(&[
        "save",
        path(&snap),
        "--data-dir",
        path(&c.data_dir),
        "--api",
        &api,
    ]);
    assert!(
        !out.status.success() && text(&out).contains("--force"),
        "{}",
        text(&out)
    );

    let exit = c.stop_coordinator();
    assert!(exit.success(), "convoyd exited with {exit}");

    // A new machine: a new data directory, the key copied apart.
    let key_copy = user.path().join("secrets.key");
    std::fs::copy(c.data_dir.join("secrets.key"), &key_copy).unwrap();
    let new_dir = c.root().join("restored");
    let recovery = std::time::Instant::now();
    let out = convoyd_snapshot(&[
        "restore",
        path(&snap),
        "--data-dir",
        path(&new_dir),
        "--secrets-key",
        path(&key_copy),
    ]);
    assert!(out.status.success(), "restore: {}", text(&out));
    assert!(
        text(&out).contains("the secrets key opens every sealed value"),
        "{}",
        text(&out)
    );
    let old_dir = std::mem::replace(&mut c.data_dir, new_dir.clone());
    for f in ["pki/ca.pem", "pki/ca.key", "admin.token", "secrets.key"] {
        assert_eq!(
            std::fs::read(old_dir.join(f)).unwrap(),
            std::fs::read(new_dir.join(f)).unwrap(),
            "{f}"
        );
    }
    // The old directory goes away, as on a lost machine.
    std::fs::remove_dir_all(&old_dir).unwrap();

    c.start_coordinator();
    c.wait_nodes_ready(&c.node_names());
    // Every node acknowledges the plan it is handed now (in sync).
    wait_until(
        "every node acknowledges its plan",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let nodes: Value = c.try_cli_json(&["nodes"])?;
            let nodes = nodes["nodes"].as_array().cloned().unwrap_or_default();
            anyhow::ensure!(nodes.len() == 2, "{nodes:#?}");
            for n in &nodes {
                anyhow::ensure!(
                    n["state"] == "ready"
                        && n["plan_generation"].as_u64().unwrap_or(0) > 0
                        && n["plan_generation"] == n["acked_generation"],
                    "{n:#}"
                );
            }
            Ok(())
        },
    );
    // The recovery time at this size, for BENCHMARKS.md.
    eprintln!(
        "restore + start + every node back and acked: {} ms",
        recovery.elapsed().as_millis()
    );
    assert_eq!(
        started(&c, &svc, 2, 1),
        before,
        "containers were redeployed after the restore"
    );
    let status = c.service_status(&svc);
    assert_eq!(status.revision, 1, "{}", status.describe());
    let secrets: Value = c.cli_json(&["secret", "list"]);
    assert!(secrets.to_string().contains("\"db\""), "{secrets:#}");

    // The CA and the admin token came back: a change deploys as usual.
    let file = stack(&c, &svc, user.path(), "two");
    let out = c.cli(&["apply", "-f", &file]);
    assert!(out.status.success(), "apply after restore: {}", text(&out));
    let after = started(&c, &svc, 2, 2);
    assert!(
        after.keys().all(|id| !before.contains_key(id)),
        "revision 2 did not replace the containers"
    );
    c.assert_healthy();
}

#[test]
fn damaged_snapshots_full_data_dirs_missing_keys_and_deployers_are_refused() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let api = format!("https://{}", c.api_addr);
    // A secret, so the snapshot holds sealed values.
    let user = tempfile::tempdir().unwrap();
    std::fs::write(user.path().join("v"), "pw").unwrap();
    let out = c.cli(&[
        "secret",
        "set",
        "db",
        "--from-file",
        path(&user.path().join("v")),
    ]);
    assert!(out.status.success(), "secret set: {}", text(&out));

    // A deployer token may not call the Snapshot RPC.
    let made: Value = c.cli_json(&["token", "create", "--role", "deployer", "--name", "d"]);
    let deployer = made["token"].as_str().unwrap().to_string();
    let out = deployer_snapshot(&c, &deployer);
    assert!(
        out.contains("PermissionDenied") && out.contains("needs an admin token"),
        "{out}"
    );
    let audit: Value = c.cli_json(&["audit"]);
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "store.snapshot"
                && e["result"]
                    .as_str()
                    .unwrap_or("")
                    .contains("needs an admin token")),
        "the refusal is not audited: {audit:#}"
    );

    // The admin may: saved through the API.
    let snap = c.root().join("good.snap");
    let out = convoyd_snapshot(&[
        "save",
        path(&snap),
        "--data-dir",
        path(&c.data_dir),
        "--api",
        &api,
    ]);
    assert!(out.status.success(), "admin save: {}", text(&out));
    c.stop_coordinator();

    // Truncated: refused, naming the file, and no store is made.
    let bytes = std::fs::read(&snap).unwrap();
    let cut = c.root().join("cut.snap");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let target = c.root().join("t1");
    let out = convoyd_snapshot(&["restore", path(&cut), "--data-dir", path(&target)]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("cut.snap is truncated"),
        "{}",
        text(&out)
    );
    assert!(!target.join("store").exists(), "a store was made");

    // One byte flipped: the checksum refuses it.
    let mut flipped = bytes.clone();
    let at = (flipped.len() / 2 + 100).min(flipped.len() - 1);
    flipped[at] ^= 0x40;
    let bad = c.root().join("flipped.snap");
    std::fs::write(&bad, &flipped).unwrap();
    let out = convoyd_snapshot(&["restore", path(&bad), "--data-dir", path(&target)]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("flipped.snap is corrupt"),
        "{}",
        text(&out)
    );
    assert!(!target.join("store").exists(), "a store was made");

    // Secrets and no key: refused, naming the flag; nothing written.
    let out = convoyd_snapshot(&["restore", path(&snap), "--data-dir", path(&target)]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--secrets-key"), "{}", text(&out));
    assert!(!target.exists(), "the target was written to");

    // The coordinator's own data directory has a store: refused, naming it.
    let out = convoyd_snapshot(&["restore", path(&snap), "--data-dir", path(&c.data_dir)]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "{} already has a store with data",
            c.data_dir.display()
        )),
        "{}",
        text(&out)
    );
    // ... and its store is untouched: convoyd starts on it as before.
    c.start_coordinator();
    let secrets: Value = c.cli_json(&["secret", "list"]);
    assert!(secrets.to_string().contains("\"db\""), "{secrets:#}");
    c.assert_healthy();
}

/// Calls the Snapshot RPC with `token` through `convoyd snapshot save`
/// aimed at a data directory holding that token and a locked store.
fn deployer_snapshot(c: &Cluster, token: &str) -> String {
    let dir = c.root().join("as-deployer");
    std::fs::create_dir_all(dir.join("pki")).unwrap();
    std::fs::copy(c.data_dir.join("pki/ca.pem"), dir.join("pki/ca.pem")).unwrap();
    std::fs::copy(c.data_dir.join("pki/ca.key"), dir.join("pki/ca.key")).unwrap();
    std::fs::write(dir.join("admin.token"), token).unwrap();
    // The running coordinator's store, locked: the API path is taken.
    std::os::unix::fs::symlink(c.data_dir.join("store"), dir.join("store")).unwrap();
    let out = convoyd_snapshot(&[
        "save",
        path(&dir.join("x.snap")),
        "--data-dir",
        path(&dir),
        "--api",
        &format!("https://{}", c.api_addr),
    ]);
    assert!(!out.status.success(), "a deployer saved a snapshot");
    assert!(!dir.join("x.snap").exists());
    text(&out)
}

//! A Compose stack as people write it (issue 14's proof): three services of
//! the test image in three roles, with `.env` interpolation, `depends_on`
//! on health, limits and reservations, and a named volume. `web` reaches
//! `db` and `cache` by name on one node; the limits are Docker's; `web`
//! started only once `db` was healthy; `db`'s data outlives a new revision.

use std::fs;
use std::time::Duration;

use convoy_tests::{docker, skip_without_docker, wait_until, Cluster};
use serde_json::Value;

/// Removes the test's volume whatever happened (declared before the
/// cluster, so dropped after its containers are gone).
struct RemoveVolume(String);

impl Drop for RemoveVolume {
    fn drop(&mut self) {
        let _ = docker::docker(&["volume", "rm", "-f", &self.0]);
    }
}

fn inspect(id: &str) -> Value {
    let out = docker::docker(&["inspect", id]).unwrap_or_else(|e| panic!("inspect {id}: {e:#}"));
    let mut all: Vec<Value> = serde_json::from_str(&out).unwrap();
    all.remove(0)
}

/// A Docker timestamp (`2026-01-02T03:04:05.123456789Z`, the fraction
/// without trailing zeros) as a string that orders by time.
fn sortable(stamp: &str) -> String {
    let (seconds, rest) = stamp.split_once('.').unwrap_or((stamp, "Z"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(
        &rest[digits.len()..],
        "Z",
        "a UTC time from Docker: {stamp}"
    );
    format!("{seconds}.{digits:0<9}")
}

fn exec(id: &str, args: &[&str]) -> Result<String, String> {
    docker::docker(&[&["exec", id][..], args].concat()).map_err(|e| format!("{e:#}"))
}

#[test]
fn a_three_service_compose_stack_runs_with_compose_meaning() {
    skip_without_docker!();
    // Named before the cluster, so removed after its containers are gone.
    let mut cleanup = RemoveVolume(String::new());
    let c = Cluster::with_agents(1);
    let key = c.service_name("data");
    let volume = format!("convoy-default-{key}");
    cleanup.0 = volume.clone();
    let (web, db, cache) = (
        c.service_name("web"),
        c.service_name("db"),
        c.service_name("cache"),
    );
    let dir = c.root().join("stack");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join(".env"),
        format!("IMAGE={}\nGREETING=hi from .env\n", c.image()),
    )
    .unwrap();
    let compose = |db_revision: &str| {
        format!(
            "services:\n\
             \x20 {web}:\n\
             \x20   image: ${{IMAGE}}\n\
             \x20   environment:\n\
             \x20     GREETING: ${{GREETING:-unset}}\n\
             \x20     MODE: ${{MODE:-production}}\n\
             \x20   depends_on:\n\
             \x20     {db}: {{condition: service_healthy}}\n\
             \x20     {cache}: {{condition: service_started}}\n\
             \x20   deploy:\n\
             \x20     resources:\n\
             \x20       limits: {{cpus: \"0.5\", memory: 64M, pids: 64}}\n\
             \x20       reservations: {{memory: 16M}}\n\
             \x20 {db}:\n\
             \x20   image: ${{IMAGE}}\n\
             \x20   environment: {{REVISION: \"{db_revision}\"}}\n\
             \x20   healthcheck:\n\
             \x20     test: [\"CMD\", \"/convoy-testapp\", \"--probe\", \"http://127.0.0.1:8080/healthz\"]\n\
             \x20     interval: 2s\n\
             \x20     timeout: 2s\n\
             \x20     retries: 3\n\
             \x20   volumes: [\"{key}:/data\"]\n\
             \x20 {cache}:\n\
             \x20   image: ${{IMAGE}}\n\
             \x20   mem_limit: 32m\n\
             volumes:\n\
             \x20 {key}: {{}}\n"
        )
    };
    let file = dir.join("compose.yaml");
    fs::write(&file, compose("1")).unwrap();
    c.apply(&file);
    let web_ct = c.wait_service_running(&web, 1, 1).remove(0);
    let db_ct = c.wait_service_running(&db, 1, 1).remove(0);
    let cache_ct = c.wait_service_running(&cache, 1, 1).remove(0);

    // Interpolated from `.env` and the default; the stored spec is resolved.
    let env = web_ct.config.env.clone().unwrap_or_default();
    assert!(
        env.contains(&"GREETING=hi from .env".to_string()),
        "{env:?}"
    );
    assert!(env.contains(&"MODE=production".to_string()), "{env:?}");

    // `web` reaches both by name through Docker's DNS (a real request).
    for target in [&db, &cache] {
        let answer = wait_until(
            format!("{web} reaches {target} by name"),
            Duration::from_secs(20),
            Duration::from_millis(250),
            || {
                exec(
                    &web_ct.id,
                    &[
                        "/convoy-testapp",
                        "--probe",
                        &format!("http://{target}:8080/"),
                    ],
                )
                .map_err(anyhow::Error::msg)
            },
        );
        assert!(answer.contains("200"), "{answer}");
    }

    // Limits and reservations as Docker holds them.
    let host = &inspect(&web_ct.id)["HostConfig"];
    assert_eq!(host["NanoCpus"], 500_000_000_i64);
    assert_eq!(host["Memory"], 64 * 1024 * 1024_i64);
    assert_eq!(host["MemoryReservation"], 16 * 1024 * 1024_i64);
    assert_eq!(host["PidsLimit"], 64);
    assert_eq!(
        inspect(&cache_ct.id)["HostConfig"]["Memory"],
        32 * 1024 * 1024_i64
    );

    // `web` started only after `db`'s first passing healthcheck.
    let db_state = &inspect(&db_ct.id)["State"];
    let first_healthy = db_state["Health"]["Log"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["ExitCode"] == 0)
        .map(|entry| entry["End"].as_str().unwrap().to_string())
        .expect("db was healthy once");
    let web_started = inspect(&web_ct.id)["State"]["StartedAt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        sortable(&web_started) >= sortable(&first_healthy),
        "web started at {web_started}, db was first healthy at {first_healthy}"
    );

    // The named volume is the environment's, and `db`'s data outlives a
    // new revision of `db`; `web` and `cache` are not replaced.
    // The test image has no shell: `docker cp` writes through the mount.
    let local = dir.join("marker");
    fs::write(&local, "kept\n").unwrap();
    docker::docker(&[
        "cp",
        local.to_str().unwrap(),
        &format!("{}:/data/marker", db_ct.id),
    ])
    .unwrap_or_else(|e| panic!("docker cp into {db}: {e:#}"));
    let mounts = inspect(&db_ct.id)["Mounts"].clone();
    assert!(
        mounts
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Type"] == "volume" && m["Name"] == volume.as_str()),
        "{mounts}"
    );
    fs::write(&file, compose("2")).unwrap();
    c.apply(&file);
    let db_ct2 = c.wait_service_running(&db, 1, 2).remove(0);
    assert_ne!(db_ct2.id, db_ct.id);
    fs::remove_file(&local).unwrap();
    docker::docker(&[
        "cp",
        &format!("{}:/data/marker", db_ct2.id),
        local.to_str().unwrap(),
    ])
    .unwrap_or_else(|e| panic!("the new {db} has no /data/marker: {e:#}"));
    assert_eq!(fs::read_to_string(&local).unwrap(), "kept\n");
    assert_eq!(c.wait_service_running(&web, 1, 1)[0].id, web_ct.id);
    assert_eq!(c.wait_service_running(&cache, 1, 1)[0].id, cache_ct.id);
}

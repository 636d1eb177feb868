use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use convoy_proto::{workload, ContainerSpec, SecretMount, UnitSpec, Workload};

use super::*;

const CANARY: &[u8] = b"canary-7f3a-hunter2";

fn key(name: &str, version: u64) -> SecretKey {
    SecretKey {
        env: "prod".into(),
        name: name.into(),
        version,
    }
}

fn mount(name: &str, version: u64, target: &str) -> SecretMount {
    SecretMount {
        name: name.into(),
        version,
        target: target.into(),
        ..Default::default()
    }
}

fn container(user: &str, secrets: Vec<SecretMount>) -> Workload {
    Workload {
        id: "prod/web/1".into(),
        env: "prod".into(),
        service: "web".into(),
        index: 1,
        revision: 2,
        runtime: Some(workload::Runtime::Container(ContainerSpec {
            image: "web:1".into(),
            user: user.into(),
            secrets,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn values(pairs: &[(SecretKey, &[u8])]) -> SecretValues {
    let mut v = SecretValues::default();
    for (k, value) in pairs {
        v.insert(k.clone(), value.to_vec());
    }
    v
}

fn me() -> (u32, u32) {
    (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn container_files_hold_the_value_with_their_owner_and_mode_under_the_container_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = NodeSecrets::unchecked(tmp.path().join("s")).unwrap();
    let (uid, gid) = me();
    let mut custom = mount("api", 1, "/etc/app/api.key");
    custom.uid = Some(uid);
    custom.gid = Some(gid);
    custom.mode = 0o440;
    let w = container(
        &format!("{uid}:{gid}"),
        vec![mount("db", 3, "/run/secrets/db"), custom],
    );
    let v = values(&[(key("db", 3), CANARY), (key("api", 1), b"k1")]);
    let delivery = secrets
        .prepare_container("convoy-prod-web-1-r2", &w, &v)
        .unwrap();
    assert_eq!(delivery.files.len(), 2);
    let dir = secrets.dir().join("containers/convoy-prod-web-1-r2");
    assert_eq!(mode(&dir), 0o700);
    let db = &delivery.files[0];
    assert_eq!(db.target, "/run/secrets/db");
    assert!(db.source.starts_with(&dir), "{}", db.source.display());
    assert_eq!(std::fs::read(&db.source).unwrap(), CANARY);
    // Mode 0 is 0400; no uid: the container's numeric user.
    assert_eq!(mode(&db.source), 0o400);
    let meta = std::fs::metadata(&db.source).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    let api = &delivery.files[1];
    assert_eq!(api.target, "/etc/app/api.key");
    assert_eq!(std::fs::read(&api.source).unwrap(), b"k1");
    assert_eq!(mode(&api.source), 0o440);
    assert!(delivery.env_lines().is_empty());
    // Again: the same files, nothing else left (no temporary file).
    let again = secrets
        .prepare_container("convoy-prod-web-1-r2", &w, &v)
        .unwrap();
    assert_eq!(again, delivery);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    // Neither Debug shows the value.
    let text = format!("{delivery:?} {v:?}");
    assert!(!text.contains("canary"), "{text}");
}

#[test]
fn a_relative_target_goes_under_run_secrets_and_env_var_is_opt_in() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = NodeSecrets::unchecked(tmp.path().join("s")).unwrap();
    let mut both = mount("db", 1, "db_password");
    both.env_var = "DB_PASSWORD".into();
    let mut env_only = mount("token", 1, "");
    env_only.env_var = "TOKEN".into();
    let (uid, _) = me();
    let w = container(&uid.to_string(), vec![both, env_only]);
    let v = values(&[(key("db", 1), CANARY), (key("token", 1), b"t0k")]);
    let delivery = secrets.prepare_container("c1", &w, &v).unwrap();
    assert_eq!(delivery.files.len(), 1, "env only: no file");
    assert_eq!(delivery.files[0].target, "/run/secrets/db_password");
    assert_eq!(
        delivery.env_lines(),
        [
            format!("DB_PASSWORD={}", std::str::from_utf8(CANARY).unwrap()),
            "TOKEN=t0k".to_string()
        ]
    );
    assert!(!format!("{delivery:?}").contains("canary"));
}

#[test]
fn two_secrets_at_one_target_and_bad_targets_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = NodeSecrets::unchecked(tmp.path().join("s")).unwrap();
    let (uid, _) = me();
    let v = values(&[(key("a", 1), b"1"), (key("b", 1), b"2")]);
    let w = container(
        &uid.to_string(),
        vec![mount("a", 1, "/run/secrets/x"), mount("b", 1, "x")],
    );
    let err = secrets.prepare_container("c1", &w, &v).unwrap_err();
    assert!(
        err.contains("two secrets are mounted at `/run/secrets/x`"),
        "{err}"
    );
    let w = container(&uid.to_string(), vec![mount("a", 1, "/etc/../shadow")]);
    let err = secrets.prepare_container("c1", &w, &v).unwrap_err();
    assert!(err.contains("not a file path"), "{err}");
}

#[test]
fn a_missing_value_names_the_secret_its_version_and_the_workload() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = NodeSecrets::unchecked(tmp.path().join("s")).unwrap();
    let w = container("", vec![mount("db", 4, "/run/secrets/db")]);
    // The plan holds v3 only.
    let v = values(&[(key("db", 3), CANARY)]);
    let err = secrets.prepare_container("c1", &w, &v).unwrap_err();
    assert!(
        err.contains("secret `db` v4 (environment `prod`) needed by `prod/web/1`")
            && err.contains("coordinator sent no value"),
        "{err}"
    );
    let from_cache = SecretValues::with_origin(Origin::Cache);
    let err = secrets
        .prepare_container("c1", &w, &from_cache)
        .unwrap_err();
    assert!(
        err.contains("secret `db` v4") && err.contains("once the coordinator is reachable"),
        "{err}"
    );
    assert!(!secrets.dir().join("containers/c1").exists());
}

#[test]
fn nothing_is_written_when_the_dir_is_not_on_tmpfs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let secrets = NodeSecrets::open(dir.clone());
    // A temporary directory may be on tmpfs; only check when it is not.
    let Some(problem) = secrets.problem() else {
        return;
    };
    assert!(problem.contains("not tmpfs"), "{problem}");
    let w = container("", vec![mount("db", 1, "/run/secrets/db")]);
    let v = values(&[(key("db", 1), CANARY)]);
    let err = secrets.prepare_container("c1", &w, &v).unwrap_err();
    assert!(
        err.starts_with(&format!("secrets dir {}", dir.display())),
        "{err}"
    );
    assert!(secrets.store_cache(&v).is_err());
    assert!(!dir.join("values").exists() && !dir.join("containers").exists());
}

#[test]
fn a_container_without_secrets_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = NodeSecrets::unchecked(tmp.path().join("s")).unwrap();
    let delivery = secrets
        .prepare_container("c1", &container("", vec![]), &SecretValues::default())
        .unwrap();
    assert!(delivery.is_empty());
    assert!(!secrets.dir().join("containers").exists());
}

#[test]
fn files_of_containers_that_are_gone_are_collected() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = NodeSecrets::unchecked(tmp.path().join("s")).unwrap();
    let (uid, _) = me();
    let w = container(&uid.to_string(), vec![mount("db", 1, "/run/secrets/db")]);
    let v = values(&[(key("db", 1), CANARY)]);
    secrets.prepare_container("old", &w, &v).unwrap();
    secrets.prepare_container("new", &w, &v).unwrap();
    secrets.collect_containers(&HashSet::from(["new".to_string()]));
    let left: Vec<_> = std::fs::read_dir(secrets.dir().join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["new"]);
}

#[test]
fn the_cache_is_written_pruned_and_read_back_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let secrets = NodeSecrets::unchecked(dir.clone()).unwrap();
    secrets
        .store_cache(&values(&[(key("db", 1), b"one"), (key("api", 1), CANARY)]))
        .unwrap();
    let cache = dir.join("values");
    assert_eq!(mode(&cache), 0o700);
    for entry in std::fs::read_dir(&cache).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        // Named by digest: no secret name on the disk.
        assert!(
            name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
        assert_eq!(mode(&entry.path()), 0o400);
    }
    // A new plan: db v2 instead of v1, api gone.
    secrets
        .store_cache(&values(&[(key("db", 2), b"two")]))
        .unwrap();
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);

    // "Restart": a new NodeSecrets on the same directory.
    let restarted = NodeSecrets::unchecked(dir).unwrap();
    let loaded = restarted.load_cache([key("db", 2), key("db", 1), key("api", 1)]);
    assert_eq!(loaded.origin(), Origin::Cache);
    assert_eq!(loaded.get(&key("db", 2)), Some(&b"two"[..]));
    assert_eq!(loaded.len(), 1, "pruned values are not read back");
    // A consumer of a missing one fails on its own, saying why.
    let w = container("", vec![mount("api", 1, "/run/secrets/api")]);
    let err = restarted.prepare_container("c1", &w, &loaded).unwrap_err();
    assert!(err.contains("coordinator is reachable again"), "{err}");
}

#[test]
fn unit_credentials_are_written_0400_under_the_unit_and_collected() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = NodeSecrets::unchecked(tmp.path().join("s")).unwrap();
    let w = Workload {
        id: "prod/job/1".into(),
        env: "prod".into(),
        runtime: Some(workload::Runtime::Unit(UnitSpec {
            credentials: vec![mount("db", 2, "db.pass"), mount("api", 1, "")],
            ..Default::default()
        })),
        ..Default::default()
    };
    let v = values(&[(key("db", 2), CANARY), (key("api", 1), b"k")]);
    secrets.prepare_unit("convoy-job.service", &w, &v).unwrap();
    let db = NodeSecrets::credential_path(secrets.dir(), "convoy-job.service", "db.pass");
    assert_eq!(std::fs::read(&db).unwrap(), CANARY);
    assert_eq!(mode(&db), 0o400);
    // No target: the secret's name.
    let api = NodeSecrets::credential_path(secrets.dir(), "convoy-job.service", "api");
    assert_eq!(std::fs::read(&api).unwrap(), b"k");
    let err = secrets
        .prepare_unit("convoy-job.service", &w, &SecretValues::default())
        .unwrap_err();
    assert!(
        err.contains("secret `db` v2") && err.contains("prod/job/1"),
        "{err}"
    );
    secrets.collect_units(&HashSet::new());
    assert!(!db.exists());
}

#[test]
fn the_owner_of_a_secret_file_follows_a_numeric_user() {
    assert_eq!(owner_of_user("1000"), (1000, 0));
    assert_eq!(owner_of_user("1000:1001"), (1000, 1001));
    assert_eq!(owner_of_user("www-data"), (0, 0));
    assert_eq!(owner_of_user(""), (0, 0));
}

#[test]
fn the_file_system_is_the_longest_mount_point_holding_the_path() {
    let mountinfo = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:22 / /run rw,nosuid shared:5 - tmpfs tmpfs rw,mode=755
26 25 0:23 / /run/lock rw shared:6 - tmpfs tmpfs rw
27 22 0:24 / /run2 rw - xfs /dev/sdb rw
28 22 0:25 / /srv/my\\040dir rw - ramfs ramfs rw
";
    let fs = |p: &str| fs_type_of(mountinfo, Path::new(p));
    assert_eq!(fs("/run/convoy-agent/secrets").as_deref(), Some("tmpfs"));
    assert_eq!(fs("/run2/secrets").as_deref(), Some("xfs"));
    assert_eq!(fs("/var/lib/convoy").as_deref(), Some("ext4"));
    assert_eq!(fs("/srv/my dir/s").as_deref(), Some("ramfs"));
}

#[test]
fn refs_of_workloads_are_their_env_name_and_version() {
    let w = container("", vec![mount("db", 3, "/x"), mount("api", 1, "")]);
    let refs: Vec<_> = refs_of([&w]).into_iter().collect();
    assert_eq!(refs, [key("api", 1), key("db", 3)]);
    assert_eq!(key("db", 3).to_string(), "prod/db@v3");
    // An ingress' certificate and key are references too (the proxy's).
    let mut routed = container("", vec![mount("db", 3, "/x")]);
    let r = |name: &str, version| {
        Some(convoy_proto::SecretRef {
            name: name.into(),
            version,
        })
    };
    routed.ingress = Some(convoy_proto::Ingress {
        tls: vec![convoy_proto::IngressTls {
            hosts: vec!["app.example.com".into()],
            certificate: r("site", 2),
            key: r("site", 2),
        }],
        ..Default::default()
    });
    let refs: Vec<_> = refs_of([&routed]).into_iter().collect();
    assert_eq!(refs, [key("db", 3), key("site", 2)]);
}

//! `deploy.resources`, the older resource keys, `shm_size` and `ulimits`,
//! read from spec files.

use super::{parse, ResourcesSpec, Ulimit};

fn web(extra: &str) -> String {
    let mut yaml = String::from("services:\n  web:\n    image: nginx\n");
    for line in extra.lines() {
        yaml += &format!("    {line}\n");
    }
    yaml
}

fn resources(extra: &str) -> ResourcesSpec {
    let file = parse("app.yaml", &web(extra)).unwrap_or_else(|e| panic!("{e}"));
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    file.services["web"].resources.clone()
}

fn error(extra: &str) -> String {
    match parse("app.yaml", &web(extra)) {
        Ok(file) => panic!("parsed: {:?}", file.services["web"].resources),
        Err(e) => e.to_string(),
    }
}

#[test]
fn deploy_resources_limits_and_reservations_are_read() {
    let r = resources(
        "deploy:\n  resources:\n    limits:\n      cpus: '0.5'\n      memory: 512M\n      pids: 100\n    reservations:\n      cpus: 0.25\n      memory: 256m\n",
    );
    assert_eq!(r.cpu_limit_nanos, 500_000_000);
    assert_eq!(r.memory_limit_bytes, 512 << 20);
    assert_eq!(r.pids_limit, 100);
    assert_eq!(r.cpu_reservation_nanos, 250_000_000);
    assert_eq!(r.memory_reservation_bytes, 256 << 20);
}

#[test]
fn the_older_keys_say_the_same_and_may_agree_with_deploy() {
    let r = resources(
        "cpus: 1.5\nmem_limit: 1g\nmem_reservation: 512m\npids_limit: 50\nshm_size: 128m",
    );
    assert_eq!(r.cpu_limit_nanos, 1_500_000_000);
    assert_eq!(r.memory_limit_bytes, 1 << 30);
    assert_eq!(r.memory_reservation_bytes, 512 << 20);
    assert_eq!(r.pids_limit, 50);
    assert_eq!(r.shm_size_bytes, 128 << 20);
    let same = resources("cpus: 2\ndeploy:\n  resources:\n    limits:\n      cpus: 2");
    assert_eq!(same.cpu_limit_nanos, 2_000_000_000);
    assert_eq!(
        error("cpus: 1\ndeploy:\n  resources:\n    limits:\n      cpus: 2"),
        "app.yaml:4:5: services.web.cpus: differs from `deploy.resources.limits.cpus`: keep one \
         of the two"
    );
}

#[test]
fn ulimits_take_one_number_or_soft_and_hard() {
    let r = resources("ulimits:\n  nproc: 65535\n  nofile:\n    soft: 20000\n    hard: 40000");
    assert_eq!(
        r.ulimits["nproc"],
        Ulimit {
            soft: 65535,
            hard: 65535
        }
    );
    assert_eq!(
        r.ulimits["nofile"],
        Ulimit {
            soft: 20000,
            hard: 40000
        }
    );
    assert!(error("ulimits:\n  files: 10").contains("unknown ulimit `files`"));
    assert!(error("ulimits:\n  nofile: {soft: 10, hard: 5}")
        .contains("the soft limit 10 is above the hard limit 5"));
    assert!(error("ulimits:\n  nofile: {soft: 10}").contains("give both `soft` and `hard`"));
}

#[test]
fn bad_values_are_errors_naming_line_and_key() {
    assert_eq!(
        error("deploy:\n  resources:\n    limits:\n      memory: lots"),
        "app.yaml:7:19: services.web.deploy.resources.limits.memory: invalid size `lots`: write \
         e.g. `512m`, `1g` or a number of bytes"
    );
    assert!(error("cpus: none").starts_with("app.yaml:4:11: services.web.cpus: invalid CPU count"));
    assert!(error("deploy:\n  resources:\n    limits:\n      gpus: 1")
        .contains("unknown field `gpus`, expected one of `cpus`, `memory`, `pids`"));
    assert!(error("mem_limit: 256m\nmem_reservation: 1g")
        .contains("the memory reservation is above the memory limit"));
    let devices = error(
        "deploy:\n  resources:\n    reservations:\n      devices:\n        - capabilities: [tpu]",
    );
    assert!(
        devices.contains("reservations.devices[0]: unknown capability `tpu`"),
        "{devices}"
    );
}

#[test]
fn resources_change_the_hash_and_are_named_by_diff() {
    let plain = parse("app.yaml", &web("")).unwrap();
    let limited = parse("app.yaml", &web("mem_limit: 1g")).unwrap();
    let (a, b) = (&plain.services["web"], &limited.services["web"]);
    assert_ne!(a.spec_hash(), b.spec_hash());
    assert_eq!(super::changed_fields(a, b), ["resources"]);
    // A spec without resources keeps the hash it had before they existed.
    assert!(serde_json::to_string(a)
        .unwrap()
        .find("resources")
        .is_none());
    let wire = b.container_spec();
    assert_eq!(wire.memory_bytes, 1 << 30);
}

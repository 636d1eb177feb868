//! Compose `configs` (issue 14): a `file:` config and a `content:` config
//! reach the container read-only at their targets; changing the file and
//! applying again replaces the containers of the service that uses it, and
//! only those.

use convoy_tests::{docker, skip_without_docker, Cluster};
use serde_json::Value;

/// Runs the test app in container `id` with `args` (the image has no
/// shell): its output, or its error.
fn testapp(id: &str, args: &[&str]) -> Result<String, String> {
    docker::docker(&[&["exec", id, "/convoy-testapp"][..], args].concat())
        .map_err(|e| format!("{e:#}"))
}

/// The mount of container `id` at `target`, as `docker inspect` shows it.
fn mount_at(id: &str, target: &str) -> Value {
    let out = docker::docker(&["inspect", "-f", "{{json .Mounts}}", id]).unwrap();
    let mounts: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    mounts
        .into_iter()
        .find(|m| m["Destination"] == target)
        .unwrap_or_else(|| panic!("{id} has no mount at {target}: {out}"))
}

#[test]
fn configs_are_delivered_read_only_and_a_change_replaces_only_the_services_using_it() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let node = c.add_agent();
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let web = c.service_name("web");
    let other = c.service_name("other");
    let image = c.image();
    std::fs::create_dir_all(c.root().join("conf")).unwrap();
    let app_conf = c.root().join("conf/app.conf");
    std::fs::write(&app_conf, "port=80\n").unwrap();
    let yaml = format!(
        "services:\n  {web}:\n    image: {image}\n    configs:\n      - source: app\n        \
         target: /etc/app.conf\n        mode: 0440\n      - motd\n  {other}:\n    \
         image: {image}\n    configs: [motd]\nconfigs:\n  app:\n    file: ./conf/app.conf\n  \
         motd:\n    content: hello from convoy\n"
    );
    let file = c.write_spec("configs.yaml", &yaml);
    c.apply(&file);
    let web_ct = c.wait_service_running(&web, 1, 1).remove(0);
    let other_ct = c.wait_service_running(&other, 1, 1).remove(0);

    // Read inside the containers, at their targets.
    assert_eq!(
        testapp(&web_ct.id, &["--cat", "/etc/app.conf"]).unwrap(),
        "port=80\n"
    );
    assert_eq!(
        testapp(&web_ct.id, &["--cat", "/motd"]).unwrap(),
        "hello from convoy"
    );
    assert_eq!(
        testapp(&other_ct.id, &["--cat", "/motd"]).unwrap(),
        "hello from convoy"
    );
    // Read-only: a write from inside fails, and Docker says so too.
    let written = testapp(&web_ct.id, &["--write", "/etc/app.conf"]);
    let err = written.expect_err("writing a config must fail");
    assert!(err.contains("Read-only file system"), "{err}");
    let mount = mount_at(&web_ct.id, "/etc/app.conf");
    assert_eq!(mount["RW"], false, "{mount}");
    assert_eq!(mount["Type"], "bind", "{mount}");
    // The agent's own file, under its data directory, with the mode asked.
    let source = mount["Source"].as_str().unwrap().to_owned();
    let data_dir = c.agent(&node).data_dir.canonicalize().unwrap();
    assert!(
        std::path::Path::new(&source).starts_with(data_dir.join("configs")),
        "{source} is not under {}",
        data_dir.display()
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&source).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o440, "{source}");
    }

    // A new content for `app`: web is replaced and sees it; other is kept.
    std::fs::write(&app_conf, "port=81\n").unwrap();
    let report = c.apply(&file);
    let changed: Vec<&str> = report
        .services
        .iter()
        .filter(|s| s.action != "unchanged")
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(changed, vec![web.as_str()], "{report:?}");
    let web_change = report.services.iter().find(|s| s.service == web).unwrap();
    assert_eq!(web_change.changed_fields, vec!["configs".to_string()]);
    let web_new = c.wait_service_running(&web, 1, 2).remove(0);
    assert_ne!(web_new.id, web_ct.id, "web was not replaced");
    assert_eq!(
        testapp(&web_new.id, &["--cat", "/etc/app.conf"]).unwrap(),
        "port=81\n"
    );
    let other_now = c.wait_service_running(&other, 1, 1).remove(0);
    assert_eq!(other_now.id, other_ct.id, "other was replaced");

    // The old file goes once no container mounts it.
    convoy_tests::wait_until(
        "the replaced config's file is removed",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(250),
        || {
            anyhow::ensure!(
                !std::path::Path::new(&source).exists(),
                "{source} is still there"
            );
            Ok(())
        },
    );
}

/// A plan holds each instance's configs: nine replicas of a 500 KiB config
/// on one node make a plan over gRPC's default 4 MiB message limit.
#[test]
fn a_large_config_reaches_many_replicas_on_one_node() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let node = c.add_agent();
    c.wait_nodes_ready(std::slice::from_ref(&node));
    let web = c.service_name("web");
    let image = c.image();
    let big: String = "0123456789abcdef\n".repeat(500 * 1024 / 17);
    std::fs::write(c.root().join("big.conf"), &big).unwrap();
    let yaml = format!(
        "services:\n  {web}:\n    image: {image}\n    deploy: {{replicas: 9}}\n    \
         configs: [{{source: big, target: /big.conf}}]\nconfigs:\n  big:\n    file: ./big.conf\n"
    );
    let file = c.write_spec("big.yaml", &yaml);
    c.apply(&file);
    let containers = c.wait_service_running(&web, 9, 1);
    let read = testapp(&containers[8].id, &["--cat", "/big.conf"]).unwrap();
    assert_eq!(read.len(), big.len());
}

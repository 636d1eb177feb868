//! Environments: services and revisions per environment, nodes belonging to
//! environments through their `env` label, placement never crossing them,
//! and deployer tokens limited to theirs.

use std::time::Duration;

use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, wait_until, Cluster, ServiceSpec};
use serde_json::Value;

#[test]
fn services_live_per_environment_and_never_cross_to_other_nodes() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let plain = c.add_agent();
    let prod = c.add_agent_with_args(&["--label", "env=prod"]);
    c.wait_nodes_ready(&[plain.clone(), prod.clone()]);
    let svc = c.service_name("envsvc");
    let file = c.write_spec(
        "env.yaml",
        &compose(&[&ServiceSpec::new(&svc, &c.image()).replicas(2)]),
    );
    let f = file.to_str().unwrap();
    // The same spec in two environments: two services, revisions apart.
    let out = c.cli(&["--env", "prod", "apply", "-f", f]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.cli(&["apply", "-f", f]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    wait_until(
        "both environments run 2 instances on their own nodes".to_string(),
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let cts = c.containers_of(&svc)?;
            let on = |env: &str, node: &str| {
                cts.iter()
                    .filter(|ct| {
                        ct.state.running
                            && ct.label("io.convoy.env") == Some(env)
                            && ct.label("io.convoy.node") == Some(node)
                    })
                    .count()
            };
            anyhow::ensure!(
                on("prod", &prod) == 2 && on("default", &plain) == 2 && cts.len() == 4,
                "containers: {:?}",
                cts.iter().map(|c| c.describe()).collect::<Vec<_>>()
            );
            Ok(())
        },
    );
    let prod_only: Value = c.cli_json(&["--env", "prod", "status"]);
    let services = prod_only["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{prod_only:#}");
    assert_eq!(services[0]["env"], "prod");
    let all: Value = c.cli_json(&["status"]);
    assert_eq!(all["services"].as_array().unwrap().len(), 2, "{all:#}");
    let h: Value = c.cli_json(&["--env", "prod", "history", &svc]);
    assert_eq!(h["revisions"].as_array().unwrap().len(), 1);

    // A third environment no node serves: pending, never placed elsewhere.
    let out = c.cli(&["--env", "staging", "apply", "-f", f]);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_secs(2));
    let staging: Value = c.cli_json(&["--env", "staging", "status", &svc]);
    let inst = &staging["services"][0]["instances"];
    assert!(
        inst.as_array()
            .unwrap()
            .iter()
            .all(|i| i["state"] == "pending" && i["node"] == ""),
        "{staging:#}"
    );
    assert!(c
        .containers_of(&svc)
        .unwrap()
        .iter()
        .all(|ct| ct.label("io.convoy.env") != Some("staging")));

    // A deployer for staging may not touch prod.
    let token: Value = c.cli_json(&[
        "token", "create", "--name", "ci", "--role", "deployer", "--env", "staging",
    ]);
    let token = token["token"].as_str().unwrap().to_string();
    let out = c.cli_with_token(&token, &["--env", "prod", "delete", &svc]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("may not touch environment `prod`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.cli_with_token(&token, &["--env", "staging", "delete", &svc]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Bad input: an environment name that is not one.
    let out = c.cli(&["--env", "Prod/1", "apply", "-f", f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid environment `Prod/1`"));
}

/// Issue 13: `rollout status`/`abort` without `--env` took the first service
/// of that name in any environment (here `alpha`, before `default`), and
/// abort could apply another environment's revision to `default/SERVICE`.
#[test]
fn rollout_commands_without_env_act_on_the_default_environment_only() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let plain = c.add_agent();
    c.wait_nodes_ready(std::slice::from_ref(&plain));
    let svc = c.service_name("envroll");
    let spec = |greeting: &str| {
        c.write_spec(
            &format!("{greeting}.yaml"),
            &compose(&[&ServiceSpec::new(&svc, &c.image()).env("GREETING", greeting)]),
        )
    };
    let (v1, v2) = (spec("v1"), spec("v2"));
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // `alpha`: no node serves it, so its second rollout never ends.
    ok(c.cli(&["--env", "alpha", "apply", "-f", v1.to_str().unwrap()]));
    ok(c.cli(&["--env", "alpha", "apply", "-f", v2.to_str().unwrap()]));
    // `default`: one revision, rolled out.
    ok(c.cli(&["apply", "-f", v1.to_str().unwrap(), "--wait"]));

    let alpha: Value = c.cli_json(&["--env", "alpha", "rollout", "status", &svc]);
    assert_eq!(alpha["to_revision"], 2, "{alpha:#}");
    assert_eq!(alpha["state"], "running", "{alpha:#}");
    let default: Value = c.cli_json(&["rollout", "status", &svc]);
    assert_eq!(default["to_revision"], 1, "{default:#}");
    assert_eq!(default["state"], "succeeded", "{default:#}");

    // Nothing to abort in `default`; alpha's rollout is not touched.
    let out = c.cli(&["rollout", "abort", &svc]);
    assert!(!out.status.success(), "abort found something to abort");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no rollout in progress"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h: Value = c.cli_json(&["history", &svc]);
    assert_eq!(h["revisions"].as_array().unwrap().len(), 1, "{h:#}");
    let cts = c.containers_of(&svc).unwrap();
    assert!(
        cts.iter()
            .all(|ct| ct.label("io.convoy.env") == Some("default") && ct.state.running),
        "{:?}",
        cts.iter().map(|c| c.describe()).collect::<Vec<_>>()
    );
    assert_eq!(cts.len(), 1);
}

//! Rollout analysis (issue 20): PromQL gates against a real Prometheus
//! scraping the coordinator. A gate whose bound holds lets the rollout
//! succeed; one whose bound the measured value breaks fails the rollout,
//! which rolls back, with the value in the reason and the history.

use std::process::Output;
use std::time::Duration;

use anyhow::ensure;
use convoy_tests::prom::{require_tool, Prometheus};
use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, wait_until, Cluster, ServiceSpec};
use serde_json::Value;

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn spec(c: &Cluster, svc: &str, greeting: &str, analysis: Option<&str>) -> ServiceSpec {
    let s = ServiceSpec::new(svc, &c.image())
        .replicas(2)
        .env("GREETING", greeting);
    match analysis {
        Some(a) => s.extra(&format!(
            "x-convoy: {{ update: {{ max_parallel: 1, analysis: {a} }} }}"
        )),
        None => s,
    }
}

fn apply_wait(c: &Cluster, svc: &ServiceSpec) -> Output {
    let file = c.write_spec("a.yaml", &compose(&[svc]));
    c.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--wait",
        "--timeout",
        "90s",
    ])
}

#[test]
fn a_promql_gate_passes_and_fails_as_its_threshold_says() {
    require_tool("prometheus");
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let http = c.http_addr;
    let prom = Prometheus::start(
        &c.root().join("prometheus"),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: convoy\n    static_configs:\n      - targets: [\"{http}\"]\n"
        ),
        &[],
    );
    wait_until(
        "Prometheus has scraped the coordinator",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let v = prom.value(r#"sum(convoy_nodes{state="ready"})"#)?;
            ensure!(v == 1.0, "ready nodes: {v}");
            Ok(())
        },
    );
    let url = format!("http://{}", prom.addr);
    let svc = c.service_name("gated");

    // A spec that names no bound is refused, with where.
    let bad = spec(
        &c,
        &svc,
        "x",
        Some(&format!(
            "{{ prometheus: \"{url}\", queries: [{{ name: ready, query: up }}] }}"
        )),
    );
    let out = apply_wait(&c, &bad);
    assert!(!out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("needs `max:` or `min:`"),
        "{}",
        said(&out)
    );

    let out = apply_wait(&c, &spec(&c, &svc, "one", None));
    assert!(out.status.success(), "{}", said(&out));

    // The bound holds (one ready node, min 1): the rollout succeeds.
    let holds = format!(
        "{{ prometheus: \"{url}\", interval: 1s, queries: [{{ name: ready-nodes, query: 'sum(convoy_nodes{{state=\"ready\"}})', min: 1 }}] }}"
    );
    let out = apply_wait(&c, &spec(&c, &svc, "two", Some(&holds)));
    assert!(out.status.success(), "the gate holds: {}", said(&out));

    // The bound breaks (1 > max 0.5, twice in a row with failure_limit 1):
    // the rollout fails with the measured value and rolls back to "two".
    let breaks = format!(
        "{{ prometheus: \"{url}\", interval: 1s, failure_limit: 1, queries: [{{ name: ready-nodes, query: 'sum(convoy_nodes{{state=\"ready\"}})', max: 0.5 }}] }}"
    );
    let out = apply_wait(&c, &spec(&c, &svc, "three", Some(&breaks)));
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let err = said(&out);
    assert!(
        err.contains("analysis failed 2 time(s) in a row")
            && err.contains("`ready-nodes` measured 1 > max 0.5"),
        "the reason carries the measured value: {err}"
    );
    wait_until(
        "the rollback puts revision two back on every instance",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let s: Value = c.cli_json(&["status", &svc]);
            let r = &s["services"][0]["rollout"];
            ensure!(
                r["is_rollback"] == true && r["state"] == "succeeded",
                "rollout: {r}"
            );
            Ok(())
        },
    );
    wait_until(
        "Docker runs revision two's containers only",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let greetings: Vec<String> = c
                .containers_of(&svc)?
                .into_iter()
                .filter(|ct| ct.state.running)
                .map(|ct| ct.env_var("GREETING").unwrap_or_default().to_string())
                .collect();
            ensure!(greetings == ["two", "two"], "running: {greetings:?}");
            Ok(())
        },
    );
    let h: Value = c.cli_json(&["history", &svc]);
    let revs = h["revisions"].as_array().unwrap();
    let failed = revs
        .iter()
        .find(|r| r["revision"] == 3)
        .expect("revision 3 in the history");
    assert!(
        failed["outcome"]
            .as_str()
            .unwrap_or_default()
            .contains("measured 1 > max 0.5"),
        "{h:#}"
    );
}

//! A real Prometheus (Debian's package) scrapes a real cluster's `/metrics`:
//! Convoy's series are there with the values the cluster really has, a
//! frozen agent shows up as a lost node and fires `ConvoyNodeLost`, the
//! shipped alert rules and dashboard (deploy/) are consistent with what
//! `convoyd` exposes, and `promtool` accepts all of it. A missing
//! `prometheus` or `promtool` fails these tests; it never skips them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use convoy_tests::process::signal;
use convoy_tests::prom::{
    assert_promtool_ok, deploy_dir, exposed_series, get, promql_refs, require_tool, Prometheus,
};
use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, wait_until, Cluster, ServiceSpec};
use serde_json::Value;

const REPLICAS: u32 = 2;
/// How soon Prometheus must see a frozen agent's node as lost: 2.5 s of
/// silence (the coordinator's default), one 1 s scrape, and the polling.
const LOSS_BOUND: Duration = Duration::from_secs(10);

/// A cluster with one agent running `REPLICAS` instances of one service,
/// as Docker really runs them.
fn cluster_with_a_service() -> (Cluster, String, String) {
    let c = Cluster::with_agents(1);
    let node = c.node_names()[0].clone();
    let svc = c.service_name("prom");
    let spec = ServiceSpec::new(&svc, &c.image()).replicas(REPLICAS);
    c.apply(&c.write_spec("prom.yaml", &compose(&[&spec])));
    c.wait_service_running(&svc, REPLICAS as usize, 1);
    (c, node, svc)
}

/// `GET /metrics` as curl sends it; must answer 200.
fn scrape(addr: SocketAddr, accept: &str) -> String {
    let r = get(addr, "/metrics", &[("Accept", accept)])
        .unwrap_or_else(|e| panic!("GET http://{addr}/metrics: {e:#}"));
    assert_eq!(r.status, 200, "GET /metrics said {}: {}", r.status, r.body);
    r.body
}

#[test]
fn shipped_alert_rules_and_scrape_config_pass_promtool() {
    require_tool("promtool");
    let dir = deploy_dir().join("prometheus");
    let path = |f: &str| dir.join(f).to_str().expect("UTF-8 path").to_string();
    assert_promtool_ok(&["check", "rules", &path("alerts.yml")], "");
    // Among them: ConvoyNodeLost fires after 30 s of convoy_node_ready == 0,
    // not before, and not for a node back within 30 s.
    let said = assert_promtool_ok(&["test", "rules", &path("alerts_test.yml")], "");
    assert!(said.contains("SUCCESS"), "{said}");
    assert_promtool_ok(&["check", "config", &path("prometheus.yml")], "");
}

#[test]
fn metrics_pass_promtool_check_metrics() {
    require_tool("promtool");
    skip_without_docker!();
    let (c, _, _) = cluster_with_a_service();
    // What `curl http://.../metrics | promtool check metrics` sees.
    let text = scrape(c.http_addr, "*/*");
    // Kept with the cluster's files when the test fails.
    fs::write(c.root().join("metrics.txt"), &text).unwrap();
    assert_promtool_ok(&["check", "metrics"], &text);
}

#[test]
fn prometheus_scrapes_convoy_and_fires_node_lost_for_a_frozen_agent() {
    require_tool("prometheus");
    skip_without_docker!();
    let (mut c, node, svc) = cluster_with_a_service();
    let http = c.http_addr;

    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: convoy
    static_configs:
      - targets: ["{http}"]
"#
    );
    let rules = with_fast_node_lost(
        &fs::read_to_string(deploy_dir().join("prometheus/alerts.yml")).unwrap(),
    );
    let prom = Prometheus::start(
        &c.root().join("prometheus"),
        &config,
        &[("alerts.yml", &rules)],
    );

    // Convoy's series, with the values this cluster really has.
    let started = Instant::now();
    let expected: Vec<(String, f64)> = vec![
        (r#"up{job="convoy"}"#.into(), 1.0),
        (r#"convoy_nodes{state="ready"}"#.into(), 1.0),
        (r#"convoy_nodes{state="lost"}"#.into(), 0.0),
        (format!(r#"convoy_node_ready{{node="{node}"}}"#), 1.0),
        ("convoy_services".into(), 1.0),
        ("convoy_agent_streams".into(), 1.0),
        (
            format!(r#"convoy_service_instances_desired{{env="default",service="{svc}"}}"#),
            f64::from(REPLICAS),
        ),
        (
            // No health checks: running counts as healthy.
            format!(r#"convoy_service_instances_healthy{{env="default",service="{svc}"}}"#),
            f64::from(REPLICAS),
        ),
        (
            r#"sum(convoy_instances{state="running"})"#.into(),
            f64::from(REPLICAS),
        ),
    ];
    let at_least: Vec<(&str, f64)> = vec![
        (r#"convoy_events_total{kind="service.deployed"}"#, 1.0),
        (r#"convoy_events_total{kind="node.joined"}"#, 1.0),
        ("convoy_apply_duration_seconds_count", 1.0),
        ("convoy_agent_rtt_seconds_count", 1.0),
        (r#"convoy_node_heartbeat_age_seconds"#, 0.0),
        (r#"convoy_node_memory_used_bytes"#, 1.0),
        (r#"convoy_build_info"#, 1.0),
    ];
    wait_until(
        "Prometheus has Convoy's series with this cluster's values",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            for (q, want) in &expected {
                let got = prom.value(q)?;
                ensure!(got == *want, "`{q}` is {got}, not {want}");
            }
            for (q, min) in &at_least {
                let got = prom.value(q)?;
                ensure!(got >= *min, "`{q}` is {got}, not at least {min}");
            }
            Ok(())
        },
    );
    eprintln!(
        "Prometheus had every series after {:.1?}",
        started.elapsed()
    );
    let heartbeat_age = prom
        .value(&format!(
            r#"convoy_node_heartbeat_age_seconds{{node="{node}"}}"#
        ))
        .unwrap();
    assert!(heartbeat_age < 3.0, "heartbeat age {heartbeat_age} s");

    // Every query of the Grafana dashboard reads series convoyd exposes and
    // gives Prometheus data.
    let exposed = exposed_series(&scrape(http, "*/*"));
    check_dashboard(&prom, &exposed, &svc);

    // Every alert rule evaluates without error.
    wait_until(
        "every rule is evaluated without error",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || {
            let rules = rules_health(&prom)?;
            ensure!(
                rules.len() == 7
                    && rules
                        .values()
                        .all(|(health, evaluated)| health == "ok" && *evaluated),
                "rules: {rules:?}"
            );
            Ok(())
        },
    );

    // Freeze the agent: its stream stays open but its heartbeats stop.
    let pid = c.agent_pid(&node).expect("the agent runs");
    signal(pid, "STOP").unwrap();
    let frozen = Instant::now();
    wait_until(
        format!("Prometheus sees {node} lost"),
        LOSS_BOUND,
        Duration::from_millis(100),
        || {
            for (q, want) in [
                (format!(r#"convoy_node_ready{{node="{node}"}}"#), 0.0),
                (r#"convoy_nodes{state="lost"}"#.into(), 1.0),
                (r#"convoy_nodes{state="ready"}"#.into(), 0.0),
            ] {
                let got = prom.value(&q)?;
                ensure!(got == want, "`{q}` is {got}, not {want}");
            }
            Ok(())
        },
    );
    let seen_lost = frozen.elapsed();
    assert!(
        prom.value(r#"convoy_events_total{kind="node.lost"}"#)
            .unwrap()
            >= 1.0
    );
    // The alert, with `for: 2s` in this copy of the rules.
    let alert = wait_until(
        format!("ConvoyNodeLost fires for {node}"),
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let alerts = prom.alerts()?;
            alerts
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == "ConvoyNodeLost"
                        && a["labels"]["node"] == node.as_str()
                        && a["state"] == "firing"
                })
                .cloned()
                .ok_or_else(|| anyhow!("alerts: {alerts:?}"))
        },
    );
    let fired = frozen.elapsed();
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_eq!(alert["labels"]["job"], "convoy", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"],
        format!("Convoy node {node} is lost").as_str(),
        "{alert}"
    );
    eprintln!("Prometheus saw the node lost after {seen_lost:.1?}; ConvoyNodeLost fired after {fired:.1?}");

    // Thawed, the node is ready again and the alert resolves.
    signal(pid, "CONT").unwrap();
    wait_until(
        format!("Prometheus sees {node} ready again and ConvoyNodeLost resolved"),
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let ready = prom.value(&format!(r#"convoy_node_ready{{node="{node}"}}"#))?;
            ensure!(ready == 1.0, "convoy_node_ready is {ready}");
            let lost = prom.value(r#"convoy_nodes{state="lost"}"#)?;
            ensure!(lost == 0.0, "convoy_nodes{{state=\"lost\"}} is {lost}");
            let alerts = prom.alerts()?;
            ensure!(
                !alerts
                    .iter()
                    .any(|a| a["labels"]["alertname"] == "ConvoyNodeLost"),
                "alerts: {alerts:?}"
            );
            Ok(())
        },
    );
    c.assert_healthy();
}

/// The shipped rules with `ConvoyNodeLost`'s `for: 30s` cut to 2 s: the
/// test wants to see it fire, not wait half a minute (alerts_test.yml
/// proves the 30 s with promtool).
fn with_fast_node_lost(rules: &str) -> String {
    let start = rules
        .find("- alert: ConvoyNodeLost")
        .expect("alerts.yml has no ConvoyNodeLost");
    let end = rules[start + 1..]
        .find("- alert:")
        .map_or(rules.len(), |e| start + 1 + e);
    let block = &rules[start..end];
    assert!(
        block.contains("for: 30s"),
        "ConvoyNodeLost no longer says `for: 30s`; update this test: {block}"
    );
    format!(
        "{}{}{}",
        &rules[..start],
        block.replace("for: 30s", "for: 2s"),
        &rules[end..]
    )
}

/// Each rule's health and whether it has been evaluated, by name.
fn rules_health(prom: &Prometheus) -> Result<BTreeMap<String, (String, bool)>> {
    let data = prom.api("rules")?;
    let mut out = BTreeMap::new();
    for group in data["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            out.insert(
                rule["name"].as_str().unwrap_or_default().to_string(),
                (
                    rule["health"].as_str().unwrap_or_default().to_string(),
                    rule["lastEvaluation"]
                        .as_str()
                        .is_some_and(|t| !t.starts_with("0001-")),
                ),
            );
        }
    }
    Ok(out)
}

/// deploy/grafana/convoy.json against what convoyd really exposes: every
/// metric name in a panel's query or a variable's `label_values` is a series
/// name of the scrape (`convoy_events_total`, `..._bucket`: what PromQL
/// selects, not a `# TYPE` family name), every label it matches or groups
/// by is on one of its series, and Prometheus runs every query and has data
/// for it.
fn check_dashboard(prom: &Prometheus, exposed: &BTreeMap<String, BTreeSet<String>>, svc: &str) {
    let path = deploy_dir().join("grafana/convoy.json");
    let dash: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    assert!(
        dash["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion"
    );

    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"))
    };
    assert_eq!(var("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(var("DS_PROMETHEUS")["query"], "prometheus");
    let mut queries: Vec<(String, String)> = Vec::new();
    for name in ["env", "service"] {
        let v = var(name);
        let def = v["definition"].as_str().expect("a variable definition");
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap_or_else(|| panic!("`{name}` is not label_values(...): {def}"));
        let (selector, label) = inner.rsplit_once(',').expect("label_values(m, label)");
        let refs = promql_refs(selector);
        check_refs(&format!("variable {name}"), selector, &refs, exposed);
        for (metric, _) in &refs.selectors {
            assert!(
                exposed[metric].contains(label.trim()),
                "variable {name}: {metric} has no label {label}"
            );
        }
    }

    let mut ids = BTreeSet::new();
    let mut panels = 0;
    for p in dash["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(p["id"].as_u64().expect("a panel id")),
            "{title}: id"
        );
        let pos = &p["gridPos"];
        let (x, w) = (pos["x"].as_u64().unwrap(), pos["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{title} is wider than the grid");
        if p["type"] == "row" {
            continue;
        }
        panels += 1;
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = t["expr"].as_str().expect("expr");
            let refs = promql_refs(expr);
            check_refs(title, expr, &refs, exposed);
            let concrete = expr.replace("$env", "default").replace("$service", svc);
            queries.push((title.to_string(), concrete));
        }
    }
    assert!(panels >= 12, "only {panels} panels");
    let wanted = [
        "convoy_nodes",
        "convoy_node_ready",
        "convoy_node_heartbeat_age_seconds",
        "convoy_node_cpu_percent",
        "convoy_node_memory_used_bytes",
        "convoy_instances",
        "convoy_service_instances_desired",
        "convoy_service_instances_healthy",
        "convoy_events_total",
        "convoy_apply_duration_seconds_bucket",
        "convoy_agent_rtt_seconds_bucket",
        "convoy_agent_streams",
        "convoy_event_watchers",
        "convoy_sse_clients",
        "convoy_sse_dropped_total",
    ];
    let used: BTreeSet<String> = queries
        .iter()
        .flat_map(|(_, q)| promql_refs(q).selectors.into_iter().map(|(m, _)| m))
        .collect();
    for m in wanted {
        assert!(used.contains(m), "no panel shows {m}");
    }

    // rate() needs two scrapes in its window: give it a few seconds.
    wait_until(
        "Prometheus has data for every dashboard query",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            for (title, q) in &queries {
                let series = prom
                    .query(q)
                    .map_err(|e| anyhow!("panel {title:?}: {e:#}"))?;
                ensure!(!series.is_empty(), "panel {title:?}: `{q}` has no data");
            }
            Ok(())
        },
    );
    for (name, want) in [("env", "default"), ("service", svc)] {
        let values = prom
            .api(&format!(
                "label/{name}/values?match[]=convoy_service_instances_desired"
            ))
            .unwrap();
        assert!(
            values
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == want)),
            "variable {name} would not offer {want}: {values}"
        );
    }
}

fn check_refs(
    what: &str,
    expr: &str,
    refs: &convoy_tests::prom::PromqlRefs,
    exposed: &BTreeMap<String, BTreeSet<String>>,
) {
    assert!(
        !refs.selectors.is_empty(),
        "{what}: `{expr}` reads no metric"
    );
    let mut labels = BTreeSet::new();
    for (metric, matchers) in &refs.selectors {
        let on = exposed.get(metric).unwrap_or_else(|| {
            panic!(
                "{what}: `{expr}` reads {metric}, which /metrics does not expose; it has {:?}",
                exposed.keys().collect::<Vec<_>>()
            )
        });
        for l in matchers {
            assert!(
                on.contains(l),
                "{what}: {metric} has no label {l} (it has {on:?})"
            );
        }
        labels.extend(on.iter().cloned());
    }
    for l in &refs.grouping {
        assert!(
            labels.contains(l),
            "{what}: `{expr}` groups by {l}, which none of its series has"
        );
    }
}

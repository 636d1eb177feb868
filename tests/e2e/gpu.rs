//! GPU facts (issue 16, first increment): an agent started with the
//! test-only `--gpu-facts-file` reports two fake GPUs, and the coordinator
//! shows them in `convoy nodes` (GPUS column), `convoy -o json nodes` and
//! `/metrics` (`convoy_node_gpu_*`, accepted by `promtool check metrics`).
//! The figures are sampled with each heartbeat: changing the file changes
//! what `/metrics` says. A node without the file reports no GPU. The
//! dashboard, in a real headless Chromium, draws a sparkline per GPU.
//! GPU requests (second increment) go only to the node with GPUs, one GPU
//! per instance by UUID in Docker's `DeviceRequests`; the rest wait with
//! the reason, and a Docker without the NVIDIA runtime is named.

use std::fs;
use std::time::Duration;

use anyhow::{ensure, Context};
use convoy_tests::prom::{assert_promtool_ok, get, require_tool};
use convoy_tests::{skip_without_docker, wait_until, Cluster};
use serde_json::{json, Value};

const MODEL: &str = "NVIDIA H100 80GB HBM3";

fn gpus_file(utilization: [f64; 2]) -> String {
    json!([
        {
            "index": 0, "uuid": "GPU-e2e00000-0000-0000-0000-000000000000", "name": MODEL,
            "memory_total_bytes": 85_520_809_984u64, "mig_mode": "disabled",
            "driver_version": "550.54.15", "cuda_version": "12.4", "compute_capability": "9.0",
            "utilization_percent": utilization[0], "memory_used_bytes": 1_073_741_824u64,
            "temperature_c": 41.0, "power_w": 120.5
        },
        {
            "index": 1, "uuid": "GPU-e2e11111-1111-1111-1111-111111111111", "name": MODEL,
            "memory_total_bytes": 85_520_809_984u64, "mig_mode": "enabled",
            "driver_version": "550.54.15", "cuda_version": "12.4", "compute_capability": "9.0",
            "utilization_percent": utilization[1], "memory_used_bytes": 0,
            "temperature_c": 35.0, "power_w": 70.25
        }
    ])
    .to_string()
}

fn scrape(c: &Cluster) -> String {
    let r = get(c.http_addr, "/metrics", &[("Accept", "*/*")]).expect("GET /metrics");
    assert_eq!(r.status, 200, "GET /metrics said {}: {}", r.status, r.body);
    r.body
}

#[test]
fn agent_with_a_gpu_facts_file_shows_its_gpus_in_nodes_and_metrics() {
    require_tool("promtool");
    skip_without_docker!();
    let mut c = Cluster::start();
    let path = c.root().join("gpus.json");
    fs::write(&path, gpus_file([87.5, 0.0])).unwrap();
    let plain = c.add_agent();
    let gpu = c.add_agent_with_args(&["--gpu-facts-file", path.to_str().unwrap()]);
    c.wait_nodes_ready(&[plain.clone(), gpu.clone()]);

    // -o json: the facts at once, the figures with the next heartbeat.
    let node = |nodes: &Value, name: &str| -> Value {
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no node {name} in {nodes}"))
    };
    let nodes: Value = wait_until(
        "the GPU node's heartbeat carries GPU samples",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let nodes: Value = c.try_cli_json(&["nodes"])?;
            let samples = node(&nodes, &gpu)["metrics"]["gpus"].clone();
            ensure!(
                samples.as_array().is_some_and(|s| s.len() == 2),
                "samples: {samples}"
            );
            Ok(nodes)
        },
    );
    let me = node(&nodes, &gpu);
    assert_eq!(
        me["gpus"],
        json!([
            {
                "index": 0, "uuid": "GPU-e2e00000-0000-0000-0000-000000000000", "name": MODEL,
                "memory_total_bytes": 85_520_809_984u64, "mig_mode": "disabled",
                "driver_version": "550.54.15", "cuda_version": "12.4", "compute_capability": "9.0"
            },
            {
                "index": 1, "uuid": "GPU-e2e11111-1111-1111-1111-111111111111", "name": MODEL,
                "memory_total_bytes": 85_520_809_984u64, "mig_mode": "enabled",
                "driver_version": "550.54.15", "cuda_version": "12.4", "compute_capability": "9.0"
            }
        ])
    );
    assert_eq!(
        me["metrics"]["gpus"][0],
        json!({"index": 0, "utilization_percent": 87.5, "memory_used_bytes": 1_073_741_824u64,
               "temperature_c": 41.0, "power_w": 120.5})
    );
    let other = node(&nodes, &plain);
    assert_eq!(other["gpus"], json!([]));

    // The table's GPUS column.
    let out = c.cli(&["nodes"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let header = table.lines().next().unwrap();
    assert!(header.contains("GPUS"), "{table}");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {table}"))
            .to_string()
    };
    assert!(row(&gpu).contains(&format!("2× {MODEL}")), "{table}");
    assert!(!row(&plain).contains('×'), "{table}");

    // /metrics: one series per GPU, labelled node, index, UUID and model.
    let labels = |index: u32, uuid: &str| {
        format!(r#"{{node="{gpu}",gpu="{index}",uuid="{uuid}",model="{MODEL}"}}"#)
    };
    let l0 = labels(0, "GPU-e2e00000-0000-0000-0000-000000000000");
    let l1 = labels(1, "GPU-e2e11111-1111-1111-1111-111111111111");
    let text = scrape(&c);
    fs::write(c.root().join("metrics.txt"), &text).unwrap();
    for line in [
        format!("convoy_node_gpu_memory_total_bytes{l0} 85520809984"),
        format!("convoy_node_gpu_utilization_ratio{l0} 0.875"),
        format!("convoy_node_gpu_memory_used_bytes{l0} 1073741824"),
        format!("convoy_node_gpu_temperature_celsius{l0} 41.0"),
        format!("convoy_node_gpu_power_watts{l0} 120.5"),
        format!("convoy_node_gpu_utilization_ratio{l1} 0.0"),
        format!("convoy_node_gpu_power_watts{l1} 70.25"),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("convoy_node_gpu") && l.contains(&plain)),
        "{text}"
    );
    assert_promtool_ok(&["check", "metrics"], &text);

    // Live: the next heartbeats carry the new figures.
    fs::write(&path, gpus_file([12.0, 100.0])).unwrap();
    wait_until(
        "/metrics shows the new utilization",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let text = scrape(&c);
            ensure!(
                text.lines()
                    .any(|l| l == format!("convoy_node_gpu_utilization_ratio{l1} 1.0")),
                "still old figures"
            );
            Ok(())
        },
    );
    let nodes: Value = c.try_cli_json(&["nodes"]).context("nodes").unwrap();
    assert_eq!(
        node(&nodes, &gpu)["metrics"]["gpus"][0]["utilization_percent"],
        12.0
    );
    c.assert_healthy();
}

/// The dashboard's node row: one utilization sparkline per GPU, drawn from
/// the heartbeats' history, with the latest figure beside it.
#[test]
fn dashboard_draws_a_sparkline_per_gpu() {
    use crate::dashboard::{browser, need, screenshot, wait_for, ChromeDriver};
    use fantoccini::Locator;

    skip_without_docker!();
    need("chromium");
    need("chromedriver");
    let mut c = Cluster::start();
    let path = c.root().join("gpus.json");
    fs::write(&path, gpus_file([87.5, 3.0])).unwrap();
    let gpu = c.add_agent_with_args(&["--gpu-facts-file", path.to_str().unwrap()]);
    c.wait_nodes_ready(std::slice::from_ref(&gpu));

    let driver =
        ChromeDriver::start(c.root().join("chromedriver.log")).unwrap_or_else(|e| panic!("{e:#}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result: anyhow::Result<()> = runtime.block_on(async {
        let client = browser(&driver).await?;
        let outcome = async {
            client.goto(&format!("{}/login", c.http_url())).await?;
            let input = wait_for(&client, "the token field", "input[name=token]").await?;
            input.send_keys(&c.admin_token()).await?;
            client
                .find(Locator::Css(
                    "form[data-testid=login-form] button[type=submit]",
                ))
                .await?
                .click()
                .await?;
            // A line needs two points of history: two heartbeats a second
            // apart.
            for index in 0..2 {
                wait_for(
                    &client,
                    "a GPU sparkline with a line",
                    &format!("[data-testid='gpu-{gpu}-{index}'] svg.spark polyline"),
                )
                .await?;
            }
            let text = client
                .find(Locator::Css(&format!("[data-testid='gpu-{gpu}-0']")))
                .await?
                .text()
                .await?;
            ensure!(text.contains("0: 88%"), "GPU 0 reads {text:?}");
            let label = client
                .find(Locator::Css(&format!(
                    "[data-testid='gpu-{gpu}-1'] svg.spark"
                )))
                .await?
                .attr("aria-label")
                .await?
                .unwrap_or_default();
            ensure!(label == format!("GPU 1 ({MODEL}) 3%"), "label {label:?}");
            Ok(())
        }
        .await;
        if outcome.is_err() {
            let _ = screenshot(&client, "gpu-failure").await;
        } else {
            let _ = screenshot(&client, "gpu").await;
        }
        let _ = client.close().await;
        outcome
    });
    if let Err(e) = result {
        panic!("{e:#}\nchromedriver log: {}", driver.log.display());
    }
}

const UUID0: &str = "GPU-e2e00000-0000-0000-0000-000000000000";
const UUID1: &str = "GPU-e2e11111-1111-1111-1111-111111111111";

/// `docker inspect`'s `HostConfig.DeviceRequests` of a container. The agent
/// replaces a container whose start failed, so the one listed may be gone by
/// the time it is inspected: callers retry.
fn device_requests(id: &str) -> anyhow::Result<Value> {
    let out = convoy_tests::docker::docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.DeviceRequests}}",
        id,
    ])?;
    serde_json::from_str(out.trim()).with_context(|| format!("parsing {out}"))
}

/// Issue 16: GPU requests are placed only on the node with (fake) GPUs, one
/// GPU per instance up to its two; the third instance waits with the
/// reason, and the node without GPUs gets none. Docker gets each
/// container's pinned GPU by UUID in `HostConfig.DeviceRequests`; this
/// Docker has no NVIDIA runtime, so starting fails, and the instance's
/// state names it with the fix. A second service (`reservations.devices`)
/// waits while the GPUs are held and takes one when they are freed.
#[test]
fn gpu_requests_take_the_gpu_nodes_gpus_up_to_its_count_and_the_rest_wait() {
    skip_without_docker!();
    let mut c = Cluster::start();
    let path = c.root().join("gpus.json");
    fs::write(&path, gpus_file([0.0, 0.0])).unwrap();
    let plain = c.add_agent();
    let gpu = c.add_agent_with_args(&["--gpu-facts-file", path.to_str().unwrap()]);
    c.wait_nodes_ready(&[plain.clone(), gpu.clone()]);

    let train = c.service_name("train");
    let spec = format!(
        "services:\n  {train}:\n    image: {}\n    gpus: 1\n    deploy:\n      replicas: 3\n",
        c.image()
    );
    c.apply(&c.write_spec("train.yaml", &spec));
    let status = wait_until(
        "two instances on the GPU node fail to start for want of the NVIDIA runtime, one waits",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let status = c.try_service_status(&train)?;
            let (placed, pending): (Vec<_>, Vec<_>) =
                status.instances.iter().partition(|i| !i.node.is_empty());
            ensure!(
                placed.len() == 2 && pending.len() == 1,
                "convoy status says {}",
                status.describe()
            );
            ensure!(
                placed.iter().all(|i| i.node == gpu),
                "convoy status says {}",
                status.describe()
            );
            ensure!(
                pending[0].reason == format!("needs 1 GPU; {gpu} has 0 free"),
                "convoy status says {}",
                status.describe()
            );
            let named = format!(
                "could not select device driver nvidia on node `{gpu}`: install the NVIDIA \
                 container toolkit"
            );
            ensure!(
                placed.iter().all(|i| i.reason.starts_with(&named)),
                "convoy status says {}",
                status.describe()
            );
            Ok(status)
        },
    );
    // Docker created each container with its own GPU, by UUID.
    let mut pinned = wait_until(
        "each container pinned to its own GPU",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let containers = c.containers_of(&train)?;
            ensure!(containers.len() == 2, "{containers:#?}");
            let mut pinned = Vec::new();
            for ct in &containers {
                assert_eq!(ct.label("io.convoy.node"), Some(gpu.as_str()));
                let requests = device_requests(&ct.id)?;
                assert_eq!(requests.as_array().map(Vec::len), Some(1), "{requests}");
                assert_eq!(requests[0]["Driver"], "nvidia", "{requests}");
                assert_eq!(requests[0]["Capabilities"], json!([["gpu"]]), "{requests}");
                let ids = requests[0]["DeviceIDs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert_eq!(ids.len(), 1, "{requests}");
                pinned.push(ids[0].as_str().unwrap().to_string());
            }
            Ok(pinned)
        },
    );
    pinned.sort();
    assert_eq!(pinned, [UUID0, UUID1], "{}", status.describe());

    // Compose's device reservation: waits while `train` holds both GPUs,
    // never goes to the node without GPUs, and takes one once freed.
    let infer = c.service_name("infer");
    let spec = format!(
        "services:\n  {infer}:\n    image: {}\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n              count: 1\n              capabilities: [gpu, utility]\n",
        c.image()
    );
    c.apply(&c.write_spec("infer.yaml", &spec));
    let waiting = c.service_status(&infer);
    assert!(
        waiting.instances.len() == 1
            && waiting.instances[0].node.is_empty()
            && waiting.instances[0].reason == format!("needs 1 GPU; {gpu} has 0 free"),
        "{}",
        waiting.describe()
    );
    c.delete(&train);
    let requests = wait_until(
        "the freed GPU goes to the waiting service",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let status = c.try_service_status(&infer)?;
            ensure!(
                status.instances.len() == 1 && status.instances[0].node == gpu,
                "convoy status says {}",
                status.describe()
            );
            let containers = c.containers_of(&infer)?;
            ensure!(containers.len() == 1, "docker has {containers:#?}");
            device_requests(&containers[0].id)
        },
    );
    assert_eq!(
        requests[0]["Capabilities"],
        json!([["gpu", "utility"]]),
        "{requests}"
    );
    let ids = requests[0]["DeviceIDs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        ids.len() == 1 && (ids[0] == UUID0 || ids[0] == UUID1),
        "{requests}"
    );
    assert!(
        c.containers_of(&infer)
            .unwrap()
            .iter()
            .all(|ct| ct.label("io.convoy.node") == Some(gpu.as_str())),
        "nothing on {plain}"
    );
    c.delete(&infer);
    c.wait_service_gone(&infer);
    c.wait_service_gone(&train);
}

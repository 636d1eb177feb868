use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, HealthConfig, HealthStatusEnum,
    MountTypeEnum, PortBinding, RestartPolicyNameEnum,
};
use convoy_proto::{
    workload, ContainerSpec, Health, HealthCheck, PortMapping, RestartPolicy as PbRestart,
};

use super::containers::add_secrets;
use super::convert::*;
use super::create::*;
use super::errors::*;
use super::*;
use crate::runtime::{container_name, ContainerState, DockerHealth};

fn workload() -> Workload {
    Workload {
        id: "prod/web/2".into(),
        service: "web".into(),
        env: "prod".into(),
        index: 2,
        revision: 7,
        spec_hash: "abc".into(),
        start_first: false,
        ingress: None,
        probes: vec![],
        runtime: Some(workload::Runtime::Container(ContainerSpec {
            image: "web:1".into(),
            command: vec!["serve".into(), "--port=80".into()],
            entrypoint: vec![],
            env: BTreeMap::from([("B".into(), "2".into()), ("A".into(), "1".into())]),
            ports: vec![
                PortMapping {
                    host_ip: "127.0.0.1".into(),
                    host_port: 0,
                    container_port: 80,
                    protocol: String::new(),
                    mode: String::new(),
                },
                PortMapping {
                    host_ip: String::new(),
                    host_port: 5353,
                    container_port: 53,
                    protocol: "udp".into(),
                    mode: String::new(),
                },
            ],
            labels: BTreeMap::from([
                ("team".into(), "a".into()),
                (labels::NODE.into(), "forged".into()),
            ]),
            volumes: vec!["/srv/data:/data:ro".into()],
            working_dir: "/app".into(),
            user: String::new(),
            restart: Some(PbRestart::default()),
            stop_signal: "SIGINT".into(),
            stop_grace_period_ms: 2500,
            healthcheck: None,
            ..ContainerSpec::default()
        })),
    }
}

/// Issue 16: the GPUs pinned to the instance become one DeviceRequest for
/// the NVIDIA runtime, by UUID, with the spec's capabilities; a GPU spec
/// without pins is refused rather than run without its GPUs.
#[test]
fn create_body_requests_the_pinned_gpus_by_uuid() {
    let mut w = workload();
    if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
        spec.gpu_uuids = vec!["GPU-aaa".into(), "GPU-bbb".into()];
        spec.gpu_capabilities = vec!["gpu".into(), "utility".into()];
    }
    let host = create_body("n1", &w).unwrap().host_config.unwrap();
    let requests = host.device_requests.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].driver.as_deref(), Some("nvidia"));
    assert_eq!(
        requests[0].device_ids.as_deref(),
        Some(&["GPU-aaa".to_string(), "GPU-bbb".to_string()][..])
    );
    assert_eq!(
        requests[0].capabilities,
        Some(vec![vec!["gpu".to_string(), "utility".to_string()]])
    );
    assert_eq!(requests[0].count, None);
    let plain = create_body("n1", &workload()).unwrap().host_config.unwrap();
    assert_eq!(plain.device_requests, None);
    if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
        spec.gpu_uuids.clear();
    }
    let err = create_body("n1", &w).unwrap_err().to_string();
    assert!(err.contains("asks for GPUs but pins none"), "{err}");
}

/// Issue 14: granted host access as Docker takes it; `network_mode: host`
/// joins no Convoy network.
#[test]
fn create_body_carries_host_access() {
    let mut w = workload();
    if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
        spec.privileged = true;
        spec.devices = vec![
            "/dev/fuse:/dev/fuse:rwm".into(),
            "/dev/sda:/dev/xvda:r".into(),
        ];
        spec.network_mode = "host".into();
        spec.ipc_mode = "host".into();
    }
    let body = create_body("n1", &w).unwrap();
    assert!(body.networking_config.is_none());
    let host = body.host_config.unwrap();
    assert_eq!(host.privileged, Some(true));
    assert_eq!(host.network_mode.as_deref(), Some("host"));
    assert_eq!(host.ipc_mode.as_deref(), Some("host"));
    assert_eq!(host.pid_mode, None);
    let devices = host.devices.unwrap();
    assert_eq!(devices[1].path_on_host.as_deref(), Some("/dev/sda"));
    assert_eq!(devices[1].path_in_container.as_deref(), Some("/dev/xvda"));
    assert_eq!(devices[1].cgroup_permissions.as_deref(), Some("r"));
    assert!(super::create::networks_of(&w).is_empty());
    assert_eq!(
        super::create::host_access_kinds(match &w.runtime {
            Some(workload::Runtime::Container(spec)) => spec,
            _ => unreachable!(),
        }),
        ["privileged", "devices", "ipc", "network_mode"]
    );
    // Without them: Docker's defaults.
    let plain = create_body("n1", &workload()).unwrap().host_config.unwrap();
    assert_eq!(
        (plain.privileged, plain.devices, plain.ipc_mode),
        (None, None, None)
    );
}

#[test]
fn create_body_carries_labels_ports_and_stop_settings() {
    let body = create_body("n1", &workload()).unwrap();
    let labels_map = body.labels.unwrap();
    assert_eq!(labels_map[labels::MANAGED], "true");
    assert_eq!(
        labels_map[labels::NODE],
        "n1",
        "a spec cannot forge the node"
    );
    assert_eq!(labels_map[labels::WORKLOAD], "prod/web/2");
    assert_eq!(labels_map[labels::INSTANCE], "2");
    assert_eq!(labels_map[labels::REVISION], "7");
    assert_eq!(labels_map[labels::SPEC_HASH], "abc");
    assert_eq!(labels_map["team"], "a");
    assert_eq!(body.env.unwrap(), vec!["A=1", "B=2"]);
    assert_eq!(body.entrypoint, None);
    assert_eq!(body.user, None);
    assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(body.stop_timeout, Some(3));
    let host = body.host_config.unwrap();
    assert_eq!(
        host.restart_policy.unwrap().name,
        Some(RestartPolicyNameEnum::NO)
    );
    let bindings = host.port_bindings.unwrap();
    let web = bindings["80/tcp"].as_ref().unwrap();
    assert_eq!(web[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(web[0].host_port.as_deref(), Some(""));
    assert_eq!(
        bindings["53/udp"].as_ref().unwrap()[0].host_port.as_deref(),
        Some("5353")
    );
    assert_eq!(host.binds.unwrap(), vec!["/srv/data:/data:ro"]);
}

#[test]
fn healthcheck_maps_to_the_engines_health_config_in_nanoseconds() {
    let config = health_config(&HealthCheck {
        test: vec!["CMD".into(), "/check".into()],
        interval_ms: 1500,
        timeout_ms: 0,
        retries: 4,
        start_period_ms: 10_000,
        start_interval_ms: 250,
        disable: false,
    });
    assert_eq!(
        config,
        HealthConfig {
            test: Some(vec!["CMD".into(), "/check".into()]),
            interval: Some(1_500_000_000),
            timeout: None,
            retries: Some(4),
            start_period: Some(10_000_000_000),
            start_interval: Some(250_000_000),
        }
    );
    let image_test = health_config(&HealthCheck {
        interval_ms: 1000,
        ..HealthCheck::default()
    });
    assert_eq!(image_test.test, None, "empty: the image's test");
    for off in [
        HealthCheck {
            disable: true,
            ..HealthCheck::default()
        },
        HealthCheck {
            test: vec!["NONE".into()],
            ..HealthCheck::default()
        },
    ] {
        assert_eq!(
            health_config(&off),
            HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }
        );
    }
    let mut w = workload();
    assert_eq!(create_body("n1", &w).unwrap().healthcheck, None);
    if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
        spec.healthcheck = Some(HealthCheck {
            disable: true,
            ..HealthCheck::default()
        });
    }
    assert_eq!(
        create_body("n1", &w).unwrap().healthcheck.unwrap().test,
        Some(vec!["NONE".into()])
    );
}

#[test]
fn docker_health_is_read_with_the_last_checks_output() {
    use bollard::models::HealthcheckResult;
    let result = |code: i64, output: &str| HealthcheckResult {
        exit_code: Some(code),
        output: Some(output.into()),
        ..Default::default()
    };
    let health = bollard::models::Health {
        status: Some(HealthStatusEnum::UNHEALTHY),
        failing_streak: Some(3),
        log: Some(vec![
            result(0, "ok"),
            result(1, "HTTP/1.1 500 Internal Server Error\n"),
        ]),
    };
    assert_eq!(
        docker_health(&health),
        Some(DockerHealth {
            status: Health::Unhealthy,
            output: "exit code 1: HTTP/1.1 500 Internal Server Error".into(),
        })
    );
    let starting = bollard::models::Health {
        status: Some(HealthStatusEnum::STARTING),
        ..Default::default()
    };
    assert_eq!(
        docker_health(&starting),
        Some(DockerHealth {
            status: Health::Starting,
            output: String::new(),
        })
    );
    let none = bollard::models::Health {
        status: Some(HealthStatusEnum::NONE),
        ..Default::default()
    };
    assert_eq!(docker_health(&none), None);
}

#[test]
fn container_info_reads_the_address_and_published_ports() {
    use bollard::models::{ContainerState as DockerState, EndpointSettings, NetworkSettings};
    let inspect = ContainerInspectResponse {
        state: Some(DockerState {
            status: Some(ContainerStateStatusEnum::RUNNING),
            ..Default::default()
        }),
        network_settings: Some(NetworkSettings {
            ip_address: Some(String::new()),
            networks: Some(HashMap::from([(
                "bridge".to_string(),
                EndpointSettings {
                    ip_address: Some("172.17.0.3".into()),
                    ..Default::default()
                },
            )])),
            ports: Some(HashMap::from([
                (
                    "8080/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("0.0.0.0".into()),
                        host_port: Some("49153".into()),
                    }]),
                ),
                ("53/udp".to_string(), None),
            ])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let info = container_info(inspect);
    assert_eq!(info.state, Some(ContainerState::Running));
    assert_eq!(info.ip, Some("172.17.0.3".parse().unwrap()));
    assert_eq!(
        info.published,
        vec![(8080, "0.0.0.0:49153".parse().unwrap())]
    );
    assert_eq!(
        container_info(ContainerInspectResponse::default()),
        ContainerInfo::default()
    );
}

#[test]
fn container_name_follows_the_contract() {
    assert_eq!(container_name(&workload()), "convoy-prod-web-2-r7");
}

#[test]
fn image_without_tag_gets_latest() {
    assert_eq!(with_default_tag("busybox"), "busybox:latest");
    assert_eq!(with_default_tag("busybox:1.36"), "busybox:1.36");
    assert_eq!(
        with_default_tag("localhost:5000/app"),
        "localhost:5000/app:latest"
    );
    assert_eq!(with_default_tag("app@sha256:00"), "app@sha256:00");
}

#[test]
fn long_causes_are_cut_to_one_line() {
    assert_eq!(short("first\nsecond"), "first");
    let long = "é".repeat(400);
    assert!(short(&long).len() <= MAX_CAUSE_LEN + "…".len());
}

/// The real engine, when there is one with the test image; these tests
/// say so and pass when there is not.
mod real {
    use super::*;

    const TEST_IMAGE: &str = "convoy-testapp:latest";

    /// Removes every container of the test's node, whatever happened.
    struct Cleanup {
        node: String,
        extra: Vec<String>,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let listed = std::process::Command::new("docker")
                .args(["ps", "-aq", "--filter"])
                .arg(format!("label={}={}", labels::NODE, self.node))
                .output();
            let mut ids: Vec<String> = listed
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            ids.extend(self.extra.iter().cloned());
            if !ids.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
            // The networks made for the test's environment (named as its
            // node), which `docker rm` leaves: each holds an address range.
            let networks = std::process::Command::new("docker")
                .args(["network", "ls", "-q", "--filter"])
                .arg(format!("label={}={}", labels::ENV, self.node))
                .output();
            let networks: Vec<String> = networks
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            if !networks.is_empty() {
                let _ = std::process::Command::new("docker")
                    .args(["network", "rm"])
                    .args(&networks)
                    .output();
            }
        }
    }

    /// The real engine, or None only when CONVOY_SKIP_DOCKER_TESTS=1
    /// (a laptop without Docker; CI never sets it). Builds the test
    /// image when it is missing.
    async fn engine() -> Option<(DockerRuntime, Cleanup)> {
        if std::env::var("CONVOY_SKIP_DOCKER_TESTS").as_deref() == Ok("1") {
            eprintln!("skipped: CONVOY_SKIP_DOCKER_TESTS=1");
            return None;
        }
        let runtime = DockerRuntime::new();
        if let Err(e) = runtime.version().await {
            panic!("Docker is unreachable: {e} (set CONVOY_SKIP_DOCKER_TESTS=1 to skip)");
        }
        if !runtime.image_present(TEST_IMAGE).await.unwrap_or(false) {
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scripts/build-test-image.sh"
            );
            let out = std::process::Command::new("bash")
                .arg(script)
                .output()
                .expect("run scripts/build-test-image.sh");
            assert!(
                out.status.success(),
                "building {TEST_IMAGE} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let node = format!("agent-unit-{}-{nanos}", std::process::id());
        Some((
            runtime,
            Cleanup {
                node,
                extra: Vec::new(),
            },
        ))
    }

    fn test_workload(node: &str, index: u32, command: &[&str]) -> Workload {
        let mut w = workload();
        w.env = node.to_string();
        w.id = format!("{node}/web/{index}");
        w.index = index;
        if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
            spec.image = TEST_IMAGE.to_string();
            spec.command = command.iter().map(|s| s.to_string()).collect();
            spec.volumes.clear();
            spec.working_dir.clear();
            spec.ports.truncate(1);
            spec.stop_signal.clear();
        }
        w
    }

    #[tokio::test]
    async fn docker_runtime_creates_lists_and_removes_a_labelled_container() {
        let Some((runtime, cleanup)) = engine().await else {
            return;
        };
        let node = cleanup.node.clone();
        let w = test_workload(&node, 1, &["/convoy-testapp", "--listen", "0.0.0.0:80"]);
        let created = runtime
            .create_and_start(&node, &w, &Delivery::default())
            .await
            .unwrap();
        assert_eq!(created.name, container_name(&w));

        let listed = runtime.list(&node).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        let c = &listed[0];
        assert_eq!(c.id, created.id);
        assert_eq!(c.name, created.name);
        assert_eq!(c.state, ContainerState::Running);
        assert_eq!(c.workload_id, w.id);
        assert_eq!(c.spec_hash, w.spec_hash);
        assert_eq!(c.revision, w.revision);
        assert!(runtime
            .list("some-other-node")
            .await
            .unwrap()
            .iter()
            .all(|o| o.id != c.id));

        runtime.stop_and_remove(&created.id).await.unwrap();
        assert_eq!(runtime.list(&node).await.unwrap(), vec![]);
        // Removing what is gone is fine.
        runtime.stop_and_remove(&created.id).await.unwrap();
    }

    #[tokio::test]
    async fn docker_runtime_reads_exit_code_and_run_time_of_an_exited_container() {
        let Some((runtime, cleanup)) = engine().await else {
            return;
        };
        let node = cleanup.node.clone();
        let w = test_workload(
            &node,
            2,
            &[
                "/convoy-testapp",
                "--listen",
                "0.0.0.0:80",
                "--exit-after",
                "0.5",
            ],
        );
        let created = runtime
            .create_and_start(&node, &w, &Delivery::default())
            .await
            .unwrap();
        let mut exited = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let listed = runtime.list(&node).await.unwrap();
            if let Some(c) = listed
                .into_iter()
                .find(|c| c.state == ContainerState::Exited)
            {
                exited = Some(c);
                break;
            }
        }
        let c = exited.expect("the container never exited");
        assert_eq!(c.id, created.id);
        assert_eq!(c.exit_code, Some(3));
        let ran = c.ran_for().expect("run time unknown");
        assert!(
            ran >= Duration::from_millis(400) && ran < Duration::from_secs(10),
            "{ran:?}"
        );

        runtime.start(&created.id).await.unwrap();
        let again = runtime.list(&node).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].state, ContainerState::Running);
        assert_eq!(again[0].exit_code, None);
        assert_ne!(again[0].started_at, c.started_at);
    }

    /// Issue 14: host access reaches Docker only where the node's admin
    /// granted it (`--allow-host-access`); elsewhere the agent refuses the
    /// container itself, whatever the plan says.
    #[tokio::test]
    async fn docker_runtime_gives_host_access_only_when_granted() {
        let Some((_, cleanup)) = engine().await else {
            return;
        };
        let node = cleanup.node.clone();
        let mut w = test_workload(&node, 9, &["/convoy-testapp", "--listen", "0.0.0.0:80"]);
        if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
            // (`privileged` cannot start on this engine, itself in a
            // container: its mapping is checked in `create_body`'s test.)
            spec.cap_add = vec!["NET_ADMIN".into()];
            spec.pid_mode = "host".into();
            spec.security_opt = vec!["seccomp:unconfined".into()];
        }
        let refusing = DockerRuntime::new().with_allowed_host_access(vec!["pid".into()]);
        let err = refusing
            .create_and_start(&node, &w, &Delivery::default())
            .await
            .expect_err("cap_add is not granted");
        assert!(
            err.to_string().contains("--allow-host-access cap_add"),
            "{err}"
        );
        let granting = DockerRuntime::new().with_allowed_host_access(vec![
            "security_opt".into(),
            "cap_add".into(),
            "pid".into(),
        ]);
        let created = granting
            .create_and_start(&node, &w, &Delivery::default())
            .await
            .unwrap();
        let out = std::process::Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.HostConfig.CapAdd}} {{.HostConfig.PidMode}} {{.HostConfig.SecurityOpt}} {{.State.Running}}",
                &created.id,
            ])
            .output()
            .unwrap();
        // (Docker adds `label=disable` of its own with `pid: host`.)
        let seen = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            seen.starts_with("[NET_ADMIN] host [seccomp:unconfined") && seen.ends_with("] true"),
            "{seen}"
        );
    }

    /// Issue 14: Compose `platform` goes with the create request, and the
    /// engine holds the image to it: the node's own platform runs, another
    /// is refused (the local image is not that platform's).
    #[tokio::test]
    async fn docker_runtime_creates_with_the_platform_and_the_engine_checks_it() {
        let Some((runtime, cleanup)) = engine().await else {
            return;
        };
        let node = cleanup.node.clone();
        let (own, other) = match std::env::consts::ARCH {
            "aarch64" => ("linux/arm64", "linux/amd64"),
            _ => ("linux/amd64", "linux/arm64"),
        };
        let with = |index: u32, platform: &str| {
            let mut w = test_workload(&node, index, &["/convoy-testapp", "--listen", "0.0.0.0:80"]);
            if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
                spec.platform = platform.to_string();
            }
            w
        };
        let created = runtime
            .create_and_start(&node, &with(7, own), &Delivery::default())
            .await
            .unwrap();
        let info = runtime.inspect(&created.id).await.unwrap();
        assert_eq!(info.state, Some(ContainerState::Running), "{info:?}");
        let err = runtime
            .create_and_start(&node, &with(8, other), &Delivery::default())
            .await
            .expect_err("an image of another platform is refused");
        assert!(
            err.to_string().to_lowercase().contains("no such image")
                || err.to_string().contains("platform"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn docker_runtime_reports_docker_health_of_a_container_with_a_healthcheck() {
        let Some((runtime, cleanup)) = engine().await else {
            return;
        };
        let node = cleanup.node.clone();
        let mut w = test_workload(&node, 4, &["/convoy-testapp", "--listen", "0.0.0.0:80"]);
        if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
            spec.healthcheck = Some(HealthCheck {
                test: vec![
                    "CMD".into(),
                    "/convoy-testapp".into(),
                    "--probe".into(),
                    "http://127.0.0.1:80/healthz".into(),
                ],
                interval_ms: 200,
                timeout_ms: 2000,
                retries: 1,
                // Engines before 25.0 (20.10 here) ignore `start_interval`;
                // none refuses the container for it.
                start_period_ms: 5_000,
                start_interval_ms: 100,
                disable: false,
            });
        }
        let created = runtime
            .create_and_start(&node, &w, &Delivery::default())
            .await
            .unwrap();
        let health = async {
            for _ in 0..100 {
                let listed = runtime.list(&node).await.unwrap();
                let health = listed[0].health.clone();
                if health.as_ref().is_some_and(|h| h.status == Health::Healthy) {
                    return health;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("never healthy: {:?}", runtime.list(&node).await);
        }
        .await
        .unwrap();
        assert_eq!(health.output, "HTTP/1.1 200 OK");
        let info = runtime.inspect(&created.id).await.unwrap();
        assert_eq!(info.health.unwrap().status, Health::Healthy);

        // The world agrees: Docker itself says so.
        let out = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.State.Health.Status}}", &created.id])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "healthy");
    }

    #[tokio::test]
    async fn docker_runtime_execs_commands_bounded_in_time_and_reports_missing_ones() {
        let Some((runtime, cleanup)) = engine().await else {
            return;
        };
        let node = cleanup.node.clone();
        let w = test_workload(&node, 5, &["/convoy-testapp", "--listen", "0.0.0.0:80"]);
        let created = runtime
            .create_and_start(&node, &w, &Delivery::default())
            .await
            .unwrap();
        let argv = |words: &[&str]| words.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let version = runtime
            .exec(
                &created.id,
                &argv(&["/convoy-testapp", "--version"]),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(version.exit_code, Some(0));
        assert!(version.output.starts_with("convoy-testapp "), "{version:?}");

        let missing = runtime
            .exec(
                &created.id,
                &argv(&["/no-such-check"]),
                Duration::from_secs(5),
            )
            .await;
        let text = match &missing {
            Ok(out) => {
                assert_ne!(out.exit_code, Some(0), "{out:?}");
                out.output.clone()
            }
            Err(e) => e.to_string(),
        };
        assert!(text.contains("no-such-check"), "{missing:?}");

        let began = std::time::Instant::now();
        let hanging = runtime
            .exec(
                &created.id,
                &argv(&["/convoy-testapp", "--listen", "127.0.0.1:81"]),
                Duration::from_millis(500),
            )
            .await
            .unwrap_err();
        assert!(
            hanging.to_string().contains("no exit within 500ms"),
            "{hanging}"
        );
        assert!(began.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn probes_reach_a_real_container_and_see_it_fail_and_recover() {
        use crate::probe::{run_check, ProbeConfig};
        use convoy_proto::{probe, HttpProbe, Probe};
        let Some((runtime, cleanup)) = engine().await else {
            return;
        };
        let node = cleanup.node.clone();
        let w = test_workload(&node, 6, &["/convoy-testapp", "--listen", "0.0.0.0:80"]);
        let created = runtime
            .create_and_start(&node, &w, &Delivery::default())
            .await
            .unwrap();
        let info = runtime.inspect(&created.id).await.unwrap();
        let ip = info.ip.expect("a container on the bridge has an address");
        let config = ProbeConfig::from_proto(&Probe {
            timeout_ms: 2000,
            check: Some(probe::Check::Http(HttpProbe {
                port: 80,
                path: "/healthz".into(),
                expect_status: 0,
            })),
            ..Probe::default()
        });
        let mut passed = None;
        for _ in 0..50 {
            let run = run_check(&runtime, &created.id, &config, &mut None).await;
            if run.passed {
                passed = Some(run);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let passed = passed.expect("the probe never passed");
        assert_eq!(
            passed.output,
            format!("GET http://{ip}:80/healthz: HTTP 200 OK: ok")
        );

        let post = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect((ip, 80)).await.unwrap();
            s.write_all(
                format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).await.unwrap();
        };
        post("/fail").await;
        let run = run_check(&runtime, &created.id, &config, &mut None).await;
        assert!(!run.passed);
        assert_eq!(
            run.output,
            format!("GET http://{ip}:80/healthz: HTTP 500 Internal Server Error: failing")
        );
        post("/recover").await;
        assert!(
            run_check(&runtime, &created.id, &config, &mut None)
                .await
                .passed
        );
    }

    #[tokio::test]
    async fn docker_runtime_reports_a_name_held_by_an_unmanaged_container() {
        let Some((runtime, mut cleanup)) = engine().await else {
            return;
        };
        let node = cleanup.node.clone();
        let w = test_workload(&node, 3, &["/convoy-testapp"]);
        let name = container_name(&w);
        let out = std::process::Command::new("docker")
            .args(["create", "--name", &name, TEST_IMAGE])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        cleanup.extra.push(name.clone());
        let err = runtime
            .create_and_start(&node, &w, &Delivery::default())
            .await
            .unwrap_err();
        assert_eq!(err, RuntimeError::NameTaken { name });
    }
}

/// Issue 14: the agent refuses a bind mount of a host path outside its
/// `--allow-bind` roots whatever the plan says, naming the path and the flag.
#[test]
fn bind_mounts_outside_the_allowed_roots_are_refused_on_the_node() {
    let w = workload(); // binds /srv/data
    let err = check_binds("n1", &w, &[]).unwrap_err();
    assert!(matches!(err, RuntimeError::NotAllowed(_)), "{err:?}");
    let reason = err.reason("n1");
    assert!(
        reason.contains("host path `/srv/data`")
            && reason.contains("--allow-bind /srv/data")
            && reason.contains("allows none now"),
        "{reason}"
    );
    assert!(check_binds("n1", &w, &["/srv/database".to_string()]).is_err());
    assert!(check_binds("n1", &w, &["/srv/data".to_string()]).is_ok());
    assert!(check_binds("n1", &w, &["/srv".to_string()]).is_ok());
    assert!(check_binds("n1", &w, &["/".to_string()]).is_ok());

    let mut root = workload();
    if let Some(workload::Runtime::Container(spec)) = &mut root.runtime {
        spec.volumes = vec!["cache:/cache".into(), "/:/host".into()];
    }
    let reason = check_binds("n1", &root, &["/srv".to_string()])
        .unwrap_err()
        .reason("n1");
    assert!(
        reason.contains("host path `/`") && reason.contains("it allows only /srv"),
        "{reason}"
    );
    // Named volumes need nobody's permission.
    if let Some(workload::Runtime::Container(spec)) = &mut root.runtime {
        spec.volumes = vec!["cache:/cache".into()];
    }
    assert!(check_binds("n1", &root, &[]).is_ok());
}

#[test]
fn secrets_are_bind_mounted_read_only_at_their_targets_and_env_is_opt_in() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = crate::secrets::NodeSecrets::unchecked(tmp.path().join("s")).unwrap();
    let mut env_too = convoy_proto::SecretMount {
        name: "db".into(),
        version: 1,
        target: "/run/secrets/db".into(),
        ..Default::default()
    };
    env_too.env_var = "DB_PASSWORD".into();
    let w = Workload {
        id: "prod/web/1".into(),
        env: "prod".into(),
        runtime: Some(workload::Runtime::Container(ContainerSpec {
            image: "web:1".into(),
            user: rustix::process::getuid().as_raw().to_string(),
            env: BTreeMap::from([("DB_PASSWORD".to_string(), "from-spec".to_string())]),
            secrets: vec![env_too],
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut values = crate::secrets::SecretValues::default();
    values.insert(
        crate::secrets::SecretKey {
            env: "prod".into(),
            name: "db".into(),
            version: 1,
        },
        b"pw-canary".to_vec(),
    );
    let delivery = secrets.prepare_container("c1", &w, &values).unwrap();
    let mut body = create_body("n1", &w).unwrap();
    add_secrets(&mut body, &delivery);
    let mounts = body.host_config.unwrap().mounts.unwrap();
    let mount = mounts
        .iter()
        .find(|m| m.target.as_deref() == Some("/run/secrets/db"))
        .unwrap();
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(mount.typ, Some(MountTypeEnum::BIND));
    assert_eq!(
        mount.source.as_deref(),
        Some(delivery.files[0].source.to_str().unwrap())
    );
    // The secret's value replaces the spec's variable of the same name.
    let env = body.env.unwrap();
    assert_eq!(env, ["DB_PASSWORD=pw-canary"]);
}

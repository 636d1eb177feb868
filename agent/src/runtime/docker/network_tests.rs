//! The networks, hostname, extra hosts, DNS servers and exposed ports of
//! the create request (issue 14, networks on a host).

use std::collections::BTreeMap;

use convoy_proto::{workload, ContainerSpec, NetworkAttachment, Workload};

use super::create::*;
use crate::runtime::labels;
use crate::secrets::Delivery;

fn workload(spec: ContainerSpec) -> Workload {
    Workload {
        id: "prod/web/1".into(),
        service: "web".into(),
        env: "prod".into(),
        index: 1,
        revision: 3,
        spec_hash: "h".into(),
        runtime: Some(workload::Runtime::Container(ContainerSpec {
            image: "web:1".into(),
            ..spec
        })),
        ..Workload::default()
    }
}

#[test]
fn a_container_without_networks_joins_its_environments_network_as_its_service_name() {
    let w = workload(ContainerSpec::default());
    let joined = networks_of(&w);
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0].name, "convoy-prod");
    assert_eq!(joined[0].aliases, vec!["web"]);
    let create = joined[0].create.as_ref().expect("Convoy creates its own");
    assert_eq!(create.name, "convoy-prod");
    assert_eq!(create.driver.as_deref(), Some("bridge"));
    let net_labels = create.labels.as_ref().unwrap();
    assert_eq!(net_labels[labels::MANAGED], "true");
    assert_eq!(net_labels[labels::ENV], "prod");

    let body = create_body("n1", &w).unwrap();
    let host = body.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("convoy-prod"));
    let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
    assert_eq!(
        endpoints["convoy-prod"].aliases.as_deref(),
        Some(&["web".to_string()][..])
    );
    assert_eq!(body.hostname, None);
    assert_eq!(host.extra_hosts, None);
    assert_eq!(host.dns, None);
}

#[test]
fn spec_networks_replace_the_default_and_keep_their_order_aliases_and_kinds() {
    let w = workload(ContainerSpec {
        networks: vec![
            NetworkAttachment {
                name: "back".into(),
                aliases: vec!["database".into(), "web".into()],
                internal: true,
                labels: BTreeMap::from([
                    ("tier".into(), "back".into()),
                    (labels::ENV.into(), "forged".into()),
                ]),
                ..NetworkAttachment::default()
            },
            NetworkAttachment {
                name: "shared-proxy".into(),
                external: true,
                ..NetworkAttachment::default()
            },
            NetworkAttachment {
                name: "default".into(),
                ..NetworkAttachment::default()
            },
        ],
        ..ContainerSpec::default()
    });
    let joined = networks_of(&w);
    let names: Vec<&str> = joined.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["convoy-prod-back", "shared-proxy", "convoy-prod"]);
    assert_eq!(
        joined[0].aliases,
        vec!["web", "database"],
        "no doubled alias"
    );
    let back = joined[0].create.as_ref().unwrap();
    assert_eq!(back.internal, Some(true));
    let back_labels = back.labels.as_ref().unwrap();
    assert_eq!(back_labels["tier"], "back");
    assert_eq!(
        back_labels[labels::ENV],
        "prod",
        "a spec cannot forge the env"
    );
    assert!(
        joined[1].create.is_none(),
        "an external network is never created"
    );
    assert_eq!(joined[2].create.as_ref().unwrap().internal, None);

    let body = create_body("n1", &w).unwrap();
    assert_eq!(
        body.host_config.unwrap().network_mode.as_deref(),
        Some("convoy-prod-back"),
        "the first network at create"
    );
    let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
    assert_eq!(endpoints.len(), 1, "API 1.41 takes one network at create");
}

#[test]
fn hostname_extra_hosts_dns_and_expose_reach_the_create_request() {
    let w = workload(ContainerSpec {
        hostname: "api-1".into(),
        extra_hosts: vec!["db.local:10.0.0.5".into(), "gw:host-gateway".into()],
        dns: vec!["10.0.0.53".into(), "1.1.1.1".into()],
        expose: vec!["9000".into(), "53/udp".into()],
        ..ContainerSpec::default()
    });
    let body = create_body("n1", &w).unwrap();
    assert_eq!(body.hostname.as_deref(), Some("api-1"));
    let exposed = body.exposed_ports.unwrap();
    assert!(exposed.contains_key("9000/tcp"), "{exposed:?}");
    assert!(exposed.contains_key("53/udp"), "{exposed:?}");
    let host = body.host_config.unwrap();
    assert_eq!(
        host.extra_hosts.unwrap(),
        vec!["db.local:10.0.0.5", "gw:host-gateway"]
    );
    assert_eq!(host.dns.unwrap(), vec!["10.0.0.53", "1.1.1.1"]);
    assert_eq!(host.port_bindings, None, "exposed, not published");
}

#[test]
fn dockers_default_bridge_as_an_external_network_gets_no_aliases() {
    let w = workload(ContainerSpec {
        networks: vec![NetworkAttachment {
            name: "bridge".into(),
            aliases: vec!["db".into()],
            external: true,
            ..NetworkAttachment::default()
        }],
        ..ContainerSpec::default()
    });
    let joined = networks_of(&w);
    assert_eq!(joined[0].name, "bridge");
    assert!(joined[0].aliases.is_empty(), "{:?}", joined[0].aliases);
    assert!(joined[0].create.is_none());
}

#[test]
fn network_names_follow_the_contract() {
    let att = |name: &str, external: bool| NetworkAttachment {
        name: name.into(),
        external,
        ..NetworkAttachment::default()
    };
    assert_eq!(
        network_name("staging", &att("default", false)),
        "convoy-staging"
    );
    assert_eq!(
        network_name("staging", &att("back", false)),
        "convoy-staging-back"
    );
    assert_eq!(network_name("staging", &att("proxy", true)), "proxy");
}

/// The host's network is host access, whatever the plan calls it: by name
/// or by its ID, the agent refuses it before creating anything.
#[tokio::test]
async fn the_hosts_network_is_refused_on_the_node_by_name_or_id() {
    use crate::runtime::{Runtime, RuntimeError};
    if std::env::var("CONVOY_SKIP_DOCKER_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: CONVOY_SKIP_DOCKER_TESTS=1");
        return;
    }
    let id = std::process::Command::new("docker")
        .args(["network", "inspect", "-f", "{{.Id}}", "host"])
        .output()
        .expect("docker network inspect host");
    let id = String::from_utf8_lossy(&id.stdout).trim()[..12].to_string();
    let runtime = super::DockerRuntime::new();
    let node = format!("agent-unit-hostnet-{}", std::process::id());
    for name in ["host".to_string(), id] {
        let mut w = workload(ContainerSpec {
            networks: vec![NetworkAttachment {
                name: name.clone(),
                external: true,
                ..NetworkAttachment::default()
            }],
            ..ContainerSpec::default()
        });
        // An image that is there: only the network may stop the create.
        if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
            spec.image = "convoy-testapp:latest".into();
        }
        w.env.clone_from(&node);
        let result = runtime
            .create_and_start(&node, &w, &Delivery::default())
            .await;
        // Whatever got created, were the check gone.
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &crate::runtime::container_name(&w)])
            .output();
        match result {
            Err(RuntimeError::NotAllowed(why)) => {
                assert!(why.contains("it is the host's network"), "{name}: {why}")
            }
            other => panic!("{name}: the host's network was not refused: {other:?}"),
        }
    }
}

/// An external network is joined as it is and never removed: here Docker's
/// default bridge, which takes no aliases.
#[tokio::test]
async fn an_external_network_is_joined_and_outlives_its_last_container() {
    use crate::runtime::Runtime;
    if std::env::var("CONVOY_SKIP_DOCKER_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: CONVOY_SKIP_DOCKER_TESTS=1");
        return;
    }
    let runtime = super::DockerRuntime::new();
    let node = format!("agent-unit-extnet-{}", std::process::id());
    let mut w = workload(ContainerSpec {
        networks: vec![NetworkAttachment {
            name: "bridge".into(),
            aliases: vec!["db".into()],
            external: true,
            ..NetworkAttachment::default()
        }],
        // The test app does not stop on SIGTERM: no 10 s wait.
        stop_grace_period_ms: 500,
        ..ContainerSpec::default()
    });
    if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
        spec.image = "convoy-testapp:latest".into();
    }
    w.env.clone_from(&node);
    let created = runtime
        .create_and_start(&node, &w, &Delivery::default())
        .await;
    let name = crate::runtime::container_name(&w);
    let networks = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range $n, $_ := .NetworkSettings.Networks}}{{$n}} {{end}}",
            &name,
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let removed = match &created {
        Ok(c) => runtime.stop_and_remove(&c.id).await,
        Err(_) => Ok(()),
    };
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", &name])
        .output();
    created.unwrap_or_else(|e| panic!("joining the default bridge: {e}"));
    removed.unwrap();
    assert_eq!(networks.unwrap(), "bridge");
    let bridge = std::process::Command::new("docker")
        .args(["network", "inspect", "bridge"])
        .output()
        .unwrap();
    assert!(bridge.status.success(), "the default bridge was removed");
}

/// Two agents on one engine once created `convoy-default` at the same time:
/// Docker 20.10 keeps both, then refuses the name as ambiguous, and no
/// container of the environment could start. The oldest is kept.
#[tokio::test]
async fn a_network_created_twice_at_once_is_made_one_again() {
    if std::env::var("CONVOY_SKIP_DOCKER_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: CONVOY_SKIP_DOCKER_TESTS=1");
        return;
    }
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let name = format!("convoy-unit-dup-{}", std::process::id());
    let request = bollard::models::NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        labels: Some(std::collections::HashMap::from([(
            labels::MANAGED.to_string(),
            "true".to_string(),
        )])),
        ..Default::default()
    };
    let (a, b) = tokio::join!(
        docker.create_network(request.clone()),
        docker.create_network(request.clone())
    );
    let first = a.expect("create").id;
    let second = b.expect("create").id;
    assert_ne!(first, second, "the engine keeps two networks of one name");
    let ambiguous = docker
        .inspect_network(
            &name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await;
    assert!(ambiguous.is_err(), "{ambiguous:?}");

    super::dedupe_network(&docker, &name).await;
    let kept = docker
        .inspect_network(
            &name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .expect("one network of that name again");
    let _ = docker.remove_network(&name).await;
    assert!(kept.id == Some(first) || kept.id == Some(second));
}

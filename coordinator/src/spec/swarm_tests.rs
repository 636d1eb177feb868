//! Swarm services (issue 17): `x-convoy.swarm` on a service and at the top
//! level, what a Swarm service keeps as written, what it is refused, and
//! what the agent receives (`Runtime::Swarm`).

use convoy_proto::workload::Runtime;
use convoy_proto::{PortMapping, SwarmNetwork, SwarmRestartPolicy, SwarmUpdateConfig};

use super::{changed_fields, parse, ServiceSpec, SpecFile, SwarmFields, SwarmUpdate};

fn ok(content: &str) -> SpecFile {
    parse("app.yaml", content).unwrap_or_else(|e| panic!("{e}"))
}

fn error(content: &str) -> String {
    match parse("app.yaml", content) {
        Ok(file) => panic!("parsed, expected an error: {file:?}"),
        Err(err) => err.to_string(),
    }
}

/// One service `web` with `image: nginx` and `extra`, indented 4 spaces.
fn web(extra: &str) -> String {
    let mut yaml = String::from("services:\n  web:\n    image: nginx\n");
    for line in extra.lines() {
        yaml += &format!("    {line}\n");
    }
    yaml
}

/// `web` on the Swarm cluster `prod`, with `extra`.
fn swarm_web(extra: &str) -> String {
    web(&format!("x-convoy: {{swarm: prod}}\n{extra}"))
}

fn only(content: &str) -> ServiceSpec {
    let file = ok(content);
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    assert_eq!(file.services.len(), 1);
    file.services.into_values().next().unwrap()
}

#[test]
fn a_service_names_its_swarm_cluster() {
    let spec = only(&swarm_web(""));
    assert_eq!(spec.swarm_cluster(), Some("prod"));
    assert_eq!(
        spec.swarm,
        Some(SwarmFields {
            cluster: "prod".to_owned(),
            ..SwarmFields::default()
        })
    );
    // Without it, a plain container, as before.
    assert_eq!(only(&web("")).swarm, None);
}

#[test]
fn the_top_level_swarm_applies_to_every_service_unless_one_opts_out() {
    let file = ok("x-convoy:\n  environment: prod\n  swarm: c1\nservices:\n  web:\n    image: nginx\n  api:\n    image: api\n    x-convoy: {swarm: c2}\n  local:\n    image: cron\n    x-convoy: {swarm: false}\nunits:\n  agent:\n    exec_start: /bin/true\n");
    assert_eq!(file.services["web"].swarm_cluster(), Some("c1"));
    assert_eq!(file.services["api"].swarm_cluster(), Some("c2"));
    assert_eq!(file.services["local"].swarm_cluster(), None);
    // Units never run on Swarm.
    assert!(file.services["agent"].is_unit());
    assert_eq!(file.services["agent"].swarm_cluster(), None);
}

#[test]
fn the_top_level_swarm_may_come_after_the_services() {
    let file = ok("services:\n  web:\n    image: nginx\nx-convoy:\n  swarm: c1\n");
    assert_eq!(file.services["web"].swarm_cluster(), Some("c1"));
}

#[test]
fn the_cluster_must_be_named() {
    let err = error(&web("x-convoy: {swarm: ''}"));
    assert!(
        err.starts_with("app.yaml:4:") && err.contains("services.web.x-convoy.swarm: "),
        "{err}"
    );
    assert!(err.contains("must not be empty"), "{err}");
    let err = error(&web("x-convoy: {swarm: true}"));
    assert!(err.contains("name the Swarm cluster"), "{err}");
    let err = error("x-convoy:\n  swarm: ''\nservices:\n  web:\n    image: nginx\n");
    assert!(err.starts_with("app.yaml:2:"), "{err}");
}

#[test]
fn an_unknown_top_level_x_convoy_key_is_an_error() {
    let err = error("x-convoy:\n  swarn: c1\nservices:\n  web:\n    image: nginx\n");
    assert!(
        err.starts_with("app.yaml:2:3: x-convoy.swarn: unknown field `swarn`"),
        "{err}"
    );
}

#[test]
fn a_unit_asking_for_swarm_is_an_error() {
    let err =
        error("units:\n  agent:\n    exec_start: /bin/true\n    x-convoy:\n      swarm: c1\n");
    assert!(
        err.starts_with("app.yaml:5:7: units.agent.x-convoy.swarm: a unit is a systemd service"),
        "{err}"
    );
}

#[test]
fn swarm_constraints_are_kept_as_written() {
    let spec = only(&swarm_web(
        "deploy:\n  placement:\n    constraints:\n      - node.role == manager\n      - engine.labels.os != windows\n      - node.labels.zone == eu\n    preferences:\n      - spread: node.labels.rack\n    max_replicas_per_node: 2",
    ));
    let swarm = spec.swarm.as_ref().unwrap();
    assert_eq!(
        swarm.constraints,
        [
            "node.role == manager",
            "engine.labels.os != windows",
            "node.labels.zone == eu"
        ]
    );
    // Swarm evaluates them: Convoy's placement gets none.
    assert!(spec.deploy.constraints.is_empty());
    let Runtime::Swarm(wire) = spec.runtime() else {
        panic!("not a Swarm service: {:?}", spec.runtime());
    };
    assert_eq!(wire.constraints, swarm.constraints);
    assert_eq!(wire.spread, ["node.labels.rack"]);
    assert_eq!(wire.max_replicas_per_node, 2);
}

#[test]
fn a_swarm_attribute_on_a_plain_container_is_an_error_naming_the_constraint() {
    let err = error(&web(
        "deploy:\n  placement:\n    constraints:\n      - node.labels.zone == eu\n      - node.role == manager",
    ));
    assert!(
        err.starts_with("app.yaml:8:")
            && err.contains("services.web.deploy.placement.constraints[1]: "),
        "{err}"
    );
    assert!(err.contains("node.role"), "{err}");
    assert!(err.contains("x-convoy.swarm"), "{err}");
}

#[test]
fn convoys_numeric_constraints_are_not_swarms() {
    let err = error(&swarm_web(
        "deploy:\n  placement:\n    constraints: [\"node.gpu.count >= 2\"]",
    ));
    assert!(
        err.contains("services.web.deploy.placement.constraints[0]: ")
            && err.contains("Swarm takes `ATTRIBUTE == VALUE`"),
        "{err}"
    );
    // Bad syntax stays an error where it is written, Swarm or not.
    let err = error(&swarm_web(
        "deploy:\n  placement:\n    constraints: [\"node.role\"]",
    ));
    assert!(err.starts_with("app.yaml:7:"), "{err}");
}

#[test]
fn update_and_rollback_config_are_swarms() {
    let spec = only(&swarm_web(
        "deploy:\n  replicas: 3\n  update_config:\n    parallelism: 2\n    delay: 10s\n    failure_action: rollback\n    monitor: 30s\n    max_failure_ratio: 0.25\n    order: start-first\n  rollback_config:\n    parallelism: 1\n    failure_action: pause",
    ));
    let swarm = spec.swarm.as_ref().unwrap();
    assert_eq!(
        swarm.update,
        Some(SwarmUpdate {
            parallelism: 2,
            delay_ms: 10_000,
            failure_action: "rollback".to_owned(),
            monitor_ms: 30_000,
            max_failure_permille: 250,
            order: "start-first".to_owned(),
        })
    );
    assert_eq!(
        swarm.rollback,
        Some(SwarmUpdate {
            parallelism: 1,
            failure_action: "pause".to_owned(),
            ..SwarmUpdate::default()
        })
    );
    let Runtime::Swarm(wire) = spec.runtime() else {
        panic!("not a Swarm service");
    };
    assert_eq!(
        wire.update,
        Some(SwarmUpdateConfig {
            parallelism: 2,
            delay_ms: 10_000,
            failure_action: "rollback".to_owned(),
            monitor_ms: 30_000,
            max_failure_ratio: 0.25,
            order: "start-first".to_owned(),
        })
    );
    assert_eq!(wire.rollback.unwrap().failure_action, "pause");
    // Unwritten: Swarm's defaults.
    let Runtime::Swarm(wire) = only(&swarm_web("")).runtime() else {
        panic!("not a Swarm service");
    };
    assert_eq!(
        (wire.update, wire.rollback, wire.restart),
        (None, None, None)
    );
}

#[test]
fn the_restart_policy_keeps_delay_and_window_for_swarm_only() {
    let policy = "deploy:\n  restart_policy:\n    condition: on-failure\n    delay: 5s\n    max_attempts: 3\n    window: 2m";
    let spec = only(&swarm_web(policy));
    let Runtime::Swarm(wire) = spec.runtime() else {
        panic!("not a Swarm service");
    };
    assert_eq!(
        wire.restart,
        Some(SwarmRestartPolicy {
            condition: "on-failure".to_owned(),
            delay_ms: 5_000,
            max_attempts: 3,
            window_ms: 120_000,
        })
    );
    // A plain container warns about both and keeps what it used before.
    let file = ok(&web(policy));
    assert_eq!(file.warnings.len(), 2, "{:?}", file.warnings);
    assert!(
        file.warnings[0].starts_with(
            "app.yaml:7: services.web.deploy.restart_policy.delay: only Swarm services"
        ),
        "{:?}",
        file.warnings
    );
    assert!(file.warnings[1].contains("restart_policy.window"));
    assert_eq!(file.services["web"].swarm, None);
    assert_eq!(file.services["web"].restart.max_attempts, 3);
}

#[test]
fn a_port_mode_is_for_swarm_services_only() {
    let ports = "ports:\n  - target: 80\n    published: 8080\n    mode: host\n  - \"9090:90\"";
    let spec = only(&swarm_web(ports));
    assert_eq!(spec.ports[0].mode, "host");
    let Runtime::Swarm(wire) = spec.runtime() else {
        panic!("not a Swarm service");
    };
    let container = wire.container.unwrap();
    assert_eq!(
        container.ports,
        [
            PortMapping {
                host_ip: String::new(),
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".to_owned(),
                mode: "host".to_owned(),
            },
            PortMapping {
                host_ip: String::new(),
                host_port: 9090,
                container_port: 90,
                protocol: "tcp".to_owned(),
                mode: String::new(),
            }
        ]
    );
    // A plain container: warned, and dropped.
    let file = ok(&web(ports));
    assert_eq!(
        file.warnings,
        [
            "app.yaml:7: services.web.ports[0].mode: only a Swarm service (`x-convoy.swarm`) \
          publishes in `host` or `ingress` mode; a container publishes on its node: ignored"
        ]
    );
    assert_eq!(file.services["web"].ports[0].mode, "");
    // Other values are errors.
    let err = error(&swarm_web("ports:\n  - target: 80\n    mode: mesh"));
    assert!(err.contains("services.web.ports[0].mode: "), "{err}");
}

#[test]
fn what_a_swarm_service_cannot_have_is_an_error_naming_file_line_and_key() {
    let cases = [
        ("gpus: all", "app.yaml:5:5: services.web.gpus: GPUs are not yet supported for Swarm services"),
        (
            "deploy:\n  resources:\n    reservations:\n      devices:\n        - capabilities: [gpu]",
            "app.yaml:8:11: services.web.deploy.resources.reservations.devices: GPU reservations are not yet supported",
        ),
        (
            "x-convoy:\n  swarm: prod\n  probes:\n    - tcp: {port: 80}",
            "app.yaml:6:7: services.web.x-convoy.probes: `x-convoy.probes` are not yet supported",
        ),
        (
            "x-convoy:\n  swarm: prod\n  update: {strategy: canary}",
            "app.yaml:6:7: services.web.x-convoy.update: Swarm's own `deploy.update_config` drives",
        ),
        ("privileged: true", "app.yaml:5:5: services.web.privileged: host access (`privileged`) is not yet supported"),
        ("network_mode: host", "app.yaml:5:5: services.web.network_mode: host access"),
        (
            "x-convoy:\n  swarm: prod\n  secret_env: {PW: s}",
            "app.yaml:6:7: services.web.x-convoy.secret_env: `secret_env` is refused for Swarm services",
        ),
    ];
    for (extra, want) in cases {
        let yaml = if extra.starts_with("x-convoy") {
            web(extra)
        } else {
            swarm_web(extra)
        };
        let yaml =
            format!("{yaml}configs:\n  c:\n    content: x\nsecrets:\n  s:\n    external: true\n");
        let err = error(&yaml);
        assert!(err.starts_with(want), "{extra}:\n{err}\nwanted {want}");
    }
    let err = error("services:\n  web:\n    image: nginx\n    x-convoy: {swarm: prod}\n    depends_on: [db]\n  db:\n    image: redis\n    x-convoy: {swarm: false}\n");
    assert!(
        err.starts_with("app.yaml:5:5: services.web.depends_on: `depends_on` is not yet supported"),
        "{err}"
    );
    // The same keys are fine on a plain container.
    assert!(parse("app.yaml", &web("privileged: true")).is_ok());
    assert!(parse("app.yaml", &web("gpus: all")).is_ok());
}

#[test]
fn keys_swarm_ignores_are_warned_about() {
    let file = ok(&swarm_web(
        "restart: always\nexpose: [\"80\"]\nshm_size: 64m",
    ));
    assert_eq!(
        file.warnings,
        [
            "app.yaml:5: services.web.restart: Swarm ignores `restart` and restarts tasks by \
             `deploy.restart_policy` (default: `any`): ignored",
            "app.yaml:6: services.web.expose: Swarm services reach each other on their \
             networks without it: ignored",
            "app.yaml:7: services.web.shm_size: not set on Swarm services' tasks: ignored",
        ]
    );
    // An env file is fine: merged into `environment` before.
    let spec = only(&swarm_web("env_file: [app.env]\nenvironment: {A: '1'}"));
    assert_eq!(spec.swarm_cluster(), Some("prod"));
}

#[test]
fn runtime_is_a_swarm_service_with_the_container_settings() {
    let spec = only(&format!(
        "{}networks:\n  back:\n    internal: true\n    labels: {{team: core}}\n  shared:\n    external: true\n    name: corp-net\n",
        swarm_web(
            "command: [serve]\nenvironment: {A: '1'}\nnetworks:\n  back:\n    aliases: [api]\n  shared: {}\ndeploy:\n  mode: global\n  resources:\n    limits: {memory: 256m}"
        )
    ));
    let Runtime::Swarm(wire) = spec.runtime() else {
        panic!("not a Swarm service: {:?}", spec.runtime());
    };
    // Filled by the coordinator's planner.
    assert_eq!((wire.name.as_str(), wire.cluster.as_str()), ("", ""));
    assert!(wire.global);
    let container = wire.container.expect("the container settings");
    assert_eq!(container.image, "nginx");
    assert_eq!(container.command, ["serve"]);
    assert_eq!(container.env.get("A").map(String::as_str), Some("1"));
    assert_eq!(container.memory_bytes, 256 * 1024 * 1024);
    // The networks are the service's own, below.
    assert!(container.networks.is_empty());
    assert!(container.gpu_uuids.is_empty() && container.gpu_capabilities.is_empty());
    let mut networks = wire.networks;
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(networks.len(), 2, "{networks:?}");
    let back = networks
        .iter()
        .find(|n| n.aliases == ["api"])
        .expect("back");
    assert_eq!(
        (back.name.as_str(), back.internal, back.external),
        ("back", true, false)
    );
    assert_eq!(back.labels.get("team").map(String::as_str), Some("core"));
    let shared: &SwarmNetwork = networks.iter().find(|n| n.external).expect("shared");
    assert_eq!(shared.name, "corp-net");
    // A plain container is still a container.
    assert!(matches!(only(&web("")).runtime(), Runtime::Container(_)));
}

#[test]
fn the_hash_covers_a_swarm_services_replicas_but_not_a_containers() {
    let swarm = |n: u32| only(&swarm_web(&format!("deploy: {{replicas: {n}}}"))).spec_hash();
    assert_ne!(swarm(2), swarm(3));
    let plain = |n: u32| only(&web(&format!("deploy: {{replicas: {n}}}"))).spec_hash();
    assert_eq!(plain(2), plain(3));
    // Becoming a Swarm service, or moving clusters, is a new spec.
    let other = only(&web("x-convoy: {swarm: staging}\ndeploy: {replicas: 2}")).spec_hash();
    assert_ne!(swarm(2), other);
    assert_ne!(plain(2), swarm(2));
    // Swarm's own settings count too.
    let constrained = only(&swarm_web(
        "deploy:\n  replicas: 2\n  placement:\n    constraints: [node.role == manager]",
    ))
    .spec_hash();
    assert_ne!(swarm(2), constrained);
}

#[test]
fn changed_fields_name_the_swarm_settings_by_their_keys() {
    let before = only(&swarm_web("deploy: {replicas: 2}"));
    let after = only(&swarm_web(
        "deploy:\n  replicas: 3\n  placement:\n    constraints: [node.role == manager]\n  update_config: {parallelism: 1}",
    ));
    assert_eq!(
        changed_fields(&before, &after),
        [
            "deploy.replicas",
            "deploy.placement.constraints",
            "deploy.update_config"
        ]
    );
    let moved = only(&web("x-convoy: {swarm: staging}\ndeploy: {replicas: 2}"));
    assert_eq!(changed_fields(&before, &moved), ["x-convoy.swarm"]);
    let plain = only(&web("deploy: {replicas: 2}"));
    assert_eq!(changed_fields(&plain, &before), ["x-convoy.swarm"]);
}

#[test]
fn swarm_fields_survive_a_revision_round_trip() {
    let spec = only(&swarm_web(
        "ports:\n  - {target: 80, published: 80, mode: ingress}\ndeploy:\n  placement:\n    constraints: [node.platform.os == linux]\n  restart_policy: {condition: any, delay: 1s}\n  update_config: {order: start-first}",
    ));
    let json = serde_json::to_string(&spec).unwrap();
    let back: ServiceSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
    // A plain container's stored record does not grow.
    let plain = serde_json::to_string(&only(&web("ports: [\"80:80\"]"))).unwrap();
    assert!(
        !plain.contains("swarm") && !plain.contains("\"mode\":\"\""),
        "{plain}"
    );
}

/// `secrets:` and `configs:` of a Swarm service go on the wire as for a
/// container (the driver makes Swarm secrets and configs of them).
#[test]
fn a_swarm_services_secrets_and_configs_reach_the_wire() {
    let yaml =
        swarm_web("configs: [c]\nsecrets:\n  - source: s\n    target: db_pw\n    mode: 0440");
    let yaml =
        format!("{yaml}configs:\n  c:\n    content: hello\nsecrets:\n  s:\n    external: true\n");
    let file = ok(&yaml);
    let web = &file.services["web"];
    let Runtime::Swarm(s) = web.runtime() else {
        panic!("not a Swarm service");
    };
    let c = s.container.unwrap();
    assert_eq!(c.secrets.len(), 1);
    assert_eq!(
        (c.secrets[0].name.as_str(), c.secrets[0].target.as_str()),
        ("s", "/run/secrets/db_pw")
    );
    assert_eq!(c.secrets[0].mode, 0o440);
    assert_eq!(c.configs.len(), 1);
    assert_eq!(c.configs[0].content, b"hello");
    assert_eq!(c.configs[0].target, "/c");
}

use convoy_proto::{
    probe, restart_policy::Condition, workload::Runtime, ExecProbe, HealthCheck, HttpProbe,
    NodeFacts, PortMapping, Probe, RestartPolicy, TcpProbe, UnitSpec,
};

use super::*;

fn ok(content: &str) -> SpecFile {
    parse("app.yaml", content).unwrap_or_else(|err| panic!("{err}"))
}

fn service(content: &str) -> ServiceSpec {
    let mut file = ok(content);
    assert_eq!(file.services.len(), 1, "{:?}", file.services.keys());
    file.services.pop_first().unwrap().1
}

/// One service `web` with `image: nginx` and `extra`, indented 4 spaces.
fn web(extra: &str) -> String {
    let mut yaml = String::from("services:\n  web:\n    image: nginx\n");
    for line in extra.lines() {
        yaml += &format!("    {line}\n");
    }
    yaml
}

fn error(content: &str) -> String {
    match parse("app.yaml", content) {
        Ok(file) => panic!("parsed, expected an error: {file:?}"),
        Err(err) => err.to_string(),
    }
}

fn port(host_ip: &str, published: u16, target: u16, protocol: Protocol) -> PortSpec {
    PortSpec {
        host_ip: host_ip.to_owned(),
        published,
        target,
        protocol,
        mode: String::new(),
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn facts(hostname: &str, labels: &[(&str, &str)]) -> crate::facts::Facts {
    crate::facts::Facts::from(NodeFacts {
        hostname: hostname.to_owned(),
        os: "Debian GNU/Linux 12 (bookworm)".to_owned(),
        platform_os: "linux".to_owned(),
        arch: "x86_64".to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..NodeFacts::default()
    })
}

// ---- supported forms ----

#[test]
fn minimal_service_gets_the_defaults_of_an_orchestrator() {
    let spec = service(&web(""));
    assert_eq!(spec.image(), "nginx");
    assert_eq!(spec.replicas(), 1);
    assert!(!spec.is_global());
    assert!(spec.constraints().is_empty());
    assert_eq!(
        spec.restart,
        RestartSpec {
            condition: RestartCondition::Any,
            max_attempts: 0
        }
    );
    assert!(spec.command.is_empty() && spec.environment.is_empty() && spec.ports.is_empty());
}

#[test]
fn command_string_is_split_as_a_shell_would() {
    let spec = service(&web(r#"command: sh -c 'echo "hi there"' "a b" c\ d"#));
    assert_eq!(
        spec.command,
        strings(&["sh", "-c", r#"echo "hi there""#, "a b", "c d"])
    );
}

#[test]
fn command_and_entrypoint_lists_are_taken_as_written() {
    let spec = service(&web(
        "command: [sleep, 10]\nentrypoint:\n  - /bin/tini\n  - --",
    ));
    assert_eq!(spec.command, strings(&["sleep", "10"]));
    assert_eq!(spec.entrypoint, strings(&["/bin/tini", "--"]));
}

#[test]
fn null_command_means_the_image_default() {
    assert!(service(&web("command: null")).command.is_empty());
}

#[test]
fn unterminated_quote_in_command_is_an_error() {
    assert_eq!(
        error(&web("command: echo 'oops")),
        "app.yaml:4:14: services.web.command: unterminated single quote in `echo 'oops`"
    );
}

#[test]
fn environment_map_keeps_values_as_written() {
    let spec = service(&web(
        "environment:\n  GREETING: hello\n  VERSION: 1.10\n  DEBUG: true\n  PORT: 8080\n  EMPTY: \"\"",
    ));
    let env: Vec<(&str, &str)> = spec
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("DEBUG", "true"),
            ("EMPTY", ""),
            ("GREETING", "hello"),
            ("PORT", "8080"),
            ("VERSION", "1.10")
        ]
    );
}

#[test]
fn environment_list_splits_at_the_first_equals_sign() {
    let spec = service(&web("environment:\n  - A=1\n  - B=x=y\n  - C="));
    assert_eq!(spec.environment["A"], "1");
    assert_eq!(spec.environment["B"], "x=y");
    assert_eq!(spec.environment["C"], "");
}

#[test]
fn environment_variable_without_value_is_left_unset_with_a_warning() {
    let file = ok(&web(
        "environment:\n  - FROM_SHELL\n  - A=1\nlabels:\n  x: y\nuser: app",
    ));
    let spec = &file.services["web"];
    assert!(!spec.environment.contains_key("FROM_SHELL"));
    assert_eq!(
        file.warnings,
        ["app.yaml:5: services.web.environment.FROM_SHELL: has no value, and Convoy does not take \
          values from the shell (as Compose does): left unset"]
    );
    let file = ok(&web("environment:\n  TOKEN:\n"));
    assert!(
        file.warnings[0].starts_with("app.yaml:5: services.web.environment.TOKEN: has no value")
    );
}

#[test]
fn labels_map_and_list_forms_are_read() {
    let spec = service(&web("labels:\n  com.example.team: web\n  tier: 1"));
    assert_eq!(spec.labels["com.example.team"], "web");
    assert_eq!(spec.labels["tier"], "1");
    let spec = service(&web("labels: [\"a=b\", \"flag\"]"));
    assert_eq!(spec.labels["a"], "b");
    assert_eq!(spec.labels["flag"], "");
}

#[test]
fn convoy_labels_are_reserved() {
    assert_eq!(
        error(&web("labels:\n  io.convoy.service: x")),
        "app.yaml:5:7: services.web.labels.io.convoy.service: label `io.convoy.service`: labels \
         under `io.convoy.` are reserved for Convoy"
    );
}

#[test]
fn short_port_syntax_forms_are_read() {
    let spec = service(&web(
        "ports:\n  - 80\n  - \"8080:80\"\n  - 127.0.0.1:8081:81\n  - 5353:53/udp\n  - \"[::1]:8082:82\"\n  - 127.0.0.1::83",
    ));
    assert_eq!(
        spec.ports,
        [
            port("", 0, 80, Protocol::Tcp),
            port("", 8080, 80, Protocol::Tcp),
            port("127.0.0.1", 8081, 81, Protocol::Tcp),
            port("", 5353, 53, Protocol::Udp),
            port("::1", 8082, 82, Protocol::Tcp),
            port("127.0.0.1", 0, 83, Protocol::Tcp),
        ]
    );
}

#[test]
fn long_port_syntax_is_read() {
    let spec = service(&web(
        "ports:\n  - target: 80\n    published: \"8080\"\n    host_ip: 10.0.0.1\n    protocol: udp\n  - target: 81",
    ));
    assert_eq!(
        spec.ports,
        [
            port("10.0.0.1", 8080, 80, Protocol::Udp),
            port("", 0, 81, Protocol::Tcp)
        ]
    );
}

#[test]
fn volumes_short_syntax_is_read() {
    let spec = service(&format!(
        "{}volumes:\n  cache: {{}}\n",
        web("volumes:\n  - /srv/data:/data\n  - cache:/cache:ro\n  - /etc/x:/x:rw")
    ));
    use crate::spec::MountKind::{Bind, Volume};
    let mounts: Vec<_> = spec
        .mounts
        .iter()
        .map(|m| (m.kind, m.source.as_str(), m.target.as_str(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            (Bind, "/srv/data", "/data", false),
            (Volume, "cache", "/cache", true),
            (Bind, "/etc/x", "/x", false)
        ]
    );
    assert!(spec.volumes.is_empty());
}

#[test]
fn plain_runtime_keys_are_read() {
    let spec = service(&web(
        "working_dir: /app\nuser: 1000\nstop_signal: SIGINT\nstop_grace_period: 1m30s",
    ));
    assert_eq!(spec.working_dir, "/app");
    assert_eq!(spec.user, "1000");
    assert_eq!(spec.stop_signal, "SIGINT");
    assert_eq!(spec.stop_grace_period_ms, 90_000);
}

#[test]
fn compose_durations_are_read_in_milliseconds() {
    for (text, ms) in [
        ("10s", 10_000),
        ("1m30s", 90_000),
        ("500ms", 500),
        ("1.5h", 5_400_000),
        ("2s500ms", 2_500),
        ("0", 0),
        ("0s", 0),
    ] {
        assert_eq!(values::duration_ms(text), Ok(ms), "{text}");
    }
    for text in ["", "10", "ten", "10d", "-1s", "s"] {
        assert!(values::duration_ms(text).is_err(), "{text}");
    }
}

#[test]
fn restart_values_map_to_restart_policies() {
    for (text, condition, max_attempts) in [
        ("no", RestartCondition::None, 0),
        ("always", RestartCondition::Any, 0),
        ("unless-stopped", RestartCondition::Any, 0),
        ("on-failure", RestartCondition::OnFailure, 0),
        ("on-failure:3", RestartCondition::OnFailure, 3),
    ] {
        let spec = service(&web(&format!("restart: {text}")));
        assert_eq!(
            spec.restart,
            RestartSpec {
                condition,
                max_attempts
            },
            "{text}"
        );
    }
}

#[test]
fn deploy_restart_policy_wins_over_restart() {
    let spec = service(&web(
        "restart: \"no\"\ndeploy:\n  restart_policy:\n    condition: on-failure\n    max_attempts: 5",
    ));
    assert_eq!(
        spec.restart,
        RestartSpec {
            condition: RestartCondition::OnFailure,
            max_attempts: 5
        }
    );
    let spec = service(&web("deploy:\n  restart_policy:\n    max_attempts: 2"));
    assert_eq!(spec.restart.condition, RestartCondition::Any);
}

#[test]
fn deploy_replicas_mode_and_constraints_are_read() {
    let spec = service(&web("deploy:\n  replicas: 3"));
    assert_eq!(spec.replicas(), 3);
    let spec = service(&web(
        "deploy:\n  mode: global\n  placement:\n    constraints:\n      - node.labels.zone == eu\n      - node.platform.os==linux",
    ));
    assert!(spec.is_global());
    let constraints: Vec<String> = spec
        .constraints()
        .iter()
        .map(Constraint::to_string)
        .collect();
    assert_eq!(
        constraints,
        ["node.labels.zone == eu", "node.platform.os == linux"]
    );
}

#[test]
fn several_services_are_read_by_name() {
    let file = ok("services:\n  web:\n    image: nginx\n  db:\n    image: postgres:16\n");
    let names: Vec<&str> = file.services.keys().map(String::as_str).collect();
    assert_eq!(names, ["db", "web"]);
    assert_eq!(file.services["db"].image(), "postgres:16");
}

#[test]
fn extension_keys_are_ignored_silently() {
    let file = ok(
        "x-common: {a: 1}\nservices:\n  web:\n    x-note: hi\n    image: nginx\n    deploy:\n      x-team: a\n      replicas: 2\n",
    );
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    assert_eq!(file.services["web"].replicas(), 2);
}

#[test]
fn anchors_and_merge_keys_are_applied() {
    let file = ok("x-base: &base\n  image: nginx\n  environment: &env\n    A: \"1\"\n  restart: on-failure\nservices:\n  web:\n    <<: *base\n    ports: [\"80\"]\n  worker:\n    image: nginx\n    environment: *env\n    deploy:\n      replicas: 2\n");
    let web = &file.services["web"];
    assert_eq!(web.image(), "nginx");
    assert_eq!(web.environment["A"], "1");
    assert_eq!(web.restart.condition, RestartCondition::OnFailure);
    assert_eq!(web.ports, [port("", 0, 80, Protocol::Tcp)]);
    let worker = &file.services["worker"];
    assert_eq!(worker.environment["A"], "1");
    assert_eq!(worker.replicas(), 2);
}

#[test]
fn error_in_a_file_with_merge_keys_still_names_the_line() {
    let content =
        "x-base: &base\n  image: nginx\nservices:\n  web:\n    <<: *base\n    ports: [\"99999\"]\n";
    assert_eq!(
        error(content),
        "app.yaml:6:13: services.web.ports[0]: invalid port `99999`: port 99999 is out of range 1-65535"
    );
}

#[test]
fn compose_file_with_name_and_version_parses_with_a_warning_for_version() {
    let file = ok("version: \"3.8\"\nname: shop\nservices:\n  web:\n    image: nginx\n");
    assert_eq!(
        file.warnings,
        ["app.yaml:1: version: obsolete in Compose, ignored"]
    );
}

#[test]
fn example_hello_yaml_is_a_valid_spec() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello.yaml");
    let content = std::fs::read_to_string(path).unwrap();
    let file = parse("examples/hello.yaml", &content).unwrap_or_else(|err| panic!("{err}"));
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    let hello = &file.services["hello"];
    assert_eq!(hello.image(), "convoy-testapp:latest");
    assert_eq!(
        hello.command,
        strings(&["/convoy-testapp", "--listen", "0.0.0.0:8080"])
    );
    assert_eq!(hello.environment["GREETING"], "hello");
    assert_eq!(hello.ports, [port("", 0, 8080, Protocol::Tcp)]);
    assert_eq!(hello.replicas(), 2);
    assert_eq!(hello.stop_grace_period_ms, 2_000);
    assert!(!hello.labels.is_empty());
}

// ---- errors ----

#[test]
fn unknown_service_key_is_an_error_naming_file_line_and_key() {
    assert_eq!(
        error(&web("imag: nginx")),
        "app.yaml:4:5: services.web.imag: unknown field `imag`, expected one of `image`, \
         `command`, `entrypoint`, `environment`, `ports`, `labels`, `volumes`, `networks`, \
         `hostname`, `extra_hosts`, `dns`, `expose`, `working_dir`, `user`, `restart`, \
         `stop_signal`, `stop_grace_period`, `healthcheck`, `deploy`, `profiles`, `env_file`, \
         `read_only`, `tmpfs`, `init`, `cap_drop`, `tty`, `stdin_open`, `sysctls`, `logging`, \
         `pull_policy`, `platform`, `depends_on`, `configs`, `secrets`, `cpus`, `mem_limit`, `mem_reservation`, `pids_limit`, `shm_size`, \
         `ulimits`, `gpus`, `x-convoy`, `privileged`, `cap_add`, `devices`, `pid`, `ipc`, `uts`, \
         `userns_mode`, `network_mode`, `security_opt`"
    );
}

#[test]
fn unknown_keys_are_errors_at_every_level() {
    assert!(error("servics:\n  web:\n    image: x\n")
        .starts_with("app.yaml:1:1: servics: unknown field `servics`, expected one of `services`, `units`, `name`, `version`"));
    assert!(error(&web("deploy:\n  replica: 2"))
        .starts_with("app.yaml:5:7: services.web.deploy.replica: unknown field `replica`"));
    assert!(error(&web("deploy:\n  placement:\n    constraint: []"))
        .starts_with("app.yaml:6:9: services.web.deploy.placement.constraint: unknown field"));
    assert!(error(&web("deploy:\n  restart_policy:\n    conditon: any"))
        .starts_with("app.yaml:6:9: services.web.deploy.restart_policy.conditon: unknown field"));
    assert!(error(&web("ports:\n  - target: 80\n    publish: 80"))
        .starts_with("app.yaml:6:9: services.web.ports[0].publish: unknown field `publish`"));
}

#[test]
fn wrong_types_are_errors_naming_line_column_and_key() {
    assert_eq!(
        error(&web("deploy:\n  replicas: three")),
        "app.yaml:5:17: services.web.deploy.replicas: `three` is not a whole number"
    );
    assert_eq!(
        error(&web("ports: 5")),
        "app.yaml:4:12: services.web.ports: invalid type: integer `5`, expected a list of ports"
    );
    assert_eq!(
        error(&web("environment: 5")),
        "app.yaml:4:18: services.web.environment: invalid type: integer `5`, expected a mapping \
         or a list of `KEY=VALUE` strings"
    );
    assert_eq!(
        error("services:\n  web:\n    image: [nginx]\n"),
        "app.yaml:3:12: services.web.image: invalid type: sequence, expected a single value (text or a number)"
    );
    assert_eq!(
        error("- web\n"),
        "app.yaml:1:1: invalid type: sequence, expected a Compose file: a mapping with `services:` \
         or `units:`"
    );
}

#[test]
fn bad_ports_are_errors_naming_the_item() {
    assert_eq!(
        error(&web("ports:\n  - \"80\"\n  - abc:80")),
        "app.yaml:6:9: services.web.ports[1]: invalid port `abc:80`: `abc` is not a port number"
    );
    assert_eq!(
        error(&web("ports: [\"70000:80\"]")),
        "app.yaml:4:13: services.web.ports[0]: invalid port `70000:80`: port 70000 is out of range 1-65535"
    );
    assert_eq!(
        error(&web("ports: [\"8000-8010:80\"]")),
        "app.yaml:4:13: services.web.ports[0]: invalid port `8000-8010:80`: port ranges are not supported yet"
    );
    assert!(error(&web("ports: [\"80/sctp\"]")).contains("unknown protocol `sctp`"));
    assert!(
        error(&web("ports: [\"999.1.1.1:80:80\"]")).contains("`999.1.1.1` is not an IP address")
    );
    assert_eq!(
        error(&web("ports:\n  - published: 80")),
        "app.yaml:5:9: services.web.ports[0]: missing field `target`"
    );
}

#[test]
fn bad_volumes_are_errors() {
    assert!(error(&web("volumes: [\"./data:/data\"]"))
        .starts_with("app.yaml:4:15: services.web.volumes[0]: invalid volume `./data:/data`: relative host paths"));
    assert!(error(&web("volumes: [\"/a:/b:z\"]")).contains("SELinux"));
    assert!(error(&web("volumes: [\"/a:/b:rx\"]")).contains("the mode must be `ro` or `rw`"));
    assert!(error(&web("volumes: [\"/a:b\"]")).contains("must be an absolute path"));
    assert!(error(&web(
        "volumes:\n  - type: npipe\n    source: /a\n    target: /b"
    ))
    .starts_with("app.yaml:5:15: services.web.volumes[0].type: `type: npipe` mounts a Windows"));
}

#[test]
fn bad_duration_is_an_error() {
    assert_eq!(
        error(&web("stop_grace_period: 10")),
        "app.yaml:4:24: services.web.stop_grace_period: invalid duration `10`: missing unit; \
         write it as `10s`, `1m30s` or `500ms`"
    );
}

#[test]
fn unknown_restart_value_is_an_error() {
    assert_eq!(
        error(&web("restart: sometimes")),
        "app.yaml:4:14: services.web.restart: unknown restart policy `sometimes`, expected one of \
         `no`, `always`, `on-failure`, `on-failure:N`, `unless-stopped`"
    );
    assert!(error(&web("deploy:\n  restart_policy:\n    condition: always"))
        .starts_with("app.yaml:6:20: services.web.deploy.restart_policy.condition: unknown restart condition `always`"));
}

#[test]
fn placement_preferences_max_replicas_and_deploy_labels_are_read() {
    let spec = service(&web(
        "deploy:\n  replicas: 4\n  labels: [team=web, tier]\n  placement:\n    max_replicas_per_node: 2\n    preferences:\n      - spread: node.labels.zone\n      - spread: node.labels.rack",
    ));
    assert_eq!(spec.deploy.spread, strings(&["zone", "rack"]));
    assert_eq!(spec.deploy.max_replicas_per_node, 2);
    assert_eq!(
        spec.deploy.labels,
        [
            ("team".to_string(), "web".to_string()),
            ("tier".to_string(), String::new())
        ]
        .into()
    );
    // Placement and service labels are not the containers' business.
    assert_eq!(spec.spec_hash(), service(&web("")).spec_hash());
    let old = service(&web(""));
    assert_eq!(
        changed_fields(&old, &spec),
        [
            "deploy.replicas",
            "deploy.placement.preferences",
            "deploy.placement.max_replicas_per_node",
            "deploy.labels"
        ]
    );
    // Stored before these existed: the record still loads.
    let json = serde_json::to_string(&old.deploy).unwrap();
    assert!(
        !json.contains("spread") && !json.contains("labels"),
        "{json}"
    );
}

#[test]
fn bad_placement_preferences_are_errors() {
    assert_eq!(
        error(&web(
            "deploy:\n  placement:\n    preferences:\n      - spread: node.hostname"
        )),
        "app.yaml:7:21: services.web.deploy.placement.preferences[0].spread: `node.hostname`: \
         Convoy spreads over node labels only; write `node.labels.KEY`"
    );
    assert!(error(&web(
        "deploy:\n  placement:\n    preferences:\n      - sprad: node.labels.zone"
    ))
    .contains("unknown field `sprad`, expected `spread`"));
    assert!(
        error(&web("deploy:\n  placement:\n    max_replicas_per_node: 0"))
            .contains("must be at least 1")
    );
}

#[test]
fn bad_constraint_is_an_error() {
    assert_eq!(
        error(&web(
            "deploy:\n  placement:\n    constraints:\n      - node.labels.zone = eu"
        )),
        "app.yaml:7:13: services.web.deploy.placement.constraints[0]: invalid constraint \
         `node.labels.zone = eu`: expected `ATTRIBUTE == VALUE` or `ATTRIBUTE != VALUE`"
    );
    assert!(error(&web(
        "deploy:\n  placement:\n    constraints: [\"node.role == manager\"]"
    ))
    .contains("`node.role` is not supported by Convoy yet"));
    assert!(error(&web(
        "deploy:\n  placement:\n    constraints: [\"node.color == red\"]"
    ))
    .contains("unknown attribute `node.color`"));
    assert!(error(&web(
        "deploy:\n  placement:\n    constraints: [\"node.hostname ==\"]"
    ))
    .contains("the value is empty"));
}

#[test]
fn empty_or_missing_image_is_an_error() {
    assert_eq!(
        error("services:\n  web:\n    image: \"\"\n"),
        "app.yaml:3:12: services.web.image: must not be empty: name the image to run, e.g. `nginx:1.27`"
    );
    assert_eq!(
        error("services:\n  web:\n    command: x\n"),
        "app.yaml:3:5: services.web: missing field `image`"
    );
    assert!(error("services:\n  web:\n")
        .starts_with("app.yaml:2:3: services.web: missing field `image`"));
}

#[test]
fn replicas_with_global_mode_is_an_error_whichever_comes_first() {
    assert_eq!(
        error(&web("deploy:\n  mode: global\n  replicas: 2")),
        "app.yaml:6:17: services.web.deploy.replicas: cannot be set with `mode: global`, which runs \
         one instance on every matching node"
    );
    assert_eq!(
        error(&web("deploy:\n  replicas: 2\n  mode: global")),
        "app.yaml:6:13: services.web.deploy.mode: `global` runs one instance on every matching node, \
         so it cannot be combined with `replicas`"
    );
    assert!(error(&web("deploy:\n  mode: replicated-job")).contains("not supported by Convoy yet"));
}

#[test]
fn invalid_service_name_is_an_error_on_its_line() {
    assert!(error("services:\n  Web:\n    image: x\n")
        .starts_with("app.yaml:2:3: services.Web: invalid service name `Web`"));
    let long = "a".repeat(64);
    assert!(error(&format!("services:\n  {long}:\n    image: x\n")).starts_with("app.yaml:2:3:"));
    assert!(error("services:\n  -web:\n    image: x\n").starts_with("app.yaml:2:3:"));
}

#[test]
fn duplicate_keys_are_errors_on_the_second_one() {
    assert_eq!(
        error(&web("image: httpd")),
        "app.yaml:4:5: services.web.image: duplicate key `image`"
    );
    assert_eq!(
        error("services:\n  web:\n    image: x\n  web:\n    image: y\n"),
        "app.yaml:4:3: services.web: duplicate service `web`"
    );
    assert_eq!(
        error(&web("environment:\n  - A=1\n  - A=2")),
        "app.yaml:6:9: services.web.environment[1]: duplicate variable `A`"
    );
}

#[test]
fn missing_or_empty_services_is_an_error() {
    assert_eq!(
        error("name: shop\n"),
        "app.yaml:1:1: missing field `services`: a spec lists its services under `services:` \
         (containers) or `units:` (systemd services)"
    );
    assert!(error("").starts_with("app.yaml:1:1: missing field `services`"));
    assert_eq!(
        error("services: {}\n"),
        "app.yaml:1:11: services: no services defined: a spec needs at least one"
    );
    assert!(error("services:\n").contains("services: no services defined"));
}

#[test]
fn yaml_syntax_error_names_the_line() {
    let err = error("services:\n  web:\n    image: convoy-testapp:latest: oops\n    deploy:\n      replicas: 1\n");
    assert_eq!(
        err,
        "app.yaml:3:33: services.web: invalid YAML: mapping values are not allowed in this context"
    );
    let err = error("services:\n  web:\n    image: x\n    ports: [\"80\"\n");
    assert!(
        err.starts_with("app.yaml:4:12: services.web.ports: invalid YAML: unclosed bracket"),
        "{err}"
    );
}

#[test]
fn several_documents_are_an_error() {
    assert!(
        error("services:\n  web:\n    image: x\n---\nservices:\n  db:\n    image: y\n")
            .contains("this file holds several (`---`)")
    );
}

// ---- warnings ----

#[test]
fn unsupported_service_keys_are_warnings_naming_file_line_and_key() {
    let file = ok(&web(
        "blkio_config:\n  weight: 300\n  device_read_bps: []\ngroup_add: [mail]\noom_score_adj: 100\nprivileged: false",
    ));
    assert_eq!(
        file.warnings,
        [
            "app.yaml:4: services.web.blkio_config: not supported by Convoy yet, ignored",
            "app.yaml:7: services.web.group_add: not supported by Convoy yet, ignored",
            "app.yaml:8: services.web.oom_score_adj: not supported by Convoy yet, ignored",
            "app.yaml:9: services.web.privileged: not supported by Convoy yet, ignored",
        ]
    );
    assert_eq!(file.services["web"].image(), "nginx");
}

/// Issue 14: `privileged: true`, `cap_add` and the like were warned about
/// and ignored; they are host access, which only an admin may grant, so the
/// spec is refused naming file, line, key and the flag to come.
#[test]
fn keys_that_give_host_access_are_read_as_host_access() {
    for (line, kind) in [
        ("privileged: true", "privileged"),
        ("cap_add: [SYS_ADMIN]", "cap_add"),
        ("devices: [\"/dev/sda:/dev/sda\"]", "devices"),
        ("pid: host", "pid"),
        ("network_mode: host", "network_mode"),
        ("security_opt: [\"seccomp:unconfined\"]", "security_opt"),
    ] {
        let spec = service(&web(&format!("ports: [\"80\"]\n{line}")));
        assert_eq!(spec.host_access.kinds(), [kind], "{line}");
        // Granted per node: a node without the grant does not take it.
        assert!(!spec.host_access.allowed_by(&[]), "{line}");
        assert!(spec.host_access.allowed_by(&[kind.to_string()]), "{line}");
        assert!(spec.host_access.allowed_by(&["all".to_string()]), "{line}");
        // Part of how the container runs: a new hash.
        assert_ne!(
            spec.spec_hash(),
            service(&web("ports: [\"80\"]")).spec_hash()
        );
    }
    // A malformed value is an error naming the key.
    let err = error(&web("cap_add: [sys_admin]"));
    assert!(
        err.starts_with("app.yaml:4:5: services.web.cap_add: "),
        "{err}"
    );
    // What takes privileges away is no host access.
    let file = ok(&web("security_opt: [\"no-new-privileges:true\"]"));
    assert_eq!(
        file.warnings,
        ["app.yaml:4: services.web.security_opt: not supported by Convoy yet, ignored"]
    );
}

#[test]
fn unsupported_deploy_and_top_level_keys_are_warnings() {
    let file = ok("services:\n  web:\n    image: nginx\n    deploy:\n      endpoint_mode: vip\n      resources: {limits: {cpus: \"0.5\"}}\n      placement:\n        preferences: []\n      restart_policy:\n        delay: 5s\n    ports:\n      - target: 80\n        mode: host\nnetworks:\n  default: {}\nvolumes:\n  data: {}\n");
    assert_eq!(
        file.warnings,
        [
            "app.yaml:5: services.web.deploy.endpoint_mode: not supported by Convoy yet, ignored",
            "app.yaml:10: services.web.deploy.restart_policy.delay: only Swarm services \
             (`x-convoy.swarm`) use it; Convoy's agent restarts containers with its own \
             backoff: ignored",
            "app.yaml:13: services.web.ports[0].mode: only a Swarm service (`x-convoy.swarm`) \
             publishes in `host` or `ingress` mode; a container publishes on its node: ignored",
        ]
    );
}

#[test]
fn warnings_of_several_services_come_in_file_order() {
    let file = ok(
        "services:\n  zeta:\n    image: x\n    group_add: [a]\n  alpha:\n    image: y\n    oom_score_adj: 1\n",
    );
    assert_eq!(
        file.warnings,
        [
            "app.yaml:4: services.zeta.group_add: not supported by Convoy yet, ignored",
            "app.yaml:7: services.alpha.oom_score_adj: not supported by Convoy yet, ignored",
        ]
    );
}

#[test]
fn warning_without_a_findable_line_still_names_the_key() {
    let file = ok("services: {web: {image: nginx, group_add: [a]}}\n");
    assert_eq!(
        file.warnings,
        ["app.yaml:1: services.web.group_add: not supported by Convoy yet, ignored"]
    );
}

// ---- spec hash, changed fields, container spec ----

const FULL: &str = "services:\n  web:\n    image: nginx:1.27\n    command: [nginx, -g, daemon off;]\n    environment:\n      B: \"2\"\n      A: \"1\"\n    ports: [\"8080:80\"]\n    labels: {team: web}\n    volumes: [\"/srv:/srv:ro\"]\n    working_dir: /srv\n    user: www\n    restart: on-failure:3\n    stop_signal: SIGQUIT\n    stop_grace_period: 5s\n    deploy:\n      replicas: 2\n";

#[test]
fn spec_hash_is_stable_across_runs_and_releases() {
    // A changed hash replaces every running instance on upgrade: change these
    // values only on purpose. The second is sha256 of
    // "convoy spec-hash v1\n" followed by `{"image":"nginx"}`.
    // A revision stored before `mounts` keeps `volumes` as written, and
    // its hash (its instances are kept on upgrade); applying the same text
    // again reads the volumes as `mounts`, a new hash, replaced once.
    let mut stored = service(FULL);
    stored.mounts.clear();
    stored.volumes = strings(&["/srv:/srv:ro"]);
    assert_eq!(
        stored.spec_hash(),
        "c9054e690de41f7370066c722d0af57ef24b9b21277ff5b7d36c1269782521bd"
    );
    assert_eq!(
        service(FULL).spec_hash(),
        "2bdbb3bb735c80f4953286dd5ab8fff5cc1bcef9cd5f6a522ed6c9c535b98fb2"
    );
    assert_eq!(
        service(&web("")).spec_hash(),
        "094bb495cf717726bfc340ceb636cf8bed436bbee2f97e5dc6424dea2268352d"
    );
}

#[test]
fn spec_hash_ignores_replicas_mode_and_placement() {
    let base = service(FULL);
    let scaled = service(&FULL.replace("replicas: 2", "replicas: 5"));
    assert_eq!(base.spec_hash(), scaled.spec_hash());
    let placed = service(&FULL.replace(
        "replicas: 2",
        "mode: global\n      placement: {constraints: [\"node.name == n1\"]}",
    ));
    assert_eq!(base.spec_hash(), placed.spec_hash());
}

#[test]
fn spec_hash_ignores_the_order_keys_are_written_in() {
    let a = service(&web(
        "environment:\n  A: \"1\"\n  B: \"2\"\nlabels: [x=1, y=2]",
    ));
    let b = service(&web("labels: [y=2, x=1]\nenvironment:\n  - B=2\n  - A=1"));
    assert_eq!(a.spec_hash(), b.spec_hash());
}

#[test]
fn spec_hash_changes_with_the_runtime_part() {
    let base = service(FULL).spec_hash();
    for (from, to) in [
        ("nginx:1.27", "nginx:1.28"),
        ("A: \"1\"", "A: \"3\""),
        ("8080:80", "8081:80"),
        ("on-failure:3", "always"),
        ("5s", "6s"),
        ("user: www", "user: root"),
    ] {
        assert_ne!(
            service(&FULL.replace(from, to)).spec_hash(),
            base,
            "{from} -> {to}"
        );
    }
}

#[test]
fn changed_fields_names_what_differs() {
    let old = service(FULL);
    let new = service(
        &FULL
            .replace("nginx:1.27", "nginx:1.28")
            .replace("A: \"1\"", "A: \"9\"")
            .replace("replicas: 2", "replicas: 4"),
    );
    assert_eq!(
        changed_fields(&old, &new),
        ["image", "environment", "deploy.replicas"]
    );
    assert!(changed_fields(&old, &old.clone()).is_empty());
    let new = service(&FULL.replace(
        "replicas: 2",
        "replicas: 2\n      placement: {constraints: [\"node.name == a\"]}",
    ));
    assert_eq!(changed_fields(&old, &new), ["deploy.placement.constraints"]);
}

#[test]
fn container_spec_carries_the_runtime_part() {
    let spec = service(FULL).container_spec();
    assert_eq!(spec.image, "nginx:1.27");
    assert_eq!(spec.command, strings(&["nginx", "-g", "daemon off;"]));
    assert_eq!(spec.env.get("A").map(String::as_str), Some("1"));
    assert_eq!(spec.labels.get("team").map(String::as_str), Some("web"));
    assert_eq!(
        spec.ports,
        [PortMapping {
            host_ip: String::new(),
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".to_owned(),
            mode: String::new(),
        }]
    );
    let mount = &spec.mounts[0];
    assert_eq!(
        (
            mount.r#type.as_str(),
            mount.source.as_str(),
            mount.target.as_str()
        ),
        ("bind", "/srv", "/srv")
    );
    assert!(mount.read_only && spec.mounts.len() == 1 && spec.volumes.is_empty());
    assert_eq!(
        (spec.working_dir.as_str(), spec.user.as_str()),
        ("/srv", "www")
    );
    assert_eq!(
        spec.restart,
        Some(RestartPolicy {
            condition: Condition::OnFailure.into(),
            max_attempts: 3
        })
    );
    assert_eq!(spec.stop_signal, "SIGQUIT");
    assert_eq!(spec.stop_grace_period_ms, 5_000);
}

#[test]
fn service_spec_round_trips_through_json() {
    let spec = service(&FULL.replace(
        "replicas: 2",
        "mode: global\n      placement: {constraints: [\"node.labels.zone != eu\"]}",
    ));
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains("\"node.labels.zone != eu\""), "{json}");
    let back: ServiceSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
    assert_eq!(back.spec_hash(), spec.spec_hash());
}

// ---- constraints ----

fn constraint(text: &str) -> Constraint {
    text.parse().unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn constraints_match_name_hostname_labels_and_platform() {
    let node = facts("host-1", &[("zone", "eu"), ("gpu", "true")]);
    for (text, expected) in [
        ("node.name == n1", true),
        ("node.name == n2", false),
        ("node.name != n2", true),
        ("node.hostname == host-1", true),
        ("node.hostname == HOST-1", true),
        ("node.hostname != host-1", false),
        ("node.labels.zone == eu", true),
        ("node.labels.zone == us", false),
        ("node.labels.zone != us", true),
        ("node.labels.gpu == true", true),
        ("node.platform.os == linux", true),
        ("node.platform.os == windows", false),
        ("node.platform.arch == x86_64", true),
        ("node.platform.arch == amd64", true),
        ("node.platform.arch == arm64", false),
    ] {
        assert_eq!(constraint(text).matches("n1", &node), expected, "{text}");
    }
}

#[test]
fn label_constraint_on_a_node_without_the_label_compares_as_empty() {
    let node = facts("h", &[]);
    assert!(!constraint("node.labels.zone == eu").matches("n1", &node));
    assert!(constraint("node.labels.zone != eu").matches("n1", &node));
}

#[test]
fn constraint_displays_as_swarm_writes_it() {
    assert_eq!(
        constraint("  node.labels.disk==ssd ").to_string(),
        "node.labels.disk == ssd"
    );
    assert!("node.labels. == x".parse::<Constraint>().is_err());
    assert!("node.name".parse::<Constraint>().is_err());
}

// ---- healthcheck ----

#[test]
fn healthcheck_list_form_and_durations_are_read() {
    let file = ok(&web(
        "healthcheck:\n  test: [\"CMD\", \"/convoy-testapp\", \"--probe\", \"http://127.0.0.1:8080/healthz\"]\n  interval: 1m30s\n  timeout: 500ms\n  retries: 5\n  start_period: 10s\n  start_interval: 2s",
    ));
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    assert_eq!(
        file.services["web"].healthcheck,
        Some(HealthcheckSpec {
            test: strings(&[
                "CMD",
                "/convoy-testapp",
                "--probe",
                "http://127.0.0.1:8080/healthz"
            ]),
            interval_ms: 90_000,
            timeout_ms: 500,
            retries: 5,
            start_period_ms: 10_000,
            start_interval_ms: 2_000,
            disable: false,
        })
    );
}

#[test]
fn healthcheck_test_string_runs_with_the_shell() {
    let spec = service(&web(
        "healthcheck:\n  test: curl -f http://localhost/ || exit 1",
    ));
    assert_eq!(
        spec.healthcheck.unwrap().test,
        strings(&["CMD-SHELL", "curl -f http://localhost/ || exit 1"])
    );
    let spec = service(&web(
        "healthcheck:\n  test: [\"CMD-SHELL\", \"pg_isready -U app\"]",
    ));
    assert_eq!(
        spec.healthcheck.unwrap().test,
        strings(&["CMD-SHELL", "pg_isready -U app"])
    );
}

#[test]
fn healthcheck_without_test_keeps_the_images_test_with_new_timings() {
    let spec = service(&web("healthcheck:\n  interval: 2s"));
    let check = spec.healthcheck.unwrap();
    assert!(check.test.is_empty());
    assert_eq!(check.interval_ms, 2_000);
    assert!(service(&web("")).healthcheck.is_none());
}

#[test]
fn healthcheck_disable_and_test_none_mean_the_same() {
    let disabled = service(&web("healthcheck:\n  disable: true"));
    let none = service(&web("healthcheck:\n  test: [\"NONE\"]"));
    assert_eq!(
        disabled.healthcheck,
        Some(HealthcheckSpec {
            test: strings(&["NONE"]),
            disable: true,
            ..HealthcheckSpec::default()
        })
    );
    assert_eq!(disabled.healthcheck, none.healthcheck);
    assert_eq!(disabled.spec_hash(), none.spec_hash());
    let kept = service(&web("healthcheck:\n  disable: false\n  retries: 2"));
    assert_eq!(kept.healthcheck.unwrap().retries, 2);
}

#[test]
fn bad_healthchecks_are_errors_naming_line_and_key() {
    assert_eq!(
        error(&web(
            "healthcheck:\n  test: [\"curl\", \"-f\", \"http://localhost\"]"
        )),
        "app.yaml:5:13: services.web.healthcheck.test: the list starts with `curl`, expected \
         `CMD`, `CMD-SHELL` or `NONE`: write [\"CMD\", \"curl\", ...] to run it, or a string to \
         run it with the shell"
    );
    assert!(error(&web("healthcheck:\n  test: [\"CMD\"]"))
        .starts_with("app.yaml:5:13: services.web.healthcheck.test: `CMD` needs the command"));
    assert!(error(&web("healthcheck:\n  test: []"))
        .starts_with("app.yaml:5:13: services.web.healthcheck.test: the test is empty"));
    assert!(error(&web("healthcheck:\n  test: [\"NONE\", \"x\"]"))
        .contains("`NONE` takes no arguments"));
    assert_eq!(
        error(&web("healthcheck:\n  interval: 30")),
        "app.yaml:5:17: services.web.healthcheck.interval: invalid duration `30`: missing unit; \
         write it as `10s`, `1m30s` or `500ms`"
    );
    assert!(error(&web("healthcheck:\n  retries: many")).starts_with(
        "app.yaml:5:16: services.web.healthcheck.retries: `many` is not a whole number"
    ));
    assert!(error(&web("healthcheck:\n  disable: yes")).starts_with(
        "app.yaml:5:16: services.web.healthcheck.disable: `yes` is not `true` or `false`"
    ));
    assert!(error(&web(
        "healthcheck:\n  disable: true\n  test: [\"CMD\", \"true\"]"
    ))
    .starts_with(
        "app.yaml:5:7: services.web.healthcheck: `disable: true` turns the healthcheck off"
    ));
    assert!(error(&web("healthcheck:\n  tset: [\"CMD\", \"true\"]"))
        .starts_with("app.yaml:5:7: services.web.healthcheck.tset: unknown field `tset`, expected one of `test`, `interval`"));
}

#[test]
fn healthcheck_start_interval_is_read_and_checked() {
    let file = ok(&web(
        "healthcheck:\n  test: [\"CMD\", \"true\"]\n  start_interval: 1s",
    ));
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    assert_eq!(
        file.services["web"]
            .healthcheck
            .as_ref()
            .map(|h| h.start_interval_ms),
        Some(1_000)
    );
    assert!(error(&web(
        "healthcheck:\n  test: [\"CMD\", \"true\"]\n  start_interval: often"
    ))
    .starts_with("app.yaml:6:23: services.web.healthcheck.start_interval: "));
}

// ---- x-convoy.probes ----

const PROBES: &str = "x-convoy:\n  probes:\n    - http: {port: 8080, path: /healthz, expect_status: 204}\n      interval: 2s\n      timeout: 1s\n      failure_threshold: 2\n      success_threshold: 3\n      start_period: 20s\n    - name: db\n      tcp:\n        port: 5432\n    - exec: [\"/convoy-testapp\", \"--probe\", \"http://127.0.0.1:8080/healthz\"]";

#[test]
fn probes_of_every_kind_are_read_with_their_timings() {
    let file = ok(&web(PROBES));
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    let probes = &file.services["web"].probes;
    assert_eq!(
        probes[0],
        ProbeSpec {
            name: "http".into(),
            check: ProbeCheck::Http {
                port: 8080,
                path: "/healthz".into(),
                expect_status: 204
            },
            interval_ms: 2_000,
            timeout_ms: 1_000,
            failure_threshold: 2,
            success_threshold: 3,
            start_period_ms: 20_000,
        }
    );
    assert_eq!(
        probes[1],
        ProbeSpec {
            name: "db".into(),
            check: ProbeCheck::Tcp { port: 5432 },
            interval_ms: 0,
            timeout_ms: 0,
            failure_threshold: 0,
            success_threshold: 0,
            start_period_ms: 0,
        }
    );
    assert_eq!(probes[2].name, "exec");
    assert_eq!(
        probes[2].check,
        ProbeCheck::Exec {
            command: strings(&[
                "/convoy-testapp",
                "--probe",
                "http://127.0.0.1:8080/healthz"
            ])
        }
    );
}

#[test]
fn probes_map_to_the_plans_probes() {
    let pb = service(&web(PROBES)).probes();
    assert_eq!(pb.len(), 3);
    assert_eq!(
        pb[0],
        Probe {
            name: "http".into(),
            interval_ms: 2_000,
            timeout_ms: 1_000,
            failure_threshold: 2,
            success_threshold: 3,
            start_period_ms: 20_000,
            check: Some(probe::Check::Http(HttpProbe {
                port: 8080,
                path: "/healthz".into(),
                expect_status: 204,
            })),
        }
    );
    assert_eq!(
        pb[1].check,
        Some(probe::Check::Tcp(TcpProbe { port: 5432 }))
    );
    assert_eq!(
        pb[2].check,
        Some(probe::Check::Exec(ExecProbe {
            command: strings(&[
                "/convoy-testapp",
                "--probe",
                "http://127.0.0.1:8080/healthz"
            ])
        }))
    );
    assert!(service(&web("")).probes().is_empty());
}

#[test]
fn x_convoy_without_probes_and_empty_probes_are_fine() {
    assert!(service(&web("x-convoy: {}")).probes.is_empty());
    assert!(service(&web("x-convoy:\n  probes: []")).probes.is_empty());
}

#[test]
fn unknown_keys_in_x_convoy_are_errors_naming_the_key_path() {
    assert_eq!(
        error(&web("x-convoy:\n  probe: []")),
        "app.yaml:5:7: services.web.x-convoy.probe: unknown field `probe`, expected one of `probes`, \
         `update`, `secret_env`, `gpu_sharing`, `swarm`, `reschedule_after`, `pre_deploy`, `ingress`"
    );
    assert!(error(&web(
        "x-convoy:\n  probes:\n    - tcp: {port: 1}\n      intervall: 1s"
    ))
    .starts_with(
        "app.yaml:7:11: services.web.x-convoy.probes[0].intervall: unknown field `intervall`"
    ));
    assert!(error(&web("x-convoy:\n  probes:\n    - http: {port: 1, paht: /}"))
        .starts_with("app.yaml:6:27: services.web.x-convoy.probes[0].http.paht: unknown field `paht`, expected one of `port`, `path`, `expect_status`"));
    assert!(error(&web("x-convoy:\n  probes:\n    - tcp: {port: 1, host: x}"))
        .starts_with("app.yaml:6:26: services.web.x-convoy.probes[0].tcp.host: unknown field `host`, expected `port`"));
}

#[test]
fn probe_needs_exactly_one_check() {
    assert_eq!(
        error(&web(
            "x-convoy:\n  probes:\n    - name: x\n      interval: 1s"
        )),
        "app.yaml:6:11: services.web.x-convoy.probes[0]: a probe needs one check: `http:`, `tcp:` \
         or `exec:`"
    );
    assert_eq!(
        error(&web(
            "x-convoy:\n  probes:\n    - http: {port: 80}\n      tcp: {port: 80}"
        )),
        "app.yaml:7:16: services.web.x-convoy.probes[0].tcp: a probe runs one check and this one \
         already has `http`: write a probe for each check"
    );
}

#[test]
fn bad_probe_values_are_errors_naming_line_and_key() {
    let probe = |text: &str| error(&web(&format!("x-convoy:\n  probes:\n    - {text}")));
    assert_eq!(
        probe("tcp: {port: 0}"),
        "app.yaml:6:23: services.web.x-convoy.probes[0].tcp.port: invalid port `0`: port 0 is \
         out of range 1-65535"
    );
    assert!(probe("http: {port: 70000}").contains(
        "services.web.x-convoy.probes[0].http.port: invalid port `70000`: port 70000 is out of range 1-65535"
    ));
    assert_eq!(
        probe("http: {path: /}"),
        "app.yaml:6:18: services.web.x-convoy.probes[0].http: missing field `port`"
    );
    assert!(probe("http: {port: 80, path: healthz}")
        .contains("probes[0].http.path: `healthz` does not start with `/`"));
    assert!(probe("http: {port: 80, expect_status: 42}")
        .contains("probes[0].http.expect_status: `42` is not an HTTP status code (100 to 599)"));
    assert_eq!(
        probe("exec: []"),
        "app.yaml:6:17: services.web.x-convoy.probes[0].exec: the command is empty: give the \
         program to run and its arguments"
    );
    assert!(probe("exec: /bin/check")
        .contains("probes[0].exec: invalid type: string \"/bin/check\", expected a list"));
    assert!(probe("tcp: {port: 1}\n      timeout: 0s").contains(
        "probes[0].timeout: `0s` is too short: it must be at least 1ms; leave it out for the default"
    ));
    assert!(probe("tcp: {port: 1}\n      interval: soon")
        .contains("probes[0].interval: invalid duration `soon`"));
    assert!(probe("tcp: {port: 1}\n      failure_threshold: 0")
        .contains("probes[0].failure_threshold: must be at least 1"));
    assert!(probe("tcp: {port: 1}\n      name: \"my probe\"")
        .contains("probes[0].name: invalid probe name `my probe`"));
    assert!(probe("tcp: {port: 1}\n      name: docker")
        .contains("probes[0].name: the probe name `docker` is reserved"));
}

#[test]
fn probe_names_must_differ() {
    assert_eq!(
        error(&web(
            "x-convoy:\n  probes:\n    - tcp: {port: 1}\n    - tcp: {port: 2}"
        )),
        "app.yaml:7:11: services.web.x-convoy.probes[1]: another probe is already named `tcp`: \
         give each probe its own `name:`"
    );
    let spec = service(&web(
        "x-convoy:\n  probes:\n    - tcp: {port: 1}\n    - name: other\n      tcp: {port: 2}",
    ));
    assert_eq!(spec.probes.len(), 2);
}

// ---- health in the hash, changed fields, storage ----

#[test]
fn spec_hash_changes_with_healthcheck_and_probes() {
    let base = service(FULL).spec_hash();
    let with = |extra: &str| {
        service(&FULL.replace("    deploy:\n", &format!("{}    deploy:\n", indent(extra))))
            .spec_hash()
    };
    let checked = with("healthcheck:\n  test: [\"CMD\", \"true\"]");
    assert_ne!(checked, base);
    assert_ne!(with("healthcheck:\n  test: [\"CMD\", \"false\"]"), checked);
    // `start_interval` came later: left out, the hash is the one before it.
    assert_eq!(
        with("healthcheck:\n  test: [\"CMD\", \"true\"]\n  start_interval: 0s"),
        checked
    );
    assert_ne!(
        with("healthcheck:\n  test: [\"CMD\", \"true\"]\n  start_interval: 1s"),
        checked
    );
    let probed = with("x-convoy:\n  probes: [{tcp: {port: 80}}]");
    assert_ne!(probed, base);
    assert_ne!(with("x-convoy:\n  probes: [{tcp: {port: 81}}]"), probed);
    // No probes and an empty list hash alike: the hash of old specs stays.
    assert_eq!(with("x-convoy:\n  probes: []"), base);
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[test]
fn changed_fields_names_healthcheck_and_probes() {
    let old = service(&web("healthcheck:\n  test: [\"CMD\", \"true\"]"));
    let new = service(&web(
        "healthcheck:\n  test: [\"CMD\", \"true\"]\n  interval: 3s\nx-convoy:\n  probes: [{tcp: {port: 80}}]",
    ));
    assert_eq!(
        changed_fields(&old, &new),
        ["healthcheck", "x-convoy.probes"]
    );
}

#[test]
fn container_spec_carries_the_healthcheck() {
    let spec = service(&web(
        "healthcheck:\n  test: [\"CMD\", \"/check\"]\n  interval: 2s\n  timeout: 1s\n  retries: 4\n  start_period: 3s\n  start_interval: 500ms",
    ))
    .container_spec();
    assert_eq!(
        spec.healthcheck,
        Some(HealthCheck {
            test: strings(&["CMD", "/check"]),
            interval_ms: 2_000,
            timeout_ms: 1_000,
            retries: 4,
            start_period_ms: 3_000,
            start_interval_ms: 500,
            disable: false,
        })
    );
    assert_eq!(service(&web("")).container_spec().healthcheck, None);
}

#[test]
fn stored_specs_from_before_health_still_load() {
    let json = r#"{"image":"nginx","command":[],"entrypoint":[],"environment":{},"ports":[],"labels":{},"volumes":[],"working_dir":"","user":"","restart":{"condition":"any","max_attempts":0},"stop_signal":"","stop_grace_period_ms":0,"deploy":{"mode":"replicated","replicas":1,"constraints":[]}}"#;
    let spec: ServiceSpec = serde_json::from_str(json).unwrap();
    assert_eq!(spec.healthcheck, None);
    assert!(spec.probes.is_empty());
    assert_eq!(spec.spec_hash(), service(&web("")).spec_hash());
}

#[test]
fn health_settings_round_trip_through_json() {
    let spec = service(&web(&format!(
        "healthcheck:\n  test: curl -f localhost\n  retries: 2\n{PROBES}"
    )));
    let json = serde_json::to_string(&spec).unwrap();
    let back: ServiceSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
    assert_eq!(back.spec_hash(), spec.spec_hash());
}

// ---- update strategy ----

fn update(extra: &str) -> UpdatePolicy {
    service(&web(extra)).deploy.update
}

#[test]
fn update_policy_defaults_stay_when_nothing_is_written() {
    assert_eq!(update(""), UpdatePolicy::default());
    assert_eq!(
        update("deploy:\n  update_config: {}"),
        UpdatePolicy::default()
    );
    assert_eq!(update("deploy:\n  update_config:"), UpdatePolicy::default());
    assert_eq!(update("x-convoy:\n  update: {}"), UpdatePolicy::default());
    assert_eq!(
        update("deploy:\n  update_config:\n    delay: null\nx-convoy:\n  update:"),
        UpdatePolicy::default()
    );
}

#[test]
fn update_config_keys_map_to_the_update_policy() {
    let policy = update(
        "deploy:\n  replicas: 4\n  update_config:\n    parallelism: 2\n    delay: 10s\n    \
         failure_action: pause\n    monitor: 30s\n    max_failure_ratio: 0.25\n    order: start-first",
    );
    assert_eq!(
        policy,
        UpdatePolicy {
            max_parallel: 2,
            delay_ms: 10_000,
            failure_action: FailureAction::Pause,
            auto_rollback: false,
            min_healthy_time_ms: 30_000,
            max_failure_permille: 250,
            order: UpdateOrder::StartFirst,
            ..UpdatePolicy::default()
        }
    );
}

#[test]
fn compose_parallelism_zero_means_all_at_once_as_ours() {
    assert_eq!(
        update("deploy:\n  update_config:\n    parallelism: 0").max_parallel,
        0
    );
    assert_eq!(
        update("x-convoy:\n  update:\n    max_parallel: 0").max_parallel,
        0
    );
}

#[test]
fn failure_action_decides_whether_a_failed_rollout_rolls_back() {
    let action = |word: &str| {
        let policy = update(&format!(
            "deploy:\n  update_config:\n    failure_action: {word}"
        ));
        (policy.failure_action, policy.auto_rollback)
    };
    assert_eq!(action("rollback"), (FailureAction::Rollback, true));
    assert_eq!(action("pause"), (FailureAction::Pause, false));
    assert_eq!(action("continue"), (FailureAction::Continue, false));
}

#[test]
fn max_failure_ratio_is_kept_in_thousandths_rounded() {
    let permille = |ratio: &str| {
        update(&format!(
            "deploy:\n  update_config:\n    max_failure_ratio: {ratio}"
        ))
        .max_failure_permille
    };
    assert_eq!(permille("0"), 0);
    assert_eq!(permille("0.25"), 250);
    assert_eq!(permille("0.3333"), 333);
    assert_eq!(permille("0.9999"), 1000);
    assert_eq!(permille("1"), 1000);
    assert_eq!(permille("1.0"), 1000);
}

#[test]
fn x_convoy_update_keys_map_to_the_update_policy() {
    let policy = update(
        "x-convoy:\n  update:\n    strategy: rolling\n    max_parallel: 1\n    delay: 5s\n    \
         min_healthy_time: 10s\n    healthy_deadline: 2m\n    progress_deadline: 15m\n    \
         order: start-first\n    auto_rollback: false",
    );
    assert_eq!(
        policy,
        UpdatePolicy {
            strategy: Strategy::Rolling,
            max_parallel: 1,
            delay_ms: 5_000,
            min_healthy_time_ms: 10_000,
            healthy_deadline_ms: 120_000,
            progress_deadline_ms: 900_000,
            order: UpdateOrder::StartFirst,
            // The failure action stays: a failed rollout stops, as it is.
            failure_action: FailureAction::Rollback,
            auto_rollback: false,
            ..UpdatePolicy::default()
        }
    );
}

#[test]
fn canary_keys_are_read() {
    let policy = update(
        "deploy:\n  replicas: 3\nx-convoy:\n  update:\n    strategy: canary\n    canaries: 3\n    \
         auto_promote: true",
    );
    assert_eq!(policy.strategy, Strategy::Canary);
    assert_eq!(policy.canaries, 3);
    assert!(policy.auto_promote);
}

#[test]
fn canary_without_canaries_starts_one() {
    let policy = update("x-convoy:\n  update:\n    strategy: canary");
    assert_eq!((policy.strategy, policy.canaries), (Strategy::Canary, 1));
    assert!(!policy.auto_promote);
}

#[test]
fn blue_green_keys_are_read() {
    let policy = update(
        "x-convoy:\n  update:\n    strategy: blue-green\n    auto_promote: false\n    \
         scale_down_delay: 5m",
    );
    assert_eq!(policy.strategy, Strategy::BlueGreen);
    assert_eq!(policy.scale_down_delay_ms, 300_000);
    assert_eq!(policy.canaries, 0);
    let policy = update("x-convoy:\n  update:\n    strategy: blue-green\n    scale_down_delay: 0");
    assert_eq!(policy.scale_down_delay_ms, 0);
}

#[test]
fn update_config_and_x_convoy_update_combine_when_they_set_different_things() {
    let policy = update(
        "x-convoy:\n  update:\n    strategy: canary\n    healthy_deadline: 1m\ndeploy:\n  replicas: 4\n  \
         update_config:\n    parallelism: 2\n    monitor: 20s\n    failure_action: continue",
    );
    assert_eq!(
        policy,
        UpdatePolicy {
            strategy: Strategy::Canary,
            canaries: 1,
            healthy_deadline_ms: 60_000,
            max_parallel: 2,
            min_healthy_time_ms: 20_000,
            failure_action: FailureAction::Continue,
            auto_rollback: false,
            ..UpdatePolicy::default()
        }
    );
}

#[test]
fn update_policy_is_not_part_of_the_spec_hash_but_is_a_changed_field() {
    let old = service(&web("deploy:\n  replicas: 2"));
    let new = service(&web(
        "deploy:\n  replicas: 2\n  update_config:\n    parallelism: 1\nx-convoy:\n  update:\n    strategy: canary",
    ));
    assert_eq!(old.spec_hash(), new.spec_hash());
    assert_eq!(changed_fields(&old, &new), ["update strategy"]);
}

#[test]
fn update_policy_round_trips_through_json() {
    let spec = service(&web(
        "deploy:\n  replicas: 3\n  update_config:\n    parallelism: 1\n    max_failure_ratio: 0.5\nx-convoy:\n  update:\n    strategy: canary\n    canaries: 2\n    auto_promote: true",
    ));
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains(r#""strategy":"canary""#), "{json}");
    let back: ServiceSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn stored_specs_from_before_rollouts_load_with_the_default_policy() {
    let json = r#"{"image":"nginx","deploy":{"mode":"replicated","replicas":2,"constraints":[]}}"#;
    let spec: ServiceSpec = serde_json::from_str(json).unwrap();
    assert_eq!(spec.deploy.update, UpdatePolicy::default());
}

#[test]
fn rollback_config_is_read_into_the_rollback_policy() {
    let file = ok(&web(
        "deploy:\n  update_config:\n    parallelism: 1\n    failure_action: rollback\n  rollback_config:\n    parallelism: 2\n    failure_action: pause\n    monitor: 5s\n    \
         max_failure_ratio: 0.1\n    order: start-first\n    delay: 1s",
    ));
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    let deploy = &file.services["web"].deploy;
    assert_eq!(deploy.update.max_parallel, 1);
    let rollback = deploy.rollback.as_ref().expect("a rollback policy");
    assert_eq!(rollback.max_parallel, 2);
    assert_eq!(rollback.failure_action, FailureAction::Pause);
    assert_eq!(rollback.min_healthy_time_ms, 5_000);
    assert_eq!(rollback.max_failure_permille, 100);
    assert_eq!(rollback.order, UpdateOrder::StartFirst);
    assert_eq!(rollback.delay_ms, 1_000);
    assert_eq!(rollback.strategy, Strategy::Rolling);
    assert!(!rollback.auto_rollback, "a rollback is not rolled back");
    // What it leaves out comes from the update policy's gates.
    assert_eq!(
        rollback.healthy_deadline_ms,
        deploy.update.healthy_deadline_ms
    );
    // Without it, no rollback policy; changing it is a changed field, not
    // a new container.
    let plain = &ok(&web("deploy:\n  update_config:\n    parallelism: 1")).services["web"];
    assert_eq!(plain.deploy.rollback, None);
    assert_eq!(
        changed_fields(plain, &file.services["web"]),
        ["deploy.rollback_config"]
    );
    assert_eq!(plain.spec_hash(), file.services["web"].spec_hash());
    assert_eq!(
        error(&web(
            "deploy:\n  rollback_config:\n    failure_action: rollback"
        )),
        "app.yaml:6:25: services.web.deploy.rollback_config.failure_action: `rollback` is not a \
         failure action for a rollback: expected `pause` or `continue`"
    );
    assert_eq!(
        error(&web(
            "deploy:\n  rollback_config:\n    max_failure_ratio: 2"
        )),
        "app.yaml:6:28: services.web.deploy.rollback_config.max_failure_ratio: `2` is out of \
         range: the ratio of failed instances tolerated is from 0 to 1 (`0.25` tolerates one in \
         four)"
    );
    assert!(error(&web("deploy:\n  rollback_config:\n    paralelism: 1")).starts_with(
        "app.yaml:6:9: services.web.deploy.rollback_config.paralelism: unknown field `paralelism`"
    ));
}

#[test]
fn unknown_update_keys_are_errors_listing_the_known_ones() {
    assert_eq!(
        error(&web("deploy:\n  update_config:\n    paralelism: 1")),
        "app.yaml:6:9: services.web.deploy.update_config.paralelism: unknown field `paralelism`, \
         expected one of `parallelism`, `delay`, `failure_action`, `monitor`, \
         `max_failure_ratio`, `order`"
    );
    assert_eq!(
        error(&web("x-convoy:\n  update:\n    stratgy: canary")),
        "app.yaml:6:9: services.web.x-convoy.update.stratgy: unknown field `stratgy`, expected \
         one of `strategy`, `max_parallel`, `delay`, `min_healthy_time`, `healthy_deadline`, \
         `progress_deadline`, `order`, `auto_rollback`, `canaries`, `auto_promote`, \
         `scale_down_delay`, `analysis`, `canary_weights`, `canary_pause`"
    );
    // Compose's names are not Convoy's: `x-convoy.update` is all Convoy's.
    assert!(error(&web("x-convoy:\n  update:\n    parallelism: 1"))
        .starts_with("app.yaml:6:9: services.web.x-convoy.update.parallelism: unknown field"));
}

#[test]
fn unknown_update_words_are_errors_listing_the_allowed_ones() {
    assert_eq!(
        error(&web("x-convoy:\n  update:\n    strategy: bluegreen")),
        "app.yaml:6:19: services.web.x-convoy.update.strategy: unknown strategy `bluegreen`, \
         expected one of `rolling`, `canary`, `blue-green`"
    );
    assert_eq!(
        error(&web("deploy:\n  update_config:\n    order: first")),
        "app.yaml:6:16: services.web.deploy.update_config.order: unknown order `first`, expected \
         `stop-first` or `start-first`"
    );
    assert!(error(&web("x-convoy:\n  update:\n    order: stop_first"))
        .contains("x-convoy.update.order: unknown order `stop_first`, expected `stop-first` or `start-first`"));
    assert_eq!(
        error(&web("deploy:\n  update_config:\n    failure_action: retry")),
        "app.yaml:6:25: services.web.deploy.update_config.failure_action: unknown failure action \
         `retry`, expected one of `rollback`, `pause`, `continue`"
    );
    assert_eq!(
        error(&web("x-convoy:\n  update:\n    auto_rollback: yes please")),
        "app.yaml:6:24: services.web.x-convoy.update.auto_rollback: `yes please` is not `true` \
         or `false`"
    );
}

#[test]
fn out_of_range_update_values_are_errors_naming_line_and_key() {
    assert_eq!(
        error(&web("deploy:\n  update_config:\n    parallelism: -1")),
        "app.yaml:6:22: services.web.deploy.update_config.parallelism: `-1` is negative: give the \
         number of instances to replace at a time, or 0 for all at once"
    );
    assert!(error(&web("x-convoy:\n  update:\n    max_parallel: -2"))
        .starts_with("app.yaml:6:23: services.web.x-convoy.update.max_parallel: `-2` is negative"));
    assert!(error(&web("x-convoy:\n  update:\n    max_parallel: two"))
        .contains("max_parallel: `two` is not a whole number"));
    assert_eq!(
        error(&web(
            "deploy:\n  update_config:\n    max_failure_ratio: 1.5"
        )),
        "app.yaml:6:28: services.web.deploy.update_config.max_failure_ratio: `1.5` is out of \
         range: the ratio of failed instances tolerated is from 0 to 1 (`0.25` tolerates one in \
         four)"
    );
    assert!(error(&web(
        "deploy:\n  update_config:\n    max_failure_ratio: -0.1"
    ))
    .contains("max_failure_ratio: `-0.1` is out of range"));
    assert!(error(&web(
        "deploy:\n  update_config:\n    max_failure_ratio: 25%"
    ))
    .contains("max_failure_ratio: `25%` is not a number: write a fraction such as `0.25`"));
    assert!(error(&web(
        "deploy:\n  update_config:\n    max_failure_ratio: .nan"
    ))
    .contains("max_failure_ratio: `.nan` is not a number"));
    assert_eq!(
        error(&web("deploy:\n  update_config:\n    delay: -5s")),
        "app.yaml:6:16: services.web.deploy.update_config.delay: invalid duration `-5s`: it is \
         negative; write it as `10s`, `1m30s` or `500ms`"
    );
    assert!(error(&web("deploy:\n  update_config:\n    monitor: 30"))
        .contains("update_config.monitor: invalid duration `30`: missing unit"));
    assert!(
        error(&web("x-convoy:\n  update:\n    min_healthy_time: -1m"))
            .contains("x-convoy.update.min_healthy_time: invalid duration `-1m`: it is negative")
    );
    assert!(
        error(&web("x-convoy:\n  update:\n    scale_down_delay: soon"))
            .contains("x-convoy.update.scale_down_delay: invalid duration `soon`")
    );
}

#[test]
fn zero_deadlines_are_errors() {
    assert_eq!(
        error(&web("x-convoy:\n  update:\n    healthy_deadline: 0s")),
        "app.yaml:6:27: services.web.x-convoy.update.healthy_deadline: `0s` is too short: it must \
         be at least 1ms; leave it out for the default"
    );
    assert!(
        error(&web("x-convoy:\n  update:\n    progress_deadline: 0")).starts_with(
            "app.yaml:6:28: services.web.x-convoy.update.progress_deadline: `0` is too short"
        )
    );
}

#[test]
fn canaries_must_be_at_least_one() {
    assert_eq!(
        error(&web(
            "x-convoy:\n  update:\n    strategy: canary\n    canaries: 0"
        )),
        "app.yaml:7:19: services.web.x-convoy.update.canaries: must be at least 1: the number of \
         new instances started before the others"
    );
}

#[test]
fn canaries_with_another_strategy_is_an_error_whichever_comes_first() {
    assert_eq!(
        error(&web("x-convoy:\n  update:\n    canaries: 1")),
        "app.yaml:6:9: services.web.x-convoy.update.canaries: is for `strategy: canary`, and the \
         strategy here is `rolling` (the default)"
    );
    assert_eq!(
        error(&web(
            "x-convoy:\n  update:\n    canaries: 1\n    strategy: blue-green"
        )),
        "app.yaml:6:9: services.web.x-convoy.update.canaries: is for `strategy: canary`, and the \
         strategy here is `blue-green`"
    );
    assert!(error(&web(
        "x-convoy:\n  update:\n    strategy: rolling\n    canaries: 1"
    ))
    .starts_with("app.yaml:7:9: services.web.x-convoy.update.canaries: is for `strategy: canary`"));
}

#[test]
fn more_canaries_than_replicas_is_an_error() {
    assert_eq!(
        error(&web(
            "deploy:\n  replicas: 2\nx-convoy:\n  update:\n    strategy: canary\n    canaries: 3"
        )),
        "app.yaml:9:9: services.web.x-convoy.update.canaries: 3 canaries are more instances than \
         the service runs (`deploy.replicas` is 2): give at most that many"
    );
    // `deploy` written after `x-convoy` is the same.
    assert!(error(&web(
        "x-convoy:\n  update:\n    strategy: canary\n    canaries: 3\ndeploy:\n  replicas: 2"
    ))
    .starts_with("app.yaml:7:9: services.web.x-convoy.update.canaries: 3 canaries"));
    assert!(error(&web(
        "x-convoy:\n  update:\n    strategy: canary\n    canaries: 2"
    ))
    .ends_with("(`deploy.replicas` is not set, so 1): give at most that many"));
    assert_eq!(
        update(
            "deploy:\n  replicas: 2\nx-convoy:\n  update:\n    strategy: canary\n    canaries: 2"
        )
        .canaries,
        2
    );
}

#[test]
fn auto_promote_and_scale_down_delay_belong_to_their_strategies() {
    assert_eq!(
        error(&web("x-convoy:\n  update:\n    auto_promote: true")),
        "app.yaml:6:9: services.web.x-convoy.update.auto_promote: is for `strategy: canary` or \
         `blue-green`, and the strategy here is `rolling` (the default)"
    );
    assert_eq!(
        error(&web(
            "x-convoy:\n  update:\n    strategy: canary\n    scale_down_delay: 1m"
        )),
        "app.yaml:7:9: services.web.x-convoy.update.scale_down_delay: is for `strategy: \
         blue-green`, and the strategy here is `canary`"
    );
}

#[test]
fn canary_and_blue_green_with_global_mode_are_errors() {
    assert_eq!(
        error(&web(
            "deploy:\n  mode: global\nx-convoy:\n  update:\n    strategy: blue-green"
        )),
        "app.yaml:8:9: services.web.x-convoy.update.strategy: `blue-green` is not supported with \
         `deploy.mode: global`, which runs one instance on every matching node: use `rolling`"
    );
    assert!(error(&web(
        "x-convoy:\n  update:\n    strategy: canary\ndeploy:\n  mode: global"
    ))
    .starts_with(
        "app.yaml:6:9: services.web.x-convoy.update.strategy: `canary` is not supported with \
         `deploy.mode: global`"
    ));
    let policy = update("deploy:\n  mode: global\nx-convoy:\n  update:\n    strategy: rolling");
    assert_eq!(policy.strategy, Strategy::Rolling);
}

#[test]
fn healthy_deadline_shorter_than_min_healthy_time_is_an_error() {
    assert_eq!(
        error(&web(
            "x-convoy:\n  update:\n    min_healthy_time: 2m\n    healthy_deadline: 90s"
        )),
        "app.yaml:7:9: services.web.x-convoy.update.healthy_deadline: 90s is shorter than the min \
         healthy time (2m from `x-convoy.update.min_healthy_time`): give the deadline at least \
         that long"
    );
    assert!(error(&web(
        "deploy:\n  update_config:\n    monitor: 1m\nx-convoy:\n  update:\n    healthy_deadline: 30s"
    ))
    .ends_with("30s is shorter than the min healthy time (1m from `deploy.update_config.monitor`): give the deadline at least that long"));
    // Equal is fine; so is a long monitor with the default deadline.
    update("x-convoy:\n  update:\n    min_healthy_time: 1m\n    healthy_deadline: 1m");
    assert_eq!(
        update("deploy:\n  update_config:\n    monitor: 6m").healthy_deadline_ms,
        UpdatePolicy::default().healthy_deadline_ms
    );
}

#[test]
fn progress_deadline_no_rollout_could_meet_is_an_error() {
    assert_eq!(
        error(&web(
            "x-convoy:\n  update:\n    min_healthy_time: 1m\n    delay: 30s\n    progress_deadline: 90s"
        )),
        "app.yaml:8:9: services.web.x-convoy.update.progress_deadline: a new instance counts as \
         progress after the delay (30s) and the min healthy time (1m), which together are not \
         shorter than the progress deadline (90s): every rollout would fail; make \
         `x-convoy.update.progress_deadline` longer"
    );
    // Without a progress deadline written, the key that made it too long.
    assert!(
        error(&web("deploy:\n  update_config:\n    monitor: 10m")).starts_with(
            "app.yaml:6:9: services.web.deploy.update_config.monitor: a new instance counts as \
         progress after the delay (0s) and the min healthy time (10m), which together are not \
         shorter than the progress deadline (10m, the default)"
        )
    );
    assert!(error(&web("x-convoy:\n  update:\n    delay: 1h"))
        .starts_with("app.yaml:6:9: services.web.x-convoy.update.delay: a new instance counts"));
    update("x-convoy:\n  update:\n    min_healthy_time: 10m\n    progress_deadline: 11m");
}

#[test]
fn the_same_setting_in_update_config_and_x_convoy_update_is_an_error_naming_both() {
    assert_eq!(
        error(&web(
            "deploy:\n  update_config:\n    parallelism: 1\nx-convoy:\n  update:\n    max_parallel: 2"
        )),
        "app.yaml:9:9: services.web.x-convoy.update.max_parallel: both this and \
         `deploy.update_config.parallelism` set how many instances are replaced at a time: keep \
         one of the two"
    );
    for (ours, value, compose, compose_value) in [
        ("delay", "1s", "delay", "1s"),
        ("min_healthy_time", "5s", "monitor", "5s"),
        ("order", "start-first", "order", "start-first"),
        ("auto_rollback", "true", "failure_action", "rollback"),
    ] {
        // Whichever block comes first.
        let err = error(&web(&format!(
            "x-convoy:\n  update:\n    {ours}: {value}\ndeploy:\n  update_config:\n    {compose}: {compose_value}"
        )));
        let start = format!(
            "app.yaml:6:9: services.web.x-convoy.update.{ours}: both this and \
             `deploy.update_config.{compose}` set "
        );
        assert!(err.starts_with(&start), "{err}");
        assert!(err.ends_with(": keep one of the two"), "{err}");
    }
}

#[test]
fn update_errors_in_flow_style_or_with_merge_keys_still_name_the_line() {
    assert_eq!(
        error(&web("x-convoy: {update: {canaries: 2}}")),
        "app.yaml:4: services.web.x-convoy.update.canaries: is for `strategy: canary`, and the \
         strategy here is `rolling` (the default)"
    );
    let content = "x-update: &update\n  strategy: canary\n  canaries: 5\nservices:\n  web:\n    image: nginx\n    deploy:\n      replicas: 2\n    x-convoy:\n      update:\n        <<: *update\n";
    assert!(error(content).starts_with(
        "app.yaml:10: services.web.x-convoy.update.canaries: 5 canaries are more instances"
    ));
    let content = "x-base: &base\n  image: nginx\nservices:\n  web:\n    <<: *base\n    deploy:\n      update_config:\n        order: sideways\n";
    assert!(error(content).starts_with(
        "app.yaml:8:16: services.web.deploy.update_config.order: unknown order `sideways`"
    ));
}

#[test]
fn update_error_names_the_service_it_is_in() {
    let content = "services:\n  api:\n    image: x\n  web:\n    image: y\n    x-convoy:\n      update:\n        auto_promote: true\n";
    assert!(error(content)
        .starts_with("app.yaml:8:9: services.web.x-convoy.update.auto_promote: is for"));
}

// ---- units ----

/// One unit `exporter` with `extra`, indented 4 spaces.
fn exporter(extra: &str) -> String {
    let mut yaml = String::from("units:\n  exporter:\n");
    for line in extra.lines() {
        yaml += &format!("    {line}\n");
    }
    yaml
}

fn unit_of(spec: &ServiceSpec) -> &UnitFields {
    spec.unit.as_ref().expect("a unit")
}

const FULL_UNIT: &str = "units:
  node-exporter:
    exec_start: /usr/bin/prometheus-node-exporter --web.listen-address=:9100 'a b'
    user: nobody
    restart: on-abnormal
    environment: { FOO: bar, N: 1 }
    working_dir: /var/lib/exporter
    description: Prometheus node exporter
    deploy:
      mode: global
      placement: { constraints: [\"node.labels.role == gpu\"] }
    x-convoy:
      probes: [{ tcp: { port: 9100 } }]
";

#[test]
fn unit_reads_every_key_of_a_unit_convoy_writes() {
    let spec = service(FULL_UNIT);
    let unit = unit_of(&spec);
    assert_eq!(unit.unit_name, "convoy-node-exporter.service");
    assert!(!unit.adopt);
    assert_eq!(
        unit.exec_start,
        strings(&[
            "/usr/bin/prometheus-node-exporter",
            "--web.listen-address=:9100",
            "a b"
        ])
    );
    assert_eq!(unit.user, "nobody");
    assert_eq!(unit.restart, UnitRestart::OnAbnormal);
    assert_eq!(unit.environment["FOO"], "bar");
    assert_eq!(unit.environment["N"], "1");
    assert_eq!(unit.working_dir, "/var/lib/exporter");
    assert_eq!(unit.description, "Prometheus node exporter");
    assert_eq!((unit.state, unit.enabled), (UnitState::Running, true));
    assert!(spec.is_global());
    assert_eq!(spec.constraints()[0].to_string(), "node.labels.role == gpu");
    assert_eq!(spec.probes[0].check, ProbeCheck::Tcp { port: 9100 });
    // Nothing of a container.
    assert!(spec.image.is_empty() && spec.command.is_empty() && spec.environment.is_empty());
    assert_eq!(spec.image(), "convoy-node-exporter.service");
}

#[test]
fn unit_exec_start_list_and_environment_list_are_read_as_compose_reads_them() {
    let spec = service(&exporter(
        "exec_start: [/bin/sleep, infinity]\nenvironment: [A=1, B=x=y]\nrestart: always\nuser: 1000",
    ));
    let unit = unit_of(&spec);
    assert_eq!(unit.exec_start, strings(&["/bin/sleep", "infinity"]));
    assert_eq!(unit.environment["A"], "1");
    assert_eq!(unit.environment["B"], "x=y");
    assert_eq!(unit.restart, UnitRestart::Always);
    assert_eq!(unit.user, "1000");
}

#[test]
fn unit_defaults_restart_on_failure_as_root_and_replicated_once() {
    let spec = service(&exporter("exec_start: /bin/sleep infinity"));
    let unit = unit_of(&spec);
    assert_eq!(unit.restart, UnitRestart::OnFailure);
    assert!(unit.user.is_empty() && unit.environment.is_empty());
    assert_eq!(spec.replicas(), 1);
    assert!(!spec.is_global());
}

#[test]
fn every_systemd_restart_value_is_taken() {
    for restart in UnitRestart::ALL {
        let spec = service(&exporter(&format!(
            "exec_start: /bin/true\nrestart: {}",
            restart.as_str()
        )));
        assert_eq!(unit_of(&spec).restart, restart);
    }
    assert_eq!(
        error(&exporter("exec_start: /bin/true\nrestart: any")),
        "app.yaml:4:14: units.exporter.restart: unknown restart policy `any`, expected one of \
         `no`, `on-success`, `on-failure`, `on-abnormal`, `on-watchdog`, `on-abort`, `always`"
    );
}

#[test]
fn unit_adopts_an_existing_unit_by_name() {
    let spec = service(
        "units:\n  web:\n    unit: nginx.service\n    state: stopped\n    enabled: false\n",
    );
    let unit = unit_of(&spec);
    assert_eq!(unit.unit_name, "nginx.service");
    assert!(unit.adopt);
    assert_eq!((unit.state, unit.enabled), (UnitState::Stopped, false));
    assert!(unit.exec_start.is_empty());
    // Running and enabled unless the spec says.
    let unit = service("units:\n  web:\n    unit: nginx.service\n")
        .unit
        .unwrap();
    assert_eq!((unit.state, unit.enabled), (UnitState::Running, true));
    assert_eq!(
        error("units:\n  web:\n    unit: nginx.service\n    state: paused\n"),
        "app.yaml:4:12: units.web.state: unknown state `paused`, expected `running` or `stopped`"
    );
}

#[test]
fn runtime_of_a_unit_is_a_unit_spec() {
    let Runtime::Unit(unit) = service(FULL_UNIT).runtime() else {
        panic!("not a unit");
    };
    assert_eq!(
        unit,
        UnitSpec {
            unit_name: "convoy-node-exporter.service".to_owned(),
            adopt: false,
            exec_start: strings(&[
                "/usr/bin/prometheus-node-exporter",
                "--web.listen-address=:9100",
                "a b"
            ]),
            user: "nobody".to_owned(),
            restart: "on-abnormal".to_owned(),
            environment: [("FOO", "bar"), ("N", "1")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            working_directory: "/var/lib/exporter".to_owned(),
            description: "Prometheus node exporter".to_owned(),
            state: "running".to_owned(),
            enabled: true,
            credentials: Vec::new(),
            gpu_uuids: Vec::new(),
            gpu_indexes: Vec::new(),
        }
    );
    let Runtime::Unit(adopted) =
        service("units:\n  web:\n    unit: nginx.service\n    state: stopped\n").runtime()
    else {
        panic!("not a unit");
    };
    assert_eq!(adopted.unit_name, "nginx.service");
    assert!(adopted.adopt && adopted.enabled);
    assert_eq!(adopted.state, "stopped");
    assert!(adopted.exec_start.is_empty() && adopted.restart.is_empty());
    assert!(matches!(service(FULL).runtime(), Runtime::Container(c) if c.image == "nginx:1.27"));
}

#[test]
fn services_and_units_live_side_by_side_in_one_namespace() {
    let file =
        ok("services:\n  web:\n    image: nginx\nunits:\n  exporter:\n    exec_start: /bin/true\n");
    assert!(!file.services["web"].is_unit());
    assert!(file.services["exporter"].is_unit());
    assert_eq!(
        error("services:\n  web:\n    image: nginx\nunits:\n  web:\n    exec_start: /bin/true\n"),
        "app.yaml:5:3: units.web: `web` is also a service under `services:`: services and units \
         share one namespace, so give one of them another name"
    );
    // Units only: no `services:` needed.
    assert_eq!(ok(&exporter("exec_start: /bin/true")).services.len(), 1);
    assert_eq!(
        error("units: {}\n"),
        "app.yaml:1:8: units: no units defined: leave `units:` out, or describe at least one"
    );
}

#[test]
fn unit_names_with_path_separators_or_shell_characters_are_refused() {
    for (name, why) in [
        ("a/b", "`/` is a path separator"),
        ("a;b", "`;` is not allowed"),
        ("a$b", "`$` is not allowed"),
        ("a b", "` ` is not allowed"),
        ("a..b", "`..` is not allowed"),
        ("-a", "it starts with `-`"),
        (".a", "it starts with `.`"),
        (
            "a@",
            "a name ending in `@` is a template, which cannot run by itself",
        ),
        ("a@b@c", "a unit name has at most one `@`"),
    ] {
        let yaml = format!("units:\n  \"{name}\":\n    exec_start: /bin/true\n");
        assert_eq!(
            error(&yaml),
            format!(
                "app.yaml:2:3: units.{name}: invalid unit name `{name}`: {why}; use letters, digits, \
                 `_`, `.`, `@` and `-`, starting with a letter or digit"
            ),
            "{name}"
        );
    }
    for name in ["node-exporter", "Exporter_2.x", "getty@tty1", "a.b-c"] {
        let yaml = format!("units:\n  {name}:\n    exec_start: /bin/true\n");
        assert_eq!(
            unit_of(&service(&yaml)).unit_name,
            format!("convoy-{name}.service")
        );
    }
    let long = "a".repeat(250);
    assert!(
        error(&format!("units:\n  {long}:\n    exec_start: /bin/true\n"))
            .contains("longer than systemd's limit of 255 characters")
    );
}

#[test]
fn adopted_unit_names_must_be_services_and_not_convoys_own() {
    let adopt = |unit: &str| error(&format!("units:\n  web:\n    unit: \"{unit}\"\n"));
    assert_eq!(
        adopt("nginx"),
        "app.yaml:3:11: units.web.unit: invalid unit `nginx`: Convoy adopts services only: give \
         the full name, e.g. `nginx.service`"
    );
    assert_eq!(
        adopt("nginx.socket"),
        "app.yaml:3:11: units.web.unit: invalid unit `nginx.socket`: Convoy adopts services only: \
         give the full name, e.g. `nginx.service`"
    );
    assert_eq!(
        adopt("../x.service"),
        "app.yaml:3:11: units.web.unit: invalid unit `../x.service`: it starts with `.`"
    );
    assert_eq!(
        adopt("a;reboot.service"),
        "app.yaml:3:11: units.web.unit: invalid unit `a;reboot.service`: `;` is not allowed"
    );
    assert!(adopt("convoy-agent.service")
        .contains("units named `convoy-*` are Convoy's own (the agent, and the units it writes)"));
    assert_eq!(
        error("units:\n  a:\n    unit: nginx.service\n  b:\n    unit: nginx.service\n"),
        "app.yaml:5:5: units.b.unit: `nginx.service` is adopted by `a` already: adopt a unit once"
    );
}

#[test]
fn relative_exec_start_is_refused() {
    assert_eq!(
        error(&exporter("exec_start: sleep infinity")),
        "app.yaml:3:17: units.exporter.exec_start: the program `sleep` is not an absolute path: \
         write it in full, e.g. `/usr/bin/sleep`"
    );
    assert_eq!(
        error(&exporter("exec_start: [bin/sleep, infinity]")),
        "app.yaml:3:17: units.exporter.exec_start: the program `bin/sleep` is not an absolute \
         path: write it from the root, starting with `/`"
    );
    assert!(error(&exporter("exec_start: -/bin/false"))
        .contains("starts with one of systemd's prefixes"));
    assert!(error(&exporter("exec_start: \"\""))
        .contains("units.exporter.exec_start: is empty: give the program to run"));
    assert!(error(&exporter("exec_start: [\"/bin/echo\", \"a\\nb\"]"))
        .contains("the argument `a\\nb` has a newline: a unit file takes one line"));
}

#[test]
fn unit_without_exec_start_or_unit_is_refused() {
    assert!(error(&exporter("user: nobody")).contains(
        "units.exporter: missing field `exec_start`: give the program to run (an absolute path), \
         or `unit: NAME.service` to adopt an existing unit"
    ));
}

#[test]
fn environment_values_with_newlines_or_nul_are_refused() {
    assert_eq!(
        error(&exporter(
            "exec_start: /bin/true\nenvironment:\n  FOO: \"a\\nb\""
        )),
        "app.yaml:5:12: units.exporter.environment.FOO: the value `a\\nb` has a newline: a unit \
         file takes one line"
    );
    assert!(error(&exporter(
        "exec_start: /bin/true\nenvironment: [\"FOO=a\\u0000b\"]"
    ))
    .contains("the value `a\\0b` has a NUL character"));
    assert!(
        error(&exporter("exec_start: /bin/true\nenvironment:\n  1FOO: x"))
            .contains("invalid variable name `1FOO`")
    );
    assert!(
        error(&exporter("exec_start: /bin/true\nenvironment:\n  A-B: x"))
            .contains("invalid variable name `A-B`")
    );
}

#[test]
fn unit_user_and_working_dir_are_checked() {
    assert_eq!(
        error(&exporter("exec_start: /bin/true\nuser: \"root;rm\"")),
        "app.yaml:4:11: units.exporter.user: invalid user `root;rm`: give a user name (letters, \
         digits, `_`, `.` and `-`, starting with a letter or `_`, at most 32 characters) or a \
         numeric id"
    );
    assert!(
        error(&exporter("exec_start: /bin/true\nuser: \"4294967295\""))
            .contains("out of range for a user id")
    );
    assert_eq!(
        error(&exporter("exec_start: /bin/true\nworking_dir: srv")),
        "app.yaml:4:18: units.exporter.working_dir: `srv` is not an absolute path"
    );
    assert!(
        error(&exporter("exec_start: /bin/true\ndescription: \"a\\nb\""))
            .contains("the description `a\\nb` has a newline")
    );
}

#[test]
fn adopted_unit_with_keys_of_a_written_one_is_refused() {
    assert_eq!(
        error("units:\n  web:\n    unit: nginx.service\n    exec_start: /usr/sbin/nginx\n"),
        "app.yaml:4:5: units.web.exec_start: `unit: nginx.service` adopts an existing unit, whose \
         file Convoy never writes: remove `exec_start`, or remove `unit:` to have Convoy write \
         `convoy-web.service`"
    );
    for key in [
        "user: www",
        "restart: always",
        "environment: {A: b}",
        "working_dir: /srv",
    ] {
        let yaml = format!("units:\n  web:\n    unit: nginx.service\n    {key}\n");
        let field = key.split(':').next().unwrap();
        assert!(
            error(&yaml).starts_with(&format!("app.yaml:4:5: units.web.{field}: `unit: nginx")),
            "{key}"
        );
    }
    assert_eq!(
        error(&exporter("exec_start: /bin/true\nstate: stopped")),
        "app.yaml:4:5: units.exporter.state: is for units adopted with `unit: NAME.service`; a \
         unit Convoy writes always runs and is enabled"
    );
}

#[test]
fn unknown_unit_keys_and_compose_restart_policy_are_refused() {
    assert!(error(&exporter("exec_start: /bin/true\nimage: nginx"))
        .starts_with("app.yaml:4:5: units.exporter.image: unknown field `image`, expected one of"));
    assert_eq!(
        error(&exporter(
            "exec_start: /bin/true\ndeploy:\n  restart_policy: {condition: any}"
        )),
        "app.yaml:5:7: units.exporter.deploy.restart_policy: systemd restarts units: use the \
         unit's `restart:` (systemd's `Restart=`) instead"
    );
    // Extension keys are skipped, as elsewhere.
    ok(&exporter("exec_start: /bin/true\nx-note: hi"));
}

#[test]
fn unit_spec_hash_leaves_container_hashes_alone_and_follows_the_unit() {
    // The hashes of containers are pinned by spec_hash_is_stable_across_runs_and_releases.
    let base = service(FULL_UNIT);
    assert_ne!(base.spec_hash(), ServiceSpec::default().spec_hash());
    for (from, to) in [
        ("9100 'a b'", "9101"),
        ("user: nobody", "user: root"),
        ("on-abnormal", "always"),
        ("FOO: bar", "FOO: baz"),
        ("/var/lib/exporter", "/srv"),
        ("node exporter", "exporter"),
    ] {
        assert_ne!(
            service(&FULL_UNIT.replace(from, to)).spec_hash(),
            base.spec_hash(),
            "{from} -> {to}"
        );
    }
    let placed = service(&FULL_UNIT.replace("mode: global", "replicas: 3"));
    assert_eq!(placed.spec_hash(), base.spec_hash());
    let adopted = |state: &str| {
        service(&format!(
            "units:\n  web:\n    unit: nginx.service\n    state: {state}\n"
        ))
    };
    assert_ne!(
        adopted("running").spec_hash(),
        adopted("stopped").spec_hash()
    );
}

#[test]
fn changed_fields_names_the_unit_keys_that_differ() {
    let old = service(FULL_UNIT);
    let new = service(
        &FULL_UNIT
            .replace("9100 'a b'", "9101")
            .replace("FOO: bar", "FOO: baz")
            .replace("mode: global", "replicas: 2"),
    );
    assert_eq!(
        changed_fields(&old, &new),
        [
            "exec_start",
            "environment",
            "deploy.mode",
            "deploy.replicas"
        ]
    );
    let adopted = |state: &str| {
        service(&format!(
            "units:\n  web:\n    unit: nginx.service\n    state: {state}\n"
        ))
    };
    assert_eq!(
        changed_fields(&adopted("running"), &adopted("stopped")),
        ["state"]
    );
    // A service that became a unit.
    let fields = changed_fields(&service(&web("")), &old);
    assert_eq!(fields[..2], ["unit", "image"]);
}

#[test]
fn stored_records_without_a_unit_still_load() {
    let stored = r#"{"image":"nginx","deploy":{"mode":"replicated","replicas":1}}"#;
    let spec: ServiceSpec = serde_json::from_str(stored).unwrap();
    assert!(spec.unit.is_none());
    let spec = service(FULL_UNIT);
    let round: ServiceSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
    assert_eq!(round, spec);
}

#[test]
fn profiles_are_read_and_checked() {
    let file = ok(&web("profiles: [debug, tools.v2]"));
    assert_eq!(file.services["web"].profiles, ["debug", "tools.v2"]);
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    assert!(file.services["web"].in_profiles(&["tools.v2".into()]));
    assert!(file.services["web"].in_profiles(&["*".into()]));
    assert!(!file.services["web"].in_profiles(&[]));
    assert!(error(&web("profiles: [\"-bad\"]"))
        .starts_with("app.yaml:4:16: services.web.profiles[0]: invalid profile `-bad`"));
    // The profiles are not part of how the service runs.
    let plain = ok(&web(""));
    assert_eq!(
        plain.services["web"].spec_hash(),
        file.services["web"].spec_hash()
    );
}

#[test]
fn build_is_refused_saying_how_to_deploy_an_image() {
    let err = error(&web("build: ."));
    assert!(
        err.starts_with("app.yaml:4:5: services.web.build: Convoy deploys images built elsewhere"),
        "{err}"
    );
    assert!(err.contains("name it in `image:`"), "{err}");
}

#[test]
fn env_files_merge_into_environment_which_wins() {
    let yaml = web("env_file:\n  - a.env\n  - path: b.env\n  - path: gone.env\n    required: false\nenvironment:\n  KEEP: spec");
    let files: EnvFiles = BTreeMap::from([
        (
            "a.env".to_string(),
            BTreeMap::from([
                ("A".into(), "1".into()),
                ("B".into(), "from-a".into()),
                ("KEEP".into(), "file".into()),
            ]),
        ),
        (
            "b.env".to_string(),
            BTreeMap::from([("B".into(), "from-b".into())]),
        ),
    ]);
    let file = parse_with_files("app.yaml", yaml.as_bytes(), &Limits::default(), &files).unwrap();
    let env = &file.services["web"].environment;
    assert_eq!(env["A"], "1");
    assert_eq!(env["B"], "from-b", "a later file wins");
    assert_eq!(env["KEEP"], "spec", "`environment` wins over env files");
    assert!(file.services["web"].env_files.is_empty(), "never stored");
    // A required file the CLI did not send.
    let err = parse_with_files(
        "app.yaml",
        web("env_file: c.env").as_bytes(),
        &Limits::default(),
        &files,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("app.yaml:4: services.web.env_file: the env file `c.env` was not sent"),
        "{err}"
    );
    // A bad name in a file is named with the file.
    let bad: EnvFiles = BTreeMap::from([(
        "c.env".to_string(),
        BTreeMap::from([("A=B".into(), "v".into())]),
    )]);
    let err = parse_with_files(
        "app.yaml",
        web("env_file: c.env").as_bytes(),
        &Limits::default(),
        &bad,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("the env file `c.env`: "), "{err}");
}

#[test]
fn analysis_queries_are_read_and_bad_ones_named_with_their_place() {
    let spec = service(&web(
        "x-convoy:\n  update:\n    analysis:\n      interval: 5s\n      failure_limit: 2\n      queries:\n        - name: errors\n          query: sum(rate(x[1m]))\n          max: 0.05\n",
    ));
    let a = spec.deploy.update.analysis.expect("an analysis");
    assert_eq!((a.interval_ms, a.failure_limit), (5000, 2));
    assert_eq!(a.queries[0].name, "errors");
    assert_eq!(a.queries[0].max, Some(0.05));
    assert_eq!(
        a.queries[0].violation(0.2).as_deref(),
        Some("0.2 > max 0.05")
    );
    let e = error(&web(
        "x-convoy:\n  update:\n    analysis:\n      queries:\n        - name: errors\n          query: up\n",
    ));
    assert!(e.starts_with("app.yaml:"), "{e}");
    assert!(e.contains("x-convoy.update.analysis.queries"), "{e}");
    assert!(e.contains("needs `max:` or `min:`"), "{e}");
    let e = error(&web(
        "x-convoy:\n  update:\n    analysis:\n      queries:\n        - name: errors\n          query: up\n          max: lots\n",
    ));
    assert!(e.contains("`lots` is not a number"), "{e}");
    // Rollbacks are not analysed.
    let policy = crate::spec::UpdatePolicy {
        analysis: Some(crate::spec::Analysis {
            prometheus: String::new(),
            interval_ms: 1000,
            failure_limit: 0,
            queries: Vec::new(),
        }),
        ..Default::default()
    };
    assert!(policy.for_rollback(None).analysis.is_none());
}

#[test]
fn proxy_gates_are_read_and_bad_ones_refused_saying_why() {
    let spec = service(&web(
        "x-convoy:\n  update:\n    analysis:\n      interval: 2s\n      queries:\n        - name: errors\n          proxy: error-rate\n          max: 0.05\n        - name: slow\n          proxy: latency-p99\n          max_worse_than_stable: 10%\n",
    ));
    let a = spec.deploy.update.analysis.expect("an analysis");
    assert_eq!(
        a.queries[0].proxy,
        Some(crate::spec::ProxyMeasure::ErrorRate)
    );
    assert_eq!(a.queries[0].query, "");
    assert_eq!(
        a.queries[1].proxy,
        Some(crate::spec::ProxyMeasure::LatencyP99)
    );
    assert_eq!(a.queries[1].max_worse_than_stable_percent, Some(10.0));
    let q = |body: &str| {
        error(&web(&format!(
            "x-convoy:\n  update:\n    analysis:\n      queries:\n        - name: g\n{body}"
        )))
    };
    let e = q("          proxy: error-rates\n          max: 1\n");
    assert!(e.contains("`error-rates` is not a proxy figure"), "{e}");
    let e = q("          proxy: error-rate\n          query: up\n          max: 1\n");
    assert!(e.contains("both `query:` and `proxy:`"), "{e}");
    let e = q("          proxy: error-rate\n");
    assert!(e.contains("or `max_worse_than_stable:`"), "{e}");
    let e = q("          query: up\n          max_worse_than_stable: 10%\n");
    assert!(e.contains("needs a `proxy:` figure"), "{e}");
    let e = q("          proxy: request-rate\n          max_worse_than_stable: 10%\n");
    assert!(e.contains("not request-rate"), "{e}");
    let e = q("          proxy: latency-p95\n          max_worse_than_stable: lots\n");
    assert!(e.contains("`lots` is not a percentage"), "{e}");
    assert!(e.contains("x-convoy.update.analysis.queries"), "{e}");
}

#[test]
fn reschedule_after_is_read_validated_and_left_out_of_the_spec_hash() {
    let svc = |convoy: &str| {
        let text = format!("services:\n  web:\n    image: x:1\n{convoy}");
        crate::spec::parse("app.yaml", &text).map(|f| f.services["web"].clone())
    };
    let plain = svc("").unwrap();
    assert_eq!(plain.reschedule_after_ms, None);
    assert_eq!(plain.reschedule_after_ms(), Some(120_000));
    let quick = svc("    x-convoy:\n      reschedule_after: 30s\n").unwrap();
    assert_eq!(quick.reschedule_after_ms(), Some(30_000));
    // Where instances go when a node is lost is not how they run.
    assert_eq!(quick.spec_hash(), plain.spec_hash());
    assert_eq!(
        crate::spec::changed_fields(&plain, &quick),
        ["x-convoy.reschedule_after"]
    );
    for never in ["never", "0"] {
        let s = svc(&format!("    x-convoy:\n      reschedule_after: {never}\n")).unwrap();
        assert_eq!(s.reschedule_after_ms, Some(0));
        assert_eq!(s.reschedule_after_ms(), None);
    }
    let err = svc("    x-convoy:\n      reschedule_after: soon\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "app.yaml:5:25: services.web.x-convoy.reschedule_after: invalid duration `soon`"
        ),
        "{err}"
    );
    assert!(err.contains("or `never`"), "{err}");
    // Global services have one instance per node: they never move.
    let global =
        svc("    deploy:\n      mode: global\n    x-convoy:\n      reschedule_after: 10s\n")
            .unwrap();
    assert_eq!(global.reschedule_after_ms(), None);
    // A unit is bound to its host.
    let err = crate::spec::parse(
        "app.yaml",
        "units:\n  job:\n    exec_start: /bin/true\n    x-convoy:\n      reschedule_after: 10s\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("x-convoy.reschedule_after"), "{err}");
    assert!(err.contains("never moves to another node"), "{err}");
}

#[test]
fn ingress_routes_are_read_with_their_defaults_and_left_out_of_the_spec_hash() {
    let svc = |convoy: &str| {
        let text = format!("services:\n  web:\n    image: x:1\n{convoy}");
        crate::spec::parse("app.yaml", &text).map(|f| f.services["web"].clone())
    };
    let plain = svc("").unwrap();
    assert_eq!(plain.ingress, None);
    let routed = svc(
        "    x-convoy:\n      ingress:\n        routes:\n          - port: 8080\n          - {host: API.Example.com, path_prefix: /api, port: 9090}\n          - {host: '*.example.com', port: 8080}\n",
    )
    .unwrap();
    let ingress = routed.ingress.clone().expect("an ingress");
    assert_eq!(ingress.drain_timeout_ms, 30_000);
    let routes: Vec<(&str, &str, u16)> = ingress
        .routes
        .iter()
        .map(|r| (r.host.as_str(), r.path_prefix.as_str(), r.port))
        .collect();
    assert_eq!(
        routes,
        [
            ("", "/", 8080),
            ("api.example.com", "/api", 9090),
            ("*.example.com", "/", 8080)
        ]
    );
    // Routes are not how a container runs: no restart for a route change,
    // but the change is named and reaches the plan.
    assert_eq!(routed.spec_hash(), plain.spec_hash());
    assert_eq!(
        crate::spec::changed_fields(&plain, &routed),
        ["x-convoy.ingress"]
    );
    let wire = routed.ingress().expect("on the wire");
    assert_eq!(wire.routes.len(), 3);
    assert_eq!((wire.routes[1].port, wire.drain_timeout_ms), (9090, 30_000));
    let quick = svc(
        "    x-convoy:\n      ingress:\n        drain_timeout: 2s\n        routes: [{port: 80}]\n",
    )
    .unwrap();
    assert_eq!(quick.ingress.unwrap().drain_timeout_ms, 2000);
}

#[test]
fn bad_ingress_routes_are_refused_naming_file_line_and_key() {
    let err = |convoy: &str| {
        let text =
            format!("services:\n  web:\n    image: x:1\n    x-convoy:\n      ingress:\n{convoy}");
        crate::spec::parse("app.yaml", &text)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = err("        routes: [{path_prefix: /api}]\n");
    assert!(e.starts_with("app.yaml:6:"), "{e}");
    assert!(e.contains("services.web.x-convoy.ingress.routes"), "{e}");
    assert!(e.contains("a route needs `port:`"), "{e}");
    let e = err("        routes: [{port: 80, path_prefix: api}]\n");
    assert!(e.contains("`api` is not a path prefix"), "{e}");
    let e = err("        routes: [{port: 80, host: 'http://x.com'}]\n");
    assert!(e.contains("is not a host name"), "{e}");
    let e = err("        routes: [{port: 70000}]\n");
    assert!(e.contains("port 70000 is out of range"), "{e}");
    let e = err("        routes: [{port: 80}, {port: 81, path_prefix: /}]\n");
    assert!(
        e.contains("another route already takes host `*` and path prefix `/`"),
        "{e}"
    );
    let e = err("        drain_timeout: 1h\n        routes: [{port: 80}]\n");
    assert!(e.contains("longer than 10m"), "{e}");
    let e = err("        drain_timeout: 1s\n");
    assert!(e.contains("an ingress needs `routes:`"), "{e}");
    let e = err("        routes: [{port: 80, weight: 5}]\n");
    assert!(e.contains("weight"), "{e}");
    // Units are not containers.
    let e = crate::spec::parse(
        "app.yaml",
        "units:\n  job:\n    exec_start: /bin/true\n    x-convoy:\n      ingress:\n        routes: [{port: 80}]\n",
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(e.contains("x-convoy.ingress"), "{e}");
    assert!(e.contains("not to systemd units"), "{e}");
}

#[test]
fn canary_weights_are_growing_percentages_of_a_canary_without_auto_promote() {
    let ok = service(&web(
        "x-convoy:\n  update:\n    strategy: canary\n    canary_weights: [10, 50]",
    ));
    assert_eq!(ok.deploy.update.canary_weights, [10, 50]);
    let e = error(&web(
        "x-convoy:\n  update:\n    strategy: canary\n    canary_weights: [50, 10]",
    ));
    assert!(
        e.contains("canary_weights") && e.contains("must grow"),
        "{e}"
    );
    let e = error(&web(
        "x-convoy:\n  update:\n    strategy: canary\n    canary_weights: [100]",
    ));
    assert!(
        e.contains("100 is not a share of requests from 1 to 99"),
        "{e}"
    );
    let e = error(&web("x-convoy:\n  update:\n    canary_weights: [10]"));
    assert!(e.contains("is for `strategy: canary`"), "{e}");
    let e = error(&web(
        "x-convoy:\n  update:\n    strategy: canary\n    auto_promote: true\n    canary_weights: [10]",
    ));
    assert!(e.contains("remove `auto_promote`"), "{e}");
}

#[test]
fn a_canary_pause_needs_weights_and_a_length() {
    let ok = service(&web(
        "x-convoy:\n  update:\n    strategy: canary\n    canary_weights: [10, 50]\n    canary_pause: 2m",
    ));
    assert_eq!(ok.deploy.update.canary_pause_ms, 120_000);
    let e = error(&web(
        "x-convoy:\n  update:\n    strategy: canary\n    canary_pause: 2m",
    ));
    assert!(
        e.contains("x-convoy.update.canary_pause") && e.contains("give `canary_weights` too"),
        "{e}"
    );
    let e = error(&web(
        "x-convoy:\n  update:\n    strategy: canary\n    canary_weights: [10]\n    canary_pause: 0s",
    ));
    assert!(e.contains("canary_pause") && e.contains("too short"), "{e}");
    // A rollback never steps through weights.
    assert_eq!(ok.deploy.update.for_rollback(None).canary_pause_ms, 0);
}

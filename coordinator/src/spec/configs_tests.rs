//! `configs:`: reading the top-level and service keys, the errors that
//! name file, line and key, the CLI's inputs, and what a change does to
//! the spec hash and the diff.

use super::*;

fn inputs(files: &[(&str, &[u8])], env: &[(&str, &str)]) -> ConfigInputs {
    ConfigInputs {
        files: files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn read(yaml: &str, given: &ConfigInputs) -> Result<SpecFile, String> {
    parse_with_inputs(
        "app.yaml",
        yaml.as_bytes(),
        &Limits::default(),
        &EnvFiles::new(),
        given,
        &crate::spec::SecretInputs::default(),
    )
    .map_err(|e| e.to_string())
}

const STACK: &str = "\
services:
  web:
    image: nginx
    configs:
      - app
      - source: motd
        target: etc/motd
        uid: \"1000\"
        gid: 1000
        mode: 0440
  db:
    image: postgres
configs:
  app:
    file: ./app.conf
  motd:
    content: hello
  greeting:
    environment: GREETING
";

#[test]
fn short_and_long_syntax_resolve_with_their_content() {
    let file = read(STACK, &inputs(&[("./app.conf", b"port=80\n")], &[])).unwrap();
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    let configs = &file.services["web"].configs;
    assert_eq!(configs.len(), 2);
    assert_eq!(configs[0].source, "app");
    assert_eq!(configs[0].target, "/app");
    assert_eq!(configs[0].mode, 0o444);
    assert_eq!(configs[0].uid, None);
    assert_eq!(configs[0].content.0, b"port=80\n");
    assert_eq!(configs[1].target, "/etc/motd");
    assert_eq!((configs[1].uid, configs[1].gid), (Some(1000), Some(1000)));
    assert_eq!(configs[1].mode, 0o440);
    assert_eq!(configs[1].content.0, b"hello");
    assert!(configs.iter().all(|c| c.pending.is_none()));
    assert!(file.services["db"].configs.is_empty());
}

#[test]
fn an_environment_config_takes_the_variable_sent() {
    let yaml = "services:\n  web:\n    image: nginx\n    configs: [greeting]\nconfigs:\n  greeting:\n    environment: GREETING\n";
    let file = read(yaml, &inputs(&[], &[("GREETING", "hi there")])).unwrap();
    assert_eq!(file.services["web"].configs[0].content.0, b"hi there");
    let err = read(yaml, &ConfigInputs::default()).unwrap_err();
    assert!(err.starts_with("app.yaml:6: configs.greeting: "), "{err}");
    assert!(
        err.contains("the variable `GREETING` was not sent"),
        "{err}"
    );
}

#[test]
fn a_file_not_sent_is_an_error_naming_the_service_entry() {
    let err = read(STACK, &ConfigInputs::default()).unwrap_err();
    assert!(err.starts_with("app.yaml:5"), "{err}");
    assert!(err.contains("services.web.configs[0]"), "{err}");
    assert!(err.contains("the file `./app.conf` was not sent"), "{err}");
}

#[test]
fn an_unknown_config_is_an_error_naming_file_line_and_entry() {
    let yaml =
        "services:\n  web:\n    image: nginx\n    configs:\n      - nope\nconfigs:\n  app:\n    content: x\n";
    let err = read(yaml, &ConfigInputs::default()).unwrap_err();
    assert!(err.starts_with("app.yaml:5"), "{err}");
    assert!(err.contains("services.web.configs[0]"), "{err}");
    assert!(err.contains("config `nope` is not declared"), "{err}");
    // No top-level `configs:` at all.
    let err = read(
        "services:\n  web:\n    image: nginx\n    configs: [app]\n",
        &ConfigInputs::default(),
    )
    .unwrap_err();
    assert!(err.contains("config `app` is not declared"), "{err}");
}

#[test]
fn bad_top_level_configs_are_refused_naming_the_key() {
    let base = "services:\n  web:\n    image: nginx\nconfigs:\n  app:\n";
    let cases = [
        (
            "    file: a\n    content: b\n",
            "app.yaml:",
            "has `file` and `content`",
        ),
        ("    name: x\n", "app.yaml:", "needs one of `file:`"),
        (
            "    external: true\n",
            "app.yaml:6",
            "Convoy has no Swarm configs yet",
        ),
        ("    environment: \"A=B\"\n", "app.yaml:6", "environment"),
        ("    fiel: a\n", "app.yaml:6", "unknown field `fiel`"),
    ];
    for (rest, at, says) in cases {
        let err = read(&format!("{base}{rest}"), &ConfigInputs::default()).unwrap_err();
        assert!(err.starts_with(at), "{rest}: {err}");
        assert!(err.contains(says), "{rest}: {err}");
        assert!(err.contains("configs.app"), "{rest}: {err}");
    }
    // `template_driver` is warned about.
    let file = read(
        &format!("{base}    content: x\n    template_driver: golang\n"),
        &ConfigInputs::default(),
    )
    .unwrap();
    assert_eq!(file.warnings.len(), 1, "{:?}", file.warnings);
    assert!(file.warnings[0].contains("configs.app.template_driver"));
}

#[test]
fn bad_service_configs_are_refused_naming_the_entry() {
    let top = "configs:\n  app:\n    content: x\n";
    let cases = [
        ("- source: app\n        target: /a/../b", "invalid target"),
        ("- source: app\n        mode: 0999", "not a file mode"),
        ("- source: app\n        uid: root", "not a numeric id"),
        ("- target: /x", "missing field `source`"),
        (
            "- app\n      - source: app\n        target: /app",
            "duplicate config target `/app`",
        ),
    ];
    for (entry, says) in cases {
        let yaml =
            format!("services:\n  web:\n    image: nginx\n    configs:\n      {entry}\n{top}");
        let err = read(&yaml, &ConfigInputs::default()).unwrap_err();
        assert!(err.starts_with("app.yaml:"), "{entry}: {err}");
        assert!(err.contains("services.web.configs"), "{entry}: {err}");
        assert!(err.contains(says), "{entry}: {err}");
    }
}

#[test]
fn inputs_over_the_limits_are_refused() {
    let big = vec![b'a'; MAX_CONFIG_BYTES + 1];
    let err = read(STACK, &inputs(&[("./app.conf", &big)], &[])).unwrap_err();
    assert!(err.contains("over the limit of 524288 bytes"), "{err}");
    assert!(err.contains("./app.conf"), "{err}");
    let limits = Limits {
        max_bytes: STACK.len() + 10,
        ..Limits::default()
    };
    let err = parse_with_inputs(
        "app.yaml",
        STACK.as_bytes(),
        &limits,
        &EnvFiles::new(),
        &inputs(&[("./app.conf", &[b'a'; 100])], &[]),
        &crate::spec::SecretInputs::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("the spec and its configs hold"), "{err}");
}

#[test]
fn a_changed_config_changes_the_hash_of_the_services_that_use_it_only() {
    let one = read(STACK, &inputs(&[("./app.conf", b"port=80\n")], &[])).unwrap();
    let two = read(STACK, &inputs(&[("./app.conf", b"port=81\n")], &[])).unwrap();
    assert_ne!(
        one.services["web"].spec_hash(),
        two.services["web"].spec_hash()
    );
    assert_eq!(
        one.services["db"].spec_hash(),
        two.services["db"].spec_hash()
    );
    let fields = changed_fields(&one.services["web"], &two.services["web"]);
    assert_eq!(fields, vec!["configs".to_string()]);
    // A service without configs hashes as before configs existed.
    let plain = parse("app.yaml", "services:\n  db:\n    image: postgres\n").unwrap();
    assert_eq!(
        plain.services["db"].spec_hash(),
        one.services["db"].spec_hash()
    );
}

#[test]
fn the_stored_spec_holds_the_content_and_the_wire_its_digest() {
    let file = read(STACK, &inputs(&[("./app.conf", b"port=80\n")], &[])).unwrap();
    let web = &file.services["web"];
    let json = serde_json::to_string(web).unwrap();
    let back: ServiceSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, web);
    let wire = web.container_spec();
    assert_eq!(wire.configs.len(), 2);
    assert_eq!(wire.configs[0].content, b"port=80\n");
    assert_eq!(wire.configs[0].sha256, web.configs[0].sha256());
    assert_eq!(wire.configs[1].mode, 0o440);
    assert_eq!(wire.configs[1].uid, Some(1000));
}

#[test]
fn the_plan_diff_shows_a_config_by_size_and_digest_never_its_content() {
    let one = read(STACK, &inputs(&[("./app.conf", b"secret-ish=1\n")], &[])).unwrap();
    let two = read(STACK, &inputs(&[("./app.conf", b"secret-ish=2\n")], &[])).unwrap();
    let diff = crate::state::spec_diff(&one.services["web"], &two.services["web"], 1, 2);
    assert!(!diff.contains("secret-ish"), "{diff}");
    assert!(diff.contains("13 bytes, sha256 "), "{diff}");
}

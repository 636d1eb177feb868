//! `secrets:`: reading the top-level and service/unit keys, the errors
//! that name file, line and key (never a value), `x-convoy.secret_env`,
//! and the CLI's inputs put into the declarations.

use super::*;
use crate::secrets::Secret;

/// A value no error message may ever hold.
const CANARY: &[u8] = b"canary-7f3a9c-hunter2";

fn inputs(files: &[(&str, &[u8])], env: &[(&str, &[u8])]) -> SecretInputs {
    SecretInputs {
        files: files
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(v.to_vec())))
            .collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(v.to_vec())))
            .collect(),
    }
}

fn read_with(yaml: &str, given: &SecretInputs, limits: &Limits) -> Result<SpecFile, String> {
    parse_with_inputs(
        "app.yaml",
        yaml.as_bytes(),
        limits,
        &EnvFiles::new(),
        &ConfigInputs::default(),
        given,
    )
    .map_err(|e| e.to_string())
}

fn read(yaml: &str, given: &SecretInputs) -> Result<SpecFile, String> {
    read_with(yaml, given, &Limits::default())
}

fn error(yaml: &str) -> String {
    parse("app.yaml", yaml).unwrap_err().to_string()
}

const STACK: &str = "\
services:
  web:
    image: nginx
    secrets:
      - db
      - source: api_key
        target: keys/api
        uid: \"1000\"
        gid: 1000
        mode: 0440
      - source: tls
        target: /etc/app/tls.key
  worker:
    image: busybox
secrets:
  db:
    file: ./db.txt
  api_key:
    environment: API_KEY
    name: prod-api-key
  tls:
    external: true
  session:
    x-convoy:
      generate: true
  unused:
    file: ./unused.txt
";

#[test]
fn short_and_long_syntax_resolve_with_defaults_and_names() {
    let given = inputs(&[("./db.txt", CANARY)], &[("API_KEY", b"k")]);
    let file = read(STACK, &given).unwrap();
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    let mounts = &file.services["web"].secrets;
    assert_eq!(mounts.len(), 3);
    assert_eq!(
        mounts[0],
        SecretMount {
            source: "db".into(),
            name: "db".into(),
            target: "/run/secrets/db".into(),
            uid: None,
            gid: None,
            mode: 0o400,
            env_var: String::new(),
            version: 0,
        }
    );
    assert_eq!(mounts[1].name, "prod-api-key");
    assert_eq!(mounts[1].target, "/run/secrets/keys/api");
    assert_eq!((mounts[1].uid, mounts[1].gid), (Some(1000), Some(1000)));
    assert_eq!(mounts[1].mode, 0o440);
    assert_eq!(mounts[2].target, "/etc/app/tls.key");
    assert!(file.services["worker"].secrets.is_empty());
}

#[test]
fn every_declared_secret_is_returned_with_its_source_and_value() {
    let given = inputs(&[("./db.txt", CANARY)], &[("API_KEY", b"k")]);
    let file = read(STACK, &given).unwrap();
    let keys: Vec<&str> = file.secrets.keys().map(String::as_str).collect();
    assert_eq!(keys, ["api_key", "db", "session", "tls", "unused"]);
    let db = &file.secrets["db"];
    assert_eq!(db.source, SecretSource::File("./db.txt".into()));
    assert_eq!(db.value.as_ref().unwrap().expose(), CANARY);
    let api = &file.secrets["api_key"];
    assert_eq!(api.name, "prod-api-key");
    assert_eq!(api.source, SecretSource::Environment("API_KEY".into()));
    assert_eq!(api.value.as_ref().unwrap().expose(), b"k");
    assert_eq!(file.secrets["tls"].source, SecretSource::External);
    assert_eq!(file.secrets["tls"].value, None);
    assert_eq!(
        file.secrets["session"].source,
        SecretSource::Generate {
            length: 32,
            charset: "alnum".into()
        }
    );
    // Not used by anything: no input needed, none filled.
    assert_eq!(file.secrets["unused"].value, None);
    // Debug of the whole file never shows a value.
    let debug = format!("{file:?}");
    // (The value's marker, not the word: `canary_weights` is a field name.)
    assert!(!debug.contains("canary-7f3a9c"), "{debug}");
}

#[test]
fn generate_takes_a_length_and_a_charset_within_bounds() {
    let spec = |generate: &str| {
        format!("services:\n  web:\n    image: x\nsecrets:\n  s:\n    x-convoy:\n      generate: {generate}\n")
    };
    let file = parse("app.yaml", &spec("{length: 64, charset: hex}")).unwrap();
    assert_eq!(
        file.secrets["s"].source,
        SecretSource::Generate {
            length: 64,
            charset: "hex".into()
        }
    );
    let file = parse("app.yaml", &spec("{charset: urlsafe}")).unwrap();
    assert_eq!(
        file.secrets["s"].source,
        SecretSource::Generate {
            length: 32,
            charset: "urlsafe".into()
        }
    );
    let file = parse("app.yaml", &spec("{length: 4096}")).unwrap();
    assert!(matches!(
        file.secrets["s"].source,
        SecretSource::Generate { length: 4096, .. }
    ));
    let err = error(&spec("{length: 0}"));
    assert!(err.starts_with("app.yaml:7:"), "{err}");
    assert!(err.contains("give 1 to 4096 characters"), "{err}");
    assert!(error(&spec("{length: 4097}")).contains("give 1 to 4096"));
    let err = error(&spec("{charset: emoji}"));
    assert!(
        err.contains("unknown charset `emoji`: use alnum, hex, base64 or urlsafe"),
        "{err}"
    );
    let err = error(&spec("{size: 3}"));
    assert!(err.contains("unknown field `size`"), "{err}");
    // `generate: false` is as if absent: no source left.
    let err = error(&spec("false"));
    assert!(err.contains("a secret needs one of `file:`"), "{err}");
}

#[test]
fn a_secret_takes_exactly_one_source() {
    let err = error(
        "services:\n  web:\n    image: x\nsecrets:\n  db:\n    file: ./db\n    external: true\n",
    );
    assert!(err.starts_with("app.yaml:"), "{err}");
    assert!(err.contains("secrets.db"), "{err}");
    assert!(
        err.contains("this one has `file` and `external`: keep one"),
        "{err}"
    );
    let err = error("services:\n  web:\n    image: x\nsecrets:\n  db:\n    external: false\n");
    assert!(err.contains("secrets.db"), "{err}");
    assert!(err.contains("a secret needs one of"), "{err}");
    let err = error("services:\n  web:\n    image: x\nsecrets:\n  db:\n");
    assert!(err.contains("secret `db` is empty"), "{err}");
}

#[test]
fn unknown_and_driver_keys_are_errors_and_labels_a_warning() {
    let err = error("services:\n  web:\n    image: x\nsecrets:\n  db:\n    fil: ./db\n");
    assert!(
        err.starts_with("app.yaml:6:5: secrets.db.fil: unknown field `fil`"),
        "{err}"
    );
    let err = error(
        "services:\n  web:\n    image: x\nsecrets:\n  db:\n    external: true\n    driver: vault\n",
    );
    assert!(err.contains("secrets.db.driver"), "{err}");
    assert!(err.contains("not in a secrets driver"), "{err}");
    let file = parse(
        "app.yaml",
        "services:\n  web:\n    image: x\nsecrets:\n  db:\n    external: true\n    labels: {a: b}\n",
    )
    .unwrap();
    assert_eq!(file.warnings.len(), 1, "{:?}", file.warnings);
    assert!(file.warnings[0].contains("secrets.db.labels"));
}

#[test]
fn names_are_checked_and_one_stored_secret_is_declared_once() {
    let err = error(
        "services:\n  web:\n    image: x\nsecrets:\n  db:\n    external: true\n    name: \"a/b\"\n",
    );
    assert!(err.contains("invalid secret name `a/b`"), "{err}");
    let err = error("services:\n  web:\n    image: x\nsecrets:\n  _db:\n    external: true\n");
    assert!(err.contains("invalid secret name `_db`"), "{err}");
    let err = error(
        "services:\n  web:\n    image: x\nsecrets:\n  a:\n    external: true\n    name: db\n  db:\n    external: true\n",
    );
    assert!(
        err.contains("`a` and `db` both name the secret `db`"),
        "{err}"
    );
}

#[test]
fn an_undefined_secret_is_an_error_naming_the_entry() {
    let err =
        error("services:\n  web:\n    image: x\n    secrets:\n      - tls\n      - db\nsecrets:\n  tls:\n    external: true\n");
    assert!(
        err.starts_with(
            "app.yaml:6:7: services.web.secrets[1]: service `web` refers to undefined secret `db`"
        ),
        "{err}"
    );
    // No top-level `secrets:` at all.
    let err = error("services:\n  web:\n    image: x\n    secrets: [db]\n");
    assert!(err.contains("refers to undefined secret `db`"), "{err}");
}

#[test]
fn two_mounts_at_one_target_are_an_error() {
    let err = error(
        "services:\n  web:\n    image: x\n    secrets:\n      - db\n      - source: other\n        target: db\nsecrets:\n  db:\n    external: true\n  other:\n    external: true\n",
    );
    assert!(
        err.contains("duplicate secret target `/run/secrets/db`"),
        "{err}"
    );
    assert!(err.contains("services.web.secrets[1]"), "{err}");
}

#[test]
fn bad_targets_modes_and_ids_are_errors() {
    let spec = |entry: &str| {
        format!("services:\n  web:\n    image: x\n    secrets:\n      - source: db\n        {entry}\nsecrets:\n  db:\n    external: true\n")
    };
    assert!(error(&spec("target: ../../etc/shadow")).contains("invalid target"));
    let err = error(&spec("mode: 0999"));
    assert!(err.contains("is not a file mode"), "{err}");
    assert!(err.contains("services.web.secrets[0].mode"), "{err}");
    assert!(error(&spec("uid: root")).contains("`root` is not a numeric id"));
    assert!(error(&spec("gid: -1")).contains("is not a numeric id"));
    let err = error("services:\n  web:\n    image: x\n    secrets:\n      - target: db\n");
    assert!(err.contains("missing field `source`"), "{err}");
    let file = parse("app.yaml", &spec("mode: 0o600")).unwrap();
    assert_eq!(file.services["web"].secrets[0].mode, 0o600);
}

#[test]
fn units_get_credentials_by_name() {
    let yaml = "\
units:
  backup:
    exec_start: /usr/bin/backup
    secrets:
      - db
      - source: s3
        target: s3.key
secrets:
  db:
    external: true
  s3:
    external: true
";
    let file = parse("app.yaml", yaml).unwrap();
    let mounts = &file.services["backup"].secrets;
    assert_eq!(mounts[0].target, "db");
    assert_eq!(mounts[1].target, "s3.key");
    assert_eq!(mounts[1].name, "s3");
    assert_eq!((mounts[1].uid, mounts[1].gid), (None, None));
    let bad = yaml.replace("target: s3.key", "target: /etc/s3");
    assert!(error(&bad).contains("invalid credential name `/etc/s3`"));
    let uid = yaml.replace("target: s3.key", "uid: 0");
    let err = error(&uid);
    assert!(err.contains("units.backup.secrets[1].uid"), "{err}");
    assert!(err.contains("remove `uid`"), "{err}");
    let mode = yaml.replace("target: s3.key", "mode: 0400");
    assert!(error(&mode).contains("remove `mode`"));
    let undefined = yaml.replace("      - db\n", "      - nope\n");
    let err = error(&undefined);
    assert!(
        err.contains("units.backup.secrets[0]: unit `backup` refers to undefined secret `nope`"),
        "{err}"
    );
    let env = yaml.replace(
        "    secrets:\n",
        "    x-convoy:\n      secret_env: {DB: db}\n    secrets:\n",
    );
    let err = error(&env);
    assert!(err.contains("units.backup.x-convoy.secret_env"), "{err}");
    assert!(err.contains("systemd credentials"), "{err}");
}

#[test]
fn an_adopted_unit_cannot_take_secrets() {
    let err = error(
        "units:\n  nginx:\n    unit: nginx.service\n    secrets: [db]\nsecrets:\n  db:\n    external: true\n",
    );
    assert!(err.contains("units.nginx.secrets"), "{err}");
    assert!(
        err.contains("whose file Convoy never writes: remove `secrets`"),
        "{err}"
    );
}

#[test]
fn secret_env_joins_the_file_mount_or_adds_an_env_only_one() {
    let yaml = "\
services:
  web:
    image: x
    secrets: [db]
    environment:
      PLAIN: 1
    x-convoy:
      secret_env:
        DB_PASSWORD: db
        API_KEY: api
        DB_AGAIN: db
secrets:
  db:
    external: true
  api:
    external: true
    name: the-api
";
    let file = parse("app.yaml", yaml).unwrap();
    let mounts = &file.services["web"].secrets;
    assert_eq!(mounts.len(), 3, "{mounts:?}");
    assert_eq!(mounts[0].target, "/run/secrets/db");
    assert_eq!(mounts[0].env_var, "DB_PASSWORD");
    assert_eq!(mounts[1].source, "api");
    assert_eq!(mounts[1].name, "the-api");
    assert_eq!(mounts[1].target, "");
    assert_eq!(mounts[1].env_var, "API_KEY");
    assert_eq!(
        (mounts[2].target.as_str(), mounts[2].env_var.as_str()),
        ("", "DB_AGAIN")
    );
    assert!(!file.services["web"].environment.contains_key("DB_PASSWORD"));

    let clash = yaml.replace("PLAIN: 1", "DB_PASSWORD: plain");
    let err = error(&clash);
    assert!(
        err.contains("services.web.x-convoy.secret_env.DB_PASSWORD: `DB_PASSWORD` is also set under `environment:`"),
        "{err}"
    );
    let undefined = yaml.replace("API_KEY: api", "API_KEY: nope");
    let err = error(&undefined);
    assert!(
        err.contains("services.web.x-convoy.secret_env.API_KEY: service `web` refers to undefined secret `nope`"),
        "{err}"
    );
    let bad_var = yaml.replace("API_KEY: api", "\"A=B\": api");
    assert!(error(&bad_var).contains("invalid variable name `A=B`"));
}

#[test]
fn secret_env_clashing_with_an_env_file_is_refused() {
    let yaml = "services:\n  web:\n    image: x\n    env_file: app.env\n    x-convoy:\n      secret_env: {DB: db}\nsecrets:\n  db:\n    external: true\n";
    let mut env_files = EnvFiles::new();
    env_files.insert(
        "app.env".to_owned(),
        [("DB".to_owned(), "plain".to_owned())].into(),
    );
    let err = parse_with_inputs(
        "app.yaml",
        yaml.as_bytes(),
        &Limits::default(),
        &env_files,
        &ConfigInputs::default(),
        &SecretInputs::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("services.web.x-convoy.secret_env.DB"), "{err}");
    assert!(err.contains("also set by an env file"), "{err}");
}

#[test]
fn a_used_secret_without_its_input_is_an_error_naming_it() {
    let given = inputs(&[], &[("API_KEY", b"k")]);
    let err = read(STACK, &given).unwrap_err();
    assert!(err.starts_with("app.yaml:17: secrets.db.file: secret `db`: the file `./db.txt` was not sent with the spec: `convoy apply` reads the files of `secrets:` and sends them"), "{err}");
    let given = inputs(&[("./db.txt", CANARY)], &[]);
    let err = read(STACK, &given).unwrap_err();
    assert!(err.starts_with("app.yaml:19: secrets.api_key.environment: secret `api_key`: the variable `API_KEY` was not sent"), "{err}");
}

#[test]
fn inputs_too_large_or_empty_are_refused_without_their_value() {
    let mut big = CANARY.to_vec();
    big.resize(MAX_SECRET_BYTES + 1, b'x');
    let err = read(STACK, &inputs(&[("./db.txt", &big)], &[("API_KEY", b"k")])).unwrap_err();
    assert!(err.contains("secrets.db.file"), "{err}");
    assert!(
        err.contains("the file `./db.txt` holds 65537 bytes, over the limit of 65536 bytes"),
        "{err}"
    );
    assert!(!err.contains("canary"), "{err}");
    let exact = vec![b'a'; MAX_SECRET_BYTES];
    let limits = Limits {
        max_bytes: 1024 * 1024,
        ..Limits::default()
    };
    read_with(
        STACK,
        &inputs(&[("./db.txt", &exact)], &[("API_KEY", b"k")]),
        &limits,
    )
    .unwrap();
    let err = read(STACK, &inputs(&[("./db.txt", CANARY)], &[("API_KEY", b"")])).unwrap_err();
    assert!(err.contains("secrets.api_key.environment"), "{err}");
    assert!(err.contains("the variable `API_KEY` is empty"), "{err}");
}

#[test]
fn secret_inputs_count_against_the_spec_size_limit() {
    let limits = Limits {
        max_bytes: STACK.len() + 20,
        ..Limits::default()
    };
    let err = read_with(
        STACK,
        &inputs(&[("./db.txt", CANARY)], &[("API_KEY", &[b'k'; 100])]),
        &limits,
    )
    .unwrap_err();
    assert!(
        err.contains("the spec, its configs and its secrets hold"),
        "{err}"
    );
    assert!(!err.contains("canary"), "{err}");
}

#[test]
fn no_error_about_a_secret_holds_its_value() {
    // The value as a would-be key, target, name or variable: errors quote
    // what the spec says, and the spec never holds a value sent beside it.
    let canary = std::str::from_utf8(CANARY).unwrap();
    let given = inputs(&[("./db.txt", CANARY)], &[("API_KEY", CANARY)]);
    for bad in [
        STACK.replace("uid: \"1000\"", "uid: x"),
        STACK.replace("      - db\n", "      - nope\n"),
        STACK.replace("    environment: API_KEY\n", ""),
    ] {
        let err = read(&bad, &given).unwrap_err();
        assert!(!err.contains(canary), "{err}");
    }
    let empty_file = inputs(&[("./db.txt", b"")], &[("API_KEY", CANARY)]);
    let err = read(STACK, &empty_file).unwrap_err();
    assert!(!err.contains(canary), "{err}");
    let inputs_debug = format!("{given:?}");
    assert!(!inputs_debug.contains(canary), "{inputs_debug}");
    assert!(inputs_debug.contains("./db.txt"), "{inputs_debug}");
}

#[test]
fn the_secrets_of_a_service_change_its_hash() {
    let yaml =
        "services:\n  web:\n    image: x\n    secrets: [db]\nsecrets:\n  db:\n    external: true\n";
    let with = parse("app.yaml", yaml).unwrap();
    let without = parse("app.yaml", "services:\n  web:\n    image: x\n").unwrap();
    assert_ne!(
        with.services["web"].spec_hash(),
        without.services["web"].spec_hash()
    );
}

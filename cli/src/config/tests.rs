//! Precedence of flags, environment and config file contexts.

use std::collections::BTreeMap;

use super::*;

fn dev_context() -> Context {
    Context {
        address: "https://127.0.0.1:7400".into(),
        ca: Some("/conf/ca.pem".into()),
        token_file: Some("/conf/admin.token".into()),
    }
}

fn file_with_dev() -> ConfigFile {
    ConfigFile {
        current_context: Some("dev".into()),
        contexts: BTreeMap::from([("dev".to_owned(), dev_context())]),
        other: BTreeMap::new(),
    }
}

#[test]
fn context_fills_in_what_flags_and_env_leave_out() {
    let file = file_with_dev();
    let path = Path::new("/home/u/.config/convoy/config.yaml");
    let settings = resolve(&Flags::default(), &Env::default(), Some((path, &file))).unwrap();
    assert_eq!(
        settings,
        Settings {
            address: "https://127.0.0.1:7400".into(),
            ca: Some("/conf/ca.pem".into()),
            token: Some(Token::File("/conf/admin.token".into())),
        }
    );
}

#[test]
fn env_beats_the_context_and_flags_beat_env() {
    let file = file_with_dev();
    let path = Path::new("/c/config.yaml");
    let env = Env {
        addr: Some("env-host:1".into()),
        ca: Some("/env/ca.pem".into()),
        token_file: Some("/env/token".into()),
        token: None,
    };
    let settings = resolve(&Flags::default(), &env, Some((path, &file))).unwrap();
    assert_eq!(settings.address, "env-host:1");
    assert_eq!(settings.ca, Some("/env/ca.pem".into()));
    assert_eq!(settings.token, Some(Token::File("/env/token".into())));

    let flags = Flags {
        addr: Some("flag-host:2".into()),
        ca: Some("/flag/ca.pem".into()),
        token_file: Some("/flag/token".into()),
        context: None,
    };
    let settings = resolve(&flags, &env, Some((path, &file))).unwrap();
    assert_eq!(settings.address, "flag-host:2");
    assert_eq!(settings.ca, Some("/flag/ca.pem".into()));
    assert_eq!(settings.token, Some(Token::File("/flag/token".into())));
}

#[test]
fn convoy_token_beats_token_files_from_env_and_context_but_not_the_flag() {
    let file = file_with_dev();
    let path = Path::new("/c/config.yaml");
    let env = Env {
        token: Some("s3cret".into()),
        token_file: Some("/env/token".into()),
        ..Env::default()
    };
    let settings = resolve(&Flags::default(), &env, Some((path, &file))).unwrap();
    assert_eq!(settings.token, Some(Token::Value("s3cret".into())));

    let flags = Flags {
        token_file: Some("/flag/token".into()),
        ..Flags::default()
    };
    let settings = resolve(&flags, &env, Some((path, &file))).unwrap();
    assert_eq!(settings.token, Some(Token::File("/flag/token".into())));
}

#[test]
fn context_flag_picks_a_context_other_than_the_current_one() {
    let mut file = file_with_dev();
    file.contexts.insert(
        "prod".into(),
        Context {
            address: "https://prod:7400".into(),
            ca: None,
            token_file: None,
        },
    );
    let flags = Flags {
        context: Some("prod".into()),
        ..Flags::default()
    };
    let path = Path::new("/c/config.yaml");
    let settings = resolve(&flags, &Env::default(), Some((path, &file))).unwrap();
    assert_eq!(settings.address, "https://prod:7400");
    assert_eq!(settings.ca, None);
}

#[test]
fn unknown_context_flag_is_an_error_listing_the_known_ones() {
    let file = file_with_dev();
    let flags = Flags {
        context: Some("nope".into()),
        ..Flags::default()
    };
    let path = Path::new("/c/config.yaml");
    let err = resolve(&flags, &Env::default(), Some((path, &file))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no context `nope` in /c/config.yaml (known: dev)"
    );
}

#[test]
fn nothing_configured_says_how_to_configure() {
    let err = resolve(&Flags::default(), &Env::default(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no coordinator configured: pass --addr, set CONVOY_ADDR, or start one with `convoyd dev`"
    );
}

#[test]
fn dangling_current_context_is_named_in_the_error() {
    let file = ConfigFile {
        current_context: Some("gone".into()),
        ..ConfigFile::default()
    };
    let path = Path::new("/c/config.yaml");
    let err = resolve(&Flags::default(), &Env::default(), Some((path, &file))).unwrap_err();
    assert!(err
        .to_string()
        .contains("current_context `gone` is not defined in /c/config.yaml"));
}

#[test]
fn relative_context_paths_are_taken_from_the_config_directory() {
    let file = ConfigFile {
        current_context: Some("dev".into()),
        contexts: BTreeMap::from([(
            "dev".to_owned(),
            Context {
                address: "h:1".into(),
                ca: Some("pki/ca.pem".into()),
                token_file: Some("admin.token".into()),
            },
        )]),
        other: BTreeMap::new(),
    };
    let path = Path::new("/c/config.yaml");
    let settings = resolve(&Flags::default(), &Env::default(), Some((path, &file))).unwrap();
    assert_eq!(settings.ca, Some("/c/pki/ca.pem".into()));
    assert_eq!(settings.token, Some(Token::File("/c/admin.token".into())));
}

#[test]
fn debug_output_hides_the_token() {
    let env = Env {
        token: Some("s3cret".into()),
        ..Env::default()
    };
    assert!(!format!("{env:?}").contains("s3cret"));
    assert!(!format!("{:?}", Token::Value("s3cret".into())).contains("s3cret"));
}

#[test]
fn a_context_may_list_several_coordinators() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "current_context: ha\ncontexts:\n  ha:\n    address: https://c1:7400, c2:7400,c3\n    ca: ca.pem\n",
    )
    .unwrap();
    let file = ConfigFile::load(&path).unwrap();
    let settings = resolve(&Flags::default(), &Env::default(), Some((&path, &file))).unwrap();
    assert_eq!(
        crate::client::parse_addresses(&settings.address).unwrap(),
        vec!["https://c1:7400", "https://c2:7400", "https://c3:7400"]
    );

    // A list from the environment replaces the context's whole list.
    let env = Env {
        addr: Some("e1,e2:1".into()),
        ..Env::default()
    };
    let settings = resolve(&Flags::default(), &env, Some((&path, &file))).unwrap();
    assert_eq!(
        crate::client::parse_addresses(&settings.address).unwrap(),
        vec!["https://e1:7400", "https://e2:1"]
    );
}

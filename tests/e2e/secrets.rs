//! Secrets (issue 15, first increment): `convoy secret set|generate|
//! rotate|list|history|rm` against a real `convoyd`, RBAC by environment,
//! the audit trail, `convoyd secrets rewrap` with the coordinator stopped,
//! and a canary value searched for in every CLI output (table and JSON),
//! the coordinator's log, `/metrics`, the dashboard's `/api/` answers and
//! every file of the data directory: never found. (That the value opens
//! again after a restart is what the start itself checks: the load opens
//! every stored version and stops otherwise; the state layer's unit tests
//! compare the opened bytes.)

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Output;
use std::time::Duration;

use convoy_tests::bins::bin;
use convoy_tests::canary::{contains, files_under, text, Seen};
use convoy_tests::process::output_within;
use convoy_tests::Cluster;
use serde_json::Value;

const CANARY: &str = "cAnArY-4e1f-9b2d-secret-value";
const CANARY2: &str = "cAnArY-rotated-77a0-secret";

/// `convoy ARGS` with `input` on standard input, as `token` (or admin).
fn cli_stdin(c: &Cluster, token: Option<&str>, args: &[&str], input: &[u8]) -> Output {
    let mut cmd = match token {
        Some(t) => c.cli_command_with_token(t),
        None => c.cli_command(),
    };
    convoy_tests::process::output_with_input_within(
        cmd.args(args),
        Some(input),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("convoy {args:?}: {e:#}"))
}

fn ok(out: &Output, what: &str) -> Value {
    assert!(out.status.success(), "{what}: {}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn refused(out: &Output, what: &str, needle: &str) {
    let said = text(out);
    assert!(!out.status.success(), "{what} was allowed: {said}");
    assert!(said.contains(needle), "{what}: `{needle}` not in {said}");
}

/// `GET path` on the HTTP port with `Authorization: Bearer token`.
fn http_get(addr: SocketAddr, path: &str, token: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let code = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, raw)
}

fn convoyd(args: &[&str]) -> Output {
    output_within(
        std::process::Command::new(bin("convoyd")).args(args),
        Duration::from_secs(60),
    )
    .unwrap()
}

#[test]
fn secrets_are_set_rotated_listed_and_removed_and_the_value_is_never_seen_again() {
    let mut c = Cluster::start_with_env(&[("RUST_LOG", "debug")]);
    let mut seen = Seen::default();
    let admin = c.admin_token();

    // set (stdin, with the line end `echo` adds), generate, a file.
    let out = cli_stdin(
        &c,
        None,
        &["--env", "prod", "secret", "set", "db-password"],
        format!("{CANARY}\n").as_bytes(),
    );
    seen.add("set", &out);
    assert!(out.status.success(), "set: {}", text(&out));
    assert!(
        text(&out).contains("stored secret db-password in environment prod: version 1"),
        "{}",
        text(&out)
    );
    let out = c.cli(&[
        "-o",
        "json",
        "--env",
        "prod",
        "secret",
        "generate",
        "api-token",
        "--length",
        "48",
        "--charset",
        "hex",
    ]);
    seen.add("generate", &out);
    let generated = ok(&out, "generate");
    assert_eq!(generated["version"], 1, "{generated}");
    assert_eq!(generated["origin"], "generated (48 hex)", "{generated}");
    let file = c.root().join("canary.txt");
    std::fs::write(&file, CANARY).unwrap();
    let out = c.cli(&[
        "--env",
        "staging",
        "secret",
        "set",
        "db-password",
        "--from-file",
        file.to_str().unwrap(),
    ]);
    seen.add("set --from-file", &out);
    ok(&out, "set --from-file");
    std::fs::remove_file(&file).unwrap();

    // Refusals: set of an existing secret, an empty value, rotate of none.
    let out = cli_stdin(
        &c,
        None,
        &["--env", "prod", "secret", "set", "db-password"],
        CANARY.as_bytes(),
    );
    seen.add("set again", &out);
    refused(&out, "set again", "convoy secret rotate db-password");
    let out = cli_stdin(&c, None, &["secret", "set", "empty"], b"\n");
    seen.add("set empty", &out);
    refused(&out, "an empty value", "empty");
    let out = cli_stdin(&c, None, &["secret", "rotate", "nope"], b"x");
    seen.add("rotate nope", &out);
    refused(&out, "rotate of no secret", "secret `nope` not found");

    // rotate: from stdin, then generated.
    let out = cli_stdin(
        &c,
        None,
        &["--env", "prod", "secret", "rotate", "db-password"],
        CANARY2.as_bytes(),
    );
    seen.add("rotate", &out);
    assert!(
        text(&out).contains("rotated secret db-password in environment prod: version 2"),
        "{}",
        text(&out)
    );
    let out = c.cli(&[
        "--env",
        "prod",
        "secret",
        "rotate",
        "db-password",
        "--generate",
        "--length",
        "20",
    ]);
    seen.add("rotate --generate", &out);
    ok(&out, "rotate --generate");

    // list and history, table and JSON.
    let out = c.cli(&["secret", "list"]);
    seen.add("list", &out);
    ok(&out, "list");
    let table = text(&out);
    for needle in [
        "ENV",
        "NAME",
        "VERSION",
        "db-password",
        "api-token",
        "staging",
    ] {
        assert!(table.contains(needle), "{needle} not in {table}");
    }
    let out = c.cli(&["-o", "json", "secret", "list"]);
    seen.add("list json", &out);
    let list = ok(&out, "list json");
    let rows: Vec<(String, String, u64)> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["env"].as_str().unwrap().to_string(),
                s["name"].as_str().unwrap().to_string(),
                s["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("prod".into(), "api-token".into(), 1),
            ("prod".into(), "db-password".into(), 3),
            ("staging".into(), "db-password".into(), 1),
        ]
    );
    let out = c.cli(&[
        "-o",
        "json",
        "--env",
        "prod",
        "secret",
        "history",
        "db-password",
    ]);
    seen.add("history json", &out);
    let history = ok(&out, "history json");
    let versions: Vec<(u64, bool, String)> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["current"].as_bool().unwrap(),
                v["origin"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            (1, false, "set".into()),
            (2, false, "set".into()),
            (3, true, "generated (20 alnum)".into()),
        ]
    );
    let out = c.cli(&["--env", "prod", "secret", "history", "db-password"]);
    seen.add("history", &out);
    assert!(text(&out).contains("3 *"), "{}", text(&out));

    // RBAC: a deployer of staging neither lists nor sets prod's secrets.
    let token: Value = c.cli_json(&[
        "token", "create", "--name", "stg", "--role", "deployer", "--envs", "staging",
    ]);
    let stg = token["token"].as_str().unwrap().to_string();
    let out = c.cli_with_token(&stg, &["--env", "prod", "secret", "list"]);
    seen.add("stg list prod", &out);
    refused(
        &out,
        "staging deployer lists prod",
        "may not see the secrets of environment `prod`",
    );
    let out = cli_stdin(
        &c,
        Some(&stg),
        &["--env", "prod", "secret", "rotate", "db-password"],
        b"evil",
    );
    seen.add("stg rotate prod", &out);
    refused(
        &out,
        "staging deployer rotates prod",
        "may not touch environment `prod`",
    );
    let out = c.cli_with_token(&stg, &["-o", "json", "secret", "list"]);
    seen.add("stg list", &out);
    let mine = ok(&out, "staging deployer lists");
    let envs: Vec<&str> = mine["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["env"].as_str().unwrap())
        .collect();
    assert_eq!(envs, vec!["staging"], "{mine}");
    let out = cli_stdin(
        &c,
        Some(&stg),
        &["--env", "staging", "secret", "rotate", "db-password"],
        CANARY2.as_bytes(),
    );
    seen.add("stg rotate staging", &out);
    ok(&out, "staging deployer rotates staging");

    // rm, then it is gone.
    let out = c.cli(&["-o", "json", "--env", "prod", "secret", "rm", "api-token"]);
    seen.add("rm", &out);
    let removed = ok(&out, "rm");
    assert_eq!(removed["name"], "api-token");
    let out = c.cli(&["--env", "prod", "secret", "rm", "api-token"]);
    seen.add("rm again", &out);
    refused(&out, "rm of a removed secret", "not found");

    // The audit names each write and its version, and the refusals.
    let out = c.cli(&["-o", "json", "audit"]);
    seen.add("audit", &out);
    let audit = ok(&out, "audit");
    let entries: Vec<(String, String, bool)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("secret."))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
                e["result"] == "ok",
            )
        })
        .collect();
    for want in [
        ("secret.set", "prod/db-password v1", true),
        ("secret.generate", "prod/api-token v1", true),
        ("secret.rotate", "prod/db-password v2", true),
        ("secret.rotate", "prod/db-password v3", true),
        ("secret.rotate", "prod/db-password", false),
        ("secret.rotate", "staging/db-password v2", true),
        ("secret.remove", "prod/api-token v1", true),
    ] {
        let want = (want.0.to_string(), want.1.to_string(), want.2);
        assert!(entries.contains(&want), "{want:?} not in {entries:#?}");
    }

    // /metrics and the dashboard's API.
    let mut http = Vec::new();
    for path in ["/metrics", "/api/services", "/api/nodes", "/api/events"] {
        let (code, body) = http_get(c.http_addr, path, &admin);
        assert_eq!(code, 200, "{path}: {body}");
        http.push((path, body));
    }

    // Re-wrap under a new key with the coordinator stopped, then restart:
    // the start opens every stored version under the new key.
    c.stop_coordinator();
    let data = c.data_dir.clone();
    let old_key = std::fs::read(data.join("secrets.key")).unwrap();
    let new_key = c.root().join("new.key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&new_key)
            .unwrap();
        let bytes: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        f.write_all(&bytes).unwrap();
    }
    let out = convoyd(&[
        "secrets",
        "rewrap",
        "--data-dir",
        data.to_str().unwrap(),
        "--new-key",
        new_key.to_str().unwrap(),
    ]);
    seen.add("rewrap", &out);
    assert!(out.status.success(), "rewrap: {}", text(&out));
    assert!(
        text(&out).contains("re-wrapped 2 secrets (5 versions)"),
        "{}",
        text(&out)
    );
    let installed = std::fs::read(data.join("secrets.key")).unwrap();
    assert_eq!(installed, std::fs::read(&new_key).unwrap());
    assert_ne!(installed, old_key);
    // The old key opens nothing any more: with it back in place, the load
    // stops at the first secret, naming it.
    std::fs::write(data.join("secrets.key"), &old_key).unwrap();
    let other = c.root().join("other.key");
    std::fs::copy(&new_key, &other).unwrap();
    let out = convoyd(&[
        "secrets",
        "rewrap",
        "--data-dir",
        data.to_str().unwrap(),
        "--new-key",
        other.to_str().unwrap(),
    ]);
    seen.add("rewrap with the old key", &out);
    refused(&out, "the old key", "secrets/prod/db-password");
    std::fs::copy(&new_key, data.join("secrets.key")).unwrap();
    std::fs::remove_file(&new_key).unwrap();
    std::fs::remove_file(&other).unwrap();

    c.start_coordinator();
    let out = c.cli(&["-o", "json", "secret", "list"]);
    seen.add("list after restart", &out);
    let list = ok(&out, "list after restart");
    assert_eq!(list["secrets"].as_array().unwrap().len(), 2, "{list}");
    let out = cli_stdin(
        &c,
        None,
        &["--env", "prod", "secret", "rotate", "db-password"],
        CANARY.as_bytes(),
    );
    seen.add("rotate after restart", &out);
    assert!(text(&out).contains("version 4"), "{}", text(&out));
    for path in ["/metrics", "/api/services", "/api/events"] {
        let (code, body) = http_get(c.http_addr, path, &admin);
        assert_eq!(code, 200, "{path}: {body}");
        http.push((path, body));
    }
    c.stop_coordinator();

    // The canaries are nowhere.
    for canary in [CANARY, CANARY2] {
        for (what, bytes) in &seen.0 {
            assert!(
                !contains(bytes, canary),
                "the value is in the output of {what}"
            );
        }
        for (path, body) in &http {
            assert!(!body.contains(canary), "the value is in {path}");
        }
        let log = c.coordinator_log();
        assert!(log.contains("DEBUG"), "convoyd did not log at debug level");
        assert!(!log.contains(canary), "the value is in convoyd's log");
        let files = files_under(&data);
        assert!(files.len() > 3, "{files:?}");
        for path in files {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !contains(&bytes, canary),
                "the value is in {}",
                path.display()
            );
        }
    }
}

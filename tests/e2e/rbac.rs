//! Roles: what viewer, deployer and admin tokens may do, revocation, the
//! audit log, and that token secrets never reach the coordinator's disk or
//! log.

use std::process::Output;
use std::time::Duration;

use convoy_tests::spec::compose;
use convoy_tests::{skip_without_docker, Cluster, ServiceSpec};
use serde_json::Value;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `convoy token create` as admin; returns (id, secret).
fn make_token(c: &Cluster, args: &[&str]) -> (String, String) {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let v: Value = c.cli_json(&all);
    let token = v["token"].as_str().expect("token in the JSON").to_string();
    assert!(token.starts_with("convoy_"), "{v}");
    (v["id"].as_str().unwrap().to_string(), token)
}

fn assert_refused(out: &Output, what: &str, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what} was allowed: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
    assert!(err.contains(needle), "{what}: `{needle}` not in: {err}");
}

fn audit(c: &Cluster) -> Vec<Value> {
    let v: Value = c.cli_json(&["audit"]);
    v["entries"].as_array().cloned().unwrap_or_default()
}

#[test]
fn viewer_reads_but_changes_nothing() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let (_, viewer) = make_token(&c, &["--name", "ro", "--role", "viewer"]);
    let svc = c.service_name("ro");
    let file = c.write_spec("ro.yaml", &compose(&[&ServiceSpec::new(&svc, &c.image())]));
    let file = file.to_str().unwrap();

    for args in [&["status"][..], &["nodes"]] {
        let out = c.cli_with_token(&viewer, args);
        assert!(out.status.success(), "viewer {args:?}: {}", stderr(&out));
    }
    let node = c.node_names()[0].clone();
    let refused: Vec<(&str, Vec<&str>)> = vec![
        ("apply", vec!["apply", "-f", file]),
        ("delete", vec!["delete", &svc]),
        ("node remove", vec!["node", "remove", &node]),
        ("token create", vec!["token", "create", "--role", "viewer"]),
        ("token create --join", vec!["token", "create", "--join"]),
        ("token list", vec!["token", "list"]),
        ("audit", vec!["audit"]),
    ];
    for (what, args) in &refused {
        let out = c.cli_with_token(&viewer, args);
        assert_refused(&out, what, "token `ro` (viewer) may only read");
    }
    // The world: nothing started, the node is still there.
    std::thread::sleep(Duration::from_secs(2));
    assert!(c.containers_of(&svc).unwrap().is_empty());
    assert!(c.try_status().unwrap().iter().all(|s| s.name != svc));
    c.wait_nodes_ready(&[node]);

    // The refusals are audited, with who, action, target and result.
    let entries = audit(&c);
    let refused_apply = entries
        .iter()
        .find(|e| e["action"] == "apply" && e["result"].as_str().unwrap().contains("viewer"))
        .unwrap_or_else(|| panic!("no refused apply in {entries:#?}"));
    assert!(refused_apply["who"].as_str().unwrap().ends_with("(ro)"));
    assert!(refused_apply["target"]
        .as_str()
        .unwrap()
        .contains("ro.yaml"));
    for action in ["delete", "node.remove", "token.create", "join-token.create"] {
        assert!(
            entries.iter().any(|e| e["action"] == action
                && e["result"].as_str().unwrap().contains("may only read")),
            "no refused {action} in {entries:#?}"
        );
    }
}

#[test]
fn deployer_for_staging_may_not_touch_default() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let (_, token) = make_token(
        &c,
        &["--name", "ci", "--role", "deployer", "--env", "staging"],
    );
    let svc = c.service_name("stg");
    let file = c.write_spec("stg.yaml", &compose(&[&ServiceSpec::new(&svc, &c.image())]));
    let out = c.cli_with_token(&token, &["apply", "-f", file.to_str().unwrap()]);
    assert_refused(
        &out,
        "apply to default",
        "token `ci` (deployer for staging) may not touch environment `default`",
    );
    let out = c.cli_with_token(&token, &["delete", &svc]);
    assert_refused(
        &out,
        "delete in default",
        "may not touch environment `default`",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        c.containers_of(&svc).unwrap().is_empty(),
        "a container started"
    );
    assert!(c.try_status().unwrap().iter().all(|s| s.name != svc));
    // It may read.
    assert!(c.cli_with_token(&token, &["status"]).status.success());
}

#[test]
fn deployer_applies_and_deletes_and_is_audited_and_revocable() {
    skip_without_docker!();
    let c = Cluster::with_agents(1);
    let (id, token) = make_token(
        &c,
        &["--name", "deploy", "--role", "deployer", "--ttl", "1h"],
    );
    let svc = c.service_name("dep");
    let file = c.write_spec("dep.yaml", &compose(&[&ServiceSpec::new(&svc, &c.image())]));

    let out = c.cli_with_token(&token, &["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "deployer apply: {}", stderr(&out));
    c.wait_service_running(&svc, 1, 1);
    // Admin-only things stay refused.
    let out = c.cli_with_token(&token, &["token", "list"]);
    assert_refused(&out, "token list", "needs an admin token");

    let out = c.cli_with_token(&token, &["delete", &svc]);
    assert!(out.status.success(), "deployer delete: {}", stderr(&out));
    c.wait_service_gone(&svc);

    let entries = audit(&c);
    let who = format!("{id} (deploy)");
    let apply = entries
        .iter()
        .find(|e| e["action"] == "apply" && e["who"] == who.as_str())
        .unwrap_or_else(|| panic!("no apply by {who} in {entries:#?}"));
    assert_eq!(apply["result"], "ok");
    assert!(apply["target"].as_str().unwrap().contains(&svc), "{apply}");
    assert!(apply["unix_ms"].as_i64().unwrap() > 0);
    let delete = entries
        .iter()
        .find(|e| e["action"] == "delete" && e["who"] == who.as_str())
        .unwrap_or_else(|| panic!("no delete by {who} in {entries:#?}"));
    assert_eq!(delete["result"], "ok");
    assert_eq!(delete["target"], format!("default/{svc}"));
    assert!(entries
        .iter()
        .any(|e| e["action"] == "token.create" && e["who"] == "admin (admin)"));

    // Revoked: the very next call is refused.
    let out = c.cli(&["token", "revoke", &id]);
    assert!(out.status.success(), "revoke: {}", stderr(&out));
    let out = c.cli_with_token(&token, &["status"]);
    assert_refused(&out, "a revoked token", "revoked");
    let out = c.cli_with_token(&token, &["apply", "-f", file.to_str().unwrap()]);
    assert_refused(&out, "apply with a revoked token", "revoked");
    std::thread::sleep(Duration::from_secs(2));
    assert!(c.containers_of(&svc).unwrap().is_empty());
}

#[test]
fn token_list_shows_no_secret_and_join_tokens_are_not_cli_tokens() {
    let c = Cluster::start();
    let (id, secret) = make_token(&c, &["--name", "v", "--role", "viewer"]);
    let join: Value = c.cli_json(&[
        "token", "create", "--join", "--labels", "zone=a", "--uses", "2",
    ]);
    let join_secret = join["token"].as_str().unwrap().to_string();
    assert!(
        join["ca_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{join}"
    );
    assert!(
        join["join_command"]
            .as_str()
            .unwrap()
            .contains(":7401 --token-file /var/lib/convoy-agent/join.token "),
        "{join}"
    );
    let out = c.cli(&["token", "list", "-o", "json"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !text.contains(&secret) && !text.contains(&join_secret),
        "{text}"
    );
    assert!(
        !text.contains("convoy_") && !text.contains("sha256\""),
        "{text}"
    );
    let list: Value = serde_json::from_str(&text).unwrap();
    let tokens = list["tokens"].as_array().unwrap();
    let mine = tokens.iter().find(|t| t["id"] == id.as_str()).unwrap();
    assert_eq!(
        (mine["name"].as_str(), mine["role"].as_str()),
        (Some("v"), Some("viewer"))
    );
    let j = tokens.iter().find(|t| t["id"] == join["id"]).unwrap();
    assert_eq!(
        (j["role"].as_str(), j["uses_left"].as_u64()),
        (Some("join"), Some(2))
    );
    assert_eq!(j["labels"]["zone"], "a");
    assert!(tokens
        .iter()
        .any(|t| t["id"] == "admin" && t["role"] == "admin"));

    let out = c.cli_with_token(&join_secret, &["status"]);
    assert_refused(&out, "a join token on the CLI", "join token");
}

#[test]
fn secrets_stay_out_of_the_store_and_the_log() {
    let c = Cluster::start_with_env(&[("RUST_LOG", "debug")]);
    let (_, secret) = make_token(&c, &["--role", "deployer"]);
    let join: Value = c.cli_json(&["token", "create", "--join"]);
    let join_secret = join["token"].as_str().unwrap().to_string();
    let admin = std::fs::read_to_string(c.data_dir.join("admin.token")).unwrap();
    let admin = admin.trim().to_string();
    // Use them, including a refused call.
    assert!(c.cli_with_token(&secret, &["status"]).status.success());
    assert!(!c
        .cli_with_token(&secret, &["token", "list"])
        .status
        .success());
    assert!(!c.cli_with_token(&join_secret, &["nodes"]).status.success());
    std::thread::sleep(Duration::from_millis(500));

    let mut files = 0;
    for entry in std::fs::read_dir(c.data_dir.join("store")).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).unwrap();
        for s in [&secret, &join_secret, &admin] {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "a token secret is in {}",
                path.display()
            );
        }
    }
    assert!(files > 0, "no store files found");
    let log = c.coordinator_log();
    assert!(log.contains("DEBUG"), "convoyd did not log at debug level");
    for s in [&secret, &join_secret, &admin] {
        assert!(
            !log.contains(s.as_str()),
            "a token secret is in convoyd's log"
        );
    }

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["admin.token", "pki/ca.key"] {
            let path = c.data_dir.join(f);
            let mode = std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f} has mode {:o}", mode & 0o777);
        }
    }
}

#[test]
fn contexts_switch_the_coordinator() {
    let c = Cluster::start();
    let addr = format!("https://{}", c.api_addr);
    let ca = c.data_dir.join("pki/ca.pem");
    let token = c.data_dir.join("admin.token");
    let run = |args: &[&str]| {
        let mut cmd = c.cli_command();
        cmd.env_remove("CONVOY_ADDR")
            .env_remove("CONVOY_CA")
            .env_remove("CONVOY_TOKEN_FILE")
            .args(args);
        convoy_tests::process::output_within(&mut cmd, Duration::from_secs(30)).unwrap()
    };
    let out = run(&[
        "context",
        "set",
        "here",
        "--addr",
        &addr,
        "--ca",
        ca.to_str().unwrap(),
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["context", "set", "elsewhere", "--addr", "127.0.0.1:1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["context", "use", "elsewhere"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !run(&["status"]).status.success(),
        "elsewhere is not a coordinator"
    );
    let out = run(&["context", "use", "here"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["-o", "json", "context", "list"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["current_context"], "here");
    assert_eq!(v["contexts"].as_array().unwrap().len(), 2);
}

/// Issue 13: with `CONVOY_ENV` exported, `token create --role viewer|admin`
/// was refused (the variable was taken for the token's environment limit).
#[test]
fn token_create_with_convoy_env_exported_still_makes_viewer_and_admin_tokens() {
    skip_without_docker!();
    let c = Cluster::start();
    for role in ["viewer", "admin", "deployer"] {
        let out = convoy_tests::process::output_within(
            c.cli_command()
                .env("CONVOY_ENV", "prod")
                .args(["token", "create", "--role", role, "-o", "json"]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(out.status.success(), "{role}: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let envs = v["envs"].as_array().cloned().unwrap_or_default();
        if role == "deployer" {
            assert_eq!(envs, vec![Value::from("prod")], "{v}");
        } else {
            assert!(envs.is_empty(), "{role}: {v}");
        }
    }
    // `--env` on the line is still a request, refused for a viewer.
    let out = c.cli(&["--env", "prod", "token", "create", "--role", "viewer"]);
    assert_refused(
        &out,
        "a viewer token limited to an env",
        "--env limits deployer tokens only",
    );
}

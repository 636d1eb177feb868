//! Private registries (issue 14, item 12): a real registry (Debian's
//! `docker-registry`) with htpasswd (bcrypt) and TLS (a self-signed
//! certificate; Docker treats 127.0.0.0/8 registries as insecure, so it
//! takes it), started by the test. Without a login the instance fails with
//! the reason naming image, node and what to do; with a wrong password it
//! says the registry refused it; after `convoy registry login` with the
//! right one the node pulls and the container runs; an image the registry
//! lacks fails as not found. The password is in no file, log or output.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use convoy_tests::cluster::free_port;
use convoy_tests::image::ensure_test_image;
use convoy_tests::process::{output_within, wait_within};
use convoy_tests::spec::compose;
use convoy_tests::{docker, skip_without_docker, wait_until, Cluster, ServiceSpec, SETTLE};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const USER: &str = "convoy-ci";

/// A `docker-registry` serving TLS with htpasswd auth on a loopback port,
/// killed on drop.
struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    server: String,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start(user: &str, password: &str) -> Result<Registry> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
        std::fs::write(root.join("cert.pem"), cert.cert.pem())?;
        std::fs::write(root.join("key.pem"), cert.key_pair.serialize_pem())?;
        // bcrypt, as the registry's htpasswd auth requires.
        let out = output_within(
            Command::new("htpasswd").args(["-Bbn", user, password]),
            Duration::from_secs(30),
        )
        .context("htpasswd (apache2-utils) is needed")?;
        ensure!(out.status.success(), "htpasswd failed: {out:?}");
        std::fs::write(root.join("htpasswd"), &out.stdout)?;
        let port = free_port();
        let server = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: {server}\n  secret: convoy-test\n  tls:\n    certificate: {cert}\n    key: {key}\n\
             auth:\n  htpasswd:\n    realm: convoy-test\n    path: {htpasswd}\n",
            data = root.join("data").display(),
            cert = root.join("cert.pem").display(),
            key = root.join("key.pem").display(),
            htpasswd = root.join("htpasswd").display(),
        );
        std::fs::write(root.join("config.yml"), config)?;
        let log = std::fs::File::create(root.join("registry.log"))?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(root.join("config.yml"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {REGISTRY_BIN} (package docker-registry)"))?;
        let registry = Registry { child, server, dir };
        wait_until(
            format!("the registry listens on {}", registry.server),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                TcpStream::connect(&registry.server)
                    .map(drop)
                    .map_err(|e| anyhow!("{e}; log: {}", registry.log()))
            },
        );
        Ok(registry)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_within(&mut self.child, Duration::from_secs(10));
    }
}

/// `docker ARGS` with its own client config (never the user's ~/.docker),
/// `stdin` written to it.
fn docker_with_config(config: &Path, args: &[&str], stdin: &str) -> Result<Output> {
    let out = convoy_tests::process::output_with_input_within(
        Command::new("docker")
            .env("DOCKER_CONFIG", config)
            .args(args),
        Some(stdin.as_bytes()),
        Duration::from_secs(120),
    )?;
    ensure!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// Pushes the test image to the registry as `REGISTRY/convoy/testapp:TAG`
/// and removes that name locally, so a node must pull it.
fn push_test_image(registry: &Registry, password: &str, tag: &str) -> Result<String> {
    let config = registry.dir.path().join("docker-config");
    std::fs::create_dir_all(&config)?;
    let server = registry.server.as_str();
    docker_with_config(
        &config,
        &["login", server, "-u", USER, "--password-stdin"],
        password,
    )?;
    let name = format!("{server}/convoy/testapp:{tag}");
    docker::docker(&["tag", &ensure_test_image(), &name])?;
    let pushed = docker_with_config(&config, &["push", &name], "");
    docker::docker(&["rmi", &name])?;
    pushed?;
    Ok(name)
}

/// Waits for the service's instance to fail and returns its reason.
fn failed_reason(c: &Cluster, service: &str, what: &str) -> String {
    wait_until(
        format!("the instance of {service} fails: {what}"),
        SETTLE + Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let status = c.try_service_status(service)?;
            let inst = status
                .instance(1)
                .ok_or_else(|| anyhow!("no instance: {}", status.describe()))?;
            ensure!(
                inst.state == "failed" && inst.reason.contains(what),
                "convoy status says {}",
                status.describe()
            );
            Ok(inst.reason.clone())
        },
    )
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    found
}

/// `convoy registry login SERVER` with `password` on standard input;
/// returns what it printed.
fn login(c: &Cluster, server: &str, password: &str) -> String {
    let out = c.cli_with_input(
        &[
            "registry",
            "login",
            server,
            "--username",
            USER,
            "--password-stdin",
        ],
        format!("{password}\n").as_bytes(),
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "convoy registry login: {said}");
    said
}

#[test]
fn a_private_registry_pull_fails_without_a_login_and_runs_with_one() {
    skip_without_docker!();
    let password = format!("pw-{}-{}", std::process::id(), Cluster::now_unix_ms());
    let registry = Registry::start(USER, &password).expect("start the registry");
    let server = registry.server.clone();
    let c = Cluster::with_agents(1);
    let tag = format!("t-{}", c.id);
    let image = push_test_image(&registry, &password, &tag).expect("push the test image");
    let node = c.node_names()[0].clone();

    // No login yet: the registry wants one, and the reason says so.
    let private = c.service_name("private");
    let spec = ServiceSpec::new(&private, &image);
    let file = c.write_spec("private.yaml", &compose(&[&spec]));
    c.apply(&file);
    let reason = failed_reason(&c, &private, "authentication required");
    for part in [
        format!("pulling `{image}` on node `{node}` failed"),
        format!("authentication required by {server}"),
        format!("convoy registry login {server}"),
    ] {
        assert!(reason.contains(&part), "`{part}` missing from: {reason}");
    }
    assert!(c.containers_of(&private).unwrap().is_empty());

    // A wrong password: the registry refuses it, and the reason says whose.
    login(&c, &server, "not-the-password");
    let reason = failed_reason(&c, &private, "refused the login");
    assert!(
        reason.contains(&format!("{server} refused the login of `{USER}`")),
        "{reason}"
    );

    // The right one, from standard input.
    let said = login(&c, &server, &password);
    assert!(
        !said.contains(&password),
        "the CLI echoed the password: {said}"
    );

    // The plan resent with the login: the node pulls and the container runs.
    let running = c.wait_service_running(&private, 1, 1);
    assert!(running[0].state.running);
    let pulled = docker::docker(&["image", "inspect", "--format", "{{.Id}}", &image]).unwrap();
    assert!(pulled.trim().starts_with("sha256:"), "{pulled}");

    // Listed without the password, audited without it.
    let listed: serde_json::Value = c.cli_json(&["registry", "ls"]);
    let text = listed.to_string();
    assert!(text.contains(&server) && text.contains(USER), "{text}");
    assert!(!text.contains(&password), "{text}");
    let audit: serde_json::Value = c.cli_json(&["audit"]);
    let audit = audit.to_string();
    assert!(audit.contains("registry.login"), "{audit}");
    assert!(!audit.contains(&password), "{audit}");

    // An image the registry lacks: not found, naming image and node.
    let absent = c.service_name("absent");
    let absent_image = format!("{server}/convoy/absent:{tag}");
    let spec2 = ServiceSpec::new(&absent, &absent_image);
    let file = c.write_spec("both.yaml", &compose(&[&spec, &spec2]));
    c.apply(&file);
    let reason = failed_reason(&c, &absent, "not found in");
    assert!(
        reason.contains(&format!(
            "pulling `{absent_image}` on node `{node}` failed: not found in {server}"
        )),
        "{reason}"
    );

    // The password is on no disk of Convoy's: not in the coordinator's
    // store, not in the agent's plan.pb, not in any log.
    let agent_dir = c.agent(&node).data_dir.clone();
    for dir in [c.data_dir.clone(), agent_dir, c.root().to_path_buf()] {
        let holders: Vec<PathBuf> = files_holding(&dir, &password)
            .into_iter()
            // The test's own docker login config is the only plain copy.
            .filter(|p| !p.starts_with(registry.dir.path()))
            .collect();
        assert!(holders.is_empty(), "the password is in {holders:?}");
    }

    // Logout: removed from the list.
    let out = c.cli(&["registry", "logout", &server]);
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = c.cli_json(&["registry", "ls"]);
    assert!(!listed.to_string().contains(&server), "{listed}");

    drop(c);
    let _ = docker::docker(&["rmi", &image]);
    drop(registry);
}

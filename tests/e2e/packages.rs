//! Issue 19: the convoy-agent `.deb` (scripts/package.sh, cargo-deb) on a
//! real systemd host (PID 1 of a container, `convoy_tests::systemd`):
//! `dpkg -i` installs the binary, the unit, completions and man pages and
//! the agent's directory without starting anything; the install line `convoy
//! token create --join` prints enrols the host and starts the packaged unit,
//! and the node is ready; `dpkg -r` stops it. Asserted on the container's
//! files, `systemctl show` and `dpkg -L`, and on `convoy nodes`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use convoy_tests::bins::{profile_dir, workspace_root};
use convoy_tests::process::output_within;
use convoy_tests::systemd::{bridge_gateway, SystemdHost, AGENT_UNIT, HOST_NAME};
use convoy_tests::{skip_without_docker, wait_until, Cluster, SETTLE};

const PACKAGED_UNIT: &str = "/lib/systemd/system/convoy-agent.service";
const DROP_IN: &str = "/etc/systemd/system/convoy-agent.service.d/50-convoy-install.conf";
const TOKEN_FILE: &str = "/var/lib/convoy-agent/join.token";

/// The agent's `.deb`, packaged from the debug build the tests run (no
/// release build: `CONVOY_PACKAGE_NO_BUILD`, the dev profile, fast
/// compression) into a directory of its own.
fn agent_deb() -> PathBuf {
    let out = profile_dir().join("debian-e2e");
    let _ = std::fs::remove_dir_all(&out);
    let root = workspace_root();
    let started = Instant::now();
    let built = output_within(
        Command::new("bash")
            .arg(root.join("scripts/package.sh"))
            .env("CONVOY_PACKAGE_PROFILE", "dev")
            .env("CONVOY_PACKAGE_NO_BUILD", "1")
            .env("CONVOY_PACKAGE_ONLY", "convoy-agent")
            .env("CONVOY_PACKAGE_FAST", "1")
            .env("CONVOY_PACKAGE_OUT", &out)
            .current_dir(&root),
        Duration::from_secs(900),
    )
    .unwrap_or_else(|e| panic!("scripts/package.sh: {e:#}"));
    let stdout = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success(),
        "scripts/package.sh failed ({}):\n{stdout}\n{}",
        built.status,
        String::from_utf8_lossy(&built.stderr)
    );
    eprintln!("packaged convoy-agent in {:?}", started.elapsed());
    let deb = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
    assert!(
        deb.is_file() && deb.starts_with(&out),
        "no .deb in {}: {stdout}",
        out.display()
    );
    deb
}

#[test]
fn agent_deb_installs_on_systemd_and_its_install_line_joins_the_node() {
    skip_without_docker!();
    let deb = agent_deb();
    let gateway = bridge_gateway().unwrap_or_else(|e| panic!("{e:#}"));
    let c = Cluster::start_for_containers(&[HOST_NAME, &gateway]);
    let node = format!("{}-deb", c.id);
    let host = SystemdHost::boot(&format!("convoy-deb-{}", c.id));
    let sh = |script: &str| host.sh(script).unwrap_or_else(|e| panic!("{e:#}"));

    host.copy_in(&deb, "/root/convoy-agent.deb")
        .unwrap_or_else(|e| panic!("{e:#}"));
    sh("dpkg -i /root/convoy-agent.deb");

    // What the package put on the host.
    assert_eq!(
        sh("stat -c '%a %U' /var/lib/convoy-agent").trim(),
        "700 root"
    );
    sh("test -x /usr/bin/convoy-agent && /usr/bin/convoy-agent --version");
    let listed = sh("dpkg -L convoy-agent");
    for path in [
        "/usr/bin/convoy-agent",
        PACKAGED_UNIT,
        "/usr/share/bash-completion/completions/convoy-agent",
        "/usr/share/zsh/vendor-completions/_convoy-agent",
        "/usr/share/fish/vendor_completions.d/convoy-agent.fish",
        "/usr/share/man/man1/convoy-agent.1.gz",
        "/usr/share/man/man1/convoy-agent-install.1.gz",
    ] {
        assert!(
            listed.lines().any(|l| l == path),
            "{path} not in dpkg -L:\n{listed}"
        );
    }
    let bash = sh("cat /usr/share/bash-completion/completions/convoy-agent");
    assert!(
        bash.contains("complete -F") && bash.contains("install"),
        "{bash}"
    );
    let unit = sh(&format!("cat {PACKAGED_UNIT}"));
    assert!(
        unit.contains("\nExecStart=/usr/bin/convoy-agent run "),
        "{unit}"
    );
    assert!(unit.contains("\nProtectSystem=strict\n"), "{unit}");

    // Installed, not enabled, not started: nothing runs before the join.
    let shown = host
        .show(AGENT_UNIT, &["LoadState", "UnitFileState", "ActiveState"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(shown["LoadState"], "loaded", "{shown:?}");
    assert_eq!(shown["UnitFileState"], "disabled", "{shown:?}");
    assert_eq!(shown["ActiveState"], "inactive", "{shown:?}");
    // Started by hand before joining, it is skipped, not crash-looped.
    sh(&format!("systemctl start {AGENT_UNIT}"));
    let shown = host
        .show(AGENT_UNIT, &["ActiveState", "ConditionResult", "NRestarts"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(shown["ActiveState"], "inactive", "{shown:?}");
    assert_eq!(shown["ConditionResult"], "no", "{shown:?}");

    // The lines `convoy token create --join` prints: the token into its
    // file, then the install line, with the coordinator where this
    // container reaches it (the printed one is the API address's host).
    let created: serde_json::Value = c.cli_json(&["token", "create", "--join", "--node", &node]);
    let token = created["token"].as_str().unwrap_or_default();
    let line = created["install_command"].as_str().unwrap_or_default();
    assert!(
        line.starts_with("convoy-agent install --coordinator ")
            && line.contains(&format!("--token-file {TOKEN_FILE}"))
            && !line.contains(token),
        "{created}"
    );
    let mut words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    let at = words.iter().position(|w| w == "--coordinator").unwrap_or(0) + 1;
    words[at] = format!("{HOST_NAME}:{}", c.agent_addr.port());
    host.write_file(TOKEN_FILE, token)
        .unwrap_or_else(|e| panic!("{e:#}"));
    sh(&format!("chmod 600 {TOKEN_FILE}"));
    let printed = sh(&words.join(" "));
    assert!(printed.contains(DROP_IN), "{printed}");

    // systemd runs the packaged unit with the drop-in's command line.
    wait_until(
        format!("{AGENT_UNIT} is active (running) under systemd"),
        SETTLE,
        Duration::from_millis(250),
        || {
            let shown = host.show(AGENT_UNIT, &["ActiveState", "SubState"])?;
            anyhow::ensure!(
                shown["ActiveState"] == "active" && shown["SubState"] == "running",
                "{shown:?}"
            );
            Ok(())
        },
    );
    let shown = host
        .show(
            AGENT_UNIT,
            &["FragmentPath", "DropInPaths", "UnitFileState", "ExecStart"],
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(shown["FragmentPath"].ends_with(PACKAGED_UNIT), "{shown:?}");
    assert_eq!(shown["DropInPaths"], DROP_IN, "{shown:?}");
    assert_eq!(shown["UnitFileState"], "enabled", "{shown:?}");
    assert!(
        shown["ExecStart"].contains(&format!("--coordinator {HOST_NAME}:")),
        "{shown:?}"
    );
    sh("test ! -e /etc/systemd/system/convoy-agent.service");
    c.wait_nodes_ready(std::slice::from_ref(&node));

    // Removed: the agent stops, its identity stays for a reinstall.
    sh("dpkg -r convoy-agent");
    let shown = host
        .show(AGENT_UNIT, &["ActiveState"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_ne!(shown["ActiveState"], "active", "{shown:?}");
    sh("test ! -e /usr/bin/convoy-agent && test -s /var/lib/convoy-agent/pki/agent.pem");
}

/// `convoy completion bash` prints a script bash loads, naming the
/// commands; `GET /api/schema` on the HTTP port (no token) is the schema
/// file of the repository.
#[test]
fn completion_script_and_spec_schema_are_served() {
    skip_without_docker!();
    let c = Cluster::start();
    let out = c.cli(&["completion", "bash"]);
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(script.contains("complete -F _convoy"), "{script}");
    for command in ["apply", "rollback", "completion", "token"] {
        assert!(
            script.contains(command),
            "{command} not in the bash completion"
        );
    }
    // bash itself reads it and registers the completion.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("convoy.bash");
    std::fs::write(&file, script.as_bytes()).unwrap();
    let checked = Command::new("bash")
        .arg("-c")
        .arg(format!(". '{}' && complete -p convoy", file.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("_convoy"),
        "{checked:?}"
    );
    let bad = c.cli(&["completion", "tcsh"]);
    assert!(!bad.status.success());

    let (status, body) =
        convoy_tests::http::get(c.http_addr, "/api/schema").unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(status, 200, "{body}");
    let file =
        std::fs::read_to_string(workspace_root().join("docs/convoy-spec.schema.json")).unwrap();
    assert_eq!(body, file);
}

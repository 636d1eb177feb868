//! On a real systemd (PID 1 of a container, `convoy_tests::systemd`): the
//! agent installs itself as a unit with `convoy-agent install`, connects
//! out to the coordinator on the host over mTLS, and runs `units:` through
//! systemd's D-Bus API. Every test reads `systemctl show` (and the files and
//! processes) in the container as well as what `convoy status` reports.
//!
//! These tests fail, never skip, when the systemd image cannot be built or
//! booted (only `CONVOY_SKIP_DOCKER_TESTS=1` skips them, as every Docker
//! test).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use convoy_tests::systemd::{
    bridge_gateway, enroll_systemd_host_with, SystemdHost, AGENT_PATH, AGENT_UNIT, HOST_NAME,
};
use convoy_tests::{skip_without_docker, wait_until, Cluster, InstanceStatus, SETTLE};

const AGENT_FILE: &str = "/etc/systemd/system/convoy-agent.service";
const POLL: Duration = Duration::from_millis(250);

/// A coordinator on the host that containers reach, and a container with
/// systemd as PID 1 whose agent was installed with `convoy-agent install`
/// and is connected as node `node`.
struct Fixture {
    // Dropped in this order: the container first (its agent stops), then
    // the coordinator.
    host: SystemdHost,
    c: Cluster,
    node: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let out = self.c.cli(&["status"]);
            eprintln!(
                "---- convoy status ----\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if let Ok(status) = self.c.try_status() {
                for s in status {
                    eprintln!("{}", s.describe());
                }
            }
        }
    }
}

/// Boots the container, copies the agent in and runs `convoy-agent install`
/// there; waits until systemd runs it and `convoy nodes` lists it ready.
fn enrolled() -> Fixture {
    let gateway = bridge_gateway().unwrap_or_else(|e| panic!("{e:#}"));
    let c = Cluster::start_for_containers(&[HOST_NAME, &gateway]);
    // The proxy on the privileged ports, as on an edge host.
    let (host, node) = enroll_systemd_host_with(
        &c,
        &[
            "--proxy-listen",
            "0.0.0.0:80",
            "--proxy-tls-listen",
            "0.0.0.0:443",
        ],
    );
    Fixture { host, c, node }
}

/// The `units:` spec of one unit, placed on `node`.
fn unit_spec(name: &str, node: &str, body: &[&str]) -> String {
    let mut yaml = format!("units:\n  {name}:\n");
    for line in body {
        yaml += &format!("    {line}\n");
    }
    yaml +=
        &format!("    deploy:\n      placement:\n        constraints: [\"node.name == {node}\"]\n");
    yaml
}

/// The one instance of `service` in `convoy status`.
fn instance(c: &Cluster, service: &str) -> Result<InstanceStatus> {
    let status = c.try_service_status(service)?;
    ensure!(status.instances.len() == 1, "{}", status.describe());
    Ok(status.instances[0].clone())
}

/// `systemctl show` properties of a unit until `check` passes.
fn wait_unit(
    host: &SystemdHost,
    unit: &str,
    properties: &[&str],
    what: &str,
    mut check: impl FnMut(&BTreeMap<String, String>) -> Result<()>,
) -> BTreeMap<String, String> {
    wait_until(format!("{unit} {what}"), SETTLE, POLL, || {
        let shown = host.show(unit, properties)?;
        check(&shown).map_err(|e| anyhow!("{e:#}; systemctl show says {shown:?}"))?;
        Ok(shown)
    })
}

/// The command line of a process in the container, as `ps` shows it.
fn args_of(host: &SystemdHost, pid: &str) -> Result<String> {
    Ok(host
        .sh(&format!("ps -o args= -p {pid}"))?
        .trim()
        .to_string())
}

#[test]
fn agent_installs_as_a_systemd_unit_recovers_from_a_hang_and_uninstalls() {
    skip_without_docker!();
    let f = enrolled();
    let (host, c) = (&f.host, &f.c);

    // Under systemd, from the unit file the install wrote, enabled at boot.
    let shown = host
        .show(
            AGENT_UNIT,
            &[
                "ActiveState",
                "SubState",
                "UnitFileState",
                "FragmentPath",
                "ExecStart",
                "MainPID",
            ],
        )
        .unwrap();
    assert_eq!(shown["UnitFileState"], "enabled", "{shown:?}");
    assert_eq!(shown["FragmentPath"], AGENT_FILE, "{shown:?}");
    assert!(
        shown["ExecStart"].contains(&format!("path={AGENT_PATH} ;")),
        "{shown:?}"
    );
    let agent_args = args_of(host, &shown["MainPID"]).unwrap();
    assert!(agent_args.starts_with(AGENT_PATH), "{agent_args}");
    // Its proxy listens on port 80 (the container keeps ports below 1024
    // privileged, as a host does: the unit has CAP_NET_BIND_SERVICE and no
    // other capability) and answers that no route leads anywhere yet.
    let caps = host
        .show(
            AGENT_UNIT,
            &["CapabilityBoundingSet", "AmbientCapabilities"],
        )
        .unwrap();
    assert_eq!(
        caps["CapabilityBoundingSet"], "cap_net_bind_service",
        "{caps:?}"
    );
    let answer = host
        .exec(&[
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/80 && printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 && cat <&3",
        ])
        .unwrap();
    let answer = String::from_utf8_lossy(&answer.stdout).to_string();
    assert!(
        answer.starts_with("HTTP/1.1 404") && answer.contains("no route on node"),
        "{answer}"
    );
    // The node is the container: its facts come from inside it.
    let nodes = c.wait_nodes_ready(std::slice::from_ref(&f.node));
    let me = nodes.iter().find(|n| n.name == f.node).unwrap();
    assert_eq!(me.hostname, host.name, "{me:#?}");

    // Watchdog: a short WatchdogSec through a drop-in (as an operator would
    // tune it), then the agent's process is frozen. systemd must kill and
    // restart it, and the agent comes back to the coordinator.
    host.write_file(
        "/etc/systemd/system/convoy-agent.service.d/50-e2e-watchdog.conf",
        "[Service]\nWatchdogSec=3s\n",
    )
    .unwrap();
    host.sh("systemctl daemon-reload && systemctl restart convoy-agent.service")
        .unwrap();
    let before = wait_unit(
        host,
        AGENT_UNIT,
        &[
            "ActiveState",
            "SubState",
            "MainPID",
            "NRestarts",
            "WatchdogUSec",
        ],
        "runs with a 3 s watchdog",
        |s| {
            ensure!(s["ActiveState"] == "active" && s["SubState"] == "running");
            ensure!(s["WatchdogUSec"] == "3s", "WatchdogUSec is not 3s");
            Ok(())
        },
    );
    c.wait_nodes_ready(std::slice::from_ref(&f.node));
    // It keeps pinging: still the same process well past the limit.
    std::thread::sleep(Duration::from_secs(5));
    let still = host.show(AGENT_UNIT, &["MainPID", "NRestarts"]).unwrap();
    assert_eq!(
        (&still["MainPID"], &still["NRestarts"]),
        (&before["MainPID"], &before["NRestarts"]),
        "the agent was restarted while it was healthy:\n{}",
        host.journal(Some(AGENT_UNIT), 40)
    );
    let frozen: u32 = before["MainPID"].parse().unwrap();
    let restarts: u32 = before["NRestarts"].parse().unwrap();
    host.kill(frozen, "STOP").unwrap();
    wait_unit(
        host,
        AGENT_UNIT,
        &["ActiveState", "SubState", "MainPID", "NRestarts"],
        "is restarted by its watchdog",
        |s| {
            ensure!(s["MainPID"] != frozen.to_string() && s["MainPID"] != "0");
            ensure!(s["NRestarts"].parse::<u32>()? > restarts);
            ensure!(s["ActiveState"] == "active" && s["SubState"] == "running");
            Ok(())
        },
    );
    let journal = host.journal(Some(AGENT_UNIT), 200);
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    c.wait_nodes_ready(std::slice::from_ref(&f.node));

    // Uninstall: the unit is stopped and its file gone; the drop-in was the
    // test's, so the test removes it.
    host.sh("rm -rf /etc/systemd/system/convoy-agent.service.d")
        .unwrap();
    let out = host.exec(&[AGENT_PATH, "uninstall"]).unwrap();
    assert!(
        out.status.success(),
        "convoy-agent uninstall failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_unit(
        host,
        AGENT_UNIT,
        &["LoadState", "ActiveState"],
        "is gone",
        |s| {
            ensure!(s["LoadState"] == "not-found" && s["ActiveState"] == "inactive");
            Ok(())
        },
    );
    assert_eq!(host.read_file(AGENT_FILE).unwrap(), None);
    let left = host
        .sh("find /etc/systemd/system -name convoy-agent.service")
        .unwrap();
    assert!(left.trim().is_empty(), "left behind: {left}");
    let procs = host.sh("ps -eo args=").unwrap();
    assert!(
        !procs.lines().any(|p| p.starts_with(AGENT_PATH)),
        "an agent still runs: {procs}"
    );
}

#[test]
fn unit_runs_under_systemd_is_restarted_when_killed_rewritten_on_change_and_removed() {
    skip_without_docker!();
    let f = enrolled();
    let (host, c) = (&f.host, &f.c);
    let unit = "convoy-sleeper.service";
    let file = "/etc/systemd/system/convoy-sleeper.service";
    let body = |seconds: &str| {
        unit_spec(
            "sleeper",
            &f.node,
            &[
                &format!("exec_start: /bin/sleep {seconds}"),
                "user: nobody",
                "restart: on-failure",
                "environment: { GREETING: hello }",
                "working_dir: /tmp",
                "description: Convoy e2e sleeper",
            ],
        )
    };
    let spec = c.write_spec("sleeper.yaml", &body("1001"));
    let report = c.apply(&spec);
    assert_eq!(report.service("sleeper").action, "create", "{report:#?}");

    let props = [
        "ActiveState",
        "SubState",
        "ExecStart",
        "User",
        "MainPID",
        "NRestarts",
        "UnitFileState",
        "Environment",
        "WorkingDirectory",
        "Description",
    ];
    let first = wait_unit(host, unit, &props, "runs /bin/sleep 1001", |s| {
        ensure!(s["ActiveState"] == "active" && s["SubState"] == "running");
        ensure!(s["ExecStart"].contains("argv[]=/bin/sleep 1001 ;"));
        Ok(())
    });
    assert_eq!(first["User"], "nobody", "{first:?}");
    assert_eq!(first["UnitFileState"], "enabled", "{first:?}");
    assert_eq!(first["Environment"], "GREETING=hello", "{first:?}");
    assert_eq!(first["WorkingDirectory"], "/tmp", "{first:?}");
    assert_eq!(first["Description"], "Convoy e2e sleeper", "{first:?}");
    // The process itself, as the kernel sees it.
    assert_eq!(args_of(host, &first["MainPID"]).unwrap(), "/bin/sleep 1001");
    let owner = host
        .sh(&format!("ps -o user= -p {}", first["MainPID"]))
        .unwrap();
    assert_eq!(owner.trim(), "nobody");
    // Convoy's file, marked as Convoy's.
    let written = host.read_file(file).unwrap().expect("no unit file");
    assert!(written.contains("X-Convoy"), "{written}");
    let status = wait_until("convoy status shows sleeper running", SETTLE, POLL, || {
        let i = instance(c, "sleeper")?;
        ensure!(i.state == "running" && i.node == f.node, "{i:?}");
        Ok(i)
    });
    assert_eq!(status.revision, 1);

    // kill -9 of the main process: systemd restarts it (Restart=on-failure)
    // and Convoy reports it running again, with the restart counted.
    let pid: u32 = first["MainPID"].parse().unwrap();
    host.kill(pid, "KILL").unwrap();
    wait_unit(host, unit, &props, "is restarted by systemd", |s| {
        ensure!(s["MainPID"] != pid.to_string() && s["MainPID"] != "0");
        ensure!(s["ActiveState"] == "active" && s["SubState"] == "running");
        ensure!(s["NRestarts"].parse::<u32>()? >= 1);
        Ok(())
    });
    wait_until("convoy status counts the restart", SETTLE, POLL, || {
        let i = instance(c, "sleeper")?;
        ensure!(i.state == "running" && i.restarts >= 1, "{i:?}");
        Ok(())
    });

    // A changed spec: the file is rewritten and the unit restarted.
    let before = host.show(unit, &["MainPID"]).unwrap();
    let spec = c.write_spec("sleeper.yaml", &body("1002"));
    let report = c.apply(&spec);
    let change = report.service("sleeper");
    assert_eq!(change.action, "update", "{report:#?}");
    assert_eq!(change.changed_fields, ["exec_start"], "{report:#?}");
    let second = wait_unit(host, unit, &props, "runs /bin/sleep 1002", |s| {
        ensure!(s["ActiveState"] == "active" && s["SubState"] == "running");
        ensure!(s["ExecStart"].contains("argv[]=/bin/sleep 1002 ;"));
        ensure!(s["MainPID"] != before["MainPID"]);
        Ok(())
    });
    assert_eq!(
        args_of(host, &second["MainPID"]).unwrap(),
        "/bin/sleep 1002"
    );
    let rewritten = host.read_file(file).unwrap().expect("no unit file");
    assert!(
        rewritten.contains("/bin/sleep 1002") && !rewritten.contains("1001"),
        "{rewritten}"
    );
    wait_until("convoy status shows revision 2", SETTLE, POLL, || {
        let i = instance(c, "sleeper")?;
        ensure!(i.state == "running" && i.revision == 2, "{i:?}");
        Ok(())
    });

    // Removed: stopped, disabled, its file gone.
    c.delete("sleeper");
    wait_unit(
        host,
        unit,
        &["LoadState", "ActiveState"],
        "is stopped and unloaded",
        |s| {
            ensure!(s["LoadState"] == "not-found" && s["ActiveState"] == "inactive");
            Ok(())
        },
    );
    assert_eq!(host.read_file(file).unwrap(), None);
    let links = host
        .sh("find /etc/systemd/system -name convoy-sleeper.service")
        .unwrap();
    assert!(links.trim().is_empty(), "still enabled: {links}");
    let procs = host.sh("ps -eo args=").unwrap();
    assert!(!procs.contains("/bin/sleep 100"), "still running: {procs}");
}

#[test]
fn adopted_unit_is_started_and_stopped_but_its_file_never_rewritten() {
    skip_without_docker!();
    let f = enrolled();
    let (host, c) = (&f.host, &f.c);
    let file = "/etc/systemd/system/demo.service";
    host.write_file(
        file,
        "# Written by the test, not by Convoy.\n[Unit]\nDescription=demo\n\n[Service]\n\
         ExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    host.sh("systemctl daemon-reload && systemctl enable --now demo.service")
        .unwrap();
    let original = host.fingerprint(file).unwrap();
    let props = ["ActiveState", "SubState", "UnitFileState", "MainPID"];
    wait_unit(host, "demo.service", &props, "runs", |s| {
        ensure!(s["ActiveState"] == "active");
        Ok(())
    });

    // state: stopped, enabled: false → Convoy stops and disables it.
    let adopt = |state: &str, enabled: &str| {
        unit_spec(
            "demo",
            &f.node,
            &[
                "unit: demo.service",
                &format!("state: {state}"),
                &format!("enabled: {enabled}"),
            ],
        )
    };
    let spec = c.write_spec("demo.yaml", &adopt("stopped", "false"));
    c.apply(&spec);
    wait_unit(
        host,
        "demo.service",
        &props,
        "is stopped and disabled",
        |s| {
            ensure!(s["ActiveState"] == "inactive" && s["MainPID"] == "0");
            ensure!(s["UnitFileState"] == "disabled");
            Ok(())
        },
    );
    wait_until("convoy status lists demo on the node", SETTLE, POLL, || {
        let i = instance(c, "demo")?;
        ensure!(
            i.node == f.node && i.state != "failed" && i.state != "pending",
            "{i:?}"
        );
        Ok(())
    });
    assert_eq!(
        host.fingerprint(file).unwrap(),
        original,
        "demo.service was rewritten"
    );

    // It stays stopped: started by hand, Convoy stops it again.
    host.sh("systemctl start demo.service").unwrap();
    wait_unit(host, "demo.service", &props, "is stopped again", |s| {
        ensure!(s["ActiveState"] == "inactive");
        Ok(())
    });

    // state: running → started, and enabled again.
    let spec = c.write_spec("demo.yaml", &adopt("running", "true"));
    c.apply(&spec);
    let running = wait_unit(host, "demo.service", &props, "runs and is enabled", |s| {
        ensure!(s["ActiveState"] == "active" && s["SubState"] == "running");
        ensure!(s["UnitFileState"] == "enabled");
        Ok(())
    });
    assert_eq!(
        args_of(host, &running["MainPID"]).unwrap(),
        "/bin/sleep infinity"
    );
    wait_until("convoy status shows demo running", SETTLE, POLL, || {
        let i = instance(c, "demo")?;
        ensure!(i.state == "running", "{i:?}");
        Ok(())
    });
    assert_eq!(
        host.fingerprint(file).unwrap(),
        original,
        "demo.service was rewritten"
    );

    // Given up: Convoy lets go of it, and still never touches its file.
    c.delete("demo");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        host.fingerprint(file).unwrap(),
        original,
        "demo.service was rewritten"
    );
}

#[test]
fn foreign_convoy_named_unit_file_is_never_modified() {
    skip_without_docker!();
    let f = enrolled();
    let (host, c) = (&f.host, &f.c);
    let unit = "convoy-foreign.service";
    let file = "/etc/systemd/system/convoy-foreign.service";
    host.write_file(
        file,
        "# Someone else's unit that happens to have Convoy's prefix.\n[Unit]\n\
         Description=not Convoy's\n\n[Service]\nExecStart=/bin/sleep 2000\n",
    )
    .unwrap();
    host.sh("systemctl daemon-reload").unwrap();
    let original = host.fingerprint(file).unwrap();

    let spec = c.write_spec(
        "foreign.yaml",
        &unit_spec("foreign", &f.node, &["exec_start: /bin/sleep 3000"]),
    );
    c.apply(&spec);
    let failed = wait_until("convoy status reports foreign failed", SETTLE, POLL, || {
        let i = instance(c, "foreign")?;
        ensure!(i.state == "failed" && !i.reason.is_empty(), "{i:?}");
        Ok(i)
    });
    assert!(failed.reason.contains(unit), "{failed:?}");
    assert_eq!(
        host.fingerprint(file).unwrap(),
        original,
        "{file} was modified"
    );
    let shown = host.show(unit, &["ActiveState", "ExecStart"]).unwrap();
    assert_eq!(shown["ActiveState"], "inactive", "{shown:?}");
    assert!(shown["ExecStart"].contains("/bin/sleep 2000"), "{shown:?}");
    let procs = host.sh("ps -eo args=").unwrap();
    assert!(!procs.contains("/bin/sleep 3000"), "{procs}");

    // Deleting the service leaves the file alone too.
    c.delete("foreign");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        host.fingerprint(file).unwrap(),
        original,
        "{file} was modified"
    );
}

#[test]
fn unit_reads_its_secret_as_a_systemd_credential_and_a_rotation_restarts_it_with_the_new_one() {
    skip_without_docker!();
    let f = enrolled();
    let (host, c) = (&f.host, &f.c);
    let unit = "convoy-reader.service";
    // The unit copies its credential where the test reads it, then waits
    // (`$$`: Compose interpolation leaves one `$` for the shell).
    let body = unit_spec(
        "reader",
        &f.node,
        &[
            "exec_start: [\"/bin/sh\", \"-c\", \"cat \\\"$$CREDENTIALS_DIRECTORY/token\\\" > /run/reader-got; exec sleep 1000\"]",
            "secrets: [token]",
        ],
    );
    std::fs::write(c.root().join("token.txt"), "credential-one").unwrap();
    let spec = c.write_spec(
        "reader.yaml",
        &format!("{body}secrets:\n  token:\n    file: ./token.txt\n"),
    );
    let report = c.apply(&spec);
    assert_eq!(report.service("reader").action, "create", "{report:#?}");
    let first = wait_unit(host, unit, &["ActiveState", "MainPID"], "runs", |s| {
        ensure!(s["ActiveState"] == "active");
        Ok(())
    });
    let read = |want: &str| {
        wait_until(format!("the unit read `{want}`"), SETTLE, POLL, || {
            let got = host.read_file("/run/reader-got")?.unwrap_or_default();
            ensure!(
                got == want,
                "it read {got:?}; its unit file and log:\n{}",
                host.sh(
                    "cat /etc/systemd/system/convoy-reader.service; \
                     journalctl -u convoy-reader.service --no-pager | tail -n 5; find /run/convoy-agent -ls; journalctl -u convoy-agent --no-pager | grep -i secret | tail"
                )
                .unwrap_or_default()
            );
            Ok(())
        })
    };
    read("credential-one");
    // The unit file loads it from the agent's tmpfs; it holds no value.
    let written = host
        .read_file("/etc/systemd/system/convoy-reader.service")
        .unwrap()
        .expect("no unit file");
    assert!(written.contains("LoadCredential=token:"), "{written}");
    assert!(!written.contains("credential-one"), "{written}");

    // A rotation restarts the unit with the new version.
    let mut child = c
        .cli_command()
        .args(["secret", "rotate", "token"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"credential-two")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rotate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    read("credential-two");
    let second = host.show(unit, &["MainPID"]).unwrap();
    assert_ne!(second["MainPID"], first["MainPID"], "not restarted");
    wait_until("convoy status shows revision 2", SETTLE, POLL, || {
        let i = instance(c, "reader")?;
        ensure!(i.state == "running" && i.revision == 2, "{i:?}");
        Ok(())
    });
}

/// Issue 19: `convoy logs` of a unit reads its journal on the node
/// (journalctl under the agent's hardened unit), by service name and by
/// the unit's systemd name, with `--tail` and `-f`.
#[test]
fn unit_logs_come_from_journald() {
    skip_without_docker!();
    let f = enrolled();
    let (host, c) = (&f.host, &f.c);
    let spec = c.write_spec(
        "chatty.yaml",
        &unit_spec(
            "chatty",
            &f.node,
            &[
                "exec_start: [\"/bin/sh\", \"-c\", \"i=0; while true; do i=$$((i+1)); echo unit tick $$i; sleep 0.2; done\"]",
                "restart: always",
            ],
        ),
    );
    c.apply(&spec);
    wait_unit(
        host,
        "convoy-chatty.service",
        &["ActiveState"],
        "runs",
        |s| {
            ensure!(s["ActiveState"] == "active");
            Ok(())
        },
    );
    let logs = |args: &[&str]| -> Result<Vec<String>> {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        let out = c.cli(&all);
        ensure!(
            out.status.success(),
            "convoy {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    };
    // By service name, the last 3 journal lines, prefixed with the instance.
    let tail = wait_until("three unit lines", SETTLE, POLL, || {
        let lines = logs(&["chatty", "--tail", "3"])?;
        ensure!(lines.len() == 3, "{lines:#?}");
        ensure!(
            lines
                .iter()
                .all(|l| l.starts_with("chatty-1 |") && l.contains("unit tick")),
            "{lines:#?}"
        );
        Ok(lines)
    });
    let newest: u64 = tail[2].rsplit(' ').next().unwrap().parse().unwrap();
    // By the unit's systemd name, following: newer ticks arrive.
    let mut child = c
        .cli_command()
        .args(["logs", "-f", "convoy-chatty.service", "--tail", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut newer = None;
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            let n: Option<u64> = line.rsplit(' ').next().and_then(|n| n.parse().ok());
            if n.is_some_and(|n| n > newest + 3) {
                newer = Some(line);
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let newer = newer.expect("no newer unit line within 30 s from convoy logs -f");
    assert!(newer.starts_with("chatty-1 |"), "{newer}");
}

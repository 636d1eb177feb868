//! A real systemd: PID 1 of a container on the local Docker Engine, booted
//! from the image `scripts/build-systemd-image.sh` builds, with the flags of
//! `scripts/systemd-container.sh` (docs/systemd-in-docker.md says why each
//! is needed). The tests copy the built `convoy-agent` in, run commands in
//! the container and read `systemctl show` there: that is the world they
//! assert on. Dropping the host stops and removes the container; when the
//! test is failing it prints the journal first.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::bins::{bin, profile_dir, workspace_root};
use crate::process::output_within;
use crate::{wait_until, Cluster, SETTLE};

/// How long one `docker exec` may take (a `systemctl` call waits for its
/// job at most this long).
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the agent binary goes in the container (`/run` is a tmpfs that
/// `docker cp` cannot write to).
pub const AGENT_PATH: &str = "/usr/local/bin/convoy-agent";

/// The name inside the container under which the host is reached (an
/// `--add-host ...:host-gateway` of the start script).
pub const HOST_NAME: &str = "host.docker.internal";

/// The agent's unit, as `convoy-agent install` writes it.
pub const AGENT_UNIT: &str = "convoy-agent.service";

/// `convoy token create --join ARGS -o json` → (token, CA fingerprint).
pub fn join_token(c: &Cluster, extra: &[&str]) -> (String, String) {
    let mut args = vec!["token", "create", "--join"];
    args.extend_from_slice(extra);
    let created: serde_json::Value = c.cli_json(&args);
    let token = created["token"].as_str().unwrap_or_default().to_string();
    let fp = created["ca_fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(token.len() > 20, "no join token in {created}");
    assert!(fp.starts_with("sha256:"), "no CA fingerprint in {created}");
    (token, fp)
}

/// Boots a systemd container for `c` (a coordinator containers reach:
/// `Cluster::start_for_containers`), copies the agent in and runs
/// `convoy-agent install` there with a join token; waits until systemd
/// runs it and `convoy nodes` lists it ready. Returns the host and its
/// node name (`ID-sd`).
pub fn enroll_systemd_host(c: &Cluster) -> (SystemdHost, String) {
    enroll_systemd_host_with(c, &[])
}

/// [`enroll_systemd_host`], with more `convoy-agent install` flags.
pub fn enroll_systemd_host_with(c: &Cluster, install_args: &[&str]) -> (SystemdHost, String) {
    let node = format!("{}-sd", c.id);
    let host = SystemdHost::boot(&format!("convoy-sd-{}", c.id));
    host.install_agent_binary()
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (token, fp) = join_token(c, &["--node", &node]);
    let coordinator = format!("{HOST_NAME}:{}", c.agent_addr.port());
    let out = host
        .exec(
            &[
                AGENT_PATH,
                "install",
                "--coordinator",
                &coordinator,
                "--token",
                &token,
                "--ca-fingerprint",
                &fp,
                "--name",
                &node,
            ]
            .into_iter()
            .chain(install_args.iter().copied())
            .collect::<Vec<_>>(),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        out.status.success(),
        "convoy-agent install failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        format!("{AGENT_UNIT} is active (running) under systemd"),
        SETTLE,
        Duration::from_millis(250),
        || {
            let shown = host.show(AGENT_UNIT, &["ActiveState", "SubState", "MainPID"])?;
            anyhow::ensure!(
                shown["ActiveState"] == "active" && shown["SubState"] == "running",
                "{shown:?}"
            );
            Ok(())
        },
    );
    c.wait_nodes_ready(std::slice::from_ref(&node));
    (host, node)
}

/// The systemd image's content-hash tag (`convoy-systemd:src-HASH`), built
/// with `scripts/build-systemd-image.sh` if Docker does not have it (which
/// takes about a minute: debootstrap). Panics with the script's output when
/// that fails: the systemd tests need it.
pub fn ensure_systemd_image() -> String {
    static TAG: OnceLock<Result<String, String>> = OnceLock::new();
    match TAG.get_or_init(|| build_image().map_err(|e| format!("{e:#}"))) {
        Ok(tag) => tag.clone(),
        Err(e) => panic!("cannot build the systemd image: {e}"),
    }
}

fn build_image() -> Result<String> {
    // Other test processes may be building it right now: one at a time.
    let lock_path = profile_dir().join(".convoy-systemd-image.lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let root = workspace_root();
    let out = output_within(
        Command::new("bash")
            .arg(root.join("scripts/build-systemd-image.sh"))
            // The script takes this as the repository name; the start script
            // as the whole reference: leave both at their defaults.
            .env_remove("CONVOY_SYSTEMD_IMAGE")
            .current_dir(&root),
        Duration::from_secs(900),
    )?;
    let _ = lock.unlock();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tag = stdout.lines().last().unwrap_or("").trim().to_string();
    if !out.status.success() || !tag.contains(":src-") {
        bail!(
            "scripts/build-systemd-image.sh failed ({}):\n{}\n{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(tag)
}

/// The address a process in a container on the default bridge reaches the
/// host at (`scripts/systemd-container.sh host-ip`): the bridge's gateway.
pub fn bridge_gateway() -> Result<String> {
    let out = script(&["host-ip"], Duration::from_secs(20))?;
    let ip = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || ip.is_empty() {
        bail!(
            "scripts/systemd-container.sh host-ip failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(ip)
}

fn script(args: &[&str], timeout: Duration) -> Result<Output> {
    let root = workspace_root();
    output_within(
        Command::new("bash")
            .arg(root.join("scripts/systemd-container.sh"))
            .args(args)
            .current_dir(&root),
        timeout,
    )
}

/// A container with systemd as PID 1.
pub struct SystemdHost {
    /// The container's name, also its hostname.
    pub name: String,
    pub id: String,
}

impl SystemdHost {
    /// Boots a container named `name` (its hostname too) and waits until
    /// `systemctl is-system-running` says `running`. Panics with the
    /// reason (the script's output and systemd's console) when it cannot.
    pub fn boot(name: &str) -> SystemdHost {
        let tag = ensure_systemd_image();
        let out = {
            let root = workspace_root();
            output_within(
                Command::new("bash")
                    .arg(root.join("scripts/systemd-container.sh"))
                    .args(["start", name])
                    .env("CONVOY_SYSTEMD_IMAGE", &tag)
                    .current_dir(&root),
                Duration::from_secs(120),
            )
        }
        .unwrap_or_else(|e| panic!("cannot boot systemd in a container: {e:#}"));
        // Removed on drop even if the boot failed half-way.
        let mut host = SystemdHost {
            name: name.to_string(),
            id: String::new(),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = stdout.lines().last().unwrap_or("").trim().to_string();
        if !out.status.success() || id.is_empty() {
            panic!(
                "systemd did not come up in container {name} from {tag} \
                 (scripts/systemd-container.sh start, {}):\n{}\n{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        host.id = id;
        host
    }

    /// Runs `ARGS` in the container (as root), however it exits.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        output_within(
            Command::new("docker")
                .arg("exec")
                .arg(&self.name)
                .args(args),
            EXEC_TIMEOUT,
        )
    }

    /// Runs `sh -c SCRIPT` in the container; fails unless it exits 0, and
    /// returns its stdout.
    pub fn sh(&self, script: &str) -> Result<String> {
        let out = self.exec(&["sh", "-c", script])?;
        if !out.status.success() {
            bail!(
                "`{script}` in {} failed ({}): {}{}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `docker cp HOST_PATH NAME:PATH`.
    pub fn copy_in(&self, host_path: &Path, path: &str) -> Result<()> {
        let out = output_within(
            Command::new("docker")
                .arg("cp")
                .arg(host_path)
                .arg(format!("{}:{path}", self.name)),
            Duration::from_secs(120),
        )?;
        if !out.status.success() {
            bail!(
                "docker cp {} {}:{path}: {}",
                host_path.display(),
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Writes `content` to `path` in the container (root-owned, 0644),
    /// making its directory first.
    pub fn write_file(&self, path: &str, content: &str) -> Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
            self.sh(&format!("mkdir -p '{parent}'"))?;
        }
        let dir = tempfile::tempdir()?;
        let local = dir.path().join("file");
        std::fs::write(&local, content)?;
        self.copy_in(&local, path)?;
        self.sh(&format!("chown root:root '{path}' && chmod 0644 '{path}'"))
            .map(drop)
    }

    /// The file at `path` in the container; `None` if there is none.
    pub fn read_file(&self, path: &str) -> Result<Option<String>> {
        let out = self.exec(&["cat", path])?;
        if out.status.success() {
            return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file") {
            return Ok(None);
        }
        bail!("cat {path} in {}: {}", self.name, err.trim())
    }

    /// `sha256sum PATH` in the container, with the file's mode, owner and
    /// modification time: what "never rewritten" compares.
    pub fn fingerprint(&self, path: &str) -> Result<String> {
        self.sh(&format!(
            "sha256sum '{path}' && stat -c '%a %U %Y' '{path}'"
        ))
    }

    /// Copies the `convoy-agent` the tests run to [`AGENT_PATH`].
    pub fn install_agent_binary(&self) -> Result<()> {
        self.copy_in(&bin("convoy-agent"), AGENT_PATH)?;
        self.sh(&format!(
            "chmod 0755 {AGENT_PATH} && {AGENT_PATH} --version"
        ))
        .map(drop)
    }

    /// `systemctl show -p P1,P2 UNIT`, as a map (every property asked for
    /// is in it; systemd answers even for units it does not know).
    pub fn show(&self, unit: &str, properties: &[&str]) -> Result<BTreeMap<String, String>> {
        let out = self.sh(&format!(
            "systemctl show --no-pager -p {} -- '{unit}'",
            properties.join(",")
        ))?;
        let mut shown = BTreeMap::new();
        for line in out.lines() {
            if let Some((key, value)) = line.split_once('=') {
                shown.insert(key.to_string(), value.to_string());
            }
        }
        for p in properties {
            if !shown.contains_key(*p) {
                bail!("systemctl show {unit} has no {p}: {out}");
            }
        }
        Ok(shown)
    }

    /// `MainPID` of a unit; 0 when it has no running main process.
    pub fn main_pid(&self, unit: &str) -> Result<u32> {
        let shown = self.show(unit, &["MainPID"])?;
        shown["MainPID"]
            .parse()
            .map_err(|_| anyhow!("MainPID of {unit} is {:?}", shown["MainPID"]))
    }

    /// `kill -SIGNAL PID` in the container.
    pub fn kill(&self, pid: u32, signal: &str) -> Result<()> {
        self.sh(&format!("kill -{signal} {pid}")).map(drop)
    }

    /// The last `lines` lines of the journal, of one unit or of everything.
    pub fn journal(&self, unit: Option<&str>, lines: u32) -> String {
        let mut args = vec!["journalctl", "--no-pager", "-o", "short-precise"];
        let n = lines.to_string();
        args.extend(["-n", &n]);
        if let Some(unit) = unit {
            args.extend(["-u", unit]);
        }
        match self.exec(&args) {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("(no journal: {e:#})"),
        }
    }
}

impl Drop for SystemdHost {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.id.is_empty() {
            eprintln!("---- journal of {} (last 300 lines) ----", self.name);
            eprintln!("{}", self.journal(None, 300));
            if let Ok(out) = self.exec(&["systemctl", "--no-pager", "list-units", "convoy*"]) {
                eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            }
            eprintln!("---- end of journal of {} ----", self.name);
        }
        // SIGRTMIN+3: systemd shuts down, then the container is removed.
        let _ = script(&["stop", &self.name], Duration::from_secs(60));
    }
}

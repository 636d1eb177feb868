//! `convoy-agent install` and `uninstall`: enrol this host, then run the
//! agent as the hardened systemd unit of systemd/convoy-agent.service,
//! enabled and started over D-Bus; and the reverse.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::enroll::{self, EnrollError, JoinParams};
use crate::runtime::systemd::{DbusSystemd, Systemd, SystemdError, UnitInfo, JOURNAL_LINES};
use crate::units::file::{self, UnitFiles};

mod render;
#[cfg(test)]
use render::GPU_DEVICES;
pub use render::{render_drop_in, render_unit};

/// The agent's own unit.
pub const UNIT: &str = file::AGENT_UNIT;
/// systemd/convoy-agent.service; `install` fills in its ExecStart line.
pub const TEMPLATE: &str = include_str!("../../systemd/convoy-agent.service");
/// The unit's StateDirectory.
pub const STATE_DIR: &str = "/var/lib/convoy-agent";
pub const DEFAULT_PKI_DIR: &str = convoy_api::agent_paths::PKI_DIR;
pub const DEFAULT_DATA_DIR: &str = convoy_api::agent_paths::DATA_DIR;
/// How long `install` waits for the unit to become active.
pub const WAIT: Duration = Duration::from_secs(30);
/// Where the convoy-agent package puts [`TEMPLATE`] (docs/PACKAGES.md):
/// with it there, `install` writes only [`DROP_IN`] over it, so that an
/// upgrade of the package upgrades the unit too.
pub const PACKAGED_UNIT_DIRS: [&str; 2] = ["/usr/lib/systemd/system", "/lib/systemd/system"];
/// The drop-in `install` writes over a packaged unit, in
/// `UNIT_DIR/convoy-agent.service.d/`.
pub const DROP_IN: &str = "50-convoy-install.conf";
/// The first line of every file `install` writes: `uninstall` and a later
/// `install` delete only files that start with it.
pub(crate) const WRITTEN_BY: &str = "# Installed by `convoy-agent install`";
/// The device node whose presence makes `install` write [`GPU_DEVICES`].
pub const NVIDIA_CONTROL_DEVICE: &str = "/dev/nvidiactl";
/// Directories the unit cannot see (ProtectHome=, PrivateTmp=).
const HIDDEN: [&str; 5] = ["/home", "/root", "/run/user", "/tmp", "/var/tmp"];

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("`convoy-agent {0}` must run as root: it writes /etc/systemd/system and manages units over the system bus (try sudo)")]
    NotRoot(&'static str),
    #[error("cannot manage the agent's unit: {0}")]
    Systemd(#[from] SystemdError),
    #[error(transparent)]
    Enroll(#[from] EnrollError),
    #[error("the agent binary {path} {why}: copy it to /usr/local/bin/convoy-agent and run `install` from there")]
    Binary { path: PathBuf, why: String },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{UNIT} did not become active within {}s: it is {state}{}", WAIT.as_secs(), journal_text(.journal))]
    NotActive { state: String, journal: Vec<String> },
}

fn journal_text(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its journal ends with:\n  {}", lines.join("\n  "))
    }
}

/// What `install` needs.
#[derive(Clone)]
pub struct InstallParams {
    pub coordinators: Vec<String>,
    pub token: String,
    pub ca_fingerprint: String,
    pub node_name: String,
    pub labels: Vec<(String, String)>,
    /// `--allow-bind` roots the unit's agent runs with.
    pub allow_binds: Vec<String>,
    /// `--allow-host-access` kinds the unit's agent runs with.
    pub allow_host_access: Vec<String>,
    /// The agent binary the unit runs (this one).
    pub binary: PathBuf,
    pub pki_dir: PathBuf,
    pub data_dir: PathBuf,
    pub unit_dir: PathBuf,
    /// The host has NVIDIA GPUs: the unit lets the agent open their
    /// devices (`render::GPU_DEVICES`) instead of `PrivateDevices=yes`.
    pub gpu_devices: bool,
    /// `--proxy-listen` and `--proxy-tls-listen` the unit's agent runs
    /// with; a port below 1024 gives the unit `CAP_NET_BIND_SERVICE`.
    pub proxy_listen: Option<std::net::SocketAddr>,
    pub proxy_tls_listen: Option<std::net::SocketAddr>,
}

impl std::fmt::Debug for InstallParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("InstallParams")
            .field("coordinators", &self.coordinators)
            .field("node_name", &self.node_name)
            .field("binary", &self.binary)
            .finish_non_exhaustive()
    }
}

/// The packaged unit file, if the convoy-agent package installed one.
pub fn packaged_unit() -> Option<PathBuf> {
    PACKAGED_UNIT_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(UNIT))
        .find(|path| path.is_file())
}

/// Deletes `path` if `install` wrote it (it starts with [`WRITTEN_BY`]);
/// says whether it did.
fn remove_written(path: &Path) -> Result<bool, InstallError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.starts_with(WRITTEN_BY) => {
            std::fs::remove_file(path).map_err(|source| InstallError::Io {
                context: "deleting",
                path: path.to_path_buf(),
                source,
            })?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(InstallError::Io {
            context: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `UNIT_DIR/convoy-agent.service.d`.
fn drop_in_dir(unit_dir: &Path) -> PathBuf {
    unit_dir.join(format!("{UNIT}.d"))
}

fn require_root(command: &'static str) -> Result<(), InstallError> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(InstallError::NotRoot(command))
    }
}

/// Refuses a binary the hardened unit could not run.
fn check_binary(path: &Path) -> Result<(), InstallError> {
    let bad = |why: String| InstallError::Binary {
        path: path.to_path_buf(),
        why,
    };
    if !path.is_absolute() {
        return Err(bad("is not an absolute path".to_string()));
    }
    if let Some(dir) = HIDDEN.iter().find(|d| path.starts_with(d)) {
        return Err(bad(format!(
            "is under {dir}, which the hardened unit cannot see (ProtectHome=, PrivateTmp=)"
        )));
    }
    Ok(())
}

/// Enrols (unless already enrolled), writes the unit, reloads systemd,
/// enables and starts the unit and waits until it is active. Prints each
/// step.
pub async fn install(params: &InstallParams) -> Result<(), InstallError> {
    require_root("install")?;
    check_binary(&params.binary)?;
    let systemd = DbusSystemd::new();
    // Before the join: a host without systemd should not spend the token.
    let before = systemd.unit(UNIT).await?;

    match crate::pki::Pki::load(&params.pki_dir).await {
        Ok(pki) => println!(
            "already enrolled as node `{}` ({}); keeping that identity",
            pki.node_name,
            params.pki_dir.display()
        ),
        Err(_) => {
            let coordinator = params.coordinators.first().cloned().unwrap_or_default();
            let node = enroll::join(&JoinParams {
                coordinator: coordinator.clone(),
                token: params.token.clone(),
                ca_fingerprint: params.ca_fingerprint.clone(),
                node_name: params.node_name.clone(),
                pki_dir: params.pki_dir.clone(),
            })
            .await?;
            println!(
                "enrolled with {coordinator} as node `{node}`; key and certificate in {}",
                params.pki_dir.display()
            );
        }
    }
    for dir in [&params.pki_dir, &params.data_dir] {
        create_private_dir(dir)?;
    }

    // With the package's unit in place (and the usual unit directory),
    // only a drop-in: the package keeps the unit itself up to date.
    let packaged = packaged_unit().filter(|_| params.unit_dir == Path::new(file::DEFAULT_UNIT_DIR));
    let (dir, name, content) = match &packaged {
        Some(unit) => {
            // A unit an earlier `install` wrote would hide the packaged one.
            let own = params.unit_dir.join(UNIT);
            if remove_written(&own)? {
                println!(
                    "deleted {} (the package's {} replaces it)",
                    own.display(),
                    unit.display()
                );
            }
            let dir = drop_in_dir(&params.unit_dir);
            std::fs::create_dir_all(&dir).map_err(|source| InstallError::Io {
                context: "creating",
                path: dir.clone(),
                source,
            })?;
            (dir, DROP_IN, render_drop_in(params))
        }
        None => (params.unit_dir.clone(), UNIT, render_unit(params)),
    };
    let path = dir.join(name);
    tokio::task::spawn_blocking(move || file::write_atomically(&dir, name, content.as_bytes()))
        .await
        .map_err(|e| InstallError::Io {
            context: "writing",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| InstallError::Io {
            context: "writing",
            path: path.clone(),
            source,
        })?;
    println!("wrote {}", path.display());
    // Enable first: systemd's UnitFileState follows on the reload.
    systemd.enable(UNIT).await?;
    println!("enabled {UNIT} (starts at boot)");
    systemd.daemon_reload().await?;
    println!("systemd reloaded its unit files");
    if before.is_up() {
        systemd.restart(UNIT).await?;
        println!("restarted {UNIT}");
    } else {
        systemd.reset_failed(UNIT).await.ok();
        systemd.start(UNIT).await?;
        println!("started {UNIT}");
    }
    let info = wait_active(&systemd, WAIT).await?;
    println!(
        "{UNIT} is {} ({}), main PID {}; logs: journalctl -u convoy-agent",
        info.active_state, info.sub_state, info.main_pid
    );
    Ok(())
}

/// Polls until the unit is active; fails at once when it fails.
async fn wait_active<S: Systemd>(systemd: &S, limit: Duration) -> Result<UnitInfo, InstallError> {
    let deadline = Instant::now() + limit;
    loop {
        let info = systemd.unit(UNIT).await?;
        let failed = info.active_state == "failed"
            || (info.sub_state == "auto-restart" && info.result != "success");
        if info.active_state == "active" {
            return Ok(info);
        }
        if failed || Instant::now() >= deadline {
            let journal = systemd.journal_tail(UNIT, JOURNAL_LINES).await;
            return Err(InstallError::NotActive {
                state: format!(
                    "{} ({}, result {})",
                    info.active_state, info.sub_state, info.result
                ),
                journal,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn create_private_dir(dir: &Path) -> Result<(), InstallError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|source| InstallError::Io {
            context: "creating",
            path: dir.to_path_buf(),
            source,
        })
}

/// What `uninstall` removes.
#[derive(Clone, Debug)]
pub struct UninstallParams {
    pub unit_dir: PathBuf,
    /// Also delete these (the agent's identity and state).
    pub purge: Vec<PathBuf>,
}

/// Stops and disables the unit, deletes its file and reloads systemd; with
/// `purge`, deletes the agent's directories too. Units and containers the
/// agent manages keep running.
pub async fn uninstall(params: &UninstallParams) -> Result<(), InstallError> {
    require_root("uninstall")?;
    let systemd = DbusSystemd::new();
    let info = systemd.unit(UNIT).await?;
    if info.is_up() {
        systemd.stop(UNIT).await?;
        // Its files are deleted below: let it stop first.
        let deadline = Instant::now() + WAIT;
        while systemd.unit(UNIT).await?.is_up() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("stopped {UNIT}");
    }
    if info.is_enabled() {
        systemd.disable(UNIT).await?;
        println!("disabled {UNIT}");
    }
    let path = params.unit_dir.join(UNIT);
    match std::fs::remove_file(&path) {
        Ok(()) => println!("deleted {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("{} was not there", path.display())
        }
        Err(source) => {
            return Err(InstallError::Io {
                context: "deleting",
                path,
                source,
            })
        }
    }
    let drop_in = drop_in_dir(&params.unit_dir).join(DROP_IN);
    if remove_written(&drop_in)? {
        println!("deleted {}", drop_in.display());
        // Only if nothing else is in it.
        let _ = std::fs::remove_dir(drop_in_dir(&params.unit_dir));
    }
    systemd.daemon_reload().await?;
    systemd.reset_failed(UNIT).await.ok();
    println!("systemd reloaded its unit files");
    for dir in &params.purge {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => println!("deleted {}", dir.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(InstallError::Io {
                    context: "deleting",
                    path: dir.clone(),
                    source,
                })
            }
        }
    }
    if let Ok(managed) = UnitFiles::new(&params.unit_dir).managed().await {
        if !managed.is_empty() {
            let names: Vec<&str> = managed.keys().map(String::as_str).collect();
            println!(
                "left running: {} unit(s) Convoy wrote ({}); remove them from the plan before uninstalling to have them removed",
                names.len(),
                names.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> InstallParams {
        InstallParams {
            coordinators: vec!["10.0.0.1:7401".to_string()],
            token: "secret".to_string(),
            ca_fingerprint: "sha256:00".to_string(),
            node_name: "gpu-1".to_string(),
            labels: vec![
                ("role".to_string(), "gpu".to_string()),
                ("zone".to_string(), "eu west".to_string()),
            ],
            allow_binds: vec!["/srv/data".to_string()],
            allow_host_access: Vec::new(),
            binary: PathBuf::from("/usr/local/bin/convoy-agent"),
            pki_dir: PathBuf::from(DEFAULT_PKI_DIR),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            unit_dir: PathBuf::from(file::DEFAULT_UNIT_DIR),
            gpu_devices: false,
            proxy_listen: None,
            proxy_tls_listen: None,
        }
    }

    #[test]
    fn on_a_gpu_host_the_unit_lets_the_agent_open_the_nvidia_devices_and_no_disk() {
        let plain = render_unit(&params());
        assert!(plain.lines().any(|l| l == "PrivateDevices=yes"), "{plain}");
        assert!(!plain.contains("nvidia"), "{plain}");
        let gpu = render_unit(&InstallParams {
            gpu_devices: true,
            ..params()
        });
        assert!(!gpu.lines().any(|l| l == "PrivateDevices=yes"), "{gpu}");
        for line in GPU_DEVICES {
            assert_eq!(gpu.lines().filter(|l| *l == line).count(), 1, "{line}");
        }
        // The rest of the hardening stays.
        for line in ["ProtectKernelModules=yes", "NoNewPrivileges=yes"] {
            assert!(gpu.lines().any(|l| l == line), "missing {line}");
        }
    }

    #[test]
    fn installed_unit_is_the_template_with_its_command_line_filled_in() {
        let unit = render_unit(&params());
        let exec: Vec<&str> = unit
            .lines()
            .filter(|l| l.starts_with("ExecStart="))
            .collect();
        assert_eq!(
            exec,
            vec![
                "ExecStart=/usr/local/bin/convoy-agent run --coordinator 10.0.0.1:7401 \
                 --pki-dir /var/lib/convoy-agent/pki --data-dir /var/lib/convoy-agent/data \
                 --label role=gpu --label \"zone=eu west\" --allow-bind /srv/data"
            ]
        );
        for line in [
            "Type=notify",
            "WatchdogSec=30s",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=/etc/systemd/system",
            "StateDirectory=convoy-agent",
            "RuntimeDirectory=convoy-agent",
            "RuntimeDirectoryMode=0700",
            "RuntimeDirectoryPreserve=yes",
        ] {
            assert!(unit.lines().any(|l| l == line), "missing {line}");
        }
        // Never the marker of workload units: the reconciler must not take
        // the agent's own unit for one of them.
        assert!(!file::is_managed(&unit));
        assert!(!unit.contains("secret"));
        assert_eq!(
            unit.lines()
                .filter(|l| l.starts_with("RuntimeDirectory="))
                .count(),
            1
        );
        assert!(
            crate::secrets::DEFAULT_SECRETS_DIR.starts_with("/run/convoy-agent/"),
            "the default secrets dir is in the unit's RuntimeDirectory"
        );
    }

    /// Issue 19: over the packaged unit, `install` writes only what
    /// differs on this host; the packaged unit keeps its hardening.
    #[test]
    fn the_drop_in_over_the_packaged_unit_resets_and_sets_the_command_line() {
        let drop_in = render_drop_in(&params());
        assert!(drop_in.starts_with(WRITTEN_BY), "{drop_in}");
        let lines: Vec<&str> = drop_in.lines().collect();
        let reset = lines
            .iter()
            .position(|l| *l == "ExecStart=")
            .expect(&drop_in);
        assert!(
            lines[reset + 1].starts_with(
                "ExecStart=/usr/local/bin/convoy-agent run --coordinator 10.0.0.1:7401"
            ),
            "{drop_in}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("ExecStart=")).count(),
            2
        );
        // The default PKI dir is the packaged condition's: nothing to reset.
        assert!(!drop_in.contains("ConditionPathExists"), "{drop_in}");
        assert!(!drop_in.contains("secret"));
        let elsewhere = render_drop_in(&InstallParams {
            pki_dir: PathBuf::from("/srv/convoy/pki"),
            gpu_devices: true,
            ..params()
        });
        assert!(
            elsewhere.contains(
                "[Unit]\nConditionPathExists=\nConditionPathExists=/srv/convoy/pki/agent.pem\n"
            ),
            "{elsewhere}"
        );
        for line in GPU_DEVICES {
            assert!(
                elsewhere.lines().any(|l| l == line),
                "{line} in {elsewhere}"
            );
        }
    }

    /// Issue 19: an agent that never joined is not started by systemd.
    #[test]
    fn the_unit_starts_only_once_the_agent_has_its_certificate() {
        let condition = format!(
            "ConditionPathExists={DEFAULT_PKI_DIR}/{}",
            crate::pki::CERT_FILE
        );
        assert!(TEMPLATE.lines().any(|l| l == condition), "{TEMPLATE}");
        let unit = render_unit(&InstallParams {
            pki_dir: PathBuf::from("/srv/convoy/pki"),
            ..params()
        });
        assert!(
            unit.lines()
                .any(|l| l == "ConditionPathExists=/srv/convoy/pki/agent.pem"),
            "{unit}"
        );
        assert_eq!(unit.matches("ConditionPathExists=").count(), 1);
    }

    #[test]
    fn a_binary_the_hardened_unit_cannot_see_is_refused() {
        assert!(check_binary(Path::new("/usr/local/bin/convoy-agent")).is_ok());
        for p in [
            "/root/convoy-agent",
            "/home/me/bin/convoy-agent",
            "/tmp/convoy-agent",
        ] {
            let e = check_binary(Path::new(p)).unwrap_err().to_string();
            assert!(e.contains("copy it to /usr/local/bin"), "{e}");
        }
    }
}

//! Dev mode (`convoyd dev`, like `nomad agent -dev`): a coordinator and an
//! agent for this host, the agent's certificate issued locally, and a CLI
//! context written so `convoy` works at once.
//!
//! The agent is the `convoy-agent` binary found beside this executable, run
//! as a child process with its own certificate, rather than the agent crate
//! linked in: `convoyd` then carries neither Docker's nor systemd's client
//! code, the dev agent is exactly the one production runs, and its logs come
//! out on this terminal as before. The child is told to stop (SIGTERM) when
//! `convoyd` shuts down, and is killed if it is still there after a grace
//! period.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    pki::{self, Ca},
    server::Running,
};

/// The agent's binary name, looked for beside `convoyd`.
pub const AGENT_BINARY: &str = "convoy-agent";

/// How long the agent may take to drain after SIGTERM before it is killed.
const AGENT_STOP_GRACE: Duration = Duration::from_secs(20);

/// `convoy-agent` in the directory of the running `convoyd`.
pub fn agent_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where convoyd is")?;
    let path = exe
        .parent()
        .map(|dir| dir.join(AGENT_BINARY))
        .unwrap_or_else(|| PathBuf::from(AGENT_BINARY));
    if !path.is_file() {
        bail!(
            "`convoyd dev` runs the agent binary beside it, and {} does not exist: \
             build both (`cargo build --bins`) or install them into one directory",
            path.display()
        );
    }
    Ok(path)
}

/// Issues this host's agent certificate and starts `convoy-agent run` as a
/// child process; the task ends when the child has exited.
pub fn start_agent(
    running: &Running,
    data_dir: &Path,
    node: &str,
    allow_binds: &[String],
    allow_host_access: &[String],
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    let binary = agent_binary()?;
    let ca = Ca::load(&running.pki)?;
    let issued = ca.issue_agent(node, time::Duration::days(365))?;
    let pki_dir = data_dir.join("agent").join("pki");
    pki::write_agent_bundle(&ca, &issued, &pki_dir)?;
    let agent_data = data_dir.join("agent").join("data");
    pki::create_dir_private(&agent_data)?;
    let mut dial = running.agent_addr;
    if dial.ip().is_unspecified() {
        dial.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut command = Command::new(&binary);
    command
        .arg("run")
        .arg("--coordinator")
        .arg(dial.to_string())
        .arg("--pki-dir")
        .arg(&pki_dir)
        .arg("--data-dir")
        .arg(&agent_data)
        // The one dev node serves every environment.
        .arg("--label")
        .arg(format!(
            "{}={}",
            convoy_api::env::ENV_LABEL,
            convoy_api::env::ANY_ENV
        ))
        // Host paths the developer lets containers bind-mount.
        .args(
            allow_binds
                .iter()
                .flat_map(|root| ["--allow-bind", root.as_str()]),
        )
        // Host access the developer grants the containers.
        .args(
            (!allow_host_access.is_empty())
                .then(|| {
                    [
                        "--allow-host-access".to_string(),
                        allow_host_access.join(","),
                    ]
                })
                .into_iter()
                .flatten(),
        )
        // Only convoyd answers to systemd, if anything does.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    tracing::info!(pid = child.id(), binary = %binary.display(), "dev agent started");
    Ok(tokio::spawn(
        supervise(child, shutdown).instrument(tracing::info_span!("agent")),
    ))
}

/// Waits for the child to exit, or for shutdown: then SIGTERM, and SIGKILL
/// after [`AGENT_STOP_GRACE`].
async fn supervise(mut child: Child, shutdown: CancellationToken) {
    tokio::select! {
        status = child.wait() => {
            match status {
                Ok(status) => tracing::error!(%status, "the dev agent stopped"),
                Err(e) => tracing::error!(error = %e, "cannot wait for the dev agent"),
            }
            return;
        }
        _ = shutdown.cancelled() => {}
    }
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
                tracing::warn!(error = %e, "cannot send SIGTERM to the dev agent");
            }
        }
    }
    match tokio::time::timeout(AGENT_STOP_GRACE, child.wait()).await {
        Ok(Ok(status)) => tracing::info!(%status, "dev agent stopped"),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot wait for the dev agent"),
        Err(_) => {
            tracing::warn!("the dev agent did not stop within {AGENT_STOP_GRACE:?}; killing it");
            let _ = child.kill().await;
        }
    }
}

/// Writes the CLI context `name` (the CLI's own config format) and makes it
/// current, so `convoy` reaches this coordinator with no flags.
pub fn write_cli_context(
    name: &str,
    address: &str,
    ca: &Path,
    token_file: &Path,
) -> Result<Option<PathBuf>> {
    use convoy_api::client_config::{default_path, upsert_context, Context as CliContext};
    let Some(path) = default_path() else {
        return Ok(None);
    };
    let context = CliContext {
        address: address.to_string(),
        ca: Some(ca.to_path_buf()),
        token_file: Some(token_file.to_path_buf()),
    };
    upsert_context(&path, name, context)?;
    Ok(Some(path))
}

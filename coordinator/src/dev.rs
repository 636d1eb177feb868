//! Dev mode (`convoyd dev`, like `nomad agent -dev`): a coordinator and an
//! agent for this host in one process, the agent's certificate issued
//! locally, and a CLI context written so `convoy` works at once.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    pki::{self, Ca},
    server::Running,
};

/// Issues this host's agent certificate and starts the agent in-process.
pub fn start_agent(
    running: &Running,
    data_dir: &Path,
    node: &str,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
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
    let config = convoy_agent::AgentConfig {
        coordinators: vec![dial.to_string()],
        pki_dir,
        data_dir: agent_data,
        // The one dev node serves every environment.
        labels: [(crate::state::ENV_LABEL.to_string(), "*".to_string())]
            .into_iter()
            .collect(),
    };
    Ok(tokio::spawn(
        async move {
            if let Err(e) = convoy_agent::run(config, shutdown).await {
                tracing::error!(error = %e, "the embedded agent stopped");
            }
        }
        .instrument(tracing::info_span!("agent")),
    ))
}

/// Writes the CLI context `name` (the CLI's own config format) and makes it
/// current, so `convoy` reaches this coordinator with no flags.
pub fn write_cli_context(
    name: &str,
    address: &str,
    ca: &Path,
    token_file: &Path,
) -> Result<Option<PathBuf>> {
    let Some(path) = convoy_cli::config::default_path() else {
        return Ok(None);
    };
    let context = convoy_cli::config::Context {
        address: address.to_string(),
        ca: Some(ca.to_path_buf()),
        token_file: Some(token_file.to_path_buf()),
    };
    convoy_cli::config::upsert_context(&path, name, context)
        .with_context(|| format!("cannot write the CLI config {}", path.display()))?;
    Ok(Some(path))
}

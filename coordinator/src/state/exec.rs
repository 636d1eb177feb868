//! `convoy exec` and `convoy run` (docs/LOGS.md): which instance a target
//! names, and opening the tunnel to its node. The API layer pipes input
//! and output through it.

use super::*;
use crate::tunnels::Tunnel;

/// How long a node has to acknowledge an OpenExec or RunOnce.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Exec runs in an instance's container; run starts a one-off container
/// from an instance's spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interactive {
    Exec,
    Run,
}

/// What an exec or run executes, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Execution {
    pub command: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    /// Columns and rows of the caller's terminal.
    pub size: Option<(u32, u32)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    #[error(transparent)]
    Target(#[from] LogsError),
    #[error("`{0}` is a systemd unit: exec and run work with containers")]
    Unit(String),
    #[error("`{target}` has no running instance on a connected node{hint}")]
    NotRunning { target: String, hint: String },
    #[error("`convoy run` takes a service, not an instance: `{0}`")]
    RunTakesService(String),
}

impl Coordinator {
    /// The instance an exec or run goes to. Exec: an instance (running on
    /// a connected node), or a service's lowest-indexed such instance. Run:
    /// a service (a running instance's spec and node, else any instance
    /// placed on a connected node).
    pub async fn exec_target(
        &self,
        env: &str,
        target: &str,
        kind: Interactive,
    ) -> Result<LogTarget, ExecError> {
        let candidates = self.log_targets(env, target).await?;
        let (service, is_unit, single) = {
            let desired = self.desired.lock().await;
            let service = candidates[0]
                .workload_id
                .split('/')
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let is_unit = desired
                .services
                .get(&(env.to_string(), service.clone()))
                .is_some_and(|r| r.spec.is_unit());
            let single = service != target;
            (service, is_unit, single)
        };
        if is_unit {
            return Err(ExecError::Unit(target.to_string()));
        }
        if kind == Interactive::Run && single {
            return Err(ExecError::RunTakesService(target.to_string()));
        }
        let live = self.live();
        let running = |t: &LogTarget| {
            live.nodes.get(&t.node).is_some_and(|n| {
                n.ready()
                    && n.workloads
                        .get(&t.workload_id)
                        .is_some_and(|w| w.state == InstanceState::Running)
            })
        };
        let connected = |t: &LogTarget| live.nodes.get(&t.node).is_some_and(|n| n.ready());
        let found = candidates.iter().find(|t| running(t)).or(match kind {
            Interactive::Exec => None,
            Interactive::Run => candidates.iter().find(|t| connected(t)),
        });
        found.cloned().ok_or_else(|| ExecError::NotRunning {
            target: target.to_string(),
            hint: if single {
                String::new()
            } else {
                format!(" (see `convoy status {service}`)")
            },
        })
    }

    /// Asks `target`'s node to run `execution` and waits for its tunnel.
    pub async fn open_execution(
        &self,
        target: &LogTarget,
        kind: Interactive,
        execution: &Execution,
    ) -> Result<Tunnel, String> {
        let pending = self.tunnels.expect(&target.node);
        let size = execution
            .size
            .map(|(cols, rows)| pb::TerminalSize { cols, rows });
        let command = match kind {
            Interactive::Exec => pb::command::Kind::OpenExec(pb::OpenExec {
                tunnel_id: pending.id.clone(),
                workload_id: target.workload_id.clone(),
                command: execution.command.clone(),
                tty: execution.tty,
                stdin: execution.stdin,
                size,
            }),
            Interactive::Run => pb::command::Kind::RunOnce(pb::RunOnce {
                tunnel_id: pending.id.clone(),
                workload_id: target.workload_id.clone(),
                command: execution.command.clone(),
                tty: execution.tty,
                stdin: execution.stdin,
                size,
            }),
        };
        let ack = self.command(&target.node, command, ACK_TIMEOUT).await?;
        ack.result
            .map_err(|e| format!("node `{}`: {e}", target.node))?;
        pending.opened(crate::tunnels::OPEN_TIMEOUT).await
    }
}

//! `x-convoy.pre_deploy` (docs/LOGS.md): before an apply stores a new
//! revision of a service that has a hook, the hook's command runs once in
//! a one-off container of the NEW spec (image, environment, volumes,
//! secrets, networks) on a node the service is placed on; a non-zero exit
//! (or no exit within its timeout) fails the apply with the hook's output,
//! and nothing is stored. The hook runs with no lock held: the apply is
//! staged once to learn what changes (a dry run), the hooks run, then the
//! apply runs for real. An apply that lands in between is not re-checked.

use std::collections::VecDeque;

use super::*;

/// How long a node has to acknowledge the hook's RunOnce.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a failed hook's output the error keeps (its end).
const OUTPUT_TAIL: usize = 4 * 1024;

/// One hook to run before the apply.
#[derive(Debug, Clone)]
pub(super) struct HookRun {
    pub(super) service: String,
    pub(super) node: String,
    pub(super) workload: pb::Workload,
    pub(super) secret_values: Vec<pb::SecretValue>,
    pub(super) command: Vec<String>,
    pub(super) timeout: Duration,
}

impl std::fmt::Display for HookRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the pre-deploy hook of `{}/{}` (`{}`) on node `{}`",
            self.workload.env,
            self.service,
            self.command.join(" "),
            self.node
        )
    }
}

impl Coordinator {
    /// The hooks of the services an apply creates or updates, from the
    /// staged (not stored) state `next`.
    pub(super) fn hook_runs(
        &self,
        next: &Desired,
        env: &str,
        changes: &[ServiceChange],
    ) -> Result<Vec<HookRun>, StateError> {
        let live = self.live();
        let mut runs = Vec::new();
        for change in changes {
            if !matches!(change.action, ChangeAction::Create | ChangeAction::Update) {
                continue;
            }
            let key = (env.to_string(), change.service.clone());
            let Some(rec) = next.services.get(&key) else {
                continue;
            };
            let Some(hook) = rec.spec.pre_deploy.as_ref() else {
                continue;
            };
            let ready = |n: &&String| live.nodes.get(*n).is_some_and(|l| l.ready());
            let node = rec
                .assignments
                .values()
                .flatten()
                .find(ready)
                .cloned()
                .ok_or_else(|| {
                    StateError::PreDeploy(format!(
                        "`{env}/{}` has a pre-deploy hook and no connected node to run it on: \
                         nothing was applied",
                        change.service
                    ))
                })?;
            let workload = pb::Workload {
                id: workload_id(env, &change.service, 0),
                service: change.service.clone(),
                env: env.to_string(),
                index: 0,
                revision: rec.revision,
                spec_hash: rec.spec.spec_hash(),
                probes: Vec::new(),
                start_first: false,
                runtime: Some(rec.spec.runtime()),
                // A one-off serves no traffic.
                ingress: None,
            };
            let (secret_values, _) = plans::plan_secrets(
                &next.secrets,
                std::slice::from_ref(&workload),
                &node,
                &self.sealer,
            );
            runs.push(HookRun {
                service: change.service.clone(),
                node,
                workload,
                secret_values,
                command: hook.command.clone(),
                timeout: Duration::from_millis(hook.timeout_ms),
            });
        }
        Ok(runs)
    }

    /// Runs one hook to its exit: `Ok` for exit code 0, else an error with
    /// the end of its output.
    pub(super) async fn run_hook(&self, hook: &HookRun) -> Result<(), StateError> {
        let fail =
            |why: String| StateError::PreDeploy(format!("{hook} {why}; nothing was applied"));
        let pending = self.tunnels.expect(&hook.node);
        let command = pb::command::Kind::RunOnce(pb::RunOnce {
            tunnel_id: pending.id.clone(),
            workload_id: hook.workload.id.clone(),
            command: hook.command.clone(),
            tty: false,
            stdin: false,
            size: None,
            workload: Some(Box::new(hook.workload.clone())),
            secret_values: hook.secret_values.clone(),
        });
        let ack = self
            .command(&hook.node, command, ACK_TIMEOUT)
            .await
            .map_err(|e| fail(format!("could not start: {e}")))?;
        ack.result
            .map_err(|e| fail(format!("could not start: {e}")))?;
        let mut tunnel = pending
            .opened(crate::tunnels::OPEN_TIMEOUT)
            .await
            .map_err(|e| fail(format!("could not start: {e}")))?;
        let mut tail: VecDeque<u8> = VecDeque::new();
        let read = async {
            loop {
                match tunnel.up.message().await {
                    Ok(Some(pb::TunnelUp {
                        msg: Some(pb::tunnel_up::Msg::Output(out)),
                    })) => {
                        tail.extend(out.data);
                        let extra = tail.len().saturating_sub(OUTPUT_TAIL);
                        tail.drain(..extra);
                    }
                    Ok(Some(pb::TunnelUp {
                        msg: Some(pb::tunnel_up::Msg::Exit(exit)),
                    })) => return Ok(exit),
                    Ok(Some(_)) => {}
                    Ok(None) => return Err("its tunnel ended before it exited".to_string()),
                    Err(s) => return Err(format!("its tunnel broke: {}", s.message())),
                }
            }
        };
        let exit = tokio::time::timeout(hook.timeout, read).await;
        let output = || {
            let bytes: Vec<u8> = tail.iter().copied().collect();
            let text = String::from_utf8_lossy(&bytes).trim_end().to_string();
            if text.is_empty() {
                " (no output)".to_string()
            } else {
                format!("; its output:\n{text}")
            }
        };
        match exit {
            Err(_) => Err(fail(format!(
                "did not finish within {} s and was stopped{}",
                hook.timeout.as_secs(),
                output()
            ))),
            Ok(Err(e)) => Err(fail(format!("failed: {e}{}", output()))),
            Ok(Ok(exit)) if !exit.error.is_empty() => {
                Err(fail(format!("failed: {}{}", exit.error, output())))
            }
            Ok(Ok(exit)) if exit.code != 0 => {
                Err(fail(format!("exited with code {}{}", exit.code, output())))
            }
            Ok(Ok(_)) => {
                tracing::info!(hook = %hook, "pre-deploy hook succeeded");
                Ok(())
            }
        }
    }
}

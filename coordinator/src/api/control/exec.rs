//! `convoy exec` and `convoy run` (docs/LOGS.md): deployer or admin in the
//! environment, audited with the command line (never input or output).
//! Input from the caller goes down the node's tunnel as it comes; output
//! comes back at the pace the caller reads it (nothing dropped: a slow
//! caller slows the command's output, as `docker exec` does, and the
//! tunnel's connection is not the agent's Session).

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::Streaming;

use super::*;
use crate::state::{ExecError, Execution, Interactive, LogsError};

pub type ExecStream = Pin<Box<dyn Stream<Item = Result<pb::ExecOutput, Status>> + Send>>;

/// How long the caller has to send `start`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest command line audited; longer ones are cut.
const AUDIT_COMMAND: usize = 256;

impl From<ExecError> for Status {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Target(LogsError::NotFound { .. }) => Status::not_found(e.to_string()),
            ExecError::RunTakesService(_) => Status::invalid_argument(e.to_string()),
            _ => Status::failed_precondition(e.to_string()),
        }
    }
}

fn output(msg: pb::exec_output::Msg) -> pb::ExecOutput {
    pb::ExecOutput { msg: Some(msg) }
}

impl ControlApi {
    pub(super) async fn interactive(
        &self,
        req: Request<Streaming<pb::ExecInput>>,
        kind: Interactive,
    ) -> Result<Response<ExecStream>, Status> {
        let caller = caller(&req)?;
        let mut input = req.into_inner();
        let first = tokio::time::timeout(START_TIMEOUT, input.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no `start` within 10 s"))??;
        let Some(pb::ExecInput {
            msg: Some(pb::exec_input::Msg::Start(start)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message must be `start`",
            ));
        };
        let pb::ExecStart {
            env,
            target,
            command,
            tty,
            stdin,
            size,
        } = start;
        let env = env_or_default(env);
        let mut line = command.join(" ");
        if line.len() > AUDIT_COMMAND {
            let mut cut = AUDIT_COMMAND;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let what = format!("{env}/{target}: {line}");
        let action = match kind {
            Interactive::Exec => Action::Exec { env: &env },
            Interactive::Run => Action::Run { env: &env },
        };
        self.allow(&caller, action, &what, true).await?;
        if command.is_empty() {
            return Err(Status::invalid_argument("no command given"));
        }
        let execution = Execution {
            command,
            tty,
            stdin,
            size: size.map(|s| (s.cols, s.rows)),
        };
        let opened = async {
            let target = self.coord.exec_target(&env, &target, kind).await?;
            let tunnel = self
                .coord
                .open_execution(&target, kind, &execution)
                .await
                .map_err(Status::unavailable)?;
            Ok::<_, Status>((target, tunnel))
        }
        .await;
        let outcome = match &opened {
            Ok((t, _)) => format!("started ({} on {})", t.instance, t.node),
            Err(s) => s.message().to_string(),
        };
        self.audit
            .record(&caller.who(), action.audit_name(), &what, &outcome)
            .await;
        let (target, mut tunnel) = opened?;
        let (tx, rx) = mpsc::channel::<Result<pb::ExecOutput, Status>>(16);
        let started = pb::ExecStarted {
            instance: target.instance.clone(),
            node: target.node.clone(),
            container: String::new(),
        };
        let _ = tx
            .send(Ok(output(pb::exec_output::Msg::Started(started))))
            .await;
        // Input: caller → node.
        let down = tunnel.down.clone();
        let input_task = tokio::spawn(async move {
            while let Ok(Some(message)) = input.message().await {
                let msg = match message.msg {
                    Some(pb::exec_input::Msg::Stdin(bytes)) => pb::tunnel_down::Msg::Stdin(bytes),
                    Some(pb::exec_input::Msg::StdinClosed(_)) => {
                        pb::tunnel_down::Msg::StdinClosed(true)
                    }
                    Some(pb::exec_input::Msg::Resize(size)) => pb::tunnel_down::Msg::Resize(size),
                    Some(pb::exec_input::Msg::Start(_)) | None => continue,
                };
                if down.send(pb::TunnelDown { msg: Some(msg) }).await.is_err() {
                    return;
                }
            }
            // The caller closed its side: no more input.
            let _ = down
                .send(pb::TunnelDown {
                    msg: Some(pb::tunnel_down::Msg::StdinClosed(true)),
                })
                .await;
        });
        // Output: node → caller.
        let node = target.node.clone();
        tokio::spawn(async move {
            let end = loop {
                let message = tokio::select! {
                    _ = tx.closed() => break None,
                    m = tunnel.up.message() => m,
                };
                match message {
                    Ok(Some(pb::TunnelUp {
                        msg: Some(pb::tunnel_up::Msg::Output(out)),
                    })) => {
                        let msg = if out.stream == pb::LogStream::Stderr as i32 {
                            pb::exec_output::Msg::Stderr(out.data)
                        } else {
                            pb::exec_output::Msg::Stdout(out.data)
                        };
                        if tx.send(Ok(output(msg))).await.is_err() {
                            break None;
                        }
                    }
                    Ok(Some(pb::TunnelUp {
                        msg: Some(pb::tunnel_up::Msg::Exit(exit)),
                    })) => {
                        break Some(if exit.error.is_empty() {
                            Ok(output(pb::exec_output::Msg::ExitCode(exit.code)))
                        } else {
                            Err(Status::aborted(format!("node `{node}`: {}", exit.error)))
                        });
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        break Some(Err(Status::unavailable(format!(
                            "the tunnel from node `{node}` ended before the command did"
                        ))))
                    }
                    Err(status) => {
                        break Some(Err(Status::unavailable(format!(
                            "the tunnel from node `{node}` broke: {}",
                            status.message()
                        ))))
                    }
                }
            };
            if let Some(end) = end {
                let _ = tx.send(end).await;
            }
            input_task.abort();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

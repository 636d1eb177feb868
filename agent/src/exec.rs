//! `convoy exec` and `convoy run` on the agent (docs/LOGS.md): a command in
//! a workload's running container (Docker's exec API), or a one-off
//! container made from a workload's spec of the plan, their input and
//! output streamed through a tunnel ([`crate::tunnel::Dialer`]). Unlike
//! logs, nothing is dropped: output goes up at the pace the coordinator
//! (and so the caller) reads it, as `docker exec` does; the tunnel's
//! connection is its own, so that never holds up the Session.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{
    AttachContainerOptions, RemoveContainerOptions, ResizeContainerTTYOptions,
    StartContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use convoy_proto::{
    tunnel_down, tunnel_up, LogStream, OpenExec, RunOnce, TerminalSize, TunnelDown, TunnelExit,
    TunnelOutput, TunnelUp, Workload, WorkloadState, WorkloadStatus,
};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::Streaming;
use tracing::{debug, warn};

use crate::plan::Plan;
use crate::runtime::{container_name, OneOff, Runtime};
use crate::secrets::{self, NodeSecrets};
use crate::tunnel::Dialer;

/// The most bytes of command line accepted.
const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Output read from Docker is sent up in pieces of at most this size.
const MAX_CHUNK: usize = 64 * 1024;

/// What the caller asked, checked against this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interactive {
    pub tunnel_id: String,
    /// Exec: the container's ID. Run: the workload's id.
    pub target: String,
    pub command: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub size: Option<(u16, u16)>,
}

fn check_command(command: &[String]) -> Result<(), String> {
    if command.is_empty() || command[0].is_empty() {
        return Err("no command given".to_string());
    }
    if command.iter().map(String::len).sum::<usize>() > MAX_COMMAND_BYTES {
        return Err(format!(
            "the command is over {} KiB",
            MAX_COMMAND_BYTES / 1024
        ));
    }
    if command.iter().any(|a| a.contains('\0')) {
        return Err("the command holds a NUL byte".to_string());
    }
    Ok(())
}

fn size_of(size: Option<TerminalSize>) -> Option<(u16, u16)> {
    size.filter(|s| s.cols > 0 && s.rows > 0).map(|s| {
        (
            u16::try_from(s.cols).unwrap_or(u16::MAX),
            u16::try_from(s.rows).unwrap_or(u16::MAX),
        )
    })
}

/// Checks an OpenExec: the workload runs on this node, in a running
/// container. The error is the Ack's reason.
pub fn resolve_exec(
    open: OpenExec,
    statuses: &BTreeMap<String, WorkloadStatus>,
    node: &str,
) -> Result<Interactive, String> {
    let OpenExec {
        tunnel_id,
        workload_id,
        command,
        tty,
        stdin,
        size,
    } = open;
    check_command(&command)?;
    let Some(status) = statuses.get(&workload_id) else {
        return Err(format!("`{workload_id}` does not run on node `{node}`"));
    };
    if status.unit.is_some() {
        return Err(format!(
            "`{workload_id}` is a systemd unit: exec runs in containers"
        ));
    }
    if status.container_id.is_empty() || status.state != WorkloadState::Running as i32 {
        return Err(format!(
            "`{workload_id}` has no running container on node `{node}`{}",
            if status.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", status.reason)
            }
        ));
    }
    Ok(Interactive {
        tunnel_id,
        target: status.container_id.clone(),
        command,
        tty,
        stdin,
        size: size_of(size),
    })
}

/// What a one-off runs: the request, the workload whose spec it copies,
/// and the secret values it mounts (their `Debug` shows keys only).
#[derive(Debug)]
pub struct RunRequest {
    pub interactive: Interactive,
    pub workload: Workload,
    pub secrets: secrets::SecretValues,
    /// The plan's login for the image's registry, if any.
    pub login: Option<crate::plan::RegistryLogin>,
}

/// Checks a RunOnce: the workload it carries (a container), or one of
/// the node's plan.
pub fn resolve_run(open: RunOnce, plan: Option<&Plan>, node: &str) -> Result<RunRequest, String> {
    let RunOnce {
        tunnel_id,
        workload_id,
        command,
        tty,
        stdin,
        size,
        workload,
        secret_values,
    } = open;
    check_command(&command)?;
    let (workload, values) = match workload.map(|w| *w) {
        Some(w) => {
            if !matches!(
                w.runtime,
                Some(convoy_proto::workload::Runtime::Container(_))
            ) {
                return Err(format!("`{}` is not a container", w.id));
            }
            let mut values = secrets::SecretValues::default();
            for v in secret_values {
                if v.name.is_empty() {
                    return Err("a secret value without a name".to_string());
                }
                values.insert(
                    secrets::SecretKey {
                        env: v.env,
                        name: v.name,
                        version: v.version,
                    },
                    v.value,
                );
            }
            (w, values)
        }
        None => {
            let found = plan.and_then(|p| p.containers().find(|w| w.id == workload_id));
            let Some(w) = found else {
                return Err(format!(
                    "`{workload_id}` is not a container of node `{node}`'s plan"
                ));
            };
            let keys: Vec<secrets::SecretKey> = secrets::mounts_of(w)
                .iter()
                .map(|m| secrets::SecretKey::of(&w.env, m))
                .collect();
            let values = plan
                .map(|p| p.secret_values().subset(&keys))
                .unwrap_or_default();
            (w.clone(), values)
        }
    };
    let image = match &workload.runtime {
        Some(convoy_proto::workload::Runtime::Container(c)) => c.image.clone(),
        _ => String::new(),
    };
    let login = plan.and_then(|p| p.registry_login(&image)).cloned();
    Ok(RunRequest {
        interactive: Interactive {
            tunnel_id,
            target: workload.id.clone(),
            command,
            tty,
            stdin,
            size: size_of(size),
        },
        workload,
        secrets: values,
        login,
    })
}

/// Sends the exit (or why there is none) up the tunnel.
async fn send_exit(up: &mpsc::Sender<TunnelUp>, exit: TunnelExit) {
    let _ = up
        .send(TunnelUp {
            msg: Some(tunnel_up::Msg::Exit(exit)),
        })
        .await;
}

fn failed(error: String) -> TunnelExit {
    TunnelExit {
        code: -1,
        error,
        container: String::new(),
    }
}

/// Runs an exec and streams it.
pub async fn serve_exec<R: Runtime>(dialer: Dialer, runtime: Arc<R>, request: Interactive) {
    let (up, mut down) = match dialer.open(request.tunnel_id.clone()).await {
        Ok(opened) => opened,
        Err(e) => {
            warn!("exec tunnel: {e}");
            return;
        }
    };
    let exit = match exec(runtime.as_ref(), &request, &up, &mut down).await {
        Ok(code) => TunnelExit {
            code,
            error: String::new(),
            container: String::new(),
        },
        Err(e) => failed(e),
    };
    send_exit(&up, exit).await;
    drop(up);
    let _ = tokio::time::timeout(Duration::from_secs(5), down.message()).await;
}

async fn exec<R: Runtime>(
    runtime: &R,
    request: &Interactive,
    up: &mpsc::Sender<TunnelUp>,
    down: &mut Streaming<TunnelDown>,
) -> Result<i32, String> {
    let docker = runtime.docker_client().await.map_err(|e| e.to_string())?;
    let what = format!("running `{}`", request.command.join(" "));
    let created = docker
        .create_exec(
            &request.target,
            CreateExecOptions {
                cmd: Some(request.command.clone()),
                attach_stdin: Some(request.stdin),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(request.tty),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    let started = docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: false,
                tty: request.tty,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    let StartExecResults::Attached { output, input } = started else {
        return Err(format!("{what}: Docker did not attach"));
    };
    let exec_id = created.id.clone();
    let resize = |docker: Docker, (cols, rows): (u16, u16)| {
        let exec_id = exec_id.clone();
        async move {
            let _ = docker
                .resize_exec(
                    &exec_id,
                    ResizeExecOptions {
                        height: rows,
                        width: cols,
                    },
                )
                .await;
        }
    };
    if let (true, Some(size)) = (request.tty, request.size) {
        resize(docker.clone(), size).await;
    }
    pump(output, input, up, down, request.stdin, |size| {
        resize(docker.clone(), size)
    })
    .await?;
    // The stream can end a moment before the engine records the exit.
    for _ in 0..40 {
        let inspect = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if inspect.running != Some(true) {
            return inspect
                .exit_code
                .map(|c| i32::try_from(c).unwrap_or(-1))
                .ok_or_else(|| format!("{what}: Docker recorded no exit code"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(format!("{what}: still running after its output ended"))
}

/// Copies output up and input down until the output ends (the command
/// exited) or the caller left (an error: the command is left to finish).
async fn pump<S, W, F, Fut>(
    mut output: S,
    mut input: std::pin::Pin<Box<W>>,
    up: &mpsc::Sender<TunnelUp>,
    down: &mut Streaming<TunnelDown>,
    stdin: bool,
    resize: F,
) -> Result<(), String>
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
    W: AsyncWrite + Send + ?Sized,
    F: Fn((u16, u16)) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut input_open = stdin;
    loop {
        tokio::select! {
            chunk = output.next() => {
                let Some(chunk) = chunk else { return Ok(()) };
                let chunk = chunk.map_err(|e| format!("reading the output: {e}"))?;
                let (stream, bytes) = match chunk {
                    LogOutput::StdErr { message } => (LogStream::Stderr, message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        (LogStream::Stdout, message)
                    }
                    LogOutput::StdIn { .. } => continue,
                };
                for piece in bytes.chunks(MAX_CHUNK) {
                    let message = TunnelUp {
                        msg: Some(tunnel_up::Msg::Output(TunnelOutput {
                            stream: stream as i32,
                            data: piece.to_vec(),
                        })),
                    };
                    if up.send(message).await.is_err() {
                        return Err("the caller left".to_string());
                    }
                }
            }
            message = down.message() => match message {
                Ok(Some(TunnelDown { msg: Some(tunnel_down::Msg::Stdin(bytes)) })) => {
                    if input_open && input.write_all(&bytes).await.is_err() {
                        input_open = false;
                    }
                }
                Ok(Some(TunnelDown { msg: Some(tunnel_down::Msg::StdinClosed(_)) })) => {
                    if input_open {
                        let _ = input.shutdown().await;
                        input_open = false;
                    }
                }
                Ok(Some(TunnelDown { msg: Some(tunnel_down::Msg::Resize(size)) })) => {
                    if let Some(size) = size_of(Some(size)) {
                        resize(size).await;
                    }
                }
                Ok(Some(TunnelDown { msg: None })) => {}
                Ok(None) | Err(_) => {
                    // The caller left (or gave up waiting): a run's
                    // container is then removed; an exec's command is left
                    // to finish (Docker cannot stop one).
                    debug!("the caller closed the tunnel");
                    if input_open {
                        let _ = input.shutdown().await;
                    }
                    return Err("the caller left".to_string());
                }
            },
        }
    }
}

/// Creates the one-off container, streams it, and removes it.
pub async fn serve_run<R: Runtime>(
    dialer: Dialer,
    node: String,
    runtime: Arc<R>,
    secrets: Arc<NodeSecrets>,
    run_request: RunRequest,
) {
    let RunRequest {
        interactive: request,
        workload,
        secrets: values,
        login,
    } = run_request;
    let (up, mut down) = match dialer.open(request.tunnel_id.clone()).await {
        Ok(opened) => opened,
        Err(e) => {
            warn!("run tunnel: {e}");
            return;
        }
    };
    let name = format!(
        "{}-run-{}",
        container_name(&workload),
        hex::encode(rand::random::<[u8; 4]>())
    );
    let exit = match run(
        &node,
        runtime.as_ref(),
        &secrets,
        (&workload, values, login.as_ref()),
        &name,
        &request,
        &up,
        &mut down,
    )
    .await
    {
        Ok(code) => TunnelExit {
            code,
            error: String::new(),
            container: name.clone(),
        },
        Err(e) => TunnelExit {
            container: name.clone(),
            ..failed(e)
        },
    };
    // Never left behind: the container and its secret files go.
    if let Ok(docker) = runtime.docker_client().await {
        let options = RemoveContainerOptions {
            force: true,
            v: false,
            link: false,
        };
        let _ = docker.remove_container(&name, Some(options)).await;
    }
    let runs = secrets.for_runs();
    let forget = name.clone();
    let _ = tokio::task::spawn_blocking(move || runs.forget_container(&forget)).await;
    send_exit(&up, exit).await;
    drop(up);
    let _ = tokio::time::timeout(Duration::from_secs(5), down.message()).await;
}

#[allow(clippy::too_many_arguments)]
async fn run<R: Runtime>(
    node: &str,
    runtime: &R,
    secrets: &Arc<NodeSecrets>,
    (workload, values, login): (
        &Workload,
        secrets::SecretValues,
        Option<&crate::plan::RegistryLogin>,
    ),
    name: &str,
    request: &Interactive,
    up: &mpsc::Sender<TunnelUp>,
    down: &mut Streaming<TunnelDown>,
) -> Result<i32, String> {
    let image = match &workload.runtime {
        Some(convoy_proto::workload::Runtime::Container(c)) => c.image.clone(),
        _ => return Err(format!("`{}` is not a container", workload.id)),
    };
    // A new revision's image may not be here yet (a pre-deploy hook).
    if !runtime.image_present(&image).await.unwrap_or(false) {
        runtime
            .pull(&image, login)
            .await
            .map_err(|e| e.reason(node))?;
    }
    let delivery = {
        if secrets::mounts_of(workload).is_empty() {
            secrets::Delivery::default()
        } else {
            let runs = secrets.for_runs();
            let (w, n) = (workload.clone(), name.to_string());
            tokio::task::spawn_blocking(move || runs.prepare_container(&n, &w, &values))
                .await
                .map_err(|e| format!("writing secret files: {e}"))??
        }
    };
    let one_off = OneOff {
        command: request.command.clone(),
        tty: request.tty,
        stdin: request.stdin,
    };
    let id = runtime
        .create_one_off(node, workload, &delivery, name, &one_off)
        .await
        .map_err(|e| e.reason(node))?;
    let docker = runtime.docker_client().await.map_err(|e| e.to_string())?;
    let attached = docker
        .attach_container(
            &id,
            Some(AttachContainerOptions {
                stdin: request.stdin,
                stdout: true,
                stderr: true,
                stream: true,
                logs: true,
                detach_keys: None,
            }),
        )
        .await
        .map_err(|e| format!("attaching to {name}: {e}"))?;
    docker
        .start_container(&id, None::<StartContainerOptions>)
        .await
        .map_err(|e| format!("starting {name}: {e}"))?;
    let id_for_resize = id.clone();
    let resize = |docker: Docker, (cols, rows): (u16, u16)| {
        let id = id_for_resize.clone();
        async move {
            let _ = docker
                .resize_container_tty(
                    &id,
                    ResizeContainerTTYOptions {
                        h: i32::from(rows),
                        w: i32::from(cols),
                    },
                )
                .await;
        }
    };
    if let (true, Some(size)) = (request.tty, request.size) {
        resize(docker.clone(), size).await;
    }
    pump(
        attached.output,
        attached.input,
        up,
        down,
        request.stdin,
        |size| resize(docker.clone(), size),
    )
    .await?;
    // The output ended: the container exited (or is about to). bollard's
    // wait is sent when first polled, so `not-running` (not `next-exit`).
    let mut wait = docker.wait_container(
        &id,
        Some(WaitContainerOptions {
            condition: "not-running".to_string(),
        }),
    );
    match wait.next().await {
        Some(Ok(answer)) => Ok(i32::try_from(answer.status_code).unwrap_or(-1)),
        // bollard reports a non-zero exit as an error carrying the code.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
            Ok(i32::try_from(code).unwrap_or(-1))
        }
        Some(Err(e)) => Err(format!("waiting for {name}: {e}")),
        None => Err(format!("waiting for {name}: no answer from Docker")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convoy_proto::UnitStatus;

    fn statuses() -> BTreeMap<String, WorkloadStatus> {
        let mut m = BTreeMap::new();
        m.insert(
            "p/web/1".to_string(),
            WorkloadStatus {
                id: "p/web/1".into(),
                container_id: "abc".into(),
                state: WorkloadState::Running as i32,
                ..Default::default()
            },
        );
        m.insert(
            "p/web/2".to_string(),
            WorkloadStatus {
                id: "p/web/2".into(),
                container_id: "def".into(),
                state: WorkloadState::Exited as i32,
                reason: "exited with code 1".into(),
                ..Default::default()
            },
        );
        m.insert(
            "p/db/1".to_string(),
            WorkloadStatus {
                id: "p/db/1".into(),
                unit: Some(UnitStatus::default()),
                ..Default::default()
            },
        );
        m
    }

    fn open(id: &str, command: &[&str]) -> OpenExec {
        OpenExec {
            tunnel_id: "t".into(),
            workload_id: id.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            tty: true,
            stdin: false,
            size: Some(TerminalSize { cols: 80, rows: 24 }),
        }
    }

    #[test]
    fn exec_goes_to_a_running_container_of_this_node_only() {
        let ok = resolve_exec(open("p/web/1", &["ls"]), &statuses(), "n1").unwrap();
        assert_eq!(ok.target, "abc");
        assert_eq!(ok.size, Some((80, 24)));
        let e = resolve_exec(open("p/web/2", &["ls"]), &statuses(), "n1").unwrap_err();
        assert_eq!(
            e,
            "`p/web/2` has no running container on node `n1` (exited with code 1)"
        );
        let e = resolve_exec(open("p/db/1", &["ls"]), &statuses(), "n1").unwrap_err();
        assert_eq!(e, "`p/db/1` is a systemd unit: exec runs in containers");
        let e = resolve_exec(open("p/x/1", &["ls"]), &statuses(), "n1").unwrap_err();
        assert_eq!(e, "`p/x/1` does not run on node `n1`");
        let e = resolve_exec(open("p/web/1", &[]), &statuses(), "n1").unwrap_err();
        assert_eq!(e, "no command given");
        let big = "x".repeat(MAX_COMMAND_BYTES + 1);
        let e = resolve_exec(open("p/web/1", &[&big]), &statuses(), "n1").unwrap_err();
        assert_eq!(e, "the command is over 64 KiB");
    }

    #[test]
    fn a_run_needs_a_container_of_the_plan() {
        let open = RunOnce {
            tunnel_id: "t".into(),
            workload_id: "p/web/1".into(),
            command: vec!["migrate".into()],
            ..Default::default()
        };
        let e = resolve_run(open, None, "n1").unwrap_err();
        assert_eq!(e, "`p/web/1` is not a container of node `n1`'s plan");
    }
}

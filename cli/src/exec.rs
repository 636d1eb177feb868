//! `convoy exec INSTANCE -- CMD` and `convoy run SERVICE -- CMD`
//! (docs/LOGS.md): a command in an instance's container, or a one-off
//! container from a service's current spec, with its output here and its
//! exit code as ours. `-i` sends standard input; `-t` asks for a terminal
//! (the local one goes raw while it runs, and window size changes follow).

use std::io::{IsTerminal, Read, Write};

use anyhow::{anyhow, Result};
use clap::Args;
use convoy_proto as pb;
use tokio::sync::mpsc;

use crate::commands::{connect, selected_env, Output};
use crate::config::Flags;

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Send standard input to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// `exec`: an instance (`web-2`) or a service (its lowest running
    /// instance). `run`: a service.
    pub target: String,
    /// The program and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// Which of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Run,
}

/// Restores the terminal when dropped.
struct RawMode;

impl RawMode {
    fn enable() -> Option<Self> {
        crossterm::terminal::enable_raw_mode()
            .ok()
            .map(|()| RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

fn terminal_size() -> Option<pb::TerminalSize> {
    crossterm::terminal::size()
        .ok()
        .map(|(cols, rows)| pb::TerminalSize {
            cols: u32::from(cols),
            rows: u32::from(rows),
        })
}

pub async fn run(kind: Kind, args: ExecArgs, flags: &Flags) -> Result<Output> {
    let ExecArgs {
        interactive,
        tty,
        target,
        command,
    } = args;
    let local_tty = tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let (input, input_rx) = mpsc::channel::<pb::ExecInput>(16);
    let start = pb::ExecStart {
        env: selected_env(),
        target,
        command,
        tty,
        stdin: interactive,
        size: if local_tty { terminal_size() } else { None },
    };
    input
        .send(pb::ExecInput {
            msg: Some(pb::exec_input::Msg::Start(start)),
        })
        .await
        .map_err(|_| anyhow!("cannot start"))?;
    let mut coordinator = connect(flags).await?;
    let mut output = coordinator.interactive(kind == Kind::Run, input_rx).await?;
    // The first answer says where it runs.
    match coordinator.next_output(&mut output).await? {
        Some(pb::ExecOutput {
            msg: Some(pb::exec_output::Msg::Started(_)),
        }) => {}
        other => {
            return Err(anyhow!(
                "the coordinator answered {other:?} instead of starting"
            ))
        }
    }
    let _raw = if local_tty { RawMode::enable() } else { None };
    if interactive {
        spawn_stdin(input.clone());
    }
    #[cfg(unix)]
    if local_tty {
        spawn_resizes(input.clone());
    }
    // Without -i the command's input is closed at once.
    if !interactive {
        let _ = input
            .send(pb::ExecInput {
                msg: Some(pb::exec_input::Msg::StdinClosed(true)),
            })
            .await;
    }
    loop {
        let Some(message) = coordinator.next_output(&mut output).await? else {
            return Err(anyhow!(
                "the coordinator ended the stream before the exit code"
            ));
        };
        match message.msg {
            Some(pb::exec_output::Msg::Stdout(bytes)) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)?;
                out.flush()?;
            }
            Some(pb::exec_output::Msg::Stderr(bytes)) => {
                let mut err = std::io::stderr().lock();
                err.write_all(&bytes)?;
                err.flush()?;
            }
            Some(pb::exec_output::Msg::ExitCode(code)) => {
                // Exit codes outside 0-255 (Docker's -1) read as 255.
                let exit = u8::try_from(code).unwrap_or(255);
                return Ok(Output {
                    exit,
                    ..Output::default()
                });
            }
            Some(pb::exec_output::Msg::Started(_)) | None => {}
        }
    }
}

/// Reads standard input on a thread of its own (it blocks) and sends it
/// down; EOF closes the command's input.
fn spawn_stdin(input: mpsc::Sender<pb::ExecInput>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let msg = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => pb::exec_input::Msg::StdinClosed(true),
                Ok(n) => pb::exec_input::Msg::Stdin(buf[..n].to_vec()),
            };
            let last = matches!(msg, pb::exec_input::Msg::StdinClosed(_));
            if input
                .blocking_send(pb::ExecInput { msg: Some(msg) })
                .is_err()
                || last
            {
                return;
            }
        }
    });
}

/// Sends the terminal's new size on every SIGWINCH.
#[cfg(unix)]
fn spawn_resizes(input: mpsc::Sender<pb::ExecInput>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut winch) = signal(SignalKind::window_change()) else {
        return;
    };
    tokio::spawn(async move {
        while winch.recv().await.is_some() {
            let Some(size) = terminal_size() else {
                continue;
            };
            let msg = pb::ExecInput {
                msg: Some(pb::exec_input::Msg::Resize(size)),
            };
            if input.send(msg).await.is_err() {
                return;
            }
        }
    });
}

//! Running short commands with a deadline, and signalling long-lived ones.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Runs `cmd` to completion, killing it after `timeout`.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    output_with_input_within(cmd, None, timeout)
}

/// [`output_within`], with `input` on the command's standard input (then
/// closed); none: no standard input.
pub fn output_with_input_within(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    // Written from a thread: a command that answers before reading all of
    // it cannot stall the caller.
    if let (Some(mut pipe), Some(input)) = (child.stdin.take(), input) {
        let input = input.to_vec();
        thread::spawn(move || {
            use std::io::Write as _;
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = match wait_within(&mut child, timeout)? {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
            let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
            bail!("{shown} did not finish within {timeout:?}\nstdout: {out}\nstderr: {err}");
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` to exit; `None` if it is still running after `timeout`.
pub fn wait_within(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal by name (`TERM`, `KILL`, ...) with kill(1): the harness
/// has no libc binding and `Child::kill` only knows SIGKILL.
pub fn signal(pid: u32, name: &str) -> Result<()> {
    let out = output_within(
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string()),
        Duration::from_secs(10),
    )?;
    if !out.status.success() {
        bail!(
            "kill -{name} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The stdout of a command that must succeed.
pub fn stdout_of(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = output_within(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

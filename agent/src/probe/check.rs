//! Running one check once: an HTTP GET, a TCP connect or a command in the
//! container, bounded by the probe's timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::config::{human, Check, ProbeConfig};
use super::http::http_get;
use crate::runtime::{cut_output, Runtime};

/// One run of a check: whether it passed, and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult {
    pub passed: bool,
    pub output: String,
    pub took: Duration,
}

/// Runs `config`'s check once against container `container_id`, bounded by
/// its timeout. `address` caches where the container listens; it is cleared
/// after a failure so that the next run looks again.
pub async fn run_check<R: Runtime>(
    runtime: &R,
    container_id: &str,
    config: &ProbeConfig,
    address: &mut Option<SocketAddr>,
) -> RunResult {
    let started = Instant::now();
    let (passed, output) = match &config.check {
        Check::Invalid(reason) => (false, format!("invalid probe: {reason}")),
        // The runtime bounds it: the command is killed with the exec.
        Check::Exec { command } => {
            match runtime.exec(container_id, command, config.timeout).await {
                Ok(out) => exec_verdict(out.exit_code, &out.output),
                Err(e) => (false, e.to_string()),
            }
        }
        Check::Http { port, .. } | Check::Tcp { port } => {
            let port = *port;
            let run = async {
                let target = match address {
                    Some(target) => *target,
                    None => resolve(runtime, container_id, port).await?,
                };
                let result = match &config.check {
                    Check::Http {
                        path,
                        expect_status,
                        ..
                    } => http_get(target, path, *expect_status).await,
                    _ => tcp_connect(target).await,
                };
                Ok::<_, String>((target, result))
            };
            match tokio::time::timeout(config.timeout, run).await {
                Ok(Ok((target, (passed, output)))) => {
                    *address = passed.then_some(target);
                    (passed, output)
                }
                Ok(Err(e)) => {
                    *address = None;
                    (false, e)
                }
                Err(_) => {
                    *address = None;
                    (false, format!("no answer within {}", human(config.timeout)))
                }
            }
        }
    };
    RunResult {
        passed,
        output: cut_output(&output),
        took: started.elapsed(),
    }
}

pub(super) async fn resolve<R: Runtime>(
    runtime: &R,
    container_id: &str,
    port: u16,
) -> Result<SocketAddr, String> {
    let info = runtime
        .inspect(container_id)
        .await
        .map_err(|e| e.to_string())?;
    info.address(port)
        .ok_or_else(|| format!("the container has no IP address and does not publish port {port}"))
}

pub(super) fn exec_verdict(exit_code: Option<i64>, output: &str) -> (bool, String) {
    let output = output.trim();
    match exit_code {
        Some(0) => (true, output.to_string()),
        Some(code) if output.is_empty() => (false, format!("exit code {code}")),
        Some(code) => (false, format!("exit code {code}: {output}")),
        None if output.is_empty() => (false, "the command's exit code is unknown".to_string()),
        None => (false, format!("exit code unknown: {output}")),
    }
}

pub(super) async fn tcp_connect(target: SocketAddr) -> (bool, String) {
    match TcpStream::connect(target).await {
        Ok(_) => (true, format!("connected to {target}")),
        Err(e) => (false, format!("connecting to {target}: {e}")),
    }
}

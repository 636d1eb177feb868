//! The coordinator under test: a `convoyd serve` child started on loopback
//! ports in a temp data dir (or one already running, given by address), with
//! what the benchmarks read of it: its RSS and CPU time from /proc, kill and
//! restart on the same ports and data dir.

use std::{
    fs::{File, OpenOptions},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// How to reach (or start) the coordinator.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start `convoyd serve` from `bin` in a fresh temp dir.
    Spawn {
        bin: PathBuf,
        /// `--node-lost-after`, e.g. "2500ms".
        lost_after: String,
    },
    /// One already running: its agent and API addresses and data dir (for
    /// the CA and the admin token); `pid` for memory figures.
    External {
        agent_addr: SocketAddr,
        api_addr: SocketAddr,
        data_dir: PathBuf,
        pid: Option<u32>,
    },
}

/// `convoyd` beside this executable (`target/release/convoy-bench` →
/// `target/release/convoyd`; a test in `target/debug/deps` →
/// `target/debug/convoyd`).
pub fn default_convoyd() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir.join("convoyd")
}

pub struct Coordinator {
    pub data_dir: PathBuf,
    pub agent_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    process: Option<Process>,
    pid: Option<u32>,
    _tmp: Option<tempfile::TempDir>,
}

struct Process {
    bin: PathBuf,
    lost_after: String,
    child: Child,
    dir: PathBuf,
}

/// Addresses from the `convoyd ready: api=https://A agents=B http=http://C` line.
fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr, SocketAddr)> {
    let rest = line.split("convoyd ready:").nth(1)?;
    let mut api = None;
    let mut agents = None;
    let mut http = None;
    for word in rest.split_whitespace() {
        if let Some(v) = word.strip_prefix("api=https://") {
            api = v.parse().ok();
        } else if let Some(v) = word.strip_prefix("agents=") {
            agents = v.parse().ok();
        } else if let Some(v) = word.strip_prefix("http=http://") {
            http = v.parse().ok();
        }
    }
    Some((api?, agents?, http?))
}

impl Coordinator {
    pub async fn start(target: Target) -> Result<Self> {
        match target {
            Target::External {
                agent_addr,
                api_addr,
                data_dir,
                pid,
            } => Ok(Self {
                data_dir,
                agent_addr,
                api_addr,
                http_addr: None,
                process: None,
                pid,
                _tmp: None,
            }),
            Target::Spawn { bin, lost_after } => {
                if !bin.is_file() {
                    bail!(
                        "{} is missing: build it first (`cargo build --release -p convoy-coordinator`) or pass --convoyd",
                        bin.display()
                    );
                }
                let mut tmp = tempfile::Builder::new().prefix("convoy-bench-").tempdir()?;
                // CONVOY_BENCH_KEEP=1 keeps the coordinator's data dir and log.
                if std::env::var_os("CONVOY_BENCH_KEEP").is_some() {
                    tmp.disable_cleanup(true);
                    eprintln!("keeping {}", tmp.path().display());
                }
                let dir = tmp.path().to_path_buf();
                let data_dir = dir.join("coordinator");
                let any: SocketAddr = "127.0.0.1:0".parse()?;
                let (child, started) = spawn(&bin, &dir, &lost_after, (any, any, any))?;
                let mut process = Process {
                    bin,
                    lost_after,
                    child,
                    dir,
                };
                let (api, agents, http) = wait_ready(&mut process, started).await?;
                Ok(Self {
                    data_dir,
                    agent_addr: agents,
                    api_addr: api,
                    http_addr: Some(http),
                    pid: Some(process.child.id()),
                    process: Some(process),
                    _tmp: Some(tmp),
                })
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) -> Result<()> {
        let p = self
            .process
            .as_mut()
            .context("cannot kill a coordinator this harness did not start")?;
        p.child.kill()?;
        p.child.wait()?;
        Ok(())
    }

    /// Starts it again on the same ports and data dir; returns once it
    /// prints its ready line, with how long that took.
    pub async fn restart(&mut self) -> Result<Duration> {
        let addrs = (
            self.api_addr,
            self.agent_addr,
            self.http_addr.context("no HTTP address")?,
        );
        let p = self
            .process
            .as_mut()
            .context("cannot restart a coordinator this harness did not start")?;
        let (child, started) = spawn(&p.bin, &p.dir, &p.lost_after, addrs)?;
        p.child = child;
        self.pid = Some(p.child.id());
        wait_ready(p, started).await?;
        Ok(started.elapsed())
    }

    /// Whether the child is still running (a panic that aborts ends it).
    pub fn running(&mut self) -> bool {
        match self.process.as_mut() {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// The child's log (stderr), empty for an external coordinator.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .and_then(|p| std::fs::read(p.dir.join("convoyd.log")).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid?)
    }

    /// User + system CPU time of the coordinator so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.pid?)
    }

    /// The open-file limit the coordinator runs with.
    pub fn nofile_limit(&self) -> Option<String> {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid?)).ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let v: Vec<&str> = line.split_whitespace().collect();
        Some(format!("{} (hard {})", v.get(3)?, v.get(4)?))
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Some(p) = self.process.as_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

fn spawn(
    bin: &Path,
    dir: &Path,
    lost_after: &str,
    (api, agents, http): (SocketAddr, SocketAddr, SocketAddr),
) -> Result<(Child, Instant)> {
    let append = |name: &str| -> Result<File> {
        Ok(OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))?)
    };
    // A fresh stdout per start: the ready line is looked for there.
    let stdout = File::create(dir.join("convoyd.out"))?;
    let started = Instant::now();
    let child = Command::new(bin)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("coordinator"))
        .args(["--api-listen", &api.to_string()])
        .args(["--agent-listen", &agents.to_string()])
        .args(["--http-listen", &http.to_string()])
        .args(["--node-lost-after", lost_after])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(append("convoyd.log")?)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    Ok((child, started))
}

async fn wait_ready(
    p: &mut Process,
    started: Instant,
) -> Result<(SocketAddr, SocketAddr, SocketAddr)> {
    let out = p.dir.join("convoyd.out");
    while started.elapsed() < Duration::from_secs(60) {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(addrs) = text.lines().find_map(parse_ready) {
            return Ok(addrs);
        }
        if let Some(status) = p.child.try_wait()? {
            let log = std::fs::read_to_string(p.dir.join("convoyd.log")).unwrap_or_default();
            bail!("convoyd exited ({status}) before it was ready:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("convoyd printed no ready line within 60 s")
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime from /proc/PID/stat (clock ticks of 1/100 s, USER_HZ).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_the_three_addresses() {
        let line = "convoyd ready: api=https://127.0.0.1:4000 agents=127.0.0.1:4001 http=http://127.0.0.1:4002";
        let (api, agents, http) = parse_ready(line).unwrap();
        assert_eq!(api.port(), 4000);
        assert_eq!(agents.port(), 4001);
        assert_eq!(http.port(), 4002);
    }

    #[test]
    fn cpu_time_of_this_process_is_readable() {
        assert!(cpu_time(std::process::id()).is_some());
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}

//! A real etcd cluster of the test's own: `EtcdCluster::start(n)` runs `n`
//! `/usr/bin/etcd` members on loopback (free client and peer ports, a temp
//! data dir and log file each, fast heartbeats, transaction limits raised as
//! docs/STORE.md asks), waits until every member answers, and kills them
//! all when dropped, also when the test panics. `kill(i)` and `restart(i)`
//! take one member away and bring it back on its data.

use std::fs::{self, OpenOptions};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::http::get;

const ETCD: &str = "/usr/bin/etcd";
/// Every member answering after a start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }
}

pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    /// Flags after the defaults (a later flag wins).
    extra: Vec<String>,
    _dir: TempDir,
}

impl EtcdCluster {
    /// Starts `members` members and waits until each answers; panics (after
    /// killing them, with the tail of each log) when they do not.
    pub fn start(members: usize) -> EtcdCluster {
        EtcdCluster::start_with(members, &[])
    }

    /// Like [`EtcdCluster::start`], with `extra` flags after the defaults
    /// (e.g. `["--max-txn-ops", "10"]` to meet etcd's limits).
    pub fn start_with(members: usize, extra: &[&str]) -> EtcdCluster {
        assert!(members > 0, "an etcd cluster needs a member");
        let dir = tempfile::Builder::new()
            .prefix("convoy-etcd-")
            .tempdir()
            .expect("cannot make a temp dir");
        // All ports at once, listeners held until every one is picked, so
        // two members never get the same port.
        let listeners: Vec<TcpListener> = (0..members * 2)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("no local address").port())
            .collect();
        drop(listeners);
        let token = format!(
            "convoy-test-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let members: Vec<Member> = (0..members)
            .map(|i| Member {
                name: format!("m{}", i + 1),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                dir: dir.path().join(format!("m{}", i + 1)),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            token,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
        };
        let started = (0..cluster.members.len())
            .try_for_each(|i| cluster.spawn(i))
            .and_then(|()| cluster.wait_healthy(&cluster.endpoints()));
        if let Err(e) = started {
            let logs = cluster.logs();
            drop(cluster);
            panic!("cannot start an etcd cluster: {e:#}\n{logs}");
        }
        cluster
    }

    /// `http://127.0.0.1:PORT` of each member, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,...` (for `--store`).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// SIGKILLs member `i` (0-based).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data and waits until it answers.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let endpoint = self.members[i].endpoint();
        if let Err(e) = self.spawn(i).and_then(|()| self.wait_healthy(&[endpoint])) {
            panic!(
                "cannot restart etcd member {}: {e:#}\n{}",
                self.members[i].name,
                self.logs()
            );
        }
    }

    /// Kills every member (what dropping the cluster does).
    pub fn stop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// The last lines of every member's log.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "---- etcd {} ({}) ----\n{}",
                    m.name,
                    m.log().display(),
                    tail(&m.log())
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        fs::create_dir_all(&m.dir).with_context(|| format!("cannot make {}", m.dir.display()))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.log())
            .with_context(|| format!("cannot open {}", m.log().display()))?;
        let err = log.try_clone().context("cannot dup a log file")?;
        let client = m.endpoint();
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(ETCD)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(m.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            .args(["--max-txn-ops", "100000"])
            .args(["--max-request-bytes", "33554432"])
            .args(["--heartbeat-interval", "50"])
            .args(["--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {ETCD}"))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Waits until every one of `endpoints` says it is healthy.
    fn wait_healthy(&mut self, endpoints: &[String]) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for m in &mut self.members {
                if let Some(child) = m.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        bail!("etcd member {} exited: {status}", m.name);
                    }
                }
            }
            // etcd's /health on the client port: a leader, no alarms.
            let mut last = String::new();
            for e in endpoints {
                let port = e.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                let addr = SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0)));
                match get(addr, "/health") {
                    Ok((200, body)) if body.contains(r#""health":"true""#) => {}
                    Ok((code, body)) => last = format!("{e}/health: {code} {}", body.trim()),
                    Err(err) => last = format!("{e}/health: {err:#}"),
                }
            }
            if last.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("not healthy after {START_TIMEOUT:?}: {}", last.trim());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.stop();
    }
}

fn tail(path: &Path) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

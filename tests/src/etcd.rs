//! A real etcd cluster of the test's own: `EtcdCluster::start(n)` runs `n`
//! `/usr/bin/etcd` members on loopback (free client and peer ports, a temp
//! data dir and log file each, fast heartbeats, transaction limits raised as
//! docs/STORE.md asks), waits until every member answers, and kills them
//! all when dropped, also when the test panics. `kill(i)` and `restart(i)`
//! take one member away and bring it back on its data. `start_tls(n)` serves
//! clients over TLS with a CA of its own and asks them for a certificate.

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
    /// Plain HTTP `/health` and `/metrics`, also when clients use TLS.
    metrics_port: u16,
    scheme: &'static str,
    dir: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.client_port)
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
    tls: Option<TlsFiles>,
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
        EtcdCluster::start_inner(members, extra, false)
    }

    /// Members that serve clients over TLS only (`https://`), with
    /// certificates of a CA made for the cluster, and that require a client
    /// certificate of that CA: [`EtcdCluster::tls`] has the files.
    pub fn start_tls(members: usize) -> EtcdCluster {
        EtcdCluster::start_inner(members, &[], true)
    }

    fn start_inner(members: usize, extra: &[&str], tls: bool) -> EtcdCluster {
        assert!(members > 0, "an etcd cluster needs a member");
        let dir = tempfile::Builder::new()
            .prefix("convoy-etcd-")
            .tempdir()
            .expect("cannot make a temp dir");
        // All ports at once, listeners held until every one is picked, so
        // two members never get the same port.
        let listeners: Vec<TcpListener> = (0..members * 3)
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
                client_port: ports[3 * i],
                peer_port: ports[3 * i + 1],
                metrics_port: ports[3 * i + 2],
                scheme: if tls { "https" } else { "http" },
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
            tls: None,
            _dir: dir,
        };
        if tls {
            match make_tls(cluster._dir.path()) {
                Ok(files) => cluster.tls = Some(files),
                Err(e) => panic!("cannot make the etcd cluster's certificates: {e:#}"),
            }
        }
        let started = (0..cluster.members.len())
            .try_for_each(|i| cluster.spawn(i))
            .and_then(|()| cluster.wait_healthy(&(0..cluster.members.len()).collect::<Vec<_>>()));
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

    /// The CA, client certificate and key (PEM files) of a
    /// [`EtcdCluster::start_tls`] cluster; `None` for plain ones.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,...` (for `--store`; `etcds://`
    /// when the cluster uses TLS).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://{}", hosts.join(","))
    }

    /// A running member that is not the raft leader (its own `/metrics`
    /// says `etcd_server_is_leader 0`): losing it needs no election.
    pub fn follower(&self) -> Option<usize> {
        self.member_saying("etcd_server_is_leader 0")
    }

    /// The running member that is etcd's raft leader (`etcd_server_is_leader 1`).
    pub fn leader(&self) -> Option<usize> {
        self.member_saying("etcd_server_is_leader 1")
    }

    fn member_saying(&self, line: &str) -> Option<usize> {
        self.members.iter().position(|m| {
            let addr = SocketAddr::from(([127, 0, 0, 1], m.metrics_port));
            m.child.is_some()
                && matches!(get(addr, "/metrics"), Ok((200, body))
                    if body.lines().any(|l| l.trim() == line))
        })
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
        if let Err(e) = self.spawn(i).and_then(|()| self.wait_healthy(&[i])) {
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
        let metrics = format!("http://127.0.0.1:{}", m.metrics_port);
        let mut cmd = Command::new(ETCD);
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(m.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--listen-metrics-urls", &metrics])
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

    /// Waits until each of the members `which` says it is healthy.
    fn wait_healthy(&mut self, which: &[usize]) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for m in &mut self.members {
                if let Some(child) = m.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        bail!("etcd member {} exited: {status}", m.name);
                    }
                }
            }
            // etcd's /health (a leader, no alarms) on the plain metrics port.
            let mut last = String::new();
            for &i in which {
                let m = &self.members[i];
                let addr = SocketAddr::from(([127, 0, 0, 1], m.metrics_port));
                match get(addr, "/health") {
                    Ok((200, body)) if body.contains(r#""health":"true""#) => {}
                    Ok((code, body)) => {
                        last = format!("{} /health: {code} {}", m.name, body.trim())
                    }
                    Err(err) => last = format!("{} /health: {err:#}", m.name),
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

/// PEM files of a TLS cluster.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    /// The members' (for 127.0.0.1 and localhost).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client's, signed by the same CA.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A CA, a server certificate for loopback and a client certificate, under
/// `dir/tls/`.
fn make_tls(dir: &Path) -> Result<TlsFiles> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let tls = dir.join("tls");
    fs::create_dir_all(&tls).with_context(|| format!("cannot make {}", tls.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "convoy test etcd CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| -> Result<(String, String)> {
        let mut p = CertificateParams::new(names)?;
        p.distinguished_name
            .push(DnType::CommonName, "convoy test etcd");
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &ca, &ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client_cert, client_key) =
        leaf(vec!["convoyd".into()], ExtendedKeyUsagePurpose::ClientAuth)?;
    let files = TlsFiles {
        ca: tls.join("ca.pem"),
        server_cert: tls.join("server.pem"),
        server_key: tls.join("server-key.pem"),
        client_cert: tls.join("client.pem"),
        client_key: tls.join("client-key.pem"),
    };
    for (path, pem) in [
        (&files.ca, ca.pem()),
        (&files.server_cert, server_cert),
        (&files.server_key, server_key),
        (&files.client_cert, client_cert),
        (&files.client_key, client_key),
    ] {
        fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(files)
}

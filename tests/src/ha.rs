//! Several coordinators on one etcd: a [`Cluster`] whose own coordinator
//! runs on etcd, plus more `convoyd serve` processes on the same store
//! (their data dirs hold copies of the first one's CA and secrets key), and
//! agents and the CLI given every coordinator's address.

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::bins::bin;
use crate::cluster::{free_port, Cluster};
use crate::etcd::EtcdCluster;
use crate::process::signal;

/// One extra coordinator process.
pub struct Peer {
    pub name: String,
    pub data_dir: PathBuf,
    pub api_addr: SocketAddr,
    pub agent_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub log: PathBuf,
    child: Option<Child>,
}

/// Coordinators `c1..cN` on one etcd; `c1` is the [`Cluster`]'s own.
pub struct Ha {
    pub c: Cluster,
    pub etcd: EtcdCluster,
    pub peers: Vec<Peer>,
    /// The leader's lease, as every coordinator is given it.
    pub ttl: &'static str,
    /// `c1`'s way to etcd, when relayed.
    relays: Vec<Relay>,
}

impl Ha {
    /// `coordinators` coordinators on an etcd of `members` members; `c1`
    /// leads first (it starts alone).
    pub fn start(coordinators: usize, members: usize) -> Ha {
        Ha::start_with(coordinators, members, false)
    }

    /// [`Ha::start`]; with `relayed`, `c1` reaches etcd only through
    /// [`Relay`]s (see [`Ha::cut_c1`]).
    pub fn start_with(coordinators: usize, members: usize, relayed: bool) -> Ha {
        let etcd = EtcdCluster::start(members);
        let ttl = "2s";
        let mut relays = Vec::new();
        let c1_url = if relayed {
            for e in etcd.endpoints() {
                let to: SocketAddr = e.trim_start_matches("http://").parse().unwrap();
                relays.push(Relay::start(to));
            }
            let hosts: Vec<String> = relays.iter().map(|r| r.addr.to_string()).collect();
            format!("etcd://{}", hosts.join(","))
        } else {
            etcd.url()
        };
        let c =
            Cluster::start_with_args(&["--store", &c1_url, "--name", "c1", "--leader-ttl", ttl]);
        let mut ha = Ha {
            c,
            etcd,
            peers: Vec::new(),
            ttl,
            relays,
        };
        for i in 2..=coordinators {
            let name = format!("c{i}");
            let data_dir = ha.c.root().join(&name);
            fs::create_dir_all(data_dir.join("pki")).unwrap();
            for f in ["pki/ca.pem", "pki/ca.key", "secrets.key"] {
                let from = ha.c.data_dir.join(f);
                if from.exists() {
                    fs::copy(&from, data_dir.join(f)).unwrap();
                }
            }
            let peer = Peer {
                log: ha.c.root().join(format!("convoyd-{name}.log")),
                name,
                data_dir,
                api_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                agent_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                http_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                child: None,
            };
            ha.peers.push(peer);
            let idx = ha.peers.len() - 1;
            ha.start_peer(idx);
        }
        let agents: Vec<String> = std::iter::once(ha.c.agent_addr)
            .chain(ha.peers.iter().map(|p| p.agent_addr))
            .map(|a| a.to_string())
            .collect();
        let apis: Vec<String> = std::iter::once(ha.c.api_addr)
            .chain(ha.peers.iter().map(|p| p.api_addr))
            .map(|a| format!("https://{a}"))
            .collect();
        ha.c.agent_coordinators = Some(agents.join(","));
        ha.c.cli_addresses = Some(apis.join(","));
        ha
    }

    fn start_peer(&mut self, idx: usize) {
        let url = self.etcd.url();
        let ttl = self.ttl;
        let peer = &mut self.peers[idx];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&peer.log)
            .unwrap();
        let child = Command::new(bin("convoyd"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&peer.data_dir)
            .args(["--api-listen", &peer.api_addr.to_string()])
            .args(["--agent-listen", &peer.agent_addr.to_string()])
            .args(["--http-listen", &peer.http_addr.to_string()])
            .args(["--store", &url, "--name", &peer.name, "--leader-ttl", ttl])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start convoyd");
        peer.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !fs::read_to_string(&peer.log)
            .unwrap_or_default()
            .contains("standing by")
        {
            assert!(
                Instant::now() < deadline,
                "{} did not stand by within 30 s:\n{}",
                peer.name,
                fs::read_to_string(&peer.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every coordinator's HTTP address, `c1` first.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.c.http_addr)
            .chain(self.peers.iter().map(|p| p.http_addr))
            .collect()
    }

    /// Which coordinators say they lead now (by `convoy_coordinator_leader`
    /// on their `/metrics`), as indexes (0 = `c1`).
    pub fn leaders(&self) -> Vec<usize> {
        self.http_addrs()
            .into_iter()
            .enumerate()
            .filter(|(_, addr)| {
                crate::http::get(*addr, "/metrics")
                    .map(|(code, body)| {
                        code == 200
                            && body
                                .lines()
                                .any(|l| l.trim() == "convoy_coordinator_leader 1")
                    })
                    .unwrap_or(false)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Waits until exactly one coordinator other than `not` leads; returns
    /// it and how long that took.
    pub fn wait_new_leader(&self, not: usize, within: Duration) -> Result<(usize, Duration)> {
        let start = Instant::now();
        loop {
            let leaders = self.leaders();
            if leaders.len() == 1 && leaders[0] != not {
                return Ok((leaders[0], start.elapsed()));
            }
            if start.elapsed() > within {
                return Err(anyhow!(
                    "no new leader within {within:?}: leaders now {leaders:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id of coordinator `i` (0 = `c1`).
    fn pid(&self, i: usize) -> Option<u32> {
        if i == 0 {
            self.c.coordinator_pid()
        } else {
            self.peers[i - 1].child.as_ref().map(|c| c.id())
        }
    }

    /// SIGKILL to coordinator `i`.
    pub fn kill(&mut self, i: usize) {
        if i == 0 {
            self.c.kill_coordinator();
        } else if let Some(mut child) = self.peers[i - 1].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP / SIGCONT to coordinator `i`: a frozen process, as a long GC
    /// pause or a stalled VM looks.
    pub fn freeze(&self, i: usize, frozen: bool) {
        let pid = self.pid(i).expect("the coordinator is not running");
        signal(pid, if frozen { "STOP" } else { "CONT" }).unwrap();
    }

    /// Cuts `c1` off from etcd (or heals it); the others still reach it.
    pub fn cut_c1(&self, cut: bool) {
        assert!(!self.relays.is_empty(), "c1 was not started relayed");
        for r in &self.relays {
            r.cut(cut);
        }
    }

    /// The log of coordinator `i`.
    pub fn log(&self, i: usize) -> String {
        if i == 0 {
            self.c.coordinator_log()
        } else {
            fs::read_to_string(&self.peers[i - 1].log).unwrap_or_default()
        }
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (i, p) in self.peers.iter().enumerate() {
                eprintln!(
                    "---- {} (coordinator {}) log ----\n{}",
                    p.name,
                    i + 2,
                    fs::read_to_string(&p.log).unwrap_or_default()
                );
            }
        }
        for p in &mut self.peers {
            if let Some(mut child) = p.child.take() {
                let _ = signal(child.id(), "CONT");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A TCP relay on loopback that can be cut: while cut, its connections are
/// shut down and new ones closed at once, as a network partition between
/// one coordinator and etcd looks to both (refused, not hanging).
pub struct Relay {
    pub addr: SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    /// Relays a free loopback port to `to`.
    pub fn start(to: SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a relay port");
        let addr = listener.local_addr().unwrap();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(to) else {
                    continue;
                };
                if let Ok(mut o) = o.lock() {
                    o.extend(client.try_clone().ok());
                    o.extend(server.try_clone().ok());
                }
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { addr, cut, open }
    }

    /// Cuts (`true`) or heals (`false`) the relay.
    pub fn cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
        if cut {
            if let Ok(mut open) = self.open.lock() {
                for s in open.drain(..) {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
        }
    }
}

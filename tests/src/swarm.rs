//! A two-engine Docker Swarm of the test's own, beside the machine's main
//! Docker engine, which it never touches (other tests share that one and run
//! in parallel). `SwarmPair::start()` runs two extra `dockerd`s, each with
//! its own config file, data and exec roots, unix socket, pidfile and
//! containerd namespaces, `--iptables=false --ip-masq=false`:
//!
//! - the manager in the host's network namespace, on a bridge of its own
//!   made beforehand (`-b`) and a `docker_gwbridge` of its own (Swarm
//!   otherwise makes a Linux bridge of that very name, shared by every
//!   engine on the host); it inits the swarm at `10.212.SLOT.1:2377` (never
//!   the main engine's address or port), with a VXLAN port of the slot's;
//! - the worker in a network namespace of its own (`nsenter --net`), joined
//!   from `10.212.SLOT.2` over a veth pair. Two engines in one namespace
//!   cannot both run tasks on one overlay network (the second fails with
//!   "error creating vxlan interface: file exists").
//!
//! The test image is loaded into both (`docker save` / `docker load`: no
//! registry here). Dropping the pair leaves the swarm, stops both daemons
//! and removes their namespace, links, mounts and directories, also when
//! the test panics.
//!
//! Each pair holds a slot (1..=MAX_SLOTS, a `flock`ed file under
//! /tmp/convoy-swarm-slots, released by the kernel even when the test
//! process is killed): names, subnets, addresses and the VXLAN port derive
//! from it, so pairs of tests running side by side never collide; whatever
//! a killed run left in a slot is cleaned when it is taken again. Every
//! step is bounded in time. Needs root (`ip`, `nsenter`, `dockerd`); the
//! engines store images with overlay2, or with `fuse-overlayfs` where
//! overlay2 cannot run (docs/SWARM.md).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::image::ensure_test_image;
use crate::process::{output_within, signal, stdout_of, wait_within};

/// Pairs that can run at once on one machine.
const MAX_SLOTS: u32 = 48;
/// One `docker`, `ip` or `umount` call.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// A new `dockerd` answering on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// `dockerd` exiting after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Where the slots' lock files are.
const SLOTS_DIR: &str = "/tmp/convoy-swarm-slots";

/// One extra Docker engine.
#[derive(Debug)]
pub struct Engine {
    /// `m` (manager) or `w` (worker).
    pub role: &'static str,
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// The Linux bridge its default network uses (`-b`), made beforehand
    /// (host's network namespace only).
    pub bridge: String,
    /// The Linux bridge of its `docker_gwbridge` (host's namespace only).
    pub gw_bridge: String,
    /// Its own network namespace (`/run/netns/NAME`), reached from the host
    /// over a veth pair; `None`: the host's.
    pub netns: Option<String>,
    /// Its Swarm address.
    pub addr: String,
    child: Option<Child>,
}

impl Engine {
    /// `unix:///.../sock`, for `DOCKER_HOST` and `docker -H`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// `docker -H THIS ARGS`; its stdout, or an error when it fails.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        stdout_of(
            Command::new("docker").arg("-H").arg(self.host()).args(args),
            STEP_TIMEOUT,
        )
    }

    /// `docker info`'s Swarm field `field` (`NodeID`, `LocalNodeState`, ...).
    pub fn swarm_field(&self, field: &str) -> Result<String> {
        Ok(self
            .docker(&["info", "--format", &format!("{{{{.Swarm.{field}}}}}")])?
            .trim()
            .to_string())
    }

    /// The engine's node ID in the swarm.
    pub fn node_id(&self) -> Result<String> {
        self.swarm_field("NodeID")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }

    /// Makes its bridge, starts its dockerd and waits until it answers:
    /// with the overlay2 storage driver where the filesystem allows it,
    /// else with fuse-overlayfs (an overlay root, as in many containers).
    fn start(&mut self, slot: u32, subnet: &str, pool: &str) -> Result<()> {
        fs::create_dir_all(&self.dir)?;
        if self.netns.is_none() {
            ip(&["link", "add", &self.bridge, "type", "bridge"])?;
            ip(&["addr", "add", subnet, "dev", &self.bridge])?;
            ip(&["link", "set", &self.bridge, "up"])?;
        }
        let mut failures = Vec::new();
        for driver in ["overlay2", "fuse-overlayfs"] {
            match self.start_with(slot, pool, driver) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    failures.push(format!("{driver}: {e:#}"));
                    let _ = fs::remove_dir_all(self.dir.join("root"));
                }
            }
        }
        bail!("{}", failures.join("\n"))
    }

    fn start_with(&mut self, slot: u32, pool: &str, driver: &str) -> Result<()> {
        // Not the machine's /etc/docker/daemon.json: it sets the data root.
        let config = self.dir.join("daemon.json");
        fs::write(
            &config,
            format!(r#"{{"default-address-pools":[{{"base":"{pool}","size":26}}]}}"#),
        )?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())?;
        let namespace = format!("convoy-swarm-{slot}{}", self.role);
        // `nsenter --net`, not `ip netns exec`: that one remounts /sys, and
        // dockerd finds no cgroups ("Devices cgroup isn't mounted").
        let mut command = match &self.netns {
            None => Command::new("dockerd"),
            Some(netns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{netns}")).arg("dockerd");
                c
            }
        };
        if self.netns.is_none() {
            command.args(["-b", &self.bridge]);
        }
        let child = command
            .arg("--config-file")
            .arg(&config)
            .args(["--storage-driver", driver])
            .arg("--data-root")
            .arg(self.dir.join("root"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("-H")
            .arg(self.host())
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .args(["--iptables=false", "--ip-masq=false", "--ip6tables=false"])
            .args(["--containerd-namespace", &namespace])
            .args(["--containerd-plugins-namespace", &format!("{namespace}p")])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start dockerd")?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let answered = output_within(
                Command::new("docker").arg("-H").arg(self.host()).args([
                    "version",
                    "--format",
                    "{{.Server.Version}}",
                ]),
                Duration::from_secs(5),
            );
            if answered.is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                bail!(
                    "dockerd of {} exited ({status}):\n{}",
                    self.dir.display(),
                    tail(&self.log())
                );
            }
            if Instant::now() >= deadline {
                self.stop();
                bail!(
                    "dockerd of {} did not answer within {START_TIMEOUT:?}:\n{}",
                    self.dir.display(),
                    tail(&self.log())
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its own `docker_gwbridge` (which Swarm otherwise makes as a Linux
    /// bridge of that very name, shared by every engine on the host).
    fn make_gw_bridge(&self, subnet: &str) -> Result<()> {
        self.docker(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            subnet,
            "--opt",
            &format!("com.docker.network.bridge.name={}", self.gw_bridge),
            "--opt",
            "com.docker.network.bridge.enable_icc=false",
            "--opt",
            "com.docker.network.bridge.enable_ip_masquerade=false",
            "docker_gwbridge",
        ])?;
        Ok(())
    }

    /// Leaves the swarm and stops dockerd (its containerd with it); kills
    /// it when it does not stop in time.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = self.docker(&["swarm", "leave", "--force"]);
        let _ = signal(child.id(), "TERM");
        if !matches!(wait_within(&mut child, STOP_GRACE), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
            kill_pidfile(&self.dir.join("exec/containerd/containerd.pid"), &self.dir);
        }
    }
}

/// Two engines in one swarm: `manager` (which initialised it) and `worker`.
pub struct SwarmPair {
    pub manager: Engine,
    pub worker: Engine,
    /// The swarm's ID (`docker info` on the manager).
    pub cluster_id: String,
    slot: u32,
    dir: Option<TempDir>,
    /// Held (flocked) while the pair lives.
    _lock: File,
}

impl SwarmPair {
    /// Forms the swarm, with the test image in both engines; panics (after
    /// cleaning up) when it cannot.
    pub fn start() -> SwarmPair {
        let image = ensure_test_image();
        let (slot, lock) = take_slot().unwrap_or_else(|e| panic!("no swarm slot: {e:#}"));
        let dir = tempfile::Builder::new()
            .prefix("convoy-swarm-")
            .tempdir_in("/tmp")
            .expect("cannot make a temp dir");
        let engine = |role: &'static str, host: u8, netns: Option<String>| Engine {
            role,
            dir: dir.path().join(role),
            socket: dir.path().join(role).join("docker.sock"),
            bridge: format!("cvsw{slot}{role}"),
            gw_bridge: format!("cvgw{slot}{role}"),
            netns,
            addr: format!("10.212.{slot}.{host}"),
            child: None,
        };
        let mut pair = SwarmPair {
            manager: engine("m", 1, None),
            worker: engine("w", 2, Some(netns_name(slot))),
            cluster_id: String::new(),
            slot,
            dir: Some(dir),
            _lock: lock,
        };
        record_slot(&pair._lock, pair.dir.as_ref().unwrap().path());
        if let Err(e) = pair.form(&image) {
            let logs = format!(
                "manager's dockerd:\n{}\nworker's dockerd:\n{}",
                tail(&pair.manager.log()),
                tail(&pair.worker.log())
            );
            drop(pair);
            panic!("cannot form a two-engine swarm: {e:#}\n{logs}");
        }
        pair
    }

    fn form(&mut self, image: &str) -> Result<()> {
        let s = self.slot;
        // The worker's namespace and the veth pair to it: 10.212.S.1 on the
        // host (the manager's Swarm address), 10.212.S.2 in the namespace.
        let netns = netns_name(s);
        let (host_end, ns_end) = veth_names(s);
        ip(&["netns", "add", &netns])?;
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
        ])?;
        ip(&["link", "set", &ns_end, "netns", &netns])?;
        ip(&["addr", "add", &format!("10.212.{s}.1/24"), "dev", &host_end])?;
        ip(&["link", "set", &host_end, "up"])?;
        for args in [
            vec!["addr", "add", &format!("10.212.{s}.2/24"), "dev", &ns_end],
            vec!["link", "set", &ns_end, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut all = vec!["netns", "exec", &netns, "ip"];
            all.extend(args.iter().copied());
            ip(&all)?;
        }
        // Subnets of the slot on the host: 10.213.S.0/24 for the manager's
        // bridge, 10.215.S.0/24 for its docker_gwbridge, 10.217.S.0/24 for
        // its other local networks, 10.(100+S).0.0/16 for overlays. The
        // worker's networks live in its own namespace.
        self.manager
            .start(s, &format!("10.213.{s}.1/24"), &format!("10.217.{s}.0/24"))?;
        self.worker
            .start(s, &format!("10.214.{s}.1/24"), &format!("10.218.{s}.0/24"))?;
        self.manager.make_gw_bridge(&format!("10.215.{s}.0/24"))?;
        let addr = self.manager.addr.clone();
        self.manager.docker(&[
            "swarm",
            "init",
            "--advertise-addr",
            &addr,
            "--listen-addr",
            &format!("{addr}:2377"),
            "--data-path-port",
            &(4800 + s).to_string(),
            "--default-addr-pool",
            &format!("10.{}.0.0/16", 100 + s),
        ])?;
        self.cluster_id = self.manager.swarm_field("Cluster.ID")?;
        let token = self
            .manager
            .docker(&["swarm", "join-token", "-q", "worker"])?;
        self.join(token.trim())?;
        load_image(image, self.dir(), [&self.manager, &self.worker])?;
        Ok(())
    }

    /// Joins the worker (again) with the manager's worker token `token`.
    fn join(&self, token: &str) -> Result<()> {
        let addr = &self.worker.addr;
        self.worker.docker(&[
            "swarm",
            "join",
            "--token",
            token,
            "--listen-addr",
            &format!("{addr}:2377"),
            "--advertise-addr",
            addr,
            &format!("{}:2377", self.manager.addr),
        ])?;
        Ok(())
    }

    /// The worker leaves the swarm (`docker swarm leave`).
    pub fn worker_leaves(&self) -> Result<()> {
        self.worker.docker(&["swarm", "leave"])?;
        Ok(())
    }

    /// Where the engines keep their files (logs: `m/dockerd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the pair is gone").path()
    }
}

impl Drop for SwarmPair {
    fn drop(&mut self) {
        // The worker first: the manager is the last of the swarm.
        self.worker.stop();
        self.manager.stop();
        let failing = std::thread::panicking();
        if failing {
            for engine in [&self.manager, &self.worker] {
                eprintln!(
                    "---- dockerd {} ({}) ----\n{}",
                    engine.role,
                    engine.log().display(),
                    tail(&engine.log())
                );
            }
        }
        if let Some(dir) = self.dir.take() {
            clean_slot(self.slot, dir.path());
            // The data roots hold root-owned files; the TempDir removes them.
            drop(dir);
        }
    }
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) -> Result<()> {
    stdout_of(Command::new("ip").args(args), STEP_TIMEOUT)?;
    Ok(())
}

/// `docker save IMAGE` into `dir`, then `docker -H ENGINE load` of it
/// into each engine.
fn load_image(image: &str, dir: &Path, engines: [&Engine; 2]) -> Result<()> {
    let archive = dir.join("image.tar");
    stdout_of(
        Command::new("docker")
            .args(["save", "-o"])
            .arg(&archive)
            .arg(image),
        STEP_TIMEOUT,
    )?;
    for engine in engines {
        engine
            .docker(&["load", "-i", &archive.to_string_lossy()])
            .with_context(|| format!("loading {image} into {}", engine.host()))?;
    }
    let _ = fs::remove_file(&archive);
    Ok(())
}

/// Takes the first free slot: its lock file, flocked. Cleans what a killed
/// run left in it.
fn take_slot() -> Result<(u32, File)> {
    fs::create_dir_all(SLOTS_DIR)?;
    for slot in 1..=MAX_SLOTS {
        let path = Path::new(SLOTS_DIR).join(slot.to_string());
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if file.try_lock().is_err() {
            continue;
        }
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        let previous = previous.trim();
        // Only a pair's own temp dir is cleaned, whatever the file says.
        if previous.starts_with("/tmp/convoy-swarm-") && !previous.contains("..") {
            let dir = Path::new(previous);
            for role in ["w", "m"] {
                let engine = dir.join(role);
                kill_pidfile(&engine.join("dockerd.pid"), &engine);
                kill_pidfile(&engine.join("exec/containerd/containerd.pid"), &engine);
            }
            clean_slot(slot, dir);
            let _ = fs::remove_dir_all(dir);
        }
        return Ok((slot, file));
    }
    bail!("all {MAX_SLOTS} slots under {SLOTS_DIR} are taken")
}

/// Writes the pair's directory into its slot's lock file, for the next
/// taker to clean if this run is killed.
fn record_slot(mut lock: &File, dir: &Path) {
    let _ = lock.set_len(0);
    let _ = lock.rewind();
    let _ = writeln!(lock, "{}", dir.display());
}

/// Unmounts what the engines left mounted under `dir` (network namespaces,
/// the data roots) and removes the slot's bridges.
fn clean_slot(slot: u32, dir: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    // Deepest first.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = output_within(Command::new("umount").args(["-l", m]), STEP_TIMEOUT);
    }
    let _ = output_within(
        Command::new("ip").args(["netns", "del", &netns_name(slot)]),
        STEP_TIMEOUT,
    );
    let _ = output_within(
        Command::new("ip").args(["link", "del", &veth_names(slot).0]),
        STEP_TIMEOUT,
    );
    for role in ["m", "w"] {
        for kind in ["cvsw", "cvgw"] {
            let name = format!("{kind}{slot}{role}");
            let _ = output_within(
                Command::new("ip").args(["link", "del", &name]),
                STEP_TIMEOUT,
            );
        }
    }
}

/// The worker's network namespace in slot `slot`.
fn netns_name(slot: u32) -> String {
    format!("convoy-swarm-{slot}")
}

/// The veth pair to it: (host end, namespace end).
fn veth_names(slot: u32) -> (String, String) {
    (format!("cvv{slot}h"), format!("cvv{slot}n"))
}

/// SIGKILL to the process a pidfile names, if it still runs and its
/// command line names `dir` (a reused pid is someone else's).
fn kill_pidfile(path: &Path, dir: &Path) {
    let Ok(text) = fs::read_to_string(path) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return;
    };
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if cmdline.contains(&*dir.to_string_lossy()) {
        let _ = signal(pid, "KILL");
    }
}

/// The last lines of a log.
fn tail(path: &Path) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

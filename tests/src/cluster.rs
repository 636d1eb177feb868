//! A throwaway Convoy cluster: one `convoyd serve` and any number of
//! `convoy-agent run`, each with its own data dir under one temp dir, on free
//! loopback ports, logging to files there. Node and service names carry the
//! cluster's id, so tests running side by side on one Docker daemon never
//! see each other's containers. Dropping the cluster kills its processes and
//! removes every container of its nodes; when the test is failing it prints
//! the logs first and keeps the temp dir.

use std::fs::{self, OpenOptions};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde::de::DeserializeOwned;
use tempfile::TempDir;

use crate::bins::bin;
use crate::cli::{ApplyReport, DeleteReport, NodeInfo, NodeList, ServiceStatus, StatusReport};
use crate::docker;
use crate::image::ensure_test_image;
use crate::process::{output_within, signal, wait_within};
use crate::wait::{wait_until, SETTLE};

/// What `convoyd serve` prints once both listeners are bound.
const READY_LINE: &str = "convoyd ready:";
/// A CLI call that takes longer than this is a hang, not slowness.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a process gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(20);

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// One agent process and its identity.
#[derive(Debug)]
pub struct Agent {
    /// The node name (the CN of its certificate).
    pub name: String,
    pub pki_dir: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Extra `convoy-agent run` arguments, e.g. `--label k=v`.
    pub extra_args: Vec<String>,
    /// Extra environment, e.g. `DOCKER_HOST` for an agent of another engine.
    pub env: Vec<(String, String)>,
    /// Set for agents that enrol themselves: `convoy-agent join` with these
    /// arguments (token, CA fingerprint, node name) instead of `run`.
    pub join_args: Option<Vec<String>>,
    join_token: Option<String>,
    child: Option<Child>,
}

pub struct Cluster {
    /// `t{pid}-{n}-{rand}`: unique per cluster, in every node name.
    pub id: String,
    dir: Option<TempDir>,
    root: PathBuf,
    /// The coordinator's `--data-dir`.
    pub data_dir: PathBuf,
    pub api_addr: SocketAddr,
    pub agent_addr: SocketAddr,
    /// The HTTP port: dashboard, `/api/`, `/metrics`, `/healthz`.
    pub http_addr: SocketAddr,
    pub coordinator_log: PathBuf,
    coordinator: Option<Child>,
    agents: Vec<Agent>,
    /// Containers a test made by hand, removed on drop.
    extra_containers: Mutex<Vec<String>>,
    /// Extra environment of `convoyd` (e.g. `RUST_LOG=debug`).
    coordinator_env: Vec<(String, String)>,
    /// Where `convoyd` listens for agents when not on `agent_addr`: all
    /// interfaces, for agents in containers ([`Cluster::start_for_containers`]).
    agent_listen_any: bool,
    /// Extra names of the coordinator's certificate (`--san`).
    sans: Vec<String>,
    /// Extra `convoyd serve` arguments (e.g. `--store etcd://…`).
    pub coordinator_args: Vec<String>,
    /// Every coordinator's agent address, when several share a store:
    /// agents get them all (`--coordinator a,b,c`).
    pub agent_coordinators: Option<String>,
    /// Every coordinator's API address, when several share a store: the CLI
    /// gets them all.
    pub cli_addresses: Option<String>,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a loopback port")
        .port()
}

fn log_file(path: &Path) -> (Stdio, Stdio) {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let err = out.try_clone().expect("cannot dup a log file");
    (out.into(), err.into())
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Cluster {
    /// Starts a coordinator with no agents.
    pub fn start() -> Cluster {
        Cluster::start_with_env(&[])
    }

    /// Starts a coordinator with no agents and these extra variables in its
    /// environment.
    pub fn start_with_env(env: &[(&str, &str)]) -> Cluster {
        Cluster::start_with(env, false, &[])
    }

    /// Starts a coordinator whose agent port agents in containers on the
    /// default bridge reach too: it listens on all interfaces, and its
    /// certificate also names `sans` (e.g. `host.docker.internal` and the
    /// bridge's gateway) for clients that check the name they dial; agents
    /// check the fixed `coordinator.convoy`. The CLI and agents on the host
    /// still use loopback.
    pub fn start_for_containers(sans: &[&str]) -> Cluster {
        Cluster::start_with(&[], true, sans)
    }

    /// Starts a coordinator with these extra `convoyd serve` arguments.
    pub fn start_with_args(args: &[&str]) -> Cluster {
        Cluster::start_full(&[], false, &[], args)
    }

    fn start_with(env: &[(&str, &str)], agent_listen_any: bool, sans: &[&str]) -> Cluster {
        Cluster::start_full(env, agent_listen_any, sans, &[])
    }

    fn start_full(
        env: &[(&str, &str)],
        agent_listen_any: bool,
        sans: &[&str],
        args: &[&str],
    ) -> Cluster {
        let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
        let salt = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            & 0xffff;
        let id = format!("t{}-{n}-{salt:04x}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("convoy-e2e-{id}-"))
            .tempdir()
            .expect("cannot create a temp dir");
        let root = dir.path().to_path_buf();
        let mut cluster = Cluster {
            data_dir: root.join("coordinator"),
            coordinator_log: root.join("convoyd.log"),
            api_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            agent_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http_addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            id,
            dir: Some(dir),
            root,
            coordinator: None,
            agents: Vec::new(),
            extra_containers: Mutex::new(Vec::new()),
            coordinator_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            agent_listen_any,
            sans: sans.iter().map(|s| s.to_string()).collect(),
            coordinator_args: args.iter().map(|s| s.to_string()).collect(),
            agent_coordinators: None,
            cli_addresses: None,
        };
        // A free port can be taken by someone else before convoyd binds it.
        for attempt in 1.. {
            match cluster.try_start_coordinator() {
                Ok(()) => break,
                Err(e) if attempt < 3 && cluster.coordinator_log().contains("in use") => {
                    eprintln!("retrying with other ports: {e:#}");
                    cluster.api_addr.set_port(free_port());
                    cluster.agent_addr.set_port(free_port());
                    cluster.http_addr.set_port(free_port());
                }
                Err(e) => panic!("{e:#}"),
            }
        }
        cluster
    }

    /// Starts a coordinator and `n` agents, and waits until all are ready.
    pub fn with_agents(n: usize) -> Cluster {
        let mut cluster = Cluster::start();
        for _ in 0..n {
            cluster.add_agent();
        }
        cluster.wait_nodes_ready(&cluster.node_names());
        cluster
    }

    /// `http://ADDR` of the coordinator's HTTP port (no trailing slash).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The admin token's secret, from `DATA/admin.token`.
    pub fn admin_token(&self) -> String {
        let path = self.data_dir.join("admin.token");
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// The temp dir everything of this cluster lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The test image, by its content-hash tag (built on first use).
    pub fn image(&self) -> String {
        ensure_test_image()
    }

    /// A service name no other test (or run) uses: `{base}-{cluster id}`.
    pub fn service_name(&self, base: &str) -> String {
        format!("{base}-{}", self.id)
    }

    // ---- coordinator -------------------------------------------------

    /// Starts `convoyd serve` (again) and waits for its ready line.
    pub fn start_coordinator(&mut self) {
        if let Err(e) = self.try_start_coordinator() {
            panic!("{e:#}");
        }
    }

    fn try_start_coordinator(&mut self) -> Result<()> {
        assert!(self.coordinator.is_none(), "convoyd is already running");
        let readies_before = read_lossy(&self.coordinator_log)
            .matches(READY_LINE)
            .count();
        let (out, err) = log_file(&self.coordinator_log);
        let agent_listen = if self.agent_listen_any {
            SocketAddr::from(([0, 0, 0, 0], self.agent_addr.port()))
        } else {
            self.agent_addr
        };
        let child = Command::new(bin("convoyd"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--api-listen")
            .arg(self.api_addr.to_string())
            .arg("--agent-listen")
            .arg(agent_listen.to_string())
            .args(self.sans.iter().flat_map(|san| ["--san", san.as_str()]))
            .arg("--http-listen")
            .arg(self.http_addr.to_string())
            .args(&self.coordinator_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .env("NO_COLOR", "1")
            .envs(self.coordinator_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("cannot start convoyd")?;
        let coordinator = self.coordinator.insert(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = coordinator.try_wait()? {
                self.coordinator = None;
                bail!("convoyd exited ({status}) before it was ready");
            }
            if read_lossy(&self.coordinator_log)
                .matches(READY_LINE)
                .count()
                > readies_before
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "convoyd printed no `{READY_LINE}` line within 30 s (log: {})",
                    self.coordinator_log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM to convoyd; fails the test if it does not exit in time.
    pub fn stop_coordinator(&mut self) -> ExitStatus {
        let mut child = self.coordinator.take().expect("convoyd is not running");
        stop_child(&mut child, "convoyd")
    }

    /// SIGKILL to convoyd: a crash, with no chance to clean up.
    pub fn kill_coordinator(&mut self) {
        let mut child = self.coordinator.take().expect("convoyd is not running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The coordinator's process id, while it runs.
    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.as_ref().map(|c| c.id())
    }

    pub fn coordinator_running(&mut self) -> bool {
        match self.coordinator.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn coordinator_log(&self) -> String {
        read_lossy(&self.coordinator_log)
    }

    /// `convoyd issue-cert` for `node` into `out`.
    pub fn issue_cert(&self, node: &str, out: &Path) {
        let output = output_within(
            Command::new(bin("convoyd"))
                .arg("issue-cert")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--node")
                .arg(node)
                .arg("--out")
                .arg(out),
            CLI_TIMEOUT,
        )
        .expect("cannot run convoyd issue-cert");
        assert!(
            output.status.success(),
            "convoyd issue-cert --node {node} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        for file in ["ca.pem", "agent.pem", "agent.key"] {
            assert!(
                out.join(file).is_file(),
                "convoyd issue-cert wrote no {}",
                out.join(file).display()
            );
        }
    }

    // ---- agents ------------------------------------------------------

    /// Issues a certificate for a new node and starts its agent; returns the
    /// node name (`{cluster id}-a`, `-b`, ...).
    pub fn add_agent(&mut self) -> String {
        self.add_agent_with_args(&[])
    }

    /// Like [`Cluster::add_agent`], with extra `convoy-agent run` arguments.
    pub fn add_agent_with_args(&mut self, extra_args: &[&str]) -> String {
        let name = self.next_node_name();
        let pki = self.root.join(&name).join("pki");
        fs::create_dir_all(&pki).expect("cannot create a pki dir");
        self.issue_cert(&name, &pki);
        self.start_new_agent(&name, &pki, extra_args, &[])
    }

    /// Like [`Cluster::add_agent`], with extra variables in the agent's
    /// environment (`DOCKER_HOST=unix://...` for another engine).
    pub fn add_agent_with_env(&mut self, env: &[(&str, &str)]) -> String {
        let name = self.next_node_name();
        let pki = self.root.join(&name).join("pki");
        fs::create_dir_all(&pki).expect("cannot create a pki dir");
        self.issue_cert(&name, &pki);
        self.start_new_agent(&name, &pki, &[], env)
    }

    /// Starts an agent with a given identity (e.g. one from another CA).
    pub fn add_agent_with_pki(&mut self, name: &str, pki_dir: &Path) -> String {
        self.start_new_agent(name, pki_dir, &[], &[])
    }

    fn start_new_agent(
        &mut self,
        name: &str,
        pki_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> String {
        docker::ensure_reachable();
        let data_dir = self.root.join(name).join("data");
        fs::create_dir_all(&data_dir).expect("cannot create an agent data dir");
        self.agents.push(Agent {
            name: name.to_string(),
            pki_dir: pki_dir.to_path_buf(),
            data_dir,
            log: self.root.join(format!("agent-{name}.log")),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            join_args: None,
            join_token: None,
            child: None,
        });
        self.start_agent(name);
        name.to_string()
    }

    /// Starts a new agent with an empty PKI directory that enrols itself:
    /// `convoy-agent join --token TOKEN --ca-fingerprint FP --node-name NAME`.
    /// Returns the node name it asks for.
    pub fn join_agent(&mut self, token: &str, ca_fingerprint: &str) -> String {
        docker::ensure_reachable();
        let name = self.next_node_name();
        let data_dir = self.root.join(&name).join("data");
        fs::create_dir_all(&data_dir).expect("cannot create an agent data dir");
        self.agents.push(Agent {
            name: name.clone(),
            pki_dir: self.root.join(&name).join("pki"),
            data_dir,
            log: self.root.join(format!("agent-{name}.log")),
            extra_args: Vec::new(),
            env: Vec::new(),
            join_args: Some(vec![
                "--ca-fingerprint".into(),
                ca_fingerprint.into(),
                "--node-name".into(),
                name.clone(),
            ]),
            join_token: Some(token.to_string()),
            child: None,
        });
        self.start_agent(&name);
        name
    }

    /// A node name for this cluster not used yet.
    pub fn next_node_name(&self) -> String {
        let letter = (b'a' + (self.agents.len() % 26) as u8) as char;
        format!("{}-{letter}", self.id)
    }

    pub fn node_names(&self) -> Vec<String> {
        self.agents.iter().map(|a| a.name.clone()).collect()
    }

    pub fn agent(&self, name: &str) -> &Agent {
        self.agents
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no agent {name} in this cluster"))
    }

    fn agent_mut(&mut self, name: &str) -> &mut Agent {
        self.agents
            .iter_mut()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no agent {name} in this cluster"))
    }

    /// Where agents of this cluster keep secret values: a tmpfs
    /// (`/dev/shm`) directory of the cluster's own, removed with it.
    fn secrets_root(&self) -> PathBuf {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.join("convoy-tests").join(&self.id)
        } else {
            self.root.join("secrets")
        }
    }

    /// Agent `name`'s `--secrets-dir` (tmpfs): its values cache and the
    /// files its containers and units get.
    pub fn agent_secrets_dir(&self, name: &str) -> PathBuf {
        self.secrets_root().join(name)
    }

    /// (Re)starts an agent known to the cluster.
    pub fn start_agent(&mut self, name: &str) {
        let coordinator = self
            .agent_coordinators
            .clone()
            .unwrap_or_else(|| self.agent_addr.to_string());
        let secrets_dir = self.agent_secrets_dir(name);
        let agent = self.agent_mut(name);
        assert!(agent.child.is_none(), "agent {name} is already running");
        let (out, err) = log_file(&agent.log);
        let mut cmd = Command::new(bin("convoy-agent"));
        match &agent.join_args {
            None => {
                cmd.arg("run");
            }
            Some(args) => {
                cmd.arg("join").args(args);
            }
        }
        // The join token travels in the environment, not on the command line.
        if let Some(token) = &agent.join_token {
            cmd.env("CONVOY_JOIN_TOKEN", token);
        } else {
            cmd.env_remove("CONVOY_JOIN_TOKEN");
        }
        let child = cmd
            .arg("--coordinator")
            .arg(coordinator)
            .arg("--pki-dir")
            .arg(&agent.pki_dir)
            .arg("--data-dir")
            .arg(&agent.data_dir)
            .arg("--secrets-dir")
            .arg(&secrets_dir)
            .args(&agent.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .env("NO_COLOR", "1")
            .env_remove("CONVOY_COORDINATOR")
            .env_remove("CONVOY_PKI_DIR")
            .env_remove("CONVOY_DATA_DIR")
            .env_remove("CONVOY_SECRETS_DIR")
            .envs(agent.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("cannot start convoy-agent");
        agent.child = Some(child);
    }

    /// SIGTERM to an agent; fails the test if it does not exit in time.
    pub fn stop_agent(&mut self, name: &str) -> ExitStatus {
        let agent = self.agent_mut(name);
        let mut child = agent.child.take().expect("agent is not running");
        stop_child(&mut child, &format!("convoy-agent {name}"))
    }

    /// SIGKILL to an agent.
    pub fn kill_agent(&mut self, name: &str) {
        let agent = self.agent_mut(name);
        if let Some(mut child) = agent.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `Some(status)` if the agent has exited on its own.
    pub fn agent_exited(&mut self, name: &str) -> Option<ExitStatus> {
        let agent = self.agent_mut(name);
        agent
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The OS process id of a running agent (for kill -STOP / -CONT).
    pub fn agent_pid(&self, name: &str) -> Option<u32> {
        self.agent(name).child.as_ref().map(Child::id)
    }

    pub fn agent_log(&self, name: &str) -> String {
        read_lossy(&self.agent(name).log)
    }

    /// Fails the test if a process of the cluster died or panicked.
    pub fn assert_healthy(&mut self) {
        if let Some(child) = self.coordinator.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("convoyd exited on its own ({status})");
            }
        }
        assert!(
            !self.coordinator_log().contains("panicked"),
            "convoyd panicked"
        );
        for agent in &mut self.agents {
            if let Some(child) = agent.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("agent {} exited on its own ({status})", agent.name);
                }
            }
            assert!(
                !read_lossy(&agent.log).contains("panicked"),
                "agent {} panicked",
                agent.name
            );
        }
    }

    // ---- the CLI -----------------------------------------------------

    /// A `convoy` command aimed at this cluster through the environment.
    pub fn cli_command(&self) -> Command {
        let mut cmd = Command::new(bin("convoy"));
        let address = self
            .cli_addresses
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.api_addr));
        cmd.env("CONVOY_ADDR", address)
            .env("CONVOY_CA", self.data_dir.join("pki/ca.pem"))
            .env("CONVOY_TOKEN_FILE", self.data_dir.join("admin.token"))
            .env("CONVOY_CONFIG", self.root.join("config.yaml"))
            .env_remove("CONVOY_TOKEN")
            .env_remove("CONVOY_CONTEXT")
            .current_dir(&self.root);
        cmd
    }

    /// Runs `convoy ARGS` to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        output_within(self.cli_command().args(args), CLI_TIMEOUT)
            .unwrap_or_else(|e| panic!("convoy {args:?}: {e:#}"))
    }

    /// Runs `convoy ARGS` with `input` on its standard input (a secret's
    /// value, as `convoy secret set|rotate` read it), to completion.
    pub fn cli_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        crate::process::output_with_input_within(
            self.cli_command().args(args),
            Some(input),
            CLI_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("convoy {args:?}: {e:#}"))
    }

    /// Runs `convoy -o json ARGS`, which must succeed, and parses its output.
    pub fn try_cli_json<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = output_within(self.cli_command().args(&all), CLI_TIMEOUT)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "convoy {} failed ({}): {}{}",
                all.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                stdout.trim()
            );
        }
        serde_json::from_str(&stdout)
            .with_context(|| format!("convoy {} printed unexpected JSON: {stdout}", all.join(" ")))
    }

    /// A `convoy` command that authenticates with `token` (in
    /// `CONVOY_TOKEN`, with `CONVOY_TOKEN_FILE` cleared).
    pub fn cli_command_with_token(&self, token: &str) -> Command {
        let mut cmd = self.cli_command();
        cmd.env_remove("CONVOY_TOKEN_FILE")
            .env("CONVOY_TOKEN", token);
        cmd
    }

    /// Runs `convoy ARGS` with `token` to completion.
    pub fn cli_with_token(&self, token: &str, args: &[&str]) -> Output {
        output_within(self.cli_command_with_token(token).args(args), CLI_TIMEOUT)
            .unwrap_or_else(|e| panic!("convoy {args:?}: {e:#}"))
    }

    /// Runs `convoy -o json ARGS` with `token`, which must succeed.
    pub fn try_cli_json_with_token<T: DeserializeOwned>(
        &self,
        token: &str,
        args: &[&str],
    ) -> Result<T> {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = output_within(self.cli_command_with_token(token).args(&all), CLI_TIMEOUT)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "convoy {} failed ({}): {}{}",
                all.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                stdout.trim()
            );
        }
        serde_json::from_str(&stdout)
            .with_context(|| format!("convoy {} printed unexpected JSON: {stdout}", all.join(" ")))
    }

    pub fn cli_json<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        self.try_cli_json(args).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Writes a spec file into the cluster's temp dir.
    pub fn write_spec(&self, file_name: &str, yaml: &str) -> PathBuf {
        let path = self.root.join(file_name);
        fs::write(&path, yaml).expect("cannot write a spec file");
        path
    }

    /// `convoy apply -f FILE`, which must succeed.
    pub fn apply(&self, spec: &Path) -> ApplyReport {
        let file = spec.to_str().expect("temp paths are UTF-8");
        self.cli_json(&["apply", "-f", file])
    }

    /// Every service's status.
    pub fn try_status(&self) -> Result<Vec<ServiceStatus>> {
        Ok(self.try_cli_json::<StatusReport>(&["status"])?.services)
    }

    /// One service's status; an error if the coordinator does not list it.
    pub fn try_service_status(&self, service: &str) -> Result<ServiceStatus> {
        self.try_status()?
            .into_iter()
            .find(|s| s.name == service)
            .ok_or_else(|| anyhow!("`convoy status` does not list {service}"))
    }

    pub fn service_status(&self, service: &str) -> ServiceStatus {
        self.try_service_status(service)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn delete(&self, service: &str) -> DeleteReport {
        self.cli_json(&["delete", service])
    }

    pub fn try_nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(self.try_cli_json::<NodeList>(&["nodes"])?.nodes)
    }

    /// Waits until `convoy nodes` lists every one of `names` as ready, with a
    /// heartbeat from the last 30 s.
    pub fn wait_nodes_ready(&self, names: &[String]) -> Vec<NodeInfo> {
        wait_until(
            format!("nodes {names:?} are ready"),
            SETTLE,
            Duration::from_millis(250),
            || {
                let nodes = self.try_nodes()?;
                for name in names {
                    let node = nodes
                        .iter()
                        .find(|n| &n.name == name)
                        .ok_or_else(|| anyhow!("{name} not listed in {nodes:#?}"))?;
                    ensure!(node.state == "ready", "{name} is {}", node.state);
                }
                Ok(nodes)
            },
        )
    }

    /// The containers of `service` that this cluster's agents own
    /// (`io.convoy.managed=true` and one of its node names), running or not.
    pub fn containers_of(&self, service: &str) -> Result<Vec<docker::Container>> {
        let nodes = self.node_names();
        Ok(docker::of_service(service)?
            .into_iter()
            .filter(|c| {
                c.label("io.convoy.managed") == Some("true")
                    && c.label("io.convoy.node")
                        .is_some_and(|n| nodes.iter().any(|ours| ours == n))
            })
            .collect())
    }

    /// Waits until the service has `replicas` running instances, per
    /// `convoy status` and per Docker, all at `revision`, each with exactly
    /// one container; returns Docker's view, sorted by instance index.
    pub fn wait_service_running(
        &self,
        service: &str,
        replicas: usize,
        revision: u64,
    ) -> Vec<docker::Container> {
        wait_until(
            format!("{replicas} instances of {service} run at revision {revision}"),
            SETTLE,
            Duration::from_millis(250),
            || {
                let mut containers = self.containers_of(service)?;
                let shown: Vec<String> = containers.iter().map(|c| c.describe()).collect();
                ensure!(
                    containers.len() == replicas
                        && containers.iter().all(|c| c.state.running
                            && c.label("io.convoy.revision") == Some(&revision.to_string())),
                    "docker has {shown:#?}"
                );
                let status = self.try_service_status(service)?;
                ensure!(
                    status.revision == revision
                        && status.running as usize == replicas
                        && status.desired as usize == replicas
                        && status.instances.len() == replicas
                        && status.instances.iter().all(|i| i.state == "running"
                            && i.revision == revision
                            && containers
                                .iter()
                                .any(|c| crate::cli::same_container_id(&i.container_id, &c.id))),
                    "convoy status says {}\ndocker has {shown:#?}",
                    status.describe()
                );
                containers.sort_by_key(|c| {
                    c.label("io.convoy.instance")
                        .and_then(|i| i.parse::<u32>().ok())
                        .unwrap_or(u32::MAX)
                });
                Ok(containers)
            },
        )
    }

    /// Waits until Docker has no container of `service` left on this
    /// cluster's nodes.
    pub fn wait_service_gone(&self, service: &str) {
        wait_until(
            format!("no container of {service} is left"),
            SETTLE,
            Duration::from_millis(250),
            || {
                let left = self.containers_of(service)?;
                let shown: Vec<String> = left.iter().map(|c| c.describe()).collect();
                ensure!(left.is_empty(), "docker still has {shown:#?}");
                Ok(())
            },
        )
    }

    /// Removes this container when the cluster is dropped.
    pub fn track_container(&self, id: &str) {
        self.extra_containers
            .lock()
            .expect("not poisoned")
            .push(id.to_string());
    }

    /// Milliseconds since the epoch, to compare with Convoy's timestamps.
    pub fn now_unix_ms() -> i64 {
        now_unix_ms()
    }

    fn dump_logs(&self) {
        eprintln!("---- convoyd log ({}) ----", self.coordinator_log.display());
        eprintln!("{}", self.coordinator_log());
        for agent in &self.agents {
            eprintln!(
                "---- agent {} log ({}) ----",
                agent.name,
                agent.log.display()
            );
            eprintln!("{}", read_lossy(&agent.log));
        }
        eprintln!(
            "---- end of logs; files kept in {} ----",
            self.root.display()
        );
    }
}

fn stop_child(child: &mut Child, what: &str) -> ExitStatus {
    signal(child.id(), "TERM").unwrap_or_else(|e| panic!("cannot SIGTERM {what}: {e:#}"));
    match wait_within(child, STOP_GRACE) {
        Ok(Some(status)) => status,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {STOP_GRACE:?} of SIGTERM");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        // Agents first, so nothing recreates the containers removed below.
        for agent in &mut self.agents {
            if let Some(mut child) = agent.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(mut child) = self.coordinator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut ids = self
            .extra_containers
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        for agent in &self.agents {
            if let Ok(found) = docker::with_label("io.convoy.node", &agent.name) {
                ids.extend(found.into_iter().map(|c| c.id));
            }
        }
        docker::remove_force(&ids);
        // On tmpfs, i.e. in memory: never kept, even for a failing test.
        let _ = fs::remove_dir_all(self.secrets_root());
        if failing {
            self.dump_logs();
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
        }
    }
}

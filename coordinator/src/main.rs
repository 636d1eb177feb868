//! convoyd: parse flags, start the coordinator (and in dev mode an agent),
//! run until a signal, drain.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use convoy_coordinator::{
    dev,
    pki::{self, Ca, PkiPaths},
    server::{self, ServeConfig},
    state::Liveness,
    store::StoreUrl,
};
use tokio_util::sync::CancellationToken;

/// jemalloc rather than glibc's malloc: a fan-out to 10,000 agents frees
/// and allocates tens of thousands of small buffers at once, and glibc
/// spent about a sixth of the coordinator's CPU in it (`malloc_consolidate`,
/// `unlink_chunk`). jemalloc: fan-out p99 7–22 % lower, memory per idle
/// agent the same; mimalloc was as fast but kept 36 % more memory per
/// agent (BENCHMARKS.md, scale).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "convoyd", version, about = "Convoy's coordinator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordinator.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address for agents (mTLS).
        #[arg(long, env = "CONVOY_AGENT_LISTEN", default_value = "0.0.0.0:7401")]
        agent_listen: SocketAddr,
    },
    /// Run a coordinator and an agent for this host in one process.
    Dev {
        #[command(flatten)]
        common: Common,
        /// Address for agents (mTLS).
        #[arg(long, env = "CONVOY_AGENT_LISTEN", default_value = "127.0.0.1:7401")]
        agent_listen: SocketAddr,
        /// Node name of the embedded agent (default: this host's name).
        #[arg(long)]
        node_name: Option<String>,
        /// Do not write the `dev` context into the CLI's config file.
        #[arg(long)]
        no_config: bool,
        /// Let the dev agent's containers bind-mount host paths under PATH
        /// (repeatable; passed on as `convoy-agent run --allow-bind`).
        #[arg(long = "allow-bind", value_name = "PATH", value_parser = parse_bind_root)]
        allow_binds: Vec<String>,
        /// Let the dev agent's containers have these kinds of host access
        /// (`privileged`, `cap_add`, ..., or `all`; passed on as
        /// `convoy-agent run --allow-host-access`).
        #[arg(
            long = "allow-host-access",
            value_name = "KIND,...",
            value_delimiter = ',',
            value_parser = convoy_api::host_access::parse_grant
        )]
        allow_host_access: Vec<String>,
    },
    /// Rotate the coordinator's own TLS certificate: a running coordinator
    /// installs the new one within seconds; agents trust the same CA, so
    /// nothing needs re-enrolling.
    RotateCert {
        #[arg(long, env = "CONVOY_DATA_DIR")]
        data_dir: PathBuf,
        /// Names or IPs to add to those the coordinator runs with.
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// Issue a client certificate for another agent (ca.pem, agent.pem, agent.key).
    IssueCert {
        #[arg(long, env = "CONVOY_DATA_DIR")]
        data_dir: PathBuf,
        /// The node's name; it becomes the certificate's identity.
        #[arg(long)]
        node: String,
        /// Directory to write the files into.
        #[arg(long)]
        out: PathBuf,
        /// Validity (90s, 15m, 24h, 365d). The agent renews it over its
        /// stream once two thirds of it are gone.
        #[arg(long, default_value = "365d", value_parser = convoy_api::clock::parse_duration_secs)]
        ttl: u64,
    },
    /// Save the coordinator's state to a file, or restore one into a new
    /// data directory (backups, moving to another machine; docs/SNAPSHOTS.md).
    Snapshot {
        #[command(subcommand)]
        command: convoy_coordinator::snapshot::SnapshotCommand,
    },
    /// The secrets' key-encryption key (DATA_DIR/secrets.key).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Write completions and man pages into DIR (scripts/package.sh).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// With the coordinator stopped: re-wrap every secret's data keys (and
    /// re-seal every registry login) under the key in FILE, in one store
    /// batch, then install FILE's key as DATA_DIR/secrets.key. Make FILE with
    /// `(umask 077; head -c 32 /dev/urandom > FILE)`; keep it until the
    /// command has said it is done.
    Rewrap {
        #[arg(long, env = "CONVOY_DATA_DIR")]
        data_dir: PathBuf,
        /// The new key: 32 bytes, mode 0600.
        #[arg(long, value_name = "FILE")]
        new_key: PathBuf,
    },
}

#[derive(Args)]
struct Common {
    /// Data directory: store, CA, admin token.
    #[arg(long, env = "CONVOY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address for the CLI's API (TLS + token).
    #[arg(long, env = "CONVOY_API_LISTEN", default_value = "127.0.0.1:7400")]
    api_listen: SocketAddr,
    /// Address for the HTTP port: dashboard, JSON API, /metrics, /healthz.
    /// Plain HTTP: keep it on loopback or behind a TLS proxy.
    #[arg(long, env = "CONVOY_HTTP_LISTEN", default_value = "127.0.0.1:7402")]
    http_listen: SocketAddr,
    /// Require a token (any role) for /metrics too; by default it is open.
    #[arg(long, env = "CONVOY_METRICS_AUTH")]
    metrics_auth: bool,
    /// Prometheus' URL, where rollout analyses (`x-convoy.update.analysis`)
    /// run their queries unless they name their own `prometheus:`.
    #[arg(
        long,
        env = "CONVOY_PROMETHEUS_URL",
        value_name = "URL",
        default_value = ""
    )]
    prometheus_url: String,
    /// Extra names or IPs for the coordinator's certificate.
    #[arg(long = "san")]
    sans: Vec<String>,
    /// Lifetime of the certificates agents get when they join or renew
    /// (90s, 15m, 24h, 30d). Agents renew over their stream once two thirds
    /// of it are gone.
    #[arg(long, env = "CONVOY_AGENT_CERT_TTL", default_value = "24h", value_parser = convoy_api::clock::parse_duration_secs)]
    agent_cert_ttl: u64,
    /// A node whose heartbeats stop for this long is marked lost (agents are
    /// told to beat three times in that window).
    #[arg(long, env = "CONVOY_NODE_LOST_AFTER", default_value = "2500ms", value_parser = parse_millis)]
    node_lost_after: u64,
    /// The largest spec file `apply` reads (1048576, 512KiB, 4MiB). Parsing
    /// time and memory grow with it; the CLI refuses larger files before
    /// sending unless given the same limit.
    #[arg(long, env = "CONVOY_MAX_SPEC_BYTES", default_value = "1MiB", value_parser = convoy_api::limits::parse_bytes)]
    max_spec_bytes: usize,
    /// Use this CA certificate (PEM) instead of generating one; needs --ca-key.
    #[arg(long, env = "CONVOY_CA_CERT", requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The CA's private key (PEM, mode 0600); needs --ca-cert.
    #[arg(long, env = "CONVOY_CA_KEY", requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// Where desired state lives: `sled` (embedded, in DATA_DIR/store) or
    /// `etcd://h1:2379,h2:2379,h3:2379` (`etcds://` for TLS) for several
    /// coordinators, one of which leads.
    #[arg(long, env = "CONVOY_STORE", default_value = "sled")]
    store: String,
    /// CA certificate (PEM) that etcd's certificates chain to (etcds://).
    #[arg(long, env = "CONVOY_ETCD_CA")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd, with --etcd-key.
    #[arg(long, env = "CONVOY_ETCD_CERT", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd, with --etcd-cert.
    #[arg(long, env = "CONVOY_ETCD_KEY", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// This coordinator's name among those on one store (default: the
    /// host's name).
    #[arg(long, env = "CONVOY_NAME")]
    name: Option<String>,
    /// On etcd: the leader's lease. A leader that cannot renew it steps
    /// down; a standby takes over about this long after a leader dies.
    #[arg(long, env = "CONVOY_LEADER_TTL", default_value = "3s", value_parser = convoy_api::clock::parse_duration_secs)]
    leader_ttl: u64,
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,h2=warn,tower=warn,hyper=warn,sled=warn".into());
    // No colour codes in the journal or a log file.
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::RotateCert { data_dir, sans } => {
            let paths = PkiPaths::new(&data_dir);
            server::rotate_server_cert(&paths, &sans)?;
            println!(
                "wrote a new server certificate to {}; a running convoyd installs it within seconds",
                paths.server_cert().display()
            );
            Ok(())
        }
        Command::IssueCert {
            data_dir,
            node,
            out,
            ttl,
        } => {
            let ca = Ca::load(&PkiPaths::new(&data_dir))?;
            let ttl = time::Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX / 2));
            let issued = ca.issue_agent(&node, ttl)?;
            pki::write_agent_bundle(&ca, &issued, &out)?;
            println!(
                "issued a certificate for node `{node}` into {}",
                out.display()
            );
            Ok(())
        }
        Command::Secrets {
            command: SecretsCommand::Rewrap { data_dir, new_key },
        } => rewrap(&data_dir, &new_key).await,
        Command::Snapshot { command } => Ok(convoy_coordinator::snapshot::run(command).await?),
        Command::GenerateDocs { dir } => {
            let written =
                convoy_api::shell_docs::generate(<Cli as clap::CommandFactory>::command(), &dir)
                    .with_context(|| {
                        format!(
                            "cannot write completions and man pages into {}",
                            dir.display()
                        )
                    })?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Serve {
            common,
            agent_listen,
        } => {
            init_tracing();
            let data_dir = common.data_dir.clone().context(
                "--data-dir (or CONVOY_DATA_DIR) is required for `serve`; try `convoyd dev` for a local setup",
            )?;
            serve(common, agent_listen, data_dir, None).await
        }
        Command::Dev {
            common,
            agent_listen,
            node_name,
            no_config,
            allow_binds,
            allow_host_access,
        } => {
            init_tracing();
            let data_dir = common
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(".convoy-dev"));
            let node = node_name.unwrap_or_else(hostname);
            let dev = DevAgent {
                node,
                write_config: !no_config,
                allow_binds,
                allow_host_access,
            };
            serve(common, agent_listen, data_dir, Some(dev)).await
        }
    }
}

/// `convoyd secrets rewrap`: the store is opened (so a running coordinator,
/// which holds its lock, makes this fail before anything is written), every
/// value is opened with the current key and its data key sealed under the
/// new one in one batch, and only then is the new key file installed.
async fn rewrap(data_dir: &std::path::Path, new_key: &std::path::Path) -> Result<()> {
    use convoy_coordinator::{secrets::Sealer, state::Coordinator, store::SledStore};
    let key_file = data_dir.join(convoy_coordinator::secrets::KEY_FILE);
    anyhow::ensure!(
        key_file.exists(),
        "{} does not exist: there is nothing to re-wrap in {}",
        key_file.display(),
        data_dir.display()
    );
    let new = Sealer::from_key_file(new_key)?;
    let old = Sealer::open_or_create(data_dir)?;
    let store: std::sync::Arc<dyn convoy_coordinator::store::Store> = std::sync::Arc::new(
        SledStore::open(&data_dir.join("store"))
            .context("cannot open the store: stop convoyd first (it holds the store's lock)")?,
    );
    let coord = Coordinator::load_sealed(store, Liveness::default(), CancellationToken::new(), old)
        .await
        .context("cannot open the stored secrets with the current key")?;
    let done = coord.rewrap_all(&new).await?;
    drop(coord);
    convoy_coordinator::secrets::install_key(data_dir, new_key).with_context(|| {
        format!(
            "the store is re-wrapped under {} but installing it failed: copy it to {} (mode 0600) by hand",
            new_key.display(),
            key_file.display()
        )
    })?;
    println!(
        "re-wrapped {} secrets ({} versions), {} registry logins and {} notifiers' signing \
         secrets under the new key; installed it as {} (the old key opens nothing any more; \
         {} may be deleted)",
        done.secrets,
        done.versions,
        done.registry_logins,
        done.notifiers,
        key_file.display(),
        new_key.display()
    );
    Ok(())
}

/// etcd's TLS files, when given.
fn etcd_tls(common: &Common) -> Result<Option<convoy_coordinator::store::EtcdTls>> {
    if common.etcd_ca.is_none() && common.etcd_cert.is_none() {
        return Ok(None);
    }
    let ca = common
        .etcd_ca
        .clone()
        .context("--etcd-cert needs --etcd-ca (the CA etcd's certificates chain to)")?;
    Ok(Some(convoy_coordinator::store::EtcdTls {
        ca,
        cert: common.etcd_cert.clone(),
        key: common.etcd_key.clone(),
    }))
}

/// The agent `convoyd dev` runs beside the coordinator.
struct DevAgent {
    node: String,
    /// Whether to write the `dev` context into the CLI's config file.
    write_config: bool,
    /// `--allow-bind` roots for the agent.
    allow_binds: Vec<String>,
    /// `--allow-host-access` kinds for the agent.
    allow_host_access: Vec<String>,
}

/// An `--allow-bind` root: absolute, normalised, no `..`.
fn parse_bind_root(text: &str) -> Result<String, String> {
    convoy_api::host_paths::normalize(text.trim())
}

/// `3s`, `1500ms`, `1m` → milliseconds.
fn parse_millis(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms
            .parse::<u64>()
            .map_err(|_| format!("`{text}` is not a duration like 1500ms, 3s or 1m"));
    }
    convoy_api::clock::parse_duration_secs(text).map(|s| s.saturating_mul(1000))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| pki::validate_node_name(h).is_ok())
        .unwrap_or_else(|| "dev".to_string())
}

async fn serve(
    common: Common,
    agent_listen: SocketAddr,
    data_dir: PathBuf,
    dev_agent: Option<DevAgent>,
) -> Result<()> {
    let data_dir = std::path::absolute(&data_dir)
        .with_context(|| format!("bad data directory {}", data_dir.display()))?;
    let shutdown = CancellationToken::new();
    let store_url: StoreUrl = common
        .store
        .parse()
        .map_err(|e| anyhow::anyhow!("--store {}: {e}", common.store))?;
    let name = match &common.name {
        Some(n) => {
            pki::validate_node_name(n).map_err(|e| anyhow::anyhow!("--name {n}: {e}"))?;
            n.clone()
        }
        None => hostname(),
    };
    let prometheus_url = common.prometheus_url.trim_end_matches('/').to_string();
    anyhow::ensure!(
        prometheus_url.is_empty()
            || ((prometheus_url.starts_with("http://") || prometheus_url.starts_with("https://"))
                && prometheus_url.parse::<http::Uri>().is_ok()),
        "--prometheus-url {prometheus_url}: give Prometheus' URL, http://HOST:PORT or https://..."
    );
    let cfg = ServeConfig {
        data_dir: data_dir.clone(),
        api_listen: common.api_listen,
        agent_listen,
        sans: common.sans.clone(),
        ca_files: common.ca_cert.clone().zip(common.ca_key.clone()),
        liveness: Liveness::from_lost_after(Duration::from_millis(common.node_lost_after)),
        http_listen: common.http_listen,
        metrics_auth: common.metrics_auth,
        max_spec_bytes: common.max_spec_bytes,
        agent_cert_validity: time::Duration::seconds(
            i64::try_from(common.agent_cert_ttl).unwrap_or(i64::MAX / 2),
        ),
        name,
        prometheus_url,
    };
    if !matches!(store_url, StoreUrl::Sled) {
        anyhow::ensure!(
            dev_agent.is_none(),
            "`convoyd dev` runs on the embedded store; use `convoyd serve --store {}`",
            common.store
        );
        let tls = etcd_tls(&common)?;
        let signalled = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            signalled.cancel();
            // A second signal exits at once.
            wait_for_signal().await;
            std::process::exit(1);
        });
        let ttl = Duration::from_secs(common.leader_ttl);
        return convoy_coordinator::ha::serve(cfg, &store_url, tls, ttl, shutdown).await;
    }
    let running = server::start(cfg, shutdown.clone()).await?;
    let mut running = running;
    let mut tasks = std::mem::take(&mut running.tasks);
    let api = format!("https://{}", running.api_addr);
    if let Some(DevAgent {
        node,
        write_config,
        allow_binds,
        allow_host_access,
    }) = dev_agent
    {
        tasks.push(dev::start_agent(
            &running,
            &data_dir,
            &node,
            &allow_binds,
            &allow_host_access,
            shutdown.clone(),
        )?);
        println!("convoyd dev: coordinator and agent `{node}` on this host");
        if write_config {
            let written = dev::write_cli_context(
                "dev",
                &api,
                &PkiPaths::new(&data_dir).ca_cert(),
                &data_dir.join("admin.token"),
            )?;
            if let Some(path) = written {
                println!("CLI context `dev` written to {}", path.display());
            }
        }
    }
    println!(
        "convoyd ready: api={api} agents={} http=http://{}",
        running.agent_addr, running.http_addr
    );
    println!("admin token: {}", data_dir.join("admin.token").display());
    let mut dashboard = running.http_addr;
    if dashboard.ip().is_unspecified() {
        dashboard.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    println!(
        "dashboard: http://{dashboard}/ (sign in with the token in {})",
        running.token_path.display()
    );
    println!(
        "CA certificate: {}",
        PkiPaths::new(&data_dir).ca_cert().display()
    );
    // Under a Type=notify unit: READY=1 now that it serves, WATCHDOG=1 at
    // half WatchdogSec until shutdown, then STOPPING=1. No-ops elsewhere.
    tasks.push(tokio::spawn(convoy_api::notify::supervise(
        shutdown.clone(),
    )));

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let drain = futures::future::join_all(tasks);
    tokio::select! {
        _ = drain => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("tasks still running after 10 s; exiting anyway");
        }
        _ = wait_for_signal() => {
            tracing::warn!("second signal; exiting at once");
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

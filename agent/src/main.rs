//! `convoy-agent run`: flags and env to an `AgentConfig`, logs, signals;
//! `install` / `uninstall` as a systemd unit; a hidden `debug-unit` to try
//! the systemd driver by hand.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};
use tracing_subscriber::EnvFilter;

/// How long a drain may take after the first signal before the agent exits anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Parser)]
#[command(
    name = "convoy-agent",
    version,
    about = "Makes this host match its Convoy plan"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to the coordinator and enforce the node's plan.
    Run(RunArgs),
    /// Enrol this host with a one-time join token, then run.
    Join(JoinArgs),
    /// Enrol this host and run the agent as the systemd unit
    /// convoy-agent.service (enabled, started, hardened). Needs root.
    Install(InstallArgs),
    /// Stop, disable and delete convoy-agent.service. Needs root.
    Uninstall(UninstallArgs),
    /// Try the systemd driver by hand (unit state, one reconcile pass).
    #[command(hide = true, subcommand)]
    DebugUnit(debug_unit::DebugUnit),
    /// Write completions and man pages into DIR (scripts/package.sh).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
    /// The ingress proxy alone, every request to these backends (all on
    /// one port), for bench/proxy.sh: no coordinator, no Docker.
    #[command(hide = true)]
    BenchProxy {
        #[arg(long, value_name = "ADDR")]
        listen: std::net::SocketAddr,
        #[arg(long, value_name = "IP:PORT", required = true)]
        backend: Vec<std::net::SocketAddr>,
        /// Serve on this many threads, each its own current-thread runtime
        /// and SO_REUSEPORT listener (default: as `run`, twice the cores);
        /// 0: on the main runtime, as before.
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// The join token from `convoy token create --join`: in a file (best: no
/// secret in `ps` or shell history), in `CONVOY_JOIN_TOKEN`, or as `--token`.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct JoinToken {
    /// A file holding the join token (surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The join token itself (visible to other users in `ps`: prefer
    /// --token-file or CONVOY_JOIN_TOKEN).
    #[arg(long, env = "CONVOY_JOIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl JoinToken {
    fn secret(self) -> anyhow::Result<String> {
        let JoinToken { token_file, token } = self;
        let token = match (token_file, token) {
            (Some(path), _) => std::fs::read_to_string(&path)
                .map_err(|e| {
                    anyhow::anyhow!("cannot read the join token file {}: {e}", path.display())
                })?
                .trim()
                .to_string(),
            (None, Some(token)) => token.trim().to_string(),
            (None, None) => String::new(),
        };
        if token.is_empty() {
            anyhow::bail!("no join token: pass --token-file FILE (or set CONVOY_JOIN_TOKEN)");
        }
        Ok(token)
    }
}

#[derive(Args)]
struct InstallArgs {
    /// Coordinator agent port; comma-separate several.
    #[arg(
        long = "coordinator",
        value_name = "HOST:PORT",
        env = "CONVOY_COORDINATOR",
        value_delimiter = ',',
        required = true
    )]
    coordinators: Vec<String>,
    #[command(flatten)]
    token: JoinToken,
    /// `sha256:HEX` of the coordinator's CA, printed with the join token.
    #[arg(long, value_name = "sha256:HEX", env = "CONVOY_CA_FINGERPRINT")]
    ca_fingerprint: String,
    /// This node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Node labels for placement: `k=v,k2=v2`.
    #[arg(long, value_name = "K=V,...", value_delimiter = ',', value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Let containers bind-mount host paths under PATH (written into the
    /// unit's command line; repeat or comma-separate).
    #[arg(long = "allow-bind", value_name = "PATH", value_delimiter = ',', value_parser = parse_bind_root)]
    allow_binds: Vec<String>,
    /// Let containers have these kinds of host access (written into the
    /// unit's command line): `privileged`, `cap_add`, `devices`, `pid`,
    /// `ipc`, `uts`, `userns_mode`, `network_mode`, `security_opt`, or `all`.
    #[arg(long = "allow-host-access", value_name = "KIND,...", value_delimiter = ',', value_parser = parse_host_access)]
    allow_host_access: Vec<String>,
    #[arg(long, value_name = "DIR", default_value = convoy_agent::install::DEFAULT_PKI_DIR)]
    pki_dir: PathBuf,
    #[arg(long, value_name = "DIR", default_value = convoy_agent::install::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Where unit files go (tests only).
    #[arg(long, value_name = "DIR", default_value = convoy_agent::units::file::DEFAULT_UNIT_DIR, hide = true)]
    unit_dir: PathBuf,
    /// Run the ingress proxy on this address (written into the unit's
    /// command line; docs/PROXY.md). A port below 1024 gives the unit
    /// CAP_NET_BIND_SERVICE, and nothing more.
    #[arg(long, value_name = "ADDR")]
    proxy_listen: Option<std::net::SocketAddr>,
    /// Also terminate TLS on this address (needs --proxy-listen).
    #[arg(long, value_name = "ADDR", requires = "proxy_listen")]
    proxy_tls_listen: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct UninstallArgs {
    /// Also delete the agent's key, certificate and state.
    #[arg(long)]
    purge: bool,
    #[arg(long, value_name = "DIR", default_value = convoy_agent::install::DEFAULT_PKI_DIR)]
    pki_dir: PathBuf,
    #[arg(long, value_name = "DIR", default_value = convoy_agent::install::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[arg(long, value_name = "DIR", default_value = convoy_agent::units::file::DEFAULT_UNIT_DIR, hide = true)]
    unit_dir: PathBuf,
}

#[derive(Args)]
struct JoinArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    token: JoinToken,
    /// `sha256:HEX` of the coordinator's CA, printed with the join token.
    #[arg(long, value_name = "sha256:HEX", env = "CONVOY_CA_FINGERPRINT")]
    ca_fingerprint: String,
    /// This node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    /// Coordinator agent port; repeat (or comma-separate) for several.
    #[arg(
        long = "coordinator",
        value_name = "HOST:PORT",
        env = "CONVOY_COORDINATOR",
        value_delimiter = ',',
        required = true
    )]
    coordinators: Vec<String>,
    /// Directory with ca.pem, agent.pem and agent.key.
    #[arg(long, value_name = "DIR", env = "CONVOY_PKI_DIR")]
    pki_dir: PathBuf,
    /// Directory for the agent's state (plan.pb).
    #[arg(long, value_name = "DIR", env = "CONVOY_DATA_DIR")]
    data_dir: PathBuf,
    /// A node label for placement, repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Test-only: read the node's GPUs from this JSON file instead of NVML
    /// or nvidia-smi (docs/GPU.md); hidden from --help.
    #[arg(long, value_name = "PATH", env = "CONVOY_GPU_FACTS_FILE", hide = true)]
    gpu_facts_file: Option<PathBuf>,
    /// Let containers bind-mount host paths under PATH (absolute; repeat,
    /// or comma-separate, for several). Without it, no bind mount of a host
    /// path is placed on this node or created by this agent.
    #[arg(
        long = "allow-bind",
        value_name = "PATH",
        env = "CONVOY_ALLOW_BIND",
        value_delimiter = ',',
        value_parser = parse_bind_root
    )]
    allow_binds: Vec<String>,
    /// Let containers have these kinds of host access (comma-separate or
    /// repeat): `privileged`, `cap_add`, `devices`, `pid`, `ipc`, `uts`,
    /// `userns_mode`, `network_mode`, `security_opt`, or `all`. Without it,
    /// no container asking for one is placed on this node or created by
    /// this agent.
    #[arg(
        long = "allow-host-access",
        value_name = "KIND,...",
        env = "CONVOY_ALLOW_HOST_ACCESS",
        value_delimiter = ',',
        value_parser = parse_host_access
    )]
    allow_host_access: Vec<String>,
    /// Where the unit files of `units:` workloads go.
    #[arg(
        long,
        value_name = "DIR",
        env = "CONVOY_UNIT_DIR",
        default_value = convoy_agent::units::file::DEFAULT_UNIT_DIR
    )]
    unit_dir: PathBuf,
    /// Where secret values are kept: must be on tmpfs (or ramfs), else
    /// workloads that need a secret fail and nothing is written there.
    #[arg(
        long,
        value_name = "DIR",
        env = "CONVOY_SECRETS_DIR",
        default_value = convoy_agent::secrets::DEFAULT_SECRETS_DIR
    )]
    secrets_dir: PathBuf,
    /// Run the ingress proxy on this address (e.g. `0.0.0.0:80`): HTTP/1.1
    /// and HTTP/2 cleartext, routed by the services' `x-convoy.ingress` to
    /// their healthy instances on this node (docs/PROXY.md). Off when not
    /// given.
    #[arg(long, value_name = "ADDR", env = "CONVOY_PROXY_LISTEN")]
    proxy_listen: Option<std::net::SocketAddr>,
    /// Also terminate TLS on this address (e.g. `0.0.0.0:443`), presenting
    /// for each host name (SNI) the certificate its service's
    /// `x-convoy.ingress.tls` gives (Convoy secrets). Needs
    /// `--proxy-listen`.
    #[arg(
        long,
        value_name = "ADDR",
        env = "CONVOY_PROXY_TLS_LISTEN",
        requires = "proxy_listen"
    )]
    proxy_tls_listen: Option<std::net::SocketAddr>,
    /// Threads serving each proxy listener, each with its own runtime and
    /// SO_REUSEPORT socket (docs/PROXY.md). Default: twice the cores.
    #[arg(
        long,
        value_name = "N",
        env = "CONVOY_PROXY_THREADS",
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    proxy_threads: Option<u16>,
    /// How often the proxy's request figures go to the coordinator (when
    /// they changed), in milliseconds: the rollout analysis' `proxy` gates
    /// see them at this pace (docs/ANALYSIS.md). 100 to 60000.
    #[arg(
        long,
        value_name = "MS",
        env = "CONVOY_PROXY_STATS_INTERVAL_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(100..=60_000)
    )]
    proxy_stats_interval_ms: u64,
}

/// An `--allow-bind` root: absolute, normalised, no `..`.
fn parse_bind_root(text: &str) -> Result<String, String> {
    convoy_api::host_paths::normalize(text.trim())
}

/// An `--allow-host-access` kind (a Compose key's name) or `all`.
fn parse_host_access(text: &str) -> Result<String, String> {
    convoy_api::host_access::parse_grant(text)
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = match command {
        Command::Run(args) => args,
        Command::Join(join) => match enrol(join).await {
            Ok(args) => args,
            Err(e) => {
                error!("{e}");
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        Command::Install(args) => return report(install(args).await),
        Command::Uninstall(args) => {
            let UninstallArgs {
                purge,
                pki_dir,
                data_dir,
                unit_dir,
            } = args;
            let mut purged = Vec::new();
            if purge {
                purged = vec![pki_dir, data_dir];
                let state = PathBuf::from(convoy_agent::install::STATE_DIR);
                if !purged.iter().any(|d| !d.starts_with(&state)) {
                    // Both are the unit's StateDirectory's: take it whole.
                    purged = vec![state];
                }
            }
            let params = convoy_agent::install::UninstallParams {
                unit_dir,
                purge: purged,
            };
            return report(
                convoy_agent::install::uninstall(&params)
                    .await
                    .map_err(anyhow::Error::from),
            );
        }
        Command::DebugUnit(cmd) => return report(debug_unit::run(cmd).await),
        Command::BenchProxy {
            listen,
            backend,
            threads,
        } => {
            let shutdown = CancellationToken::new();
            tokio::spawn(on_signals(shutdown.clone()).instrument(info_span!("signals")));
            return report(
                convoy_agent::proxy::serve_fixed(
                    listen,
                    &backend,
                    threads.unwrap_or_else(convoy_agent::proxy::default_threads),
                    shutdown,
                )
                .await
                .map_err(anyhow::Error::from),
            );
        }
        Command::GenerateDocs { dir } => {
            return report(
                convoy_api::shell_docs::generate(<Cli as clap::CommandFactory>::command(), &dir)
                    .map(|written| {
                        for path in written {
                            println!("{}", path.display());
                        }
                    })
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot write completions and man pages into {}: {e}",
                            dir.display()
                        )
                    }),
            )
        }
    };
    let unit_dir = args.unit_dir.clone();
    let config = convoy_agent::AgentConfig {
        coordinators: args
            .coordinators
            .into_iter()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect(),
        pki_dir: args.pki_dir,
        data_dir: args.data_dir,
        labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
        gpu_facts_file: args.gpu_facts_file,
        allowed_binds: dedup(args.allow_binds),
        allowed_host_access: dedup(args.allow_host_access),
        secrets_dir: args.secrets_dir,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signals(shutdown.clone()).instrument(info_span!("signals")));
    let options = convoy_agent::RunOptions {
        units: convoy_agent::units::UnitsConfig { unit_dir },
        notify_systemd: true,
        proxy_listen: args.proxy_listen,
        proxy_tls_listen: args.proxy_tls_listen,
        proxy_threads: args.proxy_threads.map(usize::from),
        proxy_stats_every: Some(std::time::Duration::from_millis(
            args.proxy_stats_interval_ms,
        )),
    };
    match convoy_agent::run_with(config, options, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sorted, each once.
fn dedup(mut roots: Vec<String>) -> Vec<String> {
    roots.sort();
    roots.dedup();
    roots
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

async fn install(args: InstallArgs) -> anyhow::Result<()> {
    let InstallArgs {
        coordinators,
        token,
        ca_fingerprint,
        name,
        labels,
        allow_binds,
        allow_host_access,
        pki_dir,
        data_dir,
        unit_dir,
        proxy_listen,
        proxy_tls_listen,
    } = args;
    let binary = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| anyhow::anyhow!("cannot tell where this binary is: {e}"))?;
    let token = token.secret()?;
    let params = convoy_agent::install::InstallParams {
        coordinators: coordinators
            .into_iter()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect(),
        token,
        ca_fingerprint,
        node_name: name.unwrap_or_else(hostname),
        labels,
        allow_binds: dedup(allow_binds),
        allow_host_access: dedup(allow_host_access),
        binary,
        pki_dir,
        data_dir,
        unit_dir,
        gpu_devices: std::path::Path::new(convoy_agent::install::NVIDIA_CONTROL_DEVICE).exists(),
        proxy_listen,
        proxy_tls_listen,
    };
    convoy_agent::install::install(&params).await?;
    Ok(())
}

/// Enrols unless the PKI directory already holds an identity, and hands
/// back the flags to run with.
async fn enrol(join: JoinArgs) -> anyhow::Result<RunArgs> {
    let JoinArgs {
        run,
        token,
        ca_fingerprint,
        node_name,
    } = join;
    if let Ok(pki) = convoy_agent::pki::Pki::load(&run.pki_dir).await {
        info!(node = %pki.node_name, "already enrolled; connecting");
        return Ok(run);
    }
    let token = token.secret()?;
    let node_name = node_name.unwrap_or_else(hostname);
    let coordinator = run.coordinators.first().cloned().unwrap_or_default();
    let params = convoy_agent::enroll::JoinParams {
        coordinator,
        token,
        ca_fingerprint,
        node_name,
        pki_dir: run.pki_dir.clone(),
    };
    let node = convoy_agent::enroll::join(&params).await?;
    info!(node, pki_dir = %run.pki_dir.display(), "enrolled; certificate and key stored");
    Ok(run)
}

/// First signal: drain. Second signal, or a drain that takes too long: exit.
async fn on_signals(shutdown: CancellationToken) {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            warn!("cannot listen for signals: {e}");
            return;
        }
    };
    signals.next().await;
    info!("shutting down; a second signal exits at once");
    shutdown.cancel();
    tokio::select! {
        _ = signals.next() => warn!("second signal: exiting now"),
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => warn!("still draining after {DRAIN_TIMEOUT:?}: exiting now"),
    }
    std::process::exit(130);
}

struct Signals {
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        Ok(Self { term })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = self.term.recv() => {}
        }
    }
}

mod debug_unit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinators_repeat_or_split_on_commas_and_labels_are_pairs() {
        let cli = Cli::try_parse_from([
            "convoy-agent",
            "run",
            "--coordinator",
            "a:1,b:2",
            "--coordinator",
            "c:3",
            "--pki-dir",
            "/p",
            "--data-dir",
            "/d",
            "--label",
            "zone=eu=1",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("`run` parses as Command::Run");
        };
        assert_eq!(args.coordinators, vec!["a:1", "b:2", "c:3"]);
        assert_eq!(args.labels, vec![("zone".to_string(), "eu=1".to_string())]);
    }

    fn join_with(extra: &[&str]) -> Result<JoinArgs, clap::Error> {
        let mut line = vec![
            "convoy-agent",
            "join",
            "--coordinator",
            "h:7401",
            "--ca-fingerprint",
            "sha256:ab",
            "--pki-dir",
            convoy_api::agent_paths::PKI_DIR,
            "--data-dir",
            convoy_api::agent_paths::DATA_DIR,
        ];
        line.extend_from_slice(extra);
        match Cli::try_parse_from(line)?.command {
            Command::Join(args) => Ok(args),
            _ => panic!("`join` parses as Command::Join"),
        }
    }

    /// Issue 13: `join` takes its token from a file (trimmed), so the line
    /// `convoy token create --join` prints holds no secret; exactly one of
    /// --token-file and --token (or CONVOY_JOIN_TOKEN) is required.
    #[test]
    fn join_reads_the_token_file_trimmed_and_takes_exactly_one_token_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("join.token");
        std::fs::write(&file, "  convoyjoin_abc\n").unwrap();
        let file = file.to_str().unwrap();
        let args = join_with(&["--token-file", file]).unwrap();
        assert_eq!(args.token.secret().unwrap(), "convoyjoin_abc");
        let args = join_with(&["--token", "convoyjoin_def"]).unwrap();
        assert_eq!(args.token.secret().unwrap(), "convoyjoin_def");
        assert!(join_with(&["--token-file", file, "--token", "x"]).is_err());
        if std::env::var_os("CONVOY_JOIN_TOKEN").is_none() {
            assert!(join_with(&[]).is_err());
        }
        let missing = dir.path().join("nope").display().to_string();
        let err = join_with(&["--token-file", &missing])
            .unwrap()
            .token
            .secret()
            .unwrap_err();
        assert!(err.to_string().contains("cannot read the join token file"));
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let empty = dir.path().join("empty").display().to_string();
        let err = join_with(&["--token-file", &empty])
            .unwrap()
            .token
            .secret()
            .unwrap_err();
        assert!(err.to_string().starts_with("no join token"), "{err}");
    }

    /// Issue 14: `--allow-bind` repeats or comma-separates, is normalised,
    /// and refuses relative paths and `..`.
    #[test]
    fn allow_bind_roots_are_absolute_and_normalised() {
        let run = |extra: &[&str]| {
            let mut line = vec![
                "convoy-agent",
                "run",
                "--coordinator",
                "a:1",
                "--pki-dir",
                "/p",
                "--data-dir",
                "/d",
            ];
            line.extend_from_slice(extra);
            Cli::try_parse_from(line).map(|cli| match cli.command {
                Command::Run(args) => args.allow_binds,
                _ => panic!("`run` parses as Command::Run"),
            })
        };
        assert_eq!(
            run(&["--allow-bind", "/srv/data/", "--allow-bind", "/tmp//x,/"]).unwrap(),
            vec!["/srv/data", "/tmp/x", "/"]
        );
        assert!(run(&["--allow-bind", "srv"]).is_err());
        assert!(run(&["--allow-bind", "/srv/../etc"]).is_err());
        if std::env::var_os("CONVOY_ALLOW_BIND").is_none() {
            assert!(run(&[]).unwrap().is_empty());
        }
    }

    #[test]
    fn label_without_a_key_is_refused() {
        assert!(parse_label("=x").is_err());
        assert!(parse_label("novalue").is_err());
        assert_eq!(parse_label("k=").unwrap(), ("k".to_string(), String::new()));
    }
}

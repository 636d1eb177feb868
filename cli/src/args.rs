//! The command line's definition, as clap reads it: the global flags
//! ([`Cli`]), the subcommands and their flags, and the parsers of flag
//! values. What each command does is in `commands`, `rollouts` and `trust`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "convoy",
    version,
    about = "Deploy and inspect services on a Convoy cluster",
    after_help = "Environment: CONVOY_ADDR, CONVOY_CA, CONVOY_TOKEN_FILE, CONVOY_TOKEN, \
                  CONVOY_CONFIG (default ~/.config/convoy/config.yaml).\n\
                  Flags beat the environment, which beats the config file's current context."
)]
pub struct Cli {
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Coordinator API address, `https://HOST:PORT` or `HOST:PORT`; with
    /// several coordinators, all their addresses, comma-separated [env: CONVOY_ADDR].
    #[arg(long, global = true, value_name = "URL[,URL...]")]
    pub addr: Option<String>,
    /// CA certificate (PEM) that signed the coordinator's certificate [env: CONVOY_CA].
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// File holding the API token [env: CONVOY_TOKEN_FILE; or the token itself in CONVOY_TOKEN].
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Context of the config file to use instead of its current one.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Environment (dev, staging, prod, ...): where `apply` puts services
    /// and what other commands look at [default: `default` for changes,
    /// every environment for status and events].
    #[arg(long, global = true, value_name = "ENV", env = "CONVOY_ENV")]
    pub env: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a spec file to the coordinator and store what changed.
    Apply {
        /// The spec file (`-` reads stdin); repeat to merge override files
        /// in order, as Compose does (`-f compose.yaml -f compose.prod.yaml`).
        #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Variables for `${VAR}` in the spec, `KEY=VALUE` per line
        /// (repeatable; later files win; the shell beats them all). Without
        /// it, `.env` beside the spec file is read if there is one.
        #[arg(long = "env-file", value_name = "FILE")]
        env_files: Vec<PathBuf>,
        /// Enable a Compose profile (repeatable; `*` enables all): services
        /// with `profiles:` are applied only when one of theirs is enabled.
        #[arg(
            long = "profile",
            value_name = "NAME",
            env = "COMPOSE_PROFILES",
            value_delimiter = ','
        )]
        profiles: Vec<String>,
        /// Show the plan without storing anything.
        #[arg(long)]
        dry_run: bool,
        /// Wait until every rollout it starts succeeds (exit 0), fails or
        /// rolls back (exit 1, with the reason); exit 3 if --timeout runs
        /// out first (the rollout goes on).
        #[arg(long, conflicts_with = "dry_run")]
        wait: bool,
        /// How long --wait waits, e.g. 90s, 5m. The default is longer than
        /// a rollout's own deadlines (healthy 5m, progress 10m), so a bad
        /// rollout ends with its reason rather than a timeout.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs, default_value = "15m", requires = "wait")]
        timeout: u64,
    },
    /// Show what `apply` would do (same as `apply --dry-run`).
    Plan {
        /// As for `apply` (repeatable).
        #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// As for `apply`.
        #[arg(long = "env-file", value_name = "FILE")]
        env_files: Vec<PathBuf>,
        /// As for `apply`.
        #[arg(
            long = "profile",
            value_name = "NAME",
            env = "COMPOSE_PROFILES",
            value_delimiter = ','
        )]
        profiles: Vec<String>,
    },
    /// Show services and their instances.
    Status {
        /// Only this service.
        service: Option<String>,
        /// Redraw whenever something changes (reads the event stream; no polling).
        #[arg(short, long)]
        watch: bool,
    },
    /// Stream cluster events as they happen: deployments, instance state and
    /// health changes, node joins and losses.
    Events {
        /// Only events of this service.
        #[arg(long)]
        service: Option<String>,
        /// Only events of this node.
        #[arg(long)]
        node: Option<String>,
        /// Start with the recent events the coordinator remembers.
        #[arg(long)]
        replay: bool,
    },
    /// Show or steer a service's rollout.
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Promote a canary rollout waiting for it.
    Promote { service: String },
    /// List a service's revisions: when, who, image, outcome.
    History { service: String },
    /// Roll a service back to an earlier revision (default: the previous
    /// one), under its update gates. Several services go back together,
    /// each to its previous revision, in one commit.
    Rollback {
        #[arg(required = true, num_args = 1..)]
        services: Vec<String>,
        /// The revision to go back to (one service only).
        #[arg(long, value_name = "REV")]
        to: Option<u64>,
    },
    /// Show what differs between two revisions of a service.
    Diff { service: String, from: u64, to: u64 },
    /// Run every health check now; exit 0 only if all pass.
    Verify {
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// How long agents have to answer, e.g. 10s, 1m.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs, default_value = "10s")]
        timeout: u64,
    },
    /// List the nodes known to the coordinator.
    Nodes,
    /// Delete a service and stop its instances.
    Delete {
        service: String,
        /// Also remove its named volumes that no other service of the
        /// environment uses, on every node, once its containers are gone:
        /// their data is lost. External volumes are never removed.
        #[arg(long)]
        volumes: bool,
    },
    /// Manage nodes.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Manage CLI tokens and agent join tokens (admin).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Private registries' logins, kept sealed on the coordinator and sent
    /// only to the nodes that pull from that registry (admin).
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Show the audit log: who changed what, and what was refused (admin).
    Audit {
        /// Only entries this recent, e.g. 90s, 15m, 1h, 7d.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
        since: Option<u64>,
    },
    /// List Convoy's volumes of the environment (`--env`) on each node,
    /// with the containers using each; `rm KEY` removes that key's.
    Volumes {
        #[command(subcommand)]
        command: Option<VolumesCommand>,
    },
    /// Secrets of an environment (`--env`), sealed on the coordinator:
    /// set, generate, rotate, list, history, rm. Values are read from
    /// standard input or a file, never the command line, and never printed.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Manage the config file's contexts (which coordinator to talk to).
    Context {
        #[command(subcommand)]
        command: ContextCommand,
    },
    /// Webhook notifications of events (rollouts, nodes, secrets) to a
    /// URL, durable and retried (admin): add, ls, rm, test.
    Notify {
        #[command(subcommand)]
        command: crate::notify::NotifyCommand,
    },
    /// Print the output of a service's instances or of a unit, from their
    /// nodes, each line prefixed with its instance (deployer or admin).
    Logs(crate::logs::LogsArgs),
    /// Run a command in an instance's container (`-i` input, `-t`
    /// terminal); exits with its exit code (deployer or admin).
    Exec(crate::exec::ExecArgs),
    /// Run a one-off container from a service's current spec (image,
    /// environment, volumes, secrets, networks) on a node that runs it,
    /// e.g. a migration; exits with its exit code (deployer or admin).
    Run(crate::exec::ExecArgs),
    /// Print the shell completion script for bash, zsh or fish, e.g.
    /// `source <(convoy completion bash)` (the packages install it).
    Completion {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Write completions and man pages into DIR (scripts/package.sh).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}

/// The shells `convoy completion` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl From<CompletionShell> for convoy_api::shell_docs::Shell {
    fn from(shell: CompletionShell) -> Self {
        match shell {
            CompletionShell::Bash => Self::Bash,
            CompletionShell::Zsh => Self::Zsh,
            CompletionShell::Fish => Self::Fish,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Progress of the current (or last) rollout.
    Status {
        service: String,
        /// Redraw on every change (reads the event stream).
        #[arg(short, long)]
        watch: bool,
    },
    /// Stop a running rollout where it is.
    Pause { service: String },
    /// Go on with a paused rollout.
    Resume { service: String },
    /// Stop a rollout and go back to the revision it started from (a
    /// blue-green rollout's old set takes over at once).
    Abort { service: String },
}

#[derive(Debug, Subcommand)]
pub enum VolumesCommand {
    /// Remove the environment's volumes of this key (under the spec's
    /// top-level `volumes:`) on every node: their data is gone. Refused on
    /// a node where a container still uses one.
    Rm { key: String },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Revoke a node's certificate, end its stream at once and mark its
    /// instances lost. It can come back only with a new certificate.
    #[command(alias = "revoke")]
    Remove { node: String },
    /// Stop placing new instances on a node; what runs there stays (admin).
    Cordon { node: String },
    /// Let a cordoned node take new instances again; ends a drain in
    /// progress (admin).
    Uncordon { node: String },
    /// Cordon a node and move its instances to other nodes under each
    /// service's update gates (parallelism, min healthy time, health
    /// checks); the node stays cordoned (admin).
    Drain {
        node: String,
        /// Wait until the node is drained, showing each service's healthy
        /// instances; fails, naming them, when instances cannot move.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, e.g. 90s, 5m.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs, default_value = "15m", requires = "wait")]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a CLI token (or, with --join, an agent join token); prints the
    /// secret once.
    Create {
        /// A name to recognise the token by (default: ROLE-ID).
        #[arg(long)]
        name: Option<String>,
        /// admin, deployer or viewer.
        #[arg(long, required_unless_present = "join", conflicts_with = "join")]
        role: Option<String>,
        /// Environments a deployer may touch, comma-separated (default:
        /// the global `--env` if given, else all).
        #[arg(
            long = "envs",
            value_name = "ENV,...",
            value_delimiter = ',',
            conflicts_with = "join"
        )]
        envs: Vec<String>,
        /// Lifetime, e.g. 90s, 15m, 1h, 7d (default: never for CLI tokens,
        /// 1h for join tokens).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_secs)]
        ttl: Option<u64>,
        /// Make a join token for `convoy-agent join`.
        #[arg(long)]
        join: bool,
        /// Join tokens: labels every node enrolled with it gets, k=v,k2=v2.
        #[arg(long, value_name = "K=V,...", requires = "join", value_parser = parse_labels)]
        labels: Option<BTreeMap<String, String>>,
        /// Join tokens: how many agents may enrol with it (default: 1).
        #[arg(long, requires = "join")]
        uses: Option<u32>,
        /// Join tokens: the only node name that may enrol with it.
        #[arg(long, requires = "join")]
        node: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token: its next call is refused.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Store the login of a registry (as `docker login`); the password is
    /// read from standard input, never from the command line.
    Login {
        /// The registry, HOST[:PORT] as image names start with it
        /// (`docker.io` for Docker Hub).
        server: String,
        #[arg(short, long)]
        username: String,
        /// Read the password (or token) from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the stored logins (server, username, who set them and when;
    /// never the password).
    #[command(alias = "list")]
    Ls,
    /// Remove a registry's login; its nodes get plans without it.
    Logout { server: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a new secret (version 1). The value is read from standard
    /// input (one trailing newline dropped) or, exactly, from --from-file.
    Set {
        name: String,
        /// Read the value from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
    /// Store a new secret with a random value drawn on the coordinator
    /// (never printed).
    Generate {
        name: String,
        /// Characters.
        #[arg(long, default_value_t = 32)]
        length: u32,
        #[arg(long, value_enum, default_value_t = SecretCharset::Alnum)]
        charset: SecretCharset,
    },
    /// The secrets of `--env` (default: every environment the token may
    /// see): name, current version, when and by whom; never values.
    #[command(alias = "ls")]
    List,
    /// Make a new version of a secret: from standard input, --from-file,
    /// or --generate.
    Rotate {
        name: String,
        /// Draw the new value on the coordinator.
        #[arg(long, conflicts_with = "from_file")]
        generate: bool,
        /// With --generate: characters (default 32).
        #[arg(long, requires = "generate")]
        length: Option<u32>,
        /// With --generate (default alnum).
        #[arg(long, value_enum, requires = "generate")]
        charset: Option<SecretCharset>,
        /// Read the new value from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
    /// The kept versions of a secret: when, by whom, how made.
    History { name: String },
    /// Remove a secret and all its versions (refused while a service uses it).
    #[command(alias = "remove")]
    Rm { name: String },
}

/// The characters of a generated secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SecretCharset {
    Alnum,
    Hex,
    Base64,
    Urlsafe,
}

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// List the contexts of the config file.
    List,
    /// Make NAME the current context.
    Use { name: String },
    /// Add or change context NAME from --addr, --ca and --token-file.
    Set { name: String },
}

pub use convoy_api::clock::parse_duration_secs;

/// `k=v,k2=v2`.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(format!("invalid label `{pair}`: use key=value")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_may_follow_the_command() {
        let cli = Cli::try_parse_from(["convoy", "status", "hello", "-o", "json", "--addr", "h:1"])
            .unwrap();
        assert_eq!(cli.output, Format::Json);
        assert_eq!(cli.addr.as_deref(), Some("h:1"));
        assert!(
            matches!(cli.command, Command::Status { service: Some(ref s), watch: false } if s == "hello")
        );
    }

    #[test]
    fn apply_takes_a_file_and_dry_run() {
        let cli = Cli::try_parse_from(["convoy", "apply", "-f", "x.yaml", "--dry-run"]).unwrap();
        assert!(matches!(cli.command, Command::Apply { dry_run: true, .. }));
        assert!(Cli::try_parse_from(["convoy", "apply"]).is_err());
        assert!(Cli::try_parse_from(["convoy", "-o", "yaml", "nodes"]).is_err());
    }

    #[test]
    fn labels() {
        let got = parse_labels("zone=a, gpu=true").unwrap();
        assert_eq!(got.get("zone").map(String::as_str), Some("a"));
        assert_eq!(got.get("gpu").map(String::as_str), Some("true"));
        assert!(parse_labels("novalue").is_err());
    }
}

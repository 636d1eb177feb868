//! `convoy`: the command line of the Convoy control plane. Parses flags,
//! runs one command against the coordinator, prints its answer or one
//! `error: ...` line.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{parser::ValueSource, CommandFactory, FromArgMatches, Parser};

use convoy_cli::commands::{self, Command};
use convoy_cli::config;
use convoy_cli::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "convoy",
    version,
    about = "Deploy and inspect services on a Convoy cluster",
    after_help = "Environment: CONVOY_ADDR, CONVOY_CA, CONVOY_TOKEN_FILE, CONVOY_TOKEN, \
                  CONVOY_CONFIG (default ~/.config/convoy/config.yaml).\n\
                  Flags beat the environment, which beats the config file's current context."
)]
struct Cli {
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Coordinator API address, `https://HOST:PORT` or `HOST:PORT` [env: CONVOY_ADDR].
    #[arg(long, global = true, value_name = "URL")]
    addr: Option<String>,
    /// CA certificate (PEM) that signed the coordinator's certificate [env: CONVOY_CA].
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// File holding the API token [env: CONVOY_TOKEN_FILE; or the token itself in CONVOY_TOKEN].
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Context of the config file to use instead of its current one.
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// Environment (dev, staging, prod, ...): where `apply` puts services
    /// and what other commands look at [default: `default` for changes,
    /// every environment for status and events].
    #[arg(long, global = true, value_name = "ENV", env = "CONVOY_ENV")]
    env: Option<String>,
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // `CONVOY_ENV` exported is a default; `--env` on the line is a request.
    let env_from_variable = matches.value_source("env") == Some(ValueSource::EnvVariable);
    let flags = config::Flags {
        addr: cli.addr,
        ca: cli.ca,
        token_file: cli.token_file,
        context: cli.context,
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let env = cli.env.map(|name| commands::SelectedEnv {
                name,
                from_variable: env_from_variable,
            });
            runtime.block_on(commands::run_in(cli.command, cli.output, &flags, env))
        });
    // Write errors (a closed pipe, as in `convoy nodes | head`) are not worth a panic.
    match result {
        Ok(out) => {
            let _ = std::io::stderr().write_all(out.stderr.as_bytes());
            let _ = std::io::stdout().write_all(out.stdout.as_bytes());
            ExitCode::from(out.exit)
        }
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            ExitCode::from(convoy_cli::exit::code_of(&err))
        }
    }
}

#[cfg(test)]
mod tests {
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
}

//! `convoy`: the command line of the Convoy control plane. Parses flags,
//! runs one command against the coordinator, prints its answer or one
//! `error: ...` line.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{parser::ValueSource, CommandFactory, FromArgMatches};

use convoy_cli::args::Cli;
use convoy_cli::commands;
use convoy_cli::config;

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

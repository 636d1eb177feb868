//! `convoy logs SERVICE|INSTANCE|UNIT` (docs/LOGS.md): the output of a
//! service's instances or of a unit, from their nodes. Without `--follow`
//! every line is read, then printed in time order; with it, lines are
//! printed as they arrive.

use std::io::IsTerminal;

use anyhow::{Context as _, Result};
use clap::Args;
use convoy_api::logs::{parse_since, sort_by_time, InstanceLine};
use convoy_proto as pb;

use crate::commands::{connect, now_ms, print, selected_env, Output};
use crate::config::Flags;
use crate::output::{use_colour, LogPrinter};

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// A service (all its instances), an instance (`web-2`) or a unit
    /// (`nginx.service`).
    pub target: String,
    /// Keep printing lines as they are written (Ctrl-C ends).
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines since a time: a duration back from now (`90s`, `10m`,
    /// `2h`, `1d`) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only the last N lines of each instance (before following).
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<u64>,
    /// Show each line's time.
    #[arg(short, long)]
    pub timestamps: bool,
}

pub async fn run(args: LogsArgs, flags: &Flags) -> Result<Output> {
    let LogsArgs {
        target,
        follow,
        since,
        tail,
        timestamps,
    } = args;
    let since_unix_ms = match &since {
        Some(text) => parse_since(text, now_ms()).with_context(|| "--since".to_string())?,
        None => 0,
    };
    let mut coordinator = connect(flags).await?;
    let mut stream = coordinator
        .logs(pb::LogsRequest {
            env: selected_env(),
            target,
            follow,
            since_unix_ms,
            has_tail: tail.is_some(),
            tail: tail.unwrap_or(0),
        })
        .await?;
    let stdout = std::io::stdout();
    let colour = use_colour(
        stdout.is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    );
    let mut printer = LogPrinter::new([], colour, timestamps);
    let mut held = Vec::new();
    while let Some(line) = coordinator.next_line(&mut stream).await? {
        // A line the coordinator should never send is skipped, not fatal.
        let Ok(line) = InstanceLine::try_from(line) else {
            continue;
        };
        if follow {
            print(&format!("{}\n", printer.line(&line)))?;
        } else {
            held.push(line);
        }
    }
    if !follow {
        sort_by_time(&mut held, |l| l.entry.unix_nanos);
        let mut text = String::new();
        for line in &held {
            text.push_str(&printer.line(line));
            text.push('\n');
        }
        return Ok(Output::stdout(text));
    }
    Ok(Output::default())
}

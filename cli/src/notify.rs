//! `convoy notify add|ls|rm|test`: webhook notifiers (docs/NOTIFY.md). The
//! signing secret is read from standard input or a file, never the command
//! line, and never printed.

use std::{io::Read, path::PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use convoy_proto as pb;
use serde::Serialize;

use crate::commands::Output;
use crate::config::Flags;
use crate::output::{self, Format};

/// The most bytes of a signing secret.
const MAX_SECRET_BYTES: u64 = 4096;

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Deliver events to a URL (POST, JSON or Slack's format), durably:
    /// retried with backoff until the receiver answers 2xx, also across a
    /// coordinator restart.
    Add {
        /// The notifier's name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// Where to POST, http:// or https://.
        #[arg(long)]
        url: String,
        /// Event kinds or PREFIX.* patterns, comma-separated [default:
        /// rollout.*,node.lost,node.ready,secret.rotated].
        #[arg(long, value_name = "KIND[,KIND...]", value_delimiter = ',')]
        events: Vec<String>,
        /// Body format: json (the event) or slack (`{"text": ...}`).
        #[arg(long, default_value = "json", value_parser = ["json", "slack"])]
        format: String,
        /// Sign every delivery (`X-Convoy-Signature: sha256=HMAC`) with a
        /// secret read from standard input.
        #[arg(long, conflicts_with = "signing_secret_file")]
        signing_secret_stdin: bool,
        /// Read the signing secret from this file.
        #[arg(long, value_name = "FILE")]
        signing_secret_file: Option<PathBuf>,
        /// Replace a notifier of that name.
        #[arg(long)]
        replace: bool,
    },
    /// List the notifiers, with what each has queued and its last error.
    #[command(alias = "list")]
    Ls,
    /// Remove a notifier (and what it has queued).
    Rm { name: String },
    /// Send one `notify.test` event now and show the receiver's answer.
    Test { name: String },
}

#[derive(Debug, Serialize, PartialEq)]
pub struct NotifierJson {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub format: String,
    pub signed: bool,
    pub created_by: String,
    pub created_unix_ms: i64,
    pub queued: u64,
    pub delivered: u64,
    pub last_delivered_unix_ms: i64,
    pub last_error: String,
}

impl From<pb::NotifierInfo> for NotifierJson {
    fn from(info: pb::NotifierInfo) -> Self {
        let pb::NotifierInfo {
            name,
            url,
            events,
            format,
            signed,
            created_by,
            created_unix_ms,
            queued,
            delivered,
            last_delivered_unix_ms,
            last_error,
        } = info;
        Self {
            name,
            url,
            events,
            format,
            signed,
            created_by,
            created_unix_ms,
            queued,
            delivered,
            last_delivered_unix_ms,
            last_error,
        }
    }
}

#[derive(Debug, Serialize)]
struct NotifierListJson {
    notifiers: Vec<NotifierJson>,
}

#[derive(Debug, Serialize)]
struct TestJson {
    name: String,
    status: u32,
    error: String,
    duration_ms: u64,
}

pub async fn run(
    command: NotifyCommand,
    format: Format,
    flags: &Flags,
    now_ms: i64,
    stdin: &mut dyn Read,
) -> Result<Output> {
    match command {
        NotifyCommand::Add {
            name,
            url,
            events,
            format: body_format,
            signing_secret_stdin,
            signing_secret_file,
            replace,
        } => {
            let signing_secret = match (signing_secret_stdin, signing_secret_file) {
                (true, _) => read_secret(stdin, "standard input")?,
                (false, Some(path)) => {
                    let mut file = std::fs::File::open(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    read_secret(&mut file, &path.display().to_string())?
                }
                (false, None) => String::new(),
            };
            let mut coordinator = crate::commands::connect(flags).await?;
            let info = NotifierJson::from(
                coordinator
                    .add_notifier(pb::AddNotifierRequest {
                        name,
                        url,
                        events,
                        format: body_format,
                        signing_secret,
                        replace,
                    })
                    .await?,
            );
            Ok(Output::stdout(match format {
                Format::Json => output::json(&info),
                Format::Table => format!(
                    "notifier {} added: {} to {} ({}{})\n",
                    info.name,
                    info.events.join(","),
                    info.url,
                    info.format,
                    if info.signed { ", signed" } else { "" }
                ),
            }))
        }
        NotifyCommand::Ls => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let list: Vec<NotifierJson> = coordinator
                .list_notifiers()
                .await?
                .notifiers
                .into_iter()
                .map(NotifierJson::from)
                .collect();
            Ok(Output::stdout(match format {
                Format::Json => output::json(&NotifierListJson { notifiers: list }),
                Format::Table => table(&list, now_ms),
            }))
        }
        NotifyCommand::Rm { name } => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let info = NotifierJson::from(coordinator.remove_notifier(name).await?);
            Ok(Output::stdout(match format {
                Format::Json => output::json(&info),
                Format::Table => format!(
                    "removed notifier {}{}\n",
                    info.name,
                    match info.queued {
                        0 => String::new(),
                        n => format!(" ({n} undelivered notifications dropped)"),
                    }
                ),
            }))
        }
        NotifyCommand::Test { name } => {
            let mut coordinator = crate::commands::connect(flags).await?;
            let answer = coordinator.test_notifier(name.clone()).await?;
            let json = TestJson {
                name,
                status: answer.status,
                error: answer.error,
                duration_ms: answer.duration_ms,
            };
            let ok = (200..300).contains(&json.status);
            let text = match format {
                Format::Json => output::json(&json),
                Format::Table if ok => format!(
                    "{} answered HTTP {} in {} ms\n",
                    json.name, json.status, json.duration_ms
                ),
                Format::Table => String::new(),
            };
            let mut out = Output::stdout(text);
            if !ok {
                out.stderr = if json.status == 0 {
                    format!(
                        "error: notifier `{}` got no answer: {}\n",
                        json.name, json.error
                    )
                } else {
                    format!(
                        "error: notifier `{}`'s receiver answered HTTP {}: {}\n",
                        json.name, json.status, json.error
                    )
                };
                out.exit = 1;
            }
            Ok(out)
        }
    }
}

/// A signing secret, without the line end `echo` or a file adds.
fn read_secret(input: &mut dyn Read, from: &str) -> Result<String> {
    let mut secret = String::new();
    input
        .take(MAX_SECRET_BYTES + 1)
        .read_to_string(&mut secret)
        .with_context(|| format!("reading the signing secret from {from}"))?;
    if secret.len() as u64 > MAX_SECRET_BYTES {
        bail!("the signing secret in {from} is over {MAX_SECRET_BYTES} bytes");
    }
    let trimmed = secret.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        bail!("{from} held no signing secret");
    }
    Ok(trimmed.to_string())
}

fn table(list: &[NotifierJson], now_ms: i64) -> String {
    if list.is_empty() {
        return "no notifiers\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.url.clone(),
                n.events.join(","),
                format!("{}{}", n.format, if n.signed { ",signed" } else { "" }),
                n.queued.to_string(),
                match n.last_delivered_unix_ms {
                    0 => "-".to_string(),
                    t => format!("{} ago", output::format_age(now_ms - t)),
                },
                if n.last_error.is_empty() {
                    "-".to_string()
                } else {
                    n.last_error.clone()
                },
            ]
        })
        .collect();
    output::table(
        &[
            "NAME",
            "URL",
            "EVENTS",
            "FORMAT",
            "QUEUED",
            "DELIVERED",
            "LAST ERROR",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_lose_their_line_end_and_are_bounded() {
        assert_eq!(
            read_secret(&mut "s3cret\n".as_bytes(), "stdin").unwrap(),
            "s3cret"
        );
        assert!(read_secret(&mut "\n".as_bytes(), "stdin").is_err());
        let big = "x".repeat(MAX_SECRET_BYTES as usize + 1);
        let e = read_secret(&mut big.as_bytes(), "f.txt").unwrap_err();
        assert!(e.to_string().contains("f.txt"), "{e}");
    }

    #[test]
    fn the_table_shows_queue_and_errors() {
        let n = NotifierJson {
            name: "ops".into(),
            url: "http://127.0.0.1:9/h".into(),
            events: vec!["rollout.*".into(), "node.lost".into()],
            format: "json".into(),
            signed: true,
            created_by: "admin".into(),
            created_unix_ms: 0,
            queued: 3,
            delivered: 0,
            last_delivered_unix_ms: 0,
            last_error: "connection refused".into(),
        };
        let t = table(&[n], 1000);
        assert!(t.contains("rollout.*,node.lost"), "{t}");
        assert!(t.contains("json,signed"), "{t}");
        assert!(t.contains("connection refused"), "{t}");
    }
}

//! `convoy audit`: who changed what, and what was refused.

use anyhow::Result;
use convoy_proto as pb;
use serde::Serialize;

use super::or_dash;
use crate::commands::Output;
use crate::config::Flags;
use crate::output::{self, Format};

#[derive(Debug, Serialize)]
struct AuditJson {
    entries: Vec<AuditEntryJson>,
}

#[derive(Debug, Serialize)]
struct AuditEntryJson {
    unix_ms: i64,
    who: String,
    action: String,
    target: String,
    result: String,
}

pub async fn audit(
    since_secs: Option<u64>,
    format: Format,
    flags: &Flags,
    now_ms: i64,
) -> Result<Output> {
    let since = since_secs.map_or(0, |s| {
        now_ms.saturating_sub(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
    });
    let mut coordinator = crate::commands::connect(flags).await?;
    let resp = coordinator.list_audit(since).await?;
    let entries: Vec<AuditEntryJson> = resp
        .entries
        .into_iter()
        .map(|e| {
            let pb::AuditEntry {
                unix_ms,
                who,
                action,
                target,
                result,
            } = e;
            AuditEntryJson {
                unix_ms,
                who,
                action,
                target,
                result,
            }
        })
        .collect();
    Ok(Output::stdout(match format {
        Format::Json => output::json(&AuditJson { entries }),
        Format::Table if entries.is_empty() => "no audit entries\n".to_owned(),
        Format::Table => output::table(
            &["WHEN", "WHO", "ACTION", "TARGET", "RESULT"],
            &entries
                .iter()
                .map(|e| {
                    vec![
                        format!("{} ago", output::format_age(now_ms - e.unix_ms)),
                        e.who.clone(),
                        e.action.clone(),
                        or_dash(&e.target),
                        e.result.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }))
}

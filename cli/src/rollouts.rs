//! Rollout commands: `apply --wait`, `rollout status|pause|resume`,
//! `promote`, `history`, `rollback`, `diff`.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use convoy_proto as pb;
use serde::Serialize;

use crate::client::RolloutVerb;
use crate::commands::{connect, now_ms, print, selected_env, service_env, Output};
use crate::config::Flags;
use crate::output::{self, Format, RolloutJson};

use convoy_api::events::EventKind;

/// `apply -f FILE --wait`: applies, then follows the event stream until
/// every rollout the apply started has ended.
pub async fn apply_and_wait(
    files: &[std::path::PathBuf],
    env_files: &[std::path::PathBuf],
    profiles: Vec<String>,
    timeout_secs: u64,
    format: Format,
    flags: &crate::config::Flags,
) -> Result<Output> {
    let spec = crate::commands::load_spec(files, env_files)?;
    let env = crate::commands::apply_env(&spec)?;
    let env_files = crate::commands::wire_env_files(spec.env_files);
    let (filename, content) = (spec.filename, spec.content);
    let mut coordinator = connect(flags).await?;
    // Subscribed before the apply, so no event of its rollout is missed.
    let mut stream = coordinator.watch(pb::WatchRequest::default()).await?;
    let response = coordinator
        .apply(pb::ApplyRequest {
            filename,
            content,
            dry_run: false,
            env,
            profiles,
            env_files,
            config_files: spec.configs.files,
            config_env: spec.configs.env,
            secret_files: spec.secrets.files,
            secret_env: spec.secrets.env,
        })
        .await?;
    let warnings = output::apply_warnings(&response);
    if !warnings.is_empty() {
        eprint!("{warnings}");
    }
    match format {
        Format::Table => print(&output::apply_table(&response))?,
        Format::Json => print(&output::json(&output::ApplyJson::from(&response)))?,
    }
    // (env, service) → revision whose rollout we wait for.
    let mut waiting: Vec<(String, String, u64)> = response
        .services
        .iter()
        .filter(|c| starts_rollout(c))
        .map(|c| (c.env.clone(), c.service.clone(), c.revision))
        .collect();
    if waiting.is_empty() {
        eprintln!("nothing to roll out");
        return Ok(Output::default());
    }
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut failures = Vec::new();
    // One bar per service: its healthy instances of those wanted (plain
    // lines without a terminal), refreshed at most twice a second.
    let mut progress = crate::progress::Progress::new();
    let mut shown_at: Option<Instant> = None;
    while !waiting.is_empty() {
        if shown_at.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
            shown_at = Some(Instant::now());
            show_progress(&mut coordinator, &mut progress, &waiting).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let tick = left.min(Duration::from_millis(500));
        let ev = match tokio::time::timeout(tick, coordinator.next_event(&mut stream)).await {
            Err(_) if tick < left => continue,
            Err(_) => {
                progress.finish();
                let names: Vec<String> = waiting
                    .iter()
                    .map(|(_, s, r)| format!("{s} r{r}"))
                    .collect();
                return Err(crate::exit::TimedOut(format!(
                    "timed out after {} waiting for the rollout of {}; it goes on: `convoy rollout status SERVICE`",
                    output::format_age(timeout_secs as i64 * 1000),
                    names.join(", ")
                ))
                .into());
            }
            Ok(ev) => ev?.ok_or_else(|| anyhow!("the coordinator ended the event stream"))?,
        };
        let Some(pos) = waiting.iter().position(|(env, svc, rev)| {
            *env == ev.env
                && *svc == ev.service
                && ev.fields.get("revision").map(String::as_str) == Some(&rev.to_string())
        }) else {
            continue;
        };
        if ev.kind.starts_with("rollout.") {
            progress.println(&ev.message);
        }
        let kind = EventKind::parse(&ev.kind);
        if kind.is_some_and(|k| EventKind::ROLLOUT_FINAL.contains(&k)) {
            show_progress(&mut coordinator, &mut progress, &waiting[pos..=pos]).await;
            let (_, svc, rev) = waiting.remove(pos);
            if kind != Some(EventKind::RolloutSucceeded) {
                let reason = ev.fields.get("reason").cloned().unwrap_or_default();
                failures.push(format!("{svc} r{rev}: {} ({reason})", ev.kind));
            }
        }
    }
    progress.finish();
    if failures.is_empty() {
        eprintln!("rollout complete");
        Ok(Output::default())
    } else {
        // The rollback, if any, was announced with the failure.
        bail!("rollout did not succeed: {}", failures.join("; "))
    }
}

/// Shows each waited-for service's healthy instances of those wanted. A
/// failed status call shows nothing: the wait goes on with the events.
async fn show_progress(
    coordinator: &mut crate::client::Coordinator,
    progress: &mut crate::progress::Progress,
    waiting: &[(String, String, u64)],
) {
    for (env, service, _) in waiting {
        let Ok(status) = coordinator
            .status(pb::StatusRequest {
                service: service.clone(),
                env: env.clone(),
            })
            .await
        else {
            continue;
        };
        for (name, count) in crate::progress::counts(&status) {
            progress.update(&name, count, "");
        }
    }
}

/// Whether an apply's change starts a rollout worth waiting for: a new
/// service, or an update that replaces instances.
fn starts_rollout(c: &pb::ServiceChange) -> bool {
    use pb::ChangeAction as A;
    let action = A::try_from(c.action).unwrap_or_default();
    match action {
        A::Create => !c.instances.is_empty(),
        A::Update => c.instances.iter().any(|i| i.action == A::Replace as i32),
        _ => false,
    }
}

async fn service_status(
    coordinator: &mut crate::client::Coordinator,
    service: &str,
) -> Result<pb::ServiceStatus> {
    coordinator
        .status(pb::StatusRequest {
            service: service.to_string(),
            // One service: its environment's, not the first of that name
            // in any environment (issue 13).
            env: service_env(),
        })
        .await?
        .services
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow!(
                "service `{service}` not found in environment `{}`",
                service_env()
            )
        })
}

/// `convoy rollout status SERVICE [--watch]`.
pub async fn status(service: String, watch: bool, format: Format, flags: &Flags) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    if !watch {
        let s = service_status(&mut coordinator, &service).await?;
        return Ok(Output::stdout(render(&s, format)));
    }
    let mut stream = coordinator
        .watch(pb::WatchRequest {
            service: service.clone(),
            env: service_env(),
            ..Default::default()
        })
        .await?;
    let tty = std::io::stdout().is_terminal();
    loop {
        let s = service_status(&mut coordinator, &service).await?;
        let text = render(&s, format);
        match format {
            Format::Table if tty => print(&format!("\x1b[H\x1b[2J{text}"))?,
            _ => print(&text)?,
        }
        if coordinator.next_event(&mut stream).await?.is_none() {
            return Ok(Output::default());
        }
    }
}

fn render(s: &pb::ServiceStatus, format: Format) -> String {
    match (format, &s.rollout) {
        (Format::Json, r) => {
            let mut line = serde_json::to_string(&r.as_ref().map(RolloutJson::from))
                .unwrap_or_else(|_| "null".into());
            line.push('\n');
            line
        }
        (Format::Table, None) => format!("{}: no rollout yet\n", s.name),
        (Format::Table, Some(r)) => rollout_text(&s.name, r, now_ms()),
    }
}

/// A rollout with progress bars.
pub fn rollout_text(service: &str, r: &pb::RolloutInfo, now_ms: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{service}: {} r{} → r{} ({}): {}",
        if r.is_rollback { "rollback" } else { "rollout" },
        r.from_revision,
        r.to_revision,
        r.strategy,
        r.state
    );
    let total = r.total.max(1);
    for (label, n) in [
        ("updated", r.updated),
        ("healthy", r.healthy),
        ("failed", r.failed),
    ] {
        let _ = writeln!(out, "  {label:<8} {} {n}/{}", bar(n, total, 20), r.total);
    }
    let _ = writeln!(
        out,
        "  started {} ago, last change {} ago",
        output::format_age(now_ms - r.started_unix_ms),
        output::format_age(now_ms - r.updated_unix_ms)
    );
    if !r.reason.is_empty() {
        let _ = writeln!(out, "  reason: {}", r.reason);
    }
    if r.state == "waiting-promotion" {
        let _ = writeln!(out, "  waiting: `convoy promote {service}` to go on");
    }
    out
}

fn bar(n: u32, total: u32, width: usize) -> String {
    let filled = (n.min(total) as usize * width) / total.max(1) as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// `convoy promote|rollout pause|rollout resume SERVICE`.
pub async fn steer(
    service: String,
    verb: RolloutVerb,
    format: Format,
    flags: &Flags,
) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    let r = coordinator
        .rollout_command(
            verb,
            pb::RolloutRequest {
                service: service.clone(),
                env: selected_env(),
            },
        )
        .await?;
    Ok(Output::stdout(match format {
        Format::Json => output::json(&RolloutJson::from(&r)),
        Format::Table => format!("{}\n", r.summary),
    }))
}

#[derive(Debug, Serialize)]
struct RevisionJson {
    revision: u64,
    current: bool,
    created_unix_ms: i64,
    created_by: String,
    source: String,
    image: String,
    spec_hash: String,
    outcome: String,
    changed_fields: Vec<String>,
}

#[derive(Debug, Serialize)]
struct HistoryJson {
    service: String,
    current: u64,
    revisions: Vec<RevisionJson>,
}

/// `convoy history SERVICE`.
pub async fn history(service: String, format: Format, flags: &Flags) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    let h = coordinator
        .history(pb::HistoryRequest {
            service: service.clone(),
            env: selected_env(),
        })
        .await?;
    let json = HistoryJson {
        service,
        current: h.current,
        revisions: h
            .revisions
            .iter()
            .map(|r| RevisionJson {
                revision: r.revision,
                current: r.revision == h.current,
                created_unix_ms: r.created_unix_ms,
                created_by: r.created_by.clone(),
                source: r.source.clone(),
                image: r.image.clone(),
                spec_hash: r.spec_hash.clone(),
                outcome: r.outcome.clone(),
                changed_fields: r.changed_fields.clone(),
            })
            .collect(),
    };
    if format == Format::Json {
        return Ok(Output::stdout(output::json(&json)));
    }
    let now = now_ms();
    let rows: Vec<Vec<String>> = json
        .revisions
        .iter()
        .map(|r| {
            vec![
                format!("{}{}", r.revision, if r.current { " *" } else { "" }),
                format!("{} ago", output::format_age(now - r.created_unix_ms)),
                r.created_by.clone(),
                r.image.clone(),
                if r.outcome.is_empty() {
                    "-".into()
                } else {
                    r.outcome.clone()
                },
                if r.changed_fields.is_empty() {
                    r.source.clone()
                } else {
                    format!("{} ({})", r.source, r.changed_fields.join(", "))
                },
            ]
        })
        .collect();
    Ok(Output::stdout(output::table(
        &[
            "REV",
            "CREATED",
            "BY",
            "IMAGE",
            "OUTCOME",
            "SOURCE (CHANGED)",
        ],
        &rows,
    )))
}

/// `convoy rollout abort SERVICE`: a rollback to the revision the active
/// rollout started from.
pub async fn abort(service: String, format: Format, flags: &Flags) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    let s = service_status(&mut coordinator, &service).await?;
    let Some(r) = s.rollout.filter(|r| {
        matches!(
            r.state.as_str(),
            "running" | "paused" | "waiting-promotion" | "failed"
        )
    }) else {
        bail!("`{service}` has no rollout in progress to abort");
    };
    if r.from_revision == 0 {
        bail!("the first rollout of `{service}` has no revision to go back to; `convoy delete {service}` removes it");
    }
    drop(coordinator);
    rollback(vec![service], Some(r.from_revision), format, flags).await
}

/// `convoy rollback SERVICE [--to REV]`.
pub async fn rollback(
    services: Vec<String>,
    to: Option<u64>,
    format: Format,
    flags: &Flags,
) -> Result<Output> {
    if to == Some(0) {
        bail!("--to takes a revision number (1 or more)");
    }
    let mut services = services.into_iter();
    let Some(service) = services.next() else {
        bail!("name the service to roll back");
    };
    let also: Vec<String> = services.collect();
    if to.is_some() && !also.is_empty() {
        bail!("--to goes with one service only: several services each go back to their previous revision");
    }
    let mut coordinator = connect(flags).await?;
    let response = coordinator
        .rollback(pb::RollbackRequest {
            service,
            env: selected_env(),
            to_revision: to.unwrap_or(0),
            also,
        })
        .await?;
    Ok(Output::stdout(match format {
        Format::Table => output::apply_table(&response),
        Format::Json => output::json(&output::ApplyJson::from(&response)),
    }))
}

/// `convoy diff SERVICE REV1 REV2`: the changed fields, then a unified
/// diff of the two revisions' specs.
pub async fn diff(
    service: String,
    from: u64,
    to: u64,
    format: Format,
    flags: &Flags,
) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    let h = coordinator
        .history(pb::HistoryRequest {
            service: service.clone(),
            env: selected_env(),
        })
        .await?;
    let find = |rev: u64| {
        h.revisions
            .iter()
            .find(|r| r.revision == rev)
            .with_context(|| format!("`{service}` has no revision {rev}"))
    };
    let (a, b) = (find(from)?, find(to)?);
    let text = similar::TextDiff::from_lines(&a.spec_json, &b.spec_json);
    let unified = text
        .unified_diff()
        .context_radius(3)
        .header(&format!("r{from}"), &format!("r{to}"))
        .to_string();
    if format == Format::Json {
        #[derive(Serialize)]
        struct DiffJson<'a> {
            service: &'a str,
            from: u64,
            to: u64,
            same_containers: bool,
            diff: &'a str,
        }
        return Ok(Output::stdout(output::json(&DiffJson {
            service: &service,
            from,
            to,
            same_containers: a.spec_hash == b.spec_hash,
            diff: &unified,
        })));
    }
    if unified.is_empty() {
        return Ok(Output::stdout(format!("r{from} and r{to} are the same\n")));
    }
    Ok(Output::stdout(unified))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_in_proportion() {
        assert_eq!(bar(0, 4, 8), "[--------]");
        assert_eq!(bar(2, 4, 8), "[####----]");
        assert_eq!(bar(4, 4, 8), "[########]");
        assert_eq!(bar(9, 4, 8), "[########]");
    }

    #[test]
    fn only_replacing_updates_and_creates_start_rollouts() {
        use pb::ChangeAction as A;
        let change = |action: A, instances: &[A]| pb::ServiceChange {
            action: action as i32,
            instances: instances
                .iter()
                .map(|a| pb::InstanceChange {
                    action: *a as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        assert!(starts_rollout(&change(A::Create, &[A::Create])));
        assert!(starts_rollout(&change(A::Update, &[A::Replace, A::Create])));
        assert!(!starts_rollout(&change(
            A::Update,
            &[A::Unchanged, A::Create]
        )));
        assert!(!starts_rollout(&change(A::Unchanged, &[A::Unchanged])));
    }

    #[test]
    fn rollout_text_shows_progress_and_what_it_waits_for() {
        let r = pb::RolloutInfo {
            from_revision: 1,
            to_revision: 2,
            state: "waiting-promotion".into(),
            strategy: "canary".into(),
            updated: 1,
            healthy: 1,
            total: 4,
            started_unix_ms: 0,
            updated_unix_ms: 0,
            ..Default::default()
        };
        let text = rollout_text("web", &r, 3000);
        assert!(
            text.starts_with("web: rollout r1 → r2 (canary): waiting-promotion\n"),
            "{text}"
        );
        assert!(
            text.contains("updated  [#####---------------] 1/4"),
            "{text}"
        );
        assert!(text.contains("`convoy promote web`"), "{text}");
    }
}

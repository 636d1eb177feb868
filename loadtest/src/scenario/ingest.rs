//! Status/heartbeat ingestion: every agent sends reports at its share of
//! `--rate` per second for `--secs`, while one Watch stream (what `convoy
//! events` reads) consumes every event. Status reports each flip one
//! instance's health, so each absorbed report is one `instance.health`
//! event the coordinator counts in /metrics; the watcher keeps up when it
//! received every one of them.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::Result;
use clap::{Args, ValueEnum};
use convoy_api::events::EventKind;

use super::{Bench, Common};
use crate::{
    events::Watcher,
    fleet::{Ingest, IngestKind},
    stats::OverRounds,
};

/// The kind each ingested report makes.
const HEALTH: &str = EventKind::InstanceHealth.as_str();

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Status,
    Heartbeat,
}

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub common: Common,
    /// Seconds per round.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Reports per second offered, fleet-wide.
    #[arg(long, default_value_t = 100_000)]
    pub rate: u64,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long, value_enum, default_value_t = Kind::Status)]
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy)]
pub struct IngestRound {
    /// Put on the agents' streams, per second.
    pub sent_per_s: f64,
    /// Not sent: an agent's outbound queue was full (backpressure).
    pub skipped_per_s: f64,
    /// `instance.health` events the coordinator emitted, per second.
    pub absorbed_per_s: f64,
    /// Of those, received by the watcher.
    pub received_per_s: f64,
    pub watcher_kept_up: bool,
    pub coordinator_cpu_pct: f64,
}

pub async fn run(args: &IngestArgs) -> Result<Vec<IngestRound>> {
    let bench = Bench::start(&args.common).await?;
    bench.deploy_everywhere(0).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fleet = bench.fleet();
    let n = fleet.len();
    let kind = match args.kind {
        Kind::Status => IngestKind::Status,
        Kind::Heartbeat => IngestKind::Heartbeat,
    };
    let every = Duration::from_secs_f64(n as f64 / args.rate.max(1) as f64);
    let mut watcher = Watcher::start(&bench.control).await?;
    let mut out = Vec::new();
    for round in 1..=args.rounds {
        if watcher.with(|s| s.ended.is_some()) {
            watcher = Watcher::start(&bench.control).await?;
        }
        let c = fleet.counters();
        let emitted0 = bench.control.events_emitted(HEALTH).await?;
        let received0 = watcher.with(|s| s.by_kind.get(HEALTH).copied().unwrap_or(0));
        let sent0 = c.ingest_sent.load(Ordering::Relaxed);
        let skipped0 = c.ingest_skipped.load(Ordering::Relaxed);
        let cpu0 = bench.coord.cpu_time();
        let t0 = Instant::now();
        fleet.set_ingest(Some(Ingest { every, kind }));
        tokio::time::sleep(Duration::from_secs(args.secs)).await;
        fleet.set_ingest(None);
        let secs = t0.elapsed().as_secs_f64();
        let cpu = match (cpu0, bench.coord.cpu_time()) {
            (Some(a), Some(b)) => (b - a).as_secs_f64() / secs * 100.0,
            _ => f64::NAN,
        };
        let sent = c.ingest_sent.load(Ordering::Relaxed) - sent0;
        let skipped = c.ingest_skipped.load(Ordering::Relaxed) - skipped0;
        // Let what is in flight arrive.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let emitted = bench.control.events_emitted(HEALTH).await? - emitted0;
        let (received, ended) = watcher.with(|s| {
            (
                s.by_kind.get(HEALTH).copied().unwrap_or(0) - received0,
                s.ended.clone(),
            )
        });
        let r = IngestRound {
            sent_per_s: sent as f64 / secs,
            skipped_per_s: skipped as f64 / secs,
            absorbed_per_s: emitted as f64 / secs,
            received_per_s: received as f64 / secs,
            watcher_kept_up: ended.is_none() && received == emitted,
            coordinator_cpu_pct: cpu,
        };
        println!(
            "ingest n={n} kind={:?} round={round} offered_per_s={} sent_per_s={:.0} skipped_per_s={:.0} absorbed_per_s={:.0} watcher_received_per_s={:.0} watcher_kept_up={} coordinator_cpu_pct={:.0}{}",
            args.kind,
            args.rate,
            r.sent_per_s,
            r.skipped_per_s,
            r.absorbed_per_s,
            r.received_per_s,
            r.watcher_kept_up,
            r.coordinator_cpu_pct,
            ended.map(|e| format!(" watcher_ended=\"{e}\"")).unwrap_or_default(),
        );
        out.push(r);
    }
    let over = |f: fn(&IngestRound) -> f64| OverRounds::of(&out.iter().map(f).collect::<Vec<_>>());
    println!(
        "ingest n={n} kind={:?} rounds={} summary: offered_per_s={} sent_per_s={} absorbed_per_s={} watcher_received_per_s={} watcher_kept_up={}/{} coordinator_cpu_pct={}",
        args.kind,
        out.len(),
        args.rate,
        over(|r| r.sent_per_s),
        over(|r| r.absorbed_per_s),
        over(|r| r.received_per_s),
        out.iter().filter(|r| r.watcher_kept_up).count(),
        out.len(),
        over(|r| r.coordinator_cpu_pct),
    );
    bench.stop().await;
    Ok(out)
}

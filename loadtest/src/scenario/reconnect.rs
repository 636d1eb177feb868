//! Reconnect storm: SIGKILL the coordinator with the whole fleet attached,
//! start it again on the same data dir and ports, and time until every agent
//! is connected again and has acknowledged its plan (harness view), and until
//! the coordinator lists every node ready and in sync.
//!
//! Each round should be what a restart in production meets: agents whose
//! sessions were healthy, so their backoff starts at 1 s (jittered to
//! 0.5–1 s). The agent resets its backoff after 120 s of session; rounds
//! here are `--between-secs` apart, so the fleet's reset is set just under
//! that.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use clap::Args;

use super::{Bench, Common};
use crate::stats::OverRounds;

#[derive(Debug, Clone, Args)]
pub struct ReconnectArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Pause between rounds (the fleet's backoff resets one second sooner).
    #[arg(long, default_value_t = 5)]
    pub between_secs: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct ReconnectRound {
    /// Kill → the restarted coordinator prints its ready line.
    pub restart_ms: f64,
    /// Kill → every agent welcomed by the new coordinator.
    pub all_connected_ms: f64,
    /// Kill → every agent acked its plan on its new session.
    pub all_acked_ms: f64,
    /// Kill → ListNodes: every node ready and acked.
    pub coordinator_in_sync_ms: f64,
}

pub async fn run(args: &ReconnectArgs) -> Result<Vec<ReconnectRound>> {
    let mut common = args.common.clone();
    common.healthy_session_secs = args.between_secs.saturating_sub(1).max(1);
    let mut bench = Bench::start(&common).await?;
    bench.deploy_everywhere(0).await?;
    let timeout = Duration::from_secs(args.timeout_secs);
    bench.wait_coordinator_view(timeout, true).await?;
    let n = bench.names.len();
    let mut out = Vec::new();
    for round in 1..=args.rounds {
        let before: Vec<u64> = bench
            .fleet()
            .agents
            .iter()
            .map(|a| a.welcomes.load(Ordering::Acquire))
            .collect();
        let errors0 = bench
            .fleet()
            .counters()
            .session_errors
            .load(Ordering::Relaxed);
        let t0 = Instant::now();
        bench.coord.kill()?;
        bench.coord.restart().await?;
        let restart_ms = t0.elapsed().as_secs_f64() * 1e3;
        let fleet = bench.fleet();
        let mut connected_ms = None;
        let mut acked_ms = None;
        let mut next_progress = Duration::from_secs(1);
        while acked_ms.is_none() {
            let (mut connected, mut acked) = (0, 0);
            for (a, w0) in fleet.agents.iter().zip(&before) {
                if a.welcomes.load(Ordering::Acquire) > *w0 {
                    connected += 1;
                    if a.in_sync() {
                        acked += 1;
                    }
                }
            }
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if connected == n && connected_ms.is_none() {
                connected_ms = Some(ms);
            }
            if acked == n {
                acked_ms = Some(ms);
            }
            if t0.elapsed() >= next_progress {
                eprintln!(
                    "reconnect round={round} t_ms={ms:.0} connected={connected} acked={acked}"
                );
                next_progress += Duration::from_secs(1);
            }
            if t0.elapsed() > timeout {
                bail!(
                    "round {round}: {connected} of {n} reconnected, {acked} in sync after {timeout:?}; last error: {}",
                    fleet.counters().last_error()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        bench.wait_coordinator_view(timeout, true).await?;
        let r = ReconnectRound {
            restart_ms,
            all_connected_ms: connected_ms.unwrap_or(f64::NAN),
            all_acked_ms: acked_ms.unwrap_or(f64::NAN),
            coordinator_in_sync_ms: t0.elapsed().as_secs_f64() * 1e3,
        };
        let counters = bench.fleet().counters();
        println!(
            "reconnect n={n} round={round} restart_ms={:.0} all_connected_ms={:.0} all_acked_ms={:.0} coordinator_in_sync_ms={:.0} session_errors={} last_error=\"{}\"",
            r.restart_ms,
            r.all_connected_ms,
            r.all_acked_ms,
            r.coordinator_in_sync_ms,
            counters.session_errors.load(Ordering::Relaxed) - errors0,
            counters.last_error(),
        );
        out.push(r);
        tokio::time::sleep(Duration::from_secs(args.between_secs)).await;
    }
    let over =
        |f: fn(&ReconnectRound) -> f64| OverRounds::of(&out.iter().map(f).collect::<Vec<_>>());
    println!(
        "reconnect n={n} rounds={} summary: restart_ms={} all_connected_ms={} all_acked_ms={} coordinator_in_sync_ms={}",
        out.len(),
        over(|r| r.restart_ms),
        over(|r| r.all_connected_ms),
        over(|r| r.all_acked_ms),
        over(|r| r.coordinator_in_sync_ms),
    );
    bench.stop().await;
    Ok(out)
}

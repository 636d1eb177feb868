//! Fan-out: one apply that touches every node (a new revision of a global
//! service) → the time until each simulated agent has acknowledged the new
//! plan, stamped by the agent as it queues its Ack; and the time until the
//! coordinator lists every node as acked. Each round starts once the
//! previous one's rollout is over, so it measures one apply in a quiet
//! cluster.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::Result;
use clap::Args;

use super::{Bench, Common};
use crate::stats::{OverRounds, Spread};

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 5)]
    pub rounds: u64,
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct FanoutRound {
    /// The Apply call itself.
    pub apply_ms: f64,
    /// Apply → each agent's Ack, over agents.
    pub acked: Spread,
    /// Apply → ListNodes shows every node acked.
    pub coordinator_all_acked_ms: f64,
    /// CPU the coordinator spent from the Apply until every agent acked
    /// (user + system, all threads): less noisy than latency on a shared
    /// machine, and what a change to the plan path must lower.
    pub coordinator_cpu_ms: f64,
    /// CPU this harness spent over the same span (its agents' TLS, HTTP/2,
    /// decoding, Acks and status reports).
    pub harness_cpu_ms: f64,
}

pub async fn run(args: &FanoutArgs) -> Result<Vec<FanoutRound>> {
    let bench = Bench::start(&args.common).await?;
    let rounds = measure(&bench, args.rounds, Duration::from_secs(args.timeout_secs)).await;
    bench.stop().await;
    rounds
}

/// An unmeasured first apply creates the service on every node; each
/// measured round is an update of it.
pub async fn measure(bench: &Bench, rounds: u64, timeout: Duration) -> Result<Vec<FanoutRound>> {
    let n = bench.names.len();
    let fleet = bench.fleet();
    let warmup = bench.deploy_everywhere(0).await?;
    println!(
        "fanout n={n} warmup_create_ms={:.1}",
        warmup.as_secs_f64() * 1e3
    );
    bench.wait_coordinator_view(timeout, true).await?;
    bench.wait_rollout_done(timeout).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut out = Vec::new();
    for round in 1..=rounds {
        let cpu0 = (
            bench.coord.cpu_time(),
            crate::child::cpu_time(std::process::id()),
        );
        let t0_us = fleet.now_us();
        let t0 = Instant::now();
        let rev = bench.apply_global(round).await?;
        let apply_ms = t0.elapsed().as_secs_f64() * 1e3;
        fleet
            .wait_all(timeout, |a| {
                a.tracked_revision.load(Ordering::Acquire) >= rev
            })
            .await
            .map_err(|missing| {
                anyhow::anyhow!("round {round}: {missing} agents never acked revision {rev}")
            })?;
        let cpu1 = (
            bench.coord.cpu_time(),
            crate::child::cpu_time(std::process::id()),
        );
        let spent = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() * 1e3,
            _ => f64::NAN,
        };
        let coordinator_cpu_ms = spent(cpu0.0, cpu1.0);
        let harness_cpu_ms = spent(cpu0.1, cpu1.1);
        let acked = Spread::of(
            fleet
                .agents
                .iter()
                .map(|a| {
                    a.tracked_at_us
                        .load(Ordering::Relaxed)
                        .saturating_sub(t0_us) as f64
                        / 1e3
                })
                .collect(),
        );
        bench.wait_coordinator_view(timeout, true).await?;
        let coordinator_all_acked_ms = t0.elapsed().as_secs_f64() * 1e3;
        println!(
            "fanout n={n} round={round} apply_ms={apply_ms:.1} ack_p50_ms={:.1} ack_p99_ms={:.1} ack_max_ms={:.1} coordinator_all_acked_ms={coordinator_all_acked_ms:.1} coordinator_cpu_ms={coordinator_cpu_ms:.0} harness_cpu_ms={harness_cpu_ms:.0}",
            acked.p50, acked.p99, acked.max
        );
        out.push(FanoutRound {
            apply_ms,
            acked,
            coordinator_all_acked_ms,
            coordinator_cpu_ms,
            harness_cpu_ms,
        });
        bench.wait_rollout_done(timeout).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let over = |f: fn(&FanoutRound) -> f64| OverRounds::of(&out.iter().map(f).collect::<Vec<_>>());
    println!(
        "fanout n={n} rounds={} summary: ack_p50_ms={} ack_p99_ms={} ack_max_ms={} coordinator_all_acked_ms={} apply_ms={} coordinator_cpu_ms={} harness_cpu_ms={}",
        out.len(),
        over(|r| r.acked.p50),
        over(|r| r.acked.p99),
        over(|r| r.acked.max),
        over(|r| r.coordinator_all_acked_ms),
        over(|r| r.apply_ms),
        over(|r| r.coordinator_cpu_ms),
        over(|r| r.harness_cpu_ms),
    );
    Ok(out)
}

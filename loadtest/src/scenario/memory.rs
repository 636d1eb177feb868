//! Coordinator memory per connected idle agent: its RSS with no agent and
//! with N connected (heartbeating, nothing deployed), divided by N; and the
//! CPU the coordinator spends on N idle agents.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use super::{rss_median, Bench, Common};

#[derive(Debug, Clone, Args)]
pub struct MemoryArgs {
    #[command(flatten)]
    pub common: Common,
    /// How long the fleet idles before RSS is sampled.
    #[arg(long, default_value_t = 10)]
    pub settle_secs: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss0_kib: u64,
    pub rss_kib: u64,
    pub per_agent_kib: f64,
    /// Coordinator CPU while the fleet idles, % of one core.
    pub idle_cpu_pct: f64,
    /// This process (the harness), per agent.
    pub harness_per_agent_kib: f64,
}

pub async fn run(args: &MemoryArgs) -> Result<Memory> {
    let mut bench = Bench::coordinator(&args.common).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = Duration::from_secs(1);
    let rss0 = rss_median(&bench.coord, 5, second / 4)
        .await
        .context("no RSS for the coordinator (pass --pid for a running one)")?;
    let harness0 = crate::child::rss_kib(std::process::id()).unwrap_or(0);
    bench.connect().await?;
    let n = bench.names.len();
    let cpu0 = bench.coord.cpu_time();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let rss = rss_median(&bench.coord, 5, second)
        .await
        .context("no RSS")?;
    let idle_cpu_pct = match (cpu0, bench.coord.cpu_time()) {
        (Some(a), Some(b)) => (b - a).as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0,
        _ => f64::NAN,
    };
    let harness = crate::child::rss_kib(std::process::id()).unwrap_or(0);
    let m = Memory {
        rss0_kib: rss0,
        rss_kib: rss,
        per_agent_kib: rss.saturating_sub(rss0) as f64 / n as f64,
        idle_cpu_pct,
        harness_per_agent_kib: harness.saturating_sub(harness0) as f64 / n as f64,
    };
    println!(
        "memory n={n} rss0_kib={} rss_kib={} per_agent_kib={:.1} idle_cpu_pct={:.1} harness_per_agent_kib={:.1} coordinator_nofile={}",
        m.rss0_kib,
        m.rss_kib,
        m.per_agent_kib,
        m.idle_cpu_pct,
        m.harness_per_agent_kib,
        bench.coord.nofile_limit().unwrap_or_default(),
    );
    bench.stop().await;
    Ok(m)
}

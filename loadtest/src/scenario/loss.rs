//! Node-loss detection: freeze some agents silently (task and socket stand
//! still, no FIN) → the time until the coordinator emits `node.lost` for
//! each, by the coordinator's own event timestamps; `node.lost` for any
//! other node is a false mark. Then thaw them and time their return. With
//! `--steady-secs`, also count false marks over a stretch of steady load.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::Result;
use clap::Args;

use super::{Bench, Common};
use crate::{
    events::Watcher,
    now_unix_ms,
    stats::{OverRounds, Spread},
};

#[derive(Debug, Clone, Args)]
pub struct LossArgs {
    #[command(flatten)]
    pub common: Common,
    /// Agents frozen per round.
    #[arg(long, default_value_t = 100)]
    pub stop: usize,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Then watch this long for false `node.lost` marks (0: skip).
    #[arg(long, default_value_t = 0)]
    pub steady_secs: u64,
    /// How long a frozen agent may go unnoticed before the round fails.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone)]
pub struct LossRound {
    pub stopped: usize,
    pub detected: usize,
    /// Freeze → `node.lost` (coordinator's timestamp), over frozen agents.
    pub detection: Spread,
    /// `node.lost` for agents that were not frozen.
    pub false_lost: Vec<String>,
    /// Thaw → every frozen node ready again.
    pub recovered_ms: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Steady {
    pub secs: u64,
    pub false_lost: usize,
    pub reconnects: u64,
    pub max_heartbeat_late_ms: f64,
}

pub async fn run(args: &LossArgs) -> Result<(Vec<LossRound>, Option<Steady>)> {
    let bench = Bench::start(&args.common).await?;
    bench.deploy_everywhere(0).await?;
    let watcher = Watcher::start(&bench.control).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        rounds.push(freeze_round(&bench, &watcher, args.stop, round, timeout).await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    summary(bench.names.len(), &rounds);
    let steady = if args.steady_secs > 0 {
        Some(steady(&bench, &watcher, args.steady_secs).await)
    } else {
        None
    };
    bench.stop().await;
    Ok((rounds, steady))
}

pub fn summary(n: usize, rounds: &[LossRound]) {
    let over = |f: fn(&LossRound) -> f64| OverRounds::of(&rounds.iter().map(f).collect::<Vec<_>>());
    println!(
        "loss n={n} rounds={} summary: detect_p50_ms={} detect_p99_ms={} detect_max_ms={} false_lost_total={} recovered_ms={}",
        rounds.len(),
        over(|r| r.detection.p50),
        over(|r| r.detection.p99),
        over(|r| r.detection.max),
        rounds.iter().map(|r| r.false_lost.len()).sum::<usize>(),
        over(|r| r.recovered_ms.unwrap_or(f64::NAN)),
    );
}

/// Freezes `stop` agents spread over the fleet (shifted by `round`).
pub async fn freeze_round(
    bench: &Bench,
    watcher: &Watcher,
    stop: usize,
    round: usize,
    timeout: Duration,
) -> Result<LossRound> {
    let fleet = bench.fleet();
    let n = fleet.len();
    let stop = stop.min(n);
    let chosen: Vec<usize> = (0..stop)
        .map(|k| (k * n / stop.max(1) + round) % n)
        .collect();
    let names: HashSet<&str> = chosen
        .iter()
        .map(|&i| fleet.agents[i].name.as_str())
        .collect();
    let (lost_from, ready_from) = watcher.with(|s| (s.lost.len(), s.ready.len()));

    let t0_ms = now_unix_ms();
    for &i in &chosen {
        fleet.freeze(i, true);
    }
    let t0 = Instant::now();
    let mut detected: HashMap<String, i64> = HashMap::new();
    let mut false_lost = Vec::new();
    loop {
        watcher.with(|s| {
            for ev in &s.lost[lost_from..] {
                if names.contains(ev.node.as_str()) {
                    detected
                        .entry(ev.node.clone())
                        .or_insert(ev.unix_ms - t0_ms);
                } else if !false_lost.contains(&ev.node) {
                    false_lost.push(ev.node.clone());
                }
            }
        });
        if detected.len() == names.len() || t0.elapsed() > timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let detection = Spread::of(detected.values().map(|&ms| ms as f64).collect());

    let thawed = Instant::now();
    for &i in &chosen {
        fleet.freeze(i, false);
    }
    let mut recovered_ms = None;
    while thawed.elapsed() < timeout {
        let back = watcher.with(|s| {
            s.ready[ready_from..]
                .iter()
                .filter(|e| names.contains(e.node.as_str()))
                .map(|e| e.node.as_str())
                .collect::<HashSet<_>>()
                .len()
        });
        if back == names.len() {
            recovered_ms = Some(thawed.elapsed().as_secs_f64() * 1e3);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "loss n={n} round={} stopped={stop} detected={} detect_p50_ms={:.0} detect_p99_ms={:.0} detect_max_ms={:.0} false_lost={} recovered_ms={:.0}",
        round + 1,
        detected.len(),
        detection.p50,
        detection.p99,
        detection.max,
        false_lost.len(),
        recovered_ms.unwrap_or(f64::NAN),
    );
    Ok(LossRound {
        stopped: stop,
        detected: detected.len(),
        detection,
        false_lost,
        recovered_ms,
    })
}

/// Every agent heartbeating; any `node.lost` is false.
pub async fn steady(bench: &Bench, watcher: &Watcher, secs: u64) -> Steady {
    let fleet = bench.fleet();
    let n = fleet.len();
    let counters = fleet.counters();
    let lost_from = watcher.with(|s| s.lost.len());
    let welcomes0 = counters.welcomes.load(Ordering::Relaxed);
    counters.max_heartbeat_late_us.store(0, Ordering::Relaxed);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    while Instant::now() < end {
        let left = end - Instant::now();
        tokio::time::sleep(left.min(Duration::from_secs(60))).await;
        let lost = watcher.with(|s| s.lost.len() - lost_from);
        eprintln!(
            "steady n={n}: {:.0} s, {lost} node.lost so far",
            t0.elapsed().as_secs_f64()
        );
    }
    let s = Steady {
        secs,
        false_lost: watcher.with(|s| s.lost.len() - lost_from),
        reconnects: counters.welcomes.load(Ordering::Relaxed) - welcomes0,
        max_heartbeat_late_ms: counters.max_heartbeat_late_us.load(Ordering::Relaxed) as f64 / 1e3,
    };
    println!(
        "steady n={n} secs={secs} false_lost={} reconnects={} max_heartbeat_late_ms={:.0} watcher_ended={}",
        s.false_lost,
        s.reconnects,
        s.max_heartbeat_late_ms,
        watcher.with(|s| s.ended.clone().unwrap_or_else(|| "no".into())),
    );
    s
}

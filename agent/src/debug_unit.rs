//! `convoy-agent debug-unit` (hidden): the systemd driver by hand, for
//! checking it against a real systemd: read a unit, call one Manager method,
//! watch signals, or run reconcile passes for a one-unit plan.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use convoy_agent::plan::Plan;
use convoy_agent::runtime::systemd::{DbusSystemd, Systemd};
use convoy_agent::units::{UnitReconciler, UnitsConfig};
use convoy_proto::{workload, NodePlan, UnitSpec, Workload};
use futures::StreamExt;
use tokio::sync::{broadcast, watch};

#[derive(Subcommand)]
pub enum DebugUnit {
    /// Print what systemd says of a unit.
    Show { unit: String },
    /// Call one Manager method on a unit.
    Call {
        #[arg(value_parser = ["start", "stop", "restart", "reload-or-restart", "enable", "disable", "reset-failed"])]
        method: String,
        unit: String,
    },
    /// Manager.Reload (daemon-reload).
    DaemonReload,
    /// Print the units whose properties change, for a while.
    Watch {
        #[arg(long, default_value_t = 10)]
        secs: u64,
    },
    /// Reconcile a plan of one unit workload, then print its status.
    Apply(ApplyArgs),
    /// Reconcile an empty plan: Convoy's units are removed.
    Clear {
        #[arg(long, default_value = convoy_agent::units::file::DEFAULT_UNIT_DIR)]
        unit_dir: PathBuf,
    },
}

#[derive(Args)]
pub struct ApplyArgs {
    #[arg(long)]
    service: String,
    #[arg(long, default_value = "h1")]
    hash: String,
    /// Adopt this unit instead of writing one.
    #[arg(long)]
    adopt: Option<String>,
    #[arg(long, default_value = "running")]
    state: String,
    #[arg(long)]
    enabled: bool,
    #[arg(long, default_value = "")]
    user: String,
    #[arg(long, default_value = "")]
    restart: String,
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    #[arg(long, default_value = convoy_agent::units::file::DEFAULT_UNIT_DIR)]
    unit_dir: PathBuf,
    /// How long to let systemd settle before the status is read.
    #[arg(long, default_value_t = 1500)]
    settle_ms: u64,
    /// The command line (after `--`).
    #[arg(last = true)]
    exec_start: Vec<String>,
}

pub async fn run(cmd: DebugUnit) -> anyhow::Result<()> {
    let systemd = Arc::new(DbusSystemd::new());
    match cmd {
        DebugUnit::Show { unit } => println!("{:#?}", systemd.unit(&unit).await?),
        DebugUnit::Call { method, unit } => {
            match method.as_str() {
                "start" => systemd.start(&unit).await?,
                "stop" => systemd.stop(&unit).await?,
                "restart" => systemd.restart(&unit).await?,
                "reload-or-restart" => systemd.reload_or_restart(&unit).await?,
                "enable" => systemd.enable(&unit).await?,
                "disable" => systemd.disable(&unit).await?,
                _ => systemd.reset_failed(&unit).await?,
            }
            println!("{method} {unit}: ok");
        }
        DebugUnit::DaemonReload => {
            systemd.daemon_reload().await?;
            println!("reloaded");
        }
        DebugUnit::Watch { secs } => {
            let mut changes = systemd.changes().await?;
            let end = tokio::time::sleep(Duration::from_secs(secs));
            tokio::pin!(end);
            loop {
                tokio::select! {
                    _ = &mut end => break,
                    unit = changes.next() => match unit {
                        Some(unit) => println!("changed: {unit}"),
                        None => break,
                    },
                }
            }
        }
        DebugUnit::Apply(args) => {
            let ApplyArgs {
                service,
                hash,
                adopt,
                state,
                enabled,
                user,
                restart,
                env,
                unit_dir,
                settle_ms,
                exec_start,
            } = args;
            let spec = UnitSpec {
                unit_name: adopt
                    .clone()
                    .unwrap_or_else(|| format!("convoy-{service}.service")),
                adopt: adopt.is_some(),
                exec_start,
                user,
                restart,
                environment: env
                    .iter()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                state,
                enabled,
                ..UnitSpec::default()
            };
            let workload = Workload {
                id: format!("debug/{service}/1"),
                service,
                env: "debug".to_string(),
                index: 1,
                revision: 1,
                spec_hash: hash,
                start_first: false,
                probes: Vec::new(),
                runtime: Some(workload::Runtime::Unit(spec)),
                ingress: None,
            };
            reconcile(systemd, unit_dir, vec![workload], settle_ms).await;
        }
        DebugUnit::Clear { unit_dir } => reconcile(systemd, unit_dir, Vec::new(), 500).await,
    }
    Ok(())
}

/// Two passes (the second after `settle_ms`), printing the statuses and
/// events.
async fn reconcile(
    systemd: Arc<DbusSystemd>,
    unit_dir: PathBuf,
    workloads: Vec<Workload>,
    settle_ms: u64,
) {
    let (tx, rx) = watch::channel(BTreeMap::new());
    let (events_tx, mut events) = broadcast::channel(64);
    let mut reconciler = UnitReconciler::new(
        systemd,
        "debug".to_string(),
        UnitsConfig { unit_dir },
        tx,
        events_tx,
    );
    let plan = match Plan::try_from(NodePlan {
        generation: 1,
        workloads,
        ..Default::default()
    }) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("plan refused: {e}");
            return;
        }
    };
    reconciler.pass(Some(&plan), Instant::now()).await;
    tokio::time::sleep(Duration::from_millis(settle_ms)).await;
    reconciler.pass(Some(&plan), Instant::now()).await;
    while let Ok(event) = events.try_recv() {
        println!("event {}: {}", event.kind, event.message);
    }
    for status in rx.borrow().values() {
        println!("{status:#?}");
    }
}

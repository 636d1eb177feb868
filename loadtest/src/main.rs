//! convoy-bench: runs one scale scenario against a `convoyd` child (or a
//! running coordinator) with N simulated agents in this process.

use anyhow::Result;
use clap::{Parser, Subcommand};
use convoy_loadtest::scenario::{fanout, ingest, loss, memory, reconnect};

#[derive(Parser)]
#[command(
    name = "convoy-bench",
    about = "Convoy at scale: simulated agents against a real coordinator"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// One apply touching every node → every agent's Ack.
    Fanout(fanout::FanoutArgs),
    /// Freeze agents silently → `node.lost`; false marks under steady load.
    Loss(loss::LossArgs),
    /// Coordinator RSS per connected idle agent.
    Memory(memory::MemoryArgs),
    /// Status reports per second absorbed with an event watcher keeping up.
    Ingest(ingest::IngestArgs),
    /// SIGKILL and restart the coordinator → every agent back and in sync.
    Reconnect(reconnect::ReconnectArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let scenario = async {
            match cli.scenario {
                Scenario::Fanout(a) => fanout::run(&a).await.map(drop),
                Scenario::Loss(a) => loss::run(&a).await.map(drop),
                Scenario::Memory(a) => memory::run(&a).await.map(drop),
                Scenario::Ingest(a) => ingest::run(&a).await.map(drop),
                Scenario::Reconnect(a) => reconnect::run(&a).await.map(drop),
            }
        };
        // On a signal the scenario is dropped, and with it the convoyd child.
        tokio::select! {
            r = scenario => r,
            _ = signal() => anyhow::bail!("interrupted"),
        }
    })
}

async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

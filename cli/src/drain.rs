//! `convoy node cordon|uncordon|drain` (issue 19): a cordoned node takes no
//! new instance; a drain cordons it and moves its instances away under
//! each service's update gates. `drain --wait` follows it with one
//! progress bar per service (plain lines without a terminal).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use convoy_proto as pb;
use serde::Serialize;

use crate::args::NodeCommand;
use crate::commands::{connect, print, Output};
use crate::config::Flags;
use crate::output::{self, Format};
use crate::progress::{Count, Progress};

/// How often `drain --wait` looks at the node and its services.
const POLL: Duration = Duration::from_millis(500);

/// `convoy node cordon|uncordon -o json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct CordonJson {
    pub node: String,
    pub cordoned: bool,
    pub was_cordoned: bool,
    pub drain_stopped: bool,
}

/// `convoy node drain -o json` (without --wait; with it, the node's
/// `convoy nodes -o json` entry once drained).
#[derive(Debug, Serialize, PartialEq)]
pub struct DrainJson {
    pub node: String,
    pub instances: u32,
    pub staying: u32,
}

pub async fn run(command: NodeCommand, format: Format, flags: &Flags) -> Result<Output> {
    match command {
        NodeCommand::Remove { node } => crate::commands::remove_node(node, format, flags).await,
        NodeCommand::Cordon { node } => cordon(node, true, format, flags).await,
        NodeCommand::Uncordon { node } => cordon(node, false, format, flags).await,
        NodeCommand::Drain {
            node,
            wait,
            timeout,
        } => drain(node, wait, timeout, format, flags).await,
    }
}

async fn cordon(node: String, cordon: bool, format: Format, flags: &Flags) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    let r = coordinator.cordon_node(node.clone(), cordon).await?;
    let json = CordonJson {
        node,
        cordoned: cordon,
        was_cordoned: r.was_cordoned,
        drain_stopped: r.drain_stopped,
    };
    Ok(Output::stdout(match format {
        Format::Json => output::json(&json),
        Format::Table => cordon_line(&json),
    }))
}

pub fn cordon_line(c: &CordonJson) -> String {
    let node = &c.node;
    match (c.cordoned, c.was_cordoned, c.drain_stopped) {
        (true, true, _) => format!("node {node} was cordoned already\n"),
        (true, false, _) => {
            format!("node {node} cordoned: it takes no new instance; what runs there stays\n")
        }
        (false, _, true) => {
            format!("node {node} uncordoned: its drain stopped, and it takes new instances\n")
        }
        (false, true, false) => format!("node {node} uncordoned: it takes new instances\n"),
        (false, false, false) => format!("node {node} was not cordoned\n"),
    }
}

async fn drain(
    node: String,
    wait: bool,
    timeout_secs: u64,
    format: Format,
    flags: &Flags,
) -> Result<Output> {
    let mut coordinator = connect(flags).await?;
    let r = coordinator.drain_node(node.clone()).await?;
    let json = DrainJson {
        node: node.clone(),
        instances: r.instances,
        staying: r.staying,
    };
    if !wait {
        return Ok(Output::stdout(match format {
            Format::Json => output::json(&json),
            Format::Table => drain_line(&json),
        }));
    }
    if format == Format::Table {
        print(&drain_line(&json))?;
    }
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut progress = Progress::new();
    // The services that had instances there when the drain started.
    let status = coordinator.status(pb::StatusRequest::default()).await?;
    let services: Vec<(String, String)> = status
        .services
        .iter()
        .filter(|s| s.instances.iter().any(|i| i.node == node))
        .map(|s| (s.env.clone(), s.name.clone()))
        .collect();
    loop {
        let nodes = coordinator.list_nodes().await?;
        let Some(n) = nodes.nodes.iter().find(|n| n.name == node) else {
            progress.finish();
            bail!("node `{node}` is gone (removed?); its drain ended");
        };
        let status = coordinator.status(pb::StatusRequest::default()).await?;
        for s in status
            .services
            .iter()
            .filter(|s| services.contains(&(s.env.clone(), s.name.clone())))
        {
            let left = s.instances.iter().filter(|i| i.node == node).count();
            let name = match s.env.as_str() {
                "" | output::DEFAULT_ENV => s.name.clone(),
                env => format!("{env}/{}", s.name),
            };
            let note = if left > 0 {
                format!("{left} left on {node}")
            } else {
                String::new()
            };
            progress.update(
                &name,
                Count {
                    healthy: s.healthy,
                    wanted: s.desired,
                },
                &note,
            );
        }
        if !n.cordoned {
            progress.finish();
            bail!("the drain of node `{node}` stopped: the node was uncordoned");
        }
        if !n.draining {
            progress.finish();
            let json = output::NodeJson::from(n);
            return Ok(Output::stdout(match format {
                Format::Json => output::json(&json),
                Format::Table => format!("node {node} drained: nothing left to move; it stays cordoned (`convoy node uncordon {node}` to use it again)\n"),
            }));
        }
        if !n.drain_blocked.is_empty() {
            progress.finish();
            bail!(
                "node `{node}` cannot be drained now: {}. The drain goes on and moves them once a \
                 node can take them; `convoy node uncordon {node}` stops it",
                n.drain_blocked.join("; ")
            );
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            progress.finish();
            let waiting = if n.drain_waiting.is_empty() {
                String::new()
            } else {
                format!(" ({})", n.drain_waiting.join("; "))
            };
            return Err(crate::exit::TimedOut(format!(
                "timed out after {} waiting for node `{node}` to drain{waiting}; the drain goes on: `convoy nodes`",
                output::format_age(timeout_secs as i64 * 1000),
            ))
            .into());
        }
        tokio::time::sleep(POLL.min(left)).await;
    }
}

pub fn drain_line(d: &DrainJson) -> String {
    let mut line = format!(
        "draining node {}: cordoned; {} to move",
        d.node,
        output_plural(d.instances, "instance")
    );
    if d.staying > 0 {
        line.push_str(&format!(
            " ({} stay: units and Swarm services' drivers do not move)",
            output_plural(d.staying, "instance")
        ));
    }
    line.push('\n');
    line
}

fn output_plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_happened() {
        let c = CordonJson {
            node: "n1".into(),
            cordoned: true,
            was_cordoned: false,
            drain_stopped: false,
        };
        assert_eq!(
            cordon_line(&c),
            "node n1 cordoned: it takes no new instance; what runs there stays\n"
        );
        let d = DrainJson {
            node: "n1".into(),
            instances: 3,
            staying: 1,
        };
        assert_eq!(
            drain_line(&d),
            "draining node n1: cordoned; 3 instances to move (1 instance stay: units and Swarm services' drivers do not move)\n"
        );
    }
}

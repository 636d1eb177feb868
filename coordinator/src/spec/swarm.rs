//! `x-convoy.swarm`: a service that runs as a Docker Swarm service, created
//! and updated by the Convoy agent of one of its cluster's managers
//! (docs/SWARM.md). What Swarm takes differently from a plain container
//! (placement constraints in Swarm's own syntax, restart policy, update and
//! rollback config, port modes) is kept here as written.

use serde::{Deserialize, Serialize};

/// The node label that names a Swarm cluster on its managers' agents
/// (`convoy-agent --label convoy.swarm=prod`): `x-convoy.swarm: prod`
/// targets the cluster whose manager agents carry it.
pub const SWARM_LABEL: &str = "convoy.swarm";

/// A service's `x-convoy.swarm` (or the file's top-level one), with what
/// Swarm takes as written and Convoy's own fields would lose. The rest of
/// `deploy` (mode, replicas, `preferences` spreads, max replicas per node)
/// stays in `ServiceSpec::deploy`, which Convoy reads the same way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SwarmFields {
    /// The cluster: its Swarm cluster ID, or the value of the
    /// [`SWARM_LABEL`] label of its managers' agents.
    pub cluster: String,
    /// `deploy.placement.constraints` as written, in Swarm's syntax
    /// (`node.role == manager`, `engine.labels.os == linux`): Swarm
    /// evaluates them, so attributes Convoy does not know are kept.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// `deploy.restart_policy`, with the `delay` and `window` Swarm takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<SwarmRestart>,
    /// `deploy.update_config` as Swarm's fields; `None`: Swarm's defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<SwarmUpdate>,
    /// `deploy.rollback_config` as Swarm's fields; `None`: Swarm's defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<SwarmUpdate>,
}

/// `deploy.restart_policy` as Swarm takes it. Durations in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SwarmRestart {
    /// `none`, `on-failure` or `any`.
    pub condition: String,
    pub delay_ms: u64,
    /// 0: unlimited.
    pub max_attempts: u64,
    pub window_ms: u64,
}

/// `deploy.update_config` / `rollback_config` as Swarm takes them: what is
/// not written stays empty (Swarm's default). Durations in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SwarmUpdate {
    /// Tasks updated at once; 0: all at once.
    pub parallelism: u64,
    pub delay_ms: u64,
    /// `pause`, `continue` or `rollback`; empty: Swarm's `pause`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub failure_action: String,
    pub monitor_ms: u64,
    /// `max_failure_ratio` in thousandths (0.25 is 250), as Convoy's own
    /// policy keeps it.
    pub max_failure_permille: u32,
    /// `stop-first` or `start-first`; empty: Swarm's `stop-first`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub order: String,
}

/// Whether `text` is a constraint Swarm can read: `ATTRIBUTE == VALUE` or
/// `ATTRIBUTE != VALUE`, both sides non-empty. Swarm checks the attribute.
pub(crate) fn swarm_constraint(text: &str) -> Result<(), String> {
    let (attribute, value) = match (text.find("=="), text.find("!=")) {
        (Some(at), None) => (&text[..at], &text[at + 2..]),
        (None, Some(at)) => (&text[..at], &text[at + 2..]),
        _ => {
            return Err(format!(
                "invalid constraint `{text}`: Swarm takes `ATTRIBUTE == VALUE` or \
                 `ATTRIBUTE != VALUE`"
            ))
        }
    };
    let attribute = attribute.trim();
    let value = value.trim();
    if attribute.is_empty()
        || value.is_empty()
        || attribute.contains(char::is_whitespace)
        || value.starts_with(['=', '!', '<', '>'])
    {
        return Err(format!(
            "invalid constraint `{text}`: Swarm takes `ATTRIBUTE == VALUE` or \
             `ATTRIBUTE != VALUE`"
        ));
    }
    Ok(())
}

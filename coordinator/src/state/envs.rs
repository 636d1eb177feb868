//! Environments: which nodes serve which environment (the `env` label),
//! so placement never crosses them, and valid environment names.

use super::*;

/// Each known node's name, facts and whether its agent is connected.
pub(super) fn node_views(
    next: &Desired,
    connected: &HashMap<String, bool>,
) -> Vec<(String, pb::NodeFacts, bool)> {
    next.nodes
        .values()
        .map(|n| {
            let up = connected.get(&n.name).copied().unwrap_or(false);
            (n.name.clone(), pb::NodeFacts::from(&n.facts), up)
        })
        .collect()
}

/// The node label that names the environments a node serves
/// (comma-separated; `*`: every one). Nodes without it serve `default`.
pub use convoy_api::env::ENV_LABEL;

/// Whether a node with these facts serves environment `env`.
pub fn node_serves(facts: &pb::NodeFacts, env: &str) -> bool {
    match facts.labels.get(ENV_LABEL) {
        None => env == DEFAULT_ENV,
        Some(list) => list.split(',').map(str::trim).any(|e| e == "*" || e == env),
    }
}

/// The candidates of environment `env`: placement never crosses them.
pub(super) fn in_env<'a>(candidates: &[Candidate<'a>], env: &str) -> Vec<Candidate<'a>> {
    candidates
        .iter()
        .filter(|c| node_serves(c.facts, env))
        .cloned()
        .collect()
}

/// Environment names: lowercase letters, digits and `-`, up to 63.
pub fn check_env_name(env: &str) -> Result<(), StateError> {
    let ok = !env.is_empty()
        && env.len() <= 63
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !env.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(StateError::Invalid(format!(
            "invalid environment `{env}`: use lowercase letters, digits and `-` (up to 63)"
        )))
    }
}

pub(super) fn candidates(views: &[(String, pb::NodeFacts, bool)]) -> Vec<Candidate<'_>> {
    views
        .iter()
        .map(|(name, facts, connected)| Candidate {
            name,
            facts,
            connected: *connected,
        })
        .collect()
}

/// Why an instance of `spec` in environment `env` has no node: no node
/// serves the environment, none of those matches the constraints, or
/// those that match are not connected.
pub(super) fn pending_reason(spec: &ServiceSpec, env: &str, nodes: &[Candidate<'_>]) -> String {
    let in_env = in_env(nodes, env);
    if in_env.is_empty() {
        return format!(
            "no node serves environment `{env}` (a node serves the environments of its `{ENV_LABEL}` label; none: `{DEFAULT_ENV}`)"
        );
    }
    let matching: Vec<&Candidate<'_>> = in_env
        .iter()
        .filter(|c| {
            spec.constraints()
                .iter()
                .all(|k| k.matches(c.name, c.facts))
        })
        .collect();
    if matching.is_empty() {
        let constraints: Vec<String> = spec.constraints().iter().map(|c| c.to_string()).collect();
        return format!(
            "no node of environment `{env}` matches the placement constraints ({})",
            constraints.join(", ")
        );
    }
    let names: Vec<&str> = matching.iter().take(3).map(|c| c.name).collect();
    format!(
        "no connected node matches: {} matching node(s) not connected ({}{})",
        matching.len(),
        names.join(", "),
        if matching.len() > 3 { ", ..." } else { "" }
    )
}

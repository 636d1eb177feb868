//! `x-convoy.ingress`: the HTTP routes the agents' per-host proxy sends to
//! a service's healthy instances (docs/PROXY.md). Not part of the spec hash:
//! a changed route reaches the agents in a new plan and restarts nothing.

use serde::{Deserialize, Serialize};

/// How long an instance taken out of the proxy's pool may finish its
/// requests before it is stopped, when `drain_timeout` does not say.
pub const DEFAULT_DRAIN_TIMEOUT_MS: u64 = 30_000;

/// A service's routes and how it is drained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngressSpec {
    /// At least one, each (host, path prefix) once.
    pub routes: Vec<IngressRoute>,
    pub drain_timeout_ms: u64,
}

impl Default for IngressSpec {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            drain_timeout_ms: DEFAULT_DRAIN_TIMEOUT_MS,
        }
    }
}

/// One route: requests for `host` (any host when empty; `*.example.com`
/// for its subdomains) whose path starts with `path_prefix` go to the
/// instances' container `port`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngressRoute {
    /// Lower case; empty: any host.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    pub path_prefix: String,
    pub port: u16,
}

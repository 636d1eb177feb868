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
    /// `tls:` the certificates of the proxy's TLS listener for this
    /// service's host names; each host in one entry only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<IngressTls>,
    /// `https_redirect`: cleartext requests for a host with a certificate
    /// are redirected to https (default true; only with `tls`).
    #[serde(default = "yes")]
    pub https_redirect: bool,
}

fn yes() -> bool {
    true
}

impl Default for IngressSpec {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            drain_timeout_ms: DEFAULT_DRAIN_TIMEOUT_MS,
            tls: Vec::new(),
            https_redirect: true,
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

/// One certificate the proxy presents (SNI) for `hosts`: its PEM chain and
/// private key are secrets of the service's environment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngressTls {
    /// Lower case host names, `*.example.com` for its subdomains.
    pub hosts: Vec<String>,
    pub certificate: IngressSecret,
    pub key: IngressSecret,
}

/// A secret an ingress uses, as a service's `secrets:` names one: its key
/// in the top-level `secrets:`, its name in the store, the pinned version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngressSecret {
    /// The key in the top-level `secrets:`.
    pub source: String,
    /// The name in the environment's store (the entry's `name:`, else its
    /// key).
    pub name: String,
    /// Pinned by the coordinator at apply and at rotation; 0 until then.
    pub version: u64,
}

impl IngressSpec {
    /// Every secret the ingress uses (certificates, then keys, by entry).
    pub fn secrets(&self) -> impl Iterator<Item = &IngressSecret> {
        self.tls.iter().flat_map(|t| [&t.certificate, &t.key])
    }

    /// [`Self::secrets`], to pin or name them.
    pub fn secrets_mut(&mut self) -> impl Iterator<Item = &mut IngressSecret> {
        self.tls
            .iter_mut()
            .flat_map(|t| [&mut t.certificate, &mut t.key])
    }
}

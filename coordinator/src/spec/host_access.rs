//! What a service asks of its host beyond bind mounts: Compose's
//! `privileged`, `cap_add`, `devices`, `pid`/`ipc`/`uts`/`userns_mode`/
//! `network_mode: host` and `security_opt`. Each is an admin's to grant,
//! per node (`convoy-agent run --allow-host-access KIND`, the rule in
//! `convoy_api::host_access`): placement takes only nodes that grant every
//! kind the service uses, an apply no node of its environment grants is
//! refused, and the agent checks again before it creates the container.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostAccessSpec {
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// Capabilities added (`NET_ADMIN`, `ALL`), without `CAP_`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// `HOST_PATH:CONTAINER_PATH:PERMISSIONS` (`rwm` when not written).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// `pid: host`, `ipc: host`, `uts: host`, `userns_mode: host`,
    /// `network_mode: host`.
    #[serde(skip_serializing_if = "is_false")]
    pub pid_host: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub ipc_host: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub uts_host: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub userns_host: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub network_host: bool,
    /// `security_opt` entries that relax confinement (`seccomp:unconfined`,
    /// `apparmor:unconfined`, `label:disable`, ...). `no-new-privileges`
    /// takes privileges away and is no host access: it is not here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl HostAccessSpec {
    pub fn is_empty(&self) -> bool {
        *self == HostAccessSpec::default()
    }

    /// The kinds of host access asked for, by their Compose key (the names
    /// `--allow-host-access` grants).
    pub fn kinds(&self) -> Vec<&'static str> {
        let Self {
            privileged,
            cap_add,
            devices,
            pid_host,
            ipc_host,
            uts_host,
            userns_host,
            network_host,
            security_opt,
        } = self;
        [
            ("privileged", *privileged),
            ("cap_add", !cap_add.is_empty()),
            ("devices", !devices.is_empty()),
            ("pid", *pid_host),
            ("ipc", *ipc_host),
            ("uts", *uts_host),
            ("userns_mode", *userns_host),
            ("network_mode", *network_host),
            ("security_opt", !security_opt.is_empty()),
        ]
        .into_iter()
        .filter_map(|(kind, asked)| asked.then_some(kind))
        .collect()
    }

    /// Whether a node granting `grants` lets the service have all of it.
    pub fn allowed_by(&self, grants: &[String]) -> bool {
        self.kinds()
            .iter()
            .all(|kind| convoy_api::host_access::allowed(grants, kind))
    }
}

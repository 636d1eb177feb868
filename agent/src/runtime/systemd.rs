//! The seam between the unit reconciler and systemd: the few Manager calls
//! and unit properties of systemd's D-Bus API (org.freedesktop.systemd1) that
//! Convoy uses, behind a small trait, so the reconcile decisions run in unit
//! tests against a recording fake. `dbus` is the real client (zbus).

pub mod dbus;
#[cfg(test)]
pub mod fake;
pub mod journal;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use dbus::DbusSystemd;

/// Lines of a failed unit's journal reported in its status.
pub const JOURNAL_LINES: usize = 10;

/// What systemd says of one unit, read fresh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitInfo {
    pub name: String,
    /// LoadState: loaded, not-found, bad-setting, error, masked.
    pub load_state: String,
    /// LoadError's message when it could not be loaded.
    pub load_error: String,
    /// ActiveState: active, reloading, inactive, failed, activating,
    /// deactivating.
    pub active_state: String,
    pub sub_state: String,
    /// UnitFileState: enabled, disabled, static, masked, ...
    pub unit_file_state: String,
    pub fragment_path: String,
    /// Set when the file on disk changed since systemd loaded it.
    pub need_daemon_reload: bool,
    /// StateChangeTimestamp (µs since the epoch): names one state change.
    pub state_change_usec: u64,
    /// Service: Result (success, exit-code, signal, core-dump, watchdog, ...).
    pub result: String,
    pub main_pid: u32,
    /// Service: NRestarts, the restarts systemd made (Restart=).
    pub n_restarts: u32,
    /// ExecMainCode: 1 exited, 2 killed, 3 dumped (CLD_*); 0 never ran.
    pub exec_main_code: i32,
    /// ExecMainStatus: the exit status, or the signal for killed/dumped.
    pub exec_main_status: i32,
    /// ExecMainStartTimestamp (µs): 0 while its main process never started.
    pub exec_main_start_usec: u64,
    /// The first ExecStart= command line, arguments joined by spaces.
    pub exec_start: String,
}

impl UnitInfo {
    pub fn is_loaded(&self) -> bool {
        self.load_state == "loaded"
    }

    /// Neither running nor on its way up or down.
    pub fn is_down(&self) -> bool {
        matches!(self.active_state.as_str(), "inactive" | "failed")
    }

    /// Running or on its way up.
    pub fn is_up(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "reloading" | "activating"
        )
    }

    pub fn is_enabled(&self) -> bool {
        matches!(
            self.unit_file_state.as_str(),
            "enabled" | "enabled-runtime" | "linked" | "linked-runtime" | "alias"
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SystemdError {
    /// No system bus, or systemd is not on it.
    #[error("systemd is not reachable: {0}")]
    Unreachable(String),
    #[error(
        "unit `{unit}` is masked: unmask it (`systemctl unmask {unit}`) or drop it from the spec"
    )]
    Masked { unit: String },
    #[error(
        "{op}{}: systemd denied it ({message}): the agent must run as root to manage units",
        target(.unit)
    )]
    AccessDenied {
        op: &'static str,
        unit: String,
        message: String,
    },
    #[error("unit `{unit}` does not exist")]
    NoSuchUnit { unit: String },
    /// Any other refusal, with what was being done.
    #[error("{op}{}: {message}", target(.unit))]
    Call {
        op: &'static str,
        unit: String,
        message: String,
    },
}

/// `` `unit` `` after a verb, or nothing for calls on no unit.
fn target(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" `{unit}`")
    }
}

impl SystemdError {
    /// The error in words for a workload status on `node`.
    pub fn reason(&self, node: &str) -> String {
        match self {
            Self::Unreachable(cause) => {
                format!("systemd is not reachable on node `{node}`: {cause}")
            }
            Self::NoSuchUnit { unit } => format!("unit `{unit}` does not exist on node `{node}`"),
            other => other.to_string(),
        }
    }
}

/// systemd's service manager, as the unit reconciler needs it. Every call
/// that changes something queues a job (mode "replace") and returns without
/// waiting for it: the reconciler observes the outcome.
#[async_trait]
pub trait Systemd: Send + Sync + 'static {
    /// Loads the unit if systemd has not (LoadUnit) and reads its Unit and
    /// Service properties. A unit with no file is `load_state` "not-found",
    /// not an error.
    async fn unit(&self, name: &str) -> Result<UnitInfo, SystemdError>;
    /// StartUnit.
    async fn start(&self, name: &str) -> Result<(), SystemdError>;
    /// StopUnit.
    async fn stop(&self, name: &str) -> Result<(), SystemdError>;
    /// RestartUnit (starts it when it is not running).
    async fn restart(&self, name: &str) -> Result<(), SystemdError>;
    /// ReloadOrRestartUnit.
    async fn reload_or_restart(&self, name: &str) -> Result<(), SystemdError>;
    /// EnableUnitFiles (not runtime, not forced).
    async fn enable(&self, name: &str) -> Result<(), SystemdError>;
    /// DisableUnitFiles (not runtime).
    async fn disable(&self, name: &str) -> Result<(), SystemdError>;
    /// Reload: systemd reads the unit files again (daemon-reload). Returns
    /// once it has.
    async fn daemon_reload(&self) -> Result<(), SystemdError>;
    /// ResetFailedUnit.
    async fn reset_failed(&self, name: &str) -> Result<(), SystemdError>;
    /// Names of units whose properties changed (PropertiesChanged), after
    /// Manager.Subscribe. The stream ends when the bus connection does;
    /// callers subscribe again.
    async fn changes(&self) -> Result<BoxStream<'static, String>, SystemdError>;
    /// The last `lines` lines of the unit's journal; empty when unreadable.
    async fn journal_tail(&self, name: &str, lines: usize) -> Vec<String>;
}

/// A unit's object path label, as systemd escapes it (`bus_label_escape`):
/// ASCII letters and digits stay, every other byte (and a leading digit)
/// becomes `_xx`.
pub fn path_label(name: &str) -> String {
    if name.is_empty() {
        return "_".to_string();
    }
    let mut out = String::with_capacity(name.len() * 2);
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The unit name of an object path label (`bus_label_unescape`); `None`
/// when the label is not one systemd makes.
pub fn unit_of_label(label: &str) -> Option<String> {
    if label == "_" {
        return Some(String::new());
    }
    let bytes = label.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = label.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_round_trip_through_object_path_labels() {
        assert_eq!(path_label("convoy-web.service"), "convoy_2dweb_2eservice");
        assert_eq!(path_label("1x.service"), "_31x_2eservice");
        for name in ["convoy-web.service", "nginx.service", "a@b:c.service", "9"] {
            assert_eq!(unit_of_label(&path_label(name)).as_deref(), Some(name));
        }
        assert_eq!(unit_of_label("bad_zz"), None);
    }
}

//! An entry of `units:`: the systemd service Convoy writes or adopts, as
//! stored with the service it belongs to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An entry of `units:`: a unit Convoy writes
/// (`/etc/systemd/system/convoy-NAME.service`), or an existing one it adopts
/// and only starts, stops, enables or disables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnitFields {
    /// `convoy-NAME.service`, or the adopted unit's name (`unit:`).
    pub unit_name: String,
    /// `unit:` was given: Convoy never writes this unit's file.
    pub adopt: bool,
    /// The program (an absolute path) and its arguments. Written units only.
    pub exec_start: Vec<String>,
    /// Empty: root. Written units only.
    pub user: String,
    pub restart: UnitRestart,
    pub environment: BTreeMap<String, String>,
    /// Empty: systemd's default (`/`). Written units only.
    pub working_dir: String,
    pub description: String,
    /// Adopted units; written units always run.
    pub state: UnitState,
    /// Enabled at boot. Adopted units; written units always are.
    pub enabled: bool,
}

impl Default for UnitFields {
    fn default() -> Self {
        UnitFields {
            unit_name: String::new(),
            adopt: false,
            exec_start: Vec::new(),
            user: String::new(),
            restart: UnitRestart::default(),
            environment: BTreeMap::new(),
            working_dir: String::new(),
            description: String::new(),
            state: UnitState::Running,
            enabled: true,
        }
    }
}

/// systemd's `Restart=`. `on-failure` unless the spec says, Convoy being an
/// orchestrator (systemd's own default is `no`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitRestart {
    No,
    OnSuccess,
    #[default]
    OnFailure,
    OnAbnormal,
    OnWatchdog,
    OnAbort,
    Always,
}

impl UnitRestart {
    pub const ALL: [UnitRestart; 7] = [
        UnitRestart::No,
        UnitRestart::OnSuccess,
        UnitRestart::OnFailure,
        UnitRestart::OnAbnormal,
        UnitRestart::OnWatchdog,
        UnitRestart::OnAbort,
        UnitRestart::Always,
    ];

    /// As systemd spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitRestart::No => "no",
            UnitRestart::OnSuccess => "on-success",
            UnitRestart::OnFailure => "on-failure",
            UnitRestart::OnAbnormal => "on-abnormal",
            UnitRestart::OnWatchdog => "on-watchdog",
            UnitRestart::OnAbort => "on-abort",
            UnitRestart::Always => "always",
        }
    }
}

/// The state an adopted unit is kept in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitState {
    #[default]
    Running,
    Stopped,
}

impl UnitState {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitState::Running => "running",
            UnitState::Stopped => "stopped",
        }
    }
}

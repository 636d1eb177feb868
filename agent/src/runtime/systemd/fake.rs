//! A recording fake of systemd for unit tests of the unit reconciler: units
//! live in a map, every call that changes something is recorded.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{Systemd, SystemdError, UnitInfo};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Start(String),
    Stop(String),
    Restart(String),
    ReloadOrRestart(String),
    Enable(String),
    Disable(String),
    DaemonReload,
    ResetFailed(String),
}

#[derive(Default)]
pub struct FakeState {
    /// Units systemd knows; a unit not here reads as "not-found".
    pub units: BTreeMap<String, UnitInfo>,
    /// Set: every call fails as if there were no system bus.
    pub unreachable: Option<String>,
    /// Calls on these units fail with this error (masked, denied, ...).
    pub errors: BTreeMap<String, SystemdError>,
    /// Set: daemon-reload fails with this message.
    pub reload_error: Option<String>,
    /// What `journal_tail` answers, by unit.
    pub journals: BTreeMap<String, Vec<String>>,
    /// Units whose main process fails at once when started (exit status 3).
    pub crashing: HashSet<String>,
    /// The unit directory a daemon-reload reads, as systemd would.
    pub unit_dir: Option<PathBuf>,
    pub calls: Vec<Call>,
}

/// The fake service manager. Its std Mutex is never held across an `.await`.
#[derive(Default)]
pub struct FakeSystemd {
    pub state: Mutex<FakeState>,
}

impl FakeSystemd {
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    pub fn set(&self, info: UnitInfo) {
        self.state
            .lock()
            .unwrap()
            .units
            .insert(info.name.clone(), info);
    }

    pub fn get(&self, name: &str) -> Option<UnitInfo> {
        self.state.lock().unwrap().units.get(name).cloned()
    }

    /// Records `call` and applies `f` to the unit, failing as systemd
    /// would for a unit it cannot load when `loaded` is asked for.
    fn mutate(
        &self,
        name: &str,
        call: Call,
        loaded: bool,
        f: impl FnOnce(&mut UnitInfo, bool),
    ) -> Result<(), SystemdError> {
        let mut state = self.state.lock().unwrap();
        if let Some(cause) = &state.unreachable {
            return Err(SystemdError::Unreachable(cause.clone()));
        }
        if let Some(e) = state.errors.get(name) {
            return Err(e.clone());
        }
        state.calls.push(call);
        let crashing = state.crashing.contains(name);
        let unit = state
            .units
            .entry(name.to_string())
            .or_insert_with(|| not_found(name));
        if loaded && unit.load_state != "loaded" {
            return Err(SystemdError::NoSuchUnit {
                unit: name.to_string(),
            });
        }
        f(unit, crashing);
        Ok(())
    }
}

/// What systemd says of a unit it has no file for.
pub fn not_found(name: &str) -> UnitInfo {
    UnitInfo {
        name: name.to_string(),
        load_state: "not-found".to_string(),
        active_state: "inactive".to_string(),
        sub_state: "dead".to_string(),
        result: "success".to_string(),
        ..UnitInfo::default()
    }
}

fn run(unit: &mut UnitInfo, crashing: bool) {
    unit.exec_main_start_usec = 1;
    unit.state_change_usec += 1;
    if crashing {
        unit.active_state = "failed".to_string();
        unit.sub_state = "failed".to_string();
        unit.main_pid = 0;
        unit.result = "exit-code".to_string();
        unit.exec_main_code = 1;
        unit.exec_main_status = 3;
    } else {
        unit.active_state = "active".to_string();
        unit.sub_state = "running".to_string();
        unit.main_pid = 4242;
        unit.result = "success".to_string();
    }
}

#[async_trait]
impl Systemd for FakeSystemd {
    async fn unit(&self, name: &str) -> Result<UnitInfo, SystemdError> {
        let state = self.state.lock().unwrap();
        if let Some(cause) = &state.unreachable {
            return Err(SystemdError::Unreachable(cause.clone()));
        }
        Ok(state
            .units
            .get(name)
            .cloned()
            .unwrap_or_else(|| not_found(name)))
    }

    async fn start(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::Start(name.to_string()), true, run)
    }

    async fn stop(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::Stop(name.to_string()), false, |u, _| {
            u.active_state = "inactive".to_string();
            u.sub_state = "dead".to_string();
            u.main_pid = 0;
        })
    }

    async fn restart(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::Restart(name.to_string()), true, run)
    }

    async fn reload_or_restart(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::ReloadOrRestart(name.to_string()), true, run)
    }

    async fn enable(&self, name: &str) -> Result<(), SystemdError> {
        // Like EnableUnitFiles: the file on disk is what counts.
        let on_disk = self
            .state
            .lock()
            .unwrap()
            .unit_dir
            .as_ref()
            .is_some_and(|d| d.join(name).exists());
        self.mutate(name, Call::Enable(name.to_string()), !on_disk, |u, _| {
            u.unit_file_state = "enabled".to_string();
        })
    }

    async fn disable(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::Disable(name.to_string()), false, |u, _| {
            u.unit_file_state = "disabled".to_string();
        })
    }

    async fn daemon_reload(&self) -> Result<(), SystemdError> {
        let mut state = self.state.lock().unwrap();
        if let Some(cause) = &state.unreachable {
            return Err(SystemdError::Unreachable(cause.clone()));
        }
        if let Some(message) = &state.reload_error {
            return Err(SystemdError::Call {
                op: "reloading the unit files",
                unit: String::new(),
                message: message.clone(),
            });
        }
        state.calls.push(Call::DaemonReload);
        // What systemd does: a unit with a file in the directory is loaded,
        // one whose file is gone is not-found.
        let Some(dir) = state.unit_dir.clone() else {
            return Ok(());
        };
        let on_disk: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".service") && !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        for name in &on_disk {
            let unit = state
                .units
                .entry(name.clone())
                .or_insert_with(|| not_found(name));
            unit.need_daemon_reload = false;
            if unit.load_state != "loaded" {
                unit.load_state = "loaded".to_string();
                unit.fragment_path = dir.join(name).display().to_string();
                if unit.unit_file_state.is_empty() {
                    unit.unit_file_state = "disabled".to_string();
                }
            }
        }
        let fragment_dir = dir.display().to_string();
        for (name, unit) in state.units.iter_mut() {
            if unit.fragment_path.starts_with(&fragment_dir) && !on_disk.contains(name) {
                unit.load_state = "not-found".to_string();
                unit.unit_file_state = String::new();
                unit.fragment_path = String::new();
            }
        }
        Ok(())
    }

    async fn reset_failed(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::ResetFailed(name.to_string()), false, |u, _| {
            if u.active_state == "failed" {
                u.active_state = "inactive".to_string();
            }
        })
    }

    async fn changes(&self) -> Result<BoxStream<'static, String>, SystemdError> {
        if let Some(cause) = &self.state.lock().unwrap().unreachable {
            return Err(SystemdError::Unreachable(cause.clone()));
        }
        Ok(futures::stream::pending().boxed())
    }

    async fn journal_tail(&self, name: &str, lines: usize) -> Vec<String> {
        let state = self.state.lock().unwrap();
        let all = state.journals.get(name).cloned().unwrap_or_default();
        all[all.len().saturating_sub(lines)..].to_vec()
    }
}

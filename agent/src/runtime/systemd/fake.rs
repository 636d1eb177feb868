//! A recording fake of systemd for unit tests of the unit reconciler: units
//! live in a map, every call that changes something is recorded.

use std::collections::{BTreeMap, HashSet};
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
    /// Units whose start brings them up (else they stay as they are).
    pub startable: HashSet<String>,
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

    fn mutate(
        &self,
        name: &str,
        call: Call,
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
        let startable = state.startable.contains(name);
        let unit = state
            .units
            .entry(name.to_string())
            .or_insert_with(|| not_found(name));
        f(unit, startable);
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

fn up(unit: &mut UnitInfo) {
    unit.active_state = "active".to_string();
    unit.sub_state = "running".to_string();
    unit.main_pid = 4242;
    unit.exec_main_start_usec = 1;
    unit.result = "success".to_string();
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
        self.mutate(name, Call::Start(name.to_string()), |u, startable| {
            if startable {
                up(u)
            }
        })
    }

    async fn stop(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::Stop(name.to_string()), |u, _| {
            u.active_state = "inactive".to_string();
            u.sub_state = "dead".to_string();
            u.main_pid = 0;
        })
    }

    async fn restart(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::Restart(name.to_string()), |u, startable| {
            if startable {
                up(u)
            }
        })
    }

    async fn reload_or_restart(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::ReloadOrRestart(name.to_string()), |_, _| {})
    }

    async fn enable(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::Enable(name.to_string()), |u, _| {
            u.unit_file_state = "enabled".to_string();
        })
    }

    async fn disable(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::Disable(name.to_string()), |u, _| {
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
                op: "reloading",
                unit: "the unit files".to_string(),
                message: message.clone(),
            });
        }
        state.calls.push(Call::DaemonReload);
        // What systemd does: units with a file are loaded, others not-found.
        let startable = state.startable.clone();
        for (name, unit) in state.units.iter_mut() {
            unit.need_daemon_reload = false;
            if unit.load_state == "not-found" && startable.contains(name) {
                unit.load_state = "loaded".to_string();
                if unit.unit_file_state.is_empty() {
                    unit.unit_file_state = "disabled".to_string();
                }
            }
        }
        Ok(())
    }

    async fn reset_failed(&self, name: &str) -> Result<(), SystemdError> {
        self.mutate(name, Call::ResetFailed(name.to_string()), |u, _| {
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

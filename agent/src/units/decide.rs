//! The pure half of the unit reconciler: from the plan's unit workloads and
//! what is freshly found (unit files on disk, unit state from systemd) to
//! ordered actions, for all of them or for one key.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use convoy_proto::Workload;

use super::book::UnitBook;
use super::file::{self, OnDisk, Want};
use crate::plan::Plan;
use crate::runtime::systemd::{SystemdError, UnitInfo};

/// A unit workload of the plan, checked: `Err` holds why it is refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub workload: Workload,
    pub want: Result<Want, String>,
}

impl Desired {
    pub fn of(workload: &Workload) -> Self {
        Self::of_in(workload, None)
    }

    /// Its want, with credentials loaded from under `secrets_dir`.
    pub fn of_in(workload: &Workload, secrets_dir: Option<&std::path::Path>) -> Self {
        Self {
            workload: workload.clone(),
            want: file::want_in(workload, secrets_dir).map_err(|e| e.to_string()),
        }
    }

    pub fn unit(&self) -> Option<&str> {
        self.want.as_ref().ok().map(Want::unit)
    }
}

/// One unit as found, fresh: its file (written units only) and what
/// systemd says of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub file: OnDisk,
    pub info: Result<UnitInfo, SystemdError>,
}

/// One step towards the plan. Actions come ordered: orphans' teardown,
/// writes, enables and disables, one daemon-reload, then starts and stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Write {
        workload_id: String,
        unit: String,
        content: String,
        /// An older file of Convoy's is replaced (then the unit restarts).
        replaces: bool,
    },
    DaemonReload,
    Enable {
        workload_id: Option<String>,
        unit: String,
    },
    Disable {
        workload_id: Option<String>,
        unit: String,
    },
    Start {
        workload_id: String,
        unit: String,
    },
    Restart {
        workload_id: String,
        unit: String,
    },
    Stop {
        workload_id: Option<String>,
        unit: String,
    },
    /// Deletes the file of a unit that left the plan (Convoy's only).
    Delete {
        unit: String,
    },
    ResetFailed {
        unit: String,
    },
}

impl Action {
    pub fn unit(&self) -> Option<&str> {
        match self {
            Self::DaemonReload => None,
            Self::Write { unit, .. }
            | Self::Enable { unit, .. }
            | Self::Disable { unit, .. }
            | Self::Start { unit, .. }
            | Self::Restart { unit, .. }
            | Self::Stop { unit, .. }
            | Self::Delete { unit }
            | Self::ResetFailed { unit } => Some(unit),
        }
    }

    pub fn workload_id(&self) -> Option<&str> {
        match self {
            Self::Write { workload_id, .. }
            | Self::Start { workload_id, .. }
            | Self::Restart { workload_id, .. } => Some(workload_id),
            Self::Enable { workload_id, .. }
            | Self::Disable { workload_id, .. }
            | Self::Stop { workload_id, .. } => workload_id.as_deref(),
            Self::DaemonReload | Self::Delete { .. } | Self::ResetFailed { .. } => None,
        }
    }
}

/// The actions that bring what is `found` towards `desired`. Pure. `found`
/// holds every desired unit and every orphan (a unit file of Convoy's that
/// no desired workload names); `book` must have seen `desired`.
pub fn decide(
    desired: &[Desired],
    found: &BTreeMap<String, Found>,
    orphans: &[String],
    book: &UnitBook,
    now: Instant,
) -> Vec<Action> {
    let mut teardown = Vec::new();
    let mut writes = Vec::new();
    let mut reload = false;
    let mut after_reload = Vec::new();
    let mut enables = Vec::new();
    let mut runs = Vec::new();

    for unit in orphans {
        let info = found.get(unit).and_then(|f| f.info.as_ref().ok());
        if info.is_none_or(|i| !i.is_down()) {
            teardown.push(Action::Stop {
                workload_id: None,
                unit: unit.clone(),
            });
        }
        if info.is_none_or(UnitInfo::is_enabled) {
            teardown.push(Action::Disable {
                workload_id: None,
                unit: unit.clone(),
            });
        }
        teardown.push(Action::Delete { unit: unit.clone() });
        reload = true;
        after_reload.push(Action::ResetFailed { unit: unit.clone() });
    }

    let mut claimed: HashSet<&str> = HashSet::new();
    for d in desired {
        let Ok(want) = &d.want else { continue };
        let id = d.workload.id.clone();
        // Two workloads naming one unit: the first one has it.
        if !claimed.insert(want.unit()) {
            continue;
        }
        let Some(Found {
            file,
            info: Ok(info),
        }) = found.get(want.unit())
        else {
            continue;
        };
        match want {
            Want::Write { unit, content } => {
                let on_disk = match file {
                    OnDisk::Foreign { .. } => continue,
                    OnDisk::Missing => None,
                    OnDisk::Managed { content } => Some(content),
                };
                let enable = Action::Enable {
                    workload_id: Some(id.clone()),
                    unit: unit.clone(),
                };
                if on_disk != Some(content) {
                    writes.push(Action::Write {
                        workload_id: id.clone(),
                        unit: unit.clone(),
                        content: content.clone(),
                        replaces: on_disk.is_some(),
                    });
                    reload = true;
                    if !info.is_enabled() {
                        enables.push(enable);
                    }
                    runs.push(if on_disk.is_some() {
                        Action::Restart {
                            workload_id: id,
                            unit: unit.clone(),
                        }
                    } else {
                        Action::Start {
                            workload_id: id,
                            unit: unit.clone(),
                        }
                    });
                    continue;
                }
                if info.need_daemon_reload || !info.is_loaded() {
                    reload = true;
                }
                if !info.is_enabled() && info.unit_file_state != "masked" {
                    enables.push(enable);
                }
                // Started once; then systemd's Restart= is the policy.
                let never_ran = info.exec_main_start_usec == 0;
                if info.is_down()
                    && (never_ran || book.pending_start(&id))
                    && !book.blocked(&id, now)
                {
                    runs.push(Action::Start {
                        workload_id: id,
                        unit: unit.clone(),
                    });
                }
            }
            Want::Adopt {
                unit,
                running,
                enabled,
            } => {
                if !info.is_loaded() {
                    continue;
                }
                if *enabled && info.unit_file_state == "disabled" {
                    enables.push(Action::Enable {
                        workload_id: Some(id.clone()),
                        unit: unit.clone(),
                    });
                } else if !*enabled && info.is_enabled() {
                    enables.push(Action::Disable {
                        workload_id: Some(id.clone()),
                        unit: unit.clone(),
                    });
                }
                if *running && info.is_down() && !book.blocked(&id, now) {
                    runs.push(Action::Start {
                        workload_id: id,
                        unit: unit.clone(),
                    });
                } else if !*running && info.is_up() {
                    runs.push(Action::Stop {
                        workload_id: Some(id),
                        unit: unit.clone(),
                    });
                }
            }
        }
    }

    // Enabling works on the files on disk; systemd's UnitFileState only
    // follows after a reload (which is why `systemctl enable` reloads too).
    let reload = reload || !enables.is_empty();
    let mut actions = teardown;
    actions.append(&mut writes);
    actions.append(&mut enables);
    if reload {
        actions.push(Action::DaemonReload);
    }
    actions.append(&mut after_reload);
    actions.append(&mut runs);
    actions
}

/// The plan's unit workloads, their credentials loaded from under
/// `secrets_dir`.
pub fn desired_of(plan: &Plan, secrets_dir: Option<&std::path::Path>) -> Vec<Desired> {
    plan.units()
        .map(|w| Desired::of_in(w, secrets_dir))
        .collect()
}

/// What one reconcile of the unit controller is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnitKey {
    /// A unit workload of the plan.
    Workload(String),
    /// A unit file of Convoy's that no workload of the plan names.
    Orphan(String),
}

/// Every key of a sync: the desired workloads, then the orphans.
pub fn keys(desired: &[Desired], orphans: &[String]) -> Vec<UnitKey> {
    desired
        .iter()
        .map(|d| UnitKey::Workload(d.workload.id.clone()))
        .chain(orphans.iter().cloned().map(UnitKey::Orphan))
        .collect()
}

/// `decide` for one key. A workload whose unit an earlier workload of the
/// plan names gets nothing (the first one has it).
pub fn decide_key(
    desired: &[Desired],
    found: &BTreeMap<String, Found>,
    key: &UnitKey,
    book: &UnitBook,
    now: Instant,
) -> Vec<Action> {
    match key {
        UnitKey::Workload(id) => {
            let Some(index) = desired.iter().position(|d| d.workload.id == *id) else {
                return Vec::new();
            };
            let d = &desired[index];
            let claimed = d.unit().is_some_and(|unit| {
                desired[..index]
                    .iter()
                    .any(|earlier| earlier.unit() == Some(unit))
            });
            if claimed {
                return Vec::new();
            }
            decide(std::slice::from_ref(d), found, &[], book, now)
        }
        UnitKey::Orphan(unit) => decide(&[], found, std::slice::from_ref(unit), book, now),
    }
}

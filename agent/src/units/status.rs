//! A unit's state as a workload status: systemd's ActiveState/SubState,
//! Result and exit status in Convoy's words, and its health (for a unit,
//! systemd's own view: active is healthy, failed is unhealthy).

use convoy_proto::{Health, UnitStatus, Workload, WorkloadState, WorkloadStatus};

use super::file::{FileError, OnDisk, Want};
use super::{Desired, Found};
use crate::runtime::systemd::UnitInfo;

/// The probe name unit health goes by.
pub const SYSTEMD: &str = "systemd";

/// A status with the workload's identity and nothing else.
pub fn base(w: &Workload) -> WorkloadStatus {
    WorkloadStatus {
        id: w.id.clone(),
        revision: w.revision,
        spec_hash: w.spec_hash.clone(),
        ..WorkloadStatus::default()
    }
}

/// Whether the unit is as its workload wants it (for clearing errors).
pub fn as_wanted(want: &Want, info: &UnitInfo) -> bool {
    match want {
        Want::Write { .. } => info.is_loaded() && info.active_state == "active",
        Want::Adopt { running, .. } => {
            info.is_loaded()
                && if *running {
                    info.active_state == "active"
                } else {
                    info.is_down()
                }
        }
    }
}

/// A unit whose journal is worth reading: failed, or restarting after a
/// failure.
pub fn failing(info: &UnitInfo) -> bool {
    info.active_state == "failed"
        || (info.sub_state == "auto-restart" && !info.result.is_empty() && info.result != "success")
}

/// How the unit's main process last ended, in words.
pub fn how_it_ended(info: &UnitInfo) -> String {
    let status = info.exec_main_status;
    let signal = || match signal_name(status) {
        Some(name) => format!("signal {status} ({name})"),
        None => format!("signal {status}"),
    };
    match info.result.as_str() {
        "exit-code" => format!("exited with status {status}"),
        "signal" => format!("was killed by {}", signal()),
        "core-dump" => format!("dumped core on {}", signal()),
        "watchdog" => "stopped sending watchdog keep-alives".to_string(),
        "timeout" => "timed out".to_string(),
        "start-limit-hit" => "was restarted too often (start limit hit)".to_string(),
        "resources" => "could not get what it needs to start (see its journal)".to_string(),
        "oom-kill" => "was killed for lack of memory".to_string(),
        "exec-condition" | "condition" => "did not meet its start condition".to_string(),
        "protocol" => "broke the service protocol".to_string(),
        "success" | "" => "ended cleanly".to_string(),
        other => format!("ended with result `{other}`"),
    }
}

fn signal_name(n: i32) -> Option<&'static str> {
    Some(match n {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// The status of one unit workload from what was found and the last error.
pub fn status_of(
    d: &Desired,
    found: Option<&Found>,
    error: Option<&str>,
    journal_tail: Vec<String>,
    node: &str,
) -> WorkloadStatus {
    let mut status = base(&d.workload);
    let set = |status: &mut WorkloadStatus, state: WorkloadState, reason: String| {
        status.state = state as i32;
        status.reason = reason;
    };
    let want = match &d.want {
        Ok(want) => want,
        Err(reason) => {
            set(
                &mut status,
                WorkloadState::Failed,
                format!("unit spec refused: {reason}"),
            );
            return status;
        }
    };
    let unit = want.unit().to_string();
    let Some(found) = found else {
        set(
            &mut status,
            WorkloadState::Pending,
            format!("waiting for systemd to report `{unit}`"),
        );
        return status;
    };
    let info = match &found.info {
        Ok(info) => info,
        Err(e) => {
            status.unit = Some(UnitStatus {
                unit_name: unit,
                ..UnitStatus::default()
            });
            set(&mut status, WorkloadState::Failed, e.reason(node));
            return status;
        }
    };
    status.restarts = info.n_restarts;
    status.exit_code = match info.exec_main_code {
        // Killed or dumped: as a shell says it.
        2 | 3 => 128 + i64::from(info.exec_main_status),
        _ => i64::from(info.exec_main_status),
    };
    status.unit = Some(UnitStatus {
        unit_name: unit.clone(),
        active_state: info.active_state.clone(),
        sub_state: info.sub_state.clone(),
        main_pid: info.main_pid,
        restarts: info.n_restarts,
        result: info.result.clone(),
        exit_status: info.exec_main_status,
        unit_file_state: info.unit_file_state.clone(),
        journal_tail,
        exec_start: info.exec_start.clone(),
    });

    if let (Want::Write { .. }, OnDisk::Foreign { path, why }) = (want, &found.file) {
        let e = FileError::Foreign {
            path: path.clone(),
            why: why.clone(),
        };
        set(&mut status, WorkloadState::Failed, e.to_string());
        return status;
    }
    if let Some(error) = error {
        set(&mut status, WorkloadState::Failed, error.to_string());
        if info.active_state == "failed" {
            unhealthy(&mut status, info);
        }
        return status;
    }
    let adopted_stopped = matches!(want, Want::Adopt { running: false, .. });
    match info.load_state.as_str() {
        "loaded" => {}
        "not-found" => {
            match want {
                Want::Adopt { .. } => set(
                    &mut status,
                    WorkloadState::Failed,
                    format!("unit `{unit}` does not exist on node `{node}`"),
                ),
                Want::Write { .. } => set(
                    &mut status,
                    WorkloadState::Pending,
                    format!("waiting for systemd to load `{unit}`"),
                ),
            }
            return status;
        }
        "masked" => {
            set(
                &mut status,
                WorkloadState::Failed,
                format!("unit `{unit}` is masked on node `{node}`: unmask it (`systemctl unmask {unit}`) or drop it from the spec"),
            );
            return status;
        }
        other => {
            let why = if info.load_error.is_empty() {
                other.to_string()
            } else {
                format!("{other}: {}", info.load_error)
            };
            set(
                &mut status,
                WorkloadState::Failed,
                format!("systemd cannot load `{unit}` on node `{node}` ({why})"),
            );
            return status;
        }
    }
    let sub = &info.sub_state;
    match info.active_state.as_str() {
        "active" | "reloading" => {
            let reason = if sub == "running" || sub.is_empty() {
                String::new()
            } else {
                format!("active ({sub})")
            };
            set(&mut status, WorkloadState::Running, reason);
            status.health = Health::Healthy as i32;
        }
        "activating" => {
            let reason = if sub == "auto-restart" {
                format!(
                    "systemd restarts it: it {} (restart {})",
                    how_it_ended(info),
                    info.n_restarts + 1
                )
            } else {
                format!("activating ({sub})")
            };
            set(&mut status, WorkloadState::Starting, reason);
            status.health = Health::Starting as i32;
        }
        "deactivating" => {
            set(
                &mut status,
                WorkloadState::Exited,
                format!("stopping ({sub})"),
            );
        }
        "failed" => {
            set(
                &mut status,
                WorkloadState::Failed,
                format!("unit `{unit}` failed: it {}", how_it_ended(info)),
            );
            unhealthy(&mut status, info);
        }
        _ if adopted_stopped => set(
            &mut status,
            WorkloadState::Exited,
            "stopped, as the spec asks".to_string(),
        ),
        _ => {
            let reason = if info.exec_main_code == 0 {
                "inactive: not started".to_string()
            } else {
                format!("inactive: it {}", how_it_ended(info))
            };
            set(&mut status, WorkloadState::Exited, reason);
        }
    }
    status
}

fn unhealthy(status: &mut WorkloadStatus, info: &UnitInfo) {
    status.health = Health::Unhealthy as i32;
    status.failing_probe = SYSTEMD.to_string();
    status.health_output = format!("{} ({})", info.active_state, how_it_ended(info));
}

/// Equal but for `updated_unix_ms`.
pub fn same(a: &WorkloadStatus, b: &WorkloadStatus) -> bool {
    WorkloadStatus {
        updated_unix_ms: 0,
        ..a.clone()
    } == WorkloadStatus {
        updated_unix_ms: 0,
        ..b.clone()
    }
}

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convoy_proto::{workload, Health, NodePlan, UnitSpec, Workload, WorkloadState, WorkloadStatus};
use tokio::sync::{broadcast, watch};

use super::file::{self, exec_line, want_of, InvalidUnit, OnDisk, Want};
use super::status::status_of;
use super::*;
use crate::runtime::systemd::fake::{not_found, Call, FakeSystemd};
use crate::runtime::systemd::{SystemdError, UnitInfo};

const NODE: &str = "n1";

fn spec(service: &str) -> UnitSpec {
    UnitSpec {
        unit_name: format!("convoy-{service}.service"),
        exec_start: vec!["/usr/bin/sleep".to_string(), "1000".to_string()],
        ..UnitSpec::default()
    }
}

fn unit_wl(service: &str, hash: &str) -> Workload {
    with_spec(service, hash, spec(service))
}

fn with_spec(service: &str, hash: &str, spec: UnitSpec) -> Workload {
    Workload {
        id: format!("prod/{service}/1"),
        service: service.to_string(),
        env: "prod".to_string(),
        index: 1,
        revision: 1,
        spec_hash: hash.to_string(),
        start_first: false,
        ingress: None,
        probes: Vec::new(),
        runtime: Some(workload::Runtime::Unit(spec)),
    }
}

fn adopt_wl(unit: &str, state: &str, enabled: bool) -> Workload {
    with_spec(
        unit.trim_end_matches(".service"),
        "h",
        UnitSpec {
            unit_name: unit.to_string(),
            adopt: true,
            state: state.to_string(),
            enabled,
            ..UnitSpec::default()
        },
    )
}

fn plan(workloads: Vec<Workload>) -> Plan {
    Plan::try_from(NodePlan {
        generation: 1,
        workloads,
        ..Default::default()
    })
    .unwrap()
}

fn content_of(w: &Workload) -> String {
    match want_of(w).unwrap() {
        Want::Write { content, .. } => content,
        other => panic!("not a written unit: {other:?}"),
    }
}

fn loaded(name: &str, active: &str, sub: &str) -> UnitInfo {
    UnitInfo {
        name: name.to_string(),
        load_state: "loaded".to_string(),
        active_state: active.to_string(),
        sub_state: sub.to_string(),
        unit_file_state: "enabled".to_string(),
        result: "success".to_string(),
        exec_main_start_usec: 1,
        main_pid: if active == "active" { 77 } else { 0 },
        ..UnitInfo::default()
    }
}

fn found(file: OnDisk, info: UnitInfo) -> Found {
    Found {
        file,
        info: Ok(info),
    }
}

fn decide_one(desired: &[Workload], found: Vec<(&str, Found)>, orphans: &[&str]) -> Vec<Action> {
    let desired: Vec<Desired> = desired.iter().map(Desired::of).collect();
    let mut book = UnitBook::default();
    book.observe(&desired);
    let found: BTreeMap<String, Found> =
        found.into_iter().map(|(u, f)| (u.to_string(), f)).collect();
    let orphans: Vec<String> = orphans.iter().map(|s| s.to_string()).collect();
    decide(&desired, &found, &orphans, &book, Instant::now())
}

fn id(w: &Workload) -> Option<String> {
    Some(w.id.clone())
}

// ---- rendering ----

#[test]
fn rendered_unit_carries_the_header_markers_and_the_spec() {
    let mut s = spec("exporter");
    s.user = "nobody".to_string();
    s.restart = "always".to_string();
    s.working_directory = "/var/lib/exporter".to_string();
    s.description = "Node exporter".to_string();
    s.environment = [("FOO".to_string(), "bar".to_string())].into();
    let content = content_of(&with_spec("exporter", "abc123", s));
    assert!(content.starts_with(
        "# Managed by Convoy (convoy-agent); do not edit — changes are overwritten\n[Unit]\n"
    ));
    for line in [
        "Description=Node exporter",
        "X-Convoy-Managed=true",
        "X-Convoy-Workload=prod/exporter/1",
        "X-Convoy-Spec-Hash=abc123",
        "[Service]",
        "ExecStart=/usr/bin/sleep 1000",
        "User=nobody",
        "WorkingDirectory=/var/lib/exporter",
        "Environment=\"FOO=bar\"",
        "Restart=always",
        "[Install]",
        "WantedBy=multi-user.target",
    ] {
        assert!(
            content.lines().any(|l| l == line),
            "missing `{line}` in\n{content}"
        );
    }
    assert!(file::is_managed(&content));
    assert_eq!(
        file::key_of(&content, file::SPEC_HASH_KEY).as_deref(),
        Some("abc123")
    );
}

/// Issue 16: a unit with GPUs may open the NVIDIA control devices and
/// its own GPUs' device nodes only, and CUDA sees its GPUs by UUID.
#[test]
fn a_unit_with_gpus_gets_device_allow_and_visible_devices() {
    let mut s = spec("train");
    s.environment
        .insert("CUDA_VISIBLE_DEVICES".into(), "all".into());
    s.gpu_uuids = vec!["GPU-aa-1".into(), "GPU-bb-2".into()];
    s.gpu_indexes = vec![1, 3];
    let content = content_of(&with_spec("train", "h", s.clone()));
    let lines: Vec<&str> = content.lines().collect();
    for expected in [
        "DeviceAllow=/dev/nvidiactl rw",
        "DeviceAllow=/dev/nvidia-uvm rw",
        "DeviceAllow=/dev/nvidia-uvm-tools rw",
        "DeviceAllow=/dev/nvidia1 rw",
        "DeviceAllow=/dev/nvidia3 rw",
        "Environment=CUDA_VISIBLE_DEVICES=GPU-aa-1,GPU-bb-2",
        "Environment=NVIDIA_VISIBLE_DEVICES=GPU-aa-1,GPU-bb-2",
    ] {
        assert!(lines.contains(&expected), "{expected}: {content}");
    }
    // Ours come after the spec's environment: systemd takes the last.
    let theirs = lines
        .iter()
        .position(|l| l.contains("CUDA_VISIBLE_DEVICES=all"))
        .unwrap();
    let ours = lines
        .iter()
        .position(|l| l.starts_with("Environment=CUDA_VISIBLE_DEVICES=GPU-"))
        .unwrap();
    assert!(theirs < ours, "{content}");
    // Without GPUs: no device policy at all.
    assert!(!content_of(&unit_wl("web", "h")).contains("DeviceAllow"));
    // Malformed or adopted: refused.
    let mut bad = s.clone();
    bad.gpu_uuids[0] = "GPU-1\nExecStartPre=/bin/sh".into();
    assert!(want_of(&with_spec("train", "h", bad))
        .unwrap_err()
        .to_string()
        .contains("is not valid"));
    let mut uneven = s;
    uneven.gpu_indexes.pop();
    assert!(want_of(&with_spec("train", "h", uneven)).is_err());
    let mut adopted = adopt_wl("nginx", "", true);
    if let Some(workload::Runtime::Unit(u)) = &mut adopted.runtime {
        u.gpu_uuids = vec!["GPU-1".into()];
        u.gpu_indexes = vec![0];
    }
    assert!(want_of(&adopted)
        .unwrap_err()
        .to_string()
        .contains("adopted"));
}

#[test]
fn restart_defaults_to_on_failure_and_description_to_the_workload() {
    let content = content_of(&unit_wl("web", "h"));
    assert!(content.contains("\nRestart=on-failure\n"));
    assert!(content.contains("\nDescription=Convoy workload prod/web/1\n"));
    assert!(!content.contains("User="));
}

#[test]
fn exec_start_arguments_with_spaces_quotes_percent_and_dollar_reach_the_program_verbatim() {
    let argv = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        exec_line(&argv(&[
            "/usr/bin/prometheus-node-exporter",
            "--web.listen-address=:9100"
        ])),
        "/usr/bin/prometheus-node-exporter --web.listen-address=:9100"
    );
    assert_eq!(
        exec_line(&argv(&["/bin/echo", "hello world", "it's", "say \"hi\""])),
        r#"/bin/echo "hello world" "it\'s" "say \"hi\"""#
    );
    // Specifiers and variables are doubled, so systemd passes them through.
    assert_eq!(
        exec_line(&argv(&["/bin/echo", "100%", "$HOME", "${X}", "%n"])),
        r#"/bin/echo 100%% $$HOME "$${X}" %%n"#
    );
    // Backslashes, tabs, newlines, an empty argument and a lone `;`.
    assert_eq!(
        exec_line(&argv(&["/bin/printf", "a\\b", "x\ty\nz", "", ";"])),
        r#"/bin/printf "a\\b" "x\ty\nz" "" ";""#
    );
    // A program path with a space is quoted; `%` in it is doubled.
    assert_eq!(
        exec_line(&argv(&["/opt/my app/run%1"])),
        r#""/opt/my app/run%%1""#
    );
}

#[test]
fn environment_values_with_spaces_quotes_and_percent_are_quoted_one_per_line() {
    let mut s = spec("env");
    s.environment = [
        ("GREETING".to_string(), "hello \"world\"".to_string()),
        ("PATHS".to_string(), "/a b:/c\\d".to_string()),
        ("RATE".to_string(), "50%".to_string()),
        ("EMPTY".to_string(), String::new()),
    ]
    .into();
    let content = content_of(&with_spec("env", "h", s));
    let env: Vec<&str> = content
        .lines()
        .filter(|l| l.starts_with("Environment="))
        .collect();
    assert_eq!(
        env,
        vec![
            r#"Environment="EMPTY=""#,
            r#"Environment="GREETING=hello \"world\"""#,
            r#"Environment="PATHS=/a b:/c\\d""#,
            r#"Environment="RATE=50%%""#,
        ]
    );
}

#[test]
fn bad_unit_specs_are_refused_with_a_reason() {
    let refused = |f: &dyn Fn(&mut UnitSpec)| {
        let mut s = spec("x");
        f(&mut s);
        want_of(&with_spec("x", "h", s)).unwrap_err()
    };
    assert_eq!(
        refused(&|s| s.unit_name = "convoy-../../etc/passwd.service".to_string()),
        InvalidUnit::Name("convoy-../../etc/passwd.service".to_string())
    );
    assert!(matches!(
        refused(&|s| s.unit_name = "convoy-x;rm -rf.service".to_string()),
        InvalidUnit::Name(_)
    ));
    assert!(matches!(
        refused(&|s| s.unit_name = "convoy-$(id).service".to_string()),
        InvalidUnit::Name(_)
    ));
    assert!(matches!(
        refused(&|s| s.unit_name = "nginx.service".to_string()),
        InvalidUnit::NotConvoys(_)
    ));
    assert!(matches!(
        refused(&|s| s.unit_name = "convoy-agent.service".to_string()),
        InvalidUnit::Reserved(_)
    ));
    assert!(matches!(
        refused(&|s| s.unit_name = "convoy-x.timer".to_string()),
        InvalidUnit::Name(_)
    ));
    assert_eq!(
        refused(&|s| s.exec_start = vec!["sleep".to_string(), "1".to_string()]),
        InvalidUnit::NotAbsolute("sleep".to_string())
    );
    assert_eq!(refused(&|s| s.exec_start.clear()), InvalidUnit::NoCommand);
    assert_eq!(
        refused(&|s| {
            s.environment
                .insert("A".to_string(), "line1\nline2".to_string());
        }),
        InvalidUnit::EnvValue("A".to_string())
    );
    assert!(matches!(
        refused(&|s| {
            s.environment.insert("1A".to_string(), "x".to_string());
        }),
        InvalidUnit::EnvName(_)
    ));
    assert!(matches!(
        refused(&|s| s.user = "root; rm".to_string()),
        InvalidUnit::User(_)
    ));
    assert!(matches!(
        refused(&|s| s.restart = "sometimes".to_string()),
        InvalidUnit::Restart(_)
    ));
    assert!(matches!(
        refused(&|s| s.working_directory = "relative".to_string()),
        InvalidUnit::WorkingDirectory(_)
    ));
    assert!(matches!(
        refused(&|s| s.description = "two\nlines".to_string()),
        InvalidUnit::ControlCharacter { .. }
    ));
}

#[test]
fn written_units_default_to_convoy_service_name_and_adopted_names_get_the_suffix() {
    let mut s = spec("web");
    s.unit_name.clear();
    assert!(matches!(
        want_of(&with_spec("web", "h", s)).unwrap(),
        Want::Write { unit, .. } if unit == "convoy-web.service"
    ));
    assert_eq!(
        want_of(&adopt_wl("nginx", "", true)).unwrap(),
        Want::Adopt {
            unit: "nginx.service".to_string(),
            running: true,
            enabled: true
        }
    );
    assert_eq!(
        want_of(&adopt_wl("getty@tty1.service", "stopped", false)).unwrap(),
        Want::Adopt {
            unit: "getty@tty1.service".to_string(),
            running: false,
            enabled: false
        }
    );
    assert!(matches!(
        want_of(&adopt_wl("nginx.service", "paused", true)).unwrap_err(),
        InvalidUnit::State(_)
    ));
    assert!(matches!(
        want_of(&adopt_wl("../nginx.service", "", true)).unwrap_err(),
        InvalidUnit::Name(_)
    ));
}

// ---- decisions ----

#[test]
fn new_unit_is_written_reloaded_enabled_and_started() {
    let w = unit_wl("web", "h1");
    let actions = decide_one(
        std::slice::from_ref(&w),
        vec![(
            "convoy-web.service",
            found(OnDisk::Missing, not_found("convoy-web.service")),
        )],
        &[],
    );
    assert_eq!(
        actions,
        vec![
            Action::Write {
                workload_id: w.id.clone(),
                unit: "convoy-web.service".to_string(),
                content: content_of(&w),
                replaces: false,
            },
            Action::Enable {
                workload_id: id(&w),
                unit: "convoy-web.service".to_string()
            },
            Action::DaemonReload,
            Action::Start {
                workload_id: w.id.clone(),
                unit: "convoy-web.service".to_string()
            },
        ]
    );
}

#[test]
fn changed_spec_rewrites_reloads_and_restarts() {
    let old = unit_wl("web", "h1");
    let new = with_spec("web", "h2", {
        let mut s = spec("web");
        s.exec_start.push("--verbose".to_string());
        s
    });
    let actions = decide_one(
        std::slice::from_ref(&new),
        vec![(
            "convoy-web.service",
            found(
                OnDisk::Managed {
                    content: content_of(&old),
                },
                loaded("convoy-web.service", "active", "running"),
            ),
        )],
        &[],
    );
    assert_eq!(
        actions,
        vec![
            Action::Write {
                workload_id: new.id.clone(),
                unit: "convoy-web.service".to_string(),
                content: content_of(&new),
                replaces: true,
            },
            Action::DaemonReload,
            Action::Restart {
                workload_id: new.id.clone(),
                unit: "convoy-web.service".to_string()
            },
        ]
    );
}

#[test]
fn unit_as_written_and_running_is_left_alone() {
    let w = unit_wl("web", "h1");
    let actions = decide_one(
        std::slice::from_ref(&w),
        vec![(
            "convoy-web.service",
            found(
                OnDisk::Managed {
                    content: content_of(&w),
                },
                loaded("convoy-web.service", "active", "running"),
            ),
        )],
        &[],
    );
    assert_eq!(actions, vec![]);
}

#[test]
fn unit_that_ran_and_exited_is_left_to_systemds_restart_policy() {
    let w = unit_wl("web", "h1");
    let mut info = loaded("convoy-web.service", "failed", "failed");
    info.result = "exit-code".to_string();
    let actions = decide_one(
        std::slice::from_ref(&w),
        vec![(
            "convoy-web.service",
            found(
                OnDisk::Managed {
                    content: content_of(&w),
                },
                info,
            ),
        )],
        &[],
    );
    assert_eq!(actions, vec![]);
}

#[test]
fn written_unit_that_never_started_is_started_and_an_unloaded_one_reloaded_first() {
    let w = unit_wl("web", "h1");
    let mut info = loaded("convoy-web.service", "inactive", "dead");
    info.exec_main_start_usec = 0;
    info.load_state = "not-found".to_string();
    info.unit_file_state = String::new();
    let actions = decide_one(
        std::slice::from_ref(&w),
        vec![(
            "convoy-web.service",
            found(
                OnDisk::Managed {
                    content: content_of(&w),
                },
                info,
            ),
        )],
        &[],
    );
    assert_eq!(
        actions,
        vec![
            Action::Enable {
                workload_id: id(&w),
                unit: "convoy-web.service".to_string()
            },
            Action::DaemonReload,
            Action::Start {
                workload_id: w.id.clone(),
                unit: "convoy-web.service".to_string()
            },
        ]
    );
}

#[test]
fn unit_removed_from_the_plan_is_stopped_disabled_deleted_and_reloaded() {
    let actions = decide_one(
        &[],
        vec![(
            "convoy-old.service",
            found(
                OnDisk::Managed {
                    content: content_of(&unit_wl("old", "h")),
                },
                loaded("convoy-old.service", "active", "running"),
            ),
        )],
        &["convoy-old.service"],
    );
    let unit = "convoy-old.service".to_string();
    assert_eq!(
        actions,
        vec![
            Action::Stop {
                workload_id: None,
                unit: unit.clone()
            },
            Action::Disable {
                workload_id: None,
                unit: unit.clone()
            },
            Action::Delete { unit: unit.clone() },
            Action::DaemonReload,
            Action::ResetFailed { unit },
        ]
    );
}

#[test]
fn foreign_unit_file_is_never_written_started_or_deleted() {
    let w = unit_wl("web", "h1");
    let actions = decide_one(
        &[w],
        vec![(
            "convoy-web.service",
            found(
                OnDisk::Foreign {
                    path: "/etc/systemd/system/convoy-web.service".into(),
                    why: "no X-Convoy-Managed=true".to_string(),
                },
                loaded("convoy-web.service", "inactive", "dead"),
            ),
        )],
        &[],
    );
    assert_eq!(actions, vec![]);
}

#[test]
fn adopted_unit_is_started_and_enabled_as_asked_and_its_file_never_written() {
    let w = adopt_wl("nginx.service", "running", true);
    let mut info = loaded("nginx.service", "inactive", "dead");
    info.unit_file_state = "disabled".to_string();
    let actions = decide_one(
        std::slice::from_ref(&w),
        vec![("nginx.service", found(OnDisk::Missing, info))],
        &[],
    );
    assert_eq!(
        actions,
        vec![
            Action::Enable {
                workload_id: id(&w),
                unit: "nginx.service".to_string()
            },
            Action::DaemonReload,
            Action::Start {
                workload_id: w.id.clone(),
                unit: "nginx.service".to_string()
            },
        ]
    );
}

#[test]
fn adopted_unit_is_stopped_and_disabled_as_asked() {
    let w = adopt_wl("nginx.service", "stopped", false);
    let actions = decide_one(
        std::slice::from_ref(&w),
        vec![(
            "nginx.service",
            found(
                OnDisk::Missing,
                loaded("nginx.service", "active", "running"),
            ),
        )],
        &[],
    );
    assert_eq!(
        actions,
        vec![
            Action::Disable {
                workload_id: id(&w),
                unit: "nginx.service".to_string()
            },
            // systemd's UnitFileState follows only after a reload.
            Action::DaemonReload,
            Action::Stop {
                workload_id: id(&w),
                unit: "nginx.service".to_string()
            },
        ]
    );
    // Already as asked: nothing to do.
    let mut info = loaded("nginx.service", "inactive", "dead");
    info.unit_file_state = "disabled".to_string();
    assert_eq!(
        decide_one(
            &[w],
            vec![("nginx.service", found(OnDisk::Missing, info))],
            &[]
        ),
        vec![]
    );
}

#[test]
fn adopted_unit_that_does_not_exist_or_is_masked_is_not_touched() {
    let w = adopt_wl("nope.service", "running", true);
    assert_eq!(
        decide_one(
            std::slice::from_ref(&w),
            vec![(
                "nope.service",
                found(OnDisk::Missing, not_found("nope.service"))
            )],
            &[]
        ),
        vec![]
    );
    let mut masked = loaded("nope.service", "inactive", "dead");
    masked.load_state = "masked".to_string();
    masked.unit_file_state = "masked".to_string();
    assert_eq!(
        decide_one(
            &[w],
            vec![("nope.service", found(OnDisk::Missing, masked))],
            &[]
        ),
        vec![]
    );
}

#[test]
fn two_workloads_naming_one_unit_leave_it_to_the_first() {
    let a = unit_wl("web", "h1");
    let mut b = unit_wl("web", "h2");
    b.id = "prod/web/2".to_string();
    let actions = decide_one(
        &[a.clone(), b],
        vec![(
            "convoy-web.service",
            found(OnDisk::Missing, not_found("convoy-web.service")),
        )],
        &[],
    );
    assert!(actions
        .iter()
        .all(|a| matches!(a, Action::DaemonReload) || a.workload_id() == Some("prod/web/1")));
}

// ---- status mapping ----

fn status_for(w: &Workload, info: UnitInfo) -> WorkloadStatus {
    let d = Desired::of(w);
    let file = match &d.want {
        Ok(Want::Write { content, .. }) => OnDisk::Managed {
            content: content.clone(),
        },
        _ => OnDisk::Missing,
    };
    status_of(&d, Some(&found(file, info)), None, Vec::new(), NODE)
}

fn state(s: &WorkloadStatus) -> WorkloadState {
    WorkloadState::try_from(s.state).unwrap()
}

fn health(s: &WorkloadStatus) -> Health {
    Health::try_from(s.health).unwrap()
}

#[test]
fn active_unit_is_running_and_healthy_with_its_unit_status() {
    let w = unit_wl("web", "h1");
    let mut info = loaded("convoy-web.service", "active", "running");
    info.n_restarts = 2;
    info.exec_start = "/usr/bin/sleep 1000".to_string();
    let s = status_for(&w, info);
    assert_eq!(state(&s), WorkloadState::Running);
    assert_eq!(health(&s), Health::Healthy);
    assert_eq!(s.restarts, 2);
    assert_eq!(s.reason, "");
    assert_eq!(s.spec_hash, "h1");
    let unit = s.unit.unwrap();
    assert_eq!(unit.unit_name, "convoy-web.service");
    assert_eq!(unit.active_state, "active");
    assert_eq!(unit.sub_state, "running");
    assert_eq!(unit.main_pid, 77);
    assert_eq!(unit.unit_file_state, "enabled");
    assert_eq!(unit.exec_start, "/usr/bin/sleep 1000");
    assert!(s.container_id.is_empty());
}

#[test]
fn activating_unit_is_starting_and_an_auto_restart_says_why() {
    let w = unit_wl("web", "h1");
    let s = status_for(&w, loaded("convoy-web.service", "activating", "start"));
    assert_eq!(state(&s), WorkloadState::Starting);
    assert_eq!(health(&s), Health::Starting);
    let mut info = loaded("convoy-web.service", "activating", "auto-restart");
    info.result = "signal".to_string();
    info.exec_main_code = 2;
    info.exec_main_status = 9;
    info.n_restarts = 1;
    let s = status_for(&w, info);
    assert_eq!(state(&s), WorkloadState::Starting);
    assert_eq!(
        s.reason,
        "systemd restarts it: it was killed by signal 9 (SIGKILL) (restart 2)"
    );
    assert_eq!(s.exit_code, 137);
}

#[test]
fn failed_unit_is_failed_and_unhealthy_with_result_exit_status_and_journal() {
    let w = unit_wl("web", "h1");
    let mut info = loaded("convoy-web.service", "failed", "failed");
    info.result = "exit-code".to_string();
    info.exec_main_code = 1;
    info.exec_main_status = 3;
    let d = Desired::of(&w);
    let s = status_of(
        &d,
        Some(&found(
            OnDisk::Managed {
                content: content_of(&w),
            },
            info,
        )),
        None,
        vec!["boom".to_string()],
        NODE,
    );
    assert_eq!(state(&s), WorkloadState::Failed);
    assert_eq!(
        s.reason,
        "unit `convoy-web.service` failed: it exited with status 3"
    );
    assert_eq!(s.exit_code, 3);
    assert_eq!(health(&s), Health::Unhealthy);
    assert_eq!(s.failing_probe, "systemd");
    assert_eq!(s.health_output, "failed (exited with status 3)");
    let unit = s.unit.unwrap();
    assert_eq!(unit.result, "exit-code");
    assert_eq!(unit.exit_status, 3);
    assert_eq!(unit.journal_tail, vec!["boom"]);
}

#[test]
fn inactive_unit_is_exited_and_a_stopped_adopted_unit_says_it_is_as_asked() {
    let s = status_for(
        &unit_wl("web", "h1"),
        loaded("convoy-web.service", "inactive", "dead"),
    );
    assert_eq!(state(&s), WorkloadState::Exited);
    assert_eq!(health(&s), Health::Unspecified);
    let s = status_for(
        &adopt_wl("nginx.service", "stopped", false),
        loaded("nginx.service", "inactive", "dead"),
    );
    assert_eq!(state(&s), WorkloadState::Exited);
    assert_eq!(s.reason, "stopped, as the spec asks");
}

#[test]
fn missing_masked_and_broken_units_are_failed_with_the_reason() {
    let s = status_for(
        &adopt_wl("nope.service", "running", true),
        not_found("nope.service"),
    );
    assert_eq!(state(&s), WorkloadState::Failed);
    assert_eq!(s.reason, "unit `nope.service` does not exist on node `n1`");
    let mut masked = loaded("nginx.service", "inactive", "dead");
    masked.load_state = "masked".to_string();
    let s = status_for(&adopt_wl("nginx.service", "running", true), masked);
    assert_eq!(state(&s), WorkloadState::Failed);
    assert!(s.reason.contains("is masked"), "{}", s.reason);
    let mut bad = loaded("convoy-web.service", "inactive", "dead");
    bad.load_state = "bad-setting".to_string();
    bad.load_error = "Unit has a bad ExecStart".to_string();
    let s = status_for(&unit_wl("web", "h"), bad);
    assert_eq!(state(&s), WorkloadState::Failed);
    assert!(
        s.reason.contains("bad-setting: Unit has a bad ExecStart"),
        "{}",
        s.reason
    );
}

#[test]
fn dbus_error_reading_a_unit_becomes_its_state() {
    let w = adopt_wl("nginx.service", "running", true);
    let d = Desired::of(&w);
    let f = Found {
        file: OnDisk::Missing,
        info: Err(SystemdError::AccessDenied {
            op: "loading",
            unit: "nginx.service".to_string(),
            message: "Access denied".to_string(),
        }),
    };
    let s = status_of(&d, Some(&f), None, Vec::new(), NODE);
    assert_eq!(state(&s), WorkloadState::Failed);
    assert!(s.reason.contains("systemd denied it"), "{}", s.reason);
}

// ---- passes against the recording fake ----

struct Harness {
    systemd: Arc<FakeSystemd>,
    reconciler: UnitReconciler<FakeSystemd>,
    statuses: watch::Receiver<BTreeMap<String, WorkloadStatus>>,
    events: broadcast::Receiver<convoy_proto::Event>,
    dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let systemd = Arc::new(FakeSystemd::default());
        systemd.state.lock().unwrap().unit_dir = Some(dir.path().to_path_buf());
        let (tx, statuses) = watch::channel(BTreeMap::new());
        let (events_tx, events) = broadcast::channel(64);
        let reconciler = UnitReconciler::new(
            systemd.clone(),
            NODE.to_string(),
            UnitsConfig {
                unit_dir: dir.path().to_path_buf(),
            },
            tx,
            events_tx,
        );
        Self {
            systemd,
            reconciler,
            statuses,
            events,
            dir,
        }
    }

    async fn pass(&mut self, plan: &Plan) -> Option<Instant> {
        self.reconciler.pass(Some(plan), Instant::now()).await
    }

    fn status(&self, id: &str) -> WorkloadStatus {
        self.statuses
            .borrow()
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("no status for {id}"))
    }

    fn file(&self, unit: &str) -> std::path::PathBuf {
        self.dir.path().join(unit)
    }

    fn event_kinds(&mut self) -> Vec<String> {
        let mut kinds = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            kinds.push(e.kind);
        }
        kinds
    }
}

#[tokio::test]
async fn pass_writes_a_new_unit_0644_reloads_enables_starts_and_reports_it_running() {
    let mut h = Harness::new();
    let w = unit_wl("web", "h1");
    h.pass(&plan(vec![w.clone()])).await;
    let path = h.file("convoy-web.service");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), content_of(&w));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        h.systemd.take_calls(),
        vec![
            Call::Enable("convoy-web.service".to_string()),
            Call::DaemonReload,
            Call::Start("convoy-web.service".to_string()),
        ]
    );
    let s = h.status(&w.id);
    assert_eq!(state(&s), WorkloadState::Running);
    assert_eq!(health(&s), Health::Healthy);
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(h.dir.path()).unwrap().count(), 1);

    // The next pass finds everything as it should be.
    h.pass(&plan(vec![w])).await;
    assert_eq!(h.systemd.take_calls(), vec![]);
}

#[tokio::test]
async fn pass_rewrites_and_restarts_a_unit_whose_spec_changed() {
    let mut h = Harness::new();
    h.pass(&plan(vec![unit_wl("web", "h1")])).await;
    h.systemd.take_calls();
    let new = with_spec("web", "h2", {
        let mut s = spec("web");
        s.environment.insert("MODE".to_string(), "fast".to_string());
        s
    });
    h.pass(&plan(vec![new.clone()])).await;
    assert_eq!(
        std::fs::read_to_string(h.file("convoy-web.service")).unwrap(),
        content_of(&new)
    );
    assert_eq!(
        h.systemd.take_calls(),
        vec![
            Call::DaemonReload,
            Call::Restart("convoy-web.service".to_string())
        ]
    );
    assert_eq!(h.status(&new.id).spec_hash, "h2");
    assert!(h.event_kinds().contains(&"replaced".to_string()));
}

#[tokio::test]
async fn pass_stops_disables_and_deletes_a_unit_that_left_the_plan_but_never_a_foreign_one() {
    let mut h = Harness::new();
    h.pass(&plan(vec![unit_wl("old", "h1")])).await;
    std::fs::write(
        h.file("convoy-hand.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    h.systemd.take_calls();

    h.pass(&plan(vec![])).await;
    assert!(!h.file("convoy-old.service").exists());
    assert!(
        h.file("convoy-hand.service").exists(),
        "a foreign file stays"
    );
    assert_eq!(
        h.systemd.take_calls(),
        vec![
            Call::Stop("convoy-old.service".to_string()),
            Call::Disable("convoy-old.service".to_string()),
            Call::DaemonReload,
            Call::ResetFailed("convoy-old.service".to_string()),
        ]
    );
    assert!(h.statuses.borrow().is_empty());
    assert!(h.event_kinds().contains(&"removed".to_string()));
}

#[tokio::test]
async fn pass_refuses_to_touch_a_unit_file_convoy_did_not_write() {
    let mut h = Harness::new();
    let hand = "[Unit]\nDescription=by hand\n[Service]\nExecStart=/bin/true\n";
    std::fs::write(h.file("convoy-web.service"), hand).unwrap();
    let w = unit_wl("web", "h1");
    h.pass(&plan(vec![w.clone()])).await;
    assert_eq!(
        std::fs::read_to_string(h.file("convoy-web.service")).unwrap(),
        hand
    );
    assert_eq!(h.systemd.take_calls(), vec![]);
    let s = h.status(&w.id);
    assert_eq!(state(&s), WorkloadState::Failed);
    assert!(
        s.reason
            .contains("convoy-web.service exists and was not written by Convoy")
            && s.reason.contains("no X-Convoy-Managed=true"),
        "{}",
        s.reason
    );
}

#[tokio::test]
async fn pass_keeps_an_adopted_unit_running_and_enabled_without_writing_its_file() {
    let mut h = Harness::new();
    let mut info = loaded("nginx.service", "inactive", "dead");
    info.unit_file_state = "disabled".to_string();
    info.fragment_path = "/lib/systemd/system/nginx.service".to_string();
    h.systemd.set(info);
    let w = adopt_wl("nginx.service", "running", true);
    h.pass(&plan(vec![w.clone()])).await;
    assert_eq!(
        h.systemd.take_calls(),
        vec![
            Call::Enable("nginx.service".to_string()),
            Call::DaemonReload,
            Call::Start("nginx.service".to_string())
        ]
    );
    assert_eq!(std::fs::read_dir(h.dir.path()).unwrap().count(), 0);
    assert_eq!(state(&h.status(&w.id)), WorkloadState::Running);

    // Dropped from the plan: left as it is, file and all.
    h.pass(&plan(vec![])).await;
    assert_eq!(h.systemd.take_calls(), vec![]);
    assert_eq!(
        h.systemd.get("nginx.service").unwrap().active_state,
        "active"
    );
}

#[tokio::test]
async fn pass_reports_a_masked_unit_and_a_denied_start_as_the_workloads_state() {
    let mut h = Harness::new();
    h.systemd.set(loaded("nginx.service", "inactive", "dead"));
    h.systemd.state.lock().unwrap().errors.insert(
        "nginx.service".to_string(),
        SystemdError::Masked {
            unit: "nginx.service".to_string(),
        },
    );
    h.systemd.set(loaded("redis.service", "inactive", "dead"));
    h.systemd.state.lock().unwrap().errors.insert(
        "redis.service".to_string(),
        SystemdError::AccessDenied {
            op: "starting",
            unit: "redis.service".to_string(),
            message: "Access denied".to_string(),
        },
    );
    let a = adopt_wl("nginx.service", "running", true);
    let b = adopt_wl("redis.service", "running", true);
    h.pass(&plan(vec![a.clone(), b.clone()])).await;
    let s = h.status(&a.id);
    assert_eq!(state(&s), WorkloadState::Failed);
    assert!(
        s.reason.contains("`nginx.service` is masked"),
        "{}",
        s.reason
    );
    let s = h.status(&b.id);
    assert_eq!(state(&s), WorkloadState::Failed);
    assert!(
        s.reason.contains("systemd denied it (Access denied)"),
        "{}",
        s.reason
    );
    assert_eq!(h.event_kinds(), vec!["failed", "failed"]);
}

#[tokio::test]
async fn pass_retries_a_start_that_did_not_take_only_after_a_backoff() {
    let mut h = Harness::new();
    let mut info = loaded("flaky.service", "inactive", "dead");
    info.unit_file_state = "static".to_string();
    h.systemd.set(info);
    h.systemd
        .state
        .lock()
        .unwrap()
        .crashing
        .insert("flaky.service".to_string());
    let w = adopt_wl("flaky.service", "running", false);
    let now = Instant::now();
    h.reconciler.pass(Some(&plan(vec![w.clone()])), now).await;
    assert_eq!(
        h.systemd.take_calls(),
        vec![Call::Start("flaky.service".to_string())]
    );
    let s = h.status(&w.id);
    assert_eq!(state(&s), WorkloadState::Failed);
    assert!(s.reason.contains("exited with status 3"), "{}", s.reason);

    // Within the backoff: nothing; after it: one more start.
    h.reconciler
        .pass(
            Some(&plan(vec![w.clone()])),
            now + Duration::from_millis(500),
        )
        .await;
    assert_eq!(h.systemd.take_calls(), vec![]);
    h.reconciler
        .pass(Some(&plan(vec![w])), now + Duration::from_secs(2))
        .await;
    assert_eq!(
        h.systemd.take_calls(),
        vec![Call::Start("flaky.service".to_string())]
    );
}

#[tokio::test]
async fn failed_unit_status_carries_the_last_journal_lines() {
    let mut h = Harness::new();
    let w = unit_wl("web", "h1");
    {
        let mut state = h.systemd.state.lock().unwrap();
        state.crashing.insert("convoy-web.service".to_string());
        state.journals.insert(
            "convoy-web.service".to_string(),
            (1..=15).map(|i| format!("line {i}")).collect(),
        );
    }
    h.pass(&plan(vec![w.clone()])).await;
    let s = h.status(&w.id);
    assert_eq!(state(&s), WorkloadState::Failed);
    let tail = s.unit.unwrap().journal_tail;
    assert_eq!(tail.len(), 10);
    assert_eq!(tail.first().map(String::as_str), Some("line 6"));
    assert_eq!(tail.last().map(String::as_str), Some("line 15"));
}

#[tokio::test]
async fn unreachable_systemd_fails_unit_workloads_and_leaves_files_alone() {
    let mut h = Harness::new();
    h.systemd.state.lock().unwrap().unreachable =
        Some("cannot connect to the system bus: No such file or directory".to_string());
    let w = unit_wl("web", "h1");
    let next = h.pass(&plan(vec![w.clone()])).await;
    assert!(next.is_some());
    let s = h.status(&w.id);
    assert_eq!(state(&s), WorkloadState::Failed);
    assert_eq!(
        s.reason,
        "systemd is not reachable on node `n1`: cannot connect to the system bus: No such file or directory"
    );
    assert!(!h.file("convoy-web.service").exists());
}

#[tokio::test]
async fn a_plan_without_units_never_asks_systemd() {
    let mut h = Harness::new();
    h.systemd.state.lock().unwrap().unreachable = Some("no bus".to_string());
    let container = Workload {
        id: "prod/web/1".to_string(),
        runtime: Some(workload::Runtime::Container(convoy_proto::ContainerSpec {
            image: "web:1".to_string(),
            ..Default::default()
        })),
        ..Workload::default()
    };
    assert_eq!(h.pass(&plan(vec![container])).await, None);
    assert!(h.statuses.borrow().is_empty());
    assert_eq!(h.reconciler.pass(None, Instant::now()).await, None);
    assert!(h.statuses.borrow().is_empty());
}

#[tokio::test]
async fn refused_spec_is_reported_failed_without_touching_systemd() {
    let mut h = Harness::new();
    let mut s = spec("web");
    s.exec_start = vec!["sleep".to_string()];
    let w = with_spec("web", "h1", s);
    h.pass(&plan(vec![w.clone()])).await;
    let st = h.status(&w.id);
    assert_eq!(state(&st), WorkloadState::Failed);
    assert_eq!(
        st.reason,
        "unit spec refused: exec_start must begin with an absolute path, not `sleep`"
    );
    assert_eq!(h.systemd.take_calls(), vec![]);
    assert_eq!(h.event_kinds(), vec!["failed"]);
}

#[tokio::test]
async fn systemd_restarts_show_up_as_restarts_and_events() {
    let mut h = Harness::new();
    let w = unit_wl("web", "h1");
    let p = plan(vec![w.clone()]);
    h.pass(&p).await;
    h.event_kinds();
    let mut info = h.systemd.get("convoy-web.service").unwrap();
    info.n_restarts = 1;
    info.main_pid = 99;
    h.systemd.set(info);
    h.pass(&p).await;
    assert_eq!(h.status(&w.id).restarts, 1);
    assert_eq!(h.status(&w.id).unit.unwrap().main_pid, 99);
    assert_eq!(h.event_kinds(), vec!["restarted"]);
}

#[tokio::test]
async fn a_write_that_fails_is_the_workloads_state_and_no_reload_follows() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let systemd = Arc::new(FakeSystemd::default());
    let (tx, statuses) = watch::channel(BTreeMap::new());
    let mut reconciler = UnitReconciler::new(
        systemd.clone(),
        NODE.to_string(),
        UnitsConfig {
            unit_dir: missing.clone(),
        },
        tx,
        broadcast::channel(8).0,
    );
    let w = unit_wl("web", "h1");
    reconciler
        .pass(Some(&plan(vec![w.clone()])), Instant::now())
        .await;
    assert_eq!(systemd.take_calls(), vec![]);
    let s = statuses.borrow()[&w.id].clone();
    assert_eq!(state(&s), WorkloadState::Failed);
    assert!(
        s.reason.starts_with(&format!(
            "writing {}: No such file or directory",
            missing.join("convoy-web.service").display()
        )),
        "{}",
        s.reason
    );
}

#[tokio::test]
async fn a_failed_daemon_reload_fails_the_units_written_before_it() {
    let mut h = Harness::new();
    h.systemd.state.lock().unwrap().reload_error = Some("Access denied".to_string());
    let w = unit_wl("web", "h1");
    h.pass(&plan(vec![w.clone()])).await;
    assert_eq!(
        h.systemd.take_calls(),
        vec![Call::Enable("convoy-web.service".to_string())]
    );
    let s = h.status(&w.id);
    assert_eq!(state(&s), WorkloadState::Failed);
    assert_eq!(s.reason, "reloading the unit files: Access denied");

    // Fixed: the next pass reloads and starts it.
    h.systemd.state.lock().unwrap().reload_error = None;
    h.pass(&plan(vec![w.clone()])).await;
    assert_eq!(
        h.systemd.take_calls(),
        vec![
            Call::DaemonReload,
            Call::Start("convoy-web.service".to_string()),
        ]
    );
    assert_eq!(state(&h.status(&w.id)), WorkloadState::Running);
}

fn with_credentials(mut w: Workload, creds: &[(&str, u64, &str)]) -> Workload {
    if let Some(convoy_proto::workload::Runtime::Unit(s)) = &mut w.runtime {
        s.credentials = creds
            .iter()
            .map(|(name, version, target)| convoy_proto::SecretMount {
                name: name.to_string(),
                version: *version,
                target: target.to_string(),
                ..Default::default()
            })
            .collect();
    }
    w
}

#[test]
fn credentials_are_loaded_from_the_secrets_dir_and_their_version_changes_the_file() {
    let dir = std::path::Path::new("/run/convoy-agent/secrets");
    let w = with_credentials(unit_wl("web", "h"), &[("db", 3, "db.pass"), ("api", 1, "")]);
    let content = |w: &Workload| match file::want_in(w, Some(dir)).unwrap() {
        Want::Write { content, .. } => content,
        other => panic!("{other:?}"),
    };
    let v3 = content(&w);
    for line in [
        "# convoy secret db v3",
        "LoadCredential=db.pass:/run/convoy-agent/secrets/units/convoy-web.service/db.pass",
        "LoadCredential=api:/run/convoy-agent/secrets/units/convoy-web.service/api",
    ] {
        assert!(v3.lines().any(|l| l == line), "no `{line}` in\n{v3}");
    }
    // A rotation changes the file, so the unit is rewritten and restarted.
    let v4 = content(&with_credentials(
        unit_wl("web", "h"),
        &[("db", 4, "db.pass"), ("api", 1, "")],
    ));
    assert_ne!(v3, v4);
    assert!(v4.contains("# convoy secret db v4"));
}

#[test]
fn bad_credentials_and_adopted_units_with_credentials_are_refused() {
    let dir = std::path::Path::new("/run/convoy-agent/secrets");
    let want = |w: &Workload| file::want_in(w, Some(dir));
    let err = want(&with_credentials(unit_wl("web", "h"), &[("db", 1, "a/b")])).unwrap_err();
    assert!(
        err.to_string()
            .contains("credential name `a/b` is not valid"),
        "{err}"
    );
    let err = want(&with_credentials(
        unit_wl("web", "h"),
        &[("db", 1, "x"), ("api", 1, "x")],
    ))
    .unwrap_err();
    assert_eq!(err, InvalidUnit::DuplicateCredential("x".into()));
    let err = want(&with_credentials(
        adopt_wl("nginx", "", true),
        &[("db", 1, "db")],
    ))
    .unwrap_err();
    assert!(
        matches!(&err, InvalidUnit::AdoptedCredentials(u) if u == "nginx.service"),
        "{err:?}"
    );
    assert!(err.to_string().contains("drop `adopt`"), "{err}");
    // An agent without a secrets dir.
    let err = want_of(&with_credentials(unit_wl("web", "h"), &[("db", 1, "db")])).unwrap_err();
    assert_eq!(err, InvalidUnit::NoSecretsDir);
}

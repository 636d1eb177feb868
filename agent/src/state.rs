//! The last plan on local disk, `DATA/plan.pb`, so the agent keeps enforcing
//! it while the coordinator is away and across its own restarts. The file is
//! the `NodePlan` message as protobuf, exactly as it came, so every field the
//! proto gains survives a restart without a mirror to keep in step; written
//! atomically, readable by the agent's user only. Registry logins are the
//! exception: they are stripped before writing and live in memory only (after
//! a restart, private images pull again once the coordinator resends them),
//! and so are secret values (`crate::secrets` keeps them on tmpfs only).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use convoy_proto::NodePlan;
use prost::Message;

use crate::plan::{InvalidPlan, Plan};

pub const PLAN_FILE: &str = "plan.pb";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not hold a plan: {reason}; delete it to start over")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} holds a plan the agent refuses: {source}; delete it to start over")]
    Refused { path: PathBuf, source: InvalidPlan },
}

/// Where the plan lives in a data directory.
pub fn plan_path(data_dir: &Path) -> PathBuf {
    data_dir.join(PLAN_FILE)
}

/// The stored plan, `None` when there is none yet.
pub async fn load(data_dir: &Path) -> Result<Option<NodePlan>, StateError> {
    let path = plan_path(data_dir);
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    NodePlan::decode(bytes.as_slice())
        .map(Some)
        .map_err(|e| StateError::Invalid {
            path,
            reason: e.to_string(),
        })
}

/// The stored plan, checked as a plan from the coordinator is: `None` when
/// there is none yet, an error naming the file and the workload when it
/// does not hold a valid one.
pub async fn load_valid(data_dir: &Path) -> Result<Option<Plan>, StateError> {
    let Some(plan) = load(data_dir).await? else {
        return Ok(None);
    };
    Plan::try_from(plan)
        .map(Some)
        .map_err(|source| StateError::Refused {
            path: plan_path(data_dir),
            source,
        })
}

/// Replaces the stored plan: a temporary file, synced, renamed over the old.
pub async fn store(data_dir: &Path, plan: &NodePlan) -> Result<(), StateError> {
    let path = plan_path(data_dir);
    // Registry logins stay in memory: `plan.pb` never holds a password.
    let bytes = if plan.registry_auths.is_empty() && plan.secret_values.is_empty() {
        plan.encode_to_vec()
    } else {
        NodePlan {
            generation: plan.generation,
            workloads: plan.workloads.clone(),
            registry_auths: Vec::new(),
            secret_values: Vec::new(),
            swarm_driver: plan.swarm_driver,
        }
        .encode_to_vec()
    };
    let dir = data_dir.to_path_buf();
    let target = path.clone();
    tokio::task::spawn_blocking(move || write_atomically(&dir, &target, &bytes))
        .await
        .map_err(|e| StateError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| StateError::Write { path, source })
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{PLAN_FILE}.tmp"));
    {
        // A leftover from a crash may carry other permissions: start afresh.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    use convoy_proto::restart_policy::Condition;
    use convoy_proto::{
        probe, workload, ContainerSpec, HealthCheck, HttpProbe, PortMapping, Probe, RestartPolicy,
        Workload,
    };

    use super::*;

    fn plan() -> NodePlan {
        NodePlan {
            generation: 42,
            workloads: vec![
                Workload {
                    id: "default/web/1".into(),
                    service: "web".into(),
                    env: "default".into(),
                    index: 1,
                    revision: 3,
                    spec_hash: "h1".into(),
                    start_first: false,
                    ingress: None,
                    probes: vec![Probe {
                        name: "ready".into(),
                        interval_ms: 1000,
                        timeout_ms: 500,
                        failure_threshold: 2,
                        success_threshold: 1,
                        start_period_ms: 3000,
                        check: Some(probe::Check::Http(HttpProbe {
                            port: 8080,
                            path: "/healthz".into(),
                            expect_status: 204,
                        })),
                    }],
                    runtime: Some(workload::Runtime::Container(ContainerSpec {
                        image: "web:1".into(),
                        command: vec!["a".into(), "b c".into()],
                        entrypoint: vec!["/bin/sh".into()],
                        env: BTreeMap::from([("K".into(), "v=1".into())]),
                        ports: vec![PortMapping {
                            host_ip: "127.0.0.1".into(),
                            host_port: 0,
                            container_port: 80,
                            protocol: "tcp".into(),
                            mode: String::new(),
                        }],
                        labels: BTreeMap::from([("team".into(), "x".into())]),
                        volumes: vec!["data:/data".into()],
                        working_dir: "/w".into(),
                        user: "1000".into(),
                        restart: Some(RestartPolicy {
                            condition: Condition::OnFailure as i32,
                            max_attempts: 4,
                        }),
                        stop_signal: "SIGINT".into(),
                        stop_grace_period_ms: 1500,
                        healthcheck: Some(HealthCheck {
                            test: vec!["CMD".into(), "/check".into()],
                            interval_ms: 2000,
                            timeout_ms: 1000,
                            retries: 5,
                            start_period_ms: 0,
                            start_interval_ms: 0,
                            disable: false,
                        }),
                        ..ContainerSpec::default()
                    })),
                },
                Workload {
                    id: "default/bare/1".into(),
                    service: "bare".into(),
                    env: "default".into(),
                    index: 1,
                    revision: 1,
                    spec_hash: "h2".into(),
                    start_first: false,
                    ingress: None,
                    probes: vec![],
                    runtime: None,
                },
            ],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn stored_plan_loads_back_equal_with_probes_and_healthcheck() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &plan()).await.unwrap();
        assert_eq!(load(dir.path()).await.unwrap(), Some(plan()));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![PLAN_FILE.to_string()], "no temporary file left");
    }

    #[tokio::test]
    async fn plan_file_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &plan()).await.unwrap();
        let mode = std::fs::metadata(plan_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn storing_again_replaces_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &plan()).await.unwrap();
        let empty = NodePlan {
            generation: 43,
            workloads: vec![],
            ..Default::default()
        };
        store(dir.path(), &empty).await.unwrap();
        assert_eq!(load(dir.path()).await.unwrap(), Some(empty));
    }

    #[tokio::test]
    async fn registry_logins_never_reach_the_plan_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut with_login = plan();
        with_login.registry_auths = vec![convoy_proto::RegistryAuth {
            server: "127.0.0.1:5000".into(),
            username: "ci".into(),
            password: "hunter2-secret".into(),
        }];
        store(dir.path(), &with_login).await.unwrap();
        let bytes = std::fs::read(plan_path(dir.path())).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("hunter2-secret") && !text.contains("127.0.0.1:5000"));
        let loaded = load(dir.path()).await.unwrap().unwrap();
        assert!(loaded.registry_auths.is_empty());
        assert_eq!(loaded.workloads, with_login.workloads);
    }

    #[tokio::test]
    async fn secret_values_never_reach_the_plan_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut with_values = plan();
        with_values.workloads.truncate(1);
        with_values.secret_values = vec![convoy_proto::SecretValue {
            env: "default".into(),
            name: "db".into(),
            version: 2,
            value: b"canary-hunter2-value".to_vec(),
        }];
        // As the session stores it: the checked plan's stored form.
        let checked = Plan::try_from(with_values.clone()).unwrap();
        store(dir.path(), &checked.to_stored()).await.unwrap();
        let bytes = std::fs::read(plan_path(dir.path())).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("canary-hunter2"));
        // And whatever a caller hands `store`.
        store(dir.path(), &with_values).await.unwrap();
        let bytes = std::fs::read(plan_path(dir.path())).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("canary-hunter2"));
        let loaded = load(dir.path()).await.unwrap().unwrap();
        assert!(loaded.secret_values.is_empty());
        assert_eq!(loaded.workloads, with_values.workloads);
    }

    #[tokio::test]
    async fn missing_plan_file_is_no_plan() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stored_plan_is_checked_like_one_from_the_coordinator() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_valid(dir.path()).await.unwrap(), None);
        // plan() has a workload without a runtime spec.
        store(dir.path(), &plan()).await.unwrap();
        let err = load_valid(dir.path()).await.unwrap_err();
        assert!(
            matches!(
                &err,
                StateError::Refused {
                    source: InvalidPlan::MissingRuntime { id },
                    ..
                } if id == "default/bare/1"
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(PLAN_FILE), "{err}");

        let mut valid = plan();
        valid.workloads.truncate(1);
        store(dir.path(), &valid).await.unwrap();
        let loaded = load_valid(dir.path()).await.unwrap().unwrap();
        assert_eq!(loaded.to_stored(), valid);
    }

    #[tokio::test]
    async fn corrupt_plan_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(plan_path(dir.path()), b"\xff\xff\xff not protobuf").unwrap();
        let err = load(dir.path()).await.unwrap_err();
        assert!(err.to_string().contains(PLAN_FILE), "{err}");
    }
}

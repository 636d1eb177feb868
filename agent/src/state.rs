//! The last plan on local disk, `DATA/plan.json`, so the agent keeps
//! enforcing it while the coordinator is away and across its own restarts.
//! The file is a serde mirror of `NodePlan`, written atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use convoy_proto::restart_policy::Condition;
use convoy_proto::{workload, ContainerSpec, NodePlan, PortMapping, RestartPolicy, Workload};
use serde::{Deserialize, Serialize};

pub const PLAN_FILE: &str = "plan.json";
const FORMAT: u32 = 1;

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
    let file: PlanFile = serde_json::from_slice(&bytes).map_err(|e| StateError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    NodePlan::try_from(file)
        .map(Some)
        .map_err(|reason| StateError::Invalid { path, reason })
}

/// Replaces the stored plan: a temporary file, synced, renamed over the old.
pub async fn store(data_dir: &Path, plan: &NodePlan) -> Result<(), StateError> {
    let path = plan_path(data_dir);
    let bytes =
        serde_json::to_vec_pretty(&PlanFile::from(plan)).map_err(|e| StateError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
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
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    std::fs::File::open(dir)?.sync_all()
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    format: u32,
    generation: u64,
    workloads: Vec<WorkloadFile>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadFile {
    id: String,
    service: String,
    env: String,
    index: u32,
    revision: u64,
    spec_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    container: Option<ContainerFile>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerFile {
    image: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    entrypoint: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<PortFile>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    working_dir: String,
    #[serde(default)]
    user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restart: Option<RestartFile>,
    #[serde(default)]
    stop_signal: String,
    #[serde(default)]
    stop_grace_period_ms: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortFile {
    #[serde(default)]
    host_ip: String,
    #[serde(default)]
    host_port: u32,
    container_port: u32,
    #[serde(default)]
    protocol: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartFile {
    /// `unspecified`, `any`, `on-failure` or `none`.
    condition: String,
    #[serde(default)]
    max_attempts: u32,
}

fn condition_name(condition: i32) -> String {
    match Condition::try_from(condition) {
        Ok(Condition::Unspecified) => "unspecified".to_string(),
        Ok(Condition::Any) => "any".to_string(),
        Ok(Condition::OnFailure) => "on-failure".to_string(),
        Ok(Condition::None) => "none".to_string(),
        // A value from a newer coordinator: keep it as a number.
        Err(_) => condition.to_string(),
    }
}

fn condition_from_name(name: &str) -> Result<i32, String> {
    let condition = match name {
        "unspecified" => Condition::Unspecified,
        "any" => Condition::Any,
        "on-failure" => Condition::OnFailure,
        "none" => Condition::None,
        other => {
            return other
                .parse()
                .map_err(|_| format!("unknown restart condition `{other}`"))
        }
    };
    Ok(condition as i32)
}

impl From<&NodePlan> for PlanFile {
    fn from(plan: &NodePlan) -> Self {
        let NodePlan {
            generation,
            workloads,
        } = plan;
        PlanFile {
            format: FORMAT,
            generation: *generation,
            workloads: workloads.iter().map(WorkloadFile::from).collect(),
        }
    }
}

impl From<&Workload> for WorkloadFile {
    fn from(w: &Workload) -> Self {
        let Workload {
            id,
            service,
            env,
            index,
            revision,
            spec_hash,
            runtime,
        } = w;
        WorkloadFile {
            id: id.clone(),
            service: service.clone(),
            env: env.clone(),
            index: *index,
            revision: *revision,
            spec_hash: spec_hash.clone(),
            container: runtime
                .as_ref()
                .map(|workload::Runtime::Container(spec)| ContainerFile::from(spec)),
        }
    }
}

impl From<&ContainerSpec> for ContainerFile {
    fn from(spec: &ContainerSpec) -> Self {
        let ContainerSpec {
            image,
            command,
            entrypoint,
            env,
            ports,
            labels,
            volumes,
            working_dir,
            user,
            restart,
            stop_signal,
            stop_grace_period_ms,
        } = spec;
        ContainerFile {
            image: image.clone(),
            command: command.clone(),
            entrypoint: entrypoint.clone(),
            env: env.clone(),
            ports: ports
                .iter()
                .map(|p| {
                    let PortMapping {
                        host_ip,
                        host_port,
                        container_port,
                        protocol,
                    } = p;
                    PortFile {
                        host_ip: host_ip.clone(),
                        host_port: *host_port,
                        container_port: *container_port,
                        protocol: protocol.clone(),
                    }
                })
                .collect(),
            labels: labels.clone(),
            volumes: volumes.clone(),
            working_dir: working_dir.clone(),
            user: user.clone(),
            restart: restart.map(|r| {
                let RestartPolicy {
                    condition,
                    max_attempts,
                } = r;
                RestartFile {
                    condition: condition_name(condition),
                    max_attempts,
                }
            }),
            stop_signal: stop_signal.clone(),
            stop_grace_period_ms: *stop_grace_period_ms,
        }
    }
}

impl TryFrom<PlanFile> for NodePlan {
    type Error = String;

    fn try_from(file: PlanFile) -> Result<Self, String> {
        let PlanFile {
            format,
            generation,
            workloads,
        } = file;
        if format != FORMAT {
            return Err(format!("format {format}, this agent reads {FORMAT}"));
        }
        let workloads = workloads
            .into_iter()
            .map(|w| {
                let WorkloadFile {
                    id,
                    service,
                    env,
                    index,
                    revision,
                    spec_hash,
                    container,
                } = w;
                let runtime = match container {
                    Some(c) => Some(workload::Runtime::Container(
                        container_spec(c).map_err(|e| format!("workload `{id}`: {e}"))?,
                    )),
                    None => None,
                };
                Ok(Workload {
                    id,
                    service,
                    env,
                    index,
                    revision,
                    spec_hash,
                    runtime,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(NodePlan {
            generation,
            workloads,
        })
    }
}

fn container_spec(file: ContainerFile) -> Result<ContainerSpec, String> {
    let ContainerFile {
        image,
        command,
        entrypoint,
        env,
        ports,
        labels,
        volumes,
        working_dir,
        user,
        restart,
        stop_signal,
        stop_grace_period_ms,
    } = file;
    let restart = match restart {
        Some(RestartFile {
            condition,
            max_attempts,
        }) => Some(RestartPolicy {
            condition: condition_from_name(&condition)?,
            max_attempts,
        }),
        None => None,
    };
    Ok(ContainerSpec {
        image,
        command,
        entrypoint,
        env,
        ports: ports
            .into_iter()
            .map(|p| {
                let PortFile {
                    host_ip,
                    host_port,
                    container_port,
                    protocol,
                } = p;
                PortMapping {
                    host_ip,
                    host_port,
                    container_port,
                    protocol,
                }
            })
            .collect(),
        labels,
        volumes,
        working_dir,
        user,
        restart,
        stop_signal,
        stop_grace_period_ms,
    })
}

#[cfg(test)]
mod tests {
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
                    })),
                },
                Workload {
                    id: "default/bare/1".into(),
                    service: "bare".into(),
                    env: "default".into(),
                    index: 1,
                    revision: 1,
                    spec_hash: "h2".into(),
                    runtime: None,
                },
            ],
        }
    }

    #[tokio::test]
    async fn stored_plan_loads_back_equal() {
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
    async fn storing_again_replaces_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &plan()).await.unwrap();
        let empty = NodePlan {
            generation: 43,
            workloads: vec![],
        };
        store(dir.path(), &empty).await.unwrap();
        assert_eq!(load(dir.path()).await.unwrap(), Some(empty));
    }

    #[tokio::test]
    async fn missing_plan_file_is_no_plan() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn corrupt_plan_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(plan_path(dir.path()), b"{\"format\":1,").unwrap();
        let err = load(dir.path()).await.unwrap_err();
        assert!(err.to_string().contains(PLAN_FILE), "{err}");
    }

    #[test]
    fn restart_condition_is_stored_by_name() {
        let file = PlanFile::from(&plan());
        let text = serde_json::to_string(&file).unwrap();
        assert!(text.contains("\"condition\":\"on-failure\""), "{text}");
    }
}

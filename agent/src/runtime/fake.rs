//! A recording fake of the container engine for unit tests of the reconcile
//! logic: containers live in a Vec, every mutating call is recorded.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use convoy_proto::{workload, Workload};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{
    container_name, ContainerInfo, ContainerState, CreatedContainer, DockerHealth, ExecOutput,
    Observed, Runtime, RuntimeError, RuntimeEvent,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Pull(String),
    Create { workload_id: String, name: String },
    Start(String),
    StopRemove(String),
    Exec { id: String, command: Vec<String> },
}

#[derive(Default)]
pub struct FakeState {
    /// Every container on the "daemon", of every node. `list` returns them
    /// all, unfiltered, so the reconciler's own node check is exercised too.
    pub containers: Vec<Observed>,
    pub images: HashSet<String>,
    /// Images a pull succeeds for.
    pub pullable: HashSet<String>,
    /// The (registry, username) each pull was given, in order.
    pub pull_logins: Vec<Option<(String, String)>>,
    /// Names held by containers Convoy does not manage.
    pub foreign_names: HashSet<String>,
    /// Set: every call fails as if the daemon were down.
    pub unreachable: Option<String>,
    /// The engine's Swarm membership (`swarm`).
    pub swarm: Option<convoy_proto::SwarmFacts>,
    /// Set: `start` and `create_and_start` fail to start with this message.
    pub start_error: Option<String>,
    /// Container addresses `inspect` reports.
    pub ips: HashMap<String, IpAddr>,
    /// What `exec` answers, by program (the command's first word); a program
    /// not here is not found, as in a real container.
    pub programs: HashMap<String, ExecOutput>,
    /// Programs that never exit: `exec` times out.
    pub hanging: HashSet<String>,
    /// Pulls of these images wait for their gate before they finish (a
    /// slow registry); a gate never opened is a pull that never ends.
    pub pull_gates: HashMap<String, Arc<tokio::sync::Notify>>,
    pub calls: Vec<Call>,
    /// What each create was given of its secrets, by workload id.
    pub deliveries: HashMap<String, crate::secrets::Delivery>,
    next_id: u64,
}

/// The fake engine. Its std Mutex is never held across an `.await`.
#[derive(Default)]
pub struct FakeRuntime {
    pub state: Mutex<FakeState>,
}

impl FakeRuntime {
    pub fn with_images(images: &[&str]) -> Self {
        let fake = Self::default();
        fake.lock().images = images.iter().map(|s| s.to_string()).collect();
        fake
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().calls)
    }

    /// Puts a container on the fake daemon as if some agent had created it.
    pub fn add(&self, node: &str, workload: &Workload, state: ContainerState) -> String {
        let mut s = self.lock();
        s.next_id += 1;
        let id = format!("c{}", s.next_id);
        let created_unix = i64::try_from(s.next_id).unwrap_or(0);
        let now = SystemTime::now();
        s.containers.push(Observed {
            id: id.clone(),
            name: container_name(workload),
            node: node.to_string(),
            workload_id: workload.id.clone(),
            spec_hash: workload.spec_hash.clone(),
            revision: workload.revision,
            state,
            created_unix,
            exit_code: None,
            oom_killed: false,
            started_at: Some(now),
            finished_at: None,
            error: String::new(),
            health: None,
        });
        id
    }

    /// Sets what Docker's healthcheck says of a container.
    pub fn set_health(&self, id: &str, health: Option<DockerHealth>) {
        if let Some(c) = self.lock().containers.iter_mut().find(|c| c.id == id) {
            c.health = health;
        }
    }

    /// Makes a container exit with `code` after having run for `ran`.
    pub fn exit(&self, id: &str, code: i64, ran: Duration) {
        let mut s = self.lock();
        if let Some(c) = s.containers.iter_mut().find(|c| c.id == id) {
            let now = SystemTime::now();
            c.state = ContainerState::Exited;
            c.exit_code = Some(code);
            c.started_at = now.checked_sub(ran);
            c.finished_at = Some(now);
        }
    }

    pub fn container(&self, id: &str) -> Option<Observed> {
        self.lock().containers.iter().find(|c| c.id == id).cloned()
    }

    pub fn containers_of(&self, workload_id: &str) -> Vec<Observed> {
        self.lock()
            .containers
            .iter()
            .filter(|c| c.workload_id == workload_id)
            .cloned()
            .collect()
    }

    fn check_reachable(&self) -> Result<(), RuntimeError> {
        match &self.lock().unreachable {
            Some(cause) => Err(RuntimeError::Unreachable(cause.clone())),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<String, RuntimeError> {
        self.check_reachable()?;
        Ok("20.10-fake".to_string())
    }

    async fn swarm(&self) -> Result<Option<convoy_proto::SwarmFacts>, RuntimeError> {
        self.check_reachable()?;
        Ok(self.lock().swarm.clone())
    }

    async fn list(&self, _node: &str) -> Result<Vec<Observed>, RuntimeError> {
        self.check_reachable()?;
        Ok(self.lock().containers.clone())
    }

    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        self.check_reachable()?;
        Ok(self.lock().images.contains(image))
    }

    async fn pull(
        &self,
        image: &str,
        login: Option<&crate::plan::RegistryLogin>,
    ) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        let gate = {
            let mut s = self.lock();
            s.calls.push(Call::Pull(image.to_string()));
            s.pull_logins
                .push(login.map(|l| (l.server.clone(), l.username.clone())));
            s.pull_gates.get(image).cloned()
        };
        if let Some(gate) = gate {
            gate.notified().await;
        }
        let mut s = self.lock();
        if s.pullable.contains(image) {
            s.images.insert(image.to_string());
            Ok(())
        } else {
            Err(RuntimeError::PullFailed {
                image: image.to_string(),
                registry: crate::plan::registry_of(image),
                kind: super::PullFailure::Auth,
                username: login.map(|l| l.username.clone()),
                detail: "pull access denied".to_string(),
            })
        }
    }

    async fn create_and_start(
        &self,
        node: &str,
        workload: &Workload,
        secrets: &crate::secrets::Delivery,
    ) -> Result<CreatedContainer, RuntimeError> {
        self.check_reachable()?;
        let name = container_name(workload);
        let Some(workload::Runtime::Container(spec)) = &workload.runtime else {
            return Err(RuntimeError::Engine {
                context: format!("creating `{name}`"),
                message: "no container spec".to_string(),
            });
        };
        let mut s = self.lock();
        s.calls.push(Call::Create {
            workload_id: workload.id.clone(),
            name: name.clone(),
        });
        s.deliveries.insert(workload.id.clone(), secrets.clone());
        if !s.images.contains(&spec.image) {
            return Err(RuntimeError::Engine {
                context: format!("creating container `{name}`"),
                message: format!("No such image: {}", spec.image),
            });
        }
        if s.foreign_names.contains(&name) {
            return Err(RuntimeError::NameTaken { name });
        }
        if s.containers.iter().any(|c| c.name == name) {
            return Err(RuntimeError::Engine {
                context: format!("creating container `{name}`"),
                message: "Conflict. The container name is already in use".to_string(),
            });
        }
        s.next_id += 1;
        let id = format!("c{}", s.next_id);
        let created_unix = i64::try_from(s.next_id).unwrap_or(0);
        let start_error = s.start_error.clone();
        let now = SystemTime::now();
        s.containers.push(Observed {
            id: id.clone(),
            name: name.clone(),
            node: node.to_string(),
            workload_id: workload.id.clone(),
            spec_hash: workload.spec_hash.clone(),
            revision: workload.revision,
            state: if start_error.is_some() {
                ContainerState::Created
            } else {
                ContainerState::Running
            },
            created_unix,
            exit_code: None,
            oom_killed: false,
            started_at: start_error.is_none().then_some(now),
            finished_at: None,
            error: String::new(),
            health: None,
        });
        match start_error {
            Some(message) => Err(RuntimeError::Engine {
                context: format!("starting container `{name}`"),
                message,
            }),
            None => Ok(CreatedContainer { id, name }),
        }
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        let mut s = self.lock();
        s.calls.push(Call::Start(id.to_string()));
        if let Some(message) = s.start_error.clone() {
            return Err(RuntimeError::Engine {
                context: format!("starting container `{id}`"),
                message,
            });
        }
        let Some(c) = s.containers.iter_mut().find(|c| c.id == id) else {
            return Err(RuntimeError::Engine {
                context: format!("starting container `{id}`"),
                message: "No such container".to_string(),
            });
        };
        c.state = ContainerState::Running;
        c.started_at = Some(SystemTime::now());
        c.finished_at = None;
        c.exit_code = None;
        Ok(())
    }

    async fn stop_and_remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.check_reachable()?;
        let mut s = self.lock();
        s.calls.push(Call::StopRemove(id.to_string()));
        s.containers.retain(|c| c.id != id);
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        self.check_reachable()?;
        let s = self.lock();
        let Some(c) = s.containers.iter().find(|c| c.id == id) else {
            return Ok(ContainerInfo::default());
        };
        Ok(ContainerInfo {
            state: Some(c.state),
            health: c.health.clone(),
            ip: s.ips.get(id).copied(),
            published: Vec::new(),
        })
    }

    async fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        self.check_reachable()?;
        let program = command.first().cloned().unwrap_or_default();
        let (answer, hangs) = {
            let mut s = self.lock();
            s.calls.push(Call::Exec {
                id: id.to_string(),
                command: command.to_vec(),
            });
            let running = s
                .containers
                .iter()
                .any(|c| c.id == id && c.state == ContainerState::Running);
            if !running {
                return Err(RuntimeError::Engine {
                    context: format!("running `{program}`"),
                    message: format!("Container {id} is not running"),
                });
            }
            (
                s.programs.get(&program).cloned(),
                s.hanging.contains(&program),
            )
        };
        if hangs {
            tokio::time::sleep(timeout).await;
            return Err(RuntimeError::Engine {
                context: format!("running `{program}`"),
                message: format!("no exit within {}", crate::probe::human(timeout)),
            });
        }
        Ok(answer.unwrap_or_else(|| ExecOutput {
            exit_code: Some(126),
            output: format!(
                "OCI runtime exec failed: exec failed: unable to start container process: \
                 exec: \"{program}\": executable file not found in $PATH: unknown"
            ),
        }))
    }

    async fn events(
        &self,
        _node: &str,
    ) -> Result<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>, RuntimeError> {
        self.check_reachable()?;
        Ok(futures::stream::pending().boxed())
    }
}

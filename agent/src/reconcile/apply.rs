//! The effectful half of the container reconciler: one workload's
//! reconcile (observe afresh, decide, apply its actions in order) and the
//! bookkeeping and events of what they did.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use convoy_proto::{workload, Event, Workload};
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

use super::book::RestartBook;
use super::decide::{decide_among, Action, RemoveReason};
use super::depends::{unmet, DEPENDS_WAIT};
use super::{desired_of, earliest, unix_ms, Snapshot};
use crate::controller;
use crate::plan::Plan;
use crate::runtime::{container_name, Observed, Runtime, RuntimeError};
use crate::secrets::{self, Delivery, NodeSecrets};

/// Why a workload's reconcile did not bring it where the plan wants it.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{reason}")]
    Observe { reason: String },
    #[error("workload `{workload_id}`: {reason}")]
    Failed { workload_id: String, reason: String },
    #[error("removing container `{container_id}`: {reason}")]
    Remove {
        container_id: String,
        reason: String,
    },
}

/// What the reconciles of all workloads share: the engine, the restart
/// book and the event channel. The book's lock is never held across an
/// `.await`.
pub(super) struct Ctx<R: Runtime> {
    pub(super) runtime: Arc<R>,
    pub(super) node: String,
    pub(super) book: Mutex<RestartBook>,
    pub(super) events: broadcast::Sender<Event>,
    /// The statuses last published: what `depends_on` is checked against.
    pub(super) statuses: watch::Receiver<Snapshot>,
    /// `ENV/SERVICE -> DEPENDENCY` already logged as not checked here.
    pub(super) elsewhere: Mutex<HashSet<String>>,
    /// Where secret files are written; `None`: a workload with secrets fails.
    pub(super) secrets: Option<Arc<NodeSecrets>>,
    /// The proxy's pools: a container in one is drained before it stops.
    pub(super) drains: Option<Arc<crate::proxy::Pools>>,
}

impl<R: Runtime> Ctx<R> {
    pub(super) fn book(&self) -> MutexGuard<'_, RestartBook> {
        // A panic elsewhere does not make the book unreadable.
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds back the creates and replacements of workloads whose
    /// `depends_on` is not met yet (a `Wait` instead), and books why they
    /// wait. `plan`: the plan's container workloads.
    pub(super) fn gate(
        &self,
        plan: &[Workload],
        actions: Vec<Action>,
        now: Instant,
    ) -> Vec<Action> {
        let statuses = self.statuses.borrow().statuses.clone();
        actions
            .into_iter()
            .map(|action| {
                let w = match &action {
                    Action::Create(w) | Action::Replace { workload: w, .. } => w,
                    _ => return action,
                };
                let gate = unmet(w, plan, &statuses);
                for dep in &gate.elsewhere {
                    let key = format!("{}/{} -> {dep}", w.env, w.service);
                    let mut logged = self
                        .elsewhere
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if logged.insert(key) {
                        info!(
                            workload = %w.id,
                            "depends_on `{dep}`: no instance of it on this node, so it is \
                             not checked here (depends_on across nodes is not checked yet)"
                        );
                    }
                }
                let new = self.book().set_waiting(&w.id, gate.waiting.clone());
                match gate.waiting {
                    Some(reason) => {
                        if new {
                            info!(workload = %w.id, "{reason}");
                        }
                        Action::Wait {
                            workload_id: w.id.clone(),
                            until: now + DEPENDS_WAIT,
                        }
                    }
                    None => action,
                }
            })
            .collect()
    }

    pub(super) async fn observe(&self) -> Result<Vec<Observed>, RuntimeError> {
        let mut observed = self.runtime.list(&self.node).await?;
        // Only this node's containers, whatever the runtime returned.
        observed.retain(|o| o.node == self.node);
        Ok(observed)
    }

    /// One workload's reconcile (or the removal of containers of a
    /// workload that left the plan): reads its containers afresh, decides,
    /// and applies the actions one after another.
    pub(super) async fn reconcile(
        &self,
        plan: &Plan,
        workload_id: &str,
        now: Instant,
    ) -> Result<controller::Action, ReconcileError> {
        let observed = self.observe().await.map_err(|e| ReconcileError::Observe {
            reason: e.reason(&self.node),
        })?;
        let all = desired_of(plan);
        let desired: Vec<Workload> = all
            .iter()
            .filter(|w| w.id == workload_id)
            .cloned()
            .collect();
        let mine: Vec<Observed> = observed
            .iter()
            .filter(|o| o.workload_id == workload_id)
            .cloned()
            .collect();
        let actions = {
            let mut book = self.book();
            if let Some(w) = desired.first() {
                book.observe_one(w, &mine, now);
            }
            decide_among(&desired, &mine, &all, &observed, &book, now)
        };
        let actions = self.gate(&all, actions, now);
        let names: HashMap<String, String> = mine
            .iter()
            .map(|o| (o.id.clone(), o.name.clone()))
            .collect();
        let mut wait = None;
        let mut failed = None;
        for action in actions {
            if let Action::Wait { until, .. } = action {
                wait = earliest(wait, Some(until));
                continue;
            }
            let secrets = self.secrets.as_ref();
            let drains = self.drains.as_deref();
            let Some(outcome) = apply(
                self.runtime.as_ref(),
                &self.node,
                secrets,
                drains,
                plan,
                action,
            )
            .await
            else {
                continue;
            };
            let now_after = Instant::now().max(now);
            if let Err(e) = self.record(outcome, &names, now_after) {
                failed = Some(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(wait.map_or(controller::Action::AwaitChange, |until| {
                controller::Action::Requeue(until.saturating_duration_since(now))
            })),
        }
    }

    /// Books the outcome of one action and says what happened; `Err` for a
    /// failure, which the runner's error policy retries.
    fn record(
        &self,
        outcome: Outcome,
        names: &HashMap<String, String>,
        now: Instant,
    ) -> Result<(), ReconcileError> {
        match outcome {
            Outcome::Running {
                workload_id,
                after_exit,
                replaced,
                name,
            } => {
                // A started container is named by its id here.
                let name = names.get(&name).cloned().unwrap_or(name);
                let restarted = self
                    .book()
                    .record_running(&workload_id, after_exit.is_some());
                if let Some(old) = replaced {
                    let old_names: Vec<&str> = old
                        .iter()
                        .map(|id| names.get(id).map_or(id.as_str(), String::as_str))
                        .collect();
                    let message = format!(
                        "replaced {} with `{name}`",
                        old_names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    info!(workload = %workload_id, "{message}");
                    self.emit(&workload_id, "replaced", message);
                } else if restarted {
                    let message = match after_exit {
                        Some(code) => {
                            format!("restarted `{name}` after it exited with code {code}")
                        }
                        None => format!("recreated `{name}`: its container was gone"),
                    };
                    info!(workload = %workload_id, "{message}");
                    self.emit(&workload_id, "restarted", message);
                } else {
                    info!(workload = %workload_id, "started `{name}`");
                }
            }
            Outcome::Removed {
                workload_id,
                container_id,
                why,
            } => {
                let name = names
                    .get(&container_id)
                    .cloned()
                    .unwrap_or_else(|| container_id.clone());
                let message = match why {
                    RemoveReason::Duplicate => format!("removed duplicate container `{name}`"),
                    RemoveReason::Outdated => format!("removed outdated container `{name}`"),
                    RemoveReason::NotInPlan => {
                        format!("removed container `{name}`: its workload is not in the plan")
                    }
                };
                info!(workload = %workload_id, "{message}");
                self.emit(&workload_id, "removed", message);
            }
            Outcome::Failed { workload_id, error } => {
                let reason = error.reason(&self.node);
                let kind = match error {
                    RuntimeError::ImageMissing { .. } | RuntimeError::PullFailed { .. } => {
                        "image-missing"
                    }
                    _ => "failed",
                };
                let new = self
                    .book()
                    .record_failure(&workload_id, reason.clone(), now);
                if new {
                    warn!(workload = %workload_id, "{reason}");
                    self.emit(&workload_id, kind, reason.clone());
                } else {
                    debug!(workload = %workload_id, "{reason}");
                }
                return Err(ReconcileError::Failed {
                    workload_id,
                    reason,
                });
            }
            Outcome::RemoveFailed {
                container_id,
                error,
            } => {
                let reason = error.reason(&self.node);
                warn!(container = %container_id, "could not remove container: {reason}");
                return Err(ReconcileError::Remove {
                    container_id,
                    reason,
                });
            }
        }
        Ok(())
    }

    pub(super) fn emit(&self, workload_id: &str, kind: &str, message: String) {
        // No receiver (no session right now) is fine: statuses carry the state.
        let _ = self.events.send(Event {
            unix_ms: unix_ms(SystemTime::now()),
            workload_id: workload_id.to_string(),
            kind: kind.to_string(),
            message,
        });
    }
}

/// The result of applying one action.
enum Outcome {
    Running {
        workload_id: String,
        /// The exit code when this restarted an exited container.
        after_exit: Option<i64>,
        replaced: Option<Vec<String>>,
        name: String,
    },
    Removed {
        workload_id: String,
        container_id: String,
        why: RemoveReason,
    },
    Failed {
        workload_id: String,
        error: RuntimeError,
    },
    RemoveFailed {
        container_id: String,
        error: RuntimeError,
    },
}

/// Applies one action; `None` for a `Wait`, which the loop handles.
async fn apply<R: Runtime>(
    runtime: &R,
    node: &str,
    secrets: Option<&Arc<NodeSecrets>>,
    drains: Option<&crate::proxy::Pools>,
    plan: &Plan,
    action: Action,
) -> Option<Outcome> {
    Some(match action {
        Action::Create(w) => match create(runtime, node, secrets, plan, &w).await {
            Ok(name) => Outcome::Running {
                workload_id: w.id,
                after_exit: None,
                replaced: None,
                name,
            },
            Err(error) => Outcome::Failed {
                workload_id: w.id,
                error,
            },
        },
        Action::Replace { workload: w, old } => {
            let result = async {
                // The old containers keep serving until the new image is here.
                ensure_image(runtime, plan, &w).await?;
                for id in &old {
                    // Out of the proxy's pool, its requests done, first.
                    if let Some(pools) = drains {
                        pools.drain(id).await;
                    }
                    runtime.stop_and_remove(id).await?;
                }
                create(runtime, node, secrets, plan, &w).await
            }
            .await;
            match result {
                Ok(name) => Outcome::Running {
                    workload_id: w.id,
                    after_exit: None,
                    replaced: Some(old),
                    name,
                },
                Err(error) => Outcome::Failed {
                    workload_id: w.id,
                    error,
                },
            }
        }
        Action::Start {
            workload_id,
            container_id,
            after_exit,
        } => match start(runtime, secrets, plan, &workload_id, &container_id).await {
            Ok(()) => Outcome::Running {
                workload_id,
                after_exit,
                replaced: None,
                name: container_id,
            },
            Err(error) => Outcome::Failed { workload_id, error },
        },
        Action::Remove {
            container_id,
            workload_id,
            why,
        } => match async {
            if let Some(pools) = drains {
                pools.drain(&container_id).await;
            }
            runtime.stop_and_remove(&container_id).await
        }
        .await
        {
            Ok(()) => {
                // Removed for good: its anonymous volumes go with it (a
                // new revision replaces, and keeps them).
                if why == RemoveReason::NotInPlan {
                    runtime.remove_instance_volumes(&workload_id).await;
                }
                Outcome::Removed {
                    workload_id,
                    container_id,
                    why,
                }
            }
            Err(error) => Outcome::RemoveFailed {
                container_id,
                error,
            },
        },
        Action::Wait { .. } => return None,
    })
}

/// The workload's image on the node, pulled (with the plan's login for its
/// registry, if any) as its `pull_policy` says.
async fn ensure_image<R: Runtime>(
    runtime: &R,
    plan: &Plan,
    w: &Workload,
) -> Result<(), RuntimeError> {
    let Some(workload::Runtime::Container(spec)) = &w.runtime else {
        return Err(no_spec(w));
    };
    let login = plan.registry_login(&spec.image);
    match spec.pull_policy.as_str() {
        // A new pull for every container created (a moving tag).
        "always" => runtime.pull(&spec.image, login).await,
        "never" => {
            if runtime.image_present(&spec.image).await? {
                Ok(())
            } else {
                Err(RuntimeError::ImageMissing {
                    image: spec.image.clone(),
                    cause: "`pull_policy: never`, and the image is not on this node: load it \
                            here, or use `missing`"
                        .to_string(),
                })
            }
        }
        _ => {
            if runtime.image_present(&spec.image).await? {
                return Ok(());
            }
            runtime.pull(&spec.image, login).await
        }
    }
}

async fn create<R: Runtime>(
    runtime: &R,
    node: &str,
    secrets: Option<&Arc<NodeSecrets>>,
    plan: &Plan,
    w: &Workload,
) -> Result<String, RuntimeError> {
    // A secret that cannot be delivered fails before any pull.
    let delivery = deliver(secrets, plan, w).await?;
    ensure_image(runtime, plan, w).await?;
    Ok(runtime.create_and_start(node, w, &delivery).await?.name)
}

/// Starts an exited container again, its secret files written first: a
/// reboot may have cleared the tmpfs they are on (then the values come
/// from the plan, or the workload waits for the coordinator).
async fn start<R: Runtime>(
    runtime: &R,
    secrets: Option<&Arc<NodeSecrets>>,
    plan: &Plan,
    workload_id: &str,
    container_id: &str,
) -> Result<(), RuntimeError> {
    if let Some(w) = plan.containers().find(|w| w.id == workload_id) {
        deliver(secrets, plan, w).await?;
    }
    runtime.start(container_id).await
}

/// Writes the secret files of `w`'s container on the node's tmpfs and says
/// what the container gets; nothing for a workload without secrets.
async fn deliver(
    secrets: Option<&Arc<NodeSecrets>>,
    plan: &Plan,
    w: &Workload,
) -> Result<Delivery, RuntimeError> {
    let mounts = secrets::mounts_of(w);
    if mounts.is_empty() {
        return Ok(Delivery::default());
    }
    let Some(secrets) = secrets.cloned() else {
        return Err(RuntimeError::Secret(format!(
            "`{}` uses secrets, and this agent has no secrets directory",
            w.id
        )));
    };
    let keys: Vec<secrets::SecretKey> = mounts
        .iter()
        .map(|m| secrets::SecretKey::of(&w.env, m))
        .collect();
    let values = plan.secret_values().subset(&keys);
    let w = w.clone();
    tokio::task::spawn_blocking(move || secrets.prepare_container(&container_name(&w), &w, &values))
        .await
        .map_err(|e| RuntimeError::Secret(format!("writing secret files: {e}")))?
        .map_err(RuntimeError::Secret)
}

fn no_spec(w: &Workload) -> RuntimeError {
    RuntimeError::Engine {
        context: format!("workload `{}`", w.id),
        message: "the plan gives it no container spec".to_string(),
    }
}

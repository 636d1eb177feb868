//! The effectful half of the unit reconciler: one key's reconcile (find
//! its unit afresh, decide, apply the actions in order) and the
//! bookkeeping and events of what they did.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use convoy_proto::Event;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use super::book::UnitBook;
use super::decide::{decide_key, desired_of, Action, Desired, Found, UnitKey};
use super::file::{OnDisk, UnitFiles, Want};
use crate::controller;
use crate::plan::Plan;
use crate::reconcile::unix_ms;
use crate::runtime::systemd::{Systemd, SystemdError};
use crate::secrets::NodeSecrets;

/// Why a unit's reconcile did not bring it where the plan wants it.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// systemd did not answer; the statuses say so.
    #[error("{reason}")]
    Unreachable { reason: String },
    #[error("{reason}")]
    Failed { reason: String },
}

/// What the reconciles of all units share: systemd, the unit files and
/// the book. The book's lock is never held across an `.await`.
pub(super) struct Ctx<S: Systemd> {
    pub(super) systemd: Arc<S>,
    pub(super) node: String,
    pub(super) files: UnitFiles,
    pub(super) book: Mutex<UnitBook>,
    pub(super) events: broadcast::Sender<Event>,
    /// Where credentials are written; `None`: a unit with some fails.
    pub(super) secrets: Option<Arc<NodeSecrets>>,
}

impl<S: Systemd> Ctx<S> {
    pub(super) fn book(&self) -> MutexGuard<'_, UnitBook> {
        // A panic elsewhere does not make the book unreadable.
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One key's reconcile: its unit (and file) read afresh, decided and
    /// applied in order.
    pub(super) async fn reconcile(
        &self,
        plan: &Plan,
        key: &UnitKey,
        now: Instant,
    ) -> Result<controller::Action, ReconcileError> {
        let desired = self.desired_of(plan);
        let (mine, orphans): (Vec<Desired>, Vec<String>) = match key {
            UnitKey::Workload(id) => (
                desired
                    .iter()
                    .filter(|d| d.workload.id == *id)
                    .take(1)
                    .cloned()
                    .collect(),
                Vec::new(),
            ),
            UnitKey::Orphan(unit) => {
                // Still an orphan? The plan may name it again by now.
                let orphans = self.orphans(&desired).await;
                let still = orphans.iter().any(|o| o == unit);
                (
                    Vec::new(),
                    still.then(|| unit.clone()).into_iter().collect(),
                )
            }
        };
        if mine.is_empty() && orphans.is_empty() {
            return Ok(controller::Action::AwaitChange);
        }
        let found = self
            .find(&mine, &orphans)
            .await
            .map_err(|reason| ReconcileError::Unreachable { reason })?;
        let actions = decide_key(&desired, &found, key, &self.book(), now);
        if actions.is_empty() {
            return Ok(controller::Action::AwaitChange);
        }
        if let Some(d) = mine.first() {
            self.write_credentials(plan, d).await?;
        }
        self.apply(&desired, actions, now).await?;
        Ok(controller::Action::AwaitChange)
    }

    /// The plan's unit workloads, their credentials under the secrets dir.
    pub(super) fn desired_of(&self, plan: &Plan) -> Vec<Desired> {
        desired_of(plan, self.secrets.as_deref().map(NodeSecrets::dir))
    }

    /// Writes the credentials of a unit Convoy writes before its file is
    /// written or it is started (a reboot clears them); a value missing
    /// fails the workload, saying which.
    async fn write_credentials(&self, plan: &Plan, d: &Desired) -> Result<(), ReconcileError> {
        let (Some(secrets), Ok(Want::Write { unit, .. })) = (self.secrets.clone(), &d.want) else {
            return Ok(());
        };
        let keys = crate::secrets::refs_of([&d.workload]);
        if keys.is_empty() {
            return Ok(());
        }
        let values = plan.secret_values().subset(&keys);
        let (unit, w) = (unit.clone(), d.workload.clone());
        let written = tokio::task::spawn_blocking(move || secrets.prepare_unit(&unit, &w, &values))
            .await
            .unwrap_or_else(|e| Err(format!("writing credentials: {e}")));
        match written {
            Ok(()) => Ok(()),
            Err(reason) => {
                if self
                    .book()
                    .record_error(&d.workload.id, reason.clone(), true)
                {
                    warn!(workload = %d.workload.id, "{reason}");
                }
                Err(ReconcileError::Failed { reason })
            }
        }
    }

    /// Removes the credentials of units the plan no longer writes.
    pub(super) async fn collect_credentials(&self, desired: &[Desired]) {
        let Some(secrets) = self.secrets.clone() else {
            return;
        };
        let keep: HashSet<String> = desired
            .iter()
            .filter_map(|d| match &d.want {
                Ok(Want::Write { unit, .. }) => Some(unit.clone()),
                _ => None,
            })
            .collect();
        let _ = tokio::task::spawn_blocking(move || secrets.collect_units(&keep)).await;
    }

    /// Unit files of Convoy's that no desired unit names (nor an adopted
    /// one: Convoy never deletes what it adopts).
    pub(super) async fn orphans(&self, desired: &[Desired]) -> Vec<String> {
        let wanted: HashSet<&str> = desired.iter().filter_map(Desired::unit).collect();
        match self.files.managed().await {
            Ok(managed) => managed
                .into_keys()
                .filter(|unit| !wanted.contains(unit.as_str()))
                .collect(),
            Err(e) => {
                warn!("{e}; leaving Convoy's unit files there alone this pass");
                Vec::new()
            }
        }
    }

    /// Reads every unit of interest; `Err` when systemd is unreachable.
    pub(super) async fn find(
        &self,
        desired: &[Desired],
        orphans: &[String],
    ) -> Result<BTreeMap<String, Found>, String> {
        let mut found = BTreeMap::new();
        let units = desired
            .iter()
            .filter_map(|d| d.want.as_ref().ok())
            .map(|w| (w.unit().to_string(), matches!(w, Want::Write { .. })))
            .chain(orphans.iter().map(|u| (u.clone(), true)));
        for (unit, written) in units {
            if found.contains_key(&unit) {
                continue;
            }
            let file = if written {
                self.files.read(&unit).await
            } else {
                OnDisk::Missing
            };
            let info = self.systemd.unit(&unit).await;
            if let Err(SystemdError::Unreachable(cause)) = &info {
                return Err(SystemdError::Unreachable(cause.clone()).reason(&self.node));
            }
            found.insert(unit, Found { file, info });
        }
        Ok(found)
    }

    /// Applies actions in order. After a failure, the unit's later actions
    /// are skipped; a failed daemon-reload fails every unit written before it.
    async fn apply(
        &self,
        desired: &[Desired],
        actions: Vec<Action>,
        now: Instant,
    ) -> Result<(), ReconcileError> {
        let owner: HashMap<&str, &str> = desired
            .iter()
            .filter_map(|d| Some((d.unit()?, d.workload.id.as_str())))
            .collect();
        let mut failed: HashSet<String> = HashSet::new();
        let mut written: Vec<(String, String)> = Vec::new();
        // File changes tried, and done.
        let (mut tried, mut done) = (0usize, 0usize);
        let mut first_error = None;
        for action in actions {
            if action.unit().is_some_and(|u| failed.contains(u)) {
                continue;
            }
            if matches!(action, Action::DaemonReload) && tried > 0 && done == 0 {
                // Nothing changed on disk: a reload would read the same files.
                continue;
            }
            let file_change = matches!(action, Action::Write { .. } | Action::Delete { .. });
            let result = self.apply_one(&action).await;
            if file_change {
                tried += 1;
                done += usize::from(result.is_ok());
            }
            let workload_id = action.workload_id().map(str::to_string).or_else(|| {
                action
                    .unit()
                    .and_then(|u| owner.get(u))
                    .map(|s| s.to_string())
            });
            match (&action, result) {
                (Action::DaemonReload, Err(reason)) => {
                    warn!("{reason}");
                    for (unit, id) in written.drain(..) {
                        failed.insert(unit);
                        self.book().record_error(&id, reason.clone(), true);
                    }
                    first_error.get_or_insert(ReconcileError::Failed { reason });
                }
                (Action::ResetFailed { .. }, Err(reason)) => debug!("{reason}"),
                (_, Err(reason)) => {
                    first_error.get_or_insert(ReconcileError::Failed {
                        reason: reason.clone(),
                    });
                    let unit = action.unit().unwrap_or_default().to_string();
                    failed.insert(unit.clone());
                    match workload_id {
                        Some(id) => {
                            let start = matches!(
                                action,
                                Action::Start { .. }
                                    | Action::Restart { .. }
                                    | Action::Write { .. }
                            );
                            // The status says it, and `events_for` the event.
                            if !self.book().record_error(&id, reason.clone(), start) {
                                debug!(workload = %id, "{reason}");
                            }
                        }
                        None => warn!(unit = %unit, "{reason}"),
                    }
                }
                (_, Ok(())) => self.record(&action, &mut written, now),
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn record(&self, action: &Action, written: &mut Vec<(String, String)>, now: Instant) {
        match action {
            Action::Write {
                workload_id,
                unit,
                replaces,
                ..
            } => {
                written.push((unit.clone(), workload_id.clone()));
                if *replaces {
                    let message = format!("rewrote `{unit}` for a new spec; restarting it",);
                    info!(workload = %workload_id, "{message}");
                    self.emit(workload_id, "replaced", message);
                } else {
                    info!(workload = %workload_id, "wrote `{}`", self.files.path(unit).display());
                }
            }
            Action::Start { workload_id, unit } => {
                self.book().record_start(workload_id, now);
                info!(workload = %workload_id, "asked systemd to start `{unit}`");
            }
            Action::Restart { workload_id, unit } => {
                self.book().record_start(workload_id, now);
                info!(workload = %workload_id, "asked systemd to restart `{unit}`");
            }
            Action::Stop {
                workload_id: Some(id),
                unit,
            } => info!(workload = %id, "asked systemd to stop `{unit}`"),
            Action::Delete { unit } => {
                let message = format!("removed unit `{unit}`: its workload is not in the plan");
                info!("{message}");
                self.emit("", "removed", message);
            }
            Action::Enable { unit, .. } => debug!("enabled `{unit}`"),
            Action::Disable { unit, .. } => debug!("disabled `{unit}`"),
            Action::Stop { unit, .. } => debug!("stopped `{unit}`"),
            Action::DaemonReload => {
                written.clear();
                debug!("systemd reloaded its unit files");
            }
            Action::ResetFailed { .. } => {}
        }
    }

    async fn apply_one(&self, action: &Action) -> Result<(), String> {
        let node = &self.node;
        let sd = |r: Result<(), SystemdError>| r.map_err(|e| e.reason(node));
        match action {
            Action::Write { unit, content, .. } => self
                .files
                .write(unit, content)
                .await
                .map_err(|e| e.to_string()),
            Action::Delete { unit } => self.files.delete(unit).await.map_err(|e| e.to_string()),
            Action::DaemonReload => sd(self.systemd.daemon_reload().await),
            Action::Enable { unit, .. } => sd(self.systemd.enable(unit).await),
            Action::Disable { unit, .. } => sd(self.systemd.disable(unit).await),
            Action::Start { unit, .. } => sd(self.systemd.start(unit).await),
            Action::Restart { unit, .. } => sd(self.systemd.restart(unit).await),
            Action::Stop { unit, .. } => sd(self.systemd.stop(unit).await),
            Action::ResetFailed { unit } => sd(self.systemd.reset_failed(unit).await),
        }
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

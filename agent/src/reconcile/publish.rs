//! What the container reconciler reports: a status per desired workload
//! from the containers observed, the restart book and the probes, and
//! `healthy` / `unhealthy` events when an instance's health changes.

use std::collections::BTreeMap;
use std::time::SystemTime;

use convoy_proto::{Health, Workload, WorkloadState, WorkloadStatus};
use tracing::{info, warn};

use super::book::BACKOFF_START;
use super::decide::{keeper, restart_allowed};
use super::{unix_ms, Reconciler, Snapshot};
use crate::probe::{self, CheckView, Target};
use crate::runtime::{ContainerState, Observed, Runtime};

impl<R: Runtime> Reconciler<R> {
    pub(super) fn publish(&mut self, desired: &[Workload], observed: &[Observed]) {
        let keepers: Vec<(&Workload, Option<&Observed>)> = desired
            .iter()
            .map(|w| {
                let containers: Vec<&Observed> =
                    observed.iter().filter(|o| o.workload_id == w.id).collect();
                (w, keeper(w, &containers))
            })
            .collect();
        let targets = keepers
            .iter()
            .filter_map(|(w, k)| {
                let k = k.filter(|k| k.state == ContainerState::Running)?;
                Some(Target {
                    workload_id: w.id.clone(),
                    container_id: k.id.clone(),
                    started_at: k.started_at,
                    probes: w.probes.clone(),
                })
            })
            .collect();
        self.prober.sync(targets);
        if let Some(pools) = &self.ctx.drains {
            pools.set_outdated(serving_outdated(desired, observed));
        }
        let statuses: BTreeMap<String, WorkloadStatus> = keepers
            .iter()
            .map(|(w, k)| {
                let containers: Vec<&Observed> =
                    observed.iter().filter(|o| o.workload_id == w.id).collect();
                let mut status = self.status_of(w, &containers);
                let checks = k.map(|k| self.checks_of(w, k)).unwrap_or_default();
                let combined = probe::combine(&checks);
                status.health = combined.health as i32;
                status.failing_probe = combined.failing_probe;
                status.health_output = combined.output;
                self.health_events(&status, &checks);
                (w.id.clone(), status)
            })
            .collect();
        self.healths.retain(|id, _| statuses.contains_key(id));
        for (id, status) in &statuses {
            self.healths
                .insert(id.clone(), (status.container_id.clone(), health_of(status)));
        }
        self.send(statuses, u32::try_from(observed.len()).unwrap_or(u32::MAX));
        self.last = Some((desired.to_vec(), observed.to_vec()));
    }

    /// Publishes again from the last observation, with the probes' news.
    pub(super) fn republish(&mut self) {
        if let Some((desired, observed)) = self.last.take() {
            self.publish(&desired, &observed);
        }
    }

    /// The health checks of a running keeper: Docker's, then the probes.
    fn checks_of(&self, w: &Workload, k: &Observed) -> Vec<CheckView> {
        if k.state != ContainerState::Running {
            return Vec::new();
        }
        let mut checks: Vec<CheckView> = k
            .health
            .iter()
            .map(|h| CheckView {
                name: probe::DOCKER.to_string(),
                health: h.status,
                output: h.output.clone(),
            })
            .collect();
        if !w.probes.is_empty() {
            let views = self.prober.views(&w.id, &k.id);
            if views.is_empty() {
                // Just started: no probe has run yet.
                checks.extend(w.probes.iter().map(|p| CheckView {
                    name: probe::ProbeConfig::from_proto(p).name,
                    health: Health::Starting,
                    output: String::new(),
                }));
            } else {
                checks.extend(views);
            }
        }
        checks
    }

    /// Emits `unhealthy` when an instance turns unhealthy, `healthy` when it
    /// turns healthy from starting or unhealthy.
    fn health_events(&self, status: &WorkloadStatus, checks: &[CheckView]) {
        let now = health_of(status);
        let before = match self.healths.get(&status.id) {
            Some((container, health)) if *container == status.container_id => Some(*health),
            // Another container: its health starts anew.
            Some(_) => Some(Health::Starting),
            None => None,
        };
        if before == Some(now) {
            return;
        }
        let name = &status.container_name;
        match now {
            Health::Unhealthy => {
                let check = if status.failing_probe == probe::DOCKER {
                    "Docker's healthcheck".to_string()
                } else {
                    format!("probe `{}`", status.failing_probe)
                };
                let mut message = format!("`{name}` is unhealthy: {check} fails");
                if !status.health_output.is_empty() {
                    message.push_str(": ");
                    message.push_str(&status.health_output);
                }
                warn!(workload = %status.id, "{message}");
                self.ctx.emit(&status.id, "unhealthy", message);
            }
            Health::Healthy if before.is_some() => {
                let passing: Vec<String> = checks
                    .iter()
                    .map(|c| {
                        if c.output.is_empty() {
                            format!("`{}`", c.name)
                        } else {
                            format!("`{}`: {}", c.name, c.output)
                        }
                    })
                    .collect();
                let again = if before == Some(Health::Unhealthy) {
                    " again"
                } else {
                    ""
                };
                let message = format!("`{name}` is healthy{again}: {}", passing.join("; "));
                info!(workload = %status.id, "{message}");
                self.ctx.emit(&status.id, "healthy", message);
            }
            _ => {}
        }
    }

    pub(super) fn publish_unreachable(&self, desired: Vec<Workload>, reason: &str) {
        let statuses = desired
            .into_iter()
            .map(|w| {
                let status = WorkloadStatus {
                    id: w.id.clone(),
                    revision: w.revision,
                    spec_hash: w.spec_hash.clone(),
                    state: WorkloadState::Failed as i32,
                    reason: reason.to_string(),
                    restarts: self.ctx.book().restarts(&w.id),
                    ..WorkloadStatus::default()
                };
                (w.id, status)
            })
            .collect();
        let containers = self.snapshot.borrow().containers;
        self.send(statuses, containers);
    }

    /// Publishes, keeping `updated_unix_ms` of statuses that did not change.
    fn send(&self, mut statuses: BTreeMap<String, WorkloadStatus>, containers: u32) {
        let now = unix_ms(SystemTime::now());
        self.snapshot.send_if_modified(|current| {
            for (id, status) in statuses.iter_mut() {
                status.updated_unix_ms = match current.statuses.get(id) {
                    Some(old) if same_status(old, status) => old.updated_unix_ms,
                    _ => now,
                };
            }
            let next = Snapshot {
                statuses: std::mem::take(&mut statuses),
                containers,
            };
            if *current == next {
                false
            } else {
                *current = next;
                true
            }
        });
    }

    fn status_of(&self, w: &Workload, containers: &[&Observed]) -> WorkloadStatus {
        let (error, restarts, delay, waiting) = {
            let book = self.ctx.book();
            (
                book.error(&w.id).map(str::to_string),
                book.restarts(&w.id),
                book.delay(&w.id),
                book.waiting(&w.id).map(str::to_string),
            )
        };
        let mut status = WorkloadStatus {
            id: w.id.clone(),
            revision: w.revision,
            spec_hash: w.spec_hash.clone(),
            restarts,
            ..WorkloadStatus::default()
        };
        let set = |status: &mut WorkloadStatus, state: WorkloadState, reason: String| {
            status.state = state as i32;
            status.reason = reason;
        };
        let Some(k) = keeper(w, containers) else {
            match (error, waiting) {
                (Some(reason), _) => set(&mut status, WorkloadState::Failed, reason),
                (None, Some(reason)) => set(&mut status, WorkloadState::Pending, reason),
                (None, None) => set(
                    &mut status,
                    WorkloadState::Pending,
                    "waiting for its container to be created".to_string(),
                ),
            }
            return status;
        };
        status.container_id = k.id.clone();
        status.container_name = k.name.clone();
        match k.state {
            ContainerState::Running => set(&mut status, WorkloadState::Running, String::new()),
            ContainerState::Paused => {
                set(&mut status, WorkloadState::Running, "paused".to_string())
            }
            ContainerState::Restarting => set(
                &mut status,
                WorkloadState::Starting,
                "restarting".to_string(),
            ),
            ContainerState::Created => match error {
                Some(reason) => set(&mut status, WorkloadState::Failed, reason),
                None => set(
                    &mut status,
                    WorkloadState::Starting,
                    "created, not started yet".to_string(),
                ),
            },
            ContainerState::Exited | ContainerState::Dead | ContainerState::Removing => {
                let code = k.exit_code.unwrap_or(-1);
                status.exit_code = code;
                let how = if k.oom_killed {
                    format!("killed for lack of memory (exit code {code})")
                } else if k.error.is_empty() {
                    format!("exited with code {code}")
                } else {
                    format!("exited with code {code}: {}", k.error)
                };
                match (restart_allowed(w, k, restarts), error) {
                    (Ok(()), Some(reason)) => set(&mut status, WorkloadState::Failed, reason),
                    (Ok(()), None) => {
                        let delay = delay.unwrap_or(BACKOFF_START);
                        set(
                            &mut status,
                            WorkloadState::Exited,
                            format!("{how}; restarting (backoff {}s)", delay.as_secs()),
                        );
                    }
                    (Err(why), _) => {
                        set(&mut status, WorkloadState::Exited, format!("{how}; {why}"))
                    }
                }
            }
        }
        status
    }
}

fn health_of(status: &WorkloadStatus) -> Health {
    Health::try_from(status.health).unwrap_or(Health::Unspecified)
}

/// Equal but for `updated_unix_ms`.
fn same_status(a: &WorkloadStatus, b: &WorkloadStatus) -> bool {
    WorkloadStatus {
        updated_unix_ms: 0,
        ..a.clone()
    } == WorkloadStatus {
        updated_unix_ms: 0,
        ..b.clone()
    }
}

/// Running containers of an older spec of a desired workload whose Docker
/// healthcheck passes (or that have none): the proxy keeps them in their
/// pool until the reconciler drains them, so a replacement waiting for its
/// image takes no capacity away early.
fn serving_outdated(desired: &[Workload], observed: &[Observed]) -> Vec<crate::proxy::Outdated> {
    let mut out: Vec<crate::proxy::Outdated> = observed
        .iter()
        .filter(|o| o.state == ContainerState::Running)
        .filter(|o| {
            o.health
                .as_ref()
                .is_none_or(|h| h.status == Health::Healthy)
        })
        .filter(|o| {
            desired
                .iter()
                .any(|w| w.id == o.workload_id && w.spec_hash != o.spec_hash)
        })
        .map(|o| crate::proxy::Outdated {
            workload_id: o.workload_id.clone(),
            container_id: o.id.clone(),
            revision: o.revision,
        })
        .collect();
    out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    out
}

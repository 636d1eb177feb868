//! What the unit reconciler reports: a status per unit workload from what
//! was found and the book, with the journal of failed units, and events for
//! what changed since the last publish.

use std::collections::BTreeMap;
use std::time::SystemTime;

use convoy_proto::{Health, WorkloadStatus};
use tracing::{info, warn};

use super::book::Seen;
use super::decide::{Desired, Found, UnitKey};
use super::{status, UnitReconciler};
use crate::reconcile::unix_ms;
use crate::runtime::systemd::{Systemd, UnitInfo, JOURNAL_LINES};

impl<S: Systemd> UnitReconciler<S> {
    pub(super) fn unreachable_now(&mut self, desired: &[Desired], reason: &str) {
        if self.unreachable.as_deref() != Some(reason) {
            warn!("{reason}; retrying with backoff");
            self.unreachable = Some(reason.to_string());
        }
        let statuses = desired
            .iter()
            .map(|d| {
                let mut s = status::base(&d.workload);
                s.state = convoy_proto::WorkloadState::Failed as i32;
                s.reason = reason.to_string();
                (d.workload.id.clone(), s)
            })
            .collect();
        self.send(statuses);
    }

    /// Statuses of the desired units from what was found, with the journal
    /// of failed ones; events for what changed since the last publish.
    /// A workload in `hold` (work is due on it) that has no error keeps
    /// the status last published: what was found predates its actions (a
    /// unit with its old file still running is not yet the new spec).
    pub(super) async fn publish(
        &mut self,
        desired: &[Desired],
        found: &BTreeMap<String, Found>,
        hold: &[UnitKey],
    ) {
        let mut statuses = BTreeMap::new();
        for d in desired {
            let id = d.workload.id.clone();
            let held = hold.iter().any(|k| *k == UnitKey::Workload(id.clone()))
                && self.ctx.book().error(&id).is_none();
            if held {
                if let Some(old) = self.statuses.borrow().get(&id) {
                    statuses.insert(id, old.clone());
                }
                continue;
            }
            let found = d.unit().and_then(|u| found.get(u));
            let info = found.and_then(|f| f.info.as_ref().ok());
            if let (Ok(want), Some(info)) = (&d.want, info) {
                if status::as_wanted(want, info) {
                    self.ctx.book().settled(&id, info.is_up());
                }
            }
            let journal = match info.filter(|i| status::failing(i)) {
                Some(info) => self.journal(&id, info).await,
                None => Vec::new(),
            };
            let error = self.ctx.book().error(&id).map(str::to_string);
            let status = status::status_of(d, found, error.as_deref(), journal, &self.ctx.node);
            self.events_for(&status);
            statuses.insert(id, status);
        }
        self.send(statuses);
    }

    async fn journal(&self, id: &str, info: &UnitInfo) -> Vec<String> {
        let key = info.state_change_usec;
        let cached = self
            .ctx
            .book()
            .entries
            .get(id)
            .and_then(|e| e.journal.clone())
            .filter(|(k, _)| *k == key);
        if let Some((_, lines)) = cached {
            return lines;
        }
        let lines = self
            .ctx
            .systemd
            .journal_tail(&info.name, JOURNAL_LINES)
            .await;
        if let Some(entry) = self.ctx.book().entries.get_mut(id) {
            entry.journal = Some((key, lines.clone()));
        }
        lines
    }

    /// `failed` when the workload turns failed (or fails for a new
    /// reason), `restarted` when systemd restarted it, `healthy` when it
    /// becomes active.
    fn events_for(&self, status: &WorkloadStatus) {
        let unit = status.unit.as_ref();
        let failed = status.state == convoy_proto::WorkloadState::Failed as i32;
        let now = Seen {
            health: Health::try_from(status.health).unwrap_or(Health::Unspecified),
            restarts: status.restarts,
            failure: failed.then(|| status.reason.clone()),
        };
        let before = {
            let mut book = self.ctx.book();
            let Some(entry) = book.entries.get_mut(&status.id) else {
                return;
            };
            entry.seen.replace(now.clone())
        };
        let name = unit
            .map(|u| u.unit_name.clone())
            .unwrap_or_else(|| status.id.clone());
        let mut out = Vec::new();
        if let Some(reason) = &now.failure {
            if before.as_ref().and_then(|b| b.failure.as_ref()) != Some(reason) {
                out.push(("failed", reason.clone()));
            }
        }
        if let Some(before) = before {
            if now.restarts > before.restarts {
                out.push((
                    "restarted",
                    format!("systemd restarted `{name}` (restart {})", now.restarts),
                ));
            }
            if now.health == Health::Healthy && before.health != Health::Healthy {
                let again = if before.health == Health::Unhealthy {
                    " again"
                } else {
                    ""
                };
                out.push(("healthy", format!("`{name}` is active{again}")));
            }
        }
        for (kind, message) in out {
            if kind == "failed" {
                warn!(workload = %status.id, "{message}");
            } else {
                info!(workload = %status.id, "{message}");
            }
            self.ctx.emit(&status.id, kind, message);
        }
    }

    /// Publishes, keeping `updated_unix_ms` of statuses that did not change.
    pub(super) fn send(&self, mut statuses: BTreeMap<String, WorkloadStatus>) {
        let now = unix_ms(SystemTime::now());
        self.statuses.send_if_modified(|current| {
            for (id, status) in statuses.iter_mut() {
                status.updated_unix_ms = match current.get(id) {
                    Some(old) if status::same(old, status) => old.updated_unix_ms,
                    _ => now,
                };
            }
            if *current == statuses {
                false
            } else {
                *current = std::mem::take(&mut statuses);
                true
            }
        });
    }
}

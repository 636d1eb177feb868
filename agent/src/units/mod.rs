//! Makes the node's systemd units match its plan, the way `reconcile` does
//! for containers: a pure `decide` from the plan's unit workloads and what
//! is freshly found (unit files on disk, unit state from systemd's D-Bus
//! API) to ordered actions, and a loop that applies them one pass at a time,
//! woken by PropertiesChanged signals, with a slow resync as the backstop.
//!
//! Written units: a new one is written, systemd reloaded, enabled and
//! started; a changed one rewritten, reloaded and restarted; one that left
//! the plan stopped, disabled, deleted and systemd reloaded. After that
//! systemd's own `Restart=` keeps it up. Adopted units are kept running or
//! stopped, enabled or disabled, and their files are never touched. A unit
//! file without Convoy's marker is never modified, stopped or deleted.

pub mod file;
pub mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use convoy_proto::{workload, Event, Health, NodePlan, Workload, WorkloadStatus};
use futures::StreamExt;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::reconcile::{backoff, unix_ms};
use crate::runtime::systemd::{Systemd, SystemdError, UnitInfo, JOURNAL_LINES};
use file::{OnDisk, UnitFiles, Want};

/// The backstop: a full pass at least this often, signals or not.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How soon to try again while systemd is unreachable.
const UNREACHABLE_RETRY: Duration = Duration::from_secs(5);
/// Signals come in bursts (one per property change): wait this long after
/// the first before a pass.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Where the unit reconciler writes unit files.
#[derive(Clone, Debug)]
pub struct UnitsConfig {
    /// `/etc/systemd/system` unless a test says otherwise.
    pub unit_dir: PathBuf,
}

impl Default for UnitsConfig {
    fn default() -> Self {
        Self {
            unit_dir: PathBuf::from(file::DEFAULT_UNIT_DIR),
        }
    }
}

/// A unit workload of the plan, checked: `Err` holds why it is refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub workload: Workload,
    pub want: Result<Want, String>,
}

impl Desired {
    pub fn of(workload: &Workload) -> Self {
        Self {
            workload: workload.clone(),
            want: file::want_of(workload).map_err(|e| e.to_string()),
        }
    }

    fn unit(&self) -> Option<&str> {
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
    fn unit(&self) -> Option<&str> {
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

    fn workload_id(&self) -> Option<&str> {
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

/// Per workload: start backoff, the last error, and what was last
/// published (for events).
#[derive(Debug, Default)]
pub struct UnitBook {
    entries: HashMap<String, Entry>,
}

#[derive(Clone, Debug, Default)]
struct Entry {
    spec_hash: String,
    /// Starts that did not bring the unit up yet: the backoff exponent.
    failures: u32,
    /// No start before this.
    not_before: Option<Instant>,
    /// A start or restart was asked for and did not reach systemd.
    pending_start: bool,
    /// Why the last action failed; cleared once the unit is as wanted.
    error: Option<String>,
    /// The journal tail of the failure it was read for
    /// (StateChangeTimestamp).
    journal: Option<(u64, Vec<String>)>,
    /// What the last publish said, for events.
    seen: Option<Seen>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    health: Health,
    restarts: u32,
    /// The reason, while failed.
    failure: Option<String>,
}

impl UnitBook {
    /// Forgets workloads that left the plan and resets those with a new spec.
    pub fn observe(&mut self, desired: &[Desired]) {
        let ids: HashSet<&str> = desired.iter().map(|d| d.workload.id.as_str()).collect();
        self.entries.retain(|id, _| ids.contains(id.as_str()));
        for d in desired {
            let entry = self.entries.entry(d.workload.id.clone()).or_default();
            if entry.spec_hash != d.workload.spec_hash {
                *entry = Entry {
                    spec_hash: d.workload.spec_hash.clone(),
                    seen: entry.seen.take(),
                    ..Entry::default()
                };
            }
        }
    }

    fn blocked(&self, workload_id: &str, now: Instant) -> bool {
        self.entries
            .get(workload_id)
            .and_then(|e| e.not_before)
            .is_some_and(|t| t > now)
    }

    fn pending_start(&self, workload_id: &str) -> bool {
        self.entries
            .get(workload_id)
            .is_some_and(|e| e.pending_start)
    }

    pub fn error(&self, workload_id: &str) -> Option<&str> {
        self.entries
            .get(workload_id)
            .and_then(|e| e.error.as_deref())
    }

    /// A start or restart reached systemd: the next one waits a backoff
    /// unless the unit comes up (`settled`).
    fn record_start(&mut self, workload_id: &str, now: Instant) {
        let entry = self.entries.entry(workload_id.to_string()).or_default();
        entry.not_before = Some(now + backoff(entry.failures));
        entry.failures = entry.failures.saturating_add(1);
        entry.pending_start = false;
    }

    /// Records a failed action; returns whether the reason is new.
    fn record_error(&mut self, workload_id: &str, reason: String, start: bool) -> bool {
        let entry = self.entries.entry(workload_id.to_string()).or_default();
        if start {
            entry.pending_start = true;
        }
        let new = entry.error.as_deref() != Some(reason.as_str());
        entry.error = Some(reason);
        new
    }

    /// The unit is as wanted: errors and backoff are over.
    fn settled(&mut self, workload_id: &str, up: bool) {
        if let Some(entry) = self.entries.get_mut(workload_id) {
            entry.error = None;
            if up {
                entry.failures = 0;
                entry.not_before = None;
            }
        }
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| e.not_before)
            .filter(|t| *t > now)
            .min()
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

/// The plan's unit workloads, without empty or repeated ids (first wins).
pub fn desired_of(plan: &NodePlan) -> Vec<Desired> {
    let mut seen = HashSet::new();
    plan.workloads
        .iter()
        .filter(|w| matches!(w.runtime, Some(workload::Runtime::Unit(_))))
        .filter(|w| !w.id.is_empty() && seen.insert(w.id.clone()))
        .map(Desired::of)
        .collect()
}

/// Applies the plan's unit workloads to systemd. One pass at a time.
pub struct UnitReconciler<S: Systemd> {
    systemd: Arc<S>,
    node: String,
    files: UnitFiles,
    book: UnitBook,
    statuses: watch::Sender<BTreeMap<String, WorkloadStatus>>,
    events: broadcast::Sender<Event>,
    /// The units the signal watcher wakes the loop for.
    interest: watch::Sender<BTreeSet<String>>,
    /// The last "systemd unreachable" reason logged, so it is logged once.
    unreachable: Option<String>,
}

impl<S: Systemd> UnitReconciler<S> {
    pub fn new(
        systemd: Arc<S>,
        node: String,
        config: UnitsConfig,
        statuses: watch::Sender<BTreeMap<String, WorkloadStatus>>,
        events: broadcast::Sender<Event>,
    ) -> Self {
        let UnitsConfig { unit_dir } = config;
        Self {
            systemd,
            node,
            files: UnitFiles::new(unit_dir),
            book: UnitBook::default(),
            statuses,
            events,
            interest: watch::channel(BTreeSet::new()).0,
            unreachable: None,
        }
    }

    /// Runs passes until `shutdown`: on a new plan, a change systemd
    /// signals for one of the units, the next backoff deadline, and every
    /// `RESYNC` at least. Without a plan nothing is touched.
    pub async fn run(
        mut self,
        mut plan: watch::Receiver<Option<Arc<NodePlan>>>,
        shutdown: CancellationToken,
    ) {
        let wake = Arc::new(Notify::new());
        let watcher = tokio::spawn(
            watch_changes(
                self.systemd.clone(),
                self.interest.subscribe(),
                wake.clone(),
                shutdown.clone(),
            )
            .instrument(info_span!("systemd_signals")),
        );
        let mut plan_open = true;
        loop {
            let current = plan.borrow_and_update().clone();
            let now = Instant::now();
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = self.pass(current.as_deref(), now) => next,
            };
            let now = Instant::now();
            let deadline = next.map_or(now + RESYNC, |t| t.min(now + RESYNC));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = plan.changed(), if plan_open => {
                    if changed.is_err() {
                        plan_open = false;
                    }
                }
                _ = wake.notified() => {
                    tokio::time::sleep(DEBOUNCE).await;
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
        if let Err(e) = watcher.await {
            warn!("systemd signal watcher ended badly: {e}");
        }
        debug!("unit reconciler stopped");
    }

    /// One reconcile: find, decide, apply, find again, report. Returns
    /// when the next pass is due at the latest.
    pub async fn pass(&mut self, plan: Option<&NodePlan>, now: Instant) -> Option<Instant> {
        let Some(plan) = plan else {
            // No plan known: touch nothing, report nothing.
            self.publish(&[], &BTreeMap::new()).await;
            return None;
        };
        let desired = desired_of(plan);
        self.book.observe(&desired);
        let orphans = self.orphans(&desired).await;
        let interest: BTreeSet<String> = desired
            .iter()
            .filter_map(|d| d.unit().map(str::to_string))
            .chain(orphans.iter().cloned())
            .collect();
        self.interest.send_if_modified(|current| {
            let changed = *current != interest;
            *current = interest.clone();
            changed
        });
        if interest.is_empty() {
            // Nothing to ask systemd: hosts without it are fine.
            self.publish(&desired, &BTreeMap::new()).await;
            return None;
        }

        let found = match self.find(&desired, &orphans).await {
            Ok(found) => found,
            Err(reason) => return Some(self.unreachable_now(&desired, reason, now)),
        };
        if self.unreachable.take().is_some() {
            info!("systemd is reachable again");
        }
        let actions = decide(&desired, &found, &orphans, &self.book, now);
        if actions.is_empty() {
            self.publish(&desired, &found).await;
            return self.book.next_deadline(now);
        }
        self.apply(&desired, actions, now).await;
        let found = match self.find(&desired, &orphans).await {
            Ok(found) => found,
            Err(reason) => return Some(self.unreachable_now(&desired, reason, now)),
        };
        self.publish(&desired, &found).await;
        let now = Instant::now().max(now);
        Some(
            self.book
                .next_deadline(now)
                .map_or(now + RESYNC, |t| t.min(now + RESYNC)),
        )
    }

    /// Unit files of Convoy's that no desired unit names (nor an adopted
    /// one: Convoy never deletes what it adopts).
    async fn orphans(&self, desired: &[Desired]) -> Vec<String> {
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
    async fn find(
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

    fn unreachable_now(&mut self, desired: &[Desired], reason: String, now: Instant) -> Instant {
        if self.unreachable.as_deref() != Some(reason.as_str()) {
            warn!("{reason}; retrying every {}s", UNREACHABLE_RETRY.as_secs());
            self.unreachable = Some(reason.clone());
        }
        let statuses = desired
            .iter()
            .map(|d| {
                let mut s = status::base(&d.workload);
                s.state = convoy_proto::WorkloadState::Failed as i32;
                s.reason = reason.clone();
                (d.workload.id.clone(), s)
            })
            .collect();
        self.send(statuses);
        now + UNREACHABLE_RETRY
    }

    /// Applies actions in order. After a failure, the unit's later actions
    /// are skipped; a failed daemon-reload fails every unit written before it.
    async fn apply(&mut self, desired: &[Desired], actions: Vec<Action>, now: Instant) {
        let owner: HashMap<&str, &str> = desired
            .iter()
            .filter_map(|d| Some((d.unit()?, d.workload.id.as_str())))
            .collect();
        let mut failed: HashSet<String> = HashSet::new();
        let mut written: Vec<(String, String)> = Vec::new();
        // File changes tried, and done.
        let (mut tried, mut done) = (0usize, 0usize);
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
                        self.book.record_error(&id, reason.clone(), true);
                    }
                }
                (Action::ResetFailed { .. }, Err(reason)) => debug!("{reason}"),
                (_, Err(reason)) => {
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
                            if !self.book.record_error(&id, reason.clone(), start) {
                                debug!(workload = %id, "{reason}");
                            }
                        }
                        None => warn!(unit = %unit, "{reason}"),
                    }
                }
                (_, Ok(())) => self.record(&action, &mut written, now),
            }
        }
    }

    fn record(&mut self, action: &Action, written: &mut Vec<(String, String)>, now: Instant) {
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
                self.book.record_start(workload_id, now);
                info!(workload = %workload_id, "asked systemd to start `{unit}`");
            }
            Action::Restart { workload_id, unit } => {
                self.book.record_start(workload_id, now);
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

    /// Statuses of the desired units from what was found, with the journal
    /// of failed ones; events for what changed since the last publish.
    async fn publish(&mut self, desired: &[Desired], found: &BTreeMap<String, Found>) {
        let mut statuses = BTreeMap::new();
        for d in desired {
            let id = d.workload.id.clone();
            let found = d.unit().and_then(|u| found.get(u));
            let info = found.and_then(|f| f.info.as_ref().ok());
            if let (Ok(want), Some(info)) = (&d.want, info) {
                if status::as_wanted(want, info) {
                    self.book.settled(&id, info.is_up());
                }
            }
            let journal = match info.filter(|i| status::failing(i)) {
                Some(info) => self.journal(&id, info).await,
                None => Vec::new(),
            };
            let status = status::status_of(d, found, self.book.error(&id), journal, &self.node);
            self.events_for(&status);
            statuses.insert(id, status);
        }
        self.send(statuses);
    }

    async fn journal(&mut self, id: &str, info: &UnitInfo) -> Vec<String> {
        let key = info.state_change_usec;
        if let Some((k, lines)) = self.book.entries.get(id).and_then(|e| e.journal.as_ref()) {
            if *k == key {
                return lines.clone();
            }
        }
        let lines = self.systemd.journal_tail(&info.name, JOURNAL_LINES).await;
        if let Some(entry) = self.book.entries.get_mut(id) {
            entry.journal = Some((key, lines.clone()));
        }
        lines
    }

    /// `failed` when the workload turns failed (or fails for a new
    /// reason), `restarted` when systemd restarted it, `healthy` when it
    /// becomes active.
    fn events_for(&mut self, status: &WorkloadStatus) {
        let unit = status.unit.as_ref();
        let failed = status.state == convoy_proto::WorkloadState::Failed as i32;
        let now = Seen {
            health: Health::try_from(status.health).unwrap_or(Health::Unspecified),
            restarts: status.restarts,
            failure: failed.then(|| status.reason.clone()),
        };
        let Some(entry) = self.book.entries.get_mut(&status.id) else {
            return;
        };
        let before = entry.seen.replace(now.clone());
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
            self.emit(&status.id, kind, message);
        }
    }

    fn emit(&self, workload_id: &str, kind: &str, message: String) {
        // No receiver (no session right now) is fine: statuses carry the state.
        let _ = self.events.send(Event {
            unix_ms: unix_ms(SystemTime::now()),
            workload_id: workload_id.to_string(),
            kind: kind.to_string(),
            message,
        });
    }

    /// Publishes, keeping `updated_unix_ms` of statuses that did not change.
    fn send(&self, mut statuses: BTreeMap<String, WorkloadStatus>) {
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

/// Wakes the reconciler when systemd signals a change of a unit it cares
/// about; subscribes again (with backoff) whenever the stream ends. Does not
/// touch the bus while there is no unit to care about.
async fn watch_changes<S: Systemd>(
    systemd: Arc<S>,
    mut interest: watch::Receiver<BTreeSet<String>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        while interest.borrow_and_update().is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = interest.changed() => if changed.is_err() { return },
            }
        }
        match systemd.changes().await {
            Ok(mut stream) => {
                let since = Instant::now();
                // Something may have changed while nobody listened.
                wake.notify_one();
                loop {
                    let unit = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        unit = stream.next() => unit,
                    };
                    match unit {
                        Some(unit) if interest.borrow().contains(&unit) => {
                            debug!(unit = %unit, "unit changed");
                            wake.notify_one();
                        }
                        Some(_) => {}
                        None => {
                            debug!("systemd signal stream ended");
                            break;
                        }
                    }
                }
                if since.elapsed() >= Duration::from_secs(60) {
                    failures = 0;
                }
            }
            Err(e) => debug!("cannot watch systemd signals: {e}"),
        }
        let delay = backoff(failures).min(Duration::from_secs(30));
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests;

//! The probe tasks: one per probed container, each running its probes on
//! their own schedules and sending their changes to the reconciler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use convoy_proto::{Health, Probe};
use tokio::sync::mpsc;
use tracing::{debug, info_span, Instrument};

use super::check::run_check;
use super::config::ProbeConfig;
use super::state::{CheckView, ProbeState};
use crate::runtime::Runtime;

/// A running container to probe.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub workload_id: String,
    pub container_id: String,
    /// When the container (last) started; a restart starts the probes anew.
    pub started_at: Option<SystemTime>,
    pub probes: Vec<Probe>,
}

/// A probe whose state changed.
#[derive(Clone, Debug)]
pub struct Update {
    /// The task it came from: updates of a stopped task are dropped.
    serial: u64,
    index: usize,
    health: Health,
    output: String,
}

/// One probed container: its task and what its probes last said.
struct Instance {
    serial: u64,
    target: Target,
    names: Vec<String>,
    states: Vec<(Health, String)>,
    _task: AbortOnDrop,
}

/// Aborts the task when dropped: a removed instance's probes stop with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the probes of every running instance that has any, one task per
/// container; dropping it stops them all.
pub struct Prober<R: Runtime> {
    runtime: Arc<R>,
    instances: HashMap<String, Instance>,
    tx: mpsc::UnboundedSender<Update>,
    rx: mpsc::UnboundedReceiver<Update>,
    next_serial: u64,
}

impl<R: Runtime> Prober<R> {
    pub fn new(runtime: Arc<R>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Prober {
            runtime,
            instances: HashMap::new(),
            tx,
            rx,
            next_serial: 0,
        }
    }

    /// Makes the running tasks match `targets`: starts the new ones, stops
    /// those of containers that are gone, stopped or restarted.
    pub fn sync(&mut self, targets: Vec<Target>) {
        let mut wanted: HashMap<String, Target> = targets
            .into_iter()
            .filter(|t| !t.probes.is_empty())
            .map(|t| (t.workload_id.clone(), t))
            .collect();
        self.instances
            .retain(|id, instance| wanted.get(id) == Some(&instance.target));
        for (id, target) in wanted.drain() {
            if self.instances.contains_key(&id) {
                continue;
            }
            self.next_serial += 1;
            let serial = self.next_serial;
            let configs: Vec<ProbeConfig> =
                target.probes.iter().map(ProbeConfig::from_proto).collect();
            let names = configs.iter().map(|c| c.name.clone()).collect();
            let states = vec![(Health::Starting, String::new()); configs.len()];
            let task = tokio::spawn(
                watch(
                    self.runtime.clone(),
                    target.container_id.clone(),
                    target.started_at,
                    configs,
                    serial,
                    self.tx.clone(),
                )
                .instrument(info_span!("probes", workload = %id)),
            );
            debug!(workload = %id, container = %target.container_id, "probing");
            self.instances.insert(
                id,
                Instance {
                    serial,
                    target,
                    names,
                    states,
                    _task: AbortOnDrop(task),
                },
            );
        }
    }

    /// The next probe update; never returns while there is none.
    pub async fn next(&mut self) -> Update {
        match self.rx.recv().await {
            Some(update) => update,
            // Never: `self` holds a sender.
            None => std::future::pending().await,
        }
    }

    /// Takes in an update; returns whether it changed anything.
    pub fn apply(&mut self, update: Update) -> bool {
        let Some(instance) = self
            .instances
            .values_mut()
            .find(|i| i.serial == update.serial)
        else {
            return false;
        };
        let Some(state) = instance.states.get_mut(update.index) else {
            return false;
        };
        let next = (update.health, update.output);
        if *state == next {
            return false;
        }
        *state = next;
        true
    }

    /// What the probes of `workload_id` last said, while they run against
    /// `container_id`; empty when they do not.
    pub fn views(&self, workload_id: &str, container_id: &str) -> Vec<CheckView> {
        match self.instances.get(workload_id) {
            Some(i) if i.target.container_id == container_id => i
                .names
                .iter()
                .zip(&i.states)
                .map(|(name, (health, output))| CheckView {
                    name: name.clone(),
                    health: *health,
                    output: output.clone(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Runs every probe of one container on its own schedule until aborted.
async fn watch<R: Runtime>(
    runtime: Arc<R>,
    container_id: String,
    started_at: Option<SystemTime>,
    configs: Vec<ProbeConfig>,
    serial: u64,
    tx: mpsc::UnboundedSender<Update>,
) {
    let loops = configs.into_iter().enumerate().map(|(index, config)| {
        let runtime = runtime.clone();
        let container_id = container_id.clone();
        let tx = tx.clone();
        async move {
            let mut state = ProbeState::default();
            let mut address = None;
            loop {
                let began = Instant::now();
                let run = run_check(runtime.as_ref(), &container_id, &config, &mut address).await;
                let since_start = started_at
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .unwrap_or_default();
                let before = (state.health, state.output.clone());
                state.record(&config, run.passed, run.output, since_start);
                if (state.health, &state.output) != (before.0, &before.1) {
                    let update = Update {
                        serial,
                        index,
                        health: state.health,
                        output: state.output.clone(),
                    };
                    if tx.send(update).is_err() {
                        return;
                    }
                }
                tokio::time::sleep_until((began + config.interval).into()).await;
            }
        }
    });
    futures::future::join_all(loops).await;
}

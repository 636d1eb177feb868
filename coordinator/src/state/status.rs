//! Service status and nodes, read from desired and live state into the
//! views of `view.rs`.

use super::*;

impl Coordinator {
    pub async fn status(&self, service: &str, env: &str) -> StatusView {
        let desired = self.desired.lock().await;
        let live = self.live();
        // Node views, made only if some instance waits for a node.
        let mut views: Option<Vec<PlacementNode>> = None;
        let mut services = Vec::new();
        for ((senv, name), rec) in &desired.services {
            if rec.deleted
                || (!service.is_empty() && service != name)
                || (!env.is_empty() && env != senv)
            {
                continue;
            }
            let hash = rec.spec.spec_hash();
            let mut instances = Vec::new();
            let mut running = 0;
            // Indexes (in `instances`) of running instances of this spec.
            let mut current = Vec::new();
            let mut pending = String::new();
            if rec.assignments.values().any(Option::is_none) {
                let views = views.get_or_insert_with(|| {
                    let connected: HashMap<String, bool> = live
                        .nodes
                        .iter()
                        .map(|(n, l)| (n.clone(), l.ready()))
                        .collect();
                    node_views(&desired, &connected)
                });
                let nodes = candidates(views);
                // What is left with every placed instance counted, this
                // service's own included: the room its pending ones lack.
                let free = free_for(&desired, &nodes, &rec.spec, ("", ""));
                pending = pending_reason(&rec.spec, senv, &nodes, &rec.assignments, free.as_ref());
            }
            let mut swarm_info = None;
            let mut desired_count = rec.assignments.len() as u32;
            if let Some(cluster) = rec.spec.swarm_cluster() {
                let driver = rec.assignments.get(&1).cloned().flatten();
                let node_live = driver.as_ref().and_then(|n| live.nodes.get(n));
                let connected = node_live.is_some_and(NodeLive::ready);
                let id = workload_id(senv, name, 1);
                let reported = node_live.and_then(|l| l.workloads.get(&id));
                let view = swarm_view(SwarmView {
                    id: &id,
                    rec,
                    driver: driver.as_deref(),
                    connected,
                    reported,
                    pending: &pending,
                });
                running = view.running;
                current = view.current;
                instances = view.instances;
                desired_count = view.desired;
                swarm_info = Some(SwarmServiceView {
                    cluster: cluster.to_string(),
                    driver: driver.unwrap_or_default(),
                    driver_connected: connected,
                    update_state: reported
                        .map(|r| r.swarm_update_state.clone())
                        .unwrap_or_default(),
                    update_message: reported
                        .map(|r| r.swarm_update_message.clone())
                        .unwrap_or_default(),
                    service_name: plans::swarm_service_name(senv, name),
                });
            }
            for (index, node) in rec.assignments.iter().filter(|_| rec.spec.swarm.is_none()) {
                let id = workload_id(senv, name, *index);
                let removed = node
                    .as_ref()
                    .and_then(|n| desired.nodes.get(n))
                    .is_some_and(|n| n.removed_unix_ms != 0);
                let node_live = node.as_ref().and_then(|n| live.nodes.get(n));
                let connected = node_live.is_some_and(NodeLive::ready);
                let reported = node_live.and_then(|l| l.workloads.get(&id));
                let mut inst = InstanceStatusView {
                    id: id.clone(),
                    index: *index,
                    node: node.clone().unwrap_or_default(),
                    node_connected: connected,
                    revision: rec.revision,
                    state: InstanceState::Pending,
                    reason: match node {
                        None => pending.clone(),
                        Some(n) => format!("waiting for node `{n}` to report"),
                    },
                    ..Default::default()
                };
                if let Some(r) = reported {
                    inst.revision = r.revision;
                    inst.state = r.state;
                    inst.reason = r.reason.clone();
                    inst.restarts = r.restarts;
                    inst.container_id = r.container_id.clone();
                    inst.container_name = r.container_name.clone();
                    inst.updated_unix_ms = r.updated_unix_ms;
                    inst.health = r.health;
                    inst.health_output = r.health_output.clone();
                    inst.failing_probe = r.failing_probe.clone();
                    inst.exit_code = r.exit_code;
                    inst.journal_tail = r.journal_tail.clone();
                    if r.state == InstanceState::Running && r.spec_hash == hash {
                        running += 1;
                        current.push(instances.len());
                    }
                }
                if removed {
                    inst.state = InstanceState::Lost;
                    inst.reason =
                        format!("node `{}` was removed", node.as_deref().unwrap_or_default());
                }
                instances.push(inst);
            }
            // Checks come from the spec or from the image's own HEALTHCHECK,
            // so whether there are any is read from what agents report.
            let has_checks =
                spec_has_checks(&rec.spec) || instances.iter().any(|i| i.health != Health::None);
            let healthy = current
                .iter()
                .filter(|&&i| {
                    let h = instances[i].health;
                    h == Health::Healthy || (!has_checks && h == Health::None)
                })
                .count() as u32;
            services.push(ServiceView {
                name: name.clone(),
                env: senv.clone(),
                revision: rec.revision,
                desired: desired_count,
                running,
                instances,
                updated_unix_ms: rec.updated_unix_ms,
                image: rec.spec.image().to_string(),
                healthy,
                has_checks,
                rollout: rec
                    .rollout
                    .as_ref()
                    .map(|r| rollout_view(r, rec.assignments.len())),
                deploy_labels: rec.spec.deploy.labels.clone(),
                swarm: swarm_info,
            });
        }
        StatusView { services }
    }

    pub async fn nodes(&self) -> NodesView {
        let desired = self.desired.lock().await;
        let live = self.live();
        let mut counts: HashMap<&str, u32> = HashMap::new();
        for rec in desired.services.values() {
            for node in rec.assignments.values().flatten() {
                *counts.entry(node.as_str()).or_default() += 1;
            }
        }
        let mut nodes = desired
            .nodes
            .values()
            .map(|rec| {
                let l = live.nodes.get(&rec.name);
                let session = l.and_then(|l| l.session.as_ref());
                NodeView {
                    name: rec.name.clone(),
                    state: if rec.removed_unix_ms != 0 {
                        NodeState::Removed
                    } else if l.is_some_and(NodeLive::ready) {
                        NodeState::Ready
                    } else {
                        NodeState::Lost
                    },
                    facts: rec.facts.clone(),
                    agent_version: rec.agent_version.clone(),
                    connected_since_unix_ms: session
                        .map(|s| s.connected_since_unix_ms)
                        .unwrap_or(0),
                    last_heartbeat_unix_ms: l.map(|l| l.last_heartbeat_unix_ms).unwrap_or(0),
                    plan_generation: desired
                        .plans
                        .get(&rec.name)
                        .map(|p| p.generation)
                        .unwrap_or(0),
                    acked_generation: l.map(|l| l.acked_generation).unwrap_or(0),
                    workloads: counts.get(rec.name.as_str()).copied().unwrap_or(0),
                    metrics: l.and_then(|l| l.metrics.clone()),
                    address: session.map(|s| s.address.clone()).unwrap_or_default(),
                    certificate_expires_unix_ms: rec.certificate_expires_unix_ms,
                    cordoned: rec.cordoned,
                    draining: rec.draining,
                    drained: rec.drained,
                    drain_blocked: Vec::new(),
                    drain_waiting: Vec::new(),
                }
            })
            .collect::<Vec<_>>();
        drop(live);
        for n in nodes.iter_mut().filter(|n| n.draining) {
            (n.drain_blocked, n.drain_waiting) = self.drain_notes(&n.name);
        }
        // Copied only for the nodes in a swarm (the others share the record's).
        crate::swarm::fill_worker_clusters(
            nodes
                .iter_mut()
                .filter(|n| n.facts.swarm.is_some())
                .filter_map(|n| Arc::make_mut(&mut n.facts).swarm.as_mut()),
        );
        NodesView { nodes }
    }
}

pub fn rollout_view(r: &Rollout, total: usize) -> RolloutView {
    RolloutView {
        from_revision: r.from_revision,
        to_revision: r.to_revision,
        state: r.state,
        strategy: r.policy.strategy,
        updated: r.switched.len() as u32,
        healthy: r.done.len() as u32,
        failed: r.failed.len() as u32,
        total: total as u32,
        reason: r.reason.clone(),
        started_unix_ms: r.started_unix_ms,
        updated_unix_ms: r.updated_unix_ms,
        is_rollback: r.is_rollback,
        promoted: r.promoted,
        summary: rollout::describe(r, total),
    }
}

/// Whether the spec itself asks for checks (Docker's healthcheck).
pub(super) fn spec_has_checks(spec: &ServiceSpec) -> bool {
    !spec.probes.is_empty()
        || spec
            .container_spec()
            .healthcheck
            .is_some_and(|h| !h.disable && h.test.first().is_some_and(|t| t != "NONE"))
}

/// What [`swarm_view`] is given: a Swarm service's record, its driver and
/// the driver's last report of it.
struct SwarmView<'a> {
    id: &'a str,
    rec: &'a ServiceRecord,
    driver: Option<&'a str>,
    connected: bool,
    reported: Option<&'a crate::report::WorkloadReport>,
    /// Why it has no driver, when it has none.
    pending: &'a str,
}

/// A Swarm service's instances as `status` shows them: one per task slot
/// of the driver's last report.
struct SwarmInstances {
    instances: Vec<InstanceStatusView>,
    running: u32,
    /// Indexes (in `instances`) of running tasks of the current revision.
    current: Vec<usize>,
    desired: u32,
}

/// One instance per task slot (index: the slot; a global service's tasks
/// numbered from 1 in the report's order), its node the Swarm node's
/// hostname; while no report has come, one instance saying why. When the
/// driver's agent is away, the last report stays, each reason saying the
/// driver is unreachable (Swarm keeps the tasks running without it).
fn swarm_view(v: SwarmView<'_>) -> SwarmInstances {
    let SwarmView {
        id,
        rec,
        driver,
        connected,
        reported,
        pending,
    } = v;
    let replicas = if rec.spec.is_global() {
        None
    } else {
        Some(rec.spec.replicas())
    };
    let mut out = SwarmInstances {
        instances: Vec::new(),
        running: 0,
        current: Vec::new(),
        desired: replicas.unwrap_or(0),
    };
    let away = |reason: &str| match driver {
        Some(d) if !connected => {
            let head = format!(
                "the cluster's driver `{d}` is unreachable (Swarm keeps the service running; last known)"
            );
            if reason.is_empty() {
                head
            } else {
                format!("{head}: {reason}")
            }
        }
        _ => reason.to_string(),
    };
    let Some(r) = reported.filter(|r| !r.swarm_tasks.is_empty()) else {
        let (state, reason) = match (driver, reported) {
            (None, _) => (InstanceState::Pending, pending.to_string()),
            (Some(_), Some(r)) => (r.state, away(&r.reason)),
            (Some(d), None) if connected => (
                InstanceState::Pending,
                format!("waiting for the driver `{d}` to report"),
            ),
            (Some(_), None) => (InstanceState::Pending, away("")),
        };
        out.instances.push(InstanceStatusView {
            id: id.to_string(),
            index: 1,
            node: driver.unwrap_or_default().to_string(),
            node_connected: connected,
            revision: reported.map(|r| r.revision).unwrap_or(rec.revision),
            state,
            reason,
            ..Default::default()
        });
        return out;
    };
    let prefix = id.strip_suffix("/1").unwrap_or(id);
    let mut global_index = 0;
    for t in &r.swarm_tasks {
        let index = if t.slot > 0 {
            t.slot
        } else {
            global_index += 1;
            global_index
        };
        let state = swarm_task_state(&t.state);
        let current = state == InstanceState::Running
            && t.desired_state == "running"
            && t.revision == rec.revision;
        let health = if state == InstanceState::Running && r.health == Health::Healthy {
            Health::Healthy
        } else {
            Health::None
        };
        let reason = [t.error.as_str(), t.message.as_str()]
            .into_iter()
            .find(|s| !s.is_empty() && state != InstanceState::Running)
            .unwrap_or_default();
        if current {
            out.running += 1;
            out.current.push(out.instances.len());
        }
        if replicas.is_none() && t.desired_state == "running" {
            out.desired += 1;
        }
        out.instances.push(InstanceStatusView {
            id: format!("{prefix}/{index}"),
            index,
            node: if t.node_hostname.is_empty() {
                t.node_id.clone()
            } else {
                t.node_hostname.clone()
            },
            // The task's own Swarm node is not a Convoy node: the driver's
            // reachability is in the service's `swarm` info and the reason.
            node_connected: true,
            revision: t.revision,
            state,
            reason: away(reason),
            container_id: t.container_id.clone(),
            updated_unix_ms: t.updated_unix_ms,
            health,
            swarm_node_id: t.node_id.clone(),
            swarm_task_id: t.task_id.clone(),
            ..Default::default()
        });
    }
    out
}

/// Swarm's task state in Convoy's words.
fn swarm_task_state(state: &str) -> InstanceState {
    match state {
        "running" => InstanceState::Running,
        "new" | "pending" | "assigned" | "accepted" | "preparing" | "ready" | "starting" => {
            InstanceState::Starting
        }
        "failed" | "rejected" => InstanceState::Failed,
        "orphaned" => InstanceState::Lost,
        // complete, shutdown, remove
        _ => InstanceState::Exited,
    }
}

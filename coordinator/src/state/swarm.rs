//! Swarm services' driver failover: when the agent driving a cluster's
//! Swarm services is gone and another manager's agent of that cluster is
//! connected, the services move to it (`swarm::driver::pick`) in one
//! commit, so the new driver's plan holds them.

use super::*;

impl Coordinator {
    /// Moves every Swarm service whose driver may no longer drive to the
    /// driver `pick` chooses now. Cheap when nothing is to move (one pass
    /// over the services, no store write); called about once a second.
    pub async fn fail_over_swarm(&self) {
        let moves = {
            let desired = self.desired.lock().await;
            if !desired
                .services
                .values()
                .any(|r| !r.deleted && r.spec.swarm.is_some())
            {
                return;
            }
            swarm_moves(&desired, &self.connected())
        };
        let connected = self.connected();
        if moves.is_empty() {
            return;
        }
        let mut txn = self.begin("swarm driver failover").await;
        // Read again under the transaction: it may have changed since.
        let moves = swarm_moves(txn.desired(), &connected);
        if moves.is_empty() {
            return;
        }
        let now = now_unix_ms();
        let (next, ops, _) = txn.parts();
        let mut events = Vec::new();
        for ((env, name), driver) in moves {
            let Some(rec) = next.services.get_mut(&(env.clone(), name.clone())) else {
                continue;
            };
            let rec = Arc::make_mut(rec);
            let was = rec.assignments.get(&1).cloned().flatten();
            rec.assignments = Assignments::from([(1, driver.clone())]);
            rec.updated_unix_ms = now;
            ops.push(Op::put_json(service_key(&env, &name), &*rec));
            let cluster = rec.spec.swarm_cluster().unwrap_or_default().to_string();
            tracing::warn!(service = %name, env = %env, from = ?was, to = ?driver, "swarm driver failover");
            events.push(
                Ev::new(EventKind::InstancePlaced)
                    .instance(&workload_id(&env, &name, 1))
                    .node(driver.as_deref().unwrap_or_default())
                    .msg(format!(
                        "{env}/{name}: Swarm cluster {cluster} now driven by {} (was {})",
                        driver.as_deref().unwrap_or("no node"),
                        was.as_deref().unwrap_or("none")
                    )),
            );
        }
        txn.replan();
        for e in events {
            txn.emit(e);
        }
        if let Err(e) = txn.commit().await {
            tracing::error!(error = %e, "cannot store the Swarm driver failover; retrying");
        }
    }
}

/// The Swarm services whose driver `pick` would change, with the new one.
fn swarm_moves(
    desired: &Desired,
    connected: &HashMap<String, bool>,
) -> Vec<((String, String), Option<String>)> {
    let stale: Vec<(&(String, String), &ServiceRecord)> = desired
        .services
        .iter()
        .filter(|(_, r)| !r.deleted && r.spec.swarm.is_some())
        .filter(|(_, r)| {
            r.assignments
                .get(&1)
                .cloned()
                .flatten()
                .is_none_or(|n| !connected.get(&n).copied().unwrap_or(false))
        })
        .map(|(k, r)| (k, r.as_ref()))
        .collect();
    if stale.is_empty() {
        return Vec::new();
    }
    let views = node_views(desired, connected);
    let candidates = candidates(&views);
    stale
        .into_iter()
        .filter_map(|(key, rec)| {
            let cluster = rec.spec.swarm_cluster()?;
            let current = rec.assignments.get(&1).cloned().flatten();
            let in_env = in_env(&candidates, &rec.env);
            let next = crate::swarm::driver::pick(cluster, current.as_deref(), &in_env);
            (next != current && next.is_some()).then(|| (key.clone(), next))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn manager(cluster: &str) -> crate::report::AgentHello {
        crate::report::AgentHello::from(pb::Hello {
            facts: Some(pb::NodeFacts {
                swarm: Some(pb::SwarmFacts {
                    role: pb::SwarmRole::Manager as i32,
                    node_id: "id".into(),
                    cluster_id: cluster.into(),
                    manager_reachable: true,
                    local_node_state: "active".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            agent_version: "t".into(),
            last_applied_generation: 0,
            capabilities: vec![],
        })
    }

    fn plan_of(h: &mut SessionHandle) -> Arc<pb::NodePlan> {
        h.plan_rx.borrow_and_update().clone().unwrap()
    }

    fn swarm_spec(of: &pb::NodePlan) -> Option<&pb::SwarmServiceSpec> {
        of.workloads.iter().find_map(|w| match &w.runtime {
            Some(pb::workload::Runtime::Swarm(s)) => Some(s),
            _ => None,
        })
    }

    fn report(coord: &Coordinator, node: &str, conn_id: u64, status: pb::WorkloadStatus) {
        coord.handle_pb(
            node,
            conn_id,
            pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
                    full_snapshot: true,
                    workloads: vec![status],
                    removed: vec![],
                })),
            },
        );
    }

    /// The driver's report of `default/web/1`.
    fn web(
        spec_hash: &str,
        state: pb::WorkloadState,
        tasks: Vec<pb::SwarmTask>,
    ) -> pb::WorkloadStatus {
        pb::WorkloadStatus {
            id: "default/web/1".into(),
            revision: 1,
            spec_hash: spec_hash.into(),
            state: state as i32,
            swarm_tasks: tasks,
            ..Default::default()
        }
    }

    fn task(slot: u32, state: &str, revision: u64) -> pb::SwarmTask {
        pb::SwarmTask {
            task_id: format!("t{slot}"),
            slot,
            node_id: format!("n{slot}"),
            node_hostname: format!("host{}", slot % 2),
            state: state.into(),
            desired_state: "running".into(),
            revision,
            ..Default::default()
        }
    }

    const SPEC: &str = "services:\n  web:\n    image: x:1\n    x-convoy:\n      swarm: C1\n    deploy:\n      replicas: 3\n      update_config:\n        failure_action: rollback\n";

    /// Issue 17: a Swarm service is one instance on the driver (the lowest-
    /// named connected manager of its cluster); its plan holds the service
    /// and says it drives; status shows one instance per task slot; when
    /// the driver's agent goes, another manager's takes over; Swarm giving
    /// up on an update fails the rollout at once, with Swarm's words.
    #[tokio::test]
    async fn a_swarm_service_is_driven_by_one_manager_and_fails_over() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
            .await
            .unwrap();
        let mut m2 = coord
            .register("m2", "fp-2", 0, manager("C1"), None)
            .await
            .unwrap();
        let mut m1 = coord
            .register("m1", "fp-1", 0, manager("C1"), None)
            .await
            .unwrap();
        let mut other = coord
            .register("m0", "fp-0", 0, manager("C2"), None)
            .await
            .unwrap();
        coord.apply("s.yaml", SPEC, false, "t").await.unwrap();

        let plan = plan_of(&mut m1);
        assert!(plan.swarm_driver);
        let svc = swarm_spec(&plan).expect("m1's plan holds the Swarm service");
        assert_eq!(
            (svc.name.as_str(), svc.cluster.as_str()),
            ("default_web", "C1")
        );
        assert_eq!(svc.replicas, 3);
        let m2_plan = plan_of(&mut m2);
        assert!(!m2_plan.swarm_driver && m2_plan.workloads.is_empty());
        // m0 manages another cluster, where nothing is Convoy's: it is that
        // cluster's only manager, so it removes what Convoy left there.
        assert!(swarm_spec(&plan_of(&mut other)).is_none());

        // The driver reports three tasks, two running.
        let hash = plan.workloads[0].spec_hash.clone();
        report(
            &coord,
            "m1",
            m1.conn_id,
            pb::WorkloadStatus {
                reason: "2/3 tasks running".into(),
                swarm_update_state: "completed".into(),
                ..web(
                    &hash,
                    pb::WorkloadState::Starting,
                    vec![
                        task(1, "running", 1),
                        task(2, "running", 1),
                        task(3, "preparing", 1),
                    ],
                )
            },
        );
        let st = coord.status("web", "").await;
        let s = &st.services[0];
        assert_eq!((s.desired, s.running), (3, 2));
        let nodes: Vec<&str> = s.instances.iter().map(|i| i.node.as_str()).collect();
        assert_eq!(nodes, ["host1", "host0", "host1"]);
        assert_eq!(s.instances[2].id, "default/web/3");
        let info = s.swarm.as_ref().unwrap();
        assert_eq!((info.driver.as_str(), info.driver_connected), ("m1", true));
        assert_eq!(info.service_name, "default_web");

        // m1's agent goes: m2 takes over, and its plan now drives.
        coord.disconnect("m1", m1.conn_id);
        let st = coord.status("web", "").await;
        assert!(!st.services[0].swarm.as_ref().unwrap().driver_connected);
        coord.fail_over_swarm().await;
        let plan = plan_of(&mut m2);
        assert!(plan.swarm_driver);
        assert_eq!(swarm_spec(&plan).unwrap().name, "default_web");
        let st = coord.status("web", "").await;
        assert_eq!(st.services[0].swarm.as_ref().unwrap().driver, "m2");

        // The running revision is healthy...
        report(
            &coord,
            "m2",
            m2.conn_id,
            web(
                &hash,
                pb::WorkloadState::Running,
                vec![
                    task(1, "running", 1),
                    task(2, "running", 1),
                    task(3, "running", 1),
                ],
            ),
        );
        for _ in 0..3 {
            coord.drive_rollouts().await;
        }
        // ...then an update that Swarm rolls back fails at once, and Convoy
        // rolls back too, with Swarm's message in history.
        coord
            .apply("s.yaml", &SPEC.replace("x:1", "x:bad"), false, "t")
            .await
            .unwrap();
        let new_hash = plan_of(&mut m2).workloads[0].spec_hash.clone();
        assert_ne!(new_hash, hash);
        report(
            &coord,
            "m2",
            m2.conn_id,
            pb::WorkloadStatus {
                reason: "Swarm rollback_completed: update rolled back due to failure".into(),
                swarm_update_state: "rollback_completed".into(),
                ..web(&hash, pb::WorkloadState::Failed, Vec::new())
            },
        );
        coord.drive_rollouts().await;
        let h = coord.history("web", "default").await.unwrap();
        let r2 = h.revisions.iter().find(|r| r.revision == 2).unwrap();
        assert!(
            r2.outcome
                .contains("rollback_completed: update rolled back due to failure"),
            "{h:?}"
        );
        // The rollback is a new revision with the old image, switched on
        // the next pass.
        coord.drive_rollouts().await;
        let plan = plan_of(&mut m2);
        let svc = swarm_spec(&plan).unwrap();
        assert_eq!(svc.container.as_ref().unwrap().image, "x:1");
    }
}

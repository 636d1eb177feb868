use super::*;

/// A sled store in a fresh temporary directory (kept while the guard lives).
fn temp_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
    (store, dir)
}

/// An agent's Hello with empty facts.
fn hello() -> AgentHello {
    AgentHello::from(pb::Hello {
        facts: Some(pb::NodeFacts::default()),
        agent_version: "t".into(),
        last_applied_generation: 0,
        capabilities: vec![],
    })
}

fn a(pairs: &[(u32, Option<&str>)]) -> Assignments {
    pairs
        .iter()
        .map(|(i, n)| (*i, n.map(str::to_string)))
        .collect()
}

fn actions(changes: &[InstanceChange]) -> Vec<(String, String, ChangeAction)> {
    changes
        .iter()
        .map(|c| (c.instance_id.clone(), c.node.clone(), c.action))
        .collect()
}

#[test]
fn plan_diff_names_creates_replaces_and_removals() {
    use ChangeAction as A;
    let old = a(&[(1, Some("n1")), (2, Some("n2")), (3, Some("n1"))]);
    let new = a(&[(1, Some("n1")), (2, Some("n2"))]);
    let got = instance_changes("default", "web", &old, Some("h1"), &new, "h2");
    assert_eq!(
        actions(&got),
        vec![
            ("default/web/1".into(), "n1".into(), A::Replace),
            ("default/web/2".into(), "n2".into(), A::Replace),
            ("default/web/3".into(), "n1".into(), A::Remove),
        ]
    );
    let same = instance_changes("default", "web", &new, Some("h2"), &new, "h2");
    assert!(same.iter().all(|c| c.action == A::Unchanged));
    let fresh = instance_changes(
        "default",
        "web",
        &Assignments::new(),
        None,
        &a(&[(1, None)]),
        "h",
    );
    assert_eq!(fresh[0].action, A::Pending);
}

#[tokio::test]
async fn apply_stores_a_revision_and_a_plan_survives_reload() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let mut session = coord
        .register("n1", "fp-n1", 0, hello(), None)
        .await
        .unwrap();
    let spec = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 2\n";
    let r = coord.apply("a.yaml", spec, false, "test").await.unwrap();
    assert_eq!(r.services[0].revision, 1);
    let plan = session.plan_rx.borrow_and_update().clone().unwrap();
    assert_eq!(plan.workloads.len(), 2);
    let generation = plan.generation;

    // Same spec again: unchanged, no new generation.
    let r = coord.apply("a.yaml", spec, false, "test").await.unwrap();
    assert_eq!(r.services[0].action, ChangeAction::Unchanged);
    assert!(
        !session.plan_rx.has_changed().unwrap(),
        "an unchanged apply must not resend plans"
    );
    drop(coord);

    let again = Coordinator::load(store, Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let status = again.status("", "").await;
    assert_eq!(status.services[0].revision, 1);
    assert_eq!(status.services[0].instances.len(), 2);
    // The plan is handed out again under a newer generation: a node's
    // generations only grow, across restarts too.
    let nodes = again.nodes().await;
    assert!(
        nodes.nodes[0].plan_generation > generation,
        "{} after a reload, {generation} before",
        nodes.nodes[0].plan_generation
    );
    let mut session = again
        .register("n1", "fp-n1", 0, AgentHello::default(), None)
        .await
        .unwrap();
    let plan = session.plan_rx.borrow_and_update().clone().unwrap();
    assert_eq!(plan.generation, nodes.nodes[0].plan_generation);
    assert_eq!(plan.workloads.len(), 2);
}

#[tokio::test]
async fn plan_generations_of_old_per_node_records_carry_over_and_the_records_go() {
    let (store, _dir) = temp_store();
    let old = PlanRecord {
        generation: 41,
        hash: "h".into(),
    };
    store
        .apply(vec![Op::put_json("plans/n1", &old)])
        .await
        .unwrap();
    let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let mut session = coord
        .register("n1", "fp-n1", 0, AgentHello::default(), None)
        .await
        .unwrap();
    let plan = session.plan_rx.borrow_and_update().clone().unwrap();
    assert!(plan.generation > 41, "generation {}", plan.generation);
    assert!(store.scan_prefix("plans/").await.unwrap().is_empty());
    let stored = store::get_json::<u64>(&*store, PLAN_GENERATION_KEY)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored >= plan.generation,
        "stored {stored}, handed out {}",
        plan.generation
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_are_group_committed_and_each_gets_its_plan() {
    let (store, _dir) = temp_store();
    let coord = Arc::new(
        Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
            .await
            .unwrap(),
    );
    let spec = "services:\n  g:\n    image: x:1\n    deploy:\n      mode: global\n";
    coord.apply("a.yaml", spec, false, "t").await.unwrap();

    // 60 nodes at once, and node n0 twice: the later session wins.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let c = coord.clone();
        let h = hello();
        tasks.push(tokio::spawn(async move {
            c.register(&format!("n{i}"), &format!("fp-{i}"), 0, h, None)
                .await
        }));
    }
    let mut handles = Vec::new();
    for t in tasks {
        handles.push(t.await.unwrap().unwrap());
    }
    let mut again = coord
        .register("n0", "fp-0", 0, hello(), None)
        .await
        .unwrap();
    assert!(
        handles[0].cancel.is_cancelled(),
        "the replaced session is cancelled"
    );
    assert!(!again.cancel.is_cancelled());

    let ids: std::collections::HashSet<u64> = handles.iter().map(|h| h.conn_id).collect();
    assert_eq!(ids.len(), 60, "every session has its own connection id");
    for (i, h) in handles.iter_mut().enumerate().skip(1) {
        let plan = h.plan_rx.borrow_and_update().clone().unwrap();
        assert_eq!(plan.workloads.len(), 1, "node n{i}: {plan:?}");
        assert!(plan.workloads[0].id.starts_with("default/g/"), "{plan:?}");
    }
    let plan = again.plan_rx.borrow_and_update().clone().unwrap();
    assert_eq!(plan.workloads.len(), 1);
    let nodes = coord.nodes().await;
    assert_eq!(nodes.nodes.len(), 60);
    assert!(
        nodes.nodes.iter().all(|n| n.state == NodeState::Ready),
        "{nodes:?}"
    );
    let status = coord.status("", "").await;
    assert_eq!(status.services[0].instances.len(), 60);

    // The batch was stored: a reload knows every node.
    drop(handles);
    drop(again);
    drop(coord);
    let reloaded = Coordinator::load(store, Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(reloaded.nodes().await.nodes.len(), 60);
}

/// Agents heartbeat only through silences: any message counts as one,
/// so a node that keeps sending status reports is never swept as lost,
/// and a report from a silent node brings it back.
#[tokio::test]
async fn any_message_shows_a_node_alive() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let session = coord.register("n1", "fp", 0, hello(), None).await.unwrap();
    let status = |state: pb::WorkloadState| pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
            workloads: vec![pb::WorkloadStatus {
                id: "default/x/1".into(),
                state: state as i32,
                ..Default::default()
            }],
            ..Default::default()
        })),
    };
    let ready = |coord: &Coordinator| {
        let live = coord.live();
        live.nodes["n1"].ready()
    };
    // Sweeps 2.4 s and 2.6 s after a report: the 2.5 s window counts
    // from the report.
    let registered = coord.live().nodes["n1"].last_heartbeat_unix_ms;
    coord.handle_pb("n1", session.conn_id, status(pb::WorkloadState::Running));
    let heard = coord.live().nodes["n1"].last_heartbeat_unix_ms;
    assert!(heard >= registered);
    coord.sweep(heard + 2_400);
    assert!(ready(&coord), "a node that reported is not lost");
    coord.sweep(heard + 2_600);
    assert!(!ready(&coord), "silence past the window is loss");
    let mut events = coord.events.subscribe();
    coord.handle_pb("n1", session.conn_id, status(pb::WorkloadState::Exited));
    assert!(ready(&coord), "a report from a silent node brings it back");
    let mut kinds = Vec::new();
    while let Ok(ev) = events.try_recv() {
        kinds.push(ev.kind.clone());
    }
    assert!(kinds.iter().any(|k| k == "node.ready"), "{kinds:?}");
}

/// After a restart, nodes that come back as they were take the quick
/// path (no placement, no plan computation) and still get the plans
/// they had; a node that instances waited for gets them.
#[tokio::test]
async fn nodes_coming_back_keep_their_plans_and_take_what_waited_for_them() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for n in ["n1", "n2", "n3"] {
        sessions.push(coord.register(n, n, 0, hello(), None).await.unwrap());
    }
    coord.disconnect("n3", sessions[2].conn_id);
    // `r` may only run on n3, which is away; `g` runs on every node up.
    let spec = "services:\n  r:\n    image: x:1\n    deploy:\n      placement: {constraints: [\"node.name == n3\"]}\n  g:\n    image: x:1\n    deploy:\n      mode: global\n";
    coord.apply("a.yaml", spec, false, "t").await.unwrap();
    let placed = |status: &StatusView, service: &str| -> Vec<String> {
        let s = status.services.iter().find(|s| s.name == service).unwrap();
        let mut nodes: Vec<String> = s.instances.iter().map(|i| i.node.clone()).collect();
        nodes.sort();
        nodes
    };
    let before = coord.status("", "").await;
    assert_eq!(placed(&before, "r"), vec![String::new()], "r waits for n3");
    assert_eq!(placed(&before, "g"), vec!["n1".to_string(), "n2".into()]);
    let plan_of = |h: &mut SessionHandle| -> Vec<String> {
        let plan = h.plan_rx.borrow_and_update().clone().unwrap();
        let mut ids: Vec<String> = plan.workloads.iter().map(|w| w.id.clone()).collect();
        ids.sort();
        ids
    };
    let n1_before = plan_of(&mut sessions[0]);
    assert_eq!(n1_before.len(), 1, "{n1_before:?}");
    drop(sessions);
    drop(coord);

    // A restart: n3 comes back first and takes r and a g instance.
    let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let mut n3 = coord.register("n3", "n3", 0, hello(), None).await.unwrap();
    let n3_plan = plan_of(&mut n3);
    assert_eq!(n3_plan.len(), 2, "{n3_plan:?}");
    assert!(
        n3_plan.iter().any(|id| id.starts_with("default/r/")),
        "{n3_plan:?}"
    );
    // Nothing waits any more: n1 and n2 come back as they were.
    let mut n1 = coord.register("n1", "n1", 0, hello(), None).await.unwrap();
    let mut n2 = coord.register("n2", "n2", 0, hello(), None).await.unwrap();
    assert_eq!(plan_of(&mut n1), n1_before);
    assert_eq!(plan_of(&mut n2).len(), 1);
    let after = coord.status("", "").await;
    assert_eq!(placed(&after, "r"), vec!["n3".to_string()]);
    assert_eq!(
        placed(&after, "g"),
        vec!["n1".to_string(), "n2".into(), "n3".into()]
    );
    let nodes = coord.nodes().await;
    assert!(
        nodes.nodes.iter().all(|n| n.state == NodeState::Ready),
        "{nodes:?}"
    );
    // A node that comes back with other facts is placed again: n2 now
    // carries a label; its record is stored either way.
    let mut hello2 = hello();
    hello2.facts.labels.insert("zone".into(), "b".into());
    drop(n2);
    let _n2 = coord.register("n2", "n2", 0, hello2, None).await.unwrap();
    let nodes = coord.nodes().await;
    let n2 = nodes.nodes.iter().find(|n| n.name == "n2").unwrap();
    assert_eq!(n2.facts.labels.get("zone").map(String::as_str), Some("b"));
}

#[tokio::test]
async fn a_registration_whose_caller_gave_up_leaves_no_session() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    // Hold the lock so the first registration stays queued, then drop it.
    {
        let guard = coord.desired.lock().await;
        let mut queued = Box::pin(coord.register("gone", "fp-g", 0, hello(), None));
        assert!(futures::poll!(queued.as_mut()).is_pending());
        drop(queued);
        drop(guard);
    }
    // The next registration commits the queued one too, then undoes it.
    let _b = coord.register("b", "fp-b", 0, hello(), None).await.unwrap();
    let nodes = coord.nodes().await;
    let gone = nodes.nodes.iter().find(|n| n.name == "gone").unwrap();
    assert_eq!(gone.state, NodeState::Lost, "{gone:?}");
    let b = nodes.nodes.iter().find(|n| n.name == "b").unwrap();
    assert_eq!(b.state, NodeState::Ready, "{b:?}");
}

#[tokio::test]
async fn a_node_cannot_report_for_or_receive_another_nodes_instances() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let mut a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
    let mut b = coord.register("b", "fp-b", 0, hello(), None).await.unwrap();
    let spec = "services:\n  web:\n    image: x:1\n    deploy:\n      replicas: 2\n";
    coord.apply("a.yaml", spec, false, "t").await.unwrap();
    // Each session sees only its own node's plan.
    let plan_a = a.plan_rx.borrow_and_update().clone().unwrap();
    let plan_b = b.plan_rx.borrow_and_update().clone().unwrap();
    let status = coord.status("", "").await;
    let on = |node: &str| -> Vec<String> {
        status.services[0]
            .instances
            .iter()
            .filter(|i| i.node == node)
            .map(|i| i.id.clone())
            .collect()
    };
    let ids = |p: &pb::NodePlan| p.workloads.iter().map(|w| w.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&plan_a), on("a"));
    assert_eq!(ids(&plan_b), on("b"));

    // Node a claims b's instance runs: b's instance stays unreported.
    let b_instance = on("b")[0].clone();
    let report = pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
            full_snapshot: false,
            workloads: vec![pb::WorkloadStatus {
                id: b_instance.clone(),
                state: pb::WorkloadState::Running as i32,
                ..Default::default()
            }],
            removed: vec![],
        })),
    };
    coord.handle_pb("a", a.conn_id, report);
    let status = coord.status("", "").await;
    let inst = status.services[0]
        .instances
        .iter()
        .find(|i| i.id == b_instance)
        .unwrap();
    assert_eq!(inst.state, InstanceState::Pending, "{inst:?}");
    assert_eq!(status.services[0].running, 0);
}

#[tokio::test]
async fn status_reports_become_ordered_state_and_health_events() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let (replay, mut rx) = coord.events().subscribe_with_replay();
    assert!(replay.is_empty());
    let a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
    let spec = "services:\n  web:\n    image: x:1\n";
    coord.apply("a.yaml", spec, false, "t").await.unwrap();
    let report = |state: pb::WorkloadState, health: pb::Health, output: &str| pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
            full_snapshot: false,
            workloads: vec![pb::WorkloadStatus {
                id: "default/web/1".into(),
                state: state as i32,
                health: health as i32,
                health_output: output.into(),
                failing_probe: if output.is_empty() { "" } else { "http" }.into(),
                revision: 1,
                ..Default::default()
            }],
            removed: vec![],
        })),
    };
    use pb::{Health as H, WorkloadState as S};
    coord.handle_pb("a", a.conn_id, report(S::Running, H::Starting, ""));
    coord.handle_pb("a", a.conn_id, report(S::Running, H::Healthy, ""));
    coord.handle_pb("a", a.conn_id, report(S::Running, H::Unhealthy, "HTTP 500"));
    // An unchanged report says nothing new.
    coord.handle_pb("a", a.conn_id, report(S::Running, H::Unhealthy, "HTTP 500"));
    // Another node's instance is not this node's to report.
    coord.handle_pb(
        "a",
        a.conn_id,
        pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
                full_snapshot: false,
                workloads: vec![pb::WorkloadStatus {
                    id: "default/other/1".into(),
                    state: S::Running as i32,
                    ..Default::default()
                }],
                removed: vec![],
            })),
        },
    );
    coord.disconnect("a", a.conn_id);
    let mut got = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        got.push((
            ev.kind.clone(),
            ev.fields
                .get("state")
                .or(ev.fields.get("health"))
                .cloned()
                .unwrap_or_default(),
        ));
    }
    let want: Vec<(String, String)> = [
        ("node.joined", ""),
        ("service.deployed", ""),
        ("instance.placed", ""),
        ("instance.state", "running"),
        ("instance.health", "starting"),
        ("instance.health", "healthy"),
        ("instance.health", "unhealthy"),
        ("node.lost", ""),
    ]
    .iter()
    .map(|(k, f)| (k.to_string(), f.to_string()))
    .collect();
    assert_eq!(got, want);
    let status = coord.status("web", "").await;
    let svc = &status.services[0];
    assert!(svc.has_checks);
    assert_eq!(svc.healthy, 0);
    assert_eq!(svc.instances[0].health_output, "HTTP 500");
    let counts = coord.events().counts();
    assert_eq!(counts.get("instance.health"), Some(&3));
}

#[tokio::test]
async fn a_bad_spec_stores_nothing() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let err = coord
        .apply("bad.yaml", "services:\n  web:\n    imag: x\n", false, "t")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad.yaml:3"), "{err}");
    assert!(store.scan_prefix("").await.unwrap().is_empty());
}

/// Issue 13: the reason of a pending instance used to be "no node matches
/// the placement constraints" whatever the cause.
#[tokio::test]
async fn a_pending_instance_says_why_no_node_takes_it_environment_constraints_or_connection() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let session = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
    let reason = |s: &StatusView| s.services[0].instances[0].reason.clone();

    coord
        .apply_in(
            "prod",
            "p.yaml",
            "services:\n  web:\n    image: x:1\n",
            false,
            "t",
        )
        .await
        .unwrap();
    let r = reason(&coord.status("web", "prod").await);
    assert!(r.contains("no node serves environment `prod`"), "{r}");

    let gpu = "services:\n  gpu:\n    image: x:1\n    deploy:\n      placement:\n        constraints: [\"node.labels.role == gpu\"]\n";
    coord.apply("g.yaml", gpu, false, "t").await.unwrap();
    let r = reason(&coord.status("gpu", "default").await);
    assert!(
        r.contains("no node of environment `default` matches the placement constraints (node.labels.role == gpu)"),
        "{r}"
    );

    coord.disconnect("a", session.conn_id);
    let one = "services:\n  one:\n    image: x:1\n";
    coord.apply("o.yaml", one, false, "t").await.unwrap();
    let r = reason(&coord.status("one", "default").await);
    assert!(r.contains("1 matching node(s) not connected (a)"), "{r}");
}

/// Issue 13: the agent reported a workload's exit code and a failed unit's
/// journal tail, and the coordinator dropped both.
#[tokio::test]
async fn an_exit_code_and_a_units_journal_tail_reach_the_status() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let a = coord.register("a", "fp-a", 0, hello(), None).await.unwrap();
    coord
        .apply("a.yaml", "services:\n  job:\n    image: x:1\n", false, "t")
        .await
        .unwrap();
    coord.handle_pb(
        "a",
        a.conn_id,
        pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::Status(pb::StatusReport {
                full_snapshot: true,
                workloads: vec![pb::WorkloadStatus {
                    id: "default/job/1".into(),
                    state: pb::WorkloadState::Failed as i32,
                    exit_code: 3,
                    reason: "exited with code 3".into(),
                    revision: 1,
                    unit: Some(pb::UnitStatus {
                        journal_tail: vec!["boom".into(), "exit 3".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                removed: vec![],
            })),
        },
    );
    let status = coord.status("job", "").await;
    let i = &status.services[0].instances[0];
    assert_eq!(i.exit_code, 3);
    assert_eq!(
        i.journal_tail,
        vec!["boom".to_string(), "exit 3".to_string()]
    );
    let json = convoy_api::views::InstanceStatusJson::from(&pb::InstanceStatus::from(i.clone()));
    assert_eq!(json.exit_code, Some(3));
    assert_eq!(json.journal_tail.len(), 2);
}

#[tokio::test]
async fn services_of_profiles_not_enabled_are_skipped_with_a_warning() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let spec = "services:\n  web:\n    image: x:1\n  debug:\n    image: y:1\n    profiles: [debug, tools]\n";
    let r = coord.apply("a.yaml", spec, false, "t").await.unwrap();
    let names: Vec<&str> = r.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(names, ["web"]);
    assert_eq!(
        r.warnings,
        [
            "a.yaml: services.debug: skipped: its profiles (debug, tools) are not enabled; \
          enable one with `--profile`"
        ]
    );
    let status = coord.status("", "").await;
    assert_eq!(status.services.len(), 1, "{status:?}");
    // Enabled by one of its profiles, or by `*`.
    for enabled in [vec!["tools".to_string()], vec!["*".to_string()]] {
        let r = coord
            .apply_with(
                "",
                "a.yaml",
                spec,
                &ApplyOptions {
                    profiles: enabled.clone(),
                    may_run_units: true,
                    ..ApplyOptions::default()
                },
                true,
                "t",
            )
            .await
            .unwrap();
        let mut names: Vec<&str> = r.services.iter().map(|s| s.service.as_str()).collect();
        names.sort();
        assert_eq!(names, ["debug", "web"], "{enabled:?}");
        assert!(r.warnings.is_empty());
    }
}

/// Issue 14: a unit runs its command as root on the host; a deployer must
/// not get that, so only an admin may apply `units:`. Nothing is stored.
#[tokio::test]
async fn only_an_admin_may_apply_units() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store.clone(), Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let spec =
        "services:\n  web:\n    image: x:1\nunits:\n  backdoor:\n    exec_start: /bin/sh -c 'id'\n";
    let err = coord
        .apply_with(
            "",
            "a.yaml",
            spec,
            &ApplyOptions::default(),
            false,
            "deployer",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::NotAllowed(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "a.yaml: units.backdoor: a unit runs its command as root on the host, so only an admin \
         token may apply `units:` (ask an admin to apply this file, or deploy the service as a \
         container under `services:`)"
    );
    assert!(coord.status("", "").await.services.is_empty());
    // The same file from an admin is applied; containers alone from anyone.
    let admin = ApplyOptions {
        may_run_units: true,
        ..ApplyOptions::default()
    };
    coord
        .apply_with("", "a.yaml", spec, &admin, false, "admin")
        .await
        .unwrap();
    let containers = "services:\n  api:\n    image: x:1\n";
    coord
        .apply_with(
            "",
            "b.yaml",
            containers,
            &ApplyOptions::default(),
            false,
            "deployer",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn heartbeats_keep_a_gpu_history_for_the_dashboard() {
    let (store, _dir) = temp_store();
    let coord = Coordinator::load(store, Liveness::default(), CancellationToken::new())
        .await
        .unwrap();
    let session = coord
        .register("n1", "fp-n1", 0, hello(), None)
        .await
        .unwrap();
    let beat = |gpus: Vec<pb::GpuSample>| pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
            sent_unix_ms: 1,
            metrics: Some(pb::HostMetrics {
                memory_total_bytes: 1 << 30,
                gpus,
                ..pb::HostMetrics::default()
            }),
        })),
    };
    coord.handle_pb(
        "n1",
        session.conn_id,
        beat(vec![pb::GpuSample {
            index: 0,
            utilization_percent: 87.5,
            memory_used_bytes: 3 << 30,
            temperature_c: 60.0,
            power_w: 300.0,
        }]),
    );
    let history = coord.metrics_history();
    assert_eq!(
        history["n1"][0].gpus,
        [GpuMetricSample {
            index: 0,
            utilization_percent: 87.5,
            memory_used_bytes: 3 << 30,
        }]
    );
    // On the wire to the dashboard; absent for a node without GPUs.
    let json = serde_json::to_value(&history["n1"][0]).unwrap();
    assert_eq!(json["gpus"][0]["utilization_percent"], 87.5);
    let plain = MetricSample {
        gpus: Vec::new(),
        ..history["n1"][0].clone()
    };
    assert!(serde_json::to_value(&plain).unwrap().get("gpus").is_none());
}

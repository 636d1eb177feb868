use std::time::{Duration, Instant, SystemTime};

use convoy_proto::restart_policy::Condition;
use convoy_proto::{
    workload, ContainerSpec, Event, Health, NodePlan, RestartPolicy, Workload, WorkloadState,
};
use tokio::sync::{broadcast, watch};

use super::*;
use crate::runtime::fake::{Call, FakeRuntime};
use crate::runtime::{container_name, ContainerState, DockerHealth, Observed};

const NODE: &str = "n1";
const IMAGE: &str = "app:1";

fn wl(index: u32, hash: &str) -> Workload {
    Workload {
        id: format!("default/web/{index}"),
        service: "web".into(),
        env: "default".into(),
        index,
        revision: 1,
        spec_hash: hash.into(),
        start_first: false,
        ingress: None,
        probes: vec![],
        runtime: Some(workload::Runtime::Container(ContainerSpec {
            image: IMAGE.into(),
            ..ContainerSpec::default()
        })),
    }
}

fn with_restart(mut w: Workload, condition: Condition, max_attempts: u32) -> Workload {
    if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
        spec.restart = Some(RestartPolicy {
            condition: condition as i32,
            max_attempts,
        });
    }
    w
}

fn with_image(mut w: Workload, image: &str) -> Workload {
    if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
        spec.image = image.into();
    }
    w
}

fn obs(id: &str, w: &Workload, state: ContainerState) -> Observed {
    Observed {
        id: id.into(),
        name: container_name(w),
        node: NODE.into(),
        workload_id: w.id.clone(),
        spec_hash: w.spec_hash.clone(),
        revision: w.revision,
        state,
        created_unix: 0,
        exit_code: None,
        oom_killed: false,
        started_at: None,
        finished_at: None,
        error: String::new(),
        health: None,
    }
}

fn exited(mut o: Observed, code: i64, ran: Duration) -> Observed {
    let end = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    o.state = ContainerState::Exited;
    o.exit_code = Some(code);
    o.started_at = Some(end - ran);
    o.finished_at = Some(end);
    o
}

fn plan(workloads: Vec<Workload>) -> Plan {
    Plan::try_from(NodePlan {
        generation: 1,
        workloads,
        ..Default::default()
    })
    .unwrap()
}

struct Harness {
    fake: Arc<FakeRuntime>,
    reconciler: Reconciler<FakeRuntime>,
    snapshot: watch::Receiver<Snapshot>,
    events: broadcast::Receiver<Event>,
}

fn harness(images: &[&str]) -> Harness {
    let fake = Arc::new(FakeRuntime::with_images(images));
    let (snapshot_tx, snapshot) = watch::channel(Snapshot::default());
    let (events_tx, events) = broadcast::channel(64);
    let reconciler = Reconciler::new(fake.clone(), NODE.into(), snapshot_tx, events_tx);
    Harness {
        fake,
        reconciler,
        snapshot,
        events,
    }
}

impl Harness {
    fn status(&self, id: &str) -> WorkloadStatus {
        self.snapshot
            .borrow()
            .statuses
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("no status for {id}"))
    }

    fn event_kinds(&mut self) -> Vec<String> {
        let mut kinds = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            kinds.push(e.kind);
        }
        kinds
    }
}

fn state(status: &WorkloadStatus) -> WorkloadState {
    WorkloadState::try_from(status.state).unwrap()
}

// ---- decide ----

#[test]
fn missing_container_is_created() {
    let w = wl(1, "h1");
    let actions = decide(
        std::slice::from_ref(&w),
        &[],
        &RestartBook::default(),
        Instant::now(),
    );
    assert_eq!(actions, vec![Action::Create(w)]);
}

#[test]
fn container_with_the_same_spec_hash_is_left_alone_whatever_its_revision() {
    let w = wl(1, "h1");
    let mut running = obs("c1", &w, ContainerState::Running);
    running.revision = 7;
    let actions = decide(&[w], &[running], &RestartBook::default(), Instant::now());
    assert_eq!(actions, vec![]);
}

#[test]
fn container_with_another_spec_hash_is_replaced() {
    let old = wl(1, "h1");
    let new = wl(1, "h2");
    let observed = [obs("c1", &old, ContainerState::Running)];
    let actions = decide(
        std::slice::from_ref(&new),
        &observed,
        &RestartBook::default(),
        Instant::now(),
    );
    assert_eq!(
        actions,
        vec![Action::Replace {
            workload: new,
            old: vec!["c1".into()],
        }]
    );
}

#[test]
fn start_first_creates_beside_the_old_and_removes_it_once_the_new_one_is_healthy() {
    let old = wl(1, "h1");
    let mut new = wl(1, "h2");
    new.revision = 2;
    new.start_first = true;
    let now = Instant::now();
    let book = RestartBook::default();
    let running_old = obs("c1", &old, ContainerState::Running);
    // No new container yet: create it; the old one keeps serving.
    let actions = decide(
        std::slice::from_ref(&new),
        std::slice::from_ref(&running_old),
        &book,
        now,
    );
    assert_eq!(actions, vec![Action::Create(new.clone())]);
    // The new one runs but Docker's healthcheck has not passed: keep both.
    let mut fresh = obs("c2", &new, ContainerState::Running);
    fresh.health = Some(DockerHealth {
        status: Health::Starting,
        output: String::new(),
    });
    let both = [running_old.clone(), fresh.clone()];
    assert_eq!(
        decide(std::slice::from_ref(&new), &both, &book, now),
        vec![]
    );
    // Healthy: the old one goes.
    fresh.health = Some(DockerHealth {
        status: Health::Healthy,
        output: String::new(),
    });
    let both = [running_old, fresh];
    assert_eq!(
        decide(std::slice::from_ref(&new), &both, &book, now),
        vec![Action::Remove {
            container_id: "c1".into(),
            workload_id: new.id.clone(),
            why: RemoveReason::Outdated,
        }]
    );
}

#[test]
fn start_first_falls_back_to_replace_when_the_names_would_clash() {
    let old = wl(1, "h1");
    let mut new = wl(1, "h2");
    new.start_first = true; // same revision: same container name
    let observed = [obs("c1", &old, ContainerState::Running)];
    let actions = decide(
        std::slice::from_ref(&new),
        &observed,
        &RestartBook::default(),
        Instant::now(),
    );
    assert!(
        matches!(actions.as_slice(), [Action::Replace { .. }]),
        "{actions:?}"
    );
}

#[test]
fn container_of_a_workload_not_in_the_plan_is_removed() {
    let w = wl(1, "h1");
    let gone = wl(2, "h1");
    let observed = [
        obs("c1", &w, ContainerState::Running),
        obs("c2", &gone, ContainerState::Running),
    ];
    let actions = decide(&[w], &observed, &RestartBook::default(), Instant::now());
    assert_eq!(
        actions,
        vec![Action::Remove {
            container_id: "c2".into(),
            workload_id: gone.id,
            why: RemoveReason::NotInPlan,
        }]
    );
}

#[test]
fn empty_plan_removes_every_container() {
    let observed = [
        obs("c1", &wl(1, "h1"), ContainerState::Running),
        obs("c2", &wl(2, "h1"), ContainerState::Exited),
    ];
    let actions = decide(&[], &observed, &RestartBook::default(), Instant::now());
    let removed: Vec<&str> = actions
        .iter()
        .map(|a| match a {
            Action::Remove { container_id, .. } => container_id.as_str(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(removed, vec!["c1", "c2"]);
}

#[test]
fn duplicates_keep_the_running_container_and_remove_the_rest() {
    let w = wl(1, "h1");
    let mut newer_exited = obs("c3", &w, ContainerState::Exited);
    newer_exited.created_unix = 30;
    let mut running = obs("c2", &w, ContainerState::Running);
    running.created_unix = 20;
    let mut outdated = obs("c1", &wl(1, "h0"), ContainerState::Running);
    outdated.created_unix = 10;
    let actions = decide(
        std::slice::from_ref(&w),
        &[outdated, running, newer_exited],
        &RestartBook::default(),
        Instant::now(),
    );
    assert_eq!(
        actions,
        vec![
            Action::Remove {
                container_id: "c1".into(),
                workload_id: w.id.clone(),
                why: RemoveReason::Outdated,
            },
            Action::Remove {
                container_id: "c3".into(),
                workload_id: w.id.clone(),
                why: RemoveReason::Duplicate,
            },
        ]
    );
}

#[test]
fn exited_container_is_restarted_after_backoff() {
    let w = wl(1, "h1");
    let observed = [exited(
        obs("c1", &w, ContainerState::Running),
        1,
        Duration::from_secs(1),
    )];
    let mut book = RestartBook::default();
    let t0 = Instant::now();
    book.observe(std::slice::from_ref(&w), &observed, t0);

    let early = decide(std::slice::from_ref(&w), &observed, &book, t0);
    assert_eq!(
        early,
        vec![Action::Wait {
            workload_id: w.id.clone(),
            until: t0 + Duration::from_secs(1),
        }]
    );
    // Seeing the same exit again does not push the deadline.
    book.observe(
        std::slice::from_ref(&w),
        &observed,
        t0 + Duration::from_millis(500),
    );
    let later = t0 + Duration::from_secs(1);
    assert_eq!(
        decide(std::slice::from_ref(&w), &observed, &book, later),
        vec![Action::Start {
            workload_id: w.id.clone(),
            container_id: "c1".into(),
            after_exit: Some(1),
        }]
    );
}

#[test]
fn backoff_doubles_per_short_run_and_resets_after_a_long_one() {
    let w = wl(1, "h1");
    let mut book = RestartBook::default();
    let t0 = Instant::now();
    let mut delays = Vec::new();
    for (n, ran) in [1, 1, 1, 12, 1].into_iter().enumerate() {
        let mut o = exited(
            obs("c1", &w, ContainerState::Running),
            1,
            Duration::from_secs(ran),
        );
        // Each exit is a new one: a later finish time.
        o.finished_at = o
            .finished_at
            .map(|t| t + Duration::from_secs(100 * n as u64));
        o.started_at = o.finished_at.map(|t| t - Duration::from_secs(ran));
        book.observe(std::slice::from_ref(&w), std::slice::from_ref(&o), t0);
        match decide(std::slice::from_ref(&w), &[o], &book, t0).as_slice() {
            [Action::Wait { until, .. }] => delays.push((*until - t0).as_secs()),
            other => panic!("expected a wait, got {other:?}"),
        }
    }
    assert_eq!(delays, vec![1, 2, 4, 1, 2]);
}

#[test]
fn backoff_is_capped_at_five_minutes() {
    assert_eq!(backoff(0), Duration::from_secs(1));
    assert_eq!(backoff(3), Duration::from_secs(8));
    assert_eq!(backoff(9), BACKOFF_MAX);
    assert_eq!(backoff(40), BACKOFF_MAX);
}

#[test]
fn on_failure_restarts_a_failed_exit_but_not_a_clean_one() {
    let w = with_restart(wl(1, "h1"), Condition::OnFailure, 0);
    let t = Instant::now() + Duration::from_secs(3600);
    for (code, restarted) in [(0, false), (3, true)] {
        let observed = [exited(
            obs("c1", &w, ContainerState::Running),
            code,
            Duration::from_secs(1),
        )];
        let mut book = RestartBook::default();
        book.observe(std::slice::from_ref(&w), &observed, Instant::now());
        let actions = decide(std::slice::from_ref(&w), &observed, &book, t);
        assert_eq!(
            actions.iter().any(|a| matches!(a, Action::Start { .. })),
            restarted,
            "exit code {code}: {actions:?}"
        );
    }
}

#[test]
fn restart_policy_none_never_restarts() {
    let w = with_restart(wl(1, "h1"), Condition::None, 0);
    let observed = [exited(
        obs("c1", &w, ContainerState::Running),
        1,
        Duration::from_secs(1),
    )];
    let mut book = RestartBook::default();
    book.observe(std::slice::from_ref(&w), &observed, Instant::now());
    let actions = decide(
        &[w],
        &observed,
        &book,
        Instant::now() + Duration::from_secs(3600),
    );
    assert_eq!(actions, vec![]);
}

#[test]
fn unspecified_restart_policy_restarts_a_clean_exit() {
    let w = wl(1, "h1");
    let observed = [exited(
        obs("c1", &w, ContainerState::Running),
        0,
        Duration::from_secs(1),
    )];
    let mut book = RestartBook::default();
    book.observe(std::slice::from_ref(&w), &observed, Instant::now());
    let actions = decide(
        &[w],
        &observed,
        &book,
        Instant::now() + Duration::from_secs(3600),
    );
    assert!(
        matches!(actions.as_slice(), [Action::Start { .. }]),
        "{actions:?}"
    );
}

#[test]
fn created_container_that_never_started_is_started() {
    let w = wl(1, "h1");
    let observed = [obs("c1", &w, ContainerState::Created)];
    let actions = decide(
        std::slice::from_ref(&w),
        &observed,
        &RestartBook::default(),
        Instant::now(),
    );
    assert_eq!(
        actions,
        vec![Action::Start {
            workload_id: w.id,
            container_id: "c1".into(),
            after_exit: None,
        }]
    );
}

#[test]
fn dead_container_is_replaced() {
    let w = wl(1, "h1");
    let observed = [obs("c1", &w, ContainerState::Dead)];
    let actions = decide(
        std::slice::from_ref(&w),
        &observed,
        &RestartBook::default(),
        Instant::now(),
    );
    assert_eq!(
        actions,
        vec![Action::Replace {
            workload: w,
            old: vec!["c1".into()],
        }]
    );
}

#[test]
fn container_being_removed_is_waited_for() {
    let w = wl(1, "h1");
    let observed = [obs("c1", &w, ContainerState::Removing)];
    let now = Instant::now();
    let actions = decide(
        std::slice::from_ref(&w),
        &observed,
        &RestartBook::default(),
        now,
    );
    assert_eq!(
        actions,
        vec![Action::Wait {
            workload_id: w.id,
            until: now + REMOVING_WAIT,
        }]
    );
}

// ---- one pass against the fake runtime ----

#[tokio::test]
async fn pass_creates_missing_containers_and_reports_them_running() {
    let mut h = harness(&[IMAGE]);
    let p = plan(vec![wl(1, "h1"), wl(2, "h1")]);
    h.reconciler.pass(Some(&p), Instant::now()).await;

    assert_eq!(h.fake.lock().containers.len(), 2);
    let created: Vec<Call> = h.fake.calls();
    assert!(
        created.iter().all(|c| matches!(c, Call::Create { .. })),
        "{created:?}"
    );
    for i in 1..=2 {
        let status = h.status(&format!("default/web/{i}"));
        assert_eq!(state(&status), WorkloadState::Running, "{status:?}");
        assert_eq!(status.container_name, format!("convoy-default-web-{i}-r1"));
        assert!(!status.container_id.is_empty());
        assert_eq!(status.restarts, 0);
        assert_eq!(status.spec_hash, "h1");
        assert!(status.updated_unix_ms > 0);
    }
    assert_eq!(h.snapshot.borrow().containers, 2);
}

#[tokio::test]
async fn unit_workloads_are_left_to_the_unit_reconciler() {
    let mut h = harness(&[IMAGE]);
    let unit = Workload {
        id: "default/exporter/1".into(),
        runtime: Some(workload::Runtime::Unit(convoy_proto::UnitSpec {
            unit_name: "convoy-exporter.service".into(),
            exec_start: vec!["/bin/true".into()],
            ..convoy_proto::UnitSpec::default()
        })),
        ..wl(1, "u1")
    };
    let p = plan(vec![wl(1, "h1"), unit]);
    h.reconciler.pass(Some(&p), Instant::now()).await;
    assert_eq!(h.fake.lock().containers.len(), 1);
    let statuses = h.snapshot.borrow().statuses.clone();
    assert_eq!(statuses.keys().collect::<Vec<_>>(), vec!["default/web/1"]);
}

#[tokio::test]
async fn pass_leaves_a_container_of_the_same_spec_alone_and_reports_the_plans_revision() {
    let mut h = harness(&[IMAGE]);
    let old_revision = wl(1, "h1");
    let id = h.fake.add(NODE, &old_revision, ContainerState::Running);
    let mut scaled = wl(1, "h1");
    scaled.revision = 2;
    h.reconciler
        .pass(Some(&plan(vec![scaled])), Instant::now())
        .await;

    assert_eq!(h.fake.calls(), vec![]);
    let status = h.status("default/web/1");
    assert_eq!(status.container_id, id);
    assert_eq!(status.revision, 2);
    assert_eq!(state(&status), WorkloadState::Running);
}

#[tokio::test]
async fn pass_replaces_a_container_of_another_spec() {
    let mut h = harness(&[IMAGE]);
    let old = h.fake.add(NODE, &wl(1, "h1"), ContainerState::Running);
    let mut new = wl(1, "h2");
    new.revision = 2;
    h.reconciler
        .pass(Some(&plan(vec![new])), Instant::now())
        .await;

    assert_eq!(
        h.fake.calls(),
        vec![
            Call::StopRemove(old.clone()),
            Call::Create {
                workload_id: "default/web/1".into(),
                name: "convoy-default-web-1-r2".into(),
            },
        ]
    );
    let now = h.fake.containers_of("default/web/1");
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].spec_hash, "h2");
    assert_eq!(h.event_kinds(), vec!["replaced"]);
    assert_eq!(h.status("default/web/1").restarts, 0);
}

#[tokio::test]
async fn pass_removes_containers_whose_workload_left_the_plan() {
    let mut h = harness(&[IMAGE]);
    h.fake.add(NODE, &wl(1, "h1"), ContainerState::Running);
    let orphan = h.fake.add(NODE, &wl(2, "h1"), ContainerState::Running);
    h.reconciler
        .pass(Some(&plan(vec![wl(1, "h1")])), Instant::now())
        .await;

    assert_eq!(h.fake.calls(), vec![Call::StopRemove(orphan)]);
    assert_eq!(h.event_kinds(), vec!["removed"]);
    assert_eq!(h.snapshot.borrow().containers, 1);
}

#[tokio::test]
async fn pass_never_touches_containers_of_other_nodes() {
    let mut h = harness(&[IMAGE]);
    let theirs = h.fake.add("n2", &wl(1, "h0"), ContainerState::Running);
    let their_orphan = h.fake.add("n2", &wl(5, "h1"), ContainerState::Exited);
    h.reconciler
        .pass(Some(&plan(vec![wl(1, "h1")])), Instant::now())
        .await;
    // Then an empty plan: everything of this node goes, nothing of theirs.
    h.reconciler.pass(Some(&plan(vec![])), Instant::now()).await;

    let calls = h.fake.calls();
    for id in [&theirs, &their_orphan] {
        assert!(
            !calls
                .iter()
                .any(|c| matches!(c, Call::StopRemove(x) | Call::Start(x) if x == id)),
            "touched {id}: {calls:?}"
        );
        assert!(h.fake.container(id).is_some());
    }
    let ours: Vec<_> = h
        .fake
        .lock()
        .containers
        .iter()
        .filter(|c| c.node == NODE)
        .cloned()
        .collect();
    assert_eq!(ours, vec![], "the empty plan left containers of this node");
}

#[tokio::test]
async fn pass_without_a_plan_removes_nothing() {
    let mut h = harness(&[IMAGE]);
    h.fake.add(NODE, &wl(1, "h1"), ContainerState::Running);
    h.fake.add(NODE, &wl(2, "h1"), ContainerState::Exited);
    h.reconciler.pass(None, Instant::now()).await;

    assert_eq!(h.fake.calls(), vec![]);
    assert_eq!(h.fake.lock().containers.len(), 2);
    assert_eq!(h.snapshot.borrow().statuses.len(), 0);
    assert_eq!(h.snapshot.borrow().containers, 2);
}

#[tokio::test]
async fn pass_restarts_an_exited_container_after_its_backoff_and_counts_it() {
    let mut h = harness(&[IMAGE]);
    let w = wl(1, "h1");
    let p = plan(vec![w.clone()]);
    let t0 = Instant::now();
    h.reconciler.pass(Some(&p), t0).await;
    let id = h.status(&w.id).container_id;
    h.fake.take_calls();

    h.fake.exit(&id, 2, Duration::from_secs(1));
    let next = h.reconciler.pass(Some(&p), t0).await;
    assert_eq!(next, Some(t0 + Duration::from_secs(1)));
    assert_eq!(h.fake.calls(), vec![], "restarted before the backoff");
    let status = h.status(&w.id);
    assert_eq!(state(&status), WorkloadState::Exited);
    assert_eq!(status.exit_code, 2);
    assert!(
        status.reason.contains("exited with code 2"),
        "{}",
        status.reason
    );

    h.reconciler
        .pass(Some(&p), t0 + Duration::from_secs(1))
        .await;
    assert_eq!(h.fake.calls(), vec![Call::Start(id.clone())]);
    let status = h.status(&w.id);
    assert_eq!(state(&status), WorkloadState::Running);
    assert_eq!(status.restarts, 1);
    assert_eq!(status.container_id, id);
    assert_eq!(h.event_kinds(), vec!["restarted"]);
}

#[tokio::test]
async fn pass_leaves_a_clean_exit_under_on_failure_and_reports_it_exited() {
    let mut h = harness(&[IMAGE]);
    let w = with_restart(wl(1, "h1"), Condition::OnFailure, 0);
    let id = h.fake.add(NODE, &w, ContainerState::Running);
    h.fake.exit(&id, 0, Duration::from_secs(30));
    let p = plan(vec![w.clone()]);
    h.reconciler.pass(Some(&p), Instant::now()).await;
    h.reconciler
        .pass(Some(&p), Instant::now() + Duration::from_secs(600))
        .await;

    assert_eq!(h.fake.calls(), vec![]);
    let status = h.status(&w.id);
    assert_eq!(state(&status), WorkloadState::Exited);
    assert_eq!(status.exit_code, 0);
    assert!(status.reason.contains("on-failure"), "{}", status.reason);
}

#[tokio::test]
async fn pass_stops_restarting_after_max_attempts() {
    let mut h = harness(&[IMAGE]);
    let w = with_restart(wl(1, "h1"), Condition::Any, 1);
    let p = plan(vec![w.clone()]);
    let mut t = Instant::now();
    h.reconciler.pass(Some(&p), t).await;
    let id = h.status(&w.id).container_id;
    for _ in 0..2 {
        h.fake.exit(&id, 1, Duration::from_secs(1));
        h.reconciler.pass(Some(&p), t).await;
        t += Duration::from_secs(600);
        h.reconciler.pass(Some(&p), t).await;
        // A later exit gets a later finish time.
        std::thread::sleep(Duration::from_millis(2));
    }
    let starts = h
        .fake
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Start(_)))
        .count();
    assert_eq!(starts, 1);
    let status = h.status(&w.id);
    assert_eq!(state(&status), WorkloadState::Exited);
    assert!(
        status.reason.contains("gave up after 1 restarts"),
        "{}",
        status.reason
    );
}

#[tokio::test]
async fn missing_image_is_pulled_once_then_failed_with_a_reason_and_retried_later() {
    let mut h = harness(&[]);
    let w = with_image(wl(1, "h1"), "nowhere:1");
    let p = plan(vec![w.clone()]);
    let t0 = Instant::now();
    let next = h.reconciler.pass(Some(&p), t0).await;

    assert_eq!(h.fake.calls(), vec![Call::Pull("nowhere:1".into())]);
    let status = h.status(&w.id);
    assert_eq!(state(&status), WorkloadState::Failed);
    assert_eq!(
        status.reason,
        "pulling `nowhere:1` on node `n1` failed: authentication required by docker.io \
         (convoy registry login docker.io): pull access denied"
    );
    assert_eq!(h.event_kinds(), vec!["image-missing"]);
    let retry = next.expect("a retry is scheduled");
    assert!(retry > t0, "retried at once");

    // Before the backoff: nothing; after it: one more pull.
    h.fake.take_calls();
    h.reconciler.pass(Some(&p), t0).await;
    assert_eq!(h.fake.calls(), vec![]);
    h.reconciler
        .pass(Some(&p), t0 + Duration::from_secs(2))
        .await;
    assert_eq!(h.fake.calls(), vec![Call::Pull("nowhere:1".into())]);
    assert_eq!(
        h.event_kinds(),
        Vec::<String>::new(),
        "same failure, no new event"
    );
}

#[tokio::test]
async fn replacement_with_a_missing_image_keeps_the_old_container_running() {
    let mut h = harness(&[IMAGE]);
    let old = h.fake.add(NODE, &wl(1, "h1"), ContainerState::Running);
    let new = with_image(wl(1, "h2"), "nowhere:2");
    h.reconciler
        .pass(Some(&plan(vec![new.clone()])), Instant::now())
        .await;

    assert_eq!(h.fake.calls(), vec![Call::Pull("nowhere:2".into())]);
    assert!(h.fake.container(&old).is_some());
    assert_eq!(state(&h.status(&new.id)), WorkloadState::Failed);
}

#[tokio::test]
async fn name_taken_by_an_unmanaged_container_is_reported() {
    let mut h = harness(&[IMAGE]);
    let w = wl(1, "h1");
    h.fake
        .lock()
        .foreign_names
        .insert("convoy-default-web-1-r1".into());
    h.reconciler
        .pass(Some(&plan(vec![w.clone()])), Instant::now())
        .await;
    let status = h.status(&w.id);
    assert_eq!(state(&status), WorkloadState::Failed);
    assert_eq!(
        status.reason,
        "container name `convoy-default-web-1-r1` is taken by a container Convoy does not manage"
    );
}

#[tokio::test]
async fn docker_unreachable_fails_every_workload_and_retries() {
    let mut h = harness(&[IMAGE]);
    h.fake.lock().unreachable = Some("connection refused".into());
    let p = plan(vec![wl(1, "h1")]);
    let t0 = Instant::now();
    let next = h.reconciler.pass(Some(&p), t0).await;
    let status = h.status("default/web/1");
    assert_eq!(state(&status), WorkloadState::Failed);
    assert_eq!(
        status.reason,
        "docker unreachable on node `n1`: connection refused"
    );
    assert_eq!(next, Some(t0 + UNREACHABLE_RETRY));

    h.fake.lock().unreachable = None;
    h.reconciler.pass(Some(&p), t0 + UNREACHABLE_RETRY).await;
    assert_eq!(state(&h.status("default/web/1")), WorkloadState::Running);
}

#[tokio::test]
async fn failed_start_is_reported_and_the_created_container_started_later() {
    let mut h = harness(&[IMAGE]);
    h.fake.lock().start_error = Some("port is already allocated".into());
    let w = wl(1, "h1");
    let p = plan(vec![w.clone()]);
    let t0 = Instant::now();
    h.reconciler.pass(Some(&p), t0).await;
    let status = h.status(&w.id);
    assert_eq!(state(&status), WorkloadState::Failed);
    assert!(
        status.reason.contains("port is already allocated"),
        "{}",
        status.reason
    );
    assert_eq!(h.event_kinds(), vec!["failed"]);

    h.fake.lock().start_error = None;
    h.fake.take_calls();
    h.reconciler
        .pass(Some(&p), t0 + Duration::from_secs(2))
        .await;
    let calls = h.fake.calls();
    assert!(matches!(calls.as_slice(), [Call::Start(_)]), "{calls:?}");
    let status = h.status(&w.id);
    assert_eq!(state(&status), WorkloadState::Running);
    assert_eq!(status.restarts, 0);
}

#[tokio::test]
async fn container_removed_by_hand_is_recreated_and_counted_as_a_restart() {
    let mut h = harness(&[IMAGE]);
    let w = wl(1, "h1");
    let p = plan(vec![w.clone()]);
    h.reconciler.pass(Some(&p), Instant::now()).await;
    let id = h.status(&w.id).container_id;
    h.fake.lock().containers.retain(|c| c.id != id);
    h.reconciler.pass(Some(&p), Instant::now()).await;

    let status = h.status(&w.id);
    assert_eq!(state(&status), WorkloadState::Running);
    assert_ne!(status.container_id, id);
    assert_eq!(status.restarts, 1);
}

#[tokio::test]
async fn unchanged_statuses_keep_their_timestamp() {
    let mut h = harness(&[IMAGE]);
    let p = plan(vec![wl(1, "h1")]);
    h.reconciler.pass(Some(&p), Instant::now()).await;
    let first = h.status("default/web/1");
    h.snapshot.mark_unchanged();
    std::thread::sleep(Duration::from_millis(5));
    h.reconciler.pass(Some(&p), Instant::now()).await;
    assert_eq!(h.status("default/web/1"), first);
    assert!(
        !h.snapshot.has_changed().unwrap(),
        "published without a change"
    );
}

#[tokio::test]
async fn repeated_workload_ids_in_a_plan_create_no_container() {
    // Issue 13: a plan repeating an id is refused whole at the boundary
    // (it used to be reconciled with the first one winning); the session
    // acks it as failed and the plan in force stays (session tests).
    let wire = NodePlan {
        generation: 1,
        workloads: vec![wl(1, "h1"), wl(1, "h2")],
        ..Default::default()
    };
    assert_eq!(
        Plan::try_from(wire),
        Err(crate::plan::InvalidPlan::DuplicateId {
            id: "default/web/1".into(),
            first: 1,
            again: 2
        })
    );
    let mut h = harness(&[IMAGE]);
    h.reconciler.pass(None, Instant::now()).await;
    assert!(h.fake.containers_of("default/web/1").is_empty());
}

// ---- health ----

fn events(h: &mut Harness) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(e) = h.events.try_recv() {
        out.push(e);
    }
    out
}

fn health(status: &WorkloadStatus) -> Health {
    Health::try_from(status.health).unwrap()
}

fn with_exec_probe(mut w: Workload, program: &str) -> Workload {
    w.probes = vec![convoy_proto::Probe {
        name: "ready".into(),
        interval_ms: 30,
        timeout_ms: 1000,
        failure_threshold: 1,
        success_threshold: 1,
        start_period_ms: 0,
        check: Some(convoy_proto::probe::Check::Exec(convoy_proto::ExecProbe {
            command: vec![program.into()],
        })),
    }];
    w
}

#[tokio::test]
async fn instance_without_checks_has_no_health() {
    let mut h = harness(&[IMAGE]);
    h.reconciler
        .pass(Some(&plan(vec![wl(1, "h1")])), Instant::now())
        .await;
    let status = h.status("default/web/1");
    assert_eq!(health(&status), Health::Unspecified);
    assert_eq!(
        (status.failing_probe.as_str(), status.health_output.as_str()),
        ("", "")
    );
}

#[tokio::test]
async fn docker_health_reaches_the_status_and_its_changes_are_events() {
    let mut h = harness(&[IMAGE]);
    let p = plan(vec![wl(1, "h1")]);
    h.reconciler.pass(Some(&p), Instant::now()).await;
    let id = h.status("default/web/1").container_id;
    h.fake.set_health(
        &id,
        Some(DockerHealth {
            status: Health::Starting,
            output: String::new(),
        }),
    );
    h.reconciler.pass(Some(&p), Instant::now()).await;
    assert_eq!(health(&h.status("default/web/1")), Health::Starting);
    events(&mut h);

    h.fake.set_health(
        &id,
        Some(DockerHealth {
            status: Health::Unhealthy,
            output: "exit code 1: HTTP/1.1 500 Internal Server Error".into(),
        }),
    );
    h.reconciler.pass(Some(&p), Instant::now()).await;
    let status = h.status("default/web/1");
    assert_eq!(health(&status), Health::Unhealthy);
    assert_eq!(status.failing_probe, "docker");
    assert_eq!(
        status.health_output,
        "exit code 1: HTTP/1.1 500 Internal Server Error"
    );
    let seen = events(&mut h);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].kind, "unhealthy");
    assert_eq!(
        seen[0].message,
        "`convoy-default-web-1-r1` is unhealthy: Docker's healthcheck fails: exit code 1: \
         HTTP/1.1 500 Internal Server Error"
    );
    // Unchanged health: no second event.
    h.reconciler.pass(Some(&p), Instant::now()).await;
    assert!(events(&mut h).is_empty());

    h.fake.set_health(
        &id,
        Some(DockerHealth {
            status: Health::Healthy,
            output: "HTTP/1.1 200 OK".into(),
        }),
    );
    h.reconciler.pass(Some(&p), Instant::now()).await;
    let status = h.status("default/web/1");
    assert_eq!(health(&status), Health::Healthy);
    assert_eq!(status.failing_probe, "");
    let seen = events(&mut h);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].kind, "healthy");
    assert_eq!(
        seen[0].message,
        "`convoy-default-web-1-r1` is healthy again: `docker`: HTTP/1.1 200 OK"
    );
}

#[tokio::test]
async fn an_exited_container_has_no_health_whatever_docker_said() {
    let mut h = harness(&[IMAGE]);
    let p = plan(vec![with_restart(wl(1, "h1"), Condition::None, 0)]);
    h.reconciler.pass(Some(&p), Instant::now()).await;
    let id = h.status("default/web/1").container_id;
    h.fake.set_health(
        &id,
        Some(DockerHealth {
            status: Health::Unhealthy,
            output: "x".into(),
        }),
    );
    h.fake.exit(&id, 1, Duration::from_secs(1));
    h.reconciler.pass(Some(&p), Instant::now()).await;
    assert_eq!(health(&h.status("default/web/1")), Health::Unspecified);
}

/// Waits until the snapshot shows `want` for the workload, at most 5 s.
async fn until_health(snapshot: &mut watch::Receiver<Snapshot>, id: &str, want: Health) {
    let found = tokio::time::timeout(
        Duration::from_secs(5),
        snapshot.wait_for(|s| s.statuses.get(id).is_some_and(|st| health(st) == want)),
    )
    .await
    .map(|_| ());
    assert!(
        found.is_ok(),
        "{id} never {want:?}: {:?}",
        snapshot.borrow().statuses.get(id)
    );
}

#[tokio::test]
async fn probe_results_reach_the_status_and_probes_stop_with_their_workload() {
    let Harness {
        fake,
        reconciler,
        mut snapshot,
        mut events,
    } = harness(&[IMAGE]);
    fake.lock().programs.insert(
        "/check".into(),
        crate::runtime::ExecOutput {
            exit_code: Some(0),
            output: "fine".into(),
        },
    );
    let w = with_exec_probe(wl(1, "h1"), "/check");
    let (plan_tx, plan_rx) = watch::channel(Some(Arc::new(plan(vec![w.clone()]))));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(reconciler.run(plan_rx, shutdown.clone()));

    until_health(&mut snapshot, &w.id, Health::Healthy).await;
    let status = snapshot.borrow().statuses[&w.id].clone();
    assert_eq!(status.failing_probe, "");

    // The check starts failing: unhealthy, with the probe's name and output.
    fake.lock().programs.insert(
        "/check".into(),
        crate::runtime::ExecOutput {
            exit_code: Some(1),
            output: "db unreachable".into(),
        },
    );
    until_health(&mut snapshot, &w.id, Health::Unhealthy).await;
    let status = snapshot.borrow().statuses[&w.id].clone();
    assert_eq!(status.failing_probe, "ready");
    assert_eq!(status.health_output, "exit code 1: db unreachable");
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        if e.kind == "unhealthy" {
            assert!(
                e.message
                    .contains("probe `ready` fails: exit code 1: db unreachable"),
                "{}",
                e.message
            );
        }
        kinds.push(e.kind);
    }
    assert_eq!(kinds, ["healthy", "unhealthy"]);

    // The workload leaves the plan: its container goes, and so do its probes.
    plan_tx.send_replace(Some(Arc::new(plan(vec![]))));
    tokio::time::timeout(
        Duration::from_secs(5),
        snapshot.wait_for(|s| s.statuses.is_empty() && s.containers == 0),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.take_calls();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let execs: Vec<Call> = fake
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Exec { .. }))
        .collect();
    assert!(execs.is_empty(), "probes ran on: {execs:?}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

// ---- the runner: workloads reconciled independently ----

/// Waits until the snapshot satisfies `f`, at most 5 s.
async fn until(
    snapshot: &mut watch::Receiver<Snapshot>,
    what: &str,
    f: impl Fn(&Snapshot) -> bool,
) {
    let found = tokio::time::timeout(Duration::from_secs(5), snapshot.wait_for(|s| f(s)))
        .await
        .map(|_| ());
    assert!(found.is_ok(), "never {what}: {:?}", snapshot.borrow());
}

fn running(s: &Snapshot, id: &str) -> bool {
    s.statuses
        .get(id)
        .is_some_and(|st| state(st) == WorkloadState::Running)
}

#[tokio::test]
async fn a_slow_image_pull_does_not_delay_another_workloads_create() {
    let Harness {
        fake,
        reconciler,
        mut snapshot,
        ..
    } = harness(&[IMAGE]);
    let gate = Arc::new(tokio::sync::Notify::new());
    {
        let mut s = fake.lock();
        s.pullable.insert("slow:1".into());
        s.pull_gates.insert("slow:1".into(), gate.clone());
    }
    let slow = with_image(wl(1, "h1"), "slow:1");
    let fast = wl(2, "h1");
    let (plan_tx, plan_rx) = watch::channel(Some(Arc::new(plan(vec![slow.clone(), fast.clone()]))));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(reconciler.run(plan_rx, shutdown.clone()));

    until(&mut snapshot, "the fast workload running", |s| {
        running(s, &fast.id)
    })
    .await;
    assert!(fake.containers_of(&slow.id).is_empty());
    assert_eq!(
        state(&snapshot.borrow().statuses[&slow.id]),
        WorkloadState::Pending
    );

    // A workload added while the pull still hangs is created at once too.
    let later = wl(3, "h1");
    plan_tx.send_replace(Some(Arc::new(plan(vec![
        slow.clone(),
        fast.clone(),
        later.clone(),
    ]))));
    until(&mut snapshot, "the later workload running", |s| {
        running(s, &later.id)
    })
    .await;

    // The pull ends: the slow workload catches up.
    gate.notify_one();
    until(&mut snapshot, "the slow workload running", |s| {
        running(s, &slow.id)
    })
    .await;
    let pulls = fake
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Pull(_)))
        .count();
    assert_eq!(pulls, 1, "one pull, however often the others woke the loop");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_workload_has_one_action_in_flight_however_often_the_loop_wakes() {
    let Harness {
        fake,
        reconciler,
        mut snapshot,
        ..
    } = harness(&[IMAGE]);
    let gate = Arc::new(tokio::sync::Notify::new());
    {
        let mut s = fake.lock();
        s.pullable.insert("slow:1".into());
        s.pull_gates.insert("slow:1".into(), gate.clone());
    }
    let slow = with_image(wl(1, "h1"), "slow:1");
    let (plan_tx, plan_rx) = watch::channel(Some(Arc::new(plan(vec![slow.clone()]))));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(reconciler.run(plan_rx, shutdown.clone()));

    // New plans (each a sync that finds the container still missing).
    for generation in 2..20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        plan_tx.send_replace(Some(Arc::new(
            Plan::try_from(NodePlan {
                generation,
                workloads: vec![slow.clone()],
                ..Default::default()
            })
            .unwrap(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(fake.calls(), vec![Call::Pull("slow:1".into())]);

    gate.notify_one();
    until(&mut snapshot, "the workload running", |s| {
        running(s, &slow.id)
    })
    .await;
    assert_eq!(fake.containers_of(&slow.id).len(), 1, "created twice");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

// ---- depends_on ----

fn service(name: &str, index: u32, hash: &str) -> Workload {
    let mut w = wl(index, hash);
    w.id = format!("default/{name}/{index}");
    w.service = name.into();
    w
}

fn depending_on(
    mut w: Workload,
    on: &str,
    condition: convoy_proto::dependency::Condition,
) -> Workload {
    if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
        spec.depends_on.push(convoy_proto::Dependency {
            service: on.into(),
            condition: condition as i32,
            restart: false,
        });
    }
    w
}

fn created(fake: &FakeRuntime, workload_id: &str) -> bool {
    !fake.containers_of(workload_id).is_empty()
}

/// Issue 14: `depends_on: {db: {condition: service_healthy}}`.
#[tokio::test(start_paused = true)]
async fn a_workload_is_created_only_once_its_dependency_on_the_node_is_healthy() {
    use convoy_proto::dependency::Condition as Dep;
    let mut h = harness(&[IMAGE]);
    let db = service("db", 1, "d1");
    let web = depending_on(service("web", 1, "w1"), "db", Dep::Healthy);
    let p = plan(vec![db.clone(), web.clone()]);

    h.reconciler.pass(Some(&p), Instant::now()).await;
    assert!(created(&h.fake, &db.id));
    assert!(!created(&h.fake, &web.id), "web must wait for db");
    let status = h.status(&web.id);
    assert_eq!(state(&status), WorkloadState::Pending, "{status:?}");
    assert_eq!(status.reason, "waiting for `db` to be healthy (depends_on)");

    // Running, its healthcheck still starting: web still waits.
    let db_id = h.fake.containers_of(&db.id)[0].id.clone();
    h.fake.set_health(
        &db_id,
        Some(DockerHealth {
            status: Health::Starting,
            output: String::new(),
        }),
    );
    h.reconciler.pass(Some(&p), Instant::now()).await;
    h.reconciler.pass(Some(&p), Instant::now()).await;
    assert!(!created(&h.fake, &web.id), "web must wait for db's health");

    h.fake.set_health(
        &db_id,
        Some(DockerHealth {
            status: Health::Healthy,
            output: String::new(),
        }),
    );
    // The first pass reports db healthy, the next one creates web.
    h.reconciler.pass(Some(&p), Instant::now()).await;
    h.reconciler.pass(Some(&p), Instant::now()).await;
    assert!(created(&h.fake, &web.id), "db is healthy: web is created");
    assert_eq!(state(&h.status(&web.id)), WorkloadState::Running);

    // Once started, db turning unhealthy does not stop web (as Compose).
    h.fake.set_health(
        &db_id,
        Some(DockerHealth {
            status: Health::Unhealthy,
            output: "down".into(),
        }),
    );
    h.reconciler.pass(Some(&p), Instant::now()).await;
    h.reconciler.pass(Some(&p), Instant::now()).await;
    assert_eq!(state(&h.status(&web.id)), WorkloadState::Running);
    assert!(h
        .fake
        .calls()
        .iter()
        .all(|c| !matches!(c, Call::StopRemove(_))));
}

#[tokio::test(start_paused = true)]
async fn a_replacement_waits_for_the_new_spec_of_its_dependency_and_the_old_container_keeps_running(
) {
    use convoy_proto::dependency::Condition as Dep;
    let mut h = harness(&[IMAGE]);
    let db = service("db", 1, "d1");
    let web = depending_on(service("web", 1, "w1"), "db", Dep::Started);
    h.reconciler
        .pass(Some(&plan(vec![db.clone(), web.clone()])), Instant::now())
        .await;
    h.reconciler
        .pass(Some(&plan(vec![db.clone(), web.clone()])), Instant::now())
        .await;
    assert!(created(&h.fake, &web.id));
    let old_web = h.fake.containers_of(&web.id)[0].id.clone();

    // Both change; the new db cannot start (its image is missing), so the
    // new web waits and the old web keeps serving.
    let db2 = with_image(service("db", 1, "d2"), "db:missing");
    let web2 = depending_on(service("web", 1, "w2"), "db", Dep::Started);
    let p = plan(vec![db2, web2.clone()]);
    h.reconciler.pass(Some(&p), Instant::now()).await;
    h.reconciler.pass(Some(&p), Instant::now()).await;
    let webs = h.fake.containers_of(&web.id);
    assert_eq!(webs.len(), 1, "{webs:?}");
    assert_eq!(webs[0].id, old_web);
    assert_eq!(
        h.status(&web2.id).reason,
        "waiting for `db` to start (depends_on)"
    );
}

#[tokio::test(start_paused = true)]
async fn completed_successfully_waits_for_a_clean_exit_and_a_dependency_elsewhere_is_not_checked() {
    use convoy_proto::dependency::Condition as Dep;
    let mut h = harness(&[IMAGE]);
    let migrate = with_restart(service("migrate", 1, "m1"), Condition::None, 0);
    let web = depending_on(
        depending_on(
            service("web", 1, "w1"),
            "migrate",
            Dep::CompletedSuccessfully,
        ),
        "cache",
        Dep::Healthy,
    );
    let p = plan(vec![migrate.clone(), web.clone()]);
    h.reconciler.pass(Some(&p), Instant::now()).await;
    h.reconciler.pass(Some(&p), Instant::now()).await;
    assert!(!created(&h.fake, &web.id), "migrate still runs");
    assert_eq!(
        h.status(&web.id).reason,
        "waiting for `migrate` to complete successfully (depends_on)"
    );
    let m = h.fake.containers_of(&migrate.id)[0].id.clone();
    h.fake.exit(&m, 0, Duration::from_secs(1));
    h.reconciler.pass(Some(&p), Instant::now()).await;
    h.reconciler.pass(Some(&p), Instant::now()).await;
    // `cache` has no instance on this node: not checked.
    assert!(created(&h.fake, &web.id));
}

#[test]
fn a_failed_dependency_is_not_met() {
    use convoy_proto::dependency::Condition as Dep;
    let db = service("db", 1, "d1");
    let web = depending_on(service("web", 1, "w1"), "db", Dep::CompletedSuccessfully);
    let plan = [db.clone(), web.clone()];
    let status = |state: WorkloadState, code: i64, hash: &str| {
        BTreeMap::from([(
            db.id.clone(),
            WorkloadStatus {
                id: db.id.clone(),
                spec_hash: hash.into(),
                state: state as i32,
                exit_code: code,
                ..WorkloadStatus::default()
            },
        )])
    };
    assert!(unmet(&web, &plan, &status(WorkloadState::Exited, 1, "d1"))
        .waiting
        .is_some());
    assert!(unmet(&web, &plan, &status(WorkloadState::Exited, 0, "d0"))
        .waiting
        .is_some());
    assert_eq!(
        unmet(&web, &plan, &status(WorkloadState::Exited, 0, "d1")),
        Gate::default()
    );
}

fn with_pull_policy(mut w: Workload, policy: &str) -> Workload {
    if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
        spec.pull_policy = policy.into();
    }
    w
}

/// Issue 14: `pull_policy: always` pulls even an image the node has;
/// `never` never pulls and fails naming the policy; the default pulls only
/// what is missing.
#[tokio::test]
async fn pull_policy_decides_when_an_image_is_pulled() {
    let mut h = harness(&[IMAGE]);
    h.fake.lock().pullable.insert(IMAGE.into());
    let always = with_pull_policy(wl(1, "h1"), "always");
    h.reconciler
        .pass(Some(&plan(vec![always.clone()])), Instant::now())
        .await;
    assert_eq!(h.fake.calls()[0], Call::Pull(IMAGE.into()));
    assert_eq!(state(&h.status(&always.id)), WorkloadState::Running);

    let mut h = harness(&[]);
    let never = with_pull_policy(with_image(wl(1, "h1"), "absent:1"), "never");
    h.reconciler
        .pass(Some(&plan(vec![never.clone()])), Instant::now())
        .await;
    assert!(
        !h.fake.calls().iter().any(|c| matches!(c, Call::Pull(_))),
        "{:?}",
        h.fake.calls()
    );
    let status = h.status(&never.id);
    assert_eq!(state(&status), WorkloadState::Failed);
    assert!(
        status
            .reason
            .starts_with("image `absent:1` not found on node `n1`: `pull_policy: never`"),
        "{}",
        status.reason
    );

    // The default: the image is there, no pull.
    let mut h = harness(&[IMAGE]);
    let w = wl(1, "h1");
    h.reconciler
        .pass(Some(&plan(vec![w.clone()])), Instant::now())
        .await;
    assert!(!h.fake.calls().iter().any(|c| matches!(c, Call::Pull(_))));
}

#[tokio::test]
async fn a_pull_gets_the_plan_login_of_its_image_registry_and_no_other() {
    let private = "127.0.0.1:5000/team/app:1";
    let mut h = harness(&[]);
    h.fake.lock().pullable.insert(private.into());
    h.fake.lock().pullable.insert("nginx:1".into());
    let a = with_image(wl(1, "h1"), private);
    let mut b = with_image(wl(1, "h1"), "nginx:1");
    b.id = "default/other/1".into();
    b.service = "other".into();
    let login = |server: &str, user: &str| convoy_proto::RegistryAuth {
        server: server.into(),
        username: user.into(),
        password: "pw".into(),
    };
    let p = Plan::try_from(NodePlan {
        generation: 1,
        workloads: vec![a.clone(), b.clone()],
        registry_auths: vec![login("127.0.0.1:5000", "ci"), login("r.example", "x")],
        secret_values: Vec::new(),
        swarm_driver: false,
    })
    .unwrap();
    assert!(!format!("{p:?}").contains("\"pw\""), "{p:?}");
    h.reconciler.pass(Some(&p), Instant::now()).await;
    let mut logins = h.fake.lock().pull_logins.clone();
    logins.sort();
    assert_eq!(
        logins,
        vec![None, Some(("127.0.0.1:5000".to_string(), "ci".to_string()))]
    );
    assert_eq!(state(&h.status(&a.id)), WorkloadState::Running);
    assert_eq!(state(&h.status(&b.id)), WorkloadState::Running);
}

/// Issue 14: `depends_on: {db: {restart: true}}`: once db's instance on the
/// node was replaced (its container is newer than web's), web is replaced
/// too; without `restart`, or with db older, web is left as it runs.
#[test]
fn a_dependency_replaced_after_the_dependent_replaces_it_with_restart_true() {
    use convoy_proto::dependency::Condition as Dep;
    let db = service("db", 1, "d2");
    let with_restart = |restart: bool| {
        let mut web = depending_on(service("web", 1, "w1"), "db", Dep::Started);
        if let Some(workload::Runtime::Container(spec)) = &mut web.runtime {
            spec.depends_on[0].restart = restart;
        }
        web
    };
    let decide_with = |web: &Workload, db_created: i64| {
        let mut web_ct = obs("web-c", web, ContainerState::Running);
        web_ct.created_unix = 100;
        let mut db_ct = obs("db-c", &db, ContainerState::Running);
        db_ct.created_unix = db_created;
        decide(
            &[db.clone(), web.clone()],
            &[db_ct, web_ct],
            &RestartBook::default(),
            Instant::now(),
        )
    };
    let web = with_restart(true);
    assert_eq!(
        decide_with(&web, 200),
        vec![Action::Replace {
            workload: web.clone(),
            old: vec!["web-c".into()],
        }]
    );
    // db made before web (web already restarted, or first deploy): stays.
    assert_eq!(decide_with(&web, 100), vec![]);
    assert_eq!(decide_with(&web, 50), vec![]);
    // Without `restart: true`, db's replacement leaves web alone.
    assert_eq!(decide_with(&with_restart(false), 200), vec![]);
}

// ---- secrets ----

fn with_secret(mut w: Workload, name: &str, version: u64) -> Workload {
    if let Some(workload::Runtime::Container(spec)) = &mut w.runtime {
        spec.secrets.push(convoy_proto::SecretMount {
            name: name.into(),
            version,
            target: format!("/run/secrets/{name}"),
            ..Default::default()
        });
        // The files are owned by the container's user: this test's.
        spec.user = rustix::process::getuid().as_raw().to_string();
    }
    w
}

fn plan_with_values(workloads: Vec<Workload>, values: &[(&str, u64, &[u8])]) -> Plan {
    Plan::try_from(NodePlan {
        generation: 1,
        workloads,
        secret_values: values
            .iter()
            .map(|(name, version, value)| convoy_proto::SecretValue {
                env: "default".into(),
                name: name.to_string(),
                version: *version,
                value: value.to_vec(),
            })
            .collect(),
        ..Default::default()
    })
    .unwrap()
}

fn secrets_harness(dir: &std::path::Path) -> (Harness, Arc<NodeSecrets>) {
    let h = harness(&[IMAGE]);
    let secrets = Arc::new(NodeSecrets::unchecked(dir.join("secrets")).unwrap());
    let Harness {
        fake,
        reconciler,
        snapshot,
        events,
    } = h;
    let reconciler = reconciler.with_secrets(secrets.clone());
    (
        Harness {
            fake,
            reconciler,
            snapshot,
            events,
        },
        secrets,
    )
}

#[tokio::test]
async fn a_workload_whose_secret_the_plan_lacks_fails_naming_it_and_the_others_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut h, _) = secrets_harness(tmp.path());
    let p = plan_with_values(
        vec![
            with_secret(wl(1, "h1"), "db", 1),
            with_secret(wl(2, "h1"), "api", 2),
            wl(3, "h1"),
        ],
        &[("db", 1, b"s3cret-canary"), ("api", 1, b"old")],
    );
    h.reconciler.pass(Some(&p), Instant::now()).await;

    assert_eq!(state(&h.status("default/web/1")), WorkloadState::Running);
    assert_eq!(state(&h.status("default/web/3")), WorkloadState::Running);
    let failed = h.status("default/web/2");
    assert_ne!(state(&failed), WorkloadState::Running, "{failed:?}");
    assert!(
        failed.reason.contains("secret `api` v2") && failed.reason.contains("default/web/2"),
        "{}",
        failed.reason
    );
    assert!(!failed.reason.contains("old"), "{}", failed.reason);
    // The running one got its file, bind-mounted at its target.
    let delivery = h.fake.lock().deliveries["default/web/1"].clone();
    assert_eq!(delivery.files.len(), 1);
    assert_eq!(delivery.files[0].target, "/run/secrets/db");
    assert_eq!(
        std::fs::read(&delivery.files[0].source).unwrap(),
        b"s3cret-canary"
    );
    assert!(h.fake.lock().deliveries["default/web/3"].is_empty());
}

#[tokio::test]
async fn files_of_a_removed_container_are_collected() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut h, secrets) = secrets_harness(tmp.path());
    let w = with_secret(wl(1, "h1"), "db", 1);
    let p = plan_with_values(vec![w.clone()], &[("db", 1, b"v")]);
    h.reconciler.pass(Some(&p), Instant::now()).await;
    let dir = secrets.dir().join("containers").join(container_name(&w));
    assert!(dir.is_dir());
    h.reconciler.pass(Some(&plan(vec![])), Instant::now()).await;
    h.reconciler.pass(Some(&plan(vec![])), Instant::now()).await;
    assert!(h.fake.lock().containers.is_empty());
    assert!(!dir.exists());
}

/// The agent restarted without its coordinator: the stored plan's values
/// come from the node's cache, and a consumer that dies is started again
/// with its files written anew.
#[tokio::test]
async fn a_dead_consumer_is_restarted_with_its_secret_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut h, secrets) = secrets_harness(tmp.path());
    let w = with_secret(wl(1, "h1"), "db", 1);
    let from_coordinator = plan_with_values(vec![w.clone()], &[("db", 1, b"cached-canary")]);
    secrets
        .store_cache(from_coordinator.secret_values())
        .unwrap();
    // After the restart: plan.pb (no values) plus the cache.
    let stored = Plan::try_from(from_coordinator.to_stored()).unwrap();
    let values = secrets.load_cache(stored.secret_refs());
    let p = stored.clone().with_secret_values(values);

    let id = h.fake.add(NODE, &w, ContainerState::Running);
    h.fake.exit(&id, 1, Duration::from_secs(1));
    let dir = secrets.dir().join("containers").join(container_name(&w));
    std::fs::remove_dir_all(&dir).ok();
    let t0 = Instant::now();
    h.reconciler.pass(Some(&p), t0).await;
    h.reconciler
        .pass(Some(&p), t0 + Duration::from_secs(5))
        .await;
    assert!(
        h.fake.calls().contains(&Call::Start(id.clone())),
        "{:?}",
        h.fake.calls()
    );
    assert_eq!(state(&h.status("default/web/1")), WorkloadState::Running);
    assert_eq!(std::fs::read(dir.join("0")).unwrap(), b"cached-canary");

    // A reboot cleared the cache: the consumer waits for the coordinator.
    std::fs::remove_dir_all(secrets.dir().join("values")).unwrap();
    let empty = secrets.load_cache(stored.secret_refs());
    let p = Plan::try_from(from_coordinator.to_stored())
        .unwrap()
        .with_secret_values(empty);
    h.fake.exit(&id, 1, Duration::from_secs(1));
    std::fs::remove_dir_all(&dir).ok();
    let t1 = t0 + Duration::from_secs(10);
    h.reconciler.pass(Some(&p), t1).await;
    h.reconciler
        .pass(Some(&p), t1 + Duration::from_secs(600))
        .await;
    let status = h.status("default/web/1");
    assert!(
        status.reason.contains("coordinator is reachable again"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_replaced_container_in_a_proxy_pool_is_drained_before_it_stops() {
    use std::collections::{HashMap, HashSet};
    let mut h = harness(&[IMAGE]);
    let old = h.fake.add(NODE, &wl(1, "h1"), ContainerState::Running);
    let pools = crate::proxy::Pools::new();
    let service = crate::proxy::ServiceKey {
        env: "default".into(),
        service: "web".into(),
    };
    pools.install(
        &crate::proxy::Wanted {
            routes: Vec::new(),
            candidates: vec![crate::proxy::Candidate {
                service: service.clone(),
                container_id: old.clone(),
                workload_id: "default/web/1".into(),
                revision: 1,
                drain_timeout: Duration::from_secs(10),
            }],
            conflicts: Vec::new(),
            splits: Default::default(),
            actives: Default::default(),
        },
        &HashMap::from([(old.clone(), "10.0.0.2".parse().unwrap())]),
        &HashSet::from([old.clone()]),
    );
    // A request to the old container is in flight.
    let (_, request) = pools.pick(&service, &[]).expect("the old container serves");
    h.reconciler = h.reconciler.with_drains(pools.clone());
    let mut new = wl(1, "h2");
    new.revision = 2;
    let fake = h.fake.clone();
    let mut reconciler = h.reconciler;
    let started = Instant::now();
    let pass = tokio::spawn(async move {
        reconciler
            .pass(Some(&plan(vec![new])), Instant::now())
            .await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !fake.calls().contains(&Call::StopRemove(old.clone())),
        "stopped with a request in flight: {:?}",
        fake.calls()
    );
    // Out of the pool already: no new request reaches it.
    assert!(pools.pick(&service, &[]).is_none());
    drop(request);
    pass.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        fake.calls(),
        vec![
            Call::StopRemove(old.clone()),
            Call::Create {
                workload_id: "default/web/1".into(),
                name: "convoy-default-web-1-r2".into(),
            },
        ]
    );
}

//! The driver against a recording fake of the Swarm API.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bollard::models::{
    NetworkCreateRequest, Node, NodeDescription, ObjectVersion, SecretSpec, Service, ServiceSpec,
    ServiceUpdateStatus, ServiceUpdateStatusStateEnum, Task, TaskSpec, TaskSpecContainerSpec,
    TaskState, TaskStatus,
};
use convoy_proto::{
    workload, ConfigFile, ContainerSpec, Health, HealthCheck, NodePlan, PortMapping, SecretMount,
    SecretValue, SwarmNetwork, SwarmServiceSpec, SwarmUpdateConfig, Workload,
};

use super::api::{SwarmNetworkInfo, SwarmSecretInfo};
use super::*;

#[derive(Default)]
struct World {
    services: Vec<Service>,
    networks: Vec<SwarmNetworkInfo>,
    /// name → (id, base64 data)
    secrets: Vec<(String, String, String)>,
    tasks: HashMap<String, Vec<Task>>,
    calls: Vec<String>,
    /// The engine does not answer: every list fails, counted here.
    down: bool,
    lists: u32,
}

#[derive(Default)]
struct Fake(Mutex<World>);

impl Fake {
    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap().calls)
    }
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }
}

#[async_trait]
impl SwarmApi for Fake {
    async fn list_services(&self) -> Result<Vec<Service>, String> {
        let mut w = self.world();
        w.lists += 1;
        if w.down {
            return Err("connection refused".into());
        }
        Ok(w.services.clone())
    }
    async fn create_service(&self, spec: ServiceSpec) -> Result<(), String> {
        let mut w = self.world();
        w.calls
            .push(format!("create {}", spec.name.clone().unwrap_or_default()));
        w.services.push(Service {
            id: spec.name.clone(),
            version: Some(ObjectVersion { index: Some(1) }),
            spec: Some(spec),
            ..Default::default()
        });
        Ok(())
    }
    async fn update_service(
        &self,
        name: &str,
        version: u64,
        spec: ServiceSpec,
    ) -> Result<(), String> {
        let mut w = self.world();
        w.calls.push(format!("update {name} from v{version}"));
        let svc = w
            .services
            .iter_mut()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))
            .ok_or("no such service")?;
        svc.spec = Some(spec);
        svc.version = Some(ObjectVersion {
            index: Some(version + 1),
        });
        Ok(())
    }
    async fn remove_service(&self, name: &str) -> Result<(), String> {
        let mut w = self.world();
        w.calls.push(format!("remove {name}"));
        w.services
            .retain(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) != Some(name));
        Ok(())
    }
    async fn list_tasks(&self, name: &str) -> Result<Vec<Task>, String> {
        Ok(self.world().tasks.get(name).cloned().unwrap_or_default())
    }
    async fn list_nodes(&self) -> Result<Vec<Node>, String> {
        Ok(vec![Node {
            id: Some("n1".into()),
            description: Some(NodeDescription {
                hostname: Some("host-1".into()),
                ..Default::default()
            }),
            ..Default::default()
        }])
    }
    async fn list_networks(&self) -> Result<Vec<SwarmNetworkInfo>, String> {
        Ok(self.world().networks.clone())
    }
    async fn create_network(&self, request: NetworkCreateRequest) -> Result<(), String> {
        let mut w = self.world();
        w.calls.push(format!("create network {}", request.name));
        let name = request.name.clone();
        w.networks.push(SwarmNetworkInfo {
            id: format!("id-{name}"),
            name,
        });
        Ok(())
    }
    async fn remove_network(&self, id: &str) -> Result<(), String> {
        let mut w = self.world();
        w.calls.push(format!("remove network {id}"));
        w.networks.retain(|n| n.id != id);
        Ok(())
    }
    async fn list_secrets(&self) -> Result<Vec<SwarmSecretInfo>, String> {
        Ok(self
            .world()
            .secrets
            .iter()
            .map(|(name, id, _)| SwarmSecretInfo {
                id: id.clone(),
                name: name.clone(),
            })
            .collect())
    }
    async fn create_secret(&self, spec: SecretSpec) -> Result<String, String> {
        let mut w = self.world();
        let name = spec.name.clone().unwrap_or_default();
        w.calls.push(format!("create secret {name}"));
        let id = format!("sid-{name}");
        w.secrets
            .push((name, id.clone(), spec.data.unwrap_or_default()));
        Ok(id)
    }
    async fn remove_secret(&self, id: &str) -> Result<(), String> {
        let mut w = self.world();
        w.calls.push(format!("remove secret {id}"));
        w.secrets.retain(|(_, sid, _)| sid != id);
        Ok(())
    }
}

fn workload(hash: &str, revision: u64, replicas: u32) -> Workload {
    Workload {
        id: "prod/web/1".into(),
        service: "web".into(),
        env: "prod".into(),
        index: 1,
        revision,
        spec_hash: hash.into(),
        runtime: Some(workload::Runtime::Swarm(SwarmServiceSpec {
            name: "prod_web".into(),
            cluster: "C1".into(),
            container: Some(ContainerSpec {
                image: format!("app:{revision}"),
                command: vec!["serve".into()],
                entrypoint: vec!["/app".into()],
                env: [("A".to_string(), "1".to_string())].into(),
                ports: vec![PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: "tcp".into(),
                    mode: "host".into(),
                    ..Default::default()
                }],
                extra_hosts: vec!["db:10.0.0.5".into()],
                nano_cpus: 500_000_000,
                memory_bytes: 64 << 20,
                healthcheck: Some(HealthCheck {
                    test: vec!["CMD".into(), "/app".into(), "--probe".into()],
                    interval_ms: 1000,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            replicas,
            constraints: vec!["node.role==worker".into()],
            spread: vec!["node.labels.zone".into()],
            update: Some(SwarmUpdateConfig {
                parallelism: 1,
                failure_action: "rollback".into(),
                monitor_ms: 2000,
                ..Default::default()
            }),
            networks: vec![SwarmNetwork {
                name: "back".into(),
                aliases: vec!["api".into()],
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn plan(workloads: Vec<Workload>, driver: bool) -> Plan {
    plan_with(workloads, driver, vec![])
}

fn plan_with(workloads: Vec<Workload>, driver: bool, secret_values: Vec<SecretValue>) -> Plan {
    Plan::try_from(NodePlan {
        generation: 1,
        workloads,
        registry_auths: vec![],
        secret_values,
        swarm_driver: driver,
    })
    .unwrap()
}

fn task(id: &str, slot: i64, version: u64, state: TaskState, revision: u64) -> Task {
    Task {
        id: Some(id.into()),
        version: Some(ObjectVersion {
            index: Some(version),
        }),
        slot: Some(slot),
        node_id: Some("n1".into()),
        desired_state: Some(if state == TaskState::SHUTDOWN {
            TaskState::SHUTDOWN
        } else {
            TaskState::RUNNING
        }),
        status: Some(TaskStatus {
            state: Some(state),
            err: (state == TaskState::FAILED).then(|| "exit 137".to_string()),
            ..Default::default()
        }),
        spec: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                labels: Some([(labels::REVISION.to_string(), revision.to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn driver(
    fake: Arc<Fake>,
) -> (
    SwarmDriver<Fake>,
    watch::Receiver<BTreeMap<String, WorkloadStatus>>,
    broadcast::Receiver<Event>,
) {
    let (tx, rx) = watch::channel(BTreeMap::new());
    let (etx, erx) = broadcast::channel(16);
    (SwarmDriver::new(fake, tx, etx), rx, erx)
}

#[test]
fn the_engine_spec_carries_every_field_as_swarm_names_it() {
    let w = workload("h1", 3, 2);
    let Some(workload::Runtime::Swarm(s)) = &w.runtime else {
        unreachable!()
    };
    let spec = spec::service_spec(&w, s, Vec::new());
    assert_eq!(spec.name.as_deref(), Some("prod_web"));
    let labels = spec.labels.as_ref().unwrap();
    assert_eq!(labels["io.convoy.managed"], "true");
    assert_eq!(labels["io.convoy.spec-hash"], "h1");
    assert_eq!(labels["io.convoy.revision"], "3");
    let task = spec.task_template.as_ref().unwrap();
    let c = task.container_spec.as_ref().unwrap();
    assert_eq!(c.image.as_deref(), Some("app:3"));
    // Swarm's Command is the entrypoint, its Args the command.
    assert_eq!(c.command.as_deref(), Some(&["/app".to_string()][..]));
    assert_eq!(c.args.as_deref(), Some(&["serve".to_string()][..]));
    assert_eq!(c.env.as_deref(), Some(&["A=1".to_string()][..]));
    assert_eq!(c.hosts.as_deref(), Some(&["10.0.0.5 db".to_string()][..]));
    assert_eq!(c.labels.as_ref().unwrap()["io.convoy.revision"], "3");
    assert!(
        !c.labels.as_ref().unwrap().contains_key(labels::NODE),
        "the container reconciler must never take a task for its own"
    );
    let hc = c.health_check.as_ref().unwrap();
    assert_eq!(hc.interval, Some(1_000_000_000));
    let limits = task.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(
        (limits.nano_cpus, limits.memory_bytes),
        (Some(500_000_000), Some(64 << 20))
    );
    let placement = task.placement.as_ref().unwrap();
    assert_eq!(
        placement.constraints.as_deref(),
        Some(&["node.role==worker".to_string()][..])
    );
    assert_eq!(
        placement.preferences.as_ref().unwrap()[0]
            .spread
            .as_ref()
            .unwrap()
            .spread_descriptor
            .as_deref(),
        Some("node.labels.zone")
    );
    let nets = task.networks.as_ref().unwrap();
    assert_eq!(nets[0].target.as_deref(), Some("convoy_swarm_prod_back"));
    assert_eq!(
        nets[0].aliases.as_deref(),
        Some(&["web".to_string(), "api".to_string()][..])
    );
    assert_eq!(
        spec.mode
            .as_ref()
            .unwrap()
            .replicated
            .as_ref()
            .unwrap()
            .replicas,
        Some(2)
    );
    let u = spec.update_config.as_ref().unwrap();
    assert_eq!(u.parallelism, Some(1));
    assert_eq!(u.monitor, Some(2_000_000_000));
    assert_eq!(
        u.failure_action,
        Some(bollard::models::ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK)
    );
    let port = &spec.endpoint_spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.target_port, port.published_port),
        (Some(80), Some(8080))
    );
    assert_eq!(
        port.publish_mode,
        Some(bollard::models::EndpointPortConfigPublishModeEnum::HOST)
    );
}

#[tokio::test]
async fn creates_updates_and_removes_services_and_their_networks() {
    let fake = Arc::new(Fake::default());
    let (mut d, statuses, _events) = driver(fake.clone());
    d.pass(&plan(vec![workload("h1", 1, 2)], true)).await;
    assert_eq!(
        fake.calls(),
        ["create network convoy_swarm_prod_back", "create prod_web"]
    );
    assert_eq!(statuses.borrow()["prod/web/1"].reason, "0/2 tasks running");
    // Nothing changed: nothing is written.
    d.pass(&plan(vec![workload("h1", 1, 2)], true)).await;
    assert!(fake.calls().is_empty());
    // A new revision: one update, from the version Swarm has.
    d.pass(&plan(vec![workload("h2", 2, 2)], true)).await;
    assert_eq!(fake.calls(), ["update prod_web from v1"]);
    // The plan lacks it: the service goes, then its network.
    d.pass(&plan(vec![], true)).await;
    assert_eq!(
        fake.calls(),
        [
            "remove prod_web",
            "remove network id-convoy_swarm_prod_back"
        ]
    );
    assert!(statuses.borrow().is_empty());
}

#[tokio::test]
async fn a_spec_swarm_rolled_back_is_not_pushed_again_and_fails_the_workload() {
    let fake = Arc::new(Fake::default());
    let (mut d, statuses, _events) = driver(fake.clone());
    d.pass(&plan(vec![workload("h1", 1, 1)], true)).await;
    d.pass(&plan(vec![workload("h2", 2, 1)], true)).await;
    assert_eq!(fake.calls().last().unwrap(), "update prod_web from v1");
    // Swarm rolls it back: its spec is r1's again.
    {
        let mut w = fake.world();
        let r1 = spec::service_spec(
            &workload("h1", 1, 1),
            match &workload("h1", 1, 1).runtime {
                Some(workload::Runtime::Swarm(s)) => s,
                _ => unreachable!(),
            },
            Vec::new(),
        );
        let svc = &mut w.services[0];
        svc.spec = Some(r1);
        svc.update_status = Some(ServiceUpdateStatus {
            state: Some(ServiceUpdateStatusStateEnum::ROLLBACK_STARTED),
            message: Some(
                "update rolled back due to failure or early termination of task x".into(),
            ),
            ..Default::default()
        });
    }
    for done in [false, true] {
        // Rolling back, then rolled back: never pushed again.
        if done {
            fake.world().services[0]
                .update_status
                .as_mut()
                .unwrap()
                .state = Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED);
        }
        d.pass(&plan(vec![workload("h2", 2, 1)], true)).await;
    }
    assert!(fake.calls().is_empty(), "no update loop");
    let s = statuses.borrow()["prod/web/1"].clone();
    assert_eq!(s.state, WorkloadState::Failed as i32);
    assert_eq!(
        s.reason,
        "Swarm rollback_completed: update rolled back due to failure or early termination of task x"
    );
    assert_eq!(s.swarm_update_state, "rollback_completed");
    assert_eq!((s.spec_hash.as_str(), s.revision), ("h1", 1));
    // Convoy rolls back to r1's spec: Swarm already runs it; nothing to do.
    fake.world().tasks.insert(
        "prod_web".into(),
        vec![task("t1", 1, 5, TaskState::RUNNING, 1)],
    );
    d.pass(&plan(vec![workload("h1", 3, 1)], true)).await;
    assert!(fake.calls().is_empty());
    let s = statuses.borrow()["prod/web/1"].clone();
    assert_eq!(s.state, WorkloadState::Running as i32, "{s:?}");
    assert_eq!(
        s.health,
        Health::Healthy as i32,
        "its healthcheck passes: Swarm runs it"
    );
}

#[tokio::test]
async fn statuses_show_the_newest_task_of_each_slot_and_changes_are_events() {
    let fake = Arc::new(Fake::default());
    let (mut d, statuses, mut events) = driver(fake.clone());
    // The first look is the baseline: tasks already there are no events.
    fake.world().tasks.insert(
        "prod_web".into(),
        vec![task("x", 1, 1, TaskState::RUNNING, 1)],
    );
    d.pass(&plan(vec![workload("h1", 1, 2)], true)).await;
    assert!(events.try_recv().is_err());
    fake.world().tasks.insert(
        "prod_web".into(),
        vec![
            task("old", 1, 3, TaskState::SHUTDOWN, 1),
            task("a", 1, 7, TaskState::RUNNING, 1),
            task("b", 2, 6, TaskState::PREPARING, 1),
        ],
    );
    d.pass(&plan(vec![workload("h1", 1, 2)], true)).await;
    let s = statuses.borrow()["prod/web/1"].clone();
    let ids: Vec<&str> = s.swarm_tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(s.swarm_tasks[0].node_hostname, "host-1");
    assert_eq!(s.state, WorkloadState::Starting as i32);
    assert_eq!(s.reason, "1/2 tasks running");
    // Tasks that appear after the first look are events.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e.kind);
    }
    assert_eq!(seen, ["task-running", "task-preparing"]);

    // Slot 2 runs; slot 1's task is killed and replaced.
    fake.world().tasks.insert(
        "prod_web".into(),
        vec![
            task("a", 1, 8, TaskState::FAILED, 1),
            task("a2", 1, 9, TaskState::RUNNING, 1),
            task("b", 2, 10, TaskState::RUNNING, 1),
        ],
    );
    d.pass(&plan(vec![workload("h1", 1, 2)], true)).await;
    let s = statuses.borrow()["prod/web/1"].clone();
    assert_eq!(s.state, WorkloadState::Running as i32, "{s:?}");
    assert_eq!(s.restarts, 1);
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push((e.kind, e.message));
    }
    assert_eq!(
        seen,
        [
            (
                "task-running".to_string(),
                "task 1 on host-1: running".to_string()
            ),
            (
                "task-running".to_string(),
                "task 2 on host-1: running".to_string()
            ),
        ]
    );
}

#[tokio::test]
async fn a_node_that_does_not_drive_touches_no_swarm_object() {
    let fake = Arc::new(Fake::default());
    fake.world().services.push(Service {
        spec: Some(ServiceSpec {
            name: Some("prod_other".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let (d, statuses, _events) = driver(fake.clone());
    let (plan_tx, plan_rx) =
        watch::channel(Some(Arc::new(plan(vec![workload("h1", 1, 1)], false))));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(d.run(plan_rx, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fake.calls().is_empty());
    assert!(statuses.borrow().is_empty());
    // Told to drive: the service it lacks goes, its own is made.
    plan_tx.send_replace(Some(Arc::new(plan(vec![workload("h1", 1, 1)], true))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = fake.calls();
    assert!(calls.contains(&"create prod_web".to_string()), "{calls:?}");
    assert!(
        calls.contains(&"remove prod_other".to_string()),
        "{calls:?}"
    );
    shutdown.cancel();
    task.await.unwrap();
}

/// A secret version and a config become Swarm secrets (immutable: a new
/// version is a new one), mounted where the spec says; the old version
/// goes once nothing uses it; a value the plan lacks fails the service.
#[tokio::test]
async fn secrets_and_configs_become_swarm_secrets_replaced_by_version() {
    let with = |version: u64, hash: &str| {
        let mut w = workload(hash, version, 1);
        if let Some(workload::Runtime::Swarm(s)) = &mut w.runtime {
            let c = s.container.as_mut().unwrap();
            c.secrets = vec![SecretMount {
                name: "db_pw".into(),
                version,
                target: "/run/secrets/db_pw".into(),
                uid: Some(1000),
                ..Default::default()
            }];
            c.configs = vec![ConfigFile {
                target: "/etc/app.conf".into(),
                content: b"port=80".to_vec(),
                name: "app".into(),
                sha256: "0123456789abcdef".into(),
                ..Default::default()
            }];
        }
        w
    };
    let value = |version: u64, v: &str| SecretValue {
        env: "prod".into(),
        name: "db_pw".into(),
        version,
        value: v.as_bytes().to_vec(),
    };
    let fake = Arc::new(Fake::default());
    let (mut d, statuses, _events) = driver(fake.clone());
    d.pass(&plan_with(
        vec![with(1, "h1")],
        true,
        vec![value(1, "s3cret")],
    ))
    .await;
    let calls = fake.calls();
    assert!(
        calls.contains(&"create secret convoy_prod_db_pw_v1".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"create secret convoy_prod_config_app_0123456789ab".to_string()),
        "{calls:?}"
    );
    let (data, refs) = {
        let w = fake.world();
        let data = w
            .secrets
            .iter()
            .find(|s| s.0 == "convoy_prod_db_pw_v1")
            .unwrap()
            .2
            .clone();
        let task = w.services[0]
            .spec
            .as_ref()
            .unwrap()
            .task_template
            .as_ref()
            .unwrap();
        let refs = task
            .container_spec
            .as_ref()
            .unwrap()
            .secrets
            .clone()
            .unwrap();
        (data, refs)
    };
    assert_eq!(data, "czNjcmV0", "the value, base64");
    let pw = refs
        .iter()
        .find(|r| r.secret_name.as_deref() == Some("convoy_prod_db_pw_v1"))
        .unwrap();
    assert_eq!(pw.secret_id.as_deref(), Some("sid-convoy_prod_db_pw_v1"));
    let file = pw.file.as_ref().unwrap();
    assert_eq!(
        (file.name.as_deref(), file.uid.as_deref(), file.mode),
        (Some("db_pw"), Some("1000"), Some(0o400))
    );
    let conf = refs
        .iter()
        .find(|r| r.secret_name.as_deref() != Some("convoy_prod_db_pw_v1"))
        .unwrap();
    assert_eq!(
        conf.file.as_ref().unwrap().name.as_deref(),
        Some("/etc/app.conf")
    );
    assert_eq!(conf.file.as_ref().unwrap().mode, Some(0o444));

    // Rotated: v2 is a new secret, the service updated, v1 removed.
    d.pass(&plan_with(vec![with(2, "h2")], true, vec![value(2, "n3w")]))
        .await;
    let calls = fake.calls();
    assert_eq!(
        calls,
        [
            "create secret convoy_prod_db_pw_v2",
            "update prod_web from v1",
            "remove secret sid-convoy_prod_db_pw_v1",
        ]
    );
    // A value the plan lacks: the service is not touched, and says why.
    d.pass(&plan_with(vec![with(3, "h3")], true, vec![])).await;
    assert!(!fake.calls().iter().any(|c| c.starts_with("update")));
    assert!(
        statuses.borrow()["prod/web/1"]
            .reason
            .contains("the plan lacks the value of secret `db_pw` v3"),
        "{:?}",
        statuses.borrow()["prod/web/1"]
    );
}

/// A driver that just started (a restarted agent, or a new manager's)
/// remembers nothing it pushed: Swarm's task history says the plan's spec
/// was tried and rolled back, so it is not pushed again.
#[tokio::test]
async fn a_fresh_driver_reads_from_the_task_history_that_swarm_gave_up() {
    let fake = Arc::new(Fake::default());
    let (mut first, _s, _e) = driver(fake.clone());
    first.pass(&plan(vec![workload("h1", 1, 1)], true)).await;
    fake.calls();
    {
        let mut w = fake.world();
        w.services[0].update_status = Some(ServiceUpdateStatus {
            state: Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED),
            message: Some("rolled back".into()),
            ..Default::default()
        });
        // The rejected task of the plan's spec h2, and the running one of h1.
        let mut tried = task("bad", 1, 4, TaskState::REJECTED, 2);
        tried
            .spec
            .as_mut()
            .unwrap()
            .container_spec
            .as_mut()
            .unwrap()
            .labels = Some([(labels::SPEC_HASH.to_string(), "h2".to_string())].into());
        w.tasks.insert(
            "prod_web".into(),
            vec![tried, task("good", 1, 5, TaskState::RUNNING, 1)],
        );
    }
    let (mut fresh, statuses, _e) = driver(fake.clone());
    fresh.pass(&plan(vec![workload("h2", 2, 1)], true)).await;
    assert!(fake.calls().is_empty(), "not pushed again");
    assert_eq!(
        statuses.borrow()["prod/web/1"].state,
        WorkloadState::Failed as i32
    );
    // A spec Swarm never tried is pushed.
    let (mut other, _s, _e) = driver(fake.clone());
    other.pass(&plan(vec![workload("h3", 3, 1)], true)).await;
    assert_eq!(fake.calls(), ["update prod_web from v1"]);
}

/// An engine that does not answer is asked less and less often (from 2 s,
/// doubling to 30 s), the statuses saying why; once it answers, every 2 s.
#[tokio::test(start_paused = true)]
async fn an_unreachable_engine_is_retried_with_backoff() {
    let fake = Arc::new(Fake::default());
    fake.world().down = true;
    let (d, statuses, _events) = driver(fake.clone());
    let (_plan_tx, plan_rx) =
        watch::channel(Some(Arc::new(plan(vec![workload("h1", 1, 1)], true))));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(d.run(plan_rx, shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(60)).await;
    // Every 2 s would be 30 tries; backing off (2, 4, 8, 16, 30 s, each
    // cut by up to a quarter) it is at most 7.
    let tries = fake.world().lists;
    assert!((3..=7).contains(&tries), "{tries} tries in 60 s");
    assert!(
        statuses.borrow()["prod/web/1"]
            .reason
            .contains("the Docker engine does not answer: connection refused"),
        "{:?}",
        statuses.borrow()
    );
    fake.world().down = false;
    // Back: within the current wait (at most 30 s) it answers, then every 2 s.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let before = fake.world().lists;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let per_10s = fake.world().lists - before;
    assert!(
        (8..=12).contains(&per_10s),
        "{per_10s} lists in 10 s once it answers"
    );
    shutdown.cancel();
    task.await.unwrap();
}

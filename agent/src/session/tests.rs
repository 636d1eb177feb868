//! The session against an in-process coordinator over real mTLS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use convoy_proto::agent_service_server::{AgentService, AgentServiceServer};
use convoy_proto::{
    ack, agent_message, command, coordinator_message, AgentMessage, Command, CoordinatorMessage,
    Event, NodePlan, RefreshFacts, Welcome, WorkloadState, WorkloadStatus,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use super::*;
use crate::reconcile::Snapshot;
use crate::runtime::fake::FakeRuntime;

const WAIT: Duration = Duration::from_secs(10);

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: String,
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let pem = cert.pem();
    Ca { cert, key, pem }
}

/// (certificate PEM, key PEM)
fn issue(ca: &Ca, sans: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write_bundle(dir: &Path, ca_pem: &str, agent: &(String, String)) {
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    std::fs::write(dir.join("agent.pem"), &agent.0).unwrap();
    std::fs::write(dir.join("agent.key"), &agent.1).unwrap();
}

/// One open stream, seen from the coordinator's side.
struct Stream {
    from_agent: mpsc::UnboundedReceiver<AgentMessage>,
    to_agent: mpsc::UnboundedSender<Result<CoordinatorMessage, Status>>,
}

impl Stream {
    async fn next(&mut self) -> agent_message::Msg {
        tokio::time::timeout(WAIT, self.from_agent.recv())
            .await
            .expect("the agent sent nothing")
            .expect("the agent closed the stream")
            .msg
            .expect("a message without a body")
    }

    /// The next message that is not a heartbeat.
    async fn next_but_heartbeats(&mut self) -> agent_message::Msg {
        loop {
            match self.next().await {
                agent_message::Msg::Heartbeat(_) => continue,
                other => return other,
            }
        }
    }

    fn send(&self, msg: coordinator_message::Msg) {
        self.to_agent
            .send(Ok(CoordinatorMessage { msg: Some(msg) }))
            .unwrap();
    }
}

struct TestCoordinator {
    streams: mpsc::UnboundedSender<Stream>,
}

#[tonic::async_trait]
impl AgentService for TestCoordinator {
    type SessionStream = UnboundedReceiverStream<Result<CoordinatorMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let (from_tx, from_agent) = mpsc::unbounded_channel();
        let (to_agent, to_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                if from_tx.send(msg).is_err() {
                    break;
                }
            }
        });
        let _ = self.streams.send(Stream {
            from_agent,
            to_agent,
        });
        Ok(Response::new(UnboundedReceiverStream::new(to_rx)))
    }

    type TunnelStream = UnboundedReceiverStream<Result<convoy_proto::TunnelDown, Status>>;

    async fn tunnel(
        &self,
        _request: Request<Streaming<convoy_proto::TunnelUp>>,
    ) -> Result<Response<Self::TunnelStream>, Status> {
        Err(Status::unimplemented("no tunnels in these tests"))
    }
}

struct World {
    _dir: tempfile::TempDir,
    pki_dir: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    addr: SocketAddr,
    streams: mpsc::UnboundedReceiver<Stream>,
    ca: Ca,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&pki_dir).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    let ca = new_ca("test ca");
    let server = issue(
        &ca,
        vec![COORDINATOR_SERVER_NAME.to_string()],
        "convoyd",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let agent = issue(&ca, vec![], "n1", ExtendedKeyUsagePurpose::ClientAuth);
    write_bundle(&pki_dir, &ca.pem, &agent);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (streams_tx, streams) = mpsc::unbounded_channel();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&server.0, &server.1))
        .client_ca_root(Certificate::from_pem(&ca.pem));
    let router = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(AgentServiceServer::new(TestCoordinator {
            streams: streams_tx,
        }));
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    World {
        _dir: dir,
        pki_dir,
        data_dir,
        addr,
        streams,
        ca,
    }
}

struct Agent {
    session: Session<FakeRuntime>,
    plan: watch::Receiver<Option<Arc<Plan>>>,
    snapshot: watch::Sender<Snapshot>,
    events: broadcast::Sender<Event>,
}

fn agent(w: &World) -> Agent {
    let (plan_tx, plan) = watch::channel(None);
    let (snapshot, snapshot_rx) = watch::channel(Snapshot::default());
    let (events, _) = broadcast::channel(16);
    let session = Session {
        coordinators: vec![w.addr.to_string()],
        pki_dir: w.pki_dir.clone(),
        data_dir: w.data_dir.clone(),
        labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
        gpus: Arc::new(crate::gpu::fake::FakeGpus::with(2, "NVIDIA H100 80GB HBM3")),
        allowed_binds: vec!["/srv/data".to_string()],
        allowed_host_access: vec!["privileged".to_string()],
        node: "n1".to_string(),
        runtime: Arc::new(FakeRuntime::default()),
        plan: plan_tx,
        snapshot: snapshot_rx,
        events: events.clone(),
        secrets: Arc::new(
            crate::secrets::NodeSecrets::unchecked(w.data_dir.join("secrets")).unwrap(),
        ),
        swarm_check: Duration::from_millis(100),
        proxy_stats: None,
    };
    Agent {
        session,
        plan,
        snapshot,
        events,
    }
}

fn running(id: &str) -> WorkloadStatus {
    WorkloadStatus {
        id: id.to_string(),
        revision: 1,
        state: WorkloadState::Running as i32,
        ..WorkloadStatus::default()
    }
}

#[tokio::test]
async fn session_says_hello_acks_plans_and_streams_status_changes() {
    let mut w = world().await;
    let Agent {
        session,
        mut plan,
        snapshot,
        events,
    } = agent(&w);
    snapshot.send_replace(Snapshot {
        statuses: BTreeMap::from([("default/web/1".to_string(), running("default/web/1"))]),
        containers: 1,
    });
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(session.run(shutdown.clone()));
    let mut s = tokio::time::timeout(WAIT, w.streams.recv())
        .await
        .unwrap()
        .unwrap();

    // Hello, then the full snapshot.
    let agent_message::Msg::Hello(hello) = s.next().await else {
        panic!("first message is not Hello")
    };
    assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(hello.last_applied_generation, 0);
    let facts = hello.facts.unwrap();
    assert_eq!(facts.labels["zone"], "a");
    assert_eq!(facts.allowed_bind_paths, ["/srv/data"]);
    assert_eq!(facts.docker_version, "20.10-fake");
    assert_eq!(
        facts
            .gpus
            .iter()
            .map(|g| g.uuid.as_str())
            .collect::<Vec<_>>(),
        ["GPU-fake-0", "GPU-fake-1"]
    );
    let agent_message::Msg::Status(full) = s.next().await else {
        panic!("second message is not a status report")
    };
    assert!(full.full_snapshot);
    assert_eq!(full.workloads, vec![running("default/web/1")]);

    // A short heartbeat interval from Welcome.
    s.send(coordinator_message::Msg::Welcome(Welcome {
        node_name: "n1".into(),
        heartbeat_interval_ms: 100,
    }));
    loop {
        if let agent_message::Msg::Heartbeat(beat) = s.next().await {
            assert!(beat.sent_unix_ms > 0);
            let metrics = beat.metrics.unwrap();
            assert_eq!(metrics.containers, 1);
            assert_eq!(metrics.gpus.len(), 2);
            break;
        }
    }

    // A plan is stored, acknowledged and handed to the reconciler.
    let p = NodePlan {
        generation: 5,
        workloads: vec![],
        ..Default::default()
    };
    s.send(coordinator_message::Msg::Plan(p.clone()));
    let agent_message::Msg::Ack(ack) = s.next_but_heartbeats().await else {
        panic!("no ack for the plan")
    };
    assert_eq!(ack.target, Some(ack::Target::PlanGeneration(5)));
    assert!(ack.ok, "{}", ack.error);
    assert_eq!(
        crate::state::load(&w.data_dir).await.unwrap(),
        Some(p.clone())
    );
    plan.changed().await.unwrap();
    assert_eq!(
        plan.borrow().as_deref().map(Plan::to_stored),
        Some(p.clone())
    );

    // An invalid plan is refused before any reconciler sees it: a failed
    // ack naming the workload and what is wrong, the plan in force kept.
    let web = |hash: &str| convoy_proto::Workload {
        id: "default/web/1".into(),
        spec_hash: hash.into(),
        runtime: Some(convoy_proto::workload::Runtime::Container(
            convoy_proto::ContainerSpec {
                image: "web:1".into(),
                ..convoy_proto::ContainerSpec::default()
            },
        )),
        ..convoy_proto::Workload::default()
    };
    s.send(coordinator_message::Msg::Plan(NodePlan {
        generation: 6,
        workloads: vec![web("h1"), web("h2")],
        ..Default::default()
    }));
    let agent_message::Msg::Ack(ack) = s.next_but_heartbeats().await else {
        panic!("no ack for the invalid plan")
    };
    assert_eq!(ack.target, Some(ack::Target::PlanGeneration(6)));
    assert!(!ack.ok);
    assert_eq!(
        ack.error,
        "plan 6 refused on node `n1`: workload `default/web/1` appears more than once in \
         the plan (#1 and #2); the plan in force stays"
    );
    assert!(
        !plan.has_changed().unwrap(),
        "the invalid plan was handed on"
    );
    assert_eq!(plan.borrow().as_deref().map(Plan::generation), Some(5));
    assert_eq!(
        crate::state::load(&w.data_dir).await.unwrap(),
        Some(p.clone()),
        "the invalid plan was stored"
    );

    // Status changes go out as a diff.
    let mut failed = running("default/web/2");
    failed.state = WorkloadState::Failed as i32;
    snapshot.send_replace(Snapshot {
        statuses: BTreeMap::from([("default/web/2".to_string(), failed.clone())]),
        containers: 1,
    });
    let agent_message::Msg::Status(report) = s.next_but_heartbeats().await else {
        panic!("no status diff")
    };
    assert!(!report.full_snapshot);
    assert_eq!(report.workloads, vec![failed]);
    assert_eq!(report.removed, vec!["default/web/1".to_string()]);

    // Commands are acknowledged; events are forwarded.
    s.send(coordinator_message::Msg::Command(Command {
        id: "cmd-1".into(),
        kind: Some(command::Kind::RefreshFacts(RefreshFacts {})),
    }));
    let agent_message::Msg::Ack(ack) = s.next_but_heartbeats().await else {
        panic!("no ack for the command")
    };
    assert_eq!(ack.target, Some(ack::Target::CommandId("cmd-1".into())));
    assert!(ack.ok);
    let event = Event {
        unix_ms: 1,
        workload_id: "default/web/2".into(),
        kind: "restarted".into(),
        message: "m".into(),
    };
    events.send(event.clone()).unwrap();
    assert_eq!(
        s.next_but_heartbeats().await,
        agent_message::Msg::Event(event)
    );

    // The stream ends: the agent comes back and says which plan it has.
    drop(s);
    let mut again = tokio::time::timeout(WAIT, w.streams.recv())
        .await
        .unwrap()
        .unwrap();
    let agent_message::Msg::Hello(hello) = again.next().await else {
        panic!("first message after reconnect is not Hello")
    };
    assert_eq!(hello.last_applied_generation, 5);

    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_changed_swarm_state_is_sent_in_a_new_hello() {
    let mut w = world().await;
    // The snapshot and events senders live on: the session ends when
    // they are gone.
    let Agent {
        session,
        snapshot: _snapshot,
        events: _events,
        ..
    } = agent(&w);
    let runtime = session.runtime.clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(session.run(shutdown.clone()));
    let mut s = tokio::time::timeout(WAIT, w.streams.recv())
        .await
        .unwrap()
        .unwrap();
    let agent_message::Msg::Hello(hello) = s.next().await else {
        panic!("first message is not Hello")
    };
    assert_eq!(hello.facts.unwrap().swarm, None);

    // The engine joins a swarm: the agent says Hello again, on a new stream.
    let joined = convoy_proto::SwarmFacts {
        role: convoy_proto::SwarmRole::Worker as i32,
        node_id: "w1".into(),
        manager_reachable: true,
        local_node_state: "active".into(),
        manager_node_ids: vec!["m1".into()],
        ..convoy_proto::SwarmFacts::default()
    };
    runtime.lock().swarm = Some(joined.clone());
    let mut again = tokio::time::timeout(WAIT, w.streams.recv())
        .await
        .expect("no new stream after the Swarm state changed")
        .unwrap();
    let agent_message::Msg::Hello(hello) = again.next().await else {
        panic!("first message of the new stream is not Hello")
    };
    assert_eq!(hello.facts.unwrap().swarm, Some(joined));

    // An engine that stops answering changes nothing.
    runtime.lock().unreachable = Some("down".into());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        w.streams.try_recv().is_err(),
        "reconnected without a change"
    );
    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn certificate_from_another_ca_is_reported_as_refused() {
    let w = world().await;
    let rogue = new_ca("rogue ca");
    let agent_cert = issue(&rogue, vec![], "n1", ExtendedKeyUsagePurpose::ClientAuth);
    // Trusts the real coordinator, presents a certificate it did not issue.
    write_bundle(&w.pki_dir, &w.ca.pem, &agent_cert);
    let Agent { mut session, .. } = agent(&w);
    let mut connected_at = None;
    let err = session
        .serve(
            &w.addr.to_string(),
            &CancellationToken::new(),
            &mut connected_at,
            &mut crate::facts::HostSampler::new(w.data_dir.clone()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, SessionError::CertificateRefused { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("refused this agent's certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn coordinator_with_an_untrusted_certificate_is_reported() {
    let w = world().await;
    let other = new_ca("other ca");
    let agent_cert = issue(&w.ca, vec![], "n1", ExtendedKeyUsagePurpose::ClientAuth);
    // Presents a good certificate, but trusts another CA.
    write_bundle(&w.pki_dir, &other.pem, &agent_cert);
    let Agent { mut session, .. } = agent(&w);
    let mut connected_at = None;
    let err = session
        .serve(
            &w.addr.to_string(),
            &CancellationToken::new(),
            &mut connected_at,
            &mut crate::facts::HostSampler::new(w.data_dir.clone()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, SessionError::CoordinatorNotTrusted { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn closed_port_is_reported_unreachable() {
    let w = world().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = listener.local_addr().unwrap();
    drop(listener);
    let Agent { mut session, .. } = agent(&w);
    let mut connected_at = None;
    let err = session
        .serve(
            &free.to_string(),
            &CancellationToken::new(),
            &mut connected_at,
            &mut crate::facts::HostSampler::new(w.data_dir.clone()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn session_answers_pings_at_once_and_run_probes_with_results() {
    let mut w = world().await;
    let Agent {
        session, snapshot, ..
    } = agent(&w);
    let fake = session.runtime.clone();
    fake.lock().programs.insert(
        "/slow-ok".into(),
        crate::runtime::ExecOutput {
            exit_code: Some(0),
            output: "fine".into(),
        },
    );
    fake.lock().hanging.insert("/hang".into());
    let probe = |name: &str, program: &str, timeout_ms: u64| convoy_proto::Probe {
        name: name.into(),
        timeout_ms,
        check: Some(convoy_proto::probe::Check::Exec(convoy_proto::ExecProbe {
            command: vec![program.into()],
        })),
        ..convoy_proto::Probe::default()
    };
    let web = convoy_proto::Workload {
        id: "default/web/1".into(),
        probes: vec![probe("ok", "/slow-ok", 1000), probe("stuck", "/hang", 1500)],
        runtime: Some(convoy_proto::workload::Runtime::Container(
            convoy_proto::ContainerSpec {
                image: "web:1".into(),
                ..convoy_proto::ContainerSpec::default()
            },
        )),
        ..convoy_proto::Workload::default()
    };
    let container = fake.add("n1", &web, crate::runtime::ContainerState::Running);
    session.plan.send_replace(Some(Arc::new(
        Plan::try_from(NodePlan {
            generation: 1,
            workloads: vec![web.clone()],
            ..Default::default()
        })
        .unwrap(),
    )));
    let mut status = running("default/web/1");
    status.container_id = container;
    snapshot.send_replace(Snapshot {
        statuses: BTreeMap::from([("default/web/1".to_string(), status)]),
        containers: 1,
    });
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(session.run(shutdown.clone()));
    let mut s = tokio::time::timeout(WAIT, w.streams.recv())
        .await
        .unwrap()
        .unwrap();
    s.next().await; // Hello
    s.next().await; // the full snapshot

    s.send(coordinator_message::Msg::Command(Command {
        id: "probe-1".into(),
        kind: Some(command::Kind::RunProbes(RunProbes {
            workload_ids: vec![],
        })),
    }));
    // The probes take 1.5 s (one hangs until its timeout); a ping meanwhile
    // is answered at once.
    s.send(coordinator_message::Msg::Ping(Ping { nonce: 7 }));
    let began = Instant::now();
    assert_eq!(
        s.next_but_heartbeats().await,
        agent_message::Msg::Pong(Pong { nonce: 7 })
    );
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );

    let agent_message::Msg::Ack(ack) = s.next_but_heartbeats().await else {
        panic!("no ack for RunProbes")
    };
    assert_eq!(ack.target, Some(ack::Target::CommandId("probe-1".into())));
    assert!(ack.ok);
    let results: Vec<(&str, &str, bool)> = ack
        .probe_results
        .iter()
        .map(|r| (r.workload_id.as_str(), r.probe.as_str(), r.healthy))
        .collect();
    assert_eq!(
        results,
        [
            ("default/web/1", "ok", true),
            ("default/web/1", "stuck", false)
        ]
    );
    assert_eq!(ack.probe_results[0].output, "fine");
    assert!(ack.probe_results[1]
        .output
        .contains("no exit within 1500ms"));
    assert!(ack.probe_results[1].duration_ms >= 1500);

    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[test]
fn diff_reports_changed_and_removed_workloads_only() {
    let a = running("a");
    let b = running("b");
    let mut b2 = b.clone();
    b2.restarts = 1;
    let c = running("c");
    let sent = BTreeMap::from([("a".into(), a.clone()), ("b".into(), b)]);
    let current = BTreeMap::from([("b".into(), b2.clone()), ("c".into(), c.clone())]);
    let report = diff(&sent, &current).unwrap();
    assert!(!report.full_snapshot);
    assert_eq!(report.workloads, vec![b2, c]);
    assert_eq!(report.removed, vec!["a".to_string()]);
    assert_eq!(diff(&current, &current), None);
}

#[test]
fn with_one_coordinator_every_failure_doubles_the_delay_to_thirty_seconds() {
    let secs = |failures, jitter| next_delay(1, failures, jitter).as_secs_f64();
    assert_eq!(
        [1, 2, 3, 4, 5, 6, 7, 40, u32::MAX].map(|f| secs(f, 1.0)),
        [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    );
    assert_eq!(secs(1, 0.5), 0.5);
    assert_eq!(secs(40, 0.5), 15.0);
    // Jitter out of range is bounded.
    assert_eq!(secs(1, 0.0), 0.5);
    assert_eq!(secs(1, 3.0), 1.0);
}

#[test]
fn with_several_coordinators_a_failure_hops_to_the_next_and_a_failed_round_backs_off() {
    let ms = |failures| next_delay(3, failures, 1.0).as_millis();
    // Round 1: two hops, then 1 s; round 2: two hops, then 2 s; ...
    assert_eq!(
        (1..=9).map(ms).collect::<Vec<_>>(),
        [250, 250, 1000, 250, 250, 2000, 250, 250, 4000]
    );
    assert_eq!(ms(300), 30_000);
    assert_eq!(ms(301), 250);
    assert_eq!(next_delay(2, 1, 0.5).as_millis(), 125);
    assert_eq!(next_delay(2, 2, 0.5).as_millis(), 500);
    // No address at all is treated as one (`run` never dials then).
    assert_eq!(next_delay(0, 1, 1.0).as_millis(), 1000);
}

#[test]
fn the_random_jitter_keeps_delays_between_half_and_all() {
    for failures in 1..=12 {
        let delay = next_delay(2, failures, rand::rng().random_range(0.5..=1.0));
        let full = next_delay(2, failures, 1.0);
        assert!(delay >= full / 2 && delay <= full, "{failures}: {delay:?}");
    }
}

#[tokio::test]
async fn an_agent_given_a_dead_address_first_opens_its_session_on_the_next_at_once() {
    let mut w = world().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let Agent { mut session, .. } = agent(&w);
    session.coordinators = vec![dead.to_string(), w.addr.to_string()];
    let shutdown = CancellationToken::new();
    let started = std::time::Instant::now();
    let task = tokio::spawn(session.run(shutdown.clone()));
    let mut s = tokio::time::timeout(WAIT, w.streams.recv())
        .await
        .unwrap()
        .unwrap();
    let agent_message::Msg::Hello(_) = s.next().await else {
        panic!("first message is not Hello")
    };
    // A hop (at most 250 ms), not the 1 s backoff of a failed round.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "took {:?}",
        started.elapsed()
    );
    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

//! The client against a fake coordinator over real TLS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use convoy_proto::control_service_server::{ControlService, ControlServiceServer};
use convoy_proto::{Node, NodeState, AUTHORIZATION};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::Request;

use super::*;
use crate::config::Token;

struct Pki {
    ca_pem: String,
    server_identity: Identity,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec![COORDINATOR_SERVER_NAME.to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_identity: Identity::from_pem(server.pem(), server_key.serialize_pem()),
    }
}

/// A coordinator that leads (answers) or stands by (refuses every call the
/// way a standby does), counting the calls it gets.
#[derive(Default)]
struct Fake {
    standby: bool,
    calls: Arc<AtomicUsize>,
}

impl Fake {
    fn check_token<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.standby {
            return Err(Status::unavailable(
                "standby: this coordinator does not lead; the leader is elsewhere",
            ));
        }
        match request.metadata().get(AUTHORIZATION).map(|v| v.to_str()) {
            Some(Ok("Bearer good-token")) => Ok(()),
            _ => Err(Status::unauthenticated("invalid token")),
        }
    }
}

#[tonic::async_trait]
impl ControlService for Fake {
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        self.check_token(&request)?;
        let req = request.into_inner();
        Err(Status::invalid_argument(format!(
            "{}:1:1: bad spec ({} bytes, dry_run={})",
            req.filename,
            req.content.len(),
            req.dry_run
        )))
    }
    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        self.check_token(&request)?;
        Err(Status::not_found(format!(
            "service `{}` not found",
            request.into_inner().service
        )))
    }
    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        self.check_token(&request)?;
        Ok(Response::new(ListNodesResponse {
            nodes: vec![Node {
                name: "node-a".into(),
                state: NodeState::Ready as i32,
                ..Node::default()
            }],
        }))
    }
    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        self.check_token(&request)?;
        Ok(Response::new(RemoveNodeResponse {
            lost_instances: 1,
            revoked_certificates: 1,
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        self.check_token(&request)?;
        Ok(Response::new(DeleteResponse {
            removed_instances: 2,
            last_revision: 3,
        }))
    }

    async fn create_token(
        &self,
        _: Request<convoy_proto::CreateTokenRequest>,
    ) -> Result<Response<convoy_proto::CreateTokenResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn set_registry_auth(
        &self,
        _: Request<convoy_proto::SetRegistryAuthRequest>,
    ) -> Result<Response<convoy_proto::RegistryAuthInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_registry_auth(
        &self,
        _: Request<convoy_proto::ListRegistryAuthRequest>,
    ) -> Result<Response<convoy_proto::ListRegistryAuthResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn remove_registry_auth(
        &self,
        _: Request<convoy_proto::RemoveRegistryAuthRequest>,
    ) -> Result<Response<convoy_proto::RegistryAuthInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn set_secret(
        &self,
        _: Request<convoy_proto::SetSecretRequest>,
    ) -> Result<Response<convoy_proto::SecretInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn generate_secret(
        &self,
        _: Request<convoy_proto::GenerateSecretRequest>,
    ) -> Result<Response<convoy_proto::SecretInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_secrets(
        &self,
        _: Request<convoy_proto::ListSecretsRequest>,
    ) -> Result<Response<convoy_proto::ListSecretsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn secret_history(
        &self,
        _: Request<convoy_proto::SecretHistoryRequest>,
    ) -> Result<Response<convoy_proto::SecretHistoryResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn remove_secret(
        &self,
        _: Request<convoy_proto::RemoveSecretRequest>,
    ) -> Result<Response<convoy_proto::SecretInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn add_notifier(
        &self,
        _: Request<convoy_proto::AddNotifierRequest>,
    ) -> Result<Response<convoy_proto::NotifierInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_notifiers(
        &self,
        _: Request<convoy_proto::ListNotifiersRequest>,
    ) -> Result<Response<convoy_proto::ListNotifiersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn remove_notifier(
        &self,
        _: Request<convoy_proto::RemoveNotifierRequest>,
    ) -> Result<Response<convoy_proto::NotifierInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn test_notifier(
        &self,
        _: Request<convoy_proto::TestNotifierRequest>,
    ) -> Result<Response<convoy_proto::TestNotifierResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_tokens(
        &self,
        _: Request<convoy_proto::ListTokensRequest>,
    ) -> Result<Response<convoy_proto::ListTokensResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn revoke_token(
        &self,
        _: Request<convoy_proto::RevokeTokenRequest>,
    ) -> Result<Response<convoy_proto::RevokeTokenResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn create_join_token(
        &self,
        _: Request<convoy_proto::CreateJoinTokenRequest>,
    ) -> Result<Response<convoy_proto::CreateJoinTokenResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_audit(
        &self,
        _: Request<convoy_proto::ListAuditRequest>,
    ) -> Result<Response<convoy_proto::ListAuditResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WatchStream = tokio_stream::Empty<Result<convoy_proto::ClusterEvent, Status>>;
    type SnapshotStream = tokio_stream::Empty<Result<convoy_proto::SnapshotChunk, Status>>;

    async fn snapshot(
        &self,
        _: Request<convoy_proto::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn cordon_node(
        &self,
        _: Request<convoy_proto::CordonNodeRequest>,
    ) -> Result<Response<convoy_proto::CordonNodeResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn drain_node(
        &self,
        _: Request<convoy_proto::DrainNodeRequest>,
    ) -> Result<Response<convoy_proto::DrainNodeResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type LogsStream = tokio_stream::Empty<Result<convoy_proto::LogLine, Status>>;
    type ExecStream = tokio_stream::Empty<Result<convoy_proto::ExecOutput, Status>>;
    type RunStream = tokio_stream::Empty<Result<convoy_proto::ExecOutput, Status>>;

    async fn exec(
        &self,
        _: Request<tonic::Streaming<convoy_proto::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn run(
        &self,
        _: Request<tonic::Streaming<convoy_proto::ExecInput>>,
    ) -> Result<Response<Self::RunStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn logs(
        &self,
        _: Request<convoy_proto::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn watch(
        &self,
        _: Request<convoy_proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn verify(
        &self,
        _: Request<convoy_proto::VerifyRequest>,
    ) -> Result<Response<convoy_proto::VerifyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_volumes(
        &self,
        _: Request<convoy_proto::ListVolumesRequest>,
    ) -> Result<Response<convoy_proto::ListVolumesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn remove_volumes(
        &self,
        _: Request<convoy_proto::RemoveVolumesRequest>,
    ) -> Result<Response<convoy_proto::ListVolumesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn promote(
        &self,
        _: Request<convoy_proto::RolloutRequest>,
    ) -> Result<Response<convoy_proto::RolloutInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn pause_rollout(
        &self,
        _: Request<convoy_proto::RolloutRequest>,
    ) -> Result<Response<convoy_proto::RolloutInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn resume_rollout(
        &self,
        _: Request<convoy_proto::RolloutRequest>,
    ) -> Result<Response<convoy_proto::RolloutInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn history(
        &self,
        _: Request<convoy_proto::HistoryRequest>,
    ) -> Result<Response<convoy_proto::HistoryResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn rollback(
        &self,
        _: Request<convoy_proto::RollbackRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

async fn start_fake(identity: Identity) -> SocketAddr {
    start(identity, Fake::default()).await
}

async fn start(identity: Identity, fake: Fake) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(identity))
        .unwrap()
        .add_service(ControlServiceServer::new(fake))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    addr
}

fn settings(dir: &tempfile::TempDir, addr: &str, ca_pem: &str, token: &str) -> Settings {
    let ca = dir.path().join("ca.pem");
    fs::write(&ca, ca_pem).unwrap();
    let token_file = dir.path().join("admin.token");
    fs::write(&token_file, format!("{token}\n")).unwrap();
    Settings {
        address: addr.to_owned(),
        ca: Some(ca),
        token: Some(Token::File(token_file)),
    }
}

#[tokio::test]
async fn calls_carry_the_bearer_token_over_tls_to_the_coordinator_name() {
    let pki = pki();
    let addr = start_fake(pki.server_identity).await;
    let dir = tempfile::tempdir().unwrap();
    // Dialed by IP; the certificate only names coordinator.convoy.
    let settings = settings(&dir, &addr.to_string(), &pki.ca_pem, "good-token");
    let mut coordinator = Coordinator::connect(&settings).await.unwrap();

    let nodes = coordinator.list_nodes().await.unwrap();
    assert_eq!(nodes.nodes[0].name, "node-a");
    let deleted = coordinator
        .delete(DeleteRequest {
            service: "hello".into(),
            env: String::new(),
            volumes: false,
        })
        .await
        .unwrap();
    assert_eq!(deleted.removed_instances, 2);
}

#[tokio::test]
async fn server_errors_reach_the_user_as_the_server_wrote_them() {
    let pki = pki();
    let addr = start_fake(pki.server_identity).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dir, &addr.to_string(), &pki.ca_pem, "good-token");
    let mut coordinator = Coordinator::connect(&settings).await.unwrap();
    let err = coordinator
        .apply(ApplyRequest {
            filename: "hello.yaml".into(),
            content: "abc".into(),
            dry_run: true,
            env: String::new(),
            profiles: Vec::new(),
            env_files: Default::default(),
            config_files: Default::default(),
            config_env: Default::default(),
            secret_files: Default::default(),
            secret_env: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "hello.yaml:1:1: bad spec (3 bytes, dry_run=true)"
    );
    let err = coordinator
        .status(StatusRequest {
            service: "nope".into(),
            env: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "service `nope` not found");
}

#[tokio::test]
async fn a_refused_token_is_reported_as_such() {
    let pki = pki();
    let addr = start_fake(pki.server_identity).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dir, &addr.to_string(), &pki.ca_pem, "wrong-token");
    let mut coordinator = Coordinator::connect(&settings).await.unwrap();
    let err = coordinator.list_nodes().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the coordinator refused the token: invalid token"
    );
}

#[tokio::test]
async fn a_coordinator_signed_by_another_ca_is_not_trusted() {
    let server_pki = pki();
    let other_ca = pki().ca_pem;
    let addr = start_fake(server_pki.server_identity).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dir, &addr.to_string(), &other_ca, "good-token");
    let err = Coordinator::connect(&settings).await.err().unwrap();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot reach the coordinator at https://{addr}: ")),
        "{text}"
    );
    assert!(text.contains("certificate"), "{text}");
}

#[tokio::test]
async fn a_closed_port_is_reported_quickly_as_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dir, &addr.to_string(), &pki().ca_pem, "good-token");
    let started = Instant::now();
    let err = Coordinator::connect(&settings).await.err().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        err.to_string(),
        format!("cannot reach the coordinator at https://{addr}: connection refused")
    );
}

#[tokio::test]
async fn a_missing_ca_is_reported_before_dialing() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&dir, "127.0.0.1:1", "x", "good-token");
    settings.ca = None;
    let err = Coordinator::connect(&settings).await.err().unwrap();
    assert!(err
        .to_string()
        .starts_with("no CA certificate configured for https://127.0.0.1:1"));
    settings.ca = Some(dir.path().join("ca.pem"));
    let err = Coordinator::connect(&settings).await.err().unwrap();
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
}

fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

#[tokio::test]
async fn a_dead_address_before_a_live_one_is_skipped() {
    let pki = pki();
    let live = start_fake(pki.server_identity).await;
    let dead = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(
        &dir,
        &format!("{dead}, https://{live}"),
        &pki.ca_pem,
        "good-token",
    );
    let started = Instant::now();
    let mut coordinator = Coordinator::connect(&settings).await.unwrap();
    assert_eq!(coordinator.address(), format!("https://{live}"));
    let nodes = coordinator.list_nodes().await.unwrap();
    assert_eq!(nodes.nodes[0].name, "node-a");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_standby_answer_moves_the_call_to_the_next_address() {
    let pki = pki();
    let standby = Fake {
        standby: true,
        ..Fake::default()
    };
    let standby_calls = standby.calls.clone();
    let standby = start(pki.server_identity.clone(), standby).await;
    let leader = Fake::default();
    let leader_calls = leader.calls.clone();
    let leader = start(pki.server_identity, leader).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(
        &dir,
        &format!("{standby},{leader}"),
        &pki.ca_pem,
        "good-token",
    );
    let mut coordinator = Coordinator::connect(&settings).await.unwrap();
    // The standby accepts connections: connect stops there.
    assert_eq!(coordinator.address(), format!("https://{standby}"));

    let deleted = coordinator
        .delete(DeleteRequest {
            service: "hello".into(),
            env: String::new(),
            volumes: false,
        })
        .await
        .unwrap();
    assert_eq!(deleted.removed_instances, 2);
    assert_eq!(coordinator.address(), format!("https://{leader}"));
    assert_eq!(standby_calls.load(Ordering::SeqCst), 1);
    assert_eq!(leader_calls.load(Ordering::SeqCst), 1);
    // The next call goes straight to the leader.
    coordinator.list_nodes().await.unwrap();
    assert_eq!(standby_calls.load(Ordering::SeqCst), 1);
    assert_eq!(leader_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn with_one_address_a_standby_answer_is_the_error() {
    let pki = pki();
    let standby = Fake {
        standby: true,
        ..Fake::default()
    };
    let addr = start(pki.server_identity, standby).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&dir, &addr.to_string(), &pki.ca_pem, "good-token");
    let mut coordinator = Coordinator::connect(&settings).await.unwrap();
    let err = coordinator.list_nodes().await.unwrap_err();
    assert!(err.to_string().starts_with("standby: "), "{err}");
}

#[tokio::test]
async fn a_refused_token_is_not_tried_on_the_other_coordinators() {
    let pki = pki();
    let leader = start_fake(pki.server_identity.clone()).await;
    let other = Fake::default();
    let other_calls = other.calls.clone();
    let other = start(pki.server_identity, other).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(
        &dir,
        &format!("{leader},{other}"),
        &pki.ca_pem,
        "wrong-token",
    );
    let mut coordinator = Coordinator::connect(&settings).await.unwrap();
    let err = coordinator.list_nodes().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the coordinator refused the token: invalid token"
    );
    assert_eq!(other_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_coordinator_of_another_ca_is_reported_at_once_not_skipped() {
    let server_pki = pki();
    let other_ca = pki().ca_pem;
    let untrusted = start_fake(server_pki.server_identity).await;
    let dead = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(
        &dir,
        &format!("{untrusted},{dead}"),
        &other_ca,
        "good-token",
    );
    let started = Instant::now();
    let err = Coordinator::connect(&settings).await.err().unwrap();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot reach the coordinator at https://{untrusted}: "
        )),
        "{text}"
    );
    assert!(text.contains("certificate"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

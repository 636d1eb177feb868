//! The coordinator's two listeners, in-process: the API speaks TLS and wants
//! a token; the agent port wants a client certificate from Convoy's CA. Both
//! serve the standard gRPC health service.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use convoy_coordinator::{
    pki::{Ca, PkiPaths},
    server::{self, ServeConfig},
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

async fn channel(addr: std::net::SocketAddr, tls: ClientTlsConfig) -> Result<Channel, String> {
    Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn health(ch: Channel, service: &str) -> Result<i32, tonic::Status> {
    let resp = HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await?;
    Ok(resp.into_inner().status)
}

#[tokio::test]
async fn api_needs_a_token_and_agent_stream_needs_a_certificate_from_our_ca() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shutdown = CancellationToken::new();
    let running = server::start(
        ServeConfig {
            data_dir: data.clone(),
            api_listen: "127.0.0.1:0".parse().unwrap(),
            agent_listen: "127.0.0.1:0".parse().unwrap(),
            sans: vec![],
            agent_cert_validity: time::Duration::days(1),
            ca_files: None,
            liveness: Default::default(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            metrics_auth: false,
            max_spec_bytes: convoy_api::limits::DEFAULT_MAX_SPEC_BYTES,
            name: "test".into(),
            prometheus_url: String::new(),
        },
        shutdown.clone(),
    )
    .await
    .unwrap();

    // Secrets on disk are private.
    for secret in [
        running.token_path.clone(),
        running.pki.ca_key(),
        running.pki.server_key(),
    ] {
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", secret.display());
    }

    let ca_pem = std::fs::read(running.pki.ca_cert()).unwrap();
    let server_tls = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca_pem))
            .domain_name(convoy_proto::COORDINATOR_SERVER_NAME)
    };

    // API: TLS health works without a token; ControlService refuses one missing.
    let api = channel(running.api_addr, server_tls()).await.unwrap();
    let status = health(api.clone(), "convoy.v1.ControlService")
        .await
        .unwrap();
    assert_eq!(status, ServingStatus::Serving as i32);
    let err = convoy_proto::control_service_client::ControlServiceClient::new(api)
        .status(convoy_proto::StatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    // Agent port without a client certificate: only enrolment is open; the
    // agent stream is refused.
    let ch = channel(running.agent_addr, server_tls()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<convoy_proto::AgentMessage>(1);
    drop(tx);
    let refused = convoy_proto::agent_service_client::AgentServiceClient::new(ch)
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");

    // Agent port with a certificate from another CA: refused.
    let other = tempfile::tempdir().unwrap();
    let other_ca = Ca::load_or_create(&PkiPaths::new(other.path())).unwrap();
    let foreign = other_ca
        .issue_agent("intruder", time::Duration::days(1))
        .unwrap();
    let tls = server_tls().identity(Identity::from_pem(&foreign.cert_pem, &foreign.key_pem));
    let refused = match channel(running.agent_addr, tls).await {
        Err(e) => Err(e),
        Ok(ch) => health(ch, "").await.map_err(|s| s.to_string()),
    };
    assert!(
        refused.is_err(),
        "the agent port served a certificate from another CA"
    );

    // Agent port with our CA's certificate: served.
    let ca = Ca::load(&running.pki).unwrap();
    let ours = ca.issue_agent("n1", time::Duration::days(1)).unwrap();
    let tls = server_tls().identity(Identity::from_pem(&ours.cert_pem, &ours.key_pem));
    let ch = channel(running.agent_addr, tls).await.unwrap();
    let status = health(ch, "convoy.v1.AgentService").await.unwrap();
    assert_eq!(status, ServingStatus::Serving as i32);

    shutdown.cancel();
    for t in running.tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("servers stop on shutdown")
            .unwrap();
    }
}

//! The connection to the coordinator's control API: TLS verified against
//! Convoy's CA and server name, the bearer token on every call, and errors
//! turned into sentences a user can act on.

use std::error::Error as StdError;
use std::fs;
use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use convoy_proto::control_service_client::ControlServiceClient;
use convoy_proto::{
    ApplyRequest, ApplyResponse, CreateJoinTokenRequest, CreateJoinTokenResponse,
    CreateTokenRequest, CreateTokenResponse, DeleteRequest, DeleteResponse, ListAuditRequest,
    ListAuditResponse, ListNodesRequest, ListNodesResponse, ListTokensRequest, ListTokensResponse,
    RemoveNodeRequest, RemoveNodeResponse, RevokeTokenRequest, RevokeTokenResponse, StatusRequest,
    StatusResponse, AUTHORIZATION, COORDINATOR_SERVER_NAME,
};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};
use tonic::{Code, Request, Response, Status};

use crate::config::{Settings, Token};

/// The API port `convoyd` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7400;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bounds TCP connect plus the TLS handshake, so an unreachable coordinator
/// is reported within seconds whatever the network does.
const DIAL_DEADLINE: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Client = ControlServiceClient<InterceptedService<Channel, BearerAuth>>;

/// The rollout commands with no arguments beyond the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutVerb {
    Promote,
    Pause,
    Resume,
}

/// A connected control API client.
pub struct Coordinator {
    client: Client,
    address: String,
}

impl Coordinator {
    /// Dials the coordinator and completes the TLS handshake, so that a wrong
    /// address or CA is reported here rather than on the first call.
    pub async fn connect(settings: &Settings) -> Result<Self> {
        let address = normalize_address(&settings.address)?;
        let auth = BearerAuth::new(read_token(settings.token.as_ref())?)?;
        let Some(ca_path) = &settings.ca else {
            bail!(
                "no CA certificate configured for {address}: pass --ca, set CONVOY_CA, or use a context with `ca`"
            );
        };
        let ca = fs::read_to_string(ca_path)
            .with_context(|| format!("cannot read the CA certificate {}", ca_path.display()))?;
        if !ca.contains("-----BEGIN CERTIFICATE-----") {
            bail!("the CA file {} holds no PEM certificate", ca_path.display());
        }
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(COORDINATOR_SERVER_NAME)
            .timeout(CONNECT_TIMEOUT);
        let endpoint = Endpoint::from_shared(address.clone())
            .with_context(|| format!("invalid coordinator address {address}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tls_config(tls)
            .map_err(|e| anyhow!("invalid TLS settings for {address}: {}", root_cause(&e)))?;

        let channel = match tokio::time::timeout(DIAL_DEADLINE, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => bail!(unreachable(&address, &root_cause(&e))),
            Err(_) => bail!(unreachable(
                &address,
                &format!("no answer within {} s", DIAL_DEADLINE.as_secs())
            )),
        };
        Ok(Self {
            client: ControlServiceClient::with_interceptor(channel, auth),
            address,
        })
    }

    pub async fn apply(&mut self, request: ApplyRequest) -> Result<ApplyResponse> {
        finish(&self.address, self.client.apply(request)).await
    }

    pub async fn status(&mut self, request: StatusRequest) -> Result<StatusResponse> {
        finish(&self.address, self.client.status(request)).await
    }

    pub async fn list_nodes(&mut self) -> Result<ListNodesResponse> {
        finish(&self.address, self.client.list_nodes(ListNodesRequest {})).await
    }

    pub async fn delete(&mut self, request: DeleteRequest) -> Result<DeleteResponse> {
        finish(&self.address, self.client.delete(request)).await
    }

    pub async fn remove_node(&mut self, node: String) -> Result<RemoveNodeResponse> {
        finish(
            &self.address,
            self.client.remove_node(RemoveNodeRequest { node }),
        )
        .await
    }

    pub async fn create_token(
        &mut self,
        request: CreateTokenRequest,
    ) -> Result<CreateTokenResponse> {
        finish(&self.address, self.client.create_token(request)).await
    }

    pub async fn list_tokens(&mut self) -> Result<ListTokensResponse> {
        finish(&self.address, self.client.list_tokens(ListTokensRequest {})).await
    }

    pub async fn revoke_token(&mut self, id: String) -> Result<RevokeTokenResponse> {
        finish(
            &self.address,
            self.client.revoke_token(RevokeTokenRequest { id }),
        )
        .await
    }

    pub async fn create_join_token(
        &mut self,
        request: CreateJoinTokenRequest,
    ) -> Result<CreateJoinTokenResponse> {
        finish(&self.address, self.client.create_join_token(request)).await
    }

    pub async fn list_audit(&mut self, since_unix_ms: i64) -> Result<ListAuditResponse> {
        finish(
            &self.address,
            self.client.list_audit(ListAuditRequest { since_unix_ms }),
        )
        .await
    }

    /// The cluster's events as they happen (the stream has no deadline).
    pub async fn watch(
        &mut self,
        request: convoy_proto::WatchRequest,
    ) -> Result<tonic::Streaming<convoy_proto::ClusterEvent>> {
        finish(&self.address, self.client.watch(request)).await
    }

    /// Runs every health check now. The call may take as long as the
    /// agents' timeout, which the request bounds.
    pub async fn verify(
        &mut self,
        request: convoy_proto::VerifyRequest,
    ) -> Result<convoy_proto::VerifyResponse> {
        finish(&self.address, self.client.verify(request)).await
    }

    pub async fn rollout_command(
        &mut self,
        command: RolloutVerb,
        request: convoy_proto::RolloutRequest,
    ) -> Result<convoy_proto::RolloutInfo> {
        match command {
            RolloutVerb::Promote => finish(&self.address, self.client.promote(request)).await,
            RolloutVerb::Pause => finish(&self.address, self.client.pause_rollout(request)).await,
            RolloutVerb::Resume => finish(&self.address, self.client.resume_rollout(request)).await,
        }
    }

    pub async fn history(
        &mut self,
        request: convoy_proto::HistoryRequest,
    ) -> Result<convoy_proto::HistoryResponse> {
        finish(&self.address, self.client.history(request)).await
    }

    pub async fn rollback(
        &mut self,
        request: convoy_proto::RollbackRequest,
    ) -> Result<ApplyResponse> {
        finish(&self.address, self.client.rollback(request)).await
    }

    /// Reads the next event; `None` when the coordinator ended the stream.
    pub async fn next_event(
        &self,
        stream: &mut tonic::Streaming<convoy_proto::ClusterEvent>,
    ) -> Result<Option<convoy_proto::ClusterEvent>> {
        stream
            .message()
            .await
            .map_err(|status| anyhow!(describe_status(&status, &self.address)))
    }

    /// The address dialed, `https://HOST:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }
}

async fn finish<T>(
    address: &str,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(anyhow!(describe_status(&status, address))),
        Err(_) => Err(anyhow!(
            "the coordinator at {address} did not answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
    }
}

fn unreachable(address: &str, reason: &str) -> String {
    format!("cannot reach the coordinator at {address}: {reason}")
}

/// The server's messages are written for users, so they pass through; only
/// failures raised on this side (they carry a source error) and a refused
/// token get words of their own.
fn describe_status(status: &Status, address: &str) -> String {
    let message = status.message().trim();
    let message = if message.is_empty() {
        status.code().description()
    } else {
        message
    };
    if let Some(source) = status.source() {
        if matches!(status.code(), Code::Unavailable | Code::Unknown) {
            return unreachable(address, &root_cause(source));
        }
    }
    match status.code() {
        Code::Unauthenticated => format!("the coordinator refused the token: {message}"),
        Code::DeadlineExceeded | Code::Cancelled => {
            format!("the coordinator at {address} did not answer in time: {message}")
        }
        _ => message.to_owned(),
    }
}

/// The innermost error, worded like the rest of our messages
/// ("connection refused", not "Connection refused (os error 111)").
fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut inner = err;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = inner.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    };
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_ascii_uppercase() && second.is_lowercase() => {
            first.to_ascii_lowercase().to_string() + &text[1..]
        }
        _ => text,
    }
}

/// Accepts `https://HOST[:PORT]` or `HOST[:PORT]`; the port defaults to 7400.
/// Returns `https://HOST:PORT`. The API is TLS only, so other schemes are
/// refused.
pub fn normalize_address(raw: &str) -> Result<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        bail!("the coordinator address is empty");
    }
    let with_scheme = match raw.split_once("://") {
        Some(("https", _)) => raw.to_owned(),
        Some(("http", _)) => {
            bail!("the coordinator's API is TLS only: use https:// instead of http:// in `{raw}`")
        }
        Some((scheme, _)) => bail!("unsupported scheme `{scheme}` in `{raw}`: use https://"),
        None => format!("https://{raw}"),
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e| anyhow!("invalid coordinator address `{raw}`: {e}"))?;
    let Some(authority) = uri.authority() else {
        bail!("invalid coordinator address `{raw}`: no host");
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        bail!("invalid coordinator address `{raw}`: expected HOST:PORT, without a path");
    }
    if authority.as_str().contains('@') {
        bail!("invalid coordinator address `{raw}`: expected HOST:PORT, without user info");
    }
    let host = authority.host();
    let port = match authority.as_str()[host.len()..].strip_prefix(':') {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| anyhow!("invalid coordinator address `{raw}`: bad port `{port}`"))?,
    };
    Ok(format!("https://{host}:{port}"))
}

fn read_token(source: Option<&Token>) -> Result<String> {
    let token = match source {
        None => bail!(
            "no token configured: pass --token-file, set CONVOY_TOKEN_FILE or CONVOY_TOKEN, or use a context with `token_file`"
        ),
        Some(Token::Value(value)) => value.trim().to_owned(),
        Some(Token::File(path)) => fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?
            .trim()
            .to_owned(),
    };
    if token.is_empty() {
        bail!(match source {
            Some(Token::File(path)) => format!("the token file {} is empty", path.display()),
            _ => "CONVOY_TOKEN is empty".to_owned(),
        });
    }
    Ok(token)
}

/// Adds `authorization: Bearer TOKEN` to every call.
#[derive(Clone)]
pub struct BearerAuth(AsciiMetadataValue);

impl BearerAuth {
    fn new(token: String) -> Result<Self> {
        // The error would not say which character is bad, so the token stays out of it.
        let mut value = AsciiMetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| anyhow!("the token holds characters that cannot be sent in a header"))?;
        value.set_sensitive(true);
        Ok(Self(value))
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert(AUTHORIZATION, self.0.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use convoy_proto::control_service_server::{ControlService, ControlServiceServer};
    use convoy_proto::{Node, NodeState};
    use tonic::transport::{Identity, Server, ServerTlsConfig};

    use super::*;

    #[test]
    fn host_and_port_without_scheme_get_https() {
        assert_eq!(
            normalize_address("127.0.0.1:7400").unwrap(),
            "https://127.0.0.1:7400"
        );
        assert_eq!(
            normalize_address(" coordinator.example:9000 ").unwrap(),
            "https://coordinator.example:9000"
        );
    }

    #[test]
    fn https_addresses_are_kept_and_a_trailing_slash_dropped() {
        assert_eq!(
            normalize_address("https://127.0.0.1:7400/").unwrap(),
            "https://127.0.0.1:7400"
        );
        assert_eq!(
            normalize_address("https://[::1]:7400").unwrap(),
            "https://[::1]:7400"
        );
    }

    #[test]
    fn a_missing_port_defaults_to_7400() {
        assert_eq!(normalize_address("myhost").unwrap(), "https://myhost:7400");
        assert_eq!(
            normalize_address("https://myhost").unwrap(),
            "https://myhost:7400"
        );
    }

    #[test]
    fn plain_http_other_schemes_and_paths_are_refused() {
        let err = normalize_address("http://127.0.0.1:7400").unwrap_err();
        assert!(err.to_string().contains("TLS only"), "{err}");
        assert!(normalize_address("ftp://h:1").is_err());
        assert!(normalize_address("https://h:1/api").is_err());
        assert!(normalize_address("").is_err());
        assert!(normalize_address("h:notaport").is_err());
        assert!(normalize_address("h:0").is_err());
        assert!(normalize_address("h:").is_err());
    }

    #[test]
    fn token_file_content_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        fs::write(&path, "  abc123\n\n").unwrap();
        assert_eq!(read_token(Some(&Token::File(path))).unwrap(), "abc123");
    }

    #[test]
    fn empty_or_missing_token_is_an_error_that_does_not_leak() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        fs::write(&path, "\n").unwrap();
        let err = read_token(Some(&Token::File(path.clone()))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the token file {} is empty", path.display())
        );
        let err = read_token(Some(&Token::File(dir.path().join("nope")))).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read the token file"));
        assert!(read_token(None)
            .unwrap_err()
            .to_string()
            .starts_with("no token configured"));
        let err = BearerAuth::new("bad\ntoken-s3cret".into()).err().unwrap();
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn os_error_numbers_are_dropped_from_root_causes() {
        let err = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = std::io::Error::new(err.kind(), "Connection refused (os error 111)");
        assert_eq!(root_cause(&err), "connection refused");
        let err = std::io::Error::other("TLS handshake failed");
        assert_eq!(root_cause(&err), "TLS handshake failed");
    }

    #[test]
    fn server_messages_pass_through_and_a_refused_token_is_named() {
        let addr = "https://h:1";
        let status = Status::invalid_argument("spec.yaml:3:5: unknown field `imag`");
        assert_eq!(
            describe_status(&status, addr),
            "spec.yaml:3:5: unknown field `imag`"
        );
        let status = Status::unauthenticated("invalid token");
        assert_eq!(
            describe_status(&status, addr),
            "the coordinator refused the token: invalid token"
        );
        let status = Status::not_found("");
        assert_eq!(
            describe_status(&status, addr),
            "Some requested entity was not found"
        );
    }

    // ---- against a fake coordinator over real TLS ----

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

    struct Fake;

    fn check_token<T>(request: &Request<T>) -> Result<(), Status> {
        match request.metadata().get(AUTHORIZATION).map(|v| v.to_str()) {
            Some(Ok("Bearer good-token")) => Ok(()),
            _ => Err(Status::unauthenticated("invalid token")),
        }
    }

    #[tonic::async_trait]
    impl ControlService for Fake {
        async fn apply(
            &self,
            request: Request<ApplyRequest>,
        ) -> Result<Response<ApplyResponse>, Status> {
            check_token(&request)?;
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
            check_token(&request)?;
            Err(Status::not_found(format!(
                "service `{}` not found",
                request.into_inner().service
            )))
        }
        async fn list_nodes(
            &self,
            request: Request<ListNodesRequest>,
        ) -> Result<Response<ListNodesResponse>, Status> {
            check_token(&request)?;
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
            check_token(&request)?;
            Ok(Response::new(RemoveNodeResponse {
                lost_instances: 1,
                revoked_certificates: 1,
            }))
        }

        async fn delete(
            &self,
            request: Request<DeleteRequest>,
        ) -> Result<Response<DeleteResponse>, Status> {
            check_token(&request)?;
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::builder()
            .tls_config(ServerTlsConfig::new().identity(identity))
            .unwrap()
            .add_service(ControlServiceServer::new(Fake))
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
}

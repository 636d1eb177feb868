//! The connection to the coordinator's control API: TLS verified against
//! Convoy's CA and server name, the bearer token on every call, and errors
//! turned into sentences a user can act on. Given several coordinators'
//! addresses, it finds the one that leads (see [`failover`]).

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
    StatusResponse, COORDINATOR_SERVER_NAME,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Response, Status};

use crate::config::Settings;

mod address;
mod auth;
mod errors;
mod exec;
mod failover;
mod logs;
mod notify;
mod secrets;
#[cfg(test)]
mod tests;

pub use address::{normalize_address, parse_addresses, DEFAULT_PORT};
use auth::read_token;
pub use auth::BearerAuth;
use errors::{describe_status, is_standby, is_trust_failure, root_cause, unreachable};
use failover::Rotation;

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
    /// The address of the coordinator connected to.
    address: String,
    dialer: Dialer,
    /// Every address given; one address means no failover.
    rotation: Rotation,
}

/// How to dial any of the coordinators: the same CA and token for all.
struct Dialer {
    tls: ClientTlsConfig,
    auth: BearerAuth,
}

enum DialError {
    /// Worth trying the next address: nobody listens, no answer in time, a
    /// TLS handshake cut short.
    Next(String),
    /// Would fail on every coordinator alike (a CA that does not match):
    /// reported at once.
    Fatal(anyhow::Error),
}

impl Dialer {
    async fn dial(&self, address: &str) -> Result<Client, DialError> {
        let endpoint = Endpoint::from_shared(address.to_owned())
            .with_context(|| format!("invalid coordinator address {address}"))
            .map_err(DialError::Fatal)?
            .connect_timeout(CONNECT_TIMEOUT)
            .tls_config(self.tls.clone())
            .map_err(|e| {
                DialError::Fatal(anyhow!(
                    "invalid TLS settings for {address}: {}",
                    root_cause(&e)
                ))
            })?;
        match tokio::time::timeout(DIAL_DEADLINE, endpoint.connect()).await {
            Ok(Ok(channel)) => Ok(ControlServiceClient::with_interceptor(
                channel,
                self.auth.clone(),
            )),
            Ok(Err(e)) => {
                let reason = root_cause(&e);
                if is_trust_failure(&reason) {
                    Err(DialError::Fatal(anyhow!(unreachable(address, &reason))))
                } else {
                    Err(DialError::Next(reason))
                }
            }
            Err(_) => Err(DialError::Next(format!(
                "no answer within {} s",
                DIAL_DEADLINE.as_secs()
            ))),
        }
    }

    /// Dials from the rotation's current address on until one connects;
    /// with one address, its failure is the error.
    async fn dial_next(&self, rotation: &mut Rotation) -> Result<Client> {
        loop {
            let address = rotation.current().to_owned();
            match self.dial(&address).await {
                Ok(client) => return Ok(client),
                Err(DialError::Fatal(e)) => return Err(e),
                Err(DialError::Next(reason)) if rotation.len() == 1 => {
                    bail!(unreachable(&address, &reason))
                }
                Err(DialError::Next(reason)) => rotation.fail_and_wait(reason).await?,
            }
        }
    }
}

impl Coordinator {
    /// Dials the coordinator and completes the TLS handshake, so that a wrong
    /// address or CA is reported here rather than on the first call. Given
    /// several addresses (comma-separated), dials them in turn until one
    /// connects; a standby is left for another on the first call.
    pub async fn connect(settings: &Settings) -> Result<Self> {
        let addresses = parse_addresses(&settings.address)?;
        let auth = BearerAuth::new(read_token(settings.token.as_ref())?)?;
        let Some(ca_path) = &settings.ca else {
            bail!(
                "no CA certificate configured for {}: pass --ca, set CONVOY_CA, or use a context with `ca`",
                addresses.join(", ")
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
        let dialer = Dialer { tls, auth };
        let mut rotation = Rotation::new(addresses);
        let client = dialer.dial_next(&mut rotation).await?;
        Ok(Self {
            client,
            address: rotation.current().to_owned(),
            dialer,
            rotation,
        })
    }

    /// Makes one call. A standby's answer (`UNAVAILABLE`, "standby: ...")
    /// says another coordinator leads: the call goes to the next address,
    /// round after round until the failover budget is spent. A standby
    /// refuses before doing anything, so even a write is safe to send again;
    /// no other failure is retried (the call may have been carried out).
    async fn call<Req, T, Fut>(
        &mut self,
        request: Req,
        rpc: impl Fn(Client, Req) -> Fut,
    ) -> Result<T>
    where
        Req: Clone,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        loop {
            let answer =
                tokio::time::timeout(REQUEST_TIMEOUT, rpc(self.client.clone(), request.clone()))
                    .await;
            match answer {
                Ok(Err(status)) if self.rotation.len() > 1 && is_standby(&status) => {
                    let reason = status.message().trim().to_owned();
                    self.rotation.fail_and_wait(reason).await?;
                    self.client = self.dialer.dial_next(&mut self.rotation).await?;
                    self.address = self.rotation.current().to_owned();
                }
                answer => {
                    self.rotation.succeeded();
                    return finish(&self.address, answer);
                }
            }
        }
    }

    pub async fn apply(&mut self, request: ApplyRequest) -> Result<ApplyResponse> {
        self.call(request, |mut c, r| async move { c.apply(r).await })
            .await
    }

    pub async fn status(&mut self, request: StatusRequest) -> Result<StatusResponse> {
        self.call(request, |mut c, r| async move { c.status(r).await })
            .await
    }

    pub async fn list_nodes(&mut self) -> Result<ListNodesResponse> {
        self.call(ListNodesRequest {}, |mut c, r| async move {
            c.list_nodes(r).await
        })
        .await
    }

    pub async fn delete(&mut self, request: DeleteRequest) -> Result<DeleteResponse> {
        self.call(request, |mut c, r| async move { c.delete(r).await })
            .await
    }

    pub async fn remove_node(&mut self, node: String) -> Result<RemoveNodeResponse> {
        self.call(RemoveNodeRequest { node }, |mut c, r| async move {
            c.remove_node(r).await
        })
        .await
    }

    pub async fn cordon_node(
        &mut self,
        node: String,
        cordon: bool,
    ) -> Result<convoy_proto::CordonNodeResponse> {
        let request = convoy_proto::CordonNodeRequest { node, cordon };
        self.call(request, |mut c, r| async move { c.cordon_node(r).await })
            .await
    }

    pub async fn drain_node(&mut self, node: String) -> Result<convoy_proto::DrainNodeResponse> {
        let request = convoy_proto::DrainNodeRequest { node };
        self.call(request, |mut c, r| async move { c.drain_node(r).await })
            .await
    }

    pub async fn create_token(
        &mut self,
        request: CreateTokenRequest,
    ) -> Result<CreateTokenResponse> {
        self.call(request, |mut c, r| async move { c.create_token(r).await })
            .await
    }

    pub async fn set_registry_auth(
        &mut self,
        request: convoy_proto::SetRegistryAuthRequest,
    ) -> Result<convoy_proto::RegistryAuthInfo> {
        self.call(
            request,
            |mut c, r| async move { c.set_registry_auth(r).await },
        )
        .await
    }

    pub async fn list_volumes(&mut self, env: String) -> Result<convoy_proto::ListVolumesResponse> {
        self.call(
            convoy_proto::ListVolumesRequest { env },
            |mut c, r| async move { c.list_volumes(r).await },
        )
        .await
    }

    pub async fn remove_volumes(
        &mut self,
        env: String,
        key: String,
    ) -> Result<convoy_proto::ListVolumesResponse> {
        self.call(
            convoy_proto::RemoveVolumesRequest { env, key },
            |mut c, r| async move { c.remove_volumes(r).await },
        )
        .await
    }

    pub async fn list_registry_auth(&mut self) -> Result<convoy_proto::ListRegistryAuthResponse> {
        self.call(
            convoy_proto::ListRegistryAuthRequest {},
            |mut c, r| async move { c.list_registry_auth(r).await },
        )
        .await
    }

    pub async fn remove_registry_auth(
        &mut self,
        server: String,
    ) -> Result<convoy_proto::RegistryAuthInfo> {
        self.call(
            convoy_proto::RemoveRegistryAuthRequest { server },
            |mut c, r| async move { c.remove_registry_auth(r).await },
        )
        .await
    }

    pub async fn list_tokens(&mut self) -> Result<ListTokensResponse> {
        self.call(ListTokensRequest {}, |mut c, r| async move {
            c.list_tokens(r).await
        })
        .await
    }

    pub async fn revoke_token(&mut self, id: String) -> Result<RevokeTokenResponse> {
        self.call(RevokeTokenRequest { id }, |mut c, r| async move {
            c.revoke_token(r).await
        })
        .await
    }

    pub async fn create_join_token(
        &mut self,
        request: CreateJoinTokenRequest,
    ) -> Result<CreateJoinTokenResponse> {
        self.call(
            request,
            |mut c, r| async move { c.create_join_token(r).await },
        )
        .await
    }

    pub async fn list_audit(&mut self, since_unix_ms: i64) -> Result<ListAuditResponse> {
        self.call(ListAuditRequest { since_unix_ms }, |mut c, r| async move {
            c.list_audit(r).await
        })
        .await
    }

    /// The cluster's events as they happen (the stream has no deadline).
    pub async fn watch(
        &mut self,
        request: convoy_proto::WatchRequest,
    ) -> Result<tonic::Streaming<convoy_proto::ClusterEvent>> {
        self.call(request, |mut c, r| async move { c.watch(r).await })
            .await
    }

    /// Runs every health check now. The call may take as long as the
    /// agents' timeout, which the request bounds.
    pub async fn verify(
        &mut self,
        request: convoy_proto::VerifyRequest,
    ) -> Result<convoy_proto::VerifyResponse> {
        self.call(request, |mut c, r| async move { c.verify(r).await })
            .await
    }

    pub async fn rollout_command(
        &mut self,
        command: RolloutVerb,
        request: convoy_proto::RolloutRequest,
    ) -> Result<convoy_proto::RolloutInfo> {
        match command {
            RolloutVerb::Promote => {
                self.call(request, |mut c, r| async move { c.promote(r).await })
                    .await
            }
            RolloutVerb::Pause => {
                self.call(request, |mut c, r| async move { c.pause_rollout(r).await })
                    .await
            }
            RolloutVerb::Resume => {
                self.call(request, |mut c, r| async move { c.resume_rollout(r).await })
                    .await
            }
        }
    }

    pub async fn history(
        &mut self,
        request: convoy_proto::HistoryRequest,
    ) -> Result<convoy_proto::HistoryResponse> {
        self.call(request, |mut c, r| async move { c.history(r).await })
            .await
    }

    pub async fn rollback(
        &mut self,
        request: convoy_proto::RollbackRequest,
    ) -> Result<ApplyResponse> {
        self.call(request, |mut c, r| async move { c.rollback(r).await })
            .await
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

    /// Every coordinator address given (several share one store).
    pub fn addresses(&self) -> &[String] {
        self.rotation.all()
    }
}

fn finish<T>(
    address: &str,
    answer: Result<Result<Response<T>, Status>, tokio::time::error::Elapsed>,
) -> Result<T> {
    match answer {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(anyhow!(describe_status(&status, address))),
        Err(_) => Err(anyhow!(
            "the coordinator at {address} did not answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
    }
}

//! The connection to the coordinator's control API: TLS verified against
//! Convoy's CA and server name, the bearer token on every call, and errors
//! turned into sentences a user can act on.

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
mod secrets;
#[cfg(test)]
mod tests;

pub use address::{normalize_address, DEFAULT_PORT};
use auth::read_token;
pub use auth::BearerAuth;
use errors::{describe_status, root_cause, unreachable};

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

    pub async fn set_registry_auth(
        &mut self,
        request: convoy_proto::SetRegistryAuthRequest,
    ) -> Result<convoy_proto::RegistryAuthInfo> {
        finish(&self.address, self.client.set_registry_auth(request)).await
    }

    pub async fn list_volumes(&mut self, env: String) -> Result<convoy_proto::ListVolumesResponse> {
        finish(
            &self.address,
            self.client
                .list_volumes(convoy_proto::ListVolumesRequest { env }),
        )
        .await
    }

    pub async fn remove_volumes(
        &mut self,
        env: String,
        key: String,
    ) -> Result<convoy_proto::ListVolumesResponse> {
        finish(
            &self.address,
            self.client
                .remove_volumes(convoy_proto::RemoveVolumesRequest { env, key }),
        )
        .await
    }

    pub async fn list_registry_auth(&mut self) -> Result<convoy_proto::ListRegistryAuthResponse> {
        finish(
            &self.address,
            self.client
                .list_registry_auth(convoy_proto::ListRegistryAuthRequest {}),
        )
        .await
    }

    pub async fn remove_registry_auth(
        &mut self,
        server: String,
    ) -> Result<convoy_proto::RegistryAuthInfo> {
        finish(
            &self.address,
            self.client
                .remove_registry_auth(convoy_proto::RemoveRegistryAuthRequest { server }),
        )
        .await
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

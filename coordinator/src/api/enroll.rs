//! `EnrollService.Join`: a new agent trades a one-time join token and a CSR
//! (its key never leaves its host) for a certificate whose identity is its
//! node name. Served on the agent port, the one call there that needs no
//! client certificate.

use std::sync::Arc;

use convoy_proto as pb;
use tonic::{Request, Response, Status};

use crate::{
    audit::Audit,
    pki::{self, Ca},
    state::Coordinator,
    tokens::Tokens,
};

/// Bigger tokens are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 256;

pub struct EnrollApi {
    coord: Arc<Coordinator>,
    ca: Arc<Ca>,
    tokens: Arc<Tokens>,
    audit: Arc<Audit>,
    validity: time::Duration,
}

impl EnrollApi {
    pub fn new(
        coord: Arc<Coordinator>,
        ca: Arc<Ca>,
        tokens: Arc<Tokens>,
        audit: Arc<Audit>,
        validity: time::Duration,
    ) -> Self {
        Self {
            coord,
            ca,
            tokens,
            audit,
            validity,
        }
    }
}

#[tonic::async_trait]
impl pb::enroll_service_server::EnrollService for EnrollApi {
    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let peer = req.remote_addr();
        let pb::JoinRequest { token, csr_pem } = req.into_inner();
        if token.len() > MAX_TOKEN_BYTES || csr_pem.len() > pki::MAX_CSR_BYTES {
            tracing::warn!(?peer, "refused a join: request too large");
            return Err(Status::invalid_argument("join request too large"));
        }
        // The CSR is checked (and signed) before the token is used, so a bad
        // CSR does not burn a use of the token.
        let (node, certificate_pem) =
            self.ca
                .sign_agent_csr(&csr_pem, self.validity)
                .map_err(|e| {
                    tracing::warn!(?peer, error = %e, "refused a join");
                    Status::invalid_argument(e.to_string())
                })?;
        if self.coord.node_is_active(&node).await {
            let msg = format!(
                "node `{node}` is already enrolled; remove it first (`convoy node remove {node}`) or pick another name"
            );
            tracing::warn!(?peer, node, "refused a join: name taken");
            return Err(Status::already_exists(msg));
        }
        let grant = match self.tokens.consume_join_token(token.trim(), &node).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(?peer, node, error = %e, "refused a join");
                self.audit
                    .record("join-token", "node.join", &node, &e.to_string())
                    .await;
                return Err(Status::permission_denied(e.to_string()));
            }
        };
        let who = format!("join-token:{}", grant.token_id);
        if let Err(e) = self
            .coord
            .enroll(&node, &grant.token_id, &grant.labels)
            .await
        {
            self.audit
                .record(&who, "node.join", &node, &e.to_string())
                .await;
            return Err(e.into());
        }
        self.audit.record(&who, "node.join", &node, "ok").await;
        tracing::info!(?peer, node, token = %grant.token_id, "agent enrolled");
        let expires_unix_ms =
            (time::OffsetDateTime::now_utc() + self.validity).unix_timestamp() * 1000;
        Ok(Response::new(pb::JoinResponse {
            node_name: node,
            certificate_pem,
            ca_pem: self.ca.cert_pem().to_string(),
            expires_unix_ms,
            labels: grant.labels.into_iter().collect(),
        }))
    }
}

//! `CreateToken`, `ListTokens`, `RevokeToken` and `CreateJoinToken`: the
//! CLI's tokens and the agents' join tokens; admin only, audited.

use super::*;

impl ControlApi {
    pub(super) async fn token_create(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = caller(&req)?;
        let pb::CreateTokenRequest {
            name,
            role,
            envs,
            ttl_seconds,
        } = req.into_inner();
        let target = if name.is_empty() {
            format!("({role})")
        } else {
            format!("{name} ({role})")
        };
        self.allow(&caller, Action::CreateToken, &target, true)
            .await?;
        let made = async {
            let new = NewToken {
                name,
                role: Role::parse_cli(&role)?,
                envs,
                ttl_ms: ttl_ms(ttl_seconds)?,
            };
            Ok::<_, Status>(self.tokens.create(new, &caller.who()).await?)
        }
        .await;
        let target = match &made {
            Ok((rec, _)) => format!("{} ({}, {})", rec.id, rec.name, rec.role),
            Err(_) => target,
        };
        self.audited(&caller, Action::CreateToken, &target, &made)
            .await;
        let (rec, token) = made?;
        tracing::info!(who = caller.who(), id = rec.id, role = %rec.role, "token created");
        Ok(Response::new(pb::CreateTokenResponse {
            info: Some(rec.info()),
            token,
        }))
    }

    pub(super) async fn token_list(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let caller = caller(&req)?;
        self.allow(&caller, Action::ListTokens, "", false).await?;
        let pb::ListTokensRequest {} = req.into_inner();
        Ok(Response::new(pb::ListTokensResponse {
            tokens: self.tokens.list().iter().map(|r| r.info()).collect(),
        }))
    }

    pub(super) async fn token_revoke(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = caller(&req)?;
        let pb::RevokeTokenRequest { id } = req.into_inner();
        self.allow(&caller, Action::RevokeToken, &id, true).await?;
        let done = self.tokens.revoke(&id).await.map_err(Status::from);
        self.audited(&caller, Action::RevokeToken, &id, &done).await;
        let rec = done?;
        tracing::info!(who = caller.who(), id, "token revoked");
        Ok(Response::new(pb::RevokeTokenResponse {
            info: Some(rec.info()),
        }))
    }

    pub(super) async fn join_token_create(
        &self,
        req: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::CreateJoinTokenResponse>, Status> {
        let caller = caller(&req)?;
        let pb::CreateJoinTokenRequest {
            ttl_seconds,
            labels,
            uses,
            node,
        } = req.into_inner();
        if !node.is_empty() {
            crate::pki::validate_node_name(&node)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        self.allow(&caller, Action::CreateJoinToken, "", true)
            .await?;
        let made = async {
            let new = NewJoinToken {
                ttl_ms: ttl_ms(ttl_seconds)?,
                labels: labels.into_iter().collect(),
                uses,
                node,
            };
            Ok::<_, Status>(self.tokens.create_join(new, &caller.who()).await?)
        }
        .await;
        let target = match &made {
            Ok((rec, _)) => rec.id.clone(),
            Err(_) => String::new(),
        };
        self.audited(&caller, Action::CreateJoinToken, &target, &made)
            .await;
        let (rec, token) = made?;
        tracing::info!(
            who = caller.who(),
            id = rec.id,
            uses = rec.uses_left,
            "join token created"
        );
        Ok(Response::new(pb::CreateJoinTokenResponse {
            info: Some(rec.info()),
            token,
            ca_fingerprint: self.ca_fingerprint.clone(),
        }))
    }
}

impl From<TokenError> for Status {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::NotFound(_) => Status::not_found(e.to_string()),
            TokenError::Invalid(_) => Status::invalid_argument(e.to_string()),
            TokenError::Store(_) | TokenError::AdminFile { .. } => {
                tracing::error!(error = %e, "token store failure");
                Status::unavailable(format!("the coordinator's store failed: {e}"))
            }
            TokenError::Unknown
            | TokenError::Expired { .. }
            | TokenError::UsedUp(_)
            | TokenError::Revoked { .. }
            | TokenError::JoinTokenAsCli(_) => Status::permission_denied(e.to_string()),
        }
    }
}

fn ttl_ms(seconds: u64) -> Result<i64, Status> {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .ok_or_else(|| Status::invalid_argument("the TTL is too long"))
}

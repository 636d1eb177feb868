//! Bearer-token authentication of CLI calls. Tokens are kept as SHA-256
//! hashes only (see [`crate::tokens`]); the interceptor looks the caller's
//! token up and puts a [`Caller`] in the request's extensions. What each
//! role may do is decided per RPC in [`super::control`].

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use crate::{
    state::now_unix_ms,
    tokens::{Role, TokenError, TokenRecord, Tokens},
};

/// Who made a call, put in the request's extensions once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Environments a deployer may touch; empty: all.
    pub envs: Vec<String>,
}

impl Caller {
    /// `ID (NAME)`, as the audit log and the logs name the caller.
    pub fn who(&self) -> String {
        format!("{} ({})", self.id, self.name)
    }

    /// `deployer for staging, prod`, `viewer`, ...
    pub fn role_desc(&self) -> String {
        if self.envs.is_empty() {
            self.role.to_string()
        } else {
            format!("{} for {}", self.role, self.envs.join(", "))
        }
    }
}

impl From<TokenRecord> for Caller {
    fn from(r: TokenRecord) -> Self {
        Self {
            id: r.id,
            name: r.name,
            role: r.role,
            envs: r.envs,
        }
    }
}

/// SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token: 32 bytes, hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("convoy_{}", hex::encode(bytes))
}

#[derive(Clone)]
pub struct TokenAuth {
    tokens: Arc<Tokens>,
}

impl TokenAuth {
    pub fn new(tokens: Arc<Tokens>) -> Self {
        Self { tokens }
    }

    /// The interceptor: checks `authorization: Bearer TOKEN`. The token
    /// itself is never logged.
    pub fn check(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get(convoy_proto::AUTHORIZATION)
            .ok_or_else(|| {
                Status::unauthenticated(
                    "no token: pass --token-file or set CONVOY_TOKEN / CONVOY_TOKEN_FILE",
                )
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(bearer)
            .ok_or_else(|| Status::unauthenticated("malformed authorization header"))?;
        let caller = authenticate(&self.tokens, token).map_err(Status::unauthenticated)?;
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// The token in an `authorization: Bearer TOKEN` value.
pub fn bearer(header: &str) -> Option<&str> {
    header.strip_prefix("Bearer ")
}

/// Who holds `token`: a known CLI token, neither expired nor revoked, and
/// not a join token. The refusal is the line the caller is told; the token
/// itself is never logged. Shared by the gRPC API and the dashboard.
pub fn authenticate(tokens: &Tokens, token: &str) -> Result<Caller, String> {
    tokens
        .authenticate(token.trim(), now_unix_ms())
        .map(Caller::from)
        .map_err(|e| {
            let msg = match e {
                TokenError::Unknown => "invalid token".to_string(),
                e => e.to_string(),
            };
            tracing::info!(reason = %msg, "refused a CLI token");
            msg
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SledStore, Store};
    use crate::tokens::NewToken;

    fn with_token(token: &str) -> Request<()> {
        let mut req = Request::new(());
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        req
    }

    #[tokio::test]
    async fn only_live_cli_tokens_pass() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("s")).unwrap());
        let path = dir.path().join("admin.token");
        let tokens = Arc::new(Tokens::load(store, &path).await.unwrap());
        let auth = TokenAuth::new(tokens.clone());
        let admin = std::fs::read_to_string(&path).unwrap();

        let ok = auth.check(with_token(admin.trim())).unwrap();
        let caller = ok.extensions().get::<Caller>().unwrap();
        assert_eq!(
            (caller.who().as_str(), caller.role),
            ("admin (admin)", Role::Admin)
        );

        let (rec, viewer) = tokens
            .create(
                NewToken {
                    name: "ro".into(),
                    role: Role::Viewer,
                    envs: vec![],
                    ttl_ms: 0,
                },
                "admin (admin)",
            )
            .await
            .unwrap();
        let ok = auth.check(with_token(&viewer)).unwrap();
        assert_eq!(ok.extensions().get::<Caller>().unwrap().role, Role::Viewer);
        tokens.revoke(&rec.id).await.unwrap();
        let err = auth.check(with_token(&viewer)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("revoked"), "{}", err.message());

        let (_, join) = tokens
            .create_join(Default::default(), "admin (admin)")
            .await
            .unwrap();
        let err = auth.check(with_token(&join)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("join token"), "{}", err.message());

        let err = auth.check(with_token("nope")).unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (tonic::Code::Unauthenticated, "invalid token")
        );
        assert_eq!(
            auth.check(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}

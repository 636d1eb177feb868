//! Bearer-token authentication of CLI calls. Tokens are kept as SHA-256
//! hashes only; the admin token is created on first start.

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

/// Who made a call, put in the request's extensions once authenticated.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

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
    admin_hash: String,
}

impl TokenAuth {
    pub fn new(admin_hash: String) -> Self {
        Self { admin_hash }
    }

    /// The interceptor: checks `authorization: Bearer TOKEN`.
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
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("malformed authorization header"))?;
        if !constant_time_eq(
            token_hash(token.trim()).as_bytes(),
            self.admin_hash.as_bytes(),
        ) {
            return Err(Status::unauthenticated("invalid token"));
        }
        req.extensions_mut().insert(Caller("admin".to_string()));
        Ok(req)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_token_passes() {
        let token = new_token();
        let auth = TokenAuth::new(token_hash(&token));
        let mut ok = Request::new(());
        ok.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert!(auth.check(ok).is_ok());
        let mut bad = Request::new(());
        bad.metadata_mut()
            .insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(
            auth.check(bad).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            auth.check(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}

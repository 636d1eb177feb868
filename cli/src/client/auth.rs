//! The API token: read from where the settings say, and sent as
//! `authorization: Bearer TOKEN` on every call without ever being printed.

use std::fs;

use anyhow::{anyhow, bail, Context as _, Result};
use convoy_proto::AUTHORIZATION;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::config::Token;

pub(super) fn read_token(source: Option<&Token>) -> Result<String> {
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
    pub(super) fn new(token: String) -> Result<Self> {
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
    use super::*;

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
}

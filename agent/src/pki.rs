//! The agent's identity on disk: `ca.pem`, `agent.pem`, `agent.key` in the
//! PKI directory. The node name is the subject CN of `agent.pem`; it is read
//! here and never taken from configuration.

use std::path::{Path, PathBuf};

use x509_parser::pem::parse_x509_pem;

pub const CA_FILE: &str = "ca.pem";
pub const CERT_FILE: &str = "agent.pem";
pub const KEY_FILE: &str = "agent.key";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a PEM certificate: {reason}")]
    NotACertificate { path: PathBuf, reason: String },
    #[error("{path} has no subject CN, so it names no node; issue it with `convoyd issue-cert`")]
    NoCommonName { path: PathBuf },
}

/// The PEM files of the agent's identity, and the node name they carry.
#[derive(Clone)]
pub struct Pki {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub node_name: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Pki")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Reads the three files (again on every connect, so a renewed
    /// certificate is picked up).
    pub async fn load(dir: &Path) -> Result<Self, PkiError> {
        let read = |name: &str| {
            let path = dir.join(name);
            async move {
                tokio::fs::read(&path)
                    .await
                    .map_err(|source| PkiError::Read { path, source })
            }
        };
        let ca_pem = read(CA_FILE).await?;
        let cert_pem = read(CERT_FILE).await?;
        let key_pem = read(KEY_FILE).await?;
        let node_name = node_name(&cert_pem, &dir.join(CERT_FILE))?;
        Ok(Self {
            ca_pem,
            cert_pem,
            key_pem,
            node_name,
        })
    }
}

/// The subject CN of the first certificate in `pem`.
pub fn node_name(pem: &[u8], path: &Path) -> Result<String, PkiError> {
    let invalid = |reason: String| PkiError::NotACertificate {
        path: path.to_path_buf(),
        reason,
    };
    let (_, pem) = parse_x509_pem(pem).map_err(|e| invalid(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| invalid(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::trim)
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| PkiError::NoCommonName {
            path: path.to_path_buf(),
        })?;
    Ok(cn.to_string())
}

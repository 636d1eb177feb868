//! Joining a cluster: the agent makes its key here (it never leaves the
//! host), trusts the coordinator only if it presents the CA whose fingerprint
//! the user gave, and trades a one-time join token and a CSR for its
//! certificate.

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use convoy_proto as pb;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::WebPkiServerVerifier,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::pki::{CA_FILE, CERT_FILE, KEY_FILE};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("invalid --ca-fingerprint `{0}`: expected sha256:<64 hex digits>")]
    Fingerprint(String),
    #[error("invalid node name `{0}`: use 1-63 letters, digits, `.`, `_` or `-`")]
    NodeName(String),
    #[error("cannot reach the coordinator at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("refusing the coordinator at {addr}: it did not present the CA with fingerprint {fingerprint} ({reason})")]
    WrongCa {
        addr: String,
        fingerprint: String,
        reason: String,
    },
    #[error("the coordinator at {addr} refused the join: {message}")]
    Refused { addr: String, message: String },
    #[error("the coordinator's answer is not usable: {0}")]
    BadAnswer(String),
    #[error("cannot make a key or CSR: {0}")]
    Key(#[from] rcgen::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `join` needs.
pub struct JoinParams {
    /// The coordinator's agent port, `HOST:PORT`.
    pub coordinator: String,
    pub token: String,
    /// `sha256:HEX` of the CA certificate, from `convoy token create --join`.
    pub ca_fingerprint: String,
    pub node_name: String,
    pub pki_dir: PathBuf,
}

impl std::fmt::Debug for JoinParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("JoinParams")
            .field("coordinator", &self.coordinator)
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// Enrols this host: writes `ca.pem`, `agent.pem` and `agent.key` (0600)
/// into the PKI directory. Returns the granted node name.
pub async fn join(params: &JoinParams) -> Result<String, EnrollError> {
    let pinned = parse_fingerprint(&params.ca_fingerprint)?;
    if !convoy_api::names::is_valid_node_name(&params.node_name) {
        return Err(EnrollError::NodeName(params.node_name.clone()));
    }
    let (key, csr_pem) = make_csr(&params.node_name)?;

    let ca_pem = fetch_pinned_ca(&params.coordinator, pinned, &params.ca_fingerprint).await?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca_pem))
        .domain_name(pb::COORDINATOR_SERVER_NAME);
    let unreachable = |reason: String| EnrollError::Unreachable {
        addr: params.coordinator.clone(),
        reason,
    };
    let channel = Endpoint::from_shared(format!("https://{}", params.coordinator))
        .map_err(|e| unreachable(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let answer = pb::enroll_service_client::EnrollServiceClient::new(channel)
        .join(pb::JoinRequest {
            token: params.token.clone(),
            csr_pem,
        })
        .await
        .map_err(|s| EnrollError::Refused {
            addr: params.coordinator.clone(),
            message: s.message().to_string(),
        })?
        .into_inner();
    if answer.node_name != params.node_name {
        return Err(EnrollError::BadAnswer(format!(
            "asked for node `{}`, got `{}`",
            params.node_name, answer.node_name
        )));
    }
    let granted = crate::pki::node_name(answer.certificate_pem.as_bytes(), Path::new(CERT_FILE))
        .map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    if granted != params.node_name {
        return Err(EnrollError::BadAnswer(format!(
            "the certificate names `{granted}`, not `{}`",
            params.node_name
        )));
    }
    std::fs::create_dir_all(&params.pki_dir).map_err(|source| EnrollError::Write {
        path: params.pki_dir.clone(),
        source,
    })?;
    // The CA we pinned, not whatever the answer says.
    write(&params.pki_dir.join(CA_FILE), ca_pem.as_bytes(), 0o644)?;
    write(
        &params.pki_dir.join(KEY_FILE),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write(
        &params.pki_dir.join(CERT_FILE),
        answer.certificate_pem.as_bytes(),
        0o644,
    )?;
    Ok(granted)
}

/// A new key (it stays on this host) and a CSR naming `node`.
pub fn make_csr(node: &str) -> Result<(rcgen::KeyPair, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, node);
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key, csr))
}

/// `sha256:HEX` → 32 bytes.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], EnrollError> {
    let bad = || EnrollError::Fingerprint(text.to_string());
    let hex_part = text.trim().strip_prefix("sha256:").ok_or_else(bad)?;
    let bytes = hex::decode(hex_part).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

/// Opens a TLS connection that succeeds only if the coordinator presents,
/// in its chain, the CA with the pinned fingerprint and a server certificate
/// that CA signed for `coordinator.convoy`. Returns that CA as PEM.
async fn fetch_pinned_ca(addr: &str, pinned: [u8; 32], shown: &str) -> Result<String, EnrollError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCa {
        pinned,
        provider: provider.clone(),
        found: Mutex::new(None),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EnrollError::BadAnswer(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let unreachable = |reason: String| EnrollError::Unreachable {
        addr: addr.to_string(),
        reason,
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let name = ServerName::try_from(pb::COORDINATOR_SERVER_NAME)
        .map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
        Err(_) => return Err(unreachable("TLS handshake timed out".into())),
        Ok(Err(e)) => {
            return Err(EnrollError::WrongCa {
                addr: addr.to_string(),
                fingerprint: shown.to_string(),
                reason: e.to_string(),
            })
        }
        Ok(Ok(_stream)) => {}
    }
    let der = verifier
        .found
        .lock()
        .ok()
        .and_then(|mut f| f.take())
        .ok_or_else(|| EnrollError::BadAnswer("no CA was captured".into()))?;
    Ok(pem::encode(&pem::Pem::new("CERTIFICATE", der)))
}

#[derive(Debug)]
struct PinnedCa {
    pinned: [u8; 32],
    provider: Arc<CryptoProvider>,
    found: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.pinned)
            .ok_or_else(|| {
                rustls::Error::General(
                    "no certificate in the chain has the pinned fingerprint".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verified =
            inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?;
        if let Ok(mut found) = self.found.lock() {
            *found = Some(ca.as_ref().to_vec());
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Writes a file atomically (temp file, fsync, rename) with `mode`.
pub(crate) fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), EnrollError> {
    let err = |source| EnrollError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_must_be_sha256_and_64_hex_digits() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(parse_fingerprint(&good).unwrap(), [0xab; 32]);
        for bad in [
            "",
            "ab",
            "sha1:abcd",
            "sha256:zz",
            &format!("sha256:{}", "ab".repeat(31)),
        ] {
            assert!(parse_fingerprint(bad).is_err(), "{bad:?}");
        }
    }
}

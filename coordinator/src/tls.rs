//! TLS of the coordinator's ports: a client-certificate verifier that
//! refuses revoked certificates at the handshake, on top of the CA chain
//! check; the swappable server certificate; and [`server_config`], which
//! the leader's ports and a standby's share.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
};

use rustls::{
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
    CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme,
};
use sha2::{Digest, Sha256};

/// SHA-256 fingerprints (hex) of refused certificates, shared between the
/// state (which revokes) and the verifier (which refuses).
pub type Revoked = Arc<RwLock<HashSet<String>>>;

/// Hex SHA-256 of a certificate's DER: how Convoy names one certificate.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Checks the chain with `inner` (WebPKI against Convoy's CA), then refuses
/// any certificate whose fingerprint was revoked.
#[derive(Debug)]
pub struct RevocationVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Revoked,
}

impl RevocationVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, revoked: Revoked) -> Self {
        Self { inner, revoked }
    }
}

impl ClientCertVerifier for RevocationVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let fp = fingerprint(end_entity.as_ref());
        let revoked = self
            .revoked
            .read()
            .map(|set| set.contains(&fp))
            .unwrap_or(true);
        if revoked {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
}

/// The coordinator's own certificate, swappable while serving: `convoyd
/// rotate-cert` writes a new one and the watcher in `server.rs` installs it.
/// New connections get it at once; open streams keep their session.
#[derive(Debug)]
pub struct ServerCert {
    current: RwLock<Arc<rustls::sign::CertifiedKey>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCert {
    pub fn new(
        cert_pem: &str,
        key_pem: &str,
        ca_pem: &str,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, rustls::Error> {
        let current = certified(cert_pem, key_pem, ca_pem, &provider)?;
        Ok(Self {
            current: RwLock::new(current),
            provider,
        })
    }

    /// Installs a new certificate and key; refuses a pair that does not match.
    pub fn replace(
        &self,
        cert_pem: &str,
        key_pem: &str,
        ca_pem: &str,
    ) -> Result<(), rustls::Error> {
        let next = certified(cert_pem, key_pem, ca_pem, &self.provider)?;
        if let Ok(mut current) = self.current.write() {
            *current = next;
        }
        Ok(())
    }
}

/// The chain is the server certificate then the CA, so a joining agent that
/// knows only the CA's fingerprint can find it and pin it.
fn certified(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<rustls::sign::CertifiedKey>, rustls::Error> {
    use rustls::pki_types::{pem::PemObject, PrivateKeyDer};
    let bad = |what: &str, e: rustls::pki_types::pem::Error| {
        rustls::Error::General(format!("cannot read the {what}: {e}"))
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .chain(CertificateDer::pem_slice_iter(ca_pem.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("server certificate", e))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad("server key", e))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::from_der(
        chain, key, provider,
    )?))
}

impl rustls::server::ResolvesServerCert for ServerCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// Who may connect to a port with a client certificate.
pub enum Clients<'a> {
    /// The API port: no client certificates (callers bring tokens).
    Anyone,
    /// An agent port: a certificate, when presented, must chain to the CA
    /// (`ca_pem`); a join presents none. With `revoked`, a revoked one is
    /// refused at the handshake (a standby checks revocation per session).
    Agents {
        ca_pem: &'a str,
        revoked: Option<Revoked>,
    },
}

/// The TLS of a coordinator port: `cert` (swappable), HTTP/2 only, and the
/// client certificates `clients` says. Shared by the leader's ports and a
/// standby's.
pub fn server_config(
    cert: Arc<ServerCert>,
    clients: Clients<'_>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context as _;
    use rustls::pki_types::pem::PemObject as _;
    let provider = cert.provider.clone();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match clients {
        Clients::Anyone => builder.with_no_client_auth().with_cert_resolver(cert),
        Clients::Agents { ca_pem, revoked } => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
                roots.add(c.context("CA certificate")?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .context("client verifier")?;
            let verifier: Arc<dyn ClientCertVerifier> = match revoked {
                Some(revoked) => Arc::new(RevocationVerifier::new(verifier, revoked)),
                None => verifier,
            };
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(cert)
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

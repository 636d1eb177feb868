//! TLS pieces of the agent port: a client-certificate verifier that refuses
//! revoked certificates at the handshake, on top of the CA chain check.

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

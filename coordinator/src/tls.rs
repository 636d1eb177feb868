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

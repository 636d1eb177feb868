//! Certificate renewal over the live stream: once two thirds of the
//! certificate's life are gone, the agent makes a new key, sends a CSR on its
//! stream and installs the answer. The stream is never interrupted; the next
//! connection uses the new certificate.

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use convoy_proto::RenewedCertificate;
use tracing::{info, warn};

use crate::{
    enroll,
    pki::{self, CERT_FILE, KEY_FILE},
};

/// After a refused or failed renewal, wait this long before asking again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The renewal state of one session.
pub struct Renewal {
    pki_dir: PathBuf,
    node: String,
    life: Option<(SystemTime, SystemTime)>,
    pending_key: Option<String>,
    quiet_until: Option<Instant>,
}

impl std::fmt::Debug for Renewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the pending key.
        f.debug_struct("Renewal")
            .field("node", &self.node)
            .field("life", &self.life)
            .finish_non_exhaustive()
    }
}

/// `(not_before, not_after)` of the first certificate in `pem`.
pub fn lifetime(pem: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let at = |secs: i64| -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
    };
    let v = cert.validity();
    Some((at(v.not_before.timestamp())?, at(v.not_after.timestamp())?))
}

/// Due once two thirds of the lifetime are gone.
pub fn due((not_before, not_after): (SystemTime, SystemTime), now: SystemTime) -> bool {
    let total = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    now >= not_before + total * 2 / 3
}

impl Renewal {
    pub fn new(pki_dir: PathBuf, node: String, cert_pem: &[u8]) -> Self {
        Self {
            pki_dir,
            node,
            life: lifetime(cert_pem),
            pending_key: None,
            quiet_until: None,
        }
    }

    /// A CSR to send now, if the certificate is due and no request is out.
    pub fn request_if_due(&mut self, now: SystemTime) -> Option<String> {
        let life = self.life?;
        if self.pending_key.is_some()
            || self.quiet_until.is_some_and(|t| Instant::now() < t)
            || !due(life, now)
        {
            return None;
        }
        match enroll::make_csr(&self.node) {
            Ok((key, csr)) => {
                self.pending_key = Some(key.serialize_pem());
                info!("asking the coordinator for a new certificate");
                Some(csr)
            }
            Err(e) => {
                warn!("cannot make a renewal CSR: {e}");
                self.quiet_until = Some(Instant::now() + RETRY_AFTER);
                None
            }
        }
    }

    /// Installs the coordinator's answer (or logs its refusal).
    pub fn answer(&mut self, answer: RenewedCertificate) {
        let Some(key_pem) = self.pending_key.take() else {
            warn!("ignoring a certificate this agent did not ask for");
            return;
        };
        if !answer.error.is_empty() {
            warn!(
                "the coordinator refused to renew the certificate: {}",
                answer.error
            );
            self.quiet_until = Some(Instant::now() + RETRY_AFTER);
            return;
        }
        match self.install(&key_pem, &answer.certificate_pem) {
            Ok(life) => {
                self.life = Some(life);
                info!(
                    expires_unix_ms = answer.expires_unix_ms,
                    "certificate renewed; the next connection uses it"
                );
            }
            Err(e) => {
                warn!("cannot install the renewed certificate: {e}");
                self.quiet_until = Some(Instant::now() + RETRY_AFTER);
            }
        }
    }

    /// Checks that the certificate names this node and carries the new key,
    /// then replaces `agent.key` and `agent.pem`.
    fn install(&self, key_pem: &str, cert_pem: &str) -> Result<(SystemTime, SystemTime), String> {
        let path = self.pki_dir.join(CERT_FILE);
        let named = pki::node_name(cert_pem.as_bytes(), &path).map_err(|e| e.to_string())?;
        if named != self.node {
            return Err(format!("it names `{named}`, not `{}`", self.node));
        }
        let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| e.to_string())?;
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
        let cert = pem.parse_x509().map_err(|e| e.to_string())?;
        if cert.public_key().raw != key.public_key_der().as_slice() {
            return Err("it does not carry the key this agent made".into());
        }
        let life = lifetime(cert_pem.as_bytes()).ok_or("it has no validity")?;
        enroll::write(&self.pki_dir.join(KEY_FILE), key_pem.as_bytes(), 0o600)
            .map_err(|e| e.to_string())?;
        enroll::write(&path, cert_pem.as_bytes(), 0o644).map_err(|e| e.to_string())?;
        Ok(life)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_lifetime() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        let life = (start, start + Duration::from_secs(300));
        assert!(!due(life, start + Duration::from_secs(100)));
        assert!(!due(life, start + Duration::from_secs(199)));
        assert!(due(life, start + Duration::from_secs(200)));
        assert!(due(life, start + Duration::from_secs(400)));
    }

    #[test]
    fn a_certificate_for_another_key_or_node_is_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        // A self-signed stand-in for the coordinator's answer.
        let (key, _) = enroll::make_csr("n1").unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "n1");
        let cert = params.self_signed(&key).unwrap().pem();
        let r = Renewal::new(dir.path().to_path_buf(), "n1".into(), cert.as_bytes());
        assert!(r.life.is_some());
        // Another key than the pending one: refused, nothing written.
        let (other, _) = enroll::make_csr("n1").unwrap();
        assert!(r.install(&other.serialize_pem(), &cert).is_err());
        assert!(!dir.path().join(KEY_FILE).exists());
        // Another node: refused.
        let r2 = Renewal::new(dir.path().to_path_buf(), "n2".into(), cert.as_bytes());
        assert!(r2.install(&key.serialize_pem(), &cert).is_err());
        // The right key and node: installed, key private.
        r.install(&key.serialize_pem(), &cert).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

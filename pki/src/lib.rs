//! The coordinator's own certificate authority: created on first start in
//! `DATA/pki`, it signs the coordinator's server certificate and every
//! agent's client certificate, whose subject CN is the node name.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate error: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid node name `{0}`: use 1-63 letters, digits, `.`, `_` or `-`, starting with a letter or digit")]
    InvalidNodeName(String),
    #[error("the CA key {} is readable by other users (mode {mode:o}); run `chmod 600` on it", path.display())]
    KeyTooOpen { path: PathBuf, mode: u32 },
    #[error("the certificate presented has no usable subject common name")]
    NoCommonName,
    #[error("cannot parse the certificate: {0}")]
    Parse(String),
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    #[error("cannot use the given CA: {0}")]
    Import(String),
}

fn dn_value_text(v: &rcgen::DnValue) -> Option<String> {
    match v {
        rcgen::DnValue::Utf8String(s) => Some(s.clone()),
        rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_string()),
        rcgen::DnValue::Ia5String(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// Paths of the CA and server material inside `DATA/pki`.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("pki"),
        }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

/// A loaded CA that can sign certificates.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    pem: String,
    /// DER of the CA certificate as stored (what agents pin).
    der: Vec<u8>,
}

/// PEM text of a certificate and its private key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// Loads the CA from `DATA/pki`, creating it on first start.
    pub fn load_or_create(paths: &PkiPaths) -> Result<Self, PkiError> {
        if paths.ca_cert().exists() && paths.ca_key().exists() {
            return Self::load(paths);
        }
        create_dir_private(&paths.dir)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn("Convoy CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        write_private(&paths.ca_key(), key.serialize_pem().as_bytes())?;
        write_public(&paths.ca_cert(), cert.pem().as_bytes())?;
        let pem = cert.pem();
        let der = cert.der().to_vec();
        Ok(Self {
            cert,
            key,
            pem,
            der,
        })
    }

    /// Uses a CA given as files (an organisation's own) instead of making
    /// one: checks the key is private and belongs to the certificate, which
    /// must be a CA, then copies both into `DATA/pki`. A data directory that
    /// already has another CA is refused: its agents trust that one.
    pub fn import(paths: &PkiPaths, cert_file: &Path, key_file: &Path) -> Result<Self, PkiError> {
        check_private(key_file)?;
        let cert_pem = read(cert_file, "cannot read the CA certificate")?;
        let key_pem = read(key_file, "cannot read the CA key")?;
        let key = KeyPair::from_pem(&key_pem)?;
        let der = pem_der(&cert_pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| PkiError::Parse(e.to_string()))?;
        if !cert.is_ca() {
            return Err(PkiError::Import(format!(
                "{} is not a CA certificate",
                cert_file.display()
            )));
        }
        if cert.public_key().raw != key.public_key_der().as_slice() {
            return Err(PkiError::Import(format!(
                "{} is not the key of {}",
                key_file.display(),
                cert_file.display()
            )));
        }
        if let Ok(existing) = fs::read_to_string(paths.ca_cert()) {
            if pem_der(&existing)? != der {
                return Err(PkiError::Import(format!(
                    "{} already holds another CA; its agents trust that one (use a new data directory)",
                    paths.dir.display()
                )));
            }
        }
        create_dir_private(&paths.dir)?;
        write_private(&paths.ca_key(), key_pem.as_bytes())?;
        write_public(&paths.ca_cert(), cert_pem.as_bytes())?;
        Self::load(paths)
    }

    /// Loads an existing CA; refuses a key file other users can read.
    pub fn load(paths: &PkiPaths) -> Result<Self, PkiError> {
        let key_path = paths.ca_key();
        check_private(&key_path)?;
        let key_pem = read(&key_path, "cannot read the CA key")?;
        let pem = read(&paths.ca_cert(), "cannot read the CA certificate")?;
        let key = KeyPair::from_pem(&key_pem)?;
        // Re-signing the CA's own parameters with its own key gives an issuer
        // with the same subject and key: what signing needs.
        let params = CertificateParams::from_ca_cert_pem(&pem)?;
        let cert = params.self_signed(&key)?;
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| PkiError::Parse(e.to_string()))?
            .1
            .contents;
        Ok(Self {
            cert,
            key,
            pem,
            der,
        })
    }

    /// The CA certificate as PEM, for trust stores.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// `sha256:HEX` of the CA certificate's DER, what agents pin.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.der)))
    }

    /// The coordinator's TLS server certificate.
    pub fn issue_server(&self, extra_sans: &[String]) -> Result<Issued, PkiError> {
        let mut sans = vec![
            convoy_proto::COORDINATOR_SERVER_NAME.to_string(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        if let Ok(h) = fs::read_to_string("/proc/sys/kernel/hostname") {
            let h = h.trim();
            if !h.is_empty() {
                sans.push(h.to_string());
            }
        }
        for s in extra_sans {
            if !sans.contains(s) {
                sans.push(s.clone());
            }
        }
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = dn("convoyd");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, Duration::days(365))
    }

    /// A client certificate for coordinator `name`, with which a standby
    /// relays its agents' streams to the leader (issue 18). Its subject
    /// (`OU=convoy-coordinator`, a CN no node may have) is never given to
    /// an agent: [`Self::sign_agent_csr`] writes `OU=convoy-agent`.
    pub fn issue_coordinator(&self, name: &str, validity: Duration) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{COORDINATOR_CN_PREFIX}{name}"));
        dn.push(DnType::OrganizationalUnitName, COORDINATOR_OU);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, validity)
    }

    /// A client certificate for the agent of `node`.
    pub fn issue_agent(&self, node: &str, validity: Duration) -> Result<Issued, PkiError> {
        validate_node_name(node)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node);
        name.push(DnType::OrganizationalUnitName, "convoy-agent");
        params.distinguished_name = name;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, validity)
    }

    /// Signs an agent's CSR (its key stays on its host). Only the CSR's
    /// public key and subject CN (the node name) are taken; everything
    /// else in the certificate is Convoy's. Returns the node name and PEM.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        validity: Duration,
    ) -> Result<(String, String), PkiError> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Csr(e.to_string()))?;
        let node = csr
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .and_then(dn_value_text)
            .ok_or_else(|| PkiError::Csr("the CSR has no subject CN (the node name)".into()))?;
        validate_node_name(&node)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node.as_str());
        name.push(DnType::OrganizationalUnitName, "convoy-agent");
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = name;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + validity;
        csr.params = params;
        let cert = csr.signed_by(&self.cert, &self.key)?;
        Ok((node, cert.pem()))
    }

    fn sign(&self, mut params: CertificateParams, validity: Duration) -> Result<Issued, PkiError> {
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + validity;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes an agent's `ca.pem`, `agent.pem` and `agent.key` (0600) into `out`.
pub fn write_agent_bundle(ca: &Ca, issued: &Issued, out: &Path) -> Result<(), PkiError> {
    create_dir_private(out)?;
    write_public(&out.join("ca.pem"), ca.cert_pem().as_bytes())?;
    write_public(&out.join("agent.pem"), issued.cert_pem.as_bytes())?;
    write_private(&out.join("agent.key"), issued.key_pem.as_bytes())?;
    Ok(())
}

/// Node names: what DNS labels and Docker names accept, so they can be used
/// in both.
pub fn validate_node_name(node: &str) -> Result<(), PkiError> {
    if convoy_api::names::is_valid_node_name(node) {
        Ok(())
    } else {
        Err(PkiError::InvalidNodeName(node.to_string()))
    }
}

/// CSRs larger than this are refused before parsing.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// The DER of the first PEM block.
pub fn pem_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map(|(_, p)| p.contents)
        .map_err(|e| PkiError::Parse(e.to_string()))
}

/// A certificate's expiry (unix ms), from its DER.
pub fn expiry_unix_ms(der: &[u8]) -> Result<i64, PkiError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Parse(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp() * 1000)
}

/// The node name carried by a verified client certificate (its subject CN).
/// The organizational unit of coordinators' client certificates.
pub const COORDINATOR_OU: &str = "convoy-coordinator";
/// Their CN starts with this (a `:`, which no node name holds).
pub const COORDINATOR_CN_PREFIX: &str = "coordinator:";

/// The coordinator a client certificate was issued to by
/// [`Ca::issue_coordinator`], or `None` for any other certificate.
pub fn coordinator_name_from_der(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let ou = subject
        .iter_organizational_unit()
        .next()
        .and_then(|ou| ou.as_str().ok())?;
    if ou != COORDINATOR_OU {
        return None;
    }
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?;
    cn.strip_prefix(COORDINATOR_CN_PREFIX)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

pub fn node_name_from_der(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or(PkiError::NoCommonName)?;
    validate_node_name(cn)?;
    Ok(cn.to_string())
}

/// Refuses a key file that other users can read.
fn check_private(key_path: &Path) -> Result<(), PkiError> {
    let meta = fs::metadata(key_path).map_err(|source| PkiError::Io {
        context: "cannot read the CA key",
        path: key_path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PkiError::KeyTooOpen {
            path: key_path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn dn(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name.push(DnType::OrganizationName, "Convoy");
    name
}

fn read(path: &Path, context: &'static str) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        context,
        path: path.to_path_buf(),
        source,
    })
}

/// Creates a directory (and parents) readable only by its owner.
pub fn create_dir_private(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        context: "cannot create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| PkiError::Io {
        context: "cannot set permissions on",
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a secret (key, token) with mode 0600, replacing any old file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_mode(path, bytes, 0o600)
}

fn write_public(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_mode(path, bytes, 0o644)
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        context: "cannot write",
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_certificate_carries_the_node_name() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        let ca = Ca::load_or_create(&paths).unwrap();
        let issued = ca.issue_agent("gpu-3", Duration::days(1)).unwrap();
        let der = rustls_pemfile_der(&issued.cert_pem);
        assert_eq!(node_name_from_der(&der).unwrap(), "gpu-3");
        // Loading again gives the same CA.
        let again = Ca::load(&paths).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
    }

    #[test]
    fn a_coordinator_certificate_is_never_a_node_and_no_agent_gets_one() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&PkiPaths::new(dir.path())).unwrap();
        let issued = ca.issue_coordinator("c2", Duration::days(1)).unwrap();
        let der = rustls_pemfile_der(&issued.cert_pem);
        assert_eq!(coordinator_name_from_der(&der).as_deref(), Some("c2"));
        assert!(node_name_from_der(&der).is_err(), "not a node's identity");
        // An agent's certificate is not a coordinator's, whatever its CSR
        // asked for: the OU is Convoy's.
        let agent = rustls_pemfile_der(&ca.issue_agent("c2", Duration::days(1)).unwrap().cert_pem);
        assert_eq!(coordinator_name_from_der(&agent), None);
        let (pem, _) = csr("coordinator-c2");
        let (_, signed) = ca.sign_agent_csr(&pem, Duration::hours(1)).unwrap();
        assert_eq!(
            coordinator_name_from_der(&rustls_pemfile_der(&signed)),
            None
        );
    }

    #[test]
    fn world_readable_ca_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        Ca::load_or_create(&paths).unwrap();
        let key = paths.ca_key();
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Ca::load(&paths).err().expect("must refuse");
        assert!(err.to_string().contains("readable by other users"), "{err}");
    }

    #[test]
    fn bad_node_names_are_refused() {
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(64)] {
            assert!(validate_node_name(bad).is_err(), "{bad:?}");
        }
        for good in ["n1", "gpu-3.rack2", "A_b"] {
            assert!(validate_node_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_given_ca_is_used_only_if_its_key_is_private_and_matches() {
        let src = tempfile::tempdir().unwrap();
        let made = Ca::load_or_create(&PkiPaths::new(src.path())).unwrap();
        let src_paths = PkiPaths::new(src.path());
        let (cert, key) = (src_paths.ca_cert(), src_paths.ca_key());

        let data = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(data.path());
        let ca = Ca::import(&paths, &cert, &key).unwrap();
        assert_eq!(ca.fingerprint(), made.fingerprint());
        // It signs what verifies under the given CA, and its key copy is 0600.
        assert_eq!(
            fs::metadata(paths.ca_key()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Importing the same CA again is fine.
        Ca::import(&paths, &cert, &key).unwrap();

        // A key that is not the certificate's: refused.
        let other = tempfile::tempdir().unwrap();
        Ca::load_or_create(&PkiPaths::new(other.path())).unwrap();
        let wrong_key = PkiPaths::new(other.path()).ca_key();
        let fresh = tempfile::tempdir().unwrap();
        let err = Ca::import(&PkiPaths::new(fresh.path()), &cert, &wrong_key)
            .err()
            .expect("mismatched key");
        assert!(err.to_string().contains("is not the key of"), "{err}");

        // A data directory with another CA: refused.
        let other_cert = PkiPaths::new(other.path()).ca_cert();
        let err = Ca::import(&paths, &other_cert, &wrong_key)
            .err()
            .expect("another CA");
        assert!(
            err.to_string().contains("already holds another CA"),
            "{err}"
        );

        // A world-readable key: refused.
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Ca::import(&PkiPaths::new(fresh.path()), &cert, &key)
            .err()
            .expect("open key");
        assert!(err.to_string().contains("readable by other users"), "{err}");
    }

    fn csr(cn: &str) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        (params.serialize_request(&key).unwrap().pem().unwrap(), key)
    }

    #[test]
    fn csr_is_signed_for_its_node_name_with_convoys_own_fields() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&PkiPaths::new(dir.path())).unwrap();
        let (pem, key) = csr("edge-7");
        let (node, cert_pem) = ca.sign_agent_csr(&pem, Duration::hours(1)).unwrap();
        assert_eq!(node, "edge-7");
        let der = rustls_pemfile_der(&cert_pem);
        assert_eq!(node_name_from_der(&der).unwrap(), "edge-7");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        // The certificate carries the CSR's key, is no CA, and is short-lived.
        assert_eq!(cert.public_key().raw, key.public_key_der().as_slice());
        assert!(!cert.is_ca());
        let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert!(life <= 3600 + 300, "{life}");
    }

    #[test]
    fn bad_csrs_are_refused_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&PkiPaths::new(dir.path())).unwrap();
        let (bad_name, _) = csr("../etc");
        assert!(ca.sign_agent_csr(&bad_name, Duration::hours(1)).is_err());
        let (good, key) = csr("n1");
        // Garbage and every truncation / single-byte corruption of a valid
        // CSR: an error, never a panic, never a certificate for a wrong key.
        assert!(ca.sign_agent_csr("", Duration::hours(1)).is_err());
        assert!(ca.sign_agent_csr("not a csr", Duration::hours(1)).is_err());
        let bytes = good.as_bytes();
        for cut in (0..bytes.len()).step_by(7) {
            let text = String::from_utf8_lossy(&bytes[..cut]);
            assert!(ca.sign_agent_csr(&text, Duration::hours(1)).is_err());
        }
        let body_start = good.find('\n').unwrap() + 1;
        let body_end = good.rfind("-----END").unwrap();
        for i in (body_start..body_end).step_by(5) {
            let mut b = bytes.to_vec();
            if b[i] == b'\n' {
                continue;
            }
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let text = String::from_utf8_lossy(&b);
            // A flipped byte breaks the encoding or the signature; the only
            // exception is a base64 padding bit, which decodes to the same
            // request (so the same key).
            if let Ok((_, cert_pem)) = ca.sign_agent_csr(&text, Duration::hours(1)) {
                let der = rustls_pemfile_der(&cert_pem);
                let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
                assert_eq!(
                    cert.public_key().raw,
                    key.public_key_der().as_slice(),
                    "byte {i} gave a certificate for another key"
                );
            }
        }
    }

    fn rustls_pemfile_der(pem: &str) -> Vec<u8> {
        let p = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1;
        p.contents
    }
}

//! The certificates of `x-convoy.ingress.tls`, checked before they are
//! pinned: each chain parses as PEM, its key parses and belongs to the
//! chain's first certificate, and the certificate covers every host the
//! entry names. A bad certificate is refused at `apply` (or `secret
//! rotate`), naming the service, the entry and the secret, instead of the
//! proxy failing handshakes on every node later.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::spec::IngressTls;

/// Checks one entry given its chain's and key's PEM text; the error says
/// what is wrong, without any of the key's bytes.
pub(crate) fn check_pair(tls: &IngressTls, chain: &[u8], key: &[u8]) -> Result<(), String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "secret `{}` is not a PEM certificate chain: {e}",
                tls.certificate.name
            )
        })?;
    let Some(leaf) = certs.first() else {
        return Err(format!(
            "secret `{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            tls.certificate.name
        ));
    };
    let private = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
        format!(
            "secret `{}` is not a PEM private key (PKCS#8, PKCS#1 or SEC1)",
            tls.key.name
        )
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private).map_err(|e| {
        format!(
            "secret `{}`: the private key is not one the proxy can use: {e}",
            tls.key.name
        )
    })?;
    let certified = rustls::sign::CertifiedKey::new(certs.clone(), signing);
    certified.keys_match().map_err(|_| {
        format!(
            "secret `{}` is not the private key of the certificate in secret `{}`",
            tls.key.name, tls.certificate.name
        )
    })?;
    let (_, parsed) = X509Certificate::from_der(leaf.as_ref()).map_err(|e| {
        format!(
            "secret `{}`: the first certificate does not parse: {e}",
            tls.certificate.name
        )
    })?;
    let names = dns_names(&parsed);
    if let Some(host) = tls.hosts.iter().find(|h| !covers(&names, h)) {
        return Err(format!(
            "the certificate in secret `{}` does not cover host `{host}` (it names: {})",
            tls.certificate.name,
            if names.is_empty() {
                "no DNS name".to_owned()
            } else {
                names.join(", ")
            }
        ));
    }
    Ok(())
}

/// The certificate's DNS names: its subject alternative names, else (an
/// old certificate without any) its subject's common name.
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names
}

/// Whether `names` covers `host` (RFC 6125): the same name, or a
/// `*.parent` name for a host one label below `parent`. A wildcard host is
/// covered by the same wildcard only.
fn covers(names: &[String], host: &str) -> bool {
    names.iter().any(|n| {
        n == host
            || (!host.starts_with("*.")
                && n.strip_prefix("*.").is_some_and(|parent| {
                    host.split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == parent)
                }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::IngressSecret;

    fn entry(hosts: &[&str]) -> IngressTls {
        IngressTls {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            certificate: IngressSecret {
                source: "cert".into(),
                name: "site-cert".into(),
                version: 1,
            },
            key: IngressSecret {
                source: "key".into(),
                name: "site-key".into(),
                version: 1,
            },
        }
    }

    fn self_signed(names: &[&str]) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("a certificate");
        (c.cert.pem(), c.key_pair.serialize_pem())
    }

    #[test]
    fn a_matching_pair_covering_its_hosts_passes() {
        let (cert, key) = self_signed(&["app.example.com", "*.apps.example.com"]);
        check_pair(
            &entry(&[
                "app.example.com",
                "x.apps.example.com",
                "*.apps.example.com",
            ]),
            cert.as_bytes(),
            key.as_bytes(),
        )
        .expect("accepted");
    }

    #[test]
    fn a_host_the_certificate_does_not_name_is_refused_naming_both() {
        let (cert, key) = self_signed(&["*.example.com"]);
        for host in ["example.com", "a.b.example.com", "other.org"] {
            let e = check_pair(&entry(&[host]), cert.as_bytes(), key.as_bytes()).unwrap_err();
            assert!(
                e.contains(&format!("does not cover host `{host}`")) && e.contains("*.example.com"),
                "{e}"
            );
        }
    }

    #[test]
    fn another_certificates_key_is_refused() {
        let (cert, _) = self_signed(&["app.example.com"]);
        let (_, other_key) = self_signed(&["app.example.com"]);
        let e = check_pair(
            &entry(&["app.example.com"]),
            cert.as_bytes(),
            other_key.as_bytes(),
        )
        .unwrap_err();
        assert!(
            e.contains(
                "`site-key` is not the private key of the certificate in secret `site-cert`"
            ),
            "{e}"
        );
    }

    #[test]
    fn text_that_is_not_pem_is_refused_without_echoing_it() {
        let (cert, key) = self_signed(&["app.example.com"]);
        let e = check_pair(&entry(&["app.example.com"]), b"hunter2", key.as_bytes()).unwrap_err();
        assert!(e.contains("`site-cert` holds no PEM certificate"), "{e}");
        let e = check_pair(&entry(&["app.example.com"]), cert.as_bytes(), b"hunter2").unwrap_err();
        assert!(e.contains("`site-key` is not a PEM private key"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        // The chain and key swapped.
        let e = check_pair(
            &entry(&["app.example.com"]),
            key.as_bytes(),
            cert.as_bytes(),
        )
        .unwrap_err();
        assert!(e.contains("site-cert"), "{e}");
    }
}

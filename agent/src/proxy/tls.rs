//! TLS termination on `--proxy-tls-listen` (docs/PROXY.md): the proxy
//! presents, for the name a client asks for (SNI), the certificate a
//! service's `x-convoy.ingress.tls` gives for it, then serves the
//! connection as the cleartext listener does (HTTP/1.1, or HTTP/2 by ALPN).
//!
//! Certificates and keys are Convoy secrets: the plan references them by
//! version and carries their values in memory (`Plan::secret_values`); the
//! table is rebuilt, off the async workers, whenever a plan arrives, and
//! swapped whole, so a handshake sees the old table or the new one. A
//! client naming no known host (or none) is refused in the handshake (a
//! fatal alert): the proxy has no default certificate, which would show
//! one site's name to anyone asking for another.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use convoy_proto::Workload;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::plan::Plan;
use crate::secrets::{SecretKey, SecretValues};

/// The certificates by host name, as the last plan gives them.
#[derive(Default)]
pub struct Certificates {
    table: RwLock<Arc<CertTable>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.table();
        f.debug_struct("Certificates")
            .field("exact", &table.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &table.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Certificates {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The table handshakes use now.
    pub fn table(&self) -> Arc<CertTable> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the table at once.
    pub fn install(&self, table: CertTable) {
        let table = Arc::new(table);
        match self.table.write() {
            Ok(mut t) => *t = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        self.table().find(&name)
    }
}

/// Host names to certificates: exact names, and `*.parent` wildcards (one
/// label below `parent`, as certificates match).
#[derive(Default)]
pub struct CertTable {
    exact: HashMap<String, Entry>,
    /// By parent: `*.example.com` is held as `example.com`.
    wildcard: HashMap<String, Entry>,
}

/// One host's certificate, and whether its cleartext requests are
/// redirected to https (`Ingress.https_redirect`).
#[derive(Clone)]
struct Entry {
    key: Arc<CertifiedKey>,
    redirect: bool,
}

impl CertTable {
    /// The certificate for `name` (lower case): its exact entry, else the
    /// wildcard of its parent.
    pub fn find(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.entry(name).map(|e| e.key.clone())
    }

    /// Whether a cleartext request for `name` (lower case) goes to https.
    pub fn redirects(&self, name: &str) -> bool {
        self.entry(name).is_some_and(|e| e.redirect)
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        if let Some(e) = self.exact.get(name) {
            return Some(e);
        }
        let (label, parent) = name.split_once('.')?;
        if label.is_empty() {
            return None;
        }
        self.wildcard.get(parent)
    }

    /// How many host names have a certificate.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get_mut(&mut self, host: &str) -> &mut HashMap<String, Entry> {
        if host.starts_with("*.") {
            &mut self.wildcard
        } else {
            &mut self.exact
        }
    }
}

/// Parsed certificates by the secret versions they come from, so a new
/// plan does not parse again what it still holds.
pub type Parsed = HashMap<(SecretKey, SecretKey), Arc<CertifiedKey>>;

/// The table the workloads' ingresses ask for, from the plan's secret
/// values, and what is wrong with it (one line each: a value the plan
/// lacks, a certificate that does not parse, a host two services give a
/// certificate for: the first by env/service keeps it). Of a service's
/// instances, the newest revision's entries count (a rotation in progress
/// presents the new certificate at once). Keeps in `parsed` only what the
/// table uses.
pub fn build<'a>(
    workloads: impl IntoIterator<Item = &'a Workload>,
    values: &SecretValues,
    parsed: &mut Parsed,
) -> (CertTable, Vec<String>) {
    let mut workloads: Vec<&Workload> = workloads
        .into_iter()
        .filter(|w| w.ingress.as_ref().is_some_and(|i| !i.tls.is_empty()))
        .collect();
    workloads.sort_by(|a, b| {
        (&a.env, &a.service, std::cmp::Reverse(a.revision)).cmp(&(
            &b.env,
            &b.service,
            std::cmp::Reverse(b.revision),
        ))
    });
    let mut table = CertTable::default();
    let mut owners: HashMap<String, (String, String)> = HashMap::new();
    let mut problems = Vec::new();
    let mut used = Parsed::new();
    let mut done: Option<(&str, &str)> = None;
    for w in workloads {
        // One instance (the newest revision's) speaks for its service.
        if done == Some((w.env.as_str(), w.service.as_str())) {
            continue;
        }
        done = Some((w.env.as_str(), w.service.as_str()));
        let owner = (w.env.clone(), w.service.clone());
        let redirect = w.ingress.as_ref().is_some_and(|i| i.https_redirect);
        for tls in w.ingress.iter().flat_map(|i| &i.tls) {
            let (Some(cert), Some(key)) = (&tls.certificate, &tls.key) else {
                problems.push(format!(
                    "{}/{}: a certificate entry without its secrets",
                    w.env, w.service
                ));
                continue;
            };
            let refs = (
                SecretKey::of_ref(&w.env, cert),
                SecretKey::of_ref(&w.env, key),
            );
            let certified = match parsed.get(&refs).or_else(|| used.get(&refs)) {
                Some(c) => c.clone(),
                None => {
                    let (Some(chain), Some(pem)) = (values.get(&refs.0), values.get(&refs.1))
                    else {
                        problems.push(format!(
                            "{}/{}: the plan lacks the value of {} or {}: hosts {} get no \
                             certificate until the coordinator sends it",
                            w.env,
                            w.service,
                            refs.0,
                            refs.1,
                            tls.hosts.join(", ")
                        ));
                        continue;
                    };
                    match certified_key(chain, pem) {
                        Ok(c) => Arc::new(c),
                        Err(e) => {
                            problems.push(format!(
                                "{}/{}: {} / {}: {e}",
                                w.env, w.service, refs.0, refs.1
                            ));
                            continue;
                        }
                    }
                }
            };
            used.insert(refs, certified.clone());
            for host in &tls.hosts {
                let host = host.to_ascii_lowercase();
                if let Some(first) = owners.get(&host) {
                    if *first != owner {
                        problems.push(format!(
                            "host `{host}`: services {}/{} and {}/{} both have a certificate \
                             for it; {}/{}'s is presented",
                            first.0, first.1, owner.0, owner.1, first.0, first.1
                        ));
                    }
                    continue;
                }
                owners.insert(host.clone(), owner.clone());
                let name = host.strip_prefix("*.").unwrap_or(&host).to_string();
                table.get_mut(&host).insert(
                    name,
                    Entry {
                        key: certified.clone(),
                        redirect,
                    },
                );
            }
        }
    }
    *parsed = used;
    (table, problems)
}

/// A certificate chain and its key from PEM text, the key checked against
/// the chain's first certificate.
pub fn certified_key(chain: &[u8], key: &[u8]) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in the certificate's secret".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|_| "no PEM private key in the key's secret".to_string())?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("the private key is not usable: {e}"))?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .map_err(|_| "the private key is not the certificate's".to_string())?;
    Ok(certified)
}

/// The TLS settings of the listener: TLS 1.2 and 1.3 (ring), ALPN h2 then
/// http/1.1, certificates from `certs`.
pub fn server_config(certs: Arc<Certificates>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Rebuilds `certs` from every plan until `shutdown`, saying what is wrong
/// when that changes.
pub async fn keep_certs(
    certs: Arc<Certificates>,
    mut plan: watch::Receiver<Option<Arc<Plan>>>,
    shutdown: CancellationToken,
) {
    let mut parsed = Parsed::new();
    let mut reported: Vec<String> = Vec::new();
    loop {
        let current = plan.borrow_and_update().clone();
        if let Some(current) = current {
            // Parsing keys is CPU work on input from the network.
            let built = tokio::task::spawn_blocking(move || {
                let (table, problems) =
                    build(current.containers(), current.secret_values(), &mut parsed);
                (table, problems, parsed)
            })
            .await;
            match built {
                Ok((table, problems, kept)) => {
                    parsed = kept;
                    if problems != reported {
                        for p in &problems {
                            warn!("proxy TLS: {p}");
                        }
                        info!(hosts = table.len(), "proxy TLS certificates updated");
                        reported = problems;
                    }
                    certs.install(table);
                }
                Err(e) => {
                    warn!("proxy TLS: building the certificate table failed: {e}");
                    parsed = Parsed::new();
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = plan.changed() => if r.is_err() { return },
        }
    }
}

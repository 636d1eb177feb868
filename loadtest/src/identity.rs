//! Client certificates for the simulated agents, signed by the CA the
//! coordinator keeps in its data directory (as `convoyd issue-cert` does).

use std::path::Path;

use anyhow::{Context, Result};
use convoy_pki::{Ca, PkiPaths};
use tonic::transport::Identity;

/// The CA certificate (PEM) agents trust.
pub fn ca_pem(data_dir: &Path) -> Result<String> {
    let path = PkiPaths::new(data_dir).ca_cert();
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// One identity per name, signed on every core.
pub fn issue(data_dir: &Path, names: &[String]) -> Result<Vec<Identity>> {
    let ca = Ca::load(&PkiPaths::new(data_dir))
        .with_context(|| format!("cannot load the CA of {}", data_dir.display()))?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = names.len().div_ceil(threads).max(1);
    let validity = time::Duration::days(7);
    std::thread::scope(|s| {
        let workers: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                let ca = &ca;
                s.spawn(move || -> Result<Vec<Identity>> {
                    part.iter()
                        .map(|name| {
                            let issued = ca.issue_agent(name, validity)?;
                            Ok(Identity::from_pem(issued.cert_pem, issued.key_pem))
                        })
                        .collect()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(names.len());
        for w in workers {
            out.extend(w.join().expect("a signing thread panicked")?);
        }
        Ok(out)
    })
}

//! The user-defined networks containers join: created when missing,
//! removed with their last container, and deduplicated when two agents on
//! one engine created one at once.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions};
use bollard::Docker;

use super::create::Joined;
use super::errors::classify;
use super::DockerRuntime;
use crate::runtime::{labels, RuntimeError};

impl DockerRuntime {
    /// Creates a network the container joins when it is missing, labelled
    /// as Convoy's; an external one must exist. `prune_networks` removes it
    /// with its last container.
    pub(super) async fn ensure_network(
        &self,
        docker: &Docker,
        node: &str,
        joined: &Joined,
    ) -> Result<(), RuntimeError> {
        let _held = self.network_lock.lock().await;
        let mut inspected = docker
            .inspect_network(&joined.name, None::<InspectNetworkOptions>)
            .await;
        // Two agents on one engine may both have created it (Docker 20.10
        // allows two networks of one name, and then refuses the name as
        // ambiguous): keep the oldest, and look again.
        if inspected
            .as_ref()
            .is_err_and(|e| e.to_string().contains("ambiguous"))
        {
            dedupe_network(docker, &joined.name).await;
            inspected = docker
                .inspect_network(&joined.name, None::<InspectNetworkOptions>)
                .await;
        }
        match inspected {
            // Never trust the coordinator alone with the host: the host's
            // network, named or by its ID, is `network_mode: host`.
            Ok(network) if network.driver.as_deref() == Some("host") => {
                return Err(RuntimeError::NotAllowed(format!(
                    "node `{node}` refuses to join network `{}`: it is the host's network, \
                     which gives the container the host; join a bridge network instead",
                    joined.name
                )))
            }
            Ok(_) => return Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => {
                return Err(classify(
                    &format!("inspecting network `{}`", joined.name),
                    e,
                ))
            }
        }
        let Some(request) = &joined.create else {
            return Err(RuntimeError::Engine {
                context: format!("joining network `{}`", joined.name),
                message: format!(
                    "the spec names it `external: true` but node `{node}` has no network \
                     of that name: create it on the node (`docker network create {}`) \
                     or drop `external: true`",
                    joined.name
                ),
            });
        };
        docker
            .create_network(request.clone())
            .await
            .map_err(|e| classify(&format!("creating network `{}`", joined.name), e))?;
        // Another agent on this engine may have created it at the same time.
        dedupe_network(docker, &joined.name).await;
        Ok(())
    }

    /// Removes those of `names` that are Convoy's (`io.convoy.managed`)
    /// and that no container uses any more, so that networks do not pile
    /// up (each takes an address range of the engine's few). Best effort:
    /// a network in use, or removed meanwhile, stays as it is.
    pub(super) async fn prune_networks(&self, docker: &Docker, names: &[String]) {
        let _held = self.network_lock.lock().await;
        for name in names {
            let Ok(network) = docker
                .inspect_network(name, None::<InspectNetworkOptions>)
                .await
            else {
                continue;
            };
            let ours = network
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::MANAGED))
                .is_some_and(|v| v == "true");
            let empty = network.containers.as_ref().is_none_or(|c| c.is_empty());
            if ours && empty {
                // Refused when a container joined meanwhile: then it stays.
                let _ = docker.remove_network(name).await;
            }
        }
    }
}

/// Whether `error` comes from two agents on one engine creating a network
/// at once: the name is ambiguous, or the network a container was made on
/// was removed as a duplicate.
pub(super) fn network_race(error: &RuntimeError) -> bool {
    let text = error.to_string();
    text.contains("is ambiguous")
        || (text.contains("network")
            && (text.contains("not found") || text.contains("No such network")))
}

/// When the engine holds several networks named `name` (two agents on one
/// engine created it at once), removes Convoy's empty ones but the oldest,
/// so that the name means one network again. Every agent keeps the same
/// one (oldest, then lowest ID); one in use is left for a later pass.
pub(super) async fn dedupe_network(docker: &Docker, name: &str) {
    let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
    let Ok(list) = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
    else {
        return;
    };
    // The filter matches substrings: keep the exact name only.
    let mut same: Vec<_> = list
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(name))
        .collect();
    if same.len() < 2 {
        return;
    }
    same.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    for extra in &same[1..] {
        let ours = extra
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::MANAGED))
            .is_some_and(|v| v == "true");
        if let (true, Some(id)) = (ours, extra.id.as_deref()) {
            tracing::info!(network = name, id, "removing a duplicate network");
            let _ = docker.remove_network(id).await;
        }
    }
}

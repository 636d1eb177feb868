//! The few Docker Swarm calls the driver makes, behind a trait so that
//! the driver's logic is tested with a recording fake; implemented on
//! bollard's `Docker` (the engine `DOCKER_HOST` names). Every call is
//! bounded in time.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{NetworkCreateRequest, Node, SecretSpec, Service, ServiceSpec, Task};
use bollard::query_parameters::{
    ListNetworksOptions, ListNodesOptions, ListSecretsOptions, ListServicesOptions,
    ListTasksOptions, UpdateServiceOptions,
};
use bollard::Docker;

/// The label every Swarm object Convoy makes carries.
pub const MANAGED: &str = "io.convoy.managed";
/// Set on Convoy's Swarm networks (its plain containers' bridges have the
/// same `MANAGED` label, and must never be taken for them).
pub const SWARM: &str = "io.convoy.swarm";

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A Convoy-labelled overlay network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmNetworkInfo {
    pub id: String,
    pub name: String,
}

/// A Convoy-labelled Swarm secret (its value is never read back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmSecretInfo {
    pub id: String,
    pub name: String,
}

#[async_trait]
pub trait SwarmApi: Send + Sync + 'static {
    /// Services labelled `io.convoy.managed=true`.
    async fn list_services(&self) -> Result<Vec<Service>, String>;
    async fn create_service(&self, spec: ServiceSpec) -> Result<(), String>;
    /// Updates `name` from its `version` (`Version.Index` of an inspect).
    async fn update_service(
        &self,
        name: &str,
        version: u64,
        spec: ServiceSpec,
    ) -> Result<(), String>;
    async fn remove_service(&self, name: &str) -> Result<(), String>;
    /// The tasks of service `name`.
    async fn list_tasks(&self, name: &str) -> Result<Vec<Task>, String>;
    async fn list_nodes(&self) -> Result<Vec<Node>, String>;
    /// Networks labelled `io.convoy.managed=true` and `io.convoy.swarm=true`.
    async fn list_networks(&self) -> Result<Vec<SwarmNetworkInfo>, String>;
    async fn create_network(&self, request: NetworkCreateRequest) -> Result<(), String>;
    async fn remove_network(&self, id: &str) -> Result<(), String>;
    /// Secrets labelled `io.convoy.managed=true` and `io.convoy.swarm=true`.
    async fn list_secrets(&self) -> Result<Vec<SwarmSecretInfo>, String>;
    /// Creates a secret; its ID.
    async fn create_secret(&self, spec: SecretSpec) -> Result<String, String>;
    async fn remove_secret(&self, id: &str) -> Result<(), String>;
}

/// The engine's API, connected on first use.
pub struct DockerSwarm {
    client: tokio::sync::Mutex<Option<Docker>>,
}

impl Default for DockerSwarm {
    fn default() -> Self {
        Self::new()
    }
}

impl DockerSwarm {
    pub fn new() -> Self {
        Self {
            client: tokio::sync::Mutex::new(None),
        }
    }

    async fn docker(&self) -> Result<Docker, String> {
        let mut client = self.client.lock().await;
        if let Some(d) = client.as_ref() {
            return Ok(d.clone());
        }
        let d = Docker::connect_with_local_defaults()
            .map_err(|e| format!("connecting to the Docker engine: {e}"))?;
        *client = Some(d.clone());
        Ok(d)
    }
}

/// Runs one call within [`CALL_TIMEOUT`], its error as text.
async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: no answer from the engine in {CALL_TIMEOUT:?}"
        )),
    }
}

fn label_filter(labels: &[&str]) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        labels.iter().map(|l| l.to_string()).collect(),
    )])
}

#[async_trait]
impl SwarmApi for DockerSwarm {
    async fn list_services(&self) -> Result<Vec<Service>, String> {
        let d = self.docker().await?;
        bounded(
            "listing Swarm services",
            d.list_services(Some(ListServicesOptions {
                filters: Some(label_filter(&[&format!("{MANAGED}=true")])),
                ..Default::default()
            })),
        )
        .await
    }

    async fn create_service(&self, spec: ServiceSpec) -> Result<(), String> {
        let d = self.docker().await?;
        let name = spec.name.clone().unwrap_or_default();
        bounded(
            &format!("creating Swarm service {name}"),
            d.create_service(spec, None),
        )
        .await
        .map(|_| ())
    }

    async fn update_service(
        &self,
        name: &str,
        version: u64,
        spec: ServiceSpec,
    ) -> Result<(), String> {
        let d = self.docker().await?;
        let options = UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            ..Default::default()
        };
        bounded(
            &format!("updating Swarm service {name}"),
            d.update_service(name, spec, options, None),
        )
        .await
        .map(|_| ())
    }

    async fn remove_service(&self, name: &str) -> Result<(), String> {
        let d = self.docker().await?;
        bounded(
            &format!("removing Swarm service {name}"),
            d.delete_service(name),
        )
        .await
    }

    async fn list_tasks(&self, name: &str) -> Result<Vec<Task>, String> {
        let d = self.docker().await?;
        bounded(
            &format!("listing the tasks of {name}"),
            d.list_tasks(Some(ListTasksOptions {
                filters: Some(HashMap::from([(
                    "service".to_string(),
                    vec![name.to_string()],
                )])),
            })),
        )
        .await
    }

    async fn list_nodes(&self) -> Result<Vec<Node>, String> {
        let d = self.docker().await?;
        bounded(
            "listing Swarm nodes",
            d.list_nodes(None::<ListNodesOptions>),
        )
        .await
    }

    async fn list_networks(&self) -> Result<Vec<SwarmNetworkInfo>, String> {
        let d = self.docker().await?;
        let nets = bounded(
            "listing Convoy's Swarm networks",
            d.list_networks(Some(ListNetworksOptions {
                filters: Some(label_filter(&[
                    &format!("{MANAGED}=true"),
                    &format!("{SWARM}=true"),
                ])),
            })),
        )
        .await?;
        Ok(nets
            .into_iter()
            .map(|n| SwarmNetworkInfo {
                id: n.id.unwrap_or_default(),
                name: n.name.unwrap_or_default(),
            })
            .collect())
    }

    async fn create_network(&self, request: NetworkCreateRequest) -> Result<(), String> {
        let d = self.docker().await?;
        let name = request.name.clone();
        bounded(
            &format!("creating overlay network {name}"),
            d.create_network(request),
        )
        .await
        .map(|_| ())
    }

    async fn remove_network(&self, id: &str) -> Result<(), String> {
        let d = self.docker().await?;
        bounded(&format!("removing network {id}"), d.remove_network(id)).await
    }

    async fn list_secrets(&self) -> Result<Vec<SwarmSecretInfo>, String> {
        let d = self.docker().await?;
        let secrets = bounded(
            "listing Convoy's Swarm secrets",
            d.list_secrets(Some(ListSecretsOptions {
                filters: Some(label_filter(&[
                    &format!("{MANAGED}=true"),
                    &format!("{SWARM}=true"),
                ])),
            })),
        )
        .await?;
        Ok(secrets
            .into_iter()
            .map(|s| SwarmSecretInfo {
                id: s.id.unwrap_or_default(),
                name: s.spec.and_then(|s| s.name).unwrap_or_default(),
            })
            .collect())
    }

    async fn create_secret(&self, spec: SecretSpec) -> Result<String, String> {
        let d = self.docker().await?;
        // The error names the secret, never its value.
        let name = spec.name.clone().unwrap_or_default();
        bounded(
            &format!("creating Swarm secret {name}"),
            d.create_secret(spec),
        )
        .await
        .map(|r| r.id)
    }

    async fn remove_secret(&self, id: &str) -> Result<(), String> {
        let d = self.docker().await?;
        bounded(&format!("removing Swarm secret {id}"), d.delete_secret(id)).await
    }
}

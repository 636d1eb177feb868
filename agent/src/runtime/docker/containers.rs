//! Creating containers: the host checks, the create request with its
//! secrets, configs, volumes and networks, the start, and the request of a
//! one-off run.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::NetworkConnectRequest;
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
};
use bollard::Docker;
use convoy_proto::Workload;

use super::create::{self, check_binds, create_body, endpoint, networks_of};
use super::errors::{classify, name_conflict};
use super::networks::network_race;
use super::{binds, configs, volumes, DockerRuntime};
use crate::runtime::{container_name, CreatedContainer, RuntimeError};
use crate::secrets::Delivery;

impl DockerRuntime {
    pub(super) async fn create_and_start_inner(
        &self,
        node: &str,
        workload: &Workload,
        secrets: &Delivery,
    ) -> Result<CreatedContainer, RuntimeError> {
        let docker = self.client().await?;
        let name = container_name(workload);
        let id = self
            .create_named(&docker, node, workload, secrets, &name, |_| {})
            .await?;
        let started = docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
            .map_err(|e| classify(&format!("starting container `{name}`"), e));
        if let Err(e) = started {
            // Another agent on this engine removed the duplicate network the
            // container was created on: not left behind, made anew.
            if network_race(&e) {
                let options = RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                };
                let _ = docker.remove_container(&id, Some(options)).await;
            }
            return Err(e);
        }
        Ok(CreatedContainer { id, name })
    }

    /// Creates (does not start) container `name` of `workload` with its
    /// secrets, configs, volumes and networks; `adjust` changes the request
    /// last (a one-off run's command and labels). Its ID.
    pub(super) async fn create_named(
        &self,
        docker: &Docker,
        node: &str,
        workload: &Workload,
        secrets: &Delivery,
        name: &str,
        adjust: impl FnOnce(&mut bollard::models::ContainerCreateBody),
    ) -> Result<String, RuntimeError> {
        // Never trust the coordinator alone with the host.
        check_binds(node, workload, &self.allowed_binds)?;
        create::check_host_access(node, workload, &self.allowed_host_access)?;
        binds::check_resolved(node, workload, &self.allowed_binds)?;
        let docker = docker.clone();
        let name = name.to_string();
        let mut body = create_body(node, workload)?;
        add_secrets(&mut body, secrets);
        // Held until the create: the files must outlive a concurrent sweep.
        let config_held = if configs::has_configs(workload) {
            Some(self.config_lock.read().await)
        } else {
            None
        };
        let config_mounts = self.config_mounts(workload).await?;
        if !config_mounts.is_empty() {
            if let Some(host) = body.host_config.as_mut() {
                host.mounts
                    .get_or_insert_with(Vec::new)
                    .extend(config_mounts);
            }
        }
        adjust(&mut body);
        let networks = networks_of(workload);
        let platform = match &workload.runtime {
            Some(convoy_proto::workload::Runtime::Container(spec)) if !spec.platform.is_empty() => {
                spec.platform.clone()
            }
            _ => String::new(),
        };
        let create = || {
            docker.create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    platform: platform.clone(),
                }),
                body.clone(),
            )
        };
        for joined in &networks {
            self.ensure_network(&docker, node, joined).await?;
        }
        volumes::ensure(&docker, node, &volumes::needed(workload)?).await?;
        let mut created = create().await;
        // Another agent on this engine may have removed an empty network
        // between the check and the create (`prune_networks`): once more.
        if matches!(&created, Err(BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        }) if message.contains("network"))
        {
            for joined in &networks {
                self.ensure_network(&docker, node, joined).await?;
            }
            created = create().await;
        }
        let id = match created {
            Ok(created) => created.id,
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) => return Err(name_conflict(&docker, node, &name, message).await),
            Err(e) => return Err(classify(&format!("creating container `{name}`"), e)),
        };
        drop(config_held);
        // The first network was given at create.
        for joined in networks.iter().skip(1) {
            let connected = docker
                .connect_network(
                    &joined.name,
                    NetworkConnectRequest {
                        container: Some(id.clone()),
                        endpoint_config: Some(endpoint(joined)),
                    },
                )
                .await;
            if let Err(e) = connected {
                // Not left behind half-connected: the next pass creates it anew.
                let options = RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                };
                let _ = docker.remove_container(&id, Some(options)).await;
                return Err(classify(
                    &format!("connecting container `{name}` to network `{}`", joined.name),
                    e,
                ));
            }
        }
        Ok(id)
    }
}

/// The container's secrets: each file (on the node's tmpfs, written by
/// `crate::secrets`) bind-mounted read-only at its target, and the
/// variables of those given as environment variables.
pub(super) fn add_secrets(body: &mut bollard::models::ContainerCreateBody, secrets: &Delivery) {
    if secrets.is_empty() {
        return;
    }
    let mounts = secrets.files.iter().map(|f| bollard::models::Mount {
        target: Some(f.target.clone()),
        source: Some(f.source.display().to_string()),
        typ: Some(bollard::models::MountTypeEnum::BIND),
        read_only: Some(true),
        ..Default::default()
    });
    body.host_config
        .get_or_insert_with(Default::default)
        .mounts
        .get_or_insert_with(Vec::new)
        .extend(mounts);
    let names = secrets.env_names();
    let env = body.env.get_or_insert_with(Vec::new);
    // The secret's value wins over a variable of the same name.
    env.retain(|line| {
        let name = line.split_once('=').map_or(line.as_str(), |(k, _)| k);
        !names.contains(&name)
    });
    env.extend(secrets.env_lines());
}

/// Turns a workload's create request into a one-off's: `run`'s command
/// (the image's or spec's entrypoint stays), not managed (the reconciler
/// leaves it alone) but labelled with the workload, no published ports,
/// no restart policy, no health check, streams attached as asked.
pub(super) fn one_off_body(
    body: &mut bollard::models::ContainerCreateBody,
    workload_id: &str,
    run: &crate::runtime::OneOff,
) {
    body.cmd = Some(run.command.clone());
    body.tty = Some(run.tty);
    body.open_stdin = Some(run.stdin);
    body.stdin_once = Some(run.stdin);
    body.attach_stdin = Some(run.stdin);
    body.attach_stdout = Some(true);
    body.attach_stderr = Some(true);
    body.healthcheck = Some(bollard::models::HealthConfig {
        test: Some(vec!["NONE".to_string()]),
        ..Default::default()
    });
    let labels = body.labels.get_or_insert_with(HashMap::new);
    labels.remove(super::labels::MANAGED);
    labels.insert(super::labels::RUN.to_string(), workload_id.to_string());
    if let Some(host) = body.host_config.as_mut() {
        host.restart_policy = None;
        host.port_bindings = None;
        host.publish_all_ports = Some(false);
    }
}

//! What the agent receives: a service's spec as the proto messages of its
//! workload (container or unit, probes, healthcheck, restart policy).

use convoy_proto::{
    probe, restart_policy::Condition, workload::Runtime, ContainerSpec, ExecProbe, HealthCheck,
    HttpProbe, PortMapping, Probe, RestartPolicy, TcpProbe, UnitSpec,
};

use convoy_proto as pb;

use super::{
    Dependency, DependencyCondition, DeployMode, HealthcheckSpec, MountSpec, NetworkAttachment,
    PortSpec, ProbeCheck, ProbeSpec, RestartCondition, RestartSpec, ServiceSpec, SwarmFields,
    SwarmRestart, SwarmUpdate, UnitFields, UnitState, VolumeDecl,
};

impl ServiceSpec {
    /// The runtime part, as the agent receives it.
    pub fn container_spec(&self) -> ContainerSpec {
        ContainerSpec {
            image: self.image.clone(),
            command: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            env: self
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ports: self.ports.iter().map(PortMapping::from).collect(),
            labels: self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            volumes: self.volumes.clone(),
            mounts: self.mounts.iter().map(pb::Mount::from).collect(),
            named_volumes: self
                .named_volumes
                .iter()
                .map(pb::VolumeDecl::from)
                .collect(),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
            restart: Some(RestartPolicy::from(self.restart)),
            stop_signal: self.stop_signal.clone(),
            stop_grace_period_ms: self.stop_grace_period_ms,
            healthcheck: self.healthcheck.as_ref().map(HealthCheck::from),
            networks: self
                .networks
                .iter()
                .map(pb::NetworkAttachment::from)
                .collect(),
            hostname: self.hostname.clone(),
            extra_hosts: self.extra_hosts.clone(),
            dns: self.dns.clone(),
            expose: self.expose.clone(),
            depends_on: self.depends_on.iter().map(pb::Dependency::from).collect(),
            nano_cpus: self.resources.cpu_limit_nanos,
            memory_bytes: self.resources.memory_limit_bytes,
            pids_limit: self.resources.pids_limit,
            memory_reservation_bytes: self.resources.memory_reservation_bytes,
            shm_size_bytes: self.resources.shm_size_bytes,
            ulimits: self
                .resources
                .ulimits
                .iter()
                .map(|(name, limit)| convoy_proto::Ulimit {
                    name: name.clone(),
                    soft: limit.soft,
                    hard: limit.hard,
                })
                .collect(),
            read_only: self.extras.read_only,
            tmpfs: self.extras.tmpfs.clone(),
            init: self.extras.init,
            cap_drop: self.extras.cap_drop.clone(),
            tty: self.extras.tty,
            stdin_open: self.extras.stdin_open,
            sysctls: self.extras.sysctls.clone(),
            log_driver: self.extras.log_driver.clone(),
            log_options: self.extras.log_options.clone(),
            pull_policy: self.extras.pull_policy.clone(),
            platform: self.extras.platform.clone(),
            privileged: self.host_access.privileged,
            cap_add: self.host_access.cap_add.clone(),
            devices: self.host_access.devices.clone(),
            pid_mode: host_mode(self.host_access.pid_host),
            ipc_mode: host_mode(self.host_access.ipc_host),
            uts_mode: host_mode(self.host_access.uts_host),
            userns_mode: host_mode(self.host_access.userns_host),
            network_mode: host_mode(self.host_access.network_host),
            security_opt: self.host_access.security_opt.clone(),
            configs: self.configs.iter().map(pb::ConfigFile::from).collect(),
            secrets: self.secrets.iter().map(pb::SecretMount::from).collect(),
            // The UUIDs are the instance's: set per instance in its node's
            // plan (`state::plans`).
            gpu_uuids: Vec::new(),
            gpu_capabilities: self
                .resources
                .gpus
                .as_ref()
                .map(|g| g.capabilities.clone())
                .unwrap_or_default(),
        }
    }

    /// What the agent runs: a container, a systemd unit for an entry of
    /// `units:`, or a Swarm service for one with `x-convoy.swarm`
    /// (`Workload.runtime`).
    pub fn runtime(&self) -> Runtime {
        match (&self.unit, &self.swarm) {
            (Some(unit), _) => Runtime::Unit(UnitSpec {
                credentials: self.secrets.iter().map(pb::SecretMount::from).collect(),
                ..UnitSpec::from(unit)
            }),
            (None, Some(swarm)) => Runtime::Swarm(self.swarm_spec(swarm)),
            (None, None) => Runtime::Container(self.container_spec()),
        }
    }

    /// A Swarm service: the container settings as for a container, without
    /// its networks (the service's own, in `networks`) and GPUs (refused);
    /// `name` and `cluster` are the coordinator planner's to fill.
    fn swarm_spec(&self, swarm: &SwarmFields) -> pb::SwarmServiceSpec {
        let SwarmFields {
            cluster: _,
            constraints,
            restart,
            update,
            rollback,
        } = swarm;
        let container = ContainerSpec {
            networks: Vec::new(),
            gpu_uuids: Vec::new(),
            gpu_capabilities: Vec::new(),
            ..self.container_spec()
        };
        pb::SwarmServiceSpec {
            name: String::new(),
            cluster: String::new(),
            container: Some(container),
            replicas: self.deploy.replicas,
            global: self.deploy.mode == DeployMode::Global,
            constraints: constraints.clone(),
            spread: self
                .deploy
                .spread
                .iter()
                .map(|label| format!("node.labels.{label}"))
                .collect(),
            max_replicas_per_node: self.deploy.max_replicas_per_node,
            restart: restart.as_ref().map(pb::SwarmRestartPolicy::from),
            update: update.as_ref().map(pb::SwarmUpdateConfig::from),
            rollback: rollback.as_ref().map(pb::SwarmUpdateConfig::from),
            networks: self.networks.iter().map(pb::SwarmNetwork::from).collect(),
        }
    }

    /// The probes the agent runs against each instance (`Workload.probes`).
    pub fn probes(&self) -> Vec<Probe> {
        self.probes.iter().map(Probe::from).collect()
    }

    /// `x-convoy.ingress` for the plan's workloads.
    pub fn ingress(&self) -> Option<pb::Ingress> {
        self.ingress.as_ref().map(pb::Ingress::from)
    }
}

impl From<&Dependency> for pb::Dependency {
    fn from(dependency: &Dependency) -> Self {
        let Dependency {
            service,
            condition,
            restart,
        } = dependency;
        let condition = match condition {
            DependencyCondition::Started => pb::dependency::Condition::Started,
            DependencyCondition::Healthy => pb::dependency::Condition::Healthy,
            DependencyCondition::CompletedSuccessfully => {
                pb::dependency::Condition::CompletedSuccessfully
            }
        };
        pb::Dependency {
            service: service.clone(),
            condition: condition as i32,
            restart: *restart,
        }
    }
}

impl From<&MountSpec> for pb::Mount {
    fn from(mount: &MountSpec) -> Self {
        let MountSpec {
            kind,
            source,
            target,
            read_only,
            bind_propagation,
            bind_create_host_path,
            volume_nocopy,
            tmpfs_size_bytes,
            tmpfs_mode,
        } = mount;
        pb::Mount {
            r#type: kind.as_str().to_owned(),
            source: source.clone(),
            target: target.clone(),
            read_only: *read_only,
            bind_propagation: bind_propagation.clone(),
            bind_create_host_path: *bind_create_host_path,
            volume_nocopy: *volume_nocopy,
            tmpfs_size_bytes: *tmpfs_size_bytes,
            tmpfs_mode: *tmpfs_mode,
        }
    }
}

impl From<&VolumeDecl> for pb::VolumeDecl {
    fn from(decl: &VolumeDecl) -> Self {
        let VolumeDecl {
            key,
            name,
            external,
            driver,
            driver_opts,
            labels,
        } = decl;
        pb::VolumeDecl {
            key: key.clone(),
            name: name.clone(),
            external: *external,
            driver: driver.clone(),
            driver_opts: driver_opts
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

impl From<&NetworkAttachment> for pb::NetworkAttachment {
    fn from(attachment: &NetworkAttachment) -> Self {
        let NetworkAttachment {
            name,
            aliases,
            external,
            internal,
            labels,
        } = attachment;
        pb::NetworkAttachment {
            name: name.clone(),
            aliases: aliases.clone(),
            external: *external,
            internal: *internal,
            labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

impl From<&PortSpec> for PortMapping {
    fn from(port: &PortSpec) -> Self {
        let PortSpec {
            host_ip,
            published,
            target,
            protocol,
            mode,
        } = port;
        PortMapping {
            host_ip: host_ip.clone(),
            host_port: (*published).into(),
            container_port: (*target).into(),
            protocol: protocol.as_str().to_owned(),
            mode: mode.clone(),
        }
    }
}

/// What a container's attachment says, as a Swarm service takes it; the
/// agent names the network: `default` → `convoy-ENV`, `K` → `convoy-ENV-K`,
/// an external one as written.
impl From<&NetworkAttachment> for pb::SwarmNetwork {
    fn from(attachment: &NetworkAttachment) -> Self {
        let pb::NetworkAttachment {
            name,
            aliases,
            external,
            internal,
            labels,
        } = attachment.into();
        pb::SwarmNetwork {
            name,
            aliases,
            external,
            internal,
            labels,
        }
    }
}

impl From<&SwarmRestart> for pb::SwarmRestartPolicy {
    fn from(restart: &SwarmRestart) -> Self {
        let SwarmRestart {
            condition,
            delay_ms,
            max_attempts,
            window_ms,
        } = restart;
        pb::SwarmRestartPolicy {
            condition: condition.clone(),
            delay_ms: *delay_ms,
            max_attempts: *max_attempts,
            window_ms: *window_ms,
        }
    }
}

impl From<&SwarmUpdate> for pb::SwarmUpdateConfig {
    fn from(update: &SwarmUpdate) -> Self {
        let SwarmUpdate {
            parallelism,
            delay_ms,
            failure_action,
            monitor_ms,
            max_failure_permille,
            order,
        } = update;
        pb::SwarmUpdateConfig {
            parallelism: *parallelism,
            delay_ms: *delay_ms,
            failure_action: failure_action.clone(),
            monitor_ms: *monitor_ms,
            max_failure_ratio: f64::from(*max_failure_permille) / 1000.0,
            order: order.clone(),
        }
    }
}

impl From<&UnitFields> for UnitSpec {
    fn from(unit: &UnitFields) -> Self {
        let UnitFields {
            unit_name,
            adopt,
            exec_start,
            user,
            restart,
            environment,
            working_dir,
            description,
            state,
            enabled,
        } = unit;
        UnitSpec {
            unit_name: unit_name.clone(),
            adopt: *adopt,
            exec_start: exec_start.clone(),
            user: user.clone(),
            restart: if *adopt {
                String::new()
            } else {
                restart.as_str().to_owned()
            },
            environment: environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            working_directory: working_dir.clone(),
            description: description.clone(),
            // Units Convoy writes always run, enabled.
            state: if *adopt { *state } else { UnitState::Running }
                .as_str()
                .to_owned(),
            enabled: *enabled || !*adopt,
            // Per instance, in its node's plan (`state::plans`).
            gpu_uuids: Vec::new(),
            gpu_indexes: Vec::new(),
            credentials: Vec::new(),
        }
    }
}

impl From<&HealthcheckSpec> for HealthCheck {
    fn from(check: &HealthcheckSpec) -> Self {
        let HealthcheckSpec {
            test,
            interval_ms,
            timeout_ms,
            retries,
            start_period_ms,
            start_interval_ms,
            disable,
        } = check;
        HealthCheck {
            test: test.clone(),
            interval_ms: *interval_ms,
            timeout_ms: *timeout_ms,
            retries: *retries,
            start_period_ms: *start_period_ms,
            start_interval_ms: *start_interval_ms,
            disable: *disable,
        }
    }
}

impl From<&ProbeSpec> for Probe {
    fn from(spec: &ProbeSpec) -> Self {
        let ProbeSpec {
            name,
            check,
            interval_ms,
            timeout_ms,
            failure_threshold,
            success_threshold,
            start_period_ms,
        } = spec;
        let check = match check {
            ProbeCheck::Http {
                port,
                path,
                expect_status,
            } => probe::Check::Http(HttpProbe {
                port: (*port).into(),
                path: path.clone(),
                expect_status: (*expect_status).into(),
            }),
            ProbeCheck::Tcp { port } => probe::Check::Tcp(TcpProbe {
                port: (*port).into(),
            }),
            ProbeCheck::Exec { command } => probe::Check::Exec(ExecProbe {
                command: command.clone(),
            }),
        };
        Probe {
            name: name.clone(),
            interval_ms: *interval_ms,
            timeout_ms: *timeout_ms,
            failure_threshold: *failure_threshold,
            success_threshold: *success_threshold,
            start_period_ms: *start_period_ms,
            check: Some(check),
        }
    }
}

impl From<RestartSpec> for RestartPolicy {
    fn from(restart: RestartSpec) -> Self {
        let condition = match restart.condition {
            RestartCondition::None => Condition::None,
            RestartCondition::OnFailure => Condition::OnFailure,
            RestartCondition::Any => Condition::Any,
        };
        RestartPolicy {
            condition: condition.into(),
            max_attempts: restart.max_attempts,
        }
    }
}

/// `host` when the service shares that namespace with the host, else empty
/// (Docker's default).
fn host_mode(host: bool) -> String {
    if host {
        "host".to_owned()
    } else {
        String::new()
    }
}

impl From<&super::IngressSpec> for pb::Ingress {
    fn from(ingress: &super::IngressSpec) -> Self {
        let super::IngressSpec {
            routes,
            drain_timeout_ms,
            tls,
            https_redirect,
        } = ingress;
        let secret = |s: &super::IngressSecret| pb::SecretRef {
            name: s.name.clone(),
            version: s.version,
        };
        pb::Ingress {
            routes: routes
                .iter()
                .map(|r| {
                    let super::IngressRoute {
                        host,
                        path_prefix,
                        port,
                    } = r;
                    pb::IngressRoute {
                        host: host.clone(),
                        path_prefix: path_prefix.clone(),
                        port: u32::from(*port),
                    }
                })
                .collect(),
            drain_timeout_ms: *drain_timeout_ms,
            // Set by the plans while a weighted canary runs.
            canary_revision: 0,
            canary_weight_percent: 0,
            // Set by the plans while a blue-green rollout runs both sets.
            active_revision: 0,
            tls: tls
                .iter()
                .map(|t| pb::IngressTls {
                    hosts: t.hosts.clone(),
                    certificate: Some(secret(&t.certificate)),
                    key: Some(secret(&t.key)),
                })
                .collect(),
            https_redirect: *https_redirect && !tls.is_empty(),
        }
    }
}

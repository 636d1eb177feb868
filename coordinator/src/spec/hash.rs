//! The spec hash: a digest of a service's runtime part, so that an instance
//! whose hash did not change is kept as it runs.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{
    ContainerExtras, Dependency, HealthcheckSpec, HostAccessSpec, MountSpec, NetworkAttachment,
    PortSpec, ProbeSpec, ResourcesSpec, RestartSpec, SecretMount, ServiceSpec, UnitFields,
    VolumeDecl,
};

impl ServiceSpec {
    /// Hex SHA-256 of a canonical encoding of the runtime part (everything but
    /// `deploy`): equal hashes mean an instance can be kept as it is.
    pub fn spec_hash(&self) -> String {
        let encoded = serde_json::to_vec(&HashedRuntime::of(self))
            .expect("a struct of strings, numbers and string maps always encodes");
        let mut hasher = Sha256::new();
        hasher.update(b"convoy spec-hash v1\n");
        hasher.update(&encoded);
        hex::encode(hasher.finalize())
    }
}

/// What `spec_hash` hashes. Empty and default fields are left out, so that a
/// field added later does not change the hash of specs that do not use it
/// (which would replace every running instance).
#[derive(Serialize)]
struct HashedRuntime<'a> {
    image: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    command: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    environment: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ports: &'a [PortSpec],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    volumes: &'a [String],
    /// Empty in revisions stored before them, whose hashes stay as they were.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    mounts: &'a [MountSpec],
    /// A change of a volume's driver or options needs a new container.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    named_volumes: &'a [VolumeDecl],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    networks: &'a [NetworkAttachment],
    #[serde(skip_serializing_if = "str::is_empty")]
    hostname: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    extra_hosts: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    dns: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    expose: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    working_dir: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart: Option<RestartSpec>,
    #[serde(skip_serializing_if = "str::is_empty")]
    stop_signal: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_grace_period_ms: Option<u64>,
    /// Docker applies it when it creates the container: a change needs a
    /// new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<&'a HealthcheckSpec>,
    /// The agent runs these, so a change need not replace the container; but
    /// node plans are re-sent only when a spec hash changes (state.rs), so a
    /// changed probe would not reach the agents otherwise. Hashed for that:
    /// a probe change rolls the service like any other change.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    probes: &'a [ProbeSpec],
    #[serde(skip_serializing_if = "ResourcesSpec::is_empty")]
    resources: &'a ResourcesSpec,
    #[serde(skip_serializing_if = "ContainerExtras::is_empty")]
    extras: &'a ContainerExtras,
    #[serde(skip_serializing_if = "HostAccessSpec::is_empty")]
    host_access: &'a HostAccessSpec,
    /// Empty for most specs, so their hashes stay as they were. Hashed so
    /// that a change reaches the agents (a new plan is sent on a new hash).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    depends_on: &'a [Dependency],
    /// Each config by its content's digest: a changed config replaces the
    /// containers that have it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    configs: Vec<HashedConfig<'a>>,
    /// Each secret by name and pinned version (never its value): a
    /// rotation pins the next version, which replaces the consumers.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    secrets: &'a [SecretMount],
    /// Only for units, so the hashes of containers stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a UnitFields>,
    /// Only for Swarm services, with their whole `deploy` (replicas,
    /// placement, update config): the Swarm service's spec holds it all.
    #[serde(skip_serializing_if = "Option::is_none")]
    swarm: Option<(&'a super::SwarmFields, &'a super::DeploySpec)>,
}

/// A config as hashed: where it goes and a digest of its content (the
/// source's name says nothing about the file the container sees).
#[derive(Serialize)]
struct HashedConfig<'a> {
    target: &'a str,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: u32,
    sha256: String,
}

impl<'a> HashedRuntime<'a> {
    fn of(spec: &'a ServiceSpec) -> Self {
        let ServiceSpec {
            image,
            command,
            entrypoint,
            environment,
            ports,
            labels,
            volumes,
            mounts,
            named_volumes,
            networks,
            hostname,
            extra_hosts,
            dns,
            expose,
            working_dir,
            user,
            restart,
            stop_signal,
            stop_grace_period_ms,
            healthcheck,
            probes,
            deploy,
            // Which profiles apply it says nothing about how it runs.
            profiles: _,
            // Merged into `environment` before anything is hashed.
            env_files: _,
            resources,
            extras,
            host_access,
            depends_on,
            configs,
            secrets,
            unit,
            swarm,
            // Where instances go when their node is lost, not how they run.
            reschedule_after_ms: _,
            // Run once before a rollout, not part of how instances run.
            pre_deploy: _,
            // The agents read routes from the plan; a change restarts nothing.
            ingress: _,
        } = spec;
        HashedRuntime {
            image,
            command,
            entrypoint,
            environment,
            ports,
            labels,
            volumes,
            mounts,
            named_volumes,
            networks,
            hostname,
            extra_hosts,
            dns,
            expose,
            working_dir,
            user,
            restart: (*restart != RestartSpec::default()).then_some(*restart),
            stop_signal,
            stop_grace_period_ms: (*stop_grace_period_ms != 0).then_some(*stop_grace_period_ms),
            healthcheck: healthcheck.as_ref(),
            probes,
            resources,
            extras,
            host_access,
            depends_on,
            configs: configs
                .iter()
                .map(|c| HashedConfig {
                    target: &c.target,
                    uid: c.uid,
                    gid: c.gid,
                    mode: c.mode,
                    sha256: c.sha256(),
                })
                .collect(),
            secrets,
            unit: unit.as_ref(),
            swarm: swarm.as_ref().map(|s| (s, deploy)),
        }
    }
}

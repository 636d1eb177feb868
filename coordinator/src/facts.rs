//! What the coordinator knows of a node's host, as its agent reported it in
//! Hello (the domain copy of `pb::NodeFacts`): stored in the node's record,
//! read by placement, constraints and the Swarm driver choice.

use std::collections::BTreeMap;

use convoy_proto as pb;
use serde::{Deserialize, Serialize};

/// Host facts reported in Hello (domain copy of `pb::NodeFacts`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub docker_version: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub platform_os: String,
    /// Roots under which the node allows bind mounts of host paths,
    /// normalised (`convoy_api::host_paths`).
    #[serde(default)]
    pub allowed_bind_paths: Vec<String>,
    /// The kinds of host access the node grants (`--allow-host-access`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_host_access: Vec<String>,
    /// The node's GPUs; absent from records of nodes without any (and of
    /// every node stored before GPUs were reported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<Gpu>,
    /// The engine's Swarm membership; absent when it is in none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<crate::swarm::SwarmFacts>,
}

/// One GPU of a node (domain copy of `pb::GpuDevice`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    pub index: u32,
    /// `GPU-<uuid>`.
    pub uuid: String,
    /// The model, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    pub memory_total_bytes: u64,
    /// "enabled", "disabled", or empty without MIG.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mig_mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cuda_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub compute_capability: String,
}

/// Most GPUs kept of one node's report (the largest boxes have 16).
pub const MAX_GPUS: usize = 64;
/// Longest GPU string kept (names, UUIDs, versions), in characters.
const MAX_GPU_TEXT: usize = 128;

fn gpu_text(s: String) -> String {
    if s.chars().count() <= MAX_GPU_TEXT {
        s
    } else {
        s.chars().take(MAX_GPU_TEXT).collect()
    }
}

impl From<pb::GpuDevice> for Gpu {
    fn from(g: pb::GpuDevice) -> Self {
        let pb::GpuDevice {
            index,
            uuid,
            name,
            memory_total_bytes,
            mig_mode,
            driver_version,
            cuda_version,
            compute_capability,
        } = g;
        // From the agent: bounded, like every string it sends.
        Self {
            index,
            uuid: gpu_text(uuid),
            name: gpu_text(name),
            memory_total_bytes,
            mig_mode: gpu_text(mig_mode),
            driver_version: gpu_text(driver_version),
            cuda_version: gpu_text(cuda_version),
            compute_capability: gpu_text(compute_capability),
        }
    }
}

impl From<&Gpu> for pb::GpuDevice {
    fn from(g: &Gpu) -> Self {
        let Gpu {
            index,
            uuid,
            name,
            memory_total_bytes,
            mig_mode,
            driver_version,
            cuda_version,
            compute_capability,
        } = g;
        pb::GpuDevice {
            index: *index,
            uuid: uuid.clone(),
            name: name.clone(),
            memory_total_bytes: *memory_total_bytes,
            mig_mode: mig_mode.clone(),
            driver_version: driver_version.clone(),
            cuda_version: cuda_version.clone(),
            compute_capability: compute_capability.clone(),
        }
    }
}

impl From<pb::NodeFacts> for Facts {
    fn from(f: pb::NodeFacts) -> Self {
        let pb::NodeFacts {
            hostname,
            os,
            kernel,
            arch,
            cpus,
            memory_bytes,
            docker_version,
            labels,
            platform_os,
            allowed_bind_paths,
            allowed_host_access,
            gpus,
            swarm,
        } = f;
        let gpus = gpus.into_iter().take(MAX_GPUS).map(Gpu::from).collect();
        // Only the kinds there are (an unknown one grants nothing).
        let allowed_host_access = allowed_host_access
            .iter()
            .filter_map(|k| convoy_api::host_access::parse_grant(k).ok())
            .take(convoy_api::host_access::KINDS.len() + 1)
            .collect();
        // From the agent: kept only when well-formed, and a bounded number.
        let allowed_bind_paths = allowed_bind_paths
            .iter()
            .filter_map(|p| convoy_api::host_paths::normalize(p).ok())
            .take(convoy_api::host_paths::MAX_ALLOWED_BIND_PATHS)
            .collect();
        Self {
            hostname,
            os,
            kernel,
            arch,
            cpus,
            memory_bytes,
            docker_version,
            labels: labels.into_iter().collect(),
            platform_os,
            allowed_bind_paths,
            allowed_host_access,
            gpus,
            swarm: swarm.map(Into::into),
        }
    }
}

impl From<&Facts> for pb::NodeFacts {
    fn from(f: &Facts) -> Self {
        pb::NodeFacts {
            hostname: f.hostname.clone(),
            os: f.os.clone(),
            kernel: f.kernel.clone(),
            arch: f.arch.clone(),
            cpus: f.cpus,
            memory_bytes: f.memory_bytes,
            docker_version: f.docker_version.clone(),
            labels: f.labels.clone().into_iter().collect(),
            platform_os: f.platform_os.clone(),
            allowed_bind_paths: f.allowed_bind_paths.clone(),
            allowed_host_access: f.allowed_host_access.clone(),
            gpus: f.gpus.iter().map(pb::GpuDevice::from).collect(),
            swarm: f.swarm.as_ref().map(Into::into),
        }
    }
}

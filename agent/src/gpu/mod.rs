//! The node's NVIDIA GPUs: static facts for `Hello` and live figures for
//! each heartbeat, read from a facts file (tests), NVML (`libnvidia-ml`,
//! loaded at run time) or `nvidia-smi`, in that order. A host without any
//! of them has no GPUs; that is never an error.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use convoy_proto as pb;
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

#[cfg(test)]
pub mod fake;
pub mod file;
pub mod nvml;
pub mod smi;

/// One GPU as its driver describes it (domain copy of `pb::GpuDevice`; the
/// facts file holds a JSON list of these).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    #[serde(default)]
    pub memory_total_bytes: u64,
    /// "enabled", "disabled", or empty where the GPU has no MIG.
    #[serde(default)]
    pub mig_mode: String,
    #[serde(default)]
    pub driver_version: String,
    #[serde(default)]
    pub cuda_version: String,
    #[serde(default)]
    pub compute_capability: String,
}

/// A GPU's live figures; one the driver does not give is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub index: u32,
    pub utilization_percent: f64,
    pub memory_used_bytes: u64,
    pub temperature_c: f64,
    pub power_w: f64,
}

impl From<Device> for pb::GpuDevice {
    fn from(d: Device) -> Self {
        let Device {
            index,
            uuid,
            name,
            memory_total_bytes,
            mig_mode,
            driver_version,
            cuda_version,
            compute_capability,
        } = d;
        pb::GpuDevice {
            index,
            uuid,
            name,
            memory_total_bytes,
            mig_mode,
            driver_version,
            cuda_version,
            compute_capability,
        }
    }
}

impl From<Sample> for pb::GpuSample {
    fn from(s: Sample) -> Self {
        let Sample {
            index,
            utilization_percent,
            memory_used_bytes,
            temperature_c,
            power_w,
        } = s;
        pb::GpuSample {
            index,
            utilization_percent,
            memory_used_bytes,
            temperature_c,
            power_w,
        }
    }
}

/// Where GPU facts and figures come from. Reading never fails: what cannot
/// be read is no GPU (devices) or no sample, and the source logs why.
#[async_trait]
pub trait GpuSource: Send + Sync + fmt::Debug {
    /// What the source is, for logs ("nvml", "nvidia-smi", ...).
    fn kind(&self) -> &'static str;
    /// The GPUs' static facts, in index order.
    async fn devices(&self) -> Vec<Device>;
    /// One live sample per GPU, in index order.
    async fn samples(&self) -> Vec<Sample>;
}

/// A host without GPUs (or without a driver to ask).
#[derive(Debug, Default)]
pub struct NoGpus;

#[async_trait]
impl GpuSource for NoGpus {
    fn kind(&self) -> &'static str {
        "none"
    }
    async fn devices(&self) -> Vec<Device> {
        Vec::new()
    }
    async fn samples(&self) -> Vec<Sample> {
        Vec::new()
    }
}

/// The GPU source the agent uses, shared by the session's facts and
/// heartbeats.
pub type Gpus = Arc<dyn GpuSource>;

/// No GPUs.
pub fn none() -> Gpus {
    Arc::new(NoGpus)
}

/// Picks the source once, at start: the facts file when given (test-only),
/// else NVML when `libnvidia-ml` loads, else `nvidia-smi` when it is on the
/// PATH and answers, else none.
pub async fn detect(facts_file: Option<PathBuf>) -> Gpus {
    if let Some(path) = facts_file {
        info!(path = %path.display(), "GPU facts come from a file (test-only)");
        return Arc::new(file::FileSource::new(path));
    }
    if let Some(source) = nvml::NvmlSource::open().await {
        return Arc::new(source);
    }
    let smi = smi::NvidiaSmi::default();
    if smi.available().await {
        info!("GPU facts come from nvidia-smi (NVML is not loadable)");
        return Arc::new(smi);
    }
    debug!("no NVML and no nvidia-smi: this node reports no GPUs");
    none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_facts_file_nvml_or_smi_means_no_gpus() {
        let gpus = none();
        assert!(gpus.devices().await.is_empty());
        assert!(gpus.samples().await.is_empty());
        assert_eq!(gpus.kind(), "none");
    }

    #[tokio::test]
    async fn the_facts_file_takes_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gpus.json");
        std::fs::write(&path, r#"[{"index": 0, "uuid": "GPU-a", "name": "Fake"}]"#).unwrap();
        let gpus = detect(Some(path)).await;
        assert_eq!(gpus.kind(), "file");
        assert_eq!(gpus.devices().await.len(), 1);
    }

    #[test]
    fn devices_and_samples_convert_field_for_field() {
        let d = Device {
            index: 1,
            uuid: "GPU-x".into(),
            name: "NVIDIA H100 80GB HBM3".into(),
            memory_total_bytes: 85_520_809_984,
            mig_mode: "disabled".into(),
            driver_version: "550.54.15".into(),
            cuda_version: "12.4".into(),
            compute_capability: "9.0".into(),
        };
        let p = pb::GpuDevice::from(d.clone());
        assert_eq!(
            (p.index, p.uuid.as_str(), p.name.as_str()),
            (1, "GPU-x", "NVIDIA H100 80GB HBM3")
        );
        assert_eq!(p.memory_total_bytes, d.memory_total_bytes);
        assert_eq!(
            (
                p.mig_mode.as_str(),
                p.driver_version.as_str(),
                p.cuda_version.as_str(),
                p.compute_capability.as_str()
            ),
            ("disabled", "550.54.15", "12.4", "9.0")
        );
        let s = pb::GpuSample::from(Sample {
            index: 1,
            utilization_percent: 50.0,
            memory_used_bytes: 7,
            temperature_c: 60.0,
            power_w: 300.5,
        });
        assert_eq!(
            (
                s.index,
                s.utilization_percent,
                s.memory_used_bytes,
                s.temperature_c,
                s.power_w
            ),
            (1, 50.0, 7, 60.0, 300.5)
        );
    }
}

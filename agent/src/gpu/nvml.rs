//! NVML through `nvml-wrapper`, which loads `libnvidia-ml.so.1` at run
//! time: on a host without the driver, `open` finds nothing and the agent
//! goes on without GPUs. NVML calls block (they talk to the driver), so
//! each read runs on the blocking pool.

use std::ffi::OsStr;
use std::sync::Arc;

use async_trait::async_trait;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use tracing::{debug, info, warn};

use super::{Device, GpuSource, Sample};

/// `NVML_DEVICE_MIG_ENABLE` of nvml.h.
const MIG_ENABLED: u32 = 1;

/// A loaded, initialised NVML.
#[derive(Clone)]
pub struct NvmlSource {
    nvml: Arc<Nvml>,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NvmlSource")
    }
}

impl NvmlSource {
    /// NVML from the driver's usual library, or None (a debug line says
    /// why) where it does not load or initialise.
    pub async fn open() -> Option<Self> {
        Self::open_with(None).await
    }

    /// `lib`: a library path other than the default, for tests.
    pub async fn open_with(lib: Option<std::path::PathBuf>) -> Option<Self> {
        let loaded = tokio::task::spawn_blocking(move || match &lib {
            Some(path) => Nvml::builder().lib_path(OsStr::new(path)).init(),
            None => Nvml::init(),
        })
        .await
        .ok()?;
        match loaded {
            Ok(nvml) => {
                let count = nvml.device_count().unwrap_or(0);
                info!(gpus = count, "GPU facts come from NVML");
                Some(NvmlSource {
                    nvml: Arc::new(nvml),
                })
            }
            Err(e) => {
                debug!("NVML is not available ({e}): trying nvidia-smi");
                None
            }
        }
    }

    fn read_devices(nvml: &Nvml) -> Result<Vec<Device>, NvmlError> {
        let driver_version = nvml.sys_driver_version().unwrap_or_default();
        let cuda_version = nvml
            .sys_cuda_driver_version()
            .map(cuda_version)
            .unwrap_or_default();
        let mut devices = Vec::new();
        for index in 0..nvml.device_count()? {
            let device = match nvml.device_by_index(index) {
                Ok(device) => device,
                Err(e) => {
                    // One broken GPU (fallen off the bus) hides only itself.
                    warn!(index, "NVML cannot open this GPU: {e}");
                    continue;
                }
            };
            devices.push(Device {
                index,
                uuid: device.uuid().unwrap_or_default(),
                name: device.name().unwrap_or_default(),
                memory_total_bytes: device.memory_info().map(|m| m.total).unwrap_or(0),
                mig_mode: match device.mig_mode() {
                    Ok(mode) if mode.current == MIG_ENABLED => "enabled".to_string(),
                    Ok(_) => "disabled".to_string(),
                    // NotSupported: a GPU without MIG.
                    Err(_) => String::new(),
                },
                driver_version: driver_version.clone(),
                cuda_version: cuda_version.clone(),
                compute_capability: device
                    .cuda_compute_capability()
                    .map(|c| format!("{}.{}", c.major, c.minor))
                    .unwrap_or_default(),
            });
        }
        Ok(devices)
    }

    fn read_samples(nvml: &Nvml) -> Result<Vec<Sample>, NvmlError> {
        let mut samples = Vec::new();
        for index in 0..nvml.device_count()? {
            let Ok(device) = nvml.device_by_index(index) else {
                continue;
            };
            samples.push(Sample {
                index,
                utilization_percent: device
                    .utilization_rates()
                    .map(|u| f64::from(u.gpu.min(100)))
                    .unwrap_or(0.0),
                memory_used_bytes: device.memory_info().map(|m| m.used).unwrap_or(0),
                temperature_c: device
                    .temperature(TemperatureSensor::Gpu)
                    .map(f64::from)
                    .unwrap_or(0.0),
                // NVML counts milliwatts.
                power_w: device
                    .power_usage()
                    .map(|mw| f64::from(mw) / 1000.0)
                    .unwrap_or(0.0),
            });
        }
        Ok(samples)
    }
}

/// NVML's CUDA driver version (`12040`) as people write it (`12.4`).
fn cuda_version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

#[async_trait]
impl GpuSource for NvmlSource {
    fn kind(&self) -> &'static str {
        "nvml"
    }

    async fn devices(&self) -> Vec<Device> {
        let nvml = self.nvml.clone();
        match tokio::task::spawn_blocking(move || Self::read_devices(&nvml)).await {
            Ok(Ok(devices)) => devices,
            Ok(Err(e)) => {
                warn!("NVML cannot list the GPUs: {e}");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    async fn samples(&self) -> Vec<Sample> {
        let nvml = self.nvml.clone();
        match tokio::task::spawn_blocking(move || Self::read_samples(&nvml)).await {
            Ok(Ok(samples)) => samples,
            Ok(Err(e)) => {
                debug!("NVML cannot sample the GPUs: {e}");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_library_is_no_nvml_and_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("libnvidia-ml.so.1");
        assert!(NvmlSource::open_with(Some(lib.clone())).await.is_none());
        // Nor a file that is no library.
        std::fs::write(&lib, "not an ELF").unwrap();
        assert!(NvmlSource::open_with(Some(lib)).await.is_none());
    }

    #[test]
    fn cuda_driver_versions_read_as_major_minor() {
        assert_eq!(cuda_version(12040), "12.4");
        assert_eq!(cuda_version(11080), "11.8");
        assert_eq!(cuda_version(12000), "12.0");
    }
}

//! Test-only GPU facts: `convoy-agent run --gpu-facts-file PATH` (or
//! `CONVOY_GPU_FACTS_FILE`) reads a JSON list of GPUs instead of asking a
//! driver, so GPU nodes can be faked on machines without one. Each entry is
//! a `Device`, plus optional live figures reported with every heartbeat:
//!
//! ```json
//! [{"index": 0, "uuid": "GPU-0", "name": "NVIDIA H100 80GB HBM3",
//!   "memory_total_bytes": 85520809984, "utilization_percent": 40}]
//! ```
//!
//! The file is read again for each call, so a test may change the figures.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;
use tracing::warn;

use super::{Device, GpuSource, Sample};

/// Larger files are refused: a list of GPUs is small.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    index: u32,
    uuid: String,
    name: String,
    #[serde(default)]
    memory_total_bytes: u64,
    #[serde(default)]
    mig_mode: String,
    #[serde(default)]
    driver_version: String,
    #[serde(default)]
    cuda_version: String,
    #[serde(default)]
    compute_capability: String,
    #[serde(default)]
    utilization_percent: f64,
    #[serde(default)]
    memory_used_bytes: u64,
    #[serde(default)]
    temperature_c: f64,
    #[serde(default)]
    power_w: f64,
}

impl Entry {
    fn split(self) -> (Device, Sample) {
        let Entry {
            index,
            uuid,
            name,
            memory_total_bytes,
            mig_mode,
            driver_version,
            cuda_version,
            compute_capability,
            utilization_percent,
            memory_used_bytes,
            temperature_c,
            power_w,
        } = self;
        (
            Device {
                index,
                uuid,
                name,
                memory_total_bytes,
                mig_mode,
                driver_version,
                cuda_version,
                compute_capability,
            },
            Sample {
                index,
                utilization_percent,
                memory_used_bytes,
                temperature_c,
                power_w,
            },
        )
    }
}

/// GPUs read from a JSON file.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    pub fn new(path: PathBuf) -> Self {
        FileSource { path }
    }

    /// The file's entries; an unreadable or malformed file is no GPU, and
    /// a warning naming the file.
    async fn read(&self) -> Vec<(Device, Sample)> {
        match self.try_read().await {
            Ok(entries) => entries,
            Err(e) => {
                warn!(path = %self.path.display(), "GPU facts file: {e}; reporting no GPUs");
                Vec::new()
            }
        }
    }

    async fn try_read(&self) -> Result<Vec<(Device, Sample)>, String> {
        let meta = tokio::fs::metadata(&self.path)
            .await
            .map_err(|e| e.to_string())?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!("{} bytes, more than {MAX_FILE_BYTES}", meta.len()));
        }
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| e.to_string())?;
        parse(&text)
    }
}

/// The entries of a facts file, in index order.
fn parse(text: &str) -> Result<Vec<(Device, Sample)>, String> {
    let entries: Vec<Entry> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON list of GPUs: {e}"))?;
    let mut out: Vec<(Device, Sample)> = entries.into_iter().map(Entry::split).collect();
    out.sort_by_key(|(d, _)| d.index);
    Ok(out)
}

#[async_trait]
impl GpuSource for FileSource {
    fn kind(&self) -> &'static str {
        "file"
    }
    async fn devices(&self) -> Vec<Device> {
        self.read().await.into_iter().map(|(d, _)| d).collect()
    }
    async fn samples(&self) -> Vec<Sample> {
        self.read().await.into_iter().map(|(_, s)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"[
      {"index": 1, "uuid": "GPU-b", "name": "NVIDIA H100 80GB HBM3",
       "memory_total_bytes": 85520809984, "mig_mode": "disabled",
       "driver_version": "550.54.15", "cuda_version": "12.4",
       "compute_capability": "9.0", "utilization_percent": 87.5,
       "memory_used_bytes": 1073741824, "temperature_c": 66, "power_w": 512.25},
      {"index": 0, "uuid": "GPU-a", "name": "NVIDIA H100 80GB HBM3"}
    ]"#;

    #[tokio::test]
    async fn the_file_gives_devices_and_samples_in_index_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gpus.json");
        std::fs::write(&path, TWO).unwrap();
        let source = FileSource::new(path.clone());
        let devices = source.devices().await;
        assert_eq!(
            devices.iter().map(|d| d.uuid.as_str()).collect::<Vec<_>>(),
            ["GPU-a", "GPU-b"]
        );
        assert_eq!(devices[1].memory_total_bytes, 85_520_809_984);
        assert_eq!(devices[1].compute_capability, "9.0");
        assert_eq!(devices[0].mig_mode, "");
        let samples = source.samples().await;
        assert_eq!(
            samples[0],
            Sample {
                index: 0,
                ..Sample::default()
            }
        );
        assert_eq!(
            samples[1],
            Sample {
                index: 1,
                utilization_percent: 87.5,
                memory_used_bytes: 1 << 30,
                temperature_c: 66.0,
                power_w: 512.25,
            }
        );
        // Read again each time: a test may change the figures.
        std::fs::write(&path, "[]").unwrap();
        assert!(source.samples().await.is_empty());
    }

    #[tokio::test]
    async fn a_missing_or_malformed_file_is_no_gpu() {
        let dir = tempfile::tempdir().unwrap();
        let missing = FileSource::new(dir.path().join("none.json"));
        assert!(missing.devices().await.is_empty());
        let path = dir.path().join("bad.json");
        std::fs::write(
            &path,
            r#"[{"index": 0, "uuid": "GPU-a", "name": "x", "colour": 1}]"#,
        )
        .unwrap();
        assert!(parse(&std::fs::read_to_string(&path).unwrap())
            .unwrap_err()
            .contains("unknown field `colour`"));
        assert!(FileSource::new(path).devices().await.is_empty());
    }
}

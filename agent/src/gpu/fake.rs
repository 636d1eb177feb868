//! A recording GPU source for unit tests: it answers what the test put in
//! and counts the reads, so a test can check when the agent asks.

use std::sync::Mutex;

use async_trait::async_trait;

use super::{Device, GpuSource, Sample};

#[derive(Debug, Default)]
pub struct FakeGpus {
    pub devices: Vec<Device>,
    pub samples: Vec<Sample>,
    /// "devices" or "samples", one per read, in order.
    pub calls: Mutex<Vec<&'static str>>,
}

impl FakeGpus {
    /// `n` GPUs named `model`, each with a sample at `n * 10` % busy.
    pub fn with(n: u32, model: &str) -> Self {
        FakeGpus {
            devices: (0..n)
                .map(|index| Device {
                    index,
                    uuid: format!("GPU-fake-{index}"),
                    name: model.to_string(),
                    memory_total_bytes: 80 << 30,
                    mig_mode: "disabled".into(),
                    driver_version: "550.54.15".into(),
                    cuda_version: "12.4".into(),
                    compute_capability: "9.0".into(),
                })
                .collect(),
            samples: (0..n)
                .map(|index| Sample {
                    index,
                    utilization_percent: f64::from(index * 10),
                    memory_used_bytes: u64::from(index) << 30,
                    temperature_c: 40.0,
                    power_w: 100.0,
                })
                .collect(),
            calls: Mutex::default(),
        }
    }

    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl GpuSource for FakeGpus {
    fn kind(&self) -> &'static str {
        "fake"
    }
    async fn devices(&self) -> Vec<Device> {
        self.calls.lock().unwrap().push("devices");
        self.devices.clone()
    }
    async fn samples(&self) -> Vec<Sample> {
        self.calls.lock().unwrap().push("samples");
        self.samples.clone()
    }
}

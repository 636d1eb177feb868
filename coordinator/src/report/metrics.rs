//! A host's and its GPUs' figures, from a heartbeat.

/// A host's metrics from a heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostMetrics {
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub containers: u32,
    /// One per GPU of the node's facts, at most `state::MAX_GPUS`.
    pub gpus: Vec<GpuSample>,
}

/// A GPU's figures from a heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuSample {
    pub index: u32,
    /// 0-100.
    pub utilization_percent: f64,
    pub memory_used_bytes: u64,
    pub temperature_c: f64,
    pub power_w: f64,
}

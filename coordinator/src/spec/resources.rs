//! A service's resources: Compose's `deploy.resources` (`limits`,
//! `reservations`) and the older service keys that say the same (`cpus`,
//! `mem_limit`, `mem_reservation`, `pids_limit`), with `shm_size` and
//! `ulimits`. Docker enforces the limits; placement counts the
//! reservations against what a node has.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a service's containers may use, and what placement sets aside for
/// each. Zero means "not set" throughout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesSpec {
    /// CPUs in billionths (`cpus: 0.5` is 500,000,000), Docker's NanoCpus.
    pub cpu_limit_nanos: u64,
    pub memory_limit_bytes: u64,
    pub pids_limit: u64,
    /// Set aside by placement; not a limit.
    pub cpu_reservation_nanos: u64,
    /// Set aside by placement, and Docker's soft limit.
    pub memory_reservation_bytes: u64,
    /// `/dev/shm` (0: Docker's 64 MiB).
    pub shm_size_bytes: u64,
    /// `ulimits`, by name (`nofile`, `nproc`, ...).
    pub ulimits: BTreeMap<String, Ulimit>,
    /// NVIDIA GPUs (`deploy.resources.reservations.devices`, `gpus:`):
    /// placement assigns each instance GPUs of its node by UUID. Left out
    /// of stored specs without it, so their hashes stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<GpuRequest>,
}

/// What one instance asks of its node's NVIDIA GPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuRequest {
    pub devices: GpuDevices,
    /// The NVIDIA driver capabilities the container gets (`gpu` always,
    /// `compute`, `utility`, ...), sorted.
    pub capabilities: Vec<String>,
    /// `x-convoy.gpu_sharing: true`: its instances may share GPUs with the
    /// instances of other services that opted in too (never with one that
    /// did not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

/// Which GPUs: `count: N`, `count: all` (or no count), `device_ids: [...]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuDevices {
    Count(u32),
    /// Every GPU of the node.
    All,
    /// These GPUs of the node, by index (`"0"`) or UUID (`"GPU-…"`).
    Ids(Vec<String>),
}

impl GpuRequest {
    /// How the request reads in a pending reason: "2 GPUs", "every GPU of
    /// a node", "GPUs 0, 1".
    pub fn describe(&self) -> String {
        match &self.devices {
            GpuDevices::Count(1) => "1 GPU".to_owned(),
            GpuDevices::Count(n) => format!("{n} GPUs"),
            GpuDevices::All => "every GPU of a node".to_owned(),
            GpuDevices::Ids(ids) => format!("GPU {}", ids.join(", ")),
        }
    }
}

/// The capabilities NVIDIA's container runtime knows
/// (`NVIDIA_DRIVER_CAPABILITIES`).
pub(crate) const GPU_CAPABILITIES: &[&str] = &[
    "gpu", "compute", "utility", "graphics", "video", "display", "compat32",
];

/// One `ulimits` entry: `nofile: 65535` sets both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

impl ResourcesSpec {
    /// Whether nothing is set (the field is then left out of stored specs).
    pub fn is_empty(&self) -> bool {
        *self == ResourcesSpec::default()
    }
}

/// `cpus` as billionths of a CPU: `0.5`, `2`, `1.25` (at most 9 decimals).
pub(crate) fn parse_cpus(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid CPU count `{text}`: write e.g. `0.5` or `2`");
    let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 9
    {
        return Err(invalid());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid())?
    };
    let frac_nanos: u64 = format!("{frac:0<9}").parse().map_err(|_| invalid())?;
    let nanos = whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(invalid)?;
    if nanos == 0 {
        return Err(format!("invalid CPU count `{text}`: must be more than 0"));
    }
    Ok(nanos)
}

/// A size as Compose writes it: `512m`, `1g`, `1.5GB`, `64kib`, `2048`
/// (bytes); units are powers of 1024, as Docker reads them.
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size `{text}`: write e.g. `512m`, `1g` or a number of bytes");
    let t = text.trim().to_ascii_lowercase();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let unit = unit.trim_start();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(invalid()),
    };
    if number.is_empty() || number.matches('.').count() > 1 {
        return Err(invalid());
    }
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let bytes = value * factor as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(invalid());
    }
    Ok(bytes as u64)
}

/// The ulimits Docker knows.
const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

pub(crate) fn check_ulimit_name(name: &str) -> Result<(), String> {
    if ULIMITS.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown ulimit `{name}`: expected one of {}",
            ULIMITS.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_are_read_exactly() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus("1.25"), Ok(1_250_000_000));
        assert_eq!(parse_cpus(".1"), Ok(100_000_000));
        assert_eq!(parse_cpus("0.000000001"), Ok(1));
        assert!(parse_cpus("0").unwrap_err().contains("more than 0"));
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("1.2.3").is_err());
        assert!(parse_cpus("half").is_err());
        assert!(parse_cpus("0.0000000001").is_err());
    }

    #[test]
    fn sizes_are_read_as_docker_does() {
        assert_eq!(parse_bytes("2048"), Ok(2048));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("1GB"), Ok(1 << 30));
        assert_eq!(parse_bytes("64kib"), Ok(64 << 10));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("1x").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn only_known_ulimits() {
        assert!(check_ulimit_name("nofile").is_ok());
        assert!(check_ulimit_name("files")
            .unwrap_err()
            .starts_with("unknown ulimit `files`: expected one of core, cpu"));
    }
}

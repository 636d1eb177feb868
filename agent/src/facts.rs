//! What the agent tells the coordinator about its host: static facts for
//! `Hello` (OS, CPUs, memory, Docker version, labels, GPUs) and the live
//! metrics of each heartbeat, read from /proc, statvfs and the GPU source
//! (`crate::gpu`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use convoy_proto::{HostMetrics, NodeFacts, SwarmFacts};

use crate::gpu::{self, Gpus};
use crate::runtime::Runtime;

/// How long the Docker version (or Swarm state) may take before it is
/// reported empty.
const VERSION_TIMEOUT: Duration = Duration::from_secs(3);

/// The host's facts. Anything unreadable is left empty rather than failing.
pub async fn collect<R: Runtime>(
    runtime: &R,
    labels: &BTreeMap<String, String>,
    allowed_binds: &[String],
) -> NodeFacts {
    let hostname = read_trimmed("/proc/sys/kernel/hostname").await;
    let kernel = read_trimmed("/proc/sys/kernel/osrelease").await;
    let os = tokio::fs::read_to_string("/etc/os-release")
        .await
        .map(|text| pretty_name(&text))
        .unwrap_or_default();
    let memory_bytes = tokio::fs::read_to_string("/proc/meminfo")
        .await
        .ok()
        .and_then(|text| meminfo_bytes(&text, "MemTotal"))
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(0);
    let docker_version = match tokio::time::timeout(VERSION_TIMEOUT, runtime.version()).await {
        Ok(Ok(version)) => version,
        _ => String::new(),
    };
    let swarm = swarm(runtime).await.unwrap_or(None);
    NodeFacts {
        hostname,
        os,
        kernel,
        arch: std::env::consts::ARCH.to_string(),
        cpus,
        memory_bytes,
        docker_version,
        labels: labels.clone(),
        platform_os: std::env::consts::OS.to_string(),
        allowed_bind_paths: allowed_binds.to_vec(),
        // Set by the session, which holds the grants and the GPU source.
        allowed_host_access: Vec::new(),
        gpus: Vec::new(),
        swarm,
    }
}

/// The engine's Swarm membership (`Ok(None)`: in no swarm), or `None` when
/// the engine did not answer in time.
pub async fn swarm<R: Runtime>(runtime: &R) -> Option<Option<SwarmFacts>> {
    match tokio::time::timeout(VERSION_TIMEOUT, runtime.swarm()).await {
        Ok(Ok(swarm)) => Some(swarm),
        _ => None,
    }
}

/// How far apart the two CPU samples of the first heartbeat are.
const FIRST_CPU_WINDOW: Duration = Duration::from_millis(100);

/// Reads the live metrics of each heartbeat; keeps the previous CPU sample,
/// since CPU use is a share of the time between two heartbeats.
#[derive(Debug)]
pub struct HostSampler {
    data_dir: PathBuf,
    cpu: Option<CpuSample>,
    gpus: Gpus,
}

impl HostSampler {
    /// Disk figures are of the filesystem holding `data_dir`; no GPUs.
    pub fn new(data_dir: PathBuf) -> Self {
        HostSampler {
            data_dir,
            cpu: None,
            gpus: gpu::none(),
        }
    }

    /// GPU figures from `gpus`.
    pub fn with_gpus(mut self, gpus: Gpus) -> Self {
        self.gpus = gpus;
        self
    }

    /// The GPUs' static facts, for `NodeFacts.gpus` (read at each Hello).
    pub async fn gpu_devices(&self) -> Vec<convoy_proto::GpuDevice> {
        self.gpus
            .devices()
            .await
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// Load, CPU, memory and disk now, plus the managed container count the
    /// caller knows. Anything unreadable is reported as 0.
    pub async fn sample(&mut self, containers: u32) -> HostMetrics {
        let (load1, load5, load15) = tokio::fs::read_to_string("/proc/loadavg")
            .await
            .ok()
            .and_then(|text| parse_loadavg(&text))
            .unwrap_or_default();
        let meminfo = tokio::fs::read_to_string("/proc/meminfo")
            .await
            .unwrap_or_default();
        let total = meminfo_bytes(&meminfo, "MemTotal").unwrap_or(0);
        let available = meminfo_bytes(&meminfo, "MemAvailable").unwrap_or(total);
        let previous = match self.cpu {
            Some(previous) => Some(previous),
            None => {
                let first = read_cpu().await;
                tokio::time::sleep(FIRST_CPU_WINDOW).await;
                first
            }
        };
        let now = read_cpu().await;
        let cpu_percent = match (previous, now) {
            (Some(previous), Some(now)) => cpu_percent(previous, now),
            _ => 0.0,
        };
        self.cpu = now;
        let dir = self.data_dir.clone();
        let (disk_used_bytes, disk_total_bytes) =
            tokio::task::spawn_blocking(move || disk_usage(&dir))
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
        let gpus = self
            .gpus
            .samples()
            .await
            .into_iter()
            .map(Into::into)
            .collect();
        HostMetrics {
            load1,
            memory_used_bytes: total.saturating_sub(available),
            memory_total_bytes: total,
            containers,
            cpu_percent,
            disk_used_bytes,
            disk_total_bytes,
            load5,
            load15,
            gpus,
        }
    }
}

/// The three load averages of `/proc/loadavg`.
fn parse_loadavg(text: &str) -> Option<(f64, f64, f64)> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some((fields.next()??, fields.next()??, fields.next()??))
}

/// CPU time counters of all CPUs, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CpuSample {
    busy: u64,
    total: u64,
}

async fn read_cpu() -> Option<CpuSample> {
    let text = tokio::fs::read_to_string("/proc/stat").await.ok()?;
    parse_cpu(&text)
}

/// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq
/// steal (guest time is already counted in user and nice).
fn parse_cpu(stat: &str) -> Option<CpuSample> {
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    if values.len() < 4 {
        return None;
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some(CpuSample {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// The busy share of all CPUs between two samples, 0-100.
fn cpu_percent(previous: CpuSample, now: CpuSample) -> f64 {
    let total = now.total.saturating_sub(previous.total);
    if total == 0 {
        return 0.0;
    }
    let busy = now.busy.saturating_sub(previous.busy).min(total);
    (busy as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
}

/// Used and total bytes of the filesystem holding `path`, as `df` counts
/// them (used = blocks - free blocks).
fn disk_usage(path: &Path) -> Option<(u64, u64)> {
    let stat = rustix::fs::statvfs(path).ok()?;
    let total = stat.f_blocks.checked_mul(stat.f_frsize)?;
    let free = stat.f_bfree.checked_mul(stat.f_frsize)?;
    Some((total.saturating_sub(free), total))
}

async fn read_trimmed(path: &str) -> String {
    tokio::fs::read_to_string(path)
        .await
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `PRETTY_NAME` of an os-release file, unquoted.
fn pretty_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .unwrap_or_default()
}

/// A `/proc/meminfo` field in bytes (the file counts in kB).
fn meminfo_bytes(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        kb.checked_mul(1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;

    #[test]
    fn pretty_name_is_read_unquoted() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(pretty_name(text), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(pretty_name("ID=x\n"), "");
    }

    #[test]
    fn meminfo_fields_are_converted_to_bytes() {
        let text = "MemTotal:        2048 kB\nMemFree:  10 kB\nMemAvailable:    1024 kB\n";
        assert_eq!(meminfo_bytes(text, "MemTotal"), Some(2048 * 1024));
        assert_eq!(meminfo_bytes(text, "MemAvailable"), Some(1024 * 1024));
        assert_eq!(meminfo_bytes(text, "Mem"), None);
        assert_eq!(meminfo_bytes("MemTotal: lots kB", "MemTotal"), None);
    }

    #[test]
    fn loadavg_gives_three_averages() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/389 12345\n"),
            Some((0.52, 0.58, 0.59))
        );
        assert_eq!(parse_loadavg("0.52 0.58"), None);
        assert_eq!(parse_loadavg("a b c"), None);
    }

    #[test]
    fn cpu_line_counts_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 20 30 800 50 0 0 0 7 0\ncpu0 50 10 15 400 25 0 0 0 0 0\nintr 1\n";
        assert_eq!(
            parse_cpu(stat),
            Some(CpuSample {
                busy: 150,
                total: 1000
            })
        );
        assert_eq!(parse_cpu("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_cpu("cpu  x 2 3 4\n"), None);
    }

    #[test]
    fn cpu_percent_is_the_busy_share_between_samples() {
        let a = CpuSample {
            busy: 150,
            total: 1000,
        };
        let b = CpuSample {
            busy: 200,
            total: 1200,
        };
        assert_eq!(cpu_percent(a, b), 25.0);
        assert_eq!(cpu_percent(a, a), 0.0);
        // Counters that went backwards (a reset) do not give nonsense.
        assert_eq!(cpu_percent(b, a), 0.0);
    }

    #[test]
    fn disk_usage_of_the_data_dir_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (used, total) = disk_usage(dir.path()).unwrap();
        assert!(total > 0 && used <= total, "{used} of {total}");
        assert_eq!(disk_usage(Path::new("/no/such/dir")), None);
    }

    #[tokio::test]
    async fn heartbeat_metrics_are_filled_in() {
        let dir = tempfile::tempdir().unwrap();
        let mut sampler = HostSampler::new(dir.path().to_path_buf());
        let first = sampler.sample(3).await;
        assert_eq!(first.containers, 3);
        assert!(first.memory_total_bytes > 0);
        assert!(first.memory_used_bytes <= first.memory_total_bytes);
        assert!(first.disk_total_bytes > 0);
        assert!((0.0..=100.0).contains(&first.cpu_percent));
        let second = sampler.sample(3).await;
        assert!((0.0..=100.0).contains(&second.cpu_percent));
    }

    #[tokio::test]
    async fn facts_carry_labels_and_docker_version() {
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let facts = collect(&FakeRuntime::default(), &labels, &[]).await;
        assert_eq!(facts.labels, labels);
        assert_eq!(facts.docker_version, "20.10-fake");
        assert_eq!(facts.arch, std::env::consts::ARCH);
        assert!(facts.cpus >= 1);
    }

    #[tokio::test]
    async fn gpu_facts_and_samples_come_from_the_gpu_source() {
        let dir = tempfile::tempdir().unwrap();
        let fake =
            std::sync::Arc::new(crate::gpu::fake::FakeGpus::with(2, "NVIDIA H100 80GB HBM3"));
        let mut sampler = HostSampler::new(dir.path().to_path_buf()).with_gpus(fake.clone());
        let devices = sampler.gpu_devices().await;
        assert_eq!(
            devices
                .iter()
                .map(|d| (d.index, d.uuid.as_str()))
                .collect::<Vec<_>>(),
            [(0, "GPU-fake-0"), (1, "GPU-fake-1")]
        );
        assert_eq!(devices[1].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(devices[1].memory_total_bytes, 80 << 30);
        assert_eq!(devices[1].compute_capability, "9.0");
        let metrics = sampler.sample(0).await;
        assert_eq!(metrics.gpus.len(), 2);
        assert_eq!(metrics.gpus[1].utilization_percent, 10.0);
        assert_eq!(metrics.gpus[1].memory_used_bytes, 1 << 30);
        // Facts once per Hello, a sample with every heartbeat.
        sampler.sample(0).await;
        assert_eq!(fake.calls(), ["devices", "samples", "samples"]);
        // A node without GPUs reports none.
        let plain = HostSampler::new(dir.path().to_path_buf());
        assert!(plain.gpu_devices().await.is_empty());
    }

    #[tokio::test]
    async fn unreachable_docker_leaves_the_version_empty() {
        let fake = FakeRuntime::default();
        fake.lock().unreachable = Some("no socket".into());
        let facts = collect(&fake, &BTreeMap::new(), &[]).await;
        assert_eq!(facts.docker_version, "");
    }
}

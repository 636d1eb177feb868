//! What the agent tells the coordinator about its host: static facts for
//! `Hello` (OS, CPUs, memory, Docker version, labels) and the live metrics of
//! each heartbeat, read from /proc.

use std::collections::BTreeMap;
use std::time::Duration;

use convoy_proto::{HostMetrics, NodeFacts};

use crate::runtime::Runtime;

/// How long the Docker version may take before it is reported empty.
const VERSION_TIMEOUT: Duration = Duration::from_secs(3);

/// The host's facts. Anything unreadable is left empty rather than failing.
pub async fn collect<R: Runtime>(runtime: &R, labels: &BTreeMap<String, String>) -> NodeFacts {
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
    }
}

/// Load and memory now, plus the managed container count the caller knows.
pub async fn host_metrics(containers: u32) -> HostMetrics {
    let load1 = tokio::fs::read_to_string("/proc/loadavg")
        .await
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let meminfo = tokio::fs::read_to_string("/proc/meminfo")
        .await
        .unwrap_or_default();
    let total = meminfo_bytes(&meminfo, "MemTotal").unwrap_or(0);
    let available = meminfo_bytes(&meminfo, "MemAvailable").unwrap_or(total);
    HostMetrics {
        load1,
        memory_used_bytes: total.saturating_sub(available),
        memory_total_bytes: total,
        containers,
    }
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

    #[tokio::test]
    async fn facts_carry_labels_and_docker_version() {
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let facts = collect(&FakeRuntime::default(), &labels).await;
        assert_eq!(facts.labels, labels);
        assert_eq!(facts.docker_version, "20.10-fake");
        assert_eq!(facts.arch, std::env::consts::ARCH);
        assert!(facts.cpus >= 1);
    }

    #[tokio::test]
    async fn unreachable_docker_leaves_the_version_empty() {
        let fake = FakeRuntime::default();
        fake.lock().unreachable = Some("no socket".into());
        let facts = collect(&fake, &BTreeMap::new()).await;
        assert_eq!(facts.docker_version, "");
    }
}

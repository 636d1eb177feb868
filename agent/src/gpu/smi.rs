//! `nvidia-smi`, the fallback where NVML does not load: one CSV query for
//! the facts, one per heartbeat for the figures. Each run has a few seconds
//! and a bounded output; one that fails, hangs or is missing is no GPU.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tracing::debug;

use super::{Device, GpuSource, Sample};

/// How long one `nvidia-smi` run may take (it can hang on a wedged GPU).
const TIMEOUT: Duration = Duration::from_secs(4);
/// Most output read from one run: ample for 16 GPUs' rows.
const MAX_OUTPUT: u64 = 64 * 1024;
const MIB: u64 = 1024 * 1024;

/// The facts query; `compute_cap` needs driver 510 or later, so without it
/// the query is tried again without that column.
pub const FACTS_QUERY: &str =
    "index,uuid,name,memory.total,mig.mode.current,driver_version,compute_cap";
const FACTS_QUERY_OLD: &str = "index,uuid,name,memory.total,mig.mode.current,driver_version";
/// The figures of each heartbeat.
pub const SAMPLES_QUERY: &str = "index,utilization.gpu,memory.used,temperature.gpu,power.draw";

/// Runs `program` (`nvidia-smi` on the PATH by default).
#[derive(Debug, Clone)]
pub struct NvidiaSmi {
    program: PathBuf,
    timeout: Duration,
}

impl Default for NvidiaSmi {
    fn default() -> Self {
        NvidiaSmi {
            program: PathBuf::from("nvidia-smi"),
            timeout: TIMEOUT,
        }
    }
}

impl NvidiaSmi {
    pub fn with_program(program: PathBuf, timeout: Duration) -> Self {
        NvidiaSmi { program, timeout }
    }

    /// Whether it runs and lists at least one GPU.
    pub async fn available(&self) -> bool {
        self.query("index")
            .await
            .is_some_and(|out| !out.trim().is_empty())
    }

    async fn query(&self, fields: &str) -> Option<String> {
        self.run(&[
            &format!("--query-gpu={fields}"),
            "--format=csv,noheader,nounits",
        ])
        .await
    }

    /// Its standard output, or None (logged) when it cannot be started,
    /// fails or takes longer than the timeout, which kills it.
    async fn run(&self, args: &[&str]) -> Option<String> {
        let program = self.program.display().to_string();
        let mut child = match Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                debug!("{program}: cannot start: {e}");
                return None;
            }
        };
        let stdout = child.stdout.take()?;
        let work = async {
            let mut out = Vec::new();
            let mut bounded = stdout.take(MAX_OUTPUT);
            bounded.read_to_end(&mut out).await.ok()?;
            // Closed now: a child with more to say gets EPIPE instead of
            // blocking on a full pipe.
            drop(bounded);
            let status = child.wait().await.ok()?;
            if out.len() as u64 >= MAX_OUTPUT {
                // Cut at the last whole line.
                let end = out.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                out.truncate(end);
            }
            Some((status, out))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Some((status, out))) if status.success() => {
                Some(String::from_utf8_lossy(&out).into_owned())
            }
            Ok(Some((status, _))) => {
                debug!("{program} {args:?}: {status}");
                None
            }
            Ok(None) => None,
            Err(_) => {
                debug!("{program} {args:?}: no answer in {:?}", self.timeout);
                None
            }
        }
    }
}

#[async_trait]
impl GpuSource for NvidiaSmi {
    fn kind(&self) -> &'static str {
        "nvidia-smi"
    }

    async fn devices(&self) -> Vec<Device> {
        let mut devices = match self.query(FACTS_QUERY).await {
            Some(out) => parse_devices(&out, true),
            None => match self.query(FACTS_QUERY_OLD).await {
                Some(out) => parse_devices(&out, false),
                None => return Vec::new(),
            },
        };
        // The CUDA version is only in the report's header.
        if !devices.is_empty() {
            let cuda = self
                .run(&["-q", "-d", "COMPUTE"])
                .await
                .and_then(|out| parse_cuda_version(&out))
                .unwrap_or_default();
            for d in &mut devices {
                d.cuda_version.clone_from(&cuda);
            }
        }
        devices
    }

    async fn samples(&self) -> Vec<Sample> {
        self.query(SAMPLES_QUERY)
            .await
            .map(|out| parse_samples(&out))
            .unwrap_or_default()
    }
}

/// A field nvidia-smi could not fill: `[N/A]`, `[Not Supported]`,
/// `[Unknown Error]`, ...
fn missing(field: &str) -> bool {
    field.is_empty() || field.starts_with('[') || field == "N/A"
}

fn text(field: &str) -> String {
    if missing(field) {
        String::new()
    } else {
        field.to_string()
    }
}

fn number(field: &str) -> f64 {
    if missing(field) {
        return 0.0;
    }
    field
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(0.0)
}

/// MiB (what `nounits` memory columns count) to bytes.
fn mib(field: &str) -> u64 {
    (number(field) as u64).saturating_mul(MIB)
}

/// The fields of one CSV row, with a name that holds commas put back
/// together: `name_at` is the name's column, `count` the columns there are.
fn fields(line: &str, name_at: usize, count: usize) -> Option<Vec<String>> {
    let raw: Vec<&str> = line.split(',').map(str::trim).collect();
    if raw.len() < count {
        return None;
    }
    let extra = raw.len() - count;
    let mut out: Vec<String> = raw[..name_at].iter().map(|s| s.to_string()).collect();
    out.push(raw[name_at..=name_at + extra].join(","));
    out.extend(raw[name_at + extra + 1..].iter().map(|s| s.to_string()));
    Some(out)
}

/// The rows of the facts query; `with_cap` when it asked for `compute_cap`.
/// Malformed rows are skipped.
pub fn parse_devices(csv: &str, with_cap: bool) -> Vec<Device> {
    let count = if with_cap { 7 } else { 6 };
    let mut devices: Vec<Device> = csv
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let f = fields(line, 2, count)?;
            Some(Device {
                index: f[0].parse().ok()?,
                uuid: text(&f[1]),
                name: text(&f[2]),
                memory_total_bytes: mib(&f[3]),
                mig_mode: match f[4].to_ascii_lowercase().as_str() {
                    "enabled" => "enabled".to_string(),
                    "disabled" => "disabled".to_string(),
                    _ => String::new(),
                },
                driver_version: text(&f[5]),
                cuda_version: String::new(),
                compute_capability: f.get(6).map(|c| text(c)).unwrap_or_default(),
            })
        })
        .collect();
    devices.sort_by_key(|d| d.index);
    devices
}

/// The rows of the samples query. Malformed rows are skipped.
pub fn parse_samples(csv: &str) -> Vec<Sample> {
    let mut samples: Vec<Sample> = csv
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != 5 {
                return None;
            }
            Some(Sample {
                index: f[0].parse().ok()?,
                utilization_percent: number(f[1]).min(100.0),
                memory_used_bytes: mib(f[2]),
                temperature_c: number(f[3]),
                power_w: number(f[4]),
            })
        })
        .collect();
    samples.sort_by_key(|s| s.index);
    samples
}

/// `CUDA Version : 12.4` of `nvidia-smi -q`.
pub fn parse_cuda_version(report: &str) -> Option<String> {
    report.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "CUDA Version")
            .then(|| text(value.trim()))
            .filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H100_FACTS: &str = include_str!("testdata/h100-8x-facts.csv");
    const A100_FACTS: &str = include_str!("testdata/a100-mig-facts.csv");
    const T4_FACTS: &str = include_str!("testdata/t4-facts.csv");
    const T4_OLD_FACTS: &str = include_str!("testdata/t4-470-facts.csv");
    const H100_SAMPLES: &str = include_str!("testdata/h100-8x-samples.csv");
    const T4_SAMPLES: &str = include_str!("testdata/t4-samples.csv");
    const H100_QUERY: &str = include_str!("testdata/h100-q-compute.txt");

    #[test]
    fn h100_facts_are_parsed() {
        let devices = parse_devices(H100_FACTS, true);
        assert_eq!(devices.len(), 8);
        assert_eq!(
            devices[0],
            Device {
                index: 0,
                uuid: "GPU-5d0a7b21-3c4e-6f10-92ab-0c1d2e3f4a51".into(),
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_total_bytes: 81559 * MIB,
                mig_mode: "disabled".into(),
                driver_version: "550.54.15".into(),
                cuda_version: String::new(),
                compute_capability: "9.0".into(),
            }
        );
        assert_eq!(devices[3].mig_mode, "enabled");
        assert_eq!(
            devices.iter().map(|d| d.index).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a100_mig_modes_are_read() {
        let devices = parse_devices(A100_FACTS, true);
        assert_eq!(
            devices
                .iter()
                .map(|d| (d.name.as_str(), d.mig_mode.as_str(), d.memory_total_bytes))
                .collect::<Vec<_>>(),
            [
                ("NVIDIA A100-SXM4-40GB", "enabled", 40960 * MIB),
                ("NVIDIA A100-SXM4-40GB", "disabled", 40960 * MIB)
            ]
        );
        assert_eq!(devices[0].compute_capability, "8.0");
    }

    #[test]
    fn t4_without_mig_reports_na_as_empty() {
        let devices = parse_devices(T4_FACTS, true);
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].name, "Tesla T4");
        assert_eq!(devices[0].mig_mode, "");
        assert_eq!(devices[0].compute_capability, "7.5");
        assert_eq!(devices[0].memory_total_bytes, 15360 * MIB);
    }

    #[test]
    fn an_old_driver_without_compute_cap_is_read_without_it() {
        let devices = parse_devices(T4_OLD_FACTS, false);
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].driver_version, "470.223.02");
        assert_eq!(devices[0].compute_capability, "");
        // The 7-column parse of 6 columns finds nothing rather than shifting.
        assert!(parse_devices(T4_OLD_FACTS, true).is_empty());
    }

    #[test]
    fn names_with_commas_and_malformed_rows() {
        let csv = "1, GPU-b, Some GPU, rev 2, 1024, [N/A], 1.0, 8.6\n\
                   x, GPU-c, Bad, 1, Disabled, 1.0, 8.6\n\
                   short, row\n\n";
        let devices = parse_devices(csv, true);
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].name, "Some GPU,rev 2");
        assert_eq!(devices[0].memory_total_bytes, 1024 * MIB);
        assert_eq!(devices[0].compute_capability, "8.6");
    }

    #[test]
    fn h100_samples_are_parsed_with_na_as_zero() {
        let samples = parse_samples(H100_SAMPLES);
        assert_eq!(samples.len(), 8);
        assert_eq!(
            samples[0],
            Sample {
                index: 0,
                utilization_percent: 97.0,
                memory_used_bytes: 74312 * MIB,
                temperature_c: 71.0,
                power_w: 687.42,
            }
        );
        // MIG enabled: no utilization.
        assert_eq!(samples[3].utilization_percent, 0.0);
        assert_eq!(samples[3].power_w, 72.55);
        let t4 = parse_samples(T4_SAMPLES);
        assert_eq!(t4[0].power_w, 0.0);
        assert_eq!(t4[0].temperature_c, 38.0);
        assert!(parse_samples("0, -5, NaN, inf, 1\n")
            .iter()
            .all(|s| s.utilization_percent == 0.0 && s.memory_used_bytes == 0));
    }

    #[test]
    fn cuda_version_comes_from_the_report_header() {
        assert_eq!(parse_cuda_version(H100_QUERY).as_deref(), Some("12.4"));
        assert_eq!(parse_cuda_version("CUDA Version : N/A\n"), None);
        assert_eq!(parse_cuda_version("nothing"), None);
    }

    /// A stand-in `nvidia-smi`: a shell script answering each query with a
    /// sample file.
    fn fake_smi(dir: &std::path::Path, body: &str) -> NvidiaSmi {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("nvidia-smi");
        std::fs::write(
            &path,
            format!("#!/bin/sh\n[ \"$1\" = --noop ] && exit 0\n{body}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Another test's fork may briefly hold the file open for writing
        // (ETXTBSY): wait until it runs.
        for _ in 0..100 {
            match std::process::Command::new(&path).arg("--noop").status() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
        NvidiaSmi::with_program(path, Duration::from_secs(2))
    }

    #[tokio::test]
    async fn facts_and_samples_come_from_a_running_nvidia_smi() {
        let dir = tempfile::tempdir().unwrap();
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/src/gpu/testdata");
        let smi = fake_smi(
            dir.path(),
            &format!(
                r#"case "$1" in
  --query-gpu=index) cut -d, -f1 {data}/h100-8x-facts.csv ;;
  --query-gpu={FACTS_QUERY}) cat {data}/h100-8x-facts.csv ;;
  --query-gpu={SAMPLES_QUERY}) cat {data}/h100-8x-samples.csv ;;
  -q) cat {data}/h100-q-compute.txt ;;
  *) echo "unexpected $*" >&2; exit 2 ;;
esac"#
            ),
        );
        assert!(smi.available().await);
        let devices = smi.devices().await;
        assert_eq!(devices.len(), 8);
        assert!(devices.iter().all(|d| d.cuda_version == "12.4"));
        assert_eq!(smi.samples().await.len(), 8);
    }

    #[tokio::test]
    async fn an_old_driver_is_asked_again_without_compute_cap() {
        let dir = tempfile::tempdir().unwrap();
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/src/gpu/testdata");
        let smi = fake_smi(
            dir.path(),
            &format!(
                r#"case "$1" in
  --query-gpu={FACTS_QUERY}) echo 'Field "compute_cap" is not a valid field to query.'; exit 2 ;;
  --query-gpu={FACTS_QUERY_OLD}) cat {data}/t4-470-facts.csv ;;
  *) exit 9 ;;
esac"#
            ),
        );
        let devices = smi.devices().await;
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].name, "Tesla T4");
        assert_eq!(devices[0].cuda_version, "");
    }

    #[tokio::test]
    async fn a_missing_failing_or_hanging_nvidia_smi_is_no_gpu() {
        let dir = tempfile::tempdir().unwrap();
        let missing =
            NvidiaSmi::with_program(dir.path().join("no-such-smi"), Duration::from_secs(1));
        assert!(!missing.available().await);
        assert!(missing.devices().await.is_empty());
        assert!(missing.samples().await.is_empty());

        let failing = fake_smi(dir.path(), "echo 'NVIDIA-SMI has failed'; exit 9");
        assert!(!failing.available().await);
        assert!(failing.devices().await.is_empty());

        let sub = dir.path().join("hang");
        std::fs::create_dir(&sub).unwrap();
        let hanging = NvidiaSmi {
            timeout: Duration::from_millis(300),
            ..fake_smi(&sub, "exec sleep 30")
        };
        let started = std::time::Instant::now();
        assert!(hanging.samples().await.is_empty());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn output_is_read_only_up_to_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        // A megabyte of rows: the first 64 KiB are parsed, the rest dropped.
        let smi = fake_smi(dir.path(), "yes '0, 1, 2, 3, 4' | head -c 1048576; exit 0");
        let samples = smi.samples().await;
        assert!(!samples.is_empty());
        assert!(samples.len() <= (MAX_OUTPUT as usize) / 13 + 1);
    }
}

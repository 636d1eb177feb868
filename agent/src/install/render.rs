//! The unit `install` writes: the template's command line, condition and
//! sandbox filled in for this host, or the drop-in over a packaged unit
//! that says only what differs.

use std::path::Path;

use super::{InstallParams, TEMPLATE, UNIT, WRITTEN_BY};
use crate::units::file::{self, exec_line};

/// What replaces the template's `PrivateDevices=yes` on a host with NVIDIA
/// GPUs (`/dev/nvidiactl` exists when `install` runs): the agent reads its
/// GPUs through NVML or `nvidia-smi`, which open `/dev/nvidiactl` and
/// `/dev/nvidiaN` (and `/dev/nvidia-caps/*` for MIG), and a private `/dev`
/// has none of them. The host's `/dev` is seen, but the device policy
/// lets the agent open the NVIDIA devices and the pseudo devices only
/// (docs/GPU.md).
pub(super) const GPU_DEVICES: [&str; 4] = [
    "PrivateDevices=no",
    "DevicePolicy=closed",
    "DeviceAllow=char-nvidia-frontend rw",
    "DeviceAllow=char-nvidia-caps r",
];
/// The unit's ExecStart line, made from the binary, coordinators,
/// directories and labels (quoted for systemd).
fn exec_start(params: &InstallParams) -> String {
    let mut argv = vec![
        params.binary.display().to_string(),
        "run".to_string(),
        "--coordinator".to_string(),
        params.coordinators.join(","),
        "--pki-dir".to_string(),
        params.pki_dir.display().to_string(),
        "--data-dir".to_string(),
        params.data_dir.display().to_string(),
    ];
    if params.unit_dir != Path::new(file::DEFAULT_UNIT_DIR) {
        argv.push("--unit-dir".to_string());
        argv.push(params.unit_dir.display().to_string());
    }
    for (k, v) in &params.labels {
        argv.push("--label".to_string());
        argv.push(format!("{k}={v}"));
    }
    for root in &params.allow_binds {
        argv.push("--allow-bind".to_string());
        argv.push(root.clone());
    }
    if !params.allow_host_access.is_empty() {
        argv.push("--allow-host-access".to_string());
        argv.push(params.allow_host_access.join(","));
    }
    for (flag, addr) in [
        ("--proxy-listen", params.proxy_listen),
        ("--proxy-tls-listen", params.proxy_tls_listen),
    ] {
        if let Some(addr) = addr {
            argv.push(flag.to_string());
            argv.push(addr.to_string());
        }
    }
    format!("ExecStart={}", exec_line(&argv))
}

/// What replaces the template's empty capability sets when the proxy
/// listens on a port below 1024 (80, 443): the unit's root has no
/// capability at all otherwise, and binding such a port needs this one.
/// Nothing else is given back.
const BIND_LOW_PORTS: [&str; 2] = [
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
];

/// Whether the proxy listens on a port below 1024.
fn binds_low_port(params: &InstallParams) -> bool {
    [params.proxy_listen, params.proxy_tls_listen]
        .into_iter()
        .flatten()
        .any(|a| a.port() < 1024)
}

/// The condition that keeps an agent without a certificate from starting.
fn condition(params: &InstallParams) -> String {
    format!(
        "ConditionPathExists={}",
        params.pki_dir.join(crate::pki::CERT_FILE).display()
    )
}

/// The agent's unit file: the template with its ExecStart line filled in.
pub fn render_unit(params: &InstallParams) -> String {
    let mut out = String::with_capacity(TEMPLATE.len() + 256);
    out.push_str(WRITTEN_BY);
    out.push_str("; `convoy-agent uninstall` removes it.\n");
    for line in TEMPLATE.lines() {
        if line.starts_with("ExecStart=") {
            out.push_str(&exec_start(params));
        } else if line.starts_with("ConditionPathExists=") {
            out.push_str(&condition(params));
        } else if line == "PrivateDevices=yes" && params.gpu_devices {
            out.push_str(&GPU_DEVICES.join("\n"));
        } else if line == "CapabilityBoundingSet=" && binds_low_port(params) {
            out.push_str(BIND_LOW_PORTS[0]);
        } else if line == "AmbientCapabilities=" && binds_low_port(params) {
            out.push_str(BIND_LOW_PORTS[1]);
        } else if line.starts_with("ReadWritePaths=") {
            // The unit directory it writes, wherever that is.
            out.push_str(&format!("ReadWritePaths={}", params.unit_dir.display()));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The drop-in over the packaged unit (which is [`TEMPLATE`] as it is):
/// only what differs on this host.
pub fn render_drop_in(params: &InstallParams) -> String {
    let mut out =
        format!("{WRITTEN_BY} over the packaged {UNIT}; `convoy-agent uninstall` removes it.\n");
    let condition = condition(params);
    if !TEMPLATE.lines().any(|l| l == condition) {
        // An empty assignment resets the packaged unit's conditions.
        out.push_str(&format!("[Unit]\nConditionPathExists=\n{condition}\n\n"));
    }
    // An empty ExecStart= first: a service has one ExecStart, so the
    // packaged one is reset before this one is set.
    out.push_str(&format!("[Service]\nExecStart=\n{}\n", exec_start(params)));
    if params.unit_dir != Path::new(file::DEFAULT_UNIT_DIR) {
        out.push_str(&format!("ReadWritePaths={}\n", params.unit_dir.display()));
    }
    if params.gpu_devices {
        for line in GPU_DEVICES {
            out.push_str(line);
            out.push('\n');
        }
    }
    if binds_low_port(params) {
        // Set after the packaged empty ones, these take their place.
        for line in BIND_LOW_PORTS {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn params(proxy: Option<&str>, tls: Option<&str>) -> InstallParams {
        InstallParams {
            coordinators: vec!["10.0.0.1:7401".to_string()],
            token: "secret".to_string(),
            ca_fingerprint: "sha256:00".to_string(),
            node_name: "edge-1".to_string(),
            labels: Vec::new(),
            allow_binds: Vec::new(),
            allow_host_access: Vec::new(),
            binary: PathBuf::from("/usr/local/bin/convoy-agent"),
            pki_dir: PathBuf::from(super::super::DEFAULT_PKI_DIR),
            data_dir: PathBuf::from(super::super::DEFAULT_DATA_DIR),
            unit_dir: PathBuf::from(file::DEFAULT_UNIT_DIR),
            gpu_devices: false,
            proxy_listen: proxy.map(|a| a.parse().unwrap()),
            proxy_tls_listen: tls.map(|a| a.parse().unwrap()),
        }
    }

    #[test]
    fn a_proxy_on_low_ports_gets_the_bind_capability_and_nothing_more() {
        let unit = render_unit(&params(Some("0.0.0.0:80"), Some("0.0.0.0:443")));
        let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(
            exec.ends_with("--proxy-listen 0.0.0.0:80 --proxy-tls-listen 0.0.0.0:443"),
            "{exec}"
        );
        let caps: Vec<&str> = unit
            .lines()
            .filter(|l| {
                l.starts_with("CapabilityBoundingSet=") || l.starts_with("AmbientCapabilities=")
            })
            .collect();
        assert_eq!(caps, BIND_LOW_PORTS);
        // The rest of the sandbox is the template's.
        assert_eq!(unit.lines().count(), TEMPLATE.lines().count() + 1);
        let drop_in = render_drop_in(&params(Some("[::]:80"), None));
        assert!(
            drop_in.contains("--proxy-listen \"[::]:80\"\n"),
            "{drop_in}"
        );
        for line in BIND_LOW_PORTS {
            assert!(drop_in.lines().any(|l| l == line), "{drop_in}");
        }
    }

    #[test]
    fn a_proxy_on_high_ports_or_none_keeps_no_capability() {
        for p in [
            params(Some("0.0.0.0:8080"), Some("0.0.0.0:8443")),
            params(None, None),
        ] {
            let unit = render_unit(&p);
            assert!(
                unit.lines().any(|l| l == "CapabilityBoundingSet="),
                "{unit}"
            );
            assert!(unit.lines().any(|l| l == "AmbientCapabilities="), "{unit}");
            assert!(!render_drop_in(&p).contains("CAP_"));
        }
        let exec = render_unit(&params(None, None));
        assert!(!exec.contains("--proxy"), "{exec}");
    }
}

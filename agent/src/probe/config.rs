//! A probe of the plan with its defaults applied.

use std::time::Duration;

use convoy_proto::{probe, ExecProbe, HttpProbe, Probe, TcpProbe};

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;

/// A probe with the defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    pub name: String,
    pub check: Check,
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub start_period: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    Http {
        port: u16,
        path: String,
        expect_status: u16,
    },
    Tcp {
        port: u16,
    },
    Exec {
        command: Vec<String>,
    },
    /// A probe the plan got wrong: it fails with this reason every time.
    Invalid(String),
}

impl ProbeConfig {
    pub fn from_proto(probe: &Probe) -> Self {
        let Probe {
            name,
            interval_ms,
            timeout_ms,
            failure_threshold,
            success_threshold,
            start_period_ms,
            check,
        } = probe;
        let or = |ms: u64, default: Duration| {
            if ms == 0 {
                default
            } else {
                Duration::from_millis(ms)
            }
        };
        let port = |port: u32| {
            u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("port {port} is out of range 1-65535"))
        };
        let check = match check {
            Some(probe::Check::Http(HttpProbe {
                port: p,
                path,
                expect_status,
            })) => match port(*p) {
                Ok(port) => Check::Http {
                    port,
                    path: if path.is_empty() {
                        "/".to_string()
                    } else {
                        path.clone()
                    },
                    expect_status: u16::try_from(*expect_status).unwrap_or(u16::MAX),
                },
                Err(e) => Check::Invalid(e),
            },
            Some(probe::Check::Tcp(TcpProbe { port: p })) => match port(*p) {
                Ok(port) => Check::Tcp { port },
                Err(e) => Check::Invalid(e),
            },
            Some(probe::Check::Exec(ExecProbe { command })) if !command.is_empty() => Check::Exec {
                command: command.clone(),
            },
            Some(probe::Check::Exec(_)) => Check::Invalid("the command is empty".to_string()),
            None => Check::Invalid("the plan gives this probe no check".to_string()),
        };
        let name = if name.is_empty() {
            match &check {
                Check::Http { .. } => "http",
                Check::Tcp { .. } => "tcp",
                Check::Exec { .. } => "exec",
                Check::Invalid(_) => "probe",
            }
            .to_string()
        } else {
            name.clone()
        };
        ProbeConfig {
            name,
            check,
            interval: or(*interval_ms, DEFAULT_INTERVAL),
            timeout: or(*timeout_ms, DEFAULT_TIMEOUT),
            failure_threshold: if *failure_threshold == 0 {
                DEFAULT_FAILURE_THRESHOLD
            } else {
                *failure_threshold
            },
            success_threshold: if *success_threshold == 0 {
                DEFAULT_SUCCESS_THRESHOLD
            } else {
                *success_threshold
            },
            start_period: Duration::from_millis(*start_period_ms),
        }
    }
}

/// `2s`, `1500ms`.
pub fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

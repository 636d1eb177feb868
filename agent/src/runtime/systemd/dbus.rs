//! The real systemd: its D-Bus API on the system bus, through zbus (tokio).
//! One connection, made on first use and made again after it breaks; every
//! call is bounded in time.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::Mutex;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{proxy::CacheProperties, Connection, MatchRule, MessageStream};

use super::{journal, unit_of_label, Systemd, SystemdError, UnitInfo};

const DESTINATION: &str = "org.freedesktop.systemd1";
const UNIT_PATHS: &str = "/org/freedesktop/systemd1/unit";
const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// daemon-reload re-reads every unit file: give it longer.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(90);
/// Signals queued for the `changes` stream before the oldest are dropped.
const MAX_QUEUED: usize = 256;

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reload_or_restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;
    fn reload(&self) -> zbus::Result<()>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.DBus.Properties",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Properties {
    fn get_all(&self, interface: &str) -> zbus::Result<HashMap<String, OwnedValue>>;
}

/// systemd over the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else
/// `/run/dbus/system_bus_socket`).
#[derive(Default)]
pub struct DbusSystemd {
    /// Held across the connect only; calls clone the connection out.
    connection: Mutex<Option<Connection>>,
}

impl DbusSystemd {
    pub fn new() -> Self {
        Self::default()
    }

    async fn connection(&self) -> Result<Connection, SystemdError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let connection = match tokio::time::timeout(CONNECT_TIMEOUT, Connection::system()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(SystemdError::Unreachable(connect_error(&e))),
            Err(_) => {
                return Err(SystemdError::Unreachable(format!(
                    "the system bus did not answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        };
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets a connection that broke, so the next call dials again.
    async fn broken(&self, error: &SystemdError) {
        if matches!(error, SystemdError::Unreachable(_)) {
            self.connection.lock().await.take();
        }
    }

    async fn manager(&self) -> Result<ManagerProxy<'static>, SystemdError> {
        let connection = self.connection().await?;
        ManagerProxy::builder(&connection)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| map_error(e, "reaching the service manager", ""))
    }

    /// Runs one Manager call, bounded by `limit`, its error in words.
    async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        unit: &str,
        limit: Duration,
        f: F,
    ) -> Result<T, SystemdError>
    where
        F: FnOnce(ManagerProxy<'static>) -> Fut,
        Fut: Future<Output = zbus::Result<T>>,
    {
        let result = async {
            let manager = self.manager().await?;
            match tokio::time::timeout(limit, f(manager)).await {
                Ok(result) => result.map_err(|e| map_error(e, op, unit)),
                Err(_) => Err(SystemdError::Call {
                    op,
                    unit: unit.to_string(),
                    message: format!("systemd did not answer within {}s", limit.as_secs()),
                }),
            }
        }
        .await;
        if let Err(e) = &result {
            self.broken(e).await;
        }
        result
    }

    async fn properties(
        &self,
        path: &OwnedObjectPath,
        interface: &'static str,
        unit: &str,
    ) -> Result<HashMap<String, OwnedValue>, SystemdError> {
        let connection = self.connection().await?;
        let result = async {
            let proxy = PropertiesProxy::builder(&connection)
                .path(path.clone())
                .map_err(|e| map_error(e, "reading", unit))?
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(|e| map_error(e, "reading", unit))?;
            match tokio::time::timeout(CALL_TIMEOUT, proxy.get_all(interface)).await {
                Ok(result) => result.map_err(|e| map_error(e, "reading", unit)),
                Err(_) => Err(SystemdError::Call {
                    op: "reading",
                    unit: unit.to_string(),
                    message: format!("systemd did not answer within {}s", CALL_TIMEOUT.as_secs()),
                }),
            }
        }
        .await;
        if let Err(e) = &result {
            self.broken(e).await;
        }
        result
    }
}

#[async_trait]
impl Systemd for DbusSystemd {
    async fn unit(&self, name: &str) -> Result<UnitInfo, SystemdError> {
        let path = self
            .call("loading", name, CALL_TIMEOUT, |m| async move {
                m.load_unit(name).await
            })
            .await?;
        let unit = self.properties(&path, UNIT_IFACE, name).await?;
        // A unit systemd could not load may lack the Service interface.
        let service = self
            .properties(&path, SERVICE_IFACE, name)
            .await
            .unwrap_or_default();
        Ok(unit_info(name, &unit, &service))
    }

    async fn start(&self, name: &str) -> Result<(), SystemdError> {
        self.call("starting", name, CALL_TIMEOUT, |m| async move {
            m.start_unit(name, "replace").await
        })
        .await
        .map(drop)
    }

    async fn stop(&self, name: &str) -> Result<(), SystemdError> {
        self.call("stopping", name, CALL_TIMEOUT, |m| async move {
            m.stop_unit(name, "replace").await
        })
        .await
        .map(drop)
    }

    async fn restart(&self, name: &str) -> Result<(), SystemdError> {
        self.call("restarting", name, CALL_TIMEOUT, |m| async move {
            m.restart_unit(name, "replace").await
        })
        .await
        .map(drop)
    }

    async fn reload_or_restart(&self, name: &str) -> Result<(), SystemdError> {
        self.call(
            "reloading or restarting",
            name,
            CALL_TIMEOUT,
            |m| async move { m.reload_or_restart_unit(name, "replace").await },
        )
        .await
        .map(drop)
    }

    async fn enable(&self, name: &str) -> Result<(), SystemdError> {
        self.call("enabling", name, CALL_TIMEOUT, |m| async move {
            m.enable_unit_files(&[name], false, false).await
        })
        .await
        .map(drop)
    }

    async fn disable(&self, name: &str) -> Result<(), SystemdError> {
        self.call("disabling", name, CALL_TIMEOUT, |m| async move {
            m.disable_unit_files(&[name], false).await
        })
        .await
        .map(drop)
    }

    async fn daemon_reload(&self) -> Result<(), SystemdError> {
        self.call(
            "reloading",
            "the unit files",
            RELOAD_TIMEOUT,
            |m| async move { m.reload().await },
        )
        .await
    }

    async fn reset_failed(&self, name: &str) -> Result<(), SystemdError> {
        self.call("resetting", name, CALL_TIMEOUT, |m| async move {
            m.reset_failed_unit(name).await
        })
        .await
    }

    async fn changes(&self) -> Result<BoxStream<'static, String>, SystemdError> {
        let connection = self.connection().await?;
        let rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(DESTINATION)
            .and_then(|b| b.interface("org.freedesktop.DBus.Properties"))
            .and_then(|b| b.member("PropertiesChanged"))
            .and_then(|b| b.path_namespace(UNIT_PATHS))
            .map(|b| b.build())
            .map_err(|e| map_error(e, "watching units", ""))?;
        // The match first, then Subscribe: no change falls between the two.
        let stream = MessageStream::for_match_rule(rule, &connection, Some(MAX_QUEUED))
            .await
            .map_err(|e| map_error(e, "watching units", ""));
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                self.broken(&e).await;
                return Err(e);
            }
        };
        self.call(
            "subscribing to",
            "unit changes",
            CALL_TIMEOUT,
            |m| async move { m.subscribe().await },
        )
        .await?;
        let names = stream.filter_map(|message| async move {
            let message = message.ok()?;
            let header = message.header();
            let path = header.path()?.as_str();
            let label = path.strip_prefix(UNIT_PATHS)?.strip_prefix('/')?;
            unit_of_label(label)
        });
        Ok(names.boxed())
    }

    async fn journal_tail(&self, name: &str, lines: usize) -> Vec<String> {
        journal::tail(name, lines).await
    }
}

/// The properties Convoy reads, from GetAll of the Unit and Service
/// interfaces; a missing or mistyped one keeps its default.
fn unit_info(
    name: &str,
    unit: &HashMap<String, OwnedValue>,
    service: &HashMap<String, OwnedValue>,
) -> UnitInfo {
    let text = |map: &HashMap<String, OwnedValue>, key: &str| {
        map.get(key)
            .and_then(|v| v.downcast_ref::<&str>().ok().map(str::to_string))
            .unwrap_or_default()
    };
    let u32_of = |map: &HashMap<String, OwnedValue>, key: &str| {
        map.get(key)
            .and_then(|v| v.downcast_ref::<u32>().ok())
            .unwrap_or(0)
    };
    let i32_of = |map: &HashMap<String, OwnedValue>, key: &str| {
        map.get(key)
            .and_then(|v| v.downcast_ref::<i32>().ok())
            .unwrap_or(0)
    };
    let u64_of = |map: &HashMap<String, OwnedValue>, key: &str| {
        map.get(key)
            .and_then(|v| v.downcast_ref::<u64>().ok())
            .unwrap_or(0)
    };
    let load_error = unit
        .get("LoadError")
        .and_then(|v| <(String, String)>::try_from(v.try_clone().ok()?).ok())
        .map(|(_, message)| message)
        .unwrap_or_default();
    type ExecCommand = (String, Vec<String>, bool, u64, u64, u64, u64, u32, i32, i32);
    let exec_start = service
        .get("ExecStart")
        .and_then(|v| Vec::<ExecCommand>::try_from(v.try_clone().ok()?).ok())
        .and_then(|commands| commands.into_iter().next())
        .map(|(_, argv, ..)| argv.join(" "))
        .unwrap_or_default();
    UnitInfo {
        name: name.to_string(),
        load_state: text(unit, "LoadState"),
        load_error,
        active_state: text(unit, "ActiveState"),
        sub_state: text(unit, "SubState"),
        unit_file_state: text(unit, "UnitFileState"),
        fragment_path: text(unit, "FragmentPath"),
        need_daemon_reload: unit
            .get("NeedDaemonReload")
            .and_then(|v| v.downcast_ref::<bool>().ok())
            .unwrap_or(false),
        state_change_usec: u64_of(unit, "StateChangeTimestamp"),
        result: text(service, "Result"),
        main_pid: u32_of(service, "MainPID"),
        n_restarts: u32_of(service, "NRestarts"),
        exec_main_code: i32_of(service, "ExecMainCode"),
        exec_main_status: i32_of(service, "ExecMainStatus"),
        exec_main_start_usec: u64_of(service, "ExecMainStartTimestamp"),
        exec_start,
    }
}

fn connect_error(e: &zbus::Error) -> String {
    match e {
        zbus::Error::Connection(io, address) => format!(
            "cannot connect to the system bus at {address}: {io} (is systemd running on this host?)"
        ),
        zbus::Error::InputOutput(io) => format!("cannot connect to the system bus: {io}"),
        other => format!("cannot connect to the system bus: {other}"),
    }
}

/// A zbus error as Convoy says it; transport failures are `Unreachable`.
fn map_error(e: zbus::Error, op: &'static str, unit: &str) -> SystemdError {
    let unit = unit.to_string();
    match e {
        zbus::Error::MethodError(name, message, _) => {
            let message = message.unwrap_or_else(|| name.to_string());
            match name.as_str() {
                "org.freedesktop.systemd1.UnitMasked" => SystemdError::Masked { unit },
                "org.freedesktop.systemd1.NoSuchUnit" => SystemdError::NoSuchUnit { unit },
                "org.freedesktop.DBus.Error.AccessDenied"
                | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => {
                    SystemdError::AccessDenied { op, unit, message }
                }
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner" => SystemdError::Unreachable(
                    format!("systemd is not on the system bus ({message})"),
                ),
                _ => SystemdError::Call { op, unit, message },
            }
        }
        zbus::Error::FDO(fdo) => map_error(zbus::Error::from(*fdo), op, &unit),
        e @ (zbus::Error::InputOutput(_)
        | zbus::Error::Connection(..)
        | zbus::Error::Handshake(_)
        | zbus::Error::Address(_)) => SystemdError::Unreachable(connect_error(&e)),
        other => SystemdError::Call {
            op,
            unit,
            message: other.to_string(),
        },
    }
}

//! Compose keys that give a container access to the host:
//! `privileged: true`, `cap_add`, `devices`, `pid`/`ipc`/`uts`/`userns_mode`/
//! `network_mode: host`, and `security_opt` other than
//! `no-new-privileges:true`. They are read into the service's
//! `HostAccessSpec`; granting them is an admin's decision, per node
//! (`convoy-agent run --allow-host-access KIND`), which placement and the
//! agent enforce (`spec/host_access.rs`). Harmless values (`privileged:
//! false`, `cap_add: []`, `pid: ""`, `network_mode: bridge`) are ignored
//! with a warning, as before.

use serde_json::Value;

use crate::spec::HostAccessSpec;

/// The one `security_opt` that takes privileges away rather than granting.
const NO_NEW_PRIVILEGES: &[&str] = &[
    "no-new-privileges",
    "no-new-privileges:true",
    "no-new-privileges=true",
];

/// Reads `value` of service key `key` into `into`: `Ok(true)` when it asks
/// for host access, `Ok(false)` when the value is harmless (the caller warns
/// that it is ignored), `Err(why)` when it is malformed.
pub(super) fn read(key: &str, value: &Value, into: &mut HostAccessSpec) -> Result<bool, String> {
    match key {
        "privileged" => {
            let on = match value {
                Value::Bool(b) => *b,
                Value::String(s) if s.eq_ignore_ascii_case("true") => true,
                Value::String(s) if s.eq_ignore_ascii_case("false") => false,
                Value::Null => false,
                _ => return Err("expected `true` or `false`".to_owned()),
            };
            into.privileged = on;
            Ok(on)
        }
        "cap_add" => {
            for item in strings(value, "a list of capabilities such as `[NET_ADMIN]`")? {
                into.cap_add
                    .push(crate::spec::extras::check_capability(item)?);
            }
            Ok(!into.cap_add.is_empty())
        }
        "devices" => {
            let Value::Array(items) = value else {
                if value.is_null() {
                    return Ok(false);
                }
                return Err("expected a list of devices such as `[\"/dev/kvm:/dev/kvm\"]`".into());
            };
            for item in items {
                into.devices.push(device(item)?);
            }
            Ok(!into.devices.is_empty())
        }
        "pid" | "ipc" | "uts" | "userns_mode" | "network_mode" => {
            let host = value.as_str() == Some("host");
            match key {
                "pid" => into.pid_host = host,
                "ipc" => into.ipc_host = host,
                "uts" => into.uts_host = host,
                "userns_mode" => into.userns_host = host,
                _ => into.network_host = host,
            }
            Ok(host)
        }
        "security_opt" => {
            for item in strings(value, "a list such as `[\"seccomp:unconfined\"]`")? {
                let item = item.trim();
                if !NO_NEW_PRIVILEGES.contains(&item) {
                    into.security_opt.push(item.to_owned());
                }
            }
            Ok(!into.security_opt.is_empty())
        }
        _ => Ok(false),
    }
}

/// The strings of a list (`null`: none).
fn strings<'a>(value: &'a Value, expected: &str) -> Result<Vec<&'a str>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(|| format!("expected {expected}")))
            .collect(),
        _ => Err(format!("expected {expected}")),
    }
}

/// One `devices` entry, short (`HOST[:CONTAINER[:PERMISSIONS]]`) or long
/// (`{source, target, permissions}`), as `HOST:CONTAINER:PERMISSIONS`.
fn device(item: &Value) -> Result<String, String> {
    let (host, container, permissions) = match item {
        Value::String(s) => {
            let mut parts = s.splitn(3, ':');
            let host = parts.next().unwrap_or("");
            let container = parts.next().unwrap_or(host);
            (
                host.to_owned(),
                container.to_owned(),
                parts.next().unwrap_or("rwm").to_owned(),
            )
        }
        Value::Object(map) => {
            let field = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
            if let Some(other) = map
                .keys()
                .find(|k| !["source", "target", "permissions"].contains(&k.as_str()))
            {
                return Err(format!(
                    "unknown key `{other}` in a device: write `source`, `target` and `permissions`"
                ));
            }
            let host = field("source").ok_or("a device needs `source`")?;
            let container = field("target").unwrap_or_else(|| host.clone());
            (
                host,
                container,
                field("permissions").unwrap_or_else(|| "rwm".to_owned()),
            )
        }
        _ => return Err("expected a device such as `/dev/kvm:/dev/kvm`".to_owned()),
    };
    for path in [&host, &container] {
        if !path.starts_with("/dev/") && !path.starts_with('/') || path.contains("..") {
            return Err(format!("`{path}` is not an absolute device path"));
        }
    }
    if permissions.is_empty() || !permissions.chars().all(|c| "rwm".contains(c)) {
        return Err(format!(
            "`{permissions}` is not a device's permissions: a mix of `r`, `w` and `m`"
        ));
    }
    Ok(format!("{host}:{container}:{permissions}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn asks(key: &str, value: Value) -> Result<(bool, HostAccessSpec), String> {
        let mut spec = HostAccessSpec::default();
        read(key, &value, &mut spec).map(|asked| (asked, spec))
    }

    #[test]
    fn host_access_values_are_read_and_harmless_ones_are_not() {
        let (asked, spec) = asks("privileged", json!(true)).unwrap();
        assert!(asked && spec.privileged);
        assert!(asks("privileged", json!("true")).unwrap().0);
        let (_, spec) = asks("cap_add", json!(["CAP_SYS_ADMIN", "NET_ADMIN"])).unwrap();
        assert_eq!(spec.cap_add, ["SYS_ADMIN", "NET_ADMIN"]);
        let (_, spec) = asks(
            "devices",
            json!(["/dev/sda:/dev/xvda:r", "/dev/fuse", {"source": "/dev/kvm"}]),
        )
        .unwrap();
        assert_eq!(
            spec.devices,
            [
                "/dev/sda:/dev/xvda:r",
                "/dev/fuse:/dev/fuse:rwm",
                "/dev/kvm:/dev/kvm:rwm"
            ]
        );
        for key in ["pid", "ipc", "uts", "userns_mode", "network_mode"] {
            let (asked, spec) = asks(key, json!("host")).unwrap();
            assert!(asked, "{key}");
            assert_eq!(spec.kinds(), [key]);
        }
        let (_, spec) = asks(
            "security_opt",
            json!(["no-new-privileges:true", "apparmor:unconfined"]),
        )
        .unwrap();
        assert_eq!(spec.security_opt, ["apparmor:unconfined"]);
        for (key, value) in [
            ("privileged", json!(false)),
            ("cap_add", json!([])),
            ("devices", Value::Null),
            ("pid", json!("")),
            ("network_mode", json!("bridge")),
            ("security_opt", json!(["no-new-privileges:true"])),
            ("security_opt", json!(["no-new-privileges"])),
        ] {
            let (asked, spec) = asks(key, value.clone()).unwrap();
            assert!(!asked && spec.is_empty(), "{key}: {value}");
        }
        for (key, value) in [
            ("privileged", json!("maybe")),
            ("cap_add", json!(["net_admin"])),
            ("devices", json!(["dev/sda"])),
            ("devices", json!(["/dev/sda:/dev/sda:rx"])),
            ("security_opt", json!("label:disable")),
        ] {
            assert!(asks(key, value.clone()).is_err(), "{key}: {value}");
        }
    }
}

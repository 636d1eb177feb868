//! Compose keys that would give a container access to the host:
//! `privileged: true`, `cap_add`, `devices`, `pid`/`ipc`/`uts`/`userns_mode`/
//! `network_mode: host`, and `security_opt` other than
//! `no-new-privileges:true`. Granting them is an admin's decision, which
//! Convoy has no way to record yet (to come: per node, as
//! `convoy-agent run --allow-host-access`, placed like `--allow-bind`), so
//! a spec that asks for them is refused; harmless values (`privileged:
//! false`, `cap_add: []`, `pid: ""`) are ignored with a warning, as before.

use serde_json::Value;

/// The one `security_opt` that takes privileges away rather than granting.
const NO_NEW_PRIVILEGES: &[&str] = &[
    "no-new-privileges",
    "no-new-privileges:true",
    "no-new-privileges=true",
];

/// `Err(why)` when `value` of service key `key` asks for host access.
pub(super) fn check(key: &str, value: &Value) -> Result<(), String> {
    let asked = match key {
        "privileged" => match value {
            Value::Bool(b) => b.then(|| "`privileged: true`".to_string()),
            Value::String(s) if s.eq_ignore_ascii_case("true") => {
                Some("`privileged: true`".to_string())
            }
            _ => None,
        },
        "cap_add" | "devices" => match value {
            Value::Array(items) if !items.is_empty() => Some(format!("`{key}`")),
            Value::Array(_) | Value::Null => None,
            _ => Some(format!("`{key}`")),
        },
        "pid" | "ipc" | "uts" | "userns_mode" | "network_mode" => match value {
            Value::String(s) if s == "host" => Some(format!("`{key}: host`")),
            _ => None,
        },
        "security_opt" => match value {
            Value::Array(items) => items
                .iter()
                .find(|item| {
                    !item
                        .as_str()
                        .is_some_and(|s| NO_NEW_PRIVILEGES.contains(&s.trim()))
                })
                .map(|item| match item.as_str() {
                    Some(s) => format!("`security_opt: {s}`"),
                    None => "`security_opt`".to_string(),
                }),
            Value::Null => None,
            _ => Some("`security_opt`".to_string()),
        },
        _ => None,
    };
    match asked {
        None => Ok(()),
        Some(what) => Err(format!(
            "{what} gives the container access to the host, which only an admin may \
             grant; Convoy cannot record that grant yet (to come: per node, with \
             `convoy-agent run --allow-host-access`), so it refuses the spec: remove `{key}`, \
             or run this container outside Convoy"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_access_values_are_refused_and_harmless_ones_pass() {
        for (key, value) in [
            ("privileged", json!(true)),
            ("privileged", json!("true")),
            ("cap_add", json!(["SYS_ADMIN"])),
            ("devices", json!(["/dev/sda:/dev/sda"])),
            (
                "devices",
                json!([{"source": "/dev/kvm", "target": "/dev/kvm"}]),
            ),
            ("pid", json!("host")),
            ("network_mode", json!("host")),
            ("ipc", json!("host")),
            ("userns_mode", json!("host")),
            ("security_opt", json!(["seccomp:unconfined"])),
            (
                "security_opt",
                json!(["no-new-privileges:true", "apparmor:unconfined"]),
            ),
            ("security_opt", json!("label:disable")),
        ] {
            let err = check(key, &value).unwrap_err();
            assert!(
                err.contains("access to the host")
                    && err.contains("--allow-host-access")
                    && err.contains(&format!("remove `{key}`")),
                "{key}: {err}"
            );
        }
        for (key, value) in [
            ("privileged", json!(false)),
            ("cap_add", json!([])),
            ("devices", Value::Null),
            ("pid", json!("")),
            ("network_mode", json!("bridge")),
            ("security_opt", json!(["no-new-privileges:true"])),
            ("security_opt", json!(["no-new-privileges"])),
        ] {
            assert!(check(key, &value).is_ok(), "{key}: {value}");
        }
    }
}

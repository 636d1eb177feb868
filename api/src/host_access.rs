//! Host access beyond bind mounts: the Compose keys that give a container
//! the host (`privileged: true`, `cap_add`, `devices`, `pid`/`ipc`/`uts`/
//! `userns_mode`/`network_mode: host`, `security_opt`). An admin grants
//! them per node (`convoy-agent run --allow-host-access KIND,...`, KIND a
//! key's name or `all`); the coordinator places a service that asks for one
//! only on nodes that grant it, and the agent refuses to create it anywhere
//! else. One rule, here, so the two never disagree.

/// The kinds of host access, by their Compose key.
pub const KINDS: &[&str] = &[
    "privileged",
    "cap_add",
    "devices",
    "pid",
    "ipc",
    "uts",
    "userns_mode",
    "network_mode",
    "security_opt",
];

/// Grants every kind.
pub const ALL: &str = "all";

/// An `--allow-host-access` value: one of [`KINDS`] or `all`.
pub fn parse_grant(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text == ALL || KINDS.contains(&text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a kind of host access: write `all` or one of {}",
            KINDS.join(", ")
        ))
    }
}

/// Whether `grants` (a node's `--allow-host-access`) allow `kind`.
pub fn allowed(grants: &[String], kind: &str) -> bool {
    grants.iter().any(|g| g == ALL || g == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_kinds_or_all() {
        assert_eq!(parse_grant(" privileged "), Ok("privileged".to_string()));
        assert_eq!(parse_grant("all"), Ok("all".to_string()));
        assert!(parse_grant("root").unwrap_err().contains("network_mode"));
        let grants = vec!["cap_add".to_string()];
        assert!(allowed(&grants, "cap_add"));
        assert!(!allowed(&grants, "privileged"));
        assert!(allowed(&["all".to_string()], "devices"));
        assert!(!allowed(&[], "pid"));
    }
}

//! Names and paths from the plan, checked: credential ids, directory
//! names, targets in a container, variable names, and a file's owner.

use convoy_proto::SecretMount;

use super::SECRETS_DIR_IN_CONTAINER;

/// A unit credential's name under `$CREDENTIALS_DIRECTORY`: its target,
/// else the secret's name.
pub fn credential_id(m: &SecretMount) -> &str {
    if m.target.is_empty() {
        &m.name
    } else {
        &m.target
    }
}

/// `[A-Za-z0-9_.-]+`, not `.` or `..`: one file name.
pub fn check_credential_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "credential name `{id}` is not valid: use letters, digits, `_`, `.` and `-`"
        ))
    }
}

pub(super) fn check_dir_name(name: &str) -> Result<(), String> {
    check_credential_id(name).map_err(|_| format!("`{name}` cannot name a directory"))
}

/// The target in the container: absolute as given, a relative one under
/// `/run/secrets/`; no `.` or `..` parts.
pub(super) fn container_target(target: &str) -> Result<String, String> {
    let target = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{SECRETS_DIR_IN_CONTAINER}/{target}")
    };
    let valid = target.len() <= 4096
        && !target.contains(['\0', ','])
        && target.split('/').any(|p| !p.is_empty())
        && target.split('/').all(|p| p != "." && p != "..");
    if valid {
        Ok(target)
    } else {
        Err(format!("`{target}` is not a file path"))
    }
}

pub(super) fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The owner a secret file gets when its mount names none: the container's
/// `user` when it is numeric (`1000`, `1000:1000`), else root.
pub fn owner_of_user(user: &str) -> (u32, u32) {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    match u.parse::<u32>() {
        Ok(uid) => (uid, g.parse().unwrap_or(0)),
        Err(_) => (0, g.parse().unwrap_or(0)),
    }
}

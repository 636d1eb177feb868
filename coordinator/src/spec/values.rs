//! Parsers for the scalar values of a Compose file (ports, durations, command
//! lines, ...). Each says in its error what is wrong with the value; the
//! caller adds where it is. Image references, the values of `ports`, of
//! `units:` entries and of the update strategy have a module each.

mod image;
mod ports;
mod units;
mod update;

pub(super) use image::image;
pub use image::{registry_of, registry_server, DOCKER_HUB};
pub(super) use ports::{host_ip, protocol, published_port, short_port, target_port};
pub(super) use units::{
    adopted_unit, exec_start, unit_description, unit_env_name, unit_env_value, unit_name,
    unit_restart, unit_state, unit_user, unit_working_dir,
};
pub(super) use update::{
    canaries, failure_action, failure_ratio, parallelism, strategy, strategy_name, update_order,
};

use crate::spec::{DeployMode, RestartCondition, RestartSpec};

/// Service names become parts of container names and DNS labels.
pub(super) fn service_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(format!(
            "invalid service name `{name}`: use lowercase letters, digits, `_` and `-`, \
             starting with a letter or digit, at most 63 characters"
        ))
    }
}

/// A Compose profile name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub(super) fn profile_name(name: &str) -> Result<String, String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "invalid profile `{name}`: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
        ))
    }
}

/// Compose's rule for the project `name`.
pub(super) fn project_name(name: &str) -> Result<String, String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if first_ok
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "invalid name `{name}`: use lowercase letters, digits, `_` and `-`, starting with a letter or digit"
        ))
    }
}

/// Splits a command line into words as a POSIX shell would (quotes and
/// backslashes, no expansion), as Compose does for `command: "a 'b c'"`.
pub(super) fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated single quote in `{line}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated double quote in `{line}`")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated double quote in `{line}`")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(format!("trailing backslash in `{line}`")),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

pub(super) fn working_dir(dir: &str) -> Result<String, String> {
    if dir.starts_with('/') {
        Ok(dir.to_owned())
    } else {
        Err(format!("`{dir}` is not an absolute path"))
    }
}

pub(super) fn stop_signal(signal: &str) -> Result<String, String> {
    if !signal.is_empty()
        && signal
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+')
    {
        Ok(signal.to_owned())
    } else {
        Err(format!(
            "`{signal}` is not a signal, e.g. `SIGTERM` or `SIGINT`"
        ))
    }
}

/// Compose's service-level `restart`.
pub(super) fn restart(text: &str) -> Result<RestartSpec, String> {
    let policy = |condition, max_attempts| RestartSpec {
        condition,
        max_attempts,
    };
    match text {
        "no" => Ok(policy(RestartCondition::None, 0)),
        "always" | "unless-stopped" => Ok(policy(RestartCondition::Any, 0)),
        "on-failure" => Ok(policy(RestartCondition::OnFailure, 0)),
        other => match other.strip_prefix("on-failure:") {
            Some(n) => n
                .parse()
                .map(|n| policy(RestartCondition::OnFailure, n))
                .map_err(|_| format!("`{n}` is not a number of attempts")),
            None => Err(format!(
                "unknown restart policy `{other}`, expected one of `no`, `always`, `on-failure`, \
                 `on-failure:N`, `unless-stopped`"
            )),
        },
    }
}

/// `deploy.restart_policy.condition`.
pub(super) fn condition(text: &str) -> Result<RestartCondition, String> {
    match text {
        "none" => Ok(RestartCondition::None),
        "on-failure" => Ok(RestartCondition::OnFailure),
        "any" => Ok(RestartCondition::Any),
        other => Err(format!(
            "unknown restart condition `{other}`, expected one of `none`, `on-failure`, `any`"
        )),
    }
}

pub(super) fn mode(text: &str) -> Result<DeployMode, String> {
    match text {
        "replicated" => Ok(DeployMode::Replicated),
        "global" => Ok(DeployMode::Global),
        "replicated-job" | "global-job" => {
            Err(format!("mode `{text}` is not supported by Convoy yet"))
        }
        other => Err(format!(
            "unknown mode `{other}`, expected `replicated` or `global`"
        )),
    }
}

/// A count such as `replicas` or `max_attempts`.
pub(super) fn count(text: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a whole number"))
}

/// A Compose duration: `10s`, `1m30s`, `1.5h`, `500ms` (units h, m, s, ms,
/// us, ns), in milliseconds.
pub(super) fn duration_ms(text: &str) -> Result<u64, String> {
    let invalid = |why: &str| {
        format!("invalid duration `{text}`: {why}; write it as `10s`, `1m30s` or `500ms`")
    };
    if text == "0" {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(invalid("it is empty"));
    }
    if text.starts_with('-') {
        return Err(invalid("it is negative"));
    }
    let mut rest = text;
    let mut total_ns = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| invalid("expected a number"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let ns_per_unit = match unit {
            "h" => 3_600e9,
            "m" => 60e9,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            "" => return Err(invalid("missing unit")),
            _ => return Err(invalid("unknown unit")),
        };
        total_ns += value * ns_per_unit;
        rest = after;
    }
    let ms = (total_ns / 1e6).round();
    if ms > 1e15 {
        return Err(invalid("too long"));
    }
    Ok(ms as u64)
}

/// Keys of `environment`.
pub(super) fn env_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("a variable needs a name".to_owned())
    } else if name.contains('=') || name.contains('\0') {
        Err(format!("invalid variable name `{name}`"))
    } else {
        Ok(())
    }
}

/// Keys of `labels`; Convoy's own labels are reserved.
pub(super) fn label_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("a label needs a name".to_owned())
    } else if name.starts_with("io.convoy.") {
        Err(format!(
            "label `{name}`: labels under `io.convoy.` are reserved for Convoy"
        ))
    } else {
        Ok(())
    }
}

/// `true` or `false`, as YAML writes them.
pub(super) fn boolean(text: &str) -> Result<bool, String> {
    match text {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        other => Err(format!("`{other}` is not `true` or `false`")),
    }
}

/// A duration that must not be zero (a probe's `interval` and `timeout`).
pub(super) fn positive_duration_ms(text: &str) -> Result<u64, String> {
    match duration_ms(text)? {
        0 => Err(format!(
            "`{text}` is too short: it must be at least 1ms; leave it out for the default"
        )),
        ms => Ok(ms),
    }
}

/// A probe's `failure_threshold` or `success_threshold`.
pub(super) fn threshold(text: &str) -> Result<u32, String> {
    match count(text)? {
        0 => Err("must be at least 1; leave it out for the default".to_owned()),
        n => Ok(n),
    }
}

/// Compose's `healthcheck.test` in list form, as Docker takes it.
pub(super) fn healthcheck_test(words: Vec<String>) -> Result<Vec<String>, String> {
    let args = words.len().saturating_sub(1);
    match words.first().map(String::as_str) {
        None => {
            Err("the test is empty: leave `test` out to keep the image's healthcheck".to_owned())
        }
        Some("NONE") if args == 0 => Ok(words),
        Some("NONE") => Err("`NONE` takes no arguments: it turns the healthcheck off".to_owned()),
        Some("CMD" | "CMD-SHELL") if args == 0 || words[1].trim().is_empty() => {
            Err(format!("`{}` needs the command to run after it", words[0]))
        }
        Some("CMD" | "CMD-SHELL") => Ok(words),
        Some(other) => Err(format!(
            "the list starts with `{other}`, expected `CMD`, `CMD-SHELL` or `NONE`: write \
             [\"CMD\", \"{other}\", ...] to run it, or a string to run it with the shell"
        )),
    }
}

/// Names the agent uses itself in probe results.
const RESERVED_PROBE_NAMES: [&str; 2] = ["docker", "running"];

/// A probe's `name`: shown in statuses and events.
pub(super) fn probe_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return Err(format!(
            "invalid probe name `{name}`: use letters, digits, `_`, `-` and `.`, at most 63 \
             characters"
        ));
    }
    if RESERVED_PROBE_NAMES.contains(&name) {
        return Err(format!(
            "the probe name `{name}` is reserved: the agent reports Docker's healthcheck as \
             `docker` and a check-less instance as `running`"
        ));
    }
    Ok(name.to_owned())
}

/// An HTTP probe's `path`: what follows the host in the URL.
pub(super) fn http_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        Err(format!("`{path}` does not start with `/`"))
    } else if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!(
            "`{path}` has spaces or control characters: percent-encode them"
        ))
    } else {
        Ok(path.to_owned())
    }
}

/// An HTTP probe's `expect_status`.
pub(super) fn http_status(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(code @ 100..=599) => Ok(code),
        _ => Err(format!("`{text}` is not an HTTP status code (100 to 599)")),
    }
}

/// A duration as the messages show it: `90s`, `5m`, `1h`, `1500ms`.
pub(super) fn show_duration(ms: u64) -> String {
    match ms {
        0 => "0s".to_owned(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

//! Parsers for the scalar values of a Compose file (ports, durations, command
//! lines, ...). Each says in its error what is wrong with the value; the
//! caller adds where it is.

use std::net::IpAddr;

use super::{
    DeployMode, FailureAction, PortSpec, Protocol, RestartCondition, RestartSpec, Strategy,
    UnitRestart, UnitState, UpdateOrder,
};

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

pub(super) fn image(image: &str) -> Result<String, String> {
    if image.trim().is_empty() {
        Err("must not be empty: name the image to run, e.g. `nginx:1.27`".to_owned())
    } else if image.chars().any(char::is_whitespace) {
        Err(format!(
            "invalid image `{image}`: an image reference has no spaces"
        ))
    } else {
        Ok(image.to_owned())
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

/// A port number; `0` only where it means "any free port".
fn port_number(text: &str, allow_zero: bool) -> Result<u16, String> {
    if text.contains('-') {
        return Err("port ranges are not supported yet".to_owned());
    }
    let n: u64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a port number"))?;
    match u16::try_from(n) {
        Ok(0) if !allow_zero => Err("port 0 is out of range 1-65535".to_owned()),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("port {n} is out of range 1-65535")),
    }
}

/// A container port (`target`).
pub(super) fn target_port(text: &str) -> Result<u16, String> {
    port_number(text, false).map_err(|why| format!("invalid port `{text}`: {why}"))
}

/// A host port (`published`); empty or 0: Docker picks a free one.
pub(super) fn published_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Ok(0);
    }
    port_number(text, true).map_err(|why| format!("invalid port `{text}`: {why}"))
}

pub(super) fn host_ip(text: &str) -> Result<String, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| format!("`{text}` is not an IP address"))
}

pub(super) fn protocol(text: &str) -> Result<Protocol, String> {
    match text {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!(
            "unknown protocol `{other}`, expected `tcp` or `udp`"
        )),
    }
}

/// Compose's short port syntax: `[[HOST_IP:][PUBLISHED]:]TARGET[/PROTOCOL]`.
/// A lone target is published on an ephemeral host port, as Compose does.
pub(super) fn short_port(spec: &str) -> Result<PortSpec, String> {
    let invalid = |why: String| format!("invalid port `{spec}`: {why}");
    let (ports, protocol) = match spec.rsplit_once('/') {
        Some((ports, proto)) => (ports, self::protocol(proto).map_err(invalid)?),
        None => (spec, Protocol::Tcp),
    };
    let (host_ip, rest) = match ports.strip_prefix('[') {
        Some(bracketed) => {
            let (ip, rest) = bracketed.split_once("]:").ok_or_else(|| {
                invalid("an IPv6 address in brackets must be followed by `:PORT`".to_owned())
            })?;
            (Some(ip), rest)
        }
        None => (None, ports),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, published, target) = match (host_ip, parts.as_slice()) {
        (None, [target]) => (None, "", *target),
        (None, [published, target]) => (None, *published, *target),
        (None, [ip, published, target]) => (Some(*ip), *published, *target),
        (Some(ip), [published, target]) => (Some(ip), *published, *target),
        (None, _) => {
            return Err(invalid(
                "too many `:`; write an IPv6 host address in brackets, as `[::1]:8080:80`"
                    .to_owned(),
            ))
        }
        (Some(_), _) => return Err(invalid("expected `[IP]:PUBLISHED:TARGET`".to_owned())),
    };
    let host_ip = match host_ip {
        Some(ip) => self::host_ip(ip).map_err(invalid)?,
        None => String::new(),
    };
    let published = if published.is_empty() {
        0
    } else {
        port_number(published, true).map_err(invalid)?
    };
    let target = port_number(target, false).map_err(invalid)?;
    Ok(PortSpec {
        host_ip,
        published,
        target,
        protocol,
    })
}

/// Compose's short volume syntax, `SRC:DST[:ro|rw]`, with a host path or a
/// named volume as the source.
pub(super) fn volume(spec: &str) -> Result<String, String> {
    let invalid = |why: &str| format!("invalid volume `{spec}`: {why}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target) = match parts.as_slice() {
        [_] => {
            return Err(invalid(
                "anonymous volumes are not supported yet; write `SRC:DST[:ro|rw]`",
            ))
        }
        [source, target] => (*source, *target),
        [source, target, mode] => {
            if !matches!(*mode, "ro" | "rw") {
                return Err(invalid("the mode must be `ro` or `rw`"));
            }
            (*source, *target)
        }
        _ => return Err(invalid("expected `SRC:DST[:ro|rw]`")),
    };
    if source.is_empty() {
        return Err(invalid("the source is empty"));
    }
    if source.starts_with('.') || source.starts_with('~') {
        return Err(invalid(
            "relative host paths are not supported, as containers may run on another machine; \
             use an absolute path or a named volume",
        ));
    }
    if !source.starts_with('/') {
        let mut chars = source.chars();
        let valid_name = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid_name {
            return Err(invalid(
                "the source is neither an absolute path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
            ));
        }
    }
    if !target.starts_with('/') {
        return Err(invalid(
            "the target inside the container must be an absolute path",
        ));
    }
    Ok(spec.to_owned())
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

/// `update_config.parallelism` and `x-convoy.update.max_parallel`: 0 is all
/// at once, as in Compose.
pub(super) fn parallelism(text: &str) -> Result<u32, String> {
    if text.starts_with('-') {
        return Err(format!(
            "`{text}` is negative: give the number of instances to replace at a time, or 0 for \
             all at once"
        ));
    }
    count(text)
}

/// `update_config.max_failure_ratio`, a fraction from 0 to 1, in thousandths.
pub(super) fn failure_ratio(text: &str) -> Result<u32, String> {
    let ratio: f64 = text
        .parse()
        .ok()
        .filter(|r: &f64| r.is_finite())
        .ok_or_else(|| format!("`{text}` is not a number: write a fraction such as `0.25`"))?;
    if !(0.0..=1.0).contains(&ratio) {
        return Err(format!(
            "`{text}` is out of range: the ratio of failed instances tolerated is from 0 to 1 \
             (`0.25` tolerates one in four)"
        ));
    }
    Ok((ratio * 1000.0).round() as u32)
}

/// `update_config.failure_action`; a rollback's own failure cannot roll
/// back, so `rollback_config` takes only `pause` and `continue`.
pub(super) fn failure_action(text: &str, rollback: bool) -> Result<FailureAction, String> {
    match text {
        "rollback" if rollback => Err(
            "`rollback` is not a failure action for a rollback: expected `pause` or `continue`"
                .to_owned(),
        ),
        "rollback" => Ok(FailureAction::Rollback),
        "pause" => Ok(FailureAction::Pause),
        "continue" => Ok(FailureAction::Continue),
        other if rollback => Err(format!(
            "unknown failure action `{other}`, expected `pause` or `continue`"
        )),
        other => Err(format!(
            "unknown failure action `{other}`, expected one of `rollback`, `pause`, `continue`"
        )),
    }
}

/// `update_config.order` and `x-convoy.update.order`.
pub(super) fn update_order(text: &str) -> Result<UpdateOrder, String> {
    match text {
        "stop-first" => Ok(UpdateOrder::StopFirst),
        "start-first" => Ok(UpdateOrder::StartFirst),
        other => Err(format!(
            "unknown order `{other}`, expected `stop-first` or `start-first`"
        )),
    }
}

/// `x-convoy.update.strategy`.
pub(super) fn strategy(text: &str) -> Result<Strategy, String> {
    match text {
        "rolling" => Ok(Strategy::Rolling),
        "canary" => Ok(Strategy::Canary),
        "blue-green" => Ok(Strategy::BlueGreen),
        other => Err(format!(
            "unknown strategy `{other}`, expected one of `rolling`, `canary`, `blue-green`"
        )),
    }
}

/// A strategy as the spec writes it.
pub(super) fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::Rolling => "rolling",
        Strategy::Canary => "canary",
        Strategy::BlueGreen => "blue-green",
    }
}

/// `x-convoy.update.canaries`.
pub(super) fn canaries(text: &str) -> Result<u32, String> {
    match count(text)? {
        0 => Err(
            "must be at least 1: the number of new instances started before the others".to_owned(),
        ),
        n => Ok(n),
    }
}

// ---- units ----

/// The longest unit name systemd takes (UNIT_NAME_MAX less the NUL).
const UNIT_NAME_MAX: usize = 255;

/// The name of an entry of `units:`: it becomes part of the unit name
/// `convoy-NAME.service`, a file name under /etc/systemd/system, so only
/// the characters systemd allows in unit names, without the escapes (`\`),
/// path separators or anything a shell would read.
pub(super) fn unit_name(name: &str) -> Result<(), String> {
    unit_stem(name).map_err(|why| {
        format!(
            "invalid unit name `{}`: {why}; use letters, digits, `_`, `.`, `@` and `-`, \
             starting with a letter or digit",
            name.escape_debug()
        )
    })?;
    let written = format!("convoy-{name}.service");
    if written.len() > UNIT_NAME_MAX {
        return Err(format!(
            "the unit name `{written}` is longer than systemd's limit of {UNIT_NAME_MAX} characters"
        ));
    }
    Ok(())
}

/// The part of a unit name before `.service`.
fn unit_stem(stem: &str) -> Result<(), String> {
    let mut chars = stem.chars();
    match chars.next() {
        None => return Err("it is empty".to_owned()),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err(format!("it starts with `{}`", c.escape_debug()))
        }
        Some(_) => {}
    }
    if let Some(bad) =
        chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')))
    {
        return Err(match bad {
            '/' => "`/` is a path separator".to_owned(),
            c => format!("`{}` is not allowed", c.escape_debug()),
        });
    }
    if stem.contains("..") {
        return Err("`..` is not allowed".to_owned());
    }
    match stem.matches('@').count() {
        0 => Ok(()),
        1 if stem.ends_with('@') => {
            Err("a name ending in `@` is a template, which cannot run by itself".to_owned())
        }
        1 => Ok(()),
        _ => Err("a unit name has at most one `@`".to_owned()),
    }
}

/// `unit:`, the name of an existing unit to adopt: a service, and not one of
/// the units Convoy writes (or its own agent).
pub(super) fn adopted_unit(name: &str) -> Result<String, String> {
    let invalid = |why: &str| format!("invalid unit `{}`: {why}", name.escape_debug());
    let Some(stem) = name.strip_suffix(".service") else {
        return Err(invalid(
            "Convoy adopts services only: give the full name, e.g. `nginx.service`",
        ));
    };
    unit_stem(stem).map_err(|why| invalid(&why))?;
    if name.len() > UNIT_NAME_MAX {
        return Err(invalid(&format!(
            "longer than systemd's limit of {UNIT_NAME_MAX} characters"
        )));
    }
    if stem.starts_with("convoy-") {
        return Err(invalid(
            "units named `convoy-*` are Convoy's own (the agent, and the units it writes): \
             give a unit of your own",
        ));
    }
    Ok(name.to_owned())
}

/// Newlines would start a new line of the unit file; NUL ends a C string.
fn one_line(what: &str, text: &str) -> Result<(), String> {
    match text.chars().find(|c| matches!(c, '\n' | '\r' | '\0')) {
        Some(c) => Err(format!(
            "{what} `{}` has a {}: a unit file takes one line",
            text.escape_debug(),
            match c {
                '\0' => "NUL character",
                '\r' => "carriage return",
                _ => "newline",
            }
        )),
        None => Ok(()),
    }
}

/// `exec_start`, already split into words: an absolute program path (no
/// systemd prefix such as `-` or `@`), and arguments on one line.
pub(super) fn exec_start(words: Vec<String>) -> Result<Vec<String>, String> {
    let Some(program) = words.first() else {
        return Err(
            "is empty: give the program to run (an absolute path) and its arguments".to_owned(),
        );
    };
    if program.starts_with(['-', '@', '+', '!', ':']) {
        return Err(format!(
            "the program `{}` starts with one of systemd's prefixes (`-`, `@`, `+`, `!`, `:`), \
             which Convoy does not take: give the program's absolute path",
            program.escape_debug()
        ));
    }
    if !program.starts_with('/') {
        let hint = if program.contains('/') {
            "write it from the root, starting with `/`".to_owned()
        } else {
            format!(
                "write it in full, e.g. `/usr/bin/{}`",
                program.escape_debug()
            )
        };
        return Err(format!(
            "the program `{}` is not an absolute path: {hint}",
            program.escape_debug()
        ));
    }
    for word in &words {
        one_line("the argument", word)?;
    }
    Ok(words)
}

/// Names of a unit's `environment`: what a shell (and systemd) takes.
pub(super) fn unit_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid variable name `{}`: use letters, digits and `_`, not starting with a digit",
            name.escape_debug()
        ))
    }
}

/// Values of a unit's `environment`.
pub(super) fn unit_env_value(value: &str) -> Result<(), String> {
    one_line("the value", value)
}

/// `user`: a user name as useradd takes it, or a numeric id.
pub(super) fn unit_user(user: &str) -> Result<String, String> {
    if !user.is_empty() && user.chars().all(|c| c.is_ascii_digit()) {
        return match user.parse::<u32>() {
            // (uid_t) -1 means "no user" to the kernel.
            Ok(uid) if uid < u32::MAX => Ok(user.to_owned()),
            _ => Err(format!("`{user}` is out of range for a user id")),
        };
    }
    let mut chars = user.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && user.len() <= 32;
    if valid {
        Ok(user.to_owned())
    } else {
        Err(format!(
            "invalid user `{}`: give a user name (letters, digits, `_`, `.` and `-`, starting \
             with a letter or `_`, at most 32 characters) or a numeric id",
            user.escape_debug()
        ))
    }
}

/// systemd's `Restart=` values.
pub(super) fn unit_restart(text: &str) -> Result<UnitRestart, String> {
    UnitRestart::ALL
        .into_iter()
        .find(|r| r.as_str() == text)
        .ok_or_else(|| {
            let all: Vec<String> = UnitRestart::ALL
                .iter()
                .map(|r| format!("`{}`", r.as_str()))
                .collect();
            format!(
                "unknown restart policy `{}`, expected one of {}",
                text.escape_debug(),
                all.join(", ")
            )
        })
}

pub(super) fn unit_state(text: &str) -> Result<UnitState, String> {
    match text {
        "running" => Ok(UnitState::Running),
        "stopped" => Ok(UnitState::Stopped),
        other => Err(format!(
            "unknown state `{}`, expected `running` or `stopped`",
            other.escape_debug()
        )),
    }
}

/// A unit's `working_dir`.
pub(super) fn unit_working_dir(dir: &str) -> Result<String, String> {
    one_line("the path", dir)?;
    working_dir(dir)
}

/// A unit's `description`.
pub(super) fn unit_description(text: &str) -> Result<String, String> {
    one_line("the description", text)?;
    Ok(text.to_owned())
}

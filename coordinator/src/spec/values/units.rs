//! The values of a `units:` entry: unit names, `exec_start`, users,
//! environment and the other settings that become lines of a unit file, which
//! must each stay on one line.

use super::working_dir;
use crate::spec::{UnitRestart, UnitState};

/// The longest unit name systemd takes (UNIT_NAME_MAX less the NUL).
const UNIT_NAME_MAX: usize = 255;

/// The name of an entry of `units:`: it becomes part of the unit name
/// `convoy-NAME.service`, a file name under /etc/systemd/system, so only
/// the characters systemd allows in unit names, without the escapes (`\`),
/// path separators or anything a shell would read.
pub(in crate::spec) fn unit_name(name: &str) -> Result<(), String> {
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
pub(in crate::spec) fn adopted_unit(name: &str) -> Result<String, String> {
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
pub(in crate::spec) fn exec_start(words: Vec<String>) -> Result<Vec<String>, String> {
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
pub(in crate::spec) fn unit_env_name(name: &str) -> Result<(), String> {
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
pub(in crate::spec) fn unit_env_value(value: &str) -> Result<(), String> {
    one_line("the value", value)
}

/// `user`: a user name as useradd takes it, or a numeric id.
pub(in crate::spec) fn unit_user(user: &str) -> Result<String, String> {
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
pub(in crate::spec) fn unit_restart(text: &str) -> Result<UnitRestart, String> {
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

pub(in crate::spec) fn unit_state(text: &str) -> Result<UnitState, String> {
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
pub(in crate::spec) fn unit_working_dir(dir: &str) -> Result<String, String> {
    one_line("the path", dir)?;
    working_dir(dir)
}

/// A unit's `description`.
pub(in crate::spec) fn unit_description(text: &str) -> Result<String, String> {
    one_line("the description", text)?;
    Ok(text.to_owned())
}

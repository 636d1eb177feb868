//! A written unit's content: the GPU and credential lines, the checks on
//! names, users and values, and the file rendered per systemd.syntax
//! (quoting and escaping, so every argument reaches the program verbatim).

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    InvalidUnit, DEFAULT_RESTART, HEADER, MANAGED_KEY, RESTARTS, SPEC_HASH_KEY, SUFFIX,
    WORKLOAD_KEY,
};

/// The device nodes every CUDA program needs beside its GPUs' own.
const NVIDIA_SHARED_DEVICES: [&str; 3] =
    ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];

/// The GPU lines of a written unit: `DeviceAllow=` for the NVIDIA control
/// devices and each pinned GPU's `/dev/nvidiaINDEX` (so the unit sees no
/// other GPU: with a `DeviceAllow=`, systemd closes every device not
/// listed but the pseudo devices), and `CUDA_VISIBLE_DEVICES` and
/// `NVIDIA_VISIBLE_DEVICES` set to the UUIDs (written after the spec's
/// `environment`, so they win).
pub(super) fn gpu_lines(uuids: &[String], indexes: &[u32]) -> Result<Vec<String>, InvalidUnit> {
    if uuids.is_empty() {
        return Ok(Vec::new());
    }
    if uuids.len() != indexes.len() {
        return Err(InvalidUnit::Gpus(
            "the plan gives a different number of GPU UUIDs and indexes".to_string(),
        ));
    }
    for uuid in uuids {
        let plain = !uuid.is_empty()
            && uuid.len() <= 128
            && uuid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !plain {
            return Err(InvalidUnit::Gpus(format!(
                "GPU UUID `{}` is not valid",
                uuid.escape_debug()
            )));
        }
    }
    let mut lines = vec![format!("# convoy gpus {}", uuids.join(","))];
    for device in NVIDIA_SHARED_DEVICES {
        lines.push(format!("DeviceAllow={device} rw"));
    }
    for index in indexes {
        lines.push(format!("DeviceAllow=/dev/nvidia{index} rw"));
    }
    let visible = uuids.join(",");
    lines.push(format!("Environment=CUDA_VISIBLE_DEVICES={visible}"));
    lines.push(format!("Environment=NVIDIA_VISIBLE_DEVICES={visible}"));
    Ok(lines)
}

/// The credentials' lines of a written unit: a comment naming each secret's
/// version (so that the file, and the unit, change with a rotation), then
/// `LoadCredential=ID:PATH`.
pub(super) fn credential_lines(
    unit: &str,
    credentials: &[convoy_proto::SecretMount],
    secrets_dir: Option<&Path>,
) -> Result<Vec<String>, InvalidUnit> {
    if credentials.is_empty() {
        return Ok(Vec::new());
    }
    let Some(dir) = secrets_dir else {
        return Err(InvalidUnit::NoSecretsDir);
    };
    let text = dir.display().to_string();
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '%')
    {
        return Err(InvalidUnit::SecretsDirPath(text));
    }
    let mut seen = std::collections::HashSet::new();
    let mut lines = Vec::with_capacity(credentials.len() * 2);
    for m in credentials {
        let id = crate::secrets::credential_id(m);
        crate::secrets::check_credential_id(id).map_err(InvalidUnit::Credential)?;
        if has_control(&m.name) || m.name.contains(char::is_whitespace) {
            return Err(InvalidUnit::Credential(format!(
                "secret name `{}` is not valid",
                m.name.escape_debug()
            )));
        }
        if !seen.insert(id) {
            return Err(InvalidUnit::DuplicateCredential(id.to_string()));
        }
        let path = crate::secrets::NodeSecrets::credential_path(dir, unit, id);
        lines.push(format!("# convoy secret {} v{}", m.name, m.version));
        lines.push(format!("LoadCredential={id}:{}", path.display()));
    }
    Ok(lines)
}

pub(super) fn check_name(unit: &str, adopted: bool) -> Result<(), InvalidUnit> {
    let ok_char = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, ':' | '_' | '.' | '-')
            || (adopted && matches!(c, '@' | '\\'))
    };
    let stem = unit.strip_suffix(SUFFIX).unwrap_or_default();
    if stem.is_empty() || unit.len() > 255 || !unit.chars().all(ok_char) || stem.starts_with('.') {
        return Err(InvalidUnit::Name(unit.to_string()));
    }
    Ok(())
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

pub(super) struct Rendered<'a> {
    pub(super) workload_id: &'a str,
    pub(super) spec_hash: &'a str,
    pub(super) description: &'a str,
    pub(super) exec_start: &'a [String],
    pub(super) user: &'a str,
    pub(super) restart: &'a str,
    pub(super) environment: BTreeMap<&'a String, &'a String>,
    pub(super) working_directory: &'a str,
    /// `LoadCredential=` lines and their comments, checked.
    pub(super) credentials: Vec<String>,
    /// `DeviceAllow=` and the visible-devices variables, checked.
    pub(super) gpus: Vec<String>,
}

impl Rendered<'_> {
    pub(super) fn render(&self) -> Result<String, InvalidUnit> {
        let Some(program) = self.exec_start.first() else {
            return Err(InvalidUnit::NoCommand);
        };
        if !program.starts_with('/') {
            return Err(InvalidUnit::NotAbsolute(program.clone()));
        }
        if program.contains('$') || has_control(program) {
            return Err(InvalidUnit::BadProgram(program.clone()));
        }
        for (key, value) in &self.environment {
            let mut chars = key.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(InvalidUnit::EnvName(key.to_string()));
            }
            if has_control(value) {
                return Err(InvalidUnit::EnvValue(key.to_string()));
            }
        }
        if !self.user.is_empty() && !valid_user(self.user) {
            return Err(InvalidUnit::User(self.user.to_string()));
        }
        let wd = self.working_directory;
        if !wd.is_empty() && (!(wd.starts_with('/') || wd == "~") || has_control(wd)) {
            return Err(InvalidUnit::WorkingDirectory(wd.to_string()));
        }
        let restart = if self.restart.is_empty() {
            DEFAULT_RESTART
        } else {
            self.restart
        };
        if !RESTARTS.contains(&restart) {
            return Err(InvalidUnit::Restart(restart.to_string()));
        }
        for (field, text) in [
            ("description", self.description),
            ("the workload id", self.workload_id),
            ("the spec hash", self.spec_hash),
        ] {
            if has_control(text) {
                return Err(InvalidUnit::ControlCharacter { field });
            }
        }
        for arg in self.exec_start {
            if arg.contains('\0') {
                return Err(InvalidUnit::ControlCharacter {
                    field: "exec_start",
                });
            }
        }

        let description = if self.description.is_empty() {
            format!("Convoy workload {}", self.workload_id)
        } else {
            self.description.to_string()
        };
        let mut out = String::new();
        let mut line = |l: &str| {
            out.push_str(l);
            out.push('\n');
        };
        line(HEADER);
        line("[Unit]");
        line(&format!("Description={}", escape_specifiers(&description)));
        line(&format!("{MANAGED_KEY}=true"));
        line(&format!("{WORKLOAD_KEY}={}", self.workload_id));
        line(&format!("{SPEC_HASH_KEY}={}", self.spec_hash));
        line("");
        line("[Service]");
        // exec: a program that cannot be started fails the start job.
        line("Type=exec");
        line(&format!("ExecStart={}", exec_line(self.exec_start)));
        if !self.user.is_empty() {
            line(&format!("User={}", self.user));
        }
        if !wd.is_empty() {
            line(&format!("WorkingDirectory={}", escape_specifiers(wd)));
        }
        for (key, value) in &self.environment {
            line(&format!(
                "Environment={}",
                quote(&escape_specifiers(&format!("{key}={value}")))
            ));
        }
        for l in &self.credentials {
            line(l);
        }
        for l in &self.gpus {
            line(l);
        }
        line(&format!("Restart={restart}"));
        line("");
        line("[Install]");
        line("WantedBy=multi-user.target");
        Ok(out)
    }
}

/// A user name systemd accepts (the portable subset) or a numeric id.
fn valid_user(user: &str) -> bool {
    if user.len() > 32 {
        return false;
    }
    if user.chars().all(|c| c.is_ascii_digit()) {
        return true;
    }
    let mut chars = user.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `%` starts a specifier in most unit settings: `%%` is a literal `%`.
fn escape_specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// An `ExecStart=` value whose words reach the program exactly as given:
/// specifiers (`%`) and variables (`$`) doubled, words with anything but
/// plain characters double-quoted with C escapes (systemd.syntax(7),
/// systemd.service(5) "Command lines").
pub fn exec_line(argv: &[String]) -> String {
    argv.iter()
        .enumerate()
        .map(|(i, arg)| {
            let mut word = escape_specifiers(arg);
            // Variables are expanded in arguments, not in the program path.
            if i > 0 {
                word = word.replace('$', "$$");
            }
            let plain = !word.is_empty()
                && word != ";"
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._,:=+@%$-".contains(c));
            if plain {
                word
            } else {
                quote(&word)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `"text"` with C escapes for `\`, `"`, `'` and control characters.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

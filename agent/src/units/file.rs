//! Unit files Convoy writes: the spec checked, rendered per systemd.syntax
//! (quoting and escaping, so every argument reaches the program verbatim),
//! and written, read and deleted in the unit directory, never touching a
//! file that lacks Convoy's marker.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use convoy_proto::{UnitSpec, Workload};

/// Where systemd reads administrator units; Convoy writes its own here.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";
/// The first line of every unit file Convoy writes.
pub const HEADER: &str =
    "# Managed by Convoy (convoy-agent); do not edit — changes are overwritten";
/// The key that marks a unit file as Convoy's. A file without it is never
/// modified, stopped or deleted.
pub const MANAGED_KEY: &str = "X-Convoy-Managed";
pub const WORKLOAD_KEY: &str = "X-Convoy-Workload";
pub const SPEC_HASH_KEY: &str = "X-Convoy-Spec-Hash";
/// Written units are named `convoy-<name>.service`.
pub const PREFIX: &str = "convoy-";
pub const SUFFIX: &str = ".service";
/// The agent's own unit (`convoy-agent install`): never a workload's.
pub const AGENT_UNIT: &str = "convoy-agent.service";
const RESTARTS: [&str; 7] = [
    "no",
    "on-success",
    "on-failure",
    "on-abnormal",
    "on-watchdog",
    "on-abort",
    "always",
];
/// Written units restart on failure unless the spec says otherwise.
pub const DEFAULT_RESTART: &str = "on-failure";

/// What a unit workload asks for, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// Convoy writes `unit`'s file with `content`; it runs and is enabled.
    Write { unit: String, content: String },
    /// An existing unit, kept running or stopped, enabled or not.
    Adopt {
        unit: String,
        running: bool,
        enabled: bool,
    },
}

impl Want {
    pub fn unit(&self) -> &str {
        match self {
            Self::Write { unit, .. } | Self::Adopt { unit, .. } => unit,
        }
    }
}

/// Why a unit spec is refused (bad input is refused, never half-applied).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUnit {
    #[error("the workload has no unit spec")]
    NoSpec,
    #[error("unit name `{0}` is not valid: use letters, digits, `:`, `_`, `.`, `-` (and `@` or `\\` for adopted units), ending in `.service`")]
    Name(String),
    #[error("unit name `{0}`: units Convoy writes are named `convoy-<name>.service`")]
    NotConvoys(String),
    #[error("unit name `{0}` is the agent's own unit")]
    Reserved(String),
    #[error("exec_start is empty: give the program's absolute path and its arguments")]
    NoCommand,
    #[error("exec_start must begin with an absolute path, not `{0}`")]
    NotAbsolute(String),
    #[error("exec_start's program path `{0}` holds `$` or a control character")]
    BadProgram(String),
    #[error("environment variable name `{0}` is not valid: use letters, digits and `_`, not starting with a digit")]
    EnvName(String),
    #[error("environment variable `{0}` holds a newline or another control character")]
    EnvValue(String),
    #[error("user `{0}` is not a valid user name or id")]
    User(String),
    #[error(
        "working_directory `{0}` must be an absolute path (or `~`) without control characters"
    )]
    WorkingDirectory(String),
    #[error("restart `{0}` is not one of no, on-success, on-failure, on-abnormal, on-watchdog, on-abort, always")]
    Restart(String),
    #[error("state `{0}` is not `running` or `stopped`")]
    State(String),
    #[error("{field} holds a newline or another control character")]
    ControlCharacter { field: &'static str },
    #[error("adopted unit `{0}` cannot get credentials: systemd reads them from the unit file, which Convoy does not write for an adopted unit; let Convoy write the unit (drop `adopt`) or remove its secrets")]
    AdoptedCredentials(String),
    #[error("{0}")]
    Credential(String),
    #[error("credential `{0}` is given twice: give each its own name")]
    DuplicateCredential(String),
    #[error("the unit uses secrets, and this agent has no secrets directory")]
    NoSecretsDir,
    /// The plan's GPUs for the unit cannot be written (adopted, malformed).
    #[error("GPUs: {0}")]
    Gpus(String),
    #[error("the secrets directory {0} holds a space, `%` or a control character: systemd's LoadCredential= cannot name it; pass another --secrets-dir")]
    SecretsDirPath(String),
}

/// The checked want of a unit workload, on an agent without a secrets
/// directory (a unit with credentials is refused).
pub fn want_of(w: &Workload) -> Result<Want, InvalidUnit> {
    want_in(w, None)
}

/// The checked want of a unit workload; its credentials are loaded from
/// under `secrets_dir` (`crate::secrets` writes them there).
pub fn want_in(w: &Workload, secrets_dir: Option<&Path>) -> Result<Want, InvalidUnit> {
    let Some(convoy_proto::workload::Runtime::Unit(spec)) = &w.runtime else {
        return Err(InvalidUnit::NoSpec);
    };
    let UnitSpec {
        unit_name,
        adopt,
        exec_start,
        user,
        restart,
        environment,
        working_directory,
        description,
        state,
        enabled,
        credentials,
        gpu_uuids,
        gpu_indexes,
    } = spec;
    if *adopt {
        let unit = if unit_name.contains('.') {
            unit_name.clone()
        } else {
            format!("{unit_name}{SUFFIX}")
        };
        check_name(&unit, true)?;
        if unit == AGENT_UNIT {
            return Err(InvalidUnit::Reserved(unit));
        }
        if !credentials.is_empty() {
            return Err(InvalidUnit::AdoptedCredentials(unit));
        }
        if !gpu_uuids.is_empty() {
            return Err(InvalidUnit::Gpus(format!(
                "`{unit}` is adopted: Convoy never writes its file, so it cannot give it GPUs"
            )));
        }
        let running = match state.as_str() {
            "" | "running" => true,
            "stopped" => false,
            other => return Err(InvalidUnit::State(other.to_string())),
        };
        return Ok(Want::Adopt {
            unit,
            running,
            enabled: *enabled,
        });
    }
    let unit = if unit_name.is_empty() {
        format!("{PREFIX}{}{SUFFIX}", w.service)
    } else {
        unit_name.clone()
    };
    check_name(&unit, false)?;
    if !unit.starts_with(PREFIX) || unit.len() <= PREFIX.len() + SUFFIX.len() {
        return Err(InvalidUnit::NotConvoys(unit));
    }
    if unit == AGENT_UNIT {
        return Err(InvalidUnit::Reserved(unit));
    }
    let credentials = credential_lines(&unit, credentials, secrets_dir)?;
    let gpus = gpu_lines(gpu_uuids, gpu_indexes)?;
    let spec = Rendered {
        workload_id: &w.id,
        spec_hash: &w.spec_hash,
        description,
        exec_start,
        user,
        restart,
        environment: environment.iter().collect(),
        working_directory,
        credentials,
        gpus,
    };
    let content = spec.render()?;
    Ok(Want::Write { unit, content })
}

/// The device nodes every CUDA program needs beside its GPUs' own.
const NVIDIA_SHARED_DEVICES: [&str; 3] =
    ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];

/// The GPU lines of a written unit: `DeviceAllow=` for the NVIDIA control
/// devices and each pinned GPU's `/dev/nvidiaINDEX` (so the unit sees no
/// other GPU: with a `DeviceAllow=`, systemd closes every device not
/// listed but the pseudo devices), and `CUDA_VISIBLE_DEVICES` and
/// `NVIDIA_VISIBLE_DEVICES` set to the UUIDs (written after the spec's
/// `environment`, so they win).
fn gpu_lines(uuids: &[String], indexes: &[u32]) -> Result<Vec<String>, InvalidUnit> {
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
fn credential_lines(
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

fn check_name(unit: &str, adopted: bool) -> Result<(), InvalidUnit> {
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

struct Rendered<'a> {
    workload_id: &'a str,
    spec_hash: &'a str,
    description: &'a str,
    exec_start: &'a [String],
    user: &'a str,
    restart: &'a str,
    environment: BTreeMap<&'a String, &'a String>,
    working_directory: &'a str,
    /// `LoadCredential=` lines and their comments, checked.
    credentials: Vec<String>,
    /// `DeviceAllow=` and the visible-devices variables, checked.
    gpus: Vec<String>,
}

impl Rendered<'_> {
    fn render(&self) -> Result<String, InvalidUnit> {
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

/// A unit file as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnDisk {
    Missing,
    /// Written by Convoy (it carries `X-Convoy-Managed=true`).
    Managed {
        content: String,
    },
    /// Not Convoy's: a file without the marker, a symlink (a mask), a
    /// directory, or a file that cannot be read.
    Foreign {
        path: PathBuf,
        why: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path} exists and was not written by Convoy ({why}): Convoy leaves it alone; remove it or use another unit name")]
    Foreign { path: PathBuf, why: String },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The unit directory Convoy writes into.
#[derive(Clone, Debug)]
pub struct UnitFiles {
    dir: PathBuf,
}

impl UnitFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, unit: &str) -> PathBuf {
        self.dir.join(unit)
    }

    /// What is at `unit`'s path.
    pub async fn read(&self, unit: &str) -> OnDisk {
        let path = self.path(unit);
        match tokio::fs::symlink_metadata(&path).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return OnDisk::Missing,
            Err(e) => {
                return OnDisk::Foreign {
                    path,
                    why: format!("cannot inspect it: {e}"),
                }
            }
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = tokio::fs::read_link(&path)
                    .await
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                let why = if target == "/dev/null" {
                    "it is masked".to_string()
                } else {
                    format!("it is a symlink to `{target}`")
                };
                return OnDisk::Foreign { path, why };
            }
            Ok(meta) if !meta.is_file() => {
                return OnDisk::Foreign {
                    path,
                    why: "it is not a regular file".to_string(),
                }
            }
            Ok(_) => {}
        }
        match tokio::fs::read_to_string(&path).await {
            Ok(content) if is_managed(&content) => OnDisk::Managed { content },
            Ok(_) => OnDisk::Foreign {
                path,
                why: format!("no {MANAGED_KEY}=true"),
            },
            Err(e) => OnDisk::Foreign {
                path,
                why: format!("cannot read it: {e}"),
            },
        }
    }

    /// Writes `content` as `unit`'s file (0644, a temporary file renamed
    /// over it), unless a file Convoy did not write is there.
    pub async fn write(&self, unit: &str, content: &str) -> Result<(), FileError> {
        if let OnDisk::Foreign { path, why } = self.read(unit).await {
            return Err(FileError::Foreign { path, why });
        }
        let dir = self.dir.clone();
        let unit = unit.to_string();
        let content = content.to_string();
        let path = self.path(&unit);
        tokio::task::spawn_blocking(move || write_atomically(&dir, &unit, content.as_bytes()))
            .await
            .map_err(|e| FileError::Io {
                context: "writing",
                path: path.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| FileError::Io {
                context: "writing",
                path,
                source,
            })
    }

    /// Deletes `unit`'s file if Convoy wrote it; a missing file is fine.
    pub async fn delete(&self, unit: &str) -> Result<(), FileError> {
        let path = self.path(unit);
        match self.read(unit).await {
            OnDisk::Missing => Ok(()),
            OnDisk::Foreign { path, why } => Err(FileError::Foreign { path, why }),
            OnDisk::Managed { .. } => match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(FileError::Io {
                    context: "deleting",
                    path,
                    source: e,
                }),
                _ => Ok(()),
            },
        }
    }

    /// The `convoy-*.service` files in the directory that Convoy wrote, by
    /// unit name, with the workload each names. A directory that cannot be
    /// read has none.
    pub async fn managed(&self) -> Result<BTreeMap<String, String>, FileError> {
        let mut out = BTreeMap::new();
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => {
                return Err(FileError::Io {
                    context: "listing",
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !name.starts_with(PREFIX) || !name.ends_with(SUFFIX) || name == AGENT_UNIT {
                continue;
            }
            if let OnDisk::Managed { content } = self.read(&name).await {
                let workload = key_of(&content, WORKLOAD_KEY).unwrap_or_default();
                out.insert(name, workload);
            }
        }
        Ok(out)
    }
}

/// Whether a unit file carries Convoy's marker.
pub fn is_managed(content: &str) -> bool {
    key_of(content, MANAGED_KEY).as_deref() == Some("true")
}

/// The value of `key=` on a line of its own.
pub fn key_of(content: &str, key: &str) -> Option<String> {
    content.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// Writes `dir/unit` as a temporary file renamed over it, mode 0644.
pub fn write_atomically(dir: &Path, unit: &str, bytes: &[u8]) -> std::io::Result<()> {
    // Not a unit name (leading dot, `.tmp`): systemd never loads it.
    let tmp = dir.join(format!(".{unit}.convoy.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        // Whatever the umask: systemd and admins read unit files.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(unit))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

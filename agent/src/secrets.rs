//! Secret values on this node. The coordinator sends, in each plan, the
//! values of exactly the secret versions this node's containers and units
//! use; the agent keeps them in memory (`SecretValues`, zeroed on drop,
//! `Debug` redacted) and writes them to one place only, the secrets
//! directory (`--secrets-dir`, default `/run/convoy-agent/secrets`), which
//! must be on tmpfs (or ramfs): checked at start in `/proc/self/mountinfo`.
//! If it is not, every workload that needs a secret fails saying so, and
//! nothing is written there. `plan.pb` never holds a value.
//!
//! Layout (directories 0700, files written to a temporary name and renamed):
//! - `DIR/values/SHA256` (0400): the node's cache of the values of its
//!   plan, named by the hex SHA-256 of `ENV/NAME@vVERSION`; rewritten with
//!   every new plan, values the plan no longer holds deleted.
//! - `DIR/containers/CONTAINER/N`: the file of the container's N-th secret
//!   mount (owner: the mount's uid/gid, else the numeric part of the
//!   container's `user`, else root; mode the mount's, else 0400),
//!   bind-mounted read-only at its target (a relative target goes under
//!   `/run/secrets/`). Removed once the container is gone.
//! - `DIR/units/UNIT/ID` (0400, root): a unit's credential, which its unit
//!   file loads with `LoadCredential=ID:PATH` (systemd copies it into
//!   `$CREDENTIALS_DIRECTORY/ID` when the unit starts).
//!
//! While the coordinator is away the agent keeps enforcing its last plan,
//! and a consumer that dies is started again by the agent: its files are
//! still on the tmpfs. When the agent itself restarts, it reloads the
//! values its stored plan references from `DIR/values` (the agent's unit
//! keeps its runtime directory across restarts). A host reboot clears the
//! tmpfs: then the consumers wait for the coordinator to send the plan
//! again, failing with an error that says so (as Swarm's workers do).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use convoy_proto::{workload, SecretMount, Workload};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Where the agent keeps secret values unless `--secrets-dir` says otherwise.
pub const DEFAULT_SECRETS_DIR: &str = "/run/convoy-agent/secrets";
/// Where a relative secret target goes in a container (Compose's default).
pub const SECRETS_DIR_IN_CONTAINER: &str = "/run/secrets";
/// A secret file's mode when its mount leaves it at 0.
pub const DEFAULT_MODE: u32 = 0o400;
const VALUES: &str = "values";
const CONTAINERS: &str = "containers";
const UNITS: &str = "units";
/// File systems that keep their files in memory only.
const MEMORY_FS: [&str; 2] = ["tmpfs", "ramfs"];

/// One version of one secret of one environment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretKey {
    pub env: String,
    pub name: String,
    pub version: u64,
}

impl SecretKey {
    /// The key of the secret `mount` names, for a workload of `env`.
    pub fn of(env: &str, mount: &SecretMount) -> Self {
        Self {
            env: env.to_string(),
            name: mount.name.clone(),
            version: mount.version,
        }
    }

    /// The key of the secret `r` names (an ingress' certificate or key),
    /// for a workload of `env`.
    pub fn of_ref(env: &str, r: &convoy_proto::SecretRef) -> Self {
        Self {
            env: env.to_string(),
            name: r.name.clone(),
            version: r.version,
        }
    }

    /// The name of its file in the values cache: no name or environment in
    /// clear on the disk, and no path characters from the plan.
    fn file_name(&self) -> String {
        hex::encode(Sha256::digest(self.to_string().as_bytes()))
    }
}

impl std::fmt::Display for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@v{}", self.env, self.name, self.version)
    }
}

/// A value, zeroed when dropped. No `Debug`.
#[derive(Clone, PartialEq, Eq)]
struct Value(Zeroizing<Vec<u8>>);

/// Where the values a plan holds came from, for the error a missing one
/// gives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// Sent with the plan.
    #[default]
    Coordinator,
    /// Read back from `DIR/values` when the agent started with a stored plan.
    Cache,
}

/// The secret values a plan holds. `Debug` shows the keys, never a value.
#[derive(Clone, Default)]
pub struct SecretValues {
    values: BTreeMap<SecretKey, Value>,
    origin: Origin,
}

impl PartialEq for SecretValues {
    /// The same values, wherever they came from.
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValues")
            .field(
                "keys",
                &self
                    .values
                    .keys()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
            .field("values", &"<redacted>")
            .field("origin", &self.origin)
            .finish()
    }
}

impl SecretValues {
    pub fn with_origin(origin: Origin) -> Self {
        Self {
            values: BTreeMap::new(),
            origin,
        }
    }

    /// Adds (or replaces) one value; `value` is zeroed when dropped.
    pub fn insert(&mut self, key: SecretKey, value: Vec<u8>) {
        self.values.insert(key, Value(Zeroizing::new(value)));
    }

    pub fn get(&self, key: &SecretKey) -> Option<&[u8]> {
        self.values.get(key).map(|v| v.0.as_slice())
    }

    pub fn keys(&self) -> impl Iterator<Item = &SecretKey> {
        self.values.keys()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Those of `keys` it holds, with the same origin.
    pub fn subset<'a>(&self, keys: impl IntoIterator<Item = &'a SecretKey>) -> Self {
        let mut out = Self::with_origin(self.origin);
        for key in keys {
            if let Some(v) = self.values.get(key) {
                out.values.insert(key.clone(), v.clone());
            }
        }
        out
    }
}

/// The secret mounts of a workload's container or unit.
pub fn mounts_of(w: &Workload) -> &[SecretMount] {
    match &w.runtime {
        Some(workload::Runtime::Container(spec)) => &spec.secrets,
        Some(workload::Runtime::Unit(spec)) => &spec.credentials,
        // Swarm services get their secrets as Swarm secrets (the driver),
        // never as files of this node.
        Some(workload::Runtime::Swarm(_)) | None => &[],
    }
}

/// What a container gets: its files, and (when the spec opts in) variables.
#[derive(Clone, Default, PartialEq)]
pub struct Delivery {
    pub files: Vec<SecretFile>,
    env: Vec<(String, Zeroizing<String>)>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("files", &self.files)
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Delivery {
    /// `VAR=VALUE` for each secret given as an environment variable.
    pub fn env_lines(&self) -> Vec<String> {
        self.env
            .iter()
            .map(|(k, v)| format!("{k}={}", **v))
            .collect()
    }

    /// The names of the variables it sets.
    pub fn env_names(&self) -> Vec<&str> {
        self.env.iter().map(|(k, _)| k.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.env.is_empty()
    }
}

/// One secret file on the tmpfs and where it is mounted in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretFile {
    /// Absolute, under `DIR/containers/CONTAINER/`.
    pub source: PathBuf,
    /// Absolute, in the container.
    pub target: String,
}

/// The node's secrets directory.
#[derive(Clone, Debug)]
pub struct NodeSecrets {
    dir: PathBuf,
    /// Set: why nothing may be written there (not tmpfs, not creatable).
    problem: Option<String>,
}

impl NodeSecrets {
    /// Creates `dir` (0700) and checks that it is on tmpfs. Never fails:
    /// a problem fails only the workloads that need a secret. Blocking.
    pub fn open(dir: PathBuf) -> Self {
        let problem = match prepare_dir(&dir) {
            Err(e) => Some(format!(
                "secrets dir {} cannot be created: {e}; pass --secrets-dir DIR on a tmpfs",
                dir.display()
            )),
            Ok(canonical) => match std::fs::read_to_string("/proc/self/mountinfo") {
                Err(e) => Some(format!(
                    "secrets dir {}: cannot read /proc/self/mountinfo to check it is on tmpfs: {e}",
                    dir.display()
                )),
                Ok(mountinfo) => match fs_type_of(&mountinfo, &canonical) {
                    Some(fs) if MEMORY_FS.contains(&fs.as_str()) => None,
                    found => Some(format!(
                        "secrets dir {} is on {}, not tmpfs: secret values would reach the \
                         disk, so none is written; mount a tmpfs there or pass \
                         --secrets-dir DIR on one (e.g. under /run)",
                        dir.display(),
                        found.as_deref().unwrap_or("an unknown file system")
                    )),
                },
            },
        };
        let dir = dir.canonicalize().unwrap_or(dir);
        Self { dir, problem }
    }

    /// `dir` without the tmpfs check: for tests on a temporary directory.
    pub fn unchecked(dir: PathBuf) -> std::io::Result<Self> {
        let dir = prepare_dir(&dir)?;
        Ok(Self { dir, problem: None })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Why secrets cannot be delivered on this node, if they cannot.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    fn usable(&self) -> Result<(), String> {
        self.problem.clone().map_or(Ok(()), Err)
    }

    fn values_dir(&self) -> PathBuf {
        self.dir.join(VALUES)
    }

    /// Replaces the cache with `values`: each written (when it changed),
    /// each other file removed. Nothing is written where the directory is
    /// not on tmpfs. Blocking.
    pub fn store_cache(&self, values: &SecretValues) -> Result<(), String> {
        self.usable()?;
        let dir = self.values_dir();
        create_private_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut keep = HashSet::new();
        for (key, value) in &values.values {
            let name = key.file_name();
            write_file(&dir.join(&name), &value.0, None, DEFAULT_MODE)
                .map_err(|e| format!("caching secret `{key}`: {e}"))?;
            keep.insert(name);
        }
        remove_others(&dir, &keep, false);
        Ok(())
    }

    /// The values of `keys` found in the cache (a missing one is left
    /// out: the workloads that need it say so). Blocking.
    pub fn load_cache(&self, keys: impl IntoIterator<Item = SecretKey>) -> SecretValues {
        let mut out = SecretValues::with_origin(Origin::Cache);
        if self.problem.is_some() {
            return out;
        }
        let dir = self.values_dir();
        for key in keys {
            let path = dir.join(key.file_name());
            match std::fs::read(&path) {
                Ok(bytes) => out.insert(key, bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(secret = %key, "cannot read {}: {e}", path.display()),
            }
        }
        out
    }

    /// Why `key`, needed by `consumer`, is not there.
    fn missing(&self, key: &SecretKey, consumer: &str, origin: Origin) -> String {
        let SecretKey { env, name, version } = key;
        match origin {
            Origin::Coordinator => format!(
                "secret `{name}` v{version} (environment `{env}`) needed by `{consumer}` is not \
                 in the plan this node got: the coordinator sent no value for it"
            ),
            Origin::Cache => format!(
                "secret `{name}` v{version} (environment `{env}`) needed by `{consumer}` is not \
                 on this node: the agent started without its coordinator and {} holds no copy \
                 (a reboot clears it); it starts once the coordinator is reachable again",
                self.values_dir().display()
            ),
        }
    }

    /// The value of every mount of `w`, or why one is missing.
    fn values_for<'a>(
        &self,
        w: &Workload,
        values: &'a SecretValues,
    ) -> Result<Vec<(&'a [u8], SecretKey)>, String> {
        mounts_of(w)
            .iter()
            .map(|m| {
                let key = SecretKey::of(&w.env, m);
                match values.get(&key) {
                    Some(v) => Ok((v, key)),
                    None => Err(self.missing(&key, &w.id, values.origin)),
                }
            })
            .collect()
    }

    /// Writes the secret files of `w`'s container `name` (those already
    /// there and equal are kept) and says what to mount and set. Blocking.
    pub fn prepare_container(
        &self,
        name: &str,
        w: &Workload,
        values: &SecretValues,
    ) -> Result<Delivery, String> {
        let Some(workload::Runtime::Container(spec)) = &w.runtime else {
            return Ok(Delivery::default());
        };
        if spec.secrets.is_empty() {
            return Ok(Delivery::default());
        }
        self.usable()?;
        check_dir_name(name)?;
        let found = self.values_for(w, values)?;
        let (default_uid, default_gid) = owner_of_user(&spec.user);
        let dir = self.dir.join(CONTAINERS).join(name);
        let mut delivery = Delivery::default();
        let mut targets = HashSet::new();
        for (i, (m, (value, _))) in spec.secrets.iter().zip(&found).enumerate() {
            let fail = |why: String| format!("secret `{}` for `{}`: {why}", m.name, w.id);
            if !m.env_var.is_empty() {
                if !valid_env_name(&m.env_var) {
                    return Err(fail(format!(
                        "`{}` is not a valid environment variable name",
                        m.env_var
                    )));
                }
                let text = std::str::from_utf8(value)
                    .ok()
                    .filter(|t| !t.contains('\0'))
                    .ok_or_else(|| {
                        fail(
                            "its value is not text, so it cannot be an environment variable; \
                              read it from its file instead"
                                .to_string(),
                        )
                    })?;
                delivery
                    .env
                    .push((m.env_var.clone(), Zeroizing::new(text.to_string())));
            }
            if m.target.is_empty() {
                if m.env_var.is_empty() {
                    return Err(fail("it has neither a target nor a variable".to_string()));
                }
                continue;
            }
            let target = container_target(&m.target).map_err(fail)?;
            if !targets.insert(target.clone()) {
                return Err(fail(format!(
                    "two secrets are mounted at `{target}`: give each its own target"
                )));
            }
            create_private_dir(&dir)
                .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
            let source = dir.join(i.to_string());
            let owner = (m.uid.unwrap_or(default_uid), m.gid.unwrap_or(default_gid));
            let mode = if m.mode & 0o777 == 0 {
                DEFAULT_MODE
            } else {
                m.mode & 0o777
            };
            write_file(&source, value, Some(owner), mode).map_err(fail)?;
            delivery.files.push(SecretFile { source, target });
        }
        Ok(delivery)
    }

    /// Where one-off containers' (`convoy run`) secret files go: beside
    /// the workloads' (same tmpfs, same checks), out of reach of
    /// [`Self::collect_containers`], which sweeps only the workloads'.
    pub fn for_runs(&self) -> Self {
        Self {
            dir: self.dir.join("runs"),
            problem: self.problem.clone(),
        }
    }

    /// Removes the secret files of container `name`. Blocking.
    pub fn forget_container(&self, name: &str) {
        if check_dir_name(name).is_ok() {
            let _ = std::fs::remove_dir_all(self.dir.join(CONTAINERS).join(name));
        }
    }

    /// Removes the secret files of every container not in `keep` (by
    /// name). Blocking.
    pub fn collect_containers(&self, keep: &HashSet<String>) {
        remove_others(&self.dir.join(CONTAINERS), keep, true);
    }

    /// Where unit `unit`'s credential `id` is written.
    pub fn credential_path(dir: &Path, unit: &str, id: &str) -> PathBuf {
        dir.join(UNITS).join(unit).join(id)
    }

    /// Writes the credentials of unit workload `w`, whose unit is `unit`.
    /// Blocking.
    pub fn prepare_unit(
        &self,
        unit: &str,
        w: &Workload,
        values: &SecretValues,
    ) -> Result<(), String> {
        let Some(workload::Runtime::Unit(spec)) = &w.runtime else {
            return Ok(());
        };
        if spec.credentials.is_empty() {
            return Ok(());
        }
        self.usable()?;
        check_dir_name(unit)?;
        let found = self.values_for(w, values)?;
        let dir = self.dir.join(UNITS).join(unit);
        create_private_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut keep = HashSet::new();
        for (m, (value, _)) in spec.credentials.iter().zip(&found) {
            let id = credential_id(m);
            check_credential_id(id)?;
            write_file(&dir.join(id), value, None, DEFAULT_MODE)
                .map_err(|e| format!("credential `{id}` of `{unit}`: {e}"))?;
            keep.insert(id.to_string());
        }
        remove_others(&dir, &keep, false);
        Ok(())
    }

    /// Removes the credentials of every unit not in `keep`. Blocking.
    pub fn collect_units(&self, keep: &HashSet<String>) {
        remove_others(&self.dir.join(UNITS), keep, true);
    }
}

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

fn check_dir_name(name: &str) -> Result<(), String> {
    check_credential_id(name).map_err(|_| format!("`{name}` cannot name a directory"))
}

/// The target in the container: absolute as given, a relative one under
/// `/run/secrets/`; no `.` or `..` parts.
fn container_target(target: &str) -> Result<String, String> {
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

fn valid_env_name(name: &str) -> bool {
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

/// Creates `dir` (and its parents) and makes it 0700; its canonical path.
fn prepare_dir(dir: &Path) -> std::io::Result<PathBuf> {
    create_private_dir(dir)?;
    dir.canonicalize()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `value` at `path` unless a regular file with the same content,
/// owner and mode is there: to a temporary file first, then renamed.
fn write_file(
    path: &Path,
    value: &[u8],
    owner: Option<(u32, u32)>,
    mode: u32,
) -> Result<(), String> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let same = meta.file_type().is_file()
            && meta.permissions().mode() & 0o777 == mode
            && owner.is_none_or(|(u, g)| meta.uid() == u && meta.gid() == g)
            && meta.len() == value.len() as u64
            && std::fs::read(path).is_ok_and(|old| Zeroizing::new(old).as_slice() == value);
        if same {
            return Ok(());
        }
    }
    let tmp = PathBuf::from(format!(
        "{}.tmp-{}-{:x}",
        path.display(),
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(value)?;
        drop(file);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing {}: {e}", path.display()));
    }
    Ok(())
}

/// Removes every entry of `dir` whose name is not in `keep` (whole
/// directories when `dirs`). Best effort.
fn remove_others(dir: &Path, keep: &HashSet<String>, dirs: bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep.contains(&name) {
            continue;
        }
        let path = entry.path();
        let removed = if dirs && entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), "cannot remove old secret files: {e}");
        }
    }
}

/// The file system type of the mount `path` (canonical) is on, from the
/// text of `/proc/self/mountinfo`: the longest mount point that holds it.
pub fn fs_type_of(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let Some(fs) = right.split(' ').next() else {
            continue;
        };
        let point = PathBuf::from(unescape_mountinfo(point));
        if !path.starts_with(&point) {
            continue;
        }
        let depth = point.components().count();
        // A later mount on the same point hides an earlier one.
        if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            best = Some((depth, fs.to_string()));
        }
    }
    best.map(|(_, fs)| fs)
}

/// Mountinfo writes space, tab, newline and `\` as octal escapes.
fn unescape_mountinfo(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(d)) = (bytes[i], octal) {
            let n = d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(n).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The keys of every secret the workloads reference: their mounts, and
/// the certificates and keys of their ingress (the proxy's TLS listener).
pub fn refs_of<'a>(workloads: impl IntoIterator<Item = &'a Workload>) -> BTreeSet<SecretKey> {
    workloads
        .into_iter()
        .flat_map(|w| {
            let mounts = mounts_of(w).iter().map(|m| SecretKey::of(&w.env, m));
            let tls = w
                .ingress
                .iter()
                .flat_map(|i| &i.tls)
                .flat_map(|t| [&t.certificate, &t.key])
                .flatten()
                .map(|r| SecretKey::of_ref(&w.env, r));
            mounts.chain(tls)
        })
        .collect()
}

#[cfg(test)]
mod tests;

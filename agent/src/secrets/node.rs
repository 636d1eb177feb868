//! The node's secrets directory: the values cache, containers' secret
//! files (bind-mounted) and units' credentials, and what a container gets.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use convoy_proto::{workload, Workload};
use zeroize::Zeroizing;

use super::files::{create_private_dir, fs_type_of, prepare_dir, remove_others, write_file};
use super::names::{
    check_credential_id, check_dir_name, container_target, credential_id, owner_of_user,
    valid_env_name,
};
use super::values::{Origin, SecretKey, SecretValues};
use super::{mounts_of, CONTAINERS, DEFAULT_MODE, MEMORY_FS, UNITS, VALUES};

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

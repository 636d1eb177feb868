//! The top-level `secrets:` as far as the CLI reads them: the bytes of
//! each `file:` (relative to the first spec file's directory, as Compose's
//! project directory) and the value of each `environment:` variable (from
//! the variables interpolation uses), sent beside the spec
//! (`ApplyRequest.secret_files`, `secret_env`). Only the secrets some
//! service or unit uses are read: a declared but unused secret's value
//! never leaves this machine. Nothing here prints a value: errors name the
//! secret, the file and the variable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{anyhow, Result};

use super::configs::location;
use super::Variables;

/// The most bytes of a secret's value (as the coordinator checks).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// What the CLI sends for `secrets:`: files by the path as written,
/// variables by name. `Debug` shows the names only.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct SecretInputs {
    pub files: BTreeMap<String, Vec<u8>>,
    pub env: BTreeMap<String, Vec<u8>>,
}

impl SecretInputs {
    /// Bytes in all, counted with the spec against its size limit.
    pub fn total_bytes(&self) -> usize {
        let files: usize = self.files.iter().map(|(k, v)| k.len() + v.len()).sum();
        let env: usize = self.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        files + env
    }
}

impl std::fmt::Debug for SecretInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretInputs")
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct Declared {
    #[serde(default)]
    secrets: Option<BTreeMap<String, Option<Def>>>,
}

#[derive(serde::Deserialize)]
struct Def {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    environment: Option<String>,
}

/// Who uses which secret: services' and units' `secrets:` and services'
/// `x-convoy.secret_env`.
#[derive(serde::Deserialize)]
struct Users {
    #[serde(default)]
    services: Option<BTreeMap<String, Option<User>>>,
    #[serde(default)]
    units: Option<BTreeMap<String, Option<User>>>,
}

#[derive(serde::Deserialize)]
struct User {
    #[serde(default)]
    secrets: Option<Vec<Mount>>,
    #[serde(rename = "x-convoy", default)]
    convoy: Option<UserConvoy>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Mount {
    Key(String),
    Long { source: String },
}

#[derive(serde::Deserialize)]
struct UserConvoy {
    #[serde(default)]
    secret_env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    ingress: Option<UserIngress>,
}

/// `x-convoy.ingress.tls[]`: its certificates and keys are secrets too.
#[derive(serde::Deserialize)]
struct UserIngress {
    #[serde(default)]
    tls: Option<Vec<UserTls>>,
}

#[derive(serde::Deserialize)]
struct UserTls {
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

/// The keys of the secrets `content`'s services and units use; `None`
/// when the CLI cannot tell (then every declared secret is read, and the
/// coordinator explains what is wrong with the spec).
fn used(content: &str) -> Option<BTreeSet<String>> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: 32, max_nodes: 100_000 },
    };
    let users = serde_saphyr::from_str_with_options::<Users>(content, options).ok()?;
    let mut used = BTreeSet::new();
    let all = users
        .services
        .unwrap_or_default()
        .into_values()
        .chain(users.units.unwrap_or_default().into_values())
        .flatten();
    for user in all {
        for mount in user.secrets.unwrap_or_default() {
            used.insert(match mount {
                Mount::Key(key) | Mount::Long { source: key } => key,
            });
        }
        let Some(convoy) = user.convoy else {
            continue;
        };
        used.extend(convoy.secret_env.unwrap_or_default().into_values());
        let tls = convoy.ingress.and_then(|i| i.tls).unwrap_or_default();
        used.extend(
            tls.into_iter()
                .flat_map(|t| [t.certificate, t.key])
                .flatten(),
        );
    }
    Some(used)
}

/// Reads the inputs of the secrets `content` declares and its services or
/// units use; `dir` is where relative `file:` paths start. A spec the CLI
/// cannot read is left for the coordinator to explain.
pub fn read(filename: &str, content: &str, dir: &Path, vars: &Variables) -> Result<SecretInputs> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: 32, max_nodes: 100_000 },
    };
    let Ok(declared) = serde_saphyr::from_str_with_options::<Declared>(content, options) else {
        return Ok(SecretInputs::default());
    };
    let used = used(content);
    let mut inputs = SecretInputs::default();
    for (key, def) in declared.secrets.unwrap_or_default() {
        let Some(def) = def else { continue };
        if used.as_ref().is_some_and(|used| !used.contains(&key)) {
            continue;
        }
        if let Some(path) = def.file {
            if inputs.files.contains_key(&path) {
                continue;
            }
            let at = location(filename, content, "secrets", &key, "file");
            let bytes = read_file(&dir.join(&path))
                .map_err(|why| anyhow!("{at}: secrets.{key}.file: {why}"))?;
            inputs.files.insert(path, bytes);
        }
        if let Some(var) = def.environment {
            let at = location(filename, content, "secrets", &key, "environment");
            let fail = |why: String| anyhow!("{at}: secrets.{key}.environment: {why}");
            let Some(value) = vars.get(&var) else {
                return Err(fail(format!(
                    "the variable `{var}` is not set: set it in the shell or in `.env` (or a \
                     file given with `--env-file`)"
                )));
            };
            if value.is_empty() {
                return Err(fail(format!(
                    "the variable `{var}` is empty: a secret needs at least one byte"
                )));
            }
            if value.len() > MAX_SECRET_BYTES {
                return Err(fail(format!(
                    "the variable `{var}` holds {} bytes, over the limit of {MAX_SECRET_BYTES} \
                     bytes (64 KiB) for a secret",
                    value.len()
                )));
            }
            inputs.env.insert(var, value.into_bytes());
        }
    }
    Ok(inputs)
}

/// A secret's file, exactly as it is (no newline dropped): 1 byte to
/// [`MAX_SECRET_BYTES`], refused without reading a larger one whole.
fn read_file(full: &Path) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read as _;
    let cannot = |e: std::io::Error| format!("cannot read `{}`: {e}", full.display());
    let file = std::fs::File::open(full).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "`{}` is over the limit of {MAX_SECRET_BYTES} bytes (64 KiB) for a secret",
            full.display()
        ));
    }
    if bytes.is_empty() {
        return Err(format!(
            "`{}` is empty: a secret needs at least one byte",
            full.display()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "services:\n  web:\n    image: x\n    secrets:\n      - db\n      - source: tls\n        target: tls.key\n    x-convoy:\n      secret_env: {API: api}\nunits:\n  backup:\n    exec_start: /bin/backup\n    secrets: [s3]\nsecrets:\n  db:\n    file: ./secrets/db.txt\n  tls:\n    file: tls.key\n  api:\n    environment: CONVOY_T_SECRET_API\n  s3:\n    environment: CONVOY_T_SECRET_S3\n  unused:\n    file: ./missing.txt\n  old:\n    environment: CONVOY_T_SECRET_UNSET\n  ext:\n    external: true\n";

    /// The variables of an env file: no test changes the process's own
    /// (tests run in parallel).
    fn vars() -> Variables {
        let pairs = [
            ("CONVOY_T_SECRET_API", "api-value"),
            ("CONVOY_T_SECRET_S3", "s3-value"),
            ("CONVOY_T_SECRET_EMPTY", ""),
        ];
        Variables {
            from_files: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn dir_with_files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        std::fs::write(dir.path().join("secrets/db.txt"), b"pw\n").unwrap();
        std::fs::write(dir.path().join("tls.key"), [0u8, 1, 2, 255]).unwrap();
        dir
    }

    #[test]
    fn files_and_variables_of_used_secrets_are_read_exactly() {
        let dir = dir_with_files();
        let inputs = read("app.yaml", SPEC, dir.path(), &vars()).unwrap();
        assert_eq!(inputs.files["./secrets/db.txt"], b"pw\n");
        assert_eq!(inputs.files["tls.key"], [0u8, 1, 2, 255]);
        assert_eq!(inputs.env["CONVOY_T_SECRET_API"], b"api-value");
        assert_eq!(inputs.env["CONVOY_T_SECRET_S3"], b"s3-value");
        // `unused` and `old` are used by nothing: neither read nor needed.
        assert_eq!(inputs.files.len() + inputs.env.len(), 4);
        let debug = format!("{inputs:?}");
        assert!(!debug.contains("api-value"), "{debug}");
        assert!(debug.contains("CONVOY_T_SECRET_API"), "{debug}");
    }

    #[test]
    fn an_ingress_certificate_and_key_are_read_as_used_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("site.crt"), b"chain").unwrap();
        std::fs::write(dir.path().join("site.key"), b"key").unwrap();
        std::fs::write(dir.path().join("both.pem"), b"both").unwrap();
        let spec = "services:\n  web:\n    image: x\n    x-convoy:\n      ingress:\n        \
                    routes: [{port: 80}]\n        tls:\n          - {hosts: [a.example.com], \
                    certificate: crt, key: key}\n          - {hosts: [b.example.com], \
                    certificate: both}\nsecrets:\n  crt: {file: site.crt}\n  key: {file: \
                    site.key}\n  both: {file: both.pem}\n  unused: {file: nope.txt}\n";
        let inputs = read("app.yaml", spec, dir.path(), &vars()).unwrap();
        let files: Vec<_> = inputs.files.keys().map(String::as_str).collect();
        assert_eq!(files, ["both.pem", "site.crt", "site.key"]);
        assert_eq!(inputs.files["site.key"], b"key");
    }

    #[test]
    fn a_missing_or_empty_file_names_the_spec_line_and_secret() {
        let dir = tempfile::tempdir().unwrap();
        let err = read("app.yaml", SPEC, dir.path(), &vars())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("app.yaml:16: secrets.db.file: cannot read `"),
            "{err}"
        );
        let dir = dir_with_files();
        std::fs::write(dir.path().join("tls.key"), b"").unwrap();
        let err = read("app.yaml", SPEC, dir.path(), &vars())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("app.yaml:18: secrets.tls.file: `"), "{err}");
        assert!(err.contains("is empty"), "{err}");
    }

    #[test]
    fn a_file_over_64_kib_is_refused_without_its_content() {
        let dir = dir_with_files();
        let mut big = b"canary-secret".to_vec();
        big.resize(MAX_SECRET_BYTES + 1, b'a');
        std::fs::write(dir.path().join("tls.key"), &big).unwrap();
        let err = read("app.yaml", SPEC, dir.path(), &vars())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("app.yaml:18: secrets.tls.file: `"), "{err}");
        assert!(err.contains("over the limit of 65536 bytes"), "{err}");
        assert!(!err.contains("canary"), "{err}");
    }

    #[test]
    fn an_unset_or_empty_variable_is_named_without_a_value() {
        let dir = dir_with_files();
        let spec = "services:\n  web:\n    image: x\n    secrets: [motd]\nsecrets:\n  motd:\n    environment: CONVOY_T_SECRET_NOT_SET\n";
        let err = read("app.yaml", spec, dir.path(), &vars())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "app.yaml:7: secrets.motd.environment: the variable `CONVOY_T_SECRET_NOT_SET` is not set"
            ),
            "{err}"
        );
        let spec = spec.replace("CONVOY_T_SECRET_NOT_SET", "CONVOY_T_SECRET_EMPTY");
        let err = read("app.yaml", &spec, dir.path(), &vars())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`CONVOY_T_SECRET_EMPTY` is empty"), "{err}");
    }

    #[test]
    fn without_a_readable_service_list_every_declared_secret_is_read() {
        let dir = dir_with_files();
        // `secrets` of a service as a mapping: the coordinator will refuse
        // it; the CLI cannot tell which secrets are used, so reads all.
        let spec = "services:\n  web:\n    image: x\n    secrets: {db: 1}\nsecrets:\n  db:\n    file: ./secrets/db.txt\n  tls:\n    file: tls.key\n";
        let inputs = read("app.yaml", spec, dir.path(), &vars()).unwrap();
        assert_eq!(inputs.files.len(), 2);
    }
}

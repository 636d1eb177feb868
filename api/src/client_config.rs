//! The CLI's config file (kubectl-style contexts), shared by `convoy` and
//! `convoyd dev`, which writes a context for the coordinator it starts.
//!
//! The file, `$CONVOY_CONFIG` or `$XDG_CONFIG_HOME/convoy/config.yaml` or
//! `~/.config/convoy/config.yaml`, reads:
//!
//! ```yaml
//! current_context: dev
//! contexts:
//!   dev:
//!     address: https://127.0.0.1:7400
//!     ca: /abs/path/ca.pem
//!     token_file: /abs/path/admin.token
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the config file could not be read or written; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot parse the config file {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        /// Boxed: the parser's error is large, and this is the rare path.
        source: Box<serde_saphyr::Error>,
    },
    #[error("cannot encode the config file: {0}")]
    Encode(serde_saphyr::SerializeError),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

fn non_empty_os(s: Option<OsString>) -> Option<OsString> {
    s.filter(|v| !v.is_empty())
}

/// The config file: named contexts and the one in use.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
    /// Keys this version does not know, kept when the file is rewritten.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// One coordinator and the credentials to talk to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// `https://HOST:PORT` (or `HOST:PORT`) of the coordinator's API.
    pub address: String,
    /// PEM of the CA that signed the coordinator's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// File holding the bearer token (surrounding whitespace is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// The config file's path: `$CONVOY_CONFIG`, else
/// `$XDG_CONFIG_HOME/convoy/config.yaml`, else `~/.config/convoy/config.yaml`.
/// `None` when none of those variables is set.
pub fn default_path() -> Option<PathBuf> {
    path_from(
        non_empty_os(std::env::var_os("CONVOY_CONFIG")),
        non_empty_os(std::env::var_os("XDG_CONFIG_HOME")),
        non_empty_os(std::env::var_os("HOME")),
    )
}

fn path_from(
    convoy_config: Option<OsString>,
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if let Some(path) = convoy_config {
        return Some(PathBuf::from(path));
    }
    // The XDG spec says a relative XDG_CONFIG_HOME is invalid and to be ignored.
    let config_home = xdg_config_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| PathBuf::from(h).join(".config")))?;
    Some(config_home.join("convoy").join("config.yaml"))
}

impl ConfigFile {
    /// Reads the file; a file that does not exist reads as empty.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_saphyr::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Writes the file with mode 0600 (it points at credentials), creating
    /// its directory; replaces the old file atomically.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = serde_saphyr::to_string(self).map_err(ConfigError::Encode)?;
        write_private(path, text.as_bytes()).map_err(|source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Adds or replaces the context `name` in the config file at `path` and makes
/// it the current one; other contexts are kept. Used by `convoyd dev`, which
/// writes the same format.
pub fn upsert_context(path: &Path, name: &str, context: Context) -> Result<(), ConfigError> {
    let mut file = ConfigFile::load(path)?;
    file.contexts.insert(name.to_owned(), context);
    file.current_context = Some(name.to_owned());
    file.save(path)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir)?;

    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);

    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&tmp)?;
        // The mode above only applies to a new file.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_context() -> Context {
        Context {
            address: "https://127.0.0.1:7400".into(),
            ca: Some("/conf/ca.pem".into()),
            token_file: Some("/conf/admin.token".into()),
        }
    }

    #[test]
    fn config_path_prefers_convoy_config_then_xdg_then_home() {
        let p = path_from(
            Some("/x/c.yaml".into()),
            Some("/xdg".into()),
            Some("/h".into()),
        );
        assert_eq!(p, Some("/x/c.yaml".into()));
        let p = path_from(None, Some("/xdg".into()), Some("/h".into()));
        assert_eq!(p, Some("/xdg/convoy/config.yaml".into()));
        let p = path_from(None, Some("relative".into()), Some("/h".into()));
        assert_eq!(p, Some("/h/.config/convoy/config.yaml".into()));
        assert_eq!(path_from(None, None, None), None);
    }

    #[test]
    fn upserted_context_round_trips_and_becomes_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/convoy/config.yaml");
        let other = Context {
            address: "https://other:7400".into(),
            ca: None,
            token_file: None,
        };
        upsert_context(&path, "other", other.clone()).unwrap();
        upsert_context(&path, "dev", dev_context()).unwrap();

        let loaded = ConfigFile::load(&path).unwrap();
        assert_eq!(loaded.current_context.as_deref(), Some("dev"));
        assert_eq!(loaded.contexts.get("dev"), Some(&dev_context()));
        assert_eq!(loaded.contexts.get("other"), Some(&other));

        // Replacing keeps a single entry under the name.
        let moved = Context {
            address: "https://127.0.0.1:7500".into(),
            ..dev_context()
        };
        upsert_context(&path, "dev", moved.clone()).unwrap();
        let loaded = ConfigFile::load(&path).unwrap();
        assert_eq!(loaded.contexts.len(), 2);
        assert_eq!(loaded.contexts.get("dev"), Some(&moved));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![OsString::from("config.yaml")]);
    }

    #[test]
    fn written_file_has_the_documented_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        upsert_context(&path, "dev", dev_context()).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "current_context: dev\n\
             contexts:\n  \
               dev:\n    \
                 address: https://127.0.0.1:7400\n    \
                 ca: /conf/ca.pem\n    \
                 token_file: /conf/admin.token\n"
        );
    }

    #[test]
    fn upsert_keeps_keys_it_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        fs::write(
            &path,
            "preferences: {color: false}\ncontexts:\n  old: {address: 'h:1'}\n",
        )
        .unwrap();
        upsert_context(&path, "dev", dev_context()).unwrap();
        let loaded = ConfigFile::load(&path).unwrap();
        assert_eq!(loaded.contexts.len(), 2);
        assert_eq!(
            loaded.other.get("preferences"),
            Some(&serde_json::json!({"color": false}))
        );
    }

    #[test]
    fn missing_or_empty_config_file_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        assert_eq!(ConfigFile::load(&path).unwrap(), ConfigFile::default());
        fs::write(&path, "\n").unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), ConfigFile::default());
    }

    #[test]
    fn malformed_config_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        fs::write(&path, "contexts: [1, 2").unwrap();
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(format!("{err:#}").starts_with(&format!(
            "cannot parse the config file {}: ",
            path.display()
        )));
    }
}

//! Where the CLI finds its coordinator: flags, `CONVOY_*` environment
//! variables and the contexts of the config file (kubectl-style), merged field
//! by field with flags first, then the environment, then the context.
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
//!
//! Relative `ca` and `token_file` paths are taken from the file's directory.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

pub use convoy_api::client_config::{default_path, upsert_context, ConfigFile, Context};

/// Values given on the command line.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub addr: Option<String>,
    pub ca: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub context: Option<String>,
}

/// Values from `CONVOY_*` variables; empty ones count as unset.
#[derive(Default, Clone)]
pub struct Env {
    pub addr: Option<String>,
    pub ca: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub token: Option<String>,
}

impl Env {
    pub fn from_process() -> Self {
        let var = |name| non_empty(std::env::var(name).ok());
        let path = |name| non_empty_os(std::env::var_os(name)).map(PathBuf::from);
        Self {
            addr: var("CONVOY_ADDR"),
            ca: path("CONVOY_CA"),
            token_file: path("CONVOY_TOKEN_FILE"),
            token: var("CONVOY_TOKEN"),
        }
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("addr", &self.addr)
            .field("ca", &self.ca)
            .field("token_file", &self.token_file)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn non_empty_os(s: Option<OsString>) -> Option<OsString> {
    s.filter(|s| !s.is_empty())
}

/// Where the token comes from. Its value is never printed.
#[derive(Clone, PartialEq, Eq)]
pub enum Token {
    /// From `CONVOY_TOKEN`.
    Value(String),
    /// A file to read (and trim) when connecting.
    File(PathBuf),
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Value(_) => f.write_str("Value(<hidden>)"),
            Token::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Everything needed to dial the coordinator, after precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// As given; `client::normalize_address` checks it.
    pub address: String,
    pub ca: Option<PathBuf>,
    pub token: Option<Token>,
}

/// Merges flags, environment and the config file's context: flags beat the
/// environment, the environment beats the context. `file` is the config file
/// and its path (for error messages and relative paths).
pub fn resolve(flags: &Flags, env: &Env, file: Option<(&Path, &ConfigFile)>) -> Result<Settings> {
    let (context, dangling) = select_context(flags, file)?;
    let base = file
        .and_then(|(path, _)| path.parent())
        .unwrap_or(Path::new(""));
    let in_base = |p: &PathBuf| base.join(p);

    let Some(address) = flags
        .addr
        .clone()
        .or_else(|| env.addr.clone())
        .or_else(|| context.map(|c| c.address.clone()))
    else {
        let why = dangling.map_or(String::new(), |note| format!(" ({note})"));
        bail!(
            "no coordinator configured{why}: pass --addr, set CONVOY_ADDR, or start one with `convoyd dev`"
        );
    };
    let ca = flags
        .ca
        .clone()
        .or_else(|| env.ca.clone())
        .or_else(|| context.and_then(|c| c.ca.as_ref().map(in_base)));
    let token = flags
        .token_file
        .clone()
        .map(Token::File)
        .or_else(|| env.token.clone().map(Token::Value))
        .or_else(|| env.token_file.clone().map(Token::File))
        .or_else(|| {
            context
                .and_then(|c| c.token_file.as_ref())
                .map(|p| Token::File(in_base(p)))
        });
    Ok(Settings { address, ca, token })
}

/// The context in use, or a note on why the current one is missing.
fn select_context<'a>(
    flags: &Flags,
    file: Option<(&Path, &'a ConfigFile)>,
) -> Result<(Option<&'a Context>, Option<String>)> {
    if let Some(name) = &flags.context {
        let Some((path, config)) = file else {
            bail!("no context `{name}`: no config file (set CONVOY_CONFIG or HOME)");
        };
        return config
            .contexts
            .get(name)
            .map(|c| (Some(c), None))
            .ok_or_else(|| {
                let known: Vec<&str> = config.contexts.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "it has none".to_owned()
                } else {
                    format!("known: {}", known.join(", "))
                };
                anyhow!("no context `{name}` in {} ({known})", path.display())
            });
    }
    let Some((path, config)) = file else {
        return Ok((None, None));
    };
    match &config.current_context {
        None => Ok((None, None)),
        Some(name) => match config.contexts.get(name) {
            Some(c) => Ok((Some(c), None)),
            None => Ok((
                None,
                Some(format!(
                    "current_context `{name}` is not defined in {}",
                    path.display()
                )),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn dev_context() -> Context {
        Context {
            address: "https://127.0.0.1:7400".into(),
            ca: Some("/conf/ca.pem".into()),
            token_file: Some("/conf/admin.token".into()),
        }
    }

    fn file_with_dev() -> ConfigFile {
        ConfigFile {
            current_context: Some("dev".into()),
            contexts: BTreeMap::from([("dev".to_owned(), dev_context())]),
            other: BTreeMap::new(),
        }
    }

    #[test]
    fn context_fills_in_what_flags_and_env_leave_out() {
        let file = file_with_dev();
        let path = Path::new("/home/u/.config/convoy/config.yaml");
        let settings = resolve(&Flags::default(), &Env::default(), Some((path, &file))).unwrap();
        assert_eq!(
            settings,
            Settings {
                address: "https://127.0.0.1:7400".into(),
                ca: Some("/conf/ca.pem".into()),
                token: Some(Token::File("/conf/admin.token".into())),
            }
        );
    }

    #[test]
    fn env_beats_the_context_and_flags_beat_env() {
        let file = file_with_dev();
        let path = Path::new("/c/config.yaml");
        let env = Env {
            addr: Some("env-host:1".into()),
            ca: Some("/env/ca.pem".into()),
            token_file: Some("/env/token".into()),
            token: None,
        };
        let settings = resolve(&Flags::default(), &env, Some((path, &file))).unwrap();
        assert_eq!(settings.address, "env-host:1");
        assert_eq!(settings.ca, Some("/env/ca.pem".into()));
        assert_eq!(settings.token, Some(Token::File("/env/token".into())));

        let flags = Flags {
            addr: Some("flag-host:2".into()),
            ca: Some("/flag/ca.pem".into()),
            token_file: Some("/flag/token".into()),
            context: None,
        };
        let settings = resolve(&flags, &env, Some((path, &file))).unwrap();
        assert_eq!(settings.address, "flag-host:2");
        assert_eq!(settings.ca, Some("/flag/ca.pem".into()));
        assert_eq!(settings.token, Some(Token::File("/flag/token".into())));
    }

    #[test]
    fn convoy_token_beats_token_files_from_env_and_context_but_not_the_flag() {
        let file = file_with_dev();
        let path = Path::new("/c/config.yaml");
        let env = Env {
            token: Some("s3cret".into()),
            token_file: Some("/env/token".into()),
            ..Env::default()
        };
        let settings = resolve(&Flags::default(), &env, Some((path, &file))).unwrap();
        assert_eq!(settings.token, Some(Token::Value("s3cret".into())));

        let flags = Flags {
            token_file: Some("/flag/token".into()),
            ..Flags::default()
        };
        let settings = resolve(&flags, &env, Some((path, &file))).unwrap();
        assert_eq!(settings.token, Some(Token::File("/flag/token".into())));
    }

    #[test]
    fn context_flag_picks_a_context_other_than_the_current_one() {
        let mut file = file_with_dev();
        file.contexts.insert(
            "prod".into(),
            Context {
                address: "https://prod:7400".into(),
                ca: None,
                token_file: None,
            },
        );
        let flags = Flags {
            context: Some("prod".into()),
            ..Flags::default()
        };
        let path = Path::new("/c/config.yaml");
        let settings = resolve(&flags, &Env::default(), Some((path, &file))).unwrap();
        assert_eq!(settings.address, "https://prod:7400");
        assert_eq!(settings.ca, None);
    }

    #[test]
    fn unknown_context_flag_is_an_error_listing_the_known_ones() {
        let file = file_with_dev();
        let flags = Flags {
            context: Some("nope".into()),
            ..Flags::default()
        };
        let path = Path::new("/c/config.yaml");
        let err = resolve(&flags, &Env::default(), Some((path, &file))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no context `nope` in /c/config.yaml (known: dev)"
        );
    }

    #[test]
    fn nothing_configured_says_how_to_configure() {
        let err = resolve(&Flags::default(), &Env::default(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no coordinator configured: pass --addr, set CONVOY_ADDR, or start one with `convoyd dev`"
        );
    }

    #[test]
    fn dangling_current_context_is_named_in_the_error() {
        let file = ConfigFile {
            current_context: Some("gone".into()),
            ..ConfigFile::default()
        };
        let path = Path::new("/c/config.yaml");
        let err = resolve(&Flags::default(), &Env::default(), Some((path, &file))).unwrap_err();
        assert!(err
            .to_string()
            .contains("current_context `gone` is not defined in /c/config.yaml"));
    }

    #[test]
    fn relative_context_paths_are_taken_from_the_config_directory() {
        let file = ConfigFile {
            current_context: Some("dev".into()),
            contexts: BTreeMap::from([(
                "dev".to_owned(),
                Context {
                    address: "h:1".into(),
                    ca: Some("pki/ca.pem".into()),
                    token_file: Some("admin.token".into()),
                },
            )]),
            other: BTreeMap::new(),
        };
        let path = Path::new("/c/config.yaml");
        let settings = resolve(&Flags::default(), &Env::default(), Some((path, &file))).unwrap();
        assert_eq!(settings.ca, Some("/c/pki/ca.pem".into()));
        assert_eq!(settings.token, Some(Token::File("/c/admin.token".into())));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let env = Env {
            token: Some("s3cret".into()),
            ..Env::default()
        };
        assert!(!format!("{env:?}").contains("s3cret"));
        assert!(!format!("{:?}", Token::Value("s3cret".into())).contains("s3cret"));
    }
}

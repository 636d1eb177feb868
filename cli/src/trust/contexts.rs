//! `convoy context list|use|set`: the contexts of the config file, which
//! name the coordinator this CLI talks to.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;

use crate::args::ContextCommand;
use crate::commands::Output;
use crate::config::{self, ConfigFile, Flags};
use crate::output::{self, Format};

#[derive(Debug, Serialize)]
struct ContextsJson {
    current_context: Option<String>,
    contexts: Vec<ContextJson>,
}

#[derive(Debug, Serialize)]
struct ContextJson {
    name: String,
    current: bool,
    address: String,
    ca: Option<PathBuf>,
    token_file: Option<PathBuf>,
}

/// `convoy context use|set -o json`: what changed.
#[derive(Debug, Serialize)]
struct ContextChangedJson {
    /// "added", "updated" or "switched".
    action: &'static str,
    config_file: PathBuf,
    context: ContextJson,
}

impl ContextChangedJson {
    fn new(action: &'static str, path: &Path, file: &ConfigFile, name: &str) -> Option<Self> {
        let c = file.contexts.get(name)?;
        Some(Self {
            action,
            config_file: path.to_path_buf(),
            context: ContextJson {
                name: name.to_owned(),
                current: file.current_context.as_deref() == Some(name),
                address: c.address.clone(),
                ca: c.ca.clone(),
                token_file: c.token_file.clone(),
            },
        })
    }
}

pub fn context(command: ContextCommand, format: Format, flags: &Flags) -> Result<Output> {
    let path = config::default_path()
        .ok_or_else(|| anyhow!("no config file: set CONVOY_CONFIG, XDG_CONFIG_HOME or HOME"))?;
    context_in(&path, command, format, flags)
}

fn context_in(
    path: &Path,
    command: ContextCommand,
    format: Format,
    flags: &Flags,
) -> Result<Output> {
    let mut file = ConfigFile::load(path)?;
    match command {
        ContextCommand::List => {
            let contexts: Vec<ContextJson> = file
                .contexts
                .iter()
                .map(|(name, c)| ContextJson {
                    name: name.clone(),
                    current: file.current_context.as_deref() == Some(name.as_str()),
                    address: c.address.clone(),
                    ca: c.ca.clone(),
                    token_file: c.token_file.clone(),
                })
                .collect();
            Ok(Output::stdout(match format {
                Format::Json => output::json(&ContextsJson {
                    current_context: file.current_context.clone(),
                    contexts,
                }),
                Format::Table if contexts.is_empty() => format!(
                    "no contexts in {}: add one with `convoy context set NAME --addr URL`\n",
                    path.display()
                ),
                Format::Table => output::table(
                    &["CURRENT", "NAME", "ADDRESS", "CA", "TOKEN FILE"],
                    &contexts
                        .iter()
                        .map(|c| {
                            vec![
                                if c.current { "*" } else { "" }.to_owned(),
                                c.name.clone(),
                                c.address.clone(),
                                c.ca.as_ref()
                                    .map_or("-".to_owned(), |p| p.display().to_string()),
                                c.token_file
                                    .as_ref()
                                    .map_or("-".to_owned(), |p| p.display().to_string()),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }))
        }
        ContextCommand::Use { name } => {
            if !file.contexts.contains_key(&name) {
                let known: Vec<_> = file.contexts.keys().cloned().collect();
                bail!(
                    "no context `{name}` in {} (known: {})",
                    path.display(),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
            }
            file.current_context = Some(name.clone());
            file.save(path)?;
            Ok(Output::stdout(match format {
                Format::Json => {
                    output::json(&ContextChangedJson::new("switched", path, &file, &name))
                }
                Format::Table => format!("switched to context {name}\n"),
            }))
        }
        ContextCommand::Set { name } => {
            let old = file.contexts.get(&name).cloned();
            let address = match (&flags.addr, &old) {
                (Some(a), _) => a.clone(),
                (None, Some(o)) => o.address.clone(),
                (None, None) => bail!("a new context needs --addr"),
            };
            crate::client::parse_addresses(&address)?;
            let ca = match &flags.ca {
                Some(p) => Some(absolute(p)?),
                None => old.as_ref().and_then(|o| o.ca.clone()),
            };
            let token_file = match &flags.token_file {
                Some(p) => Some(absolute(p)?),
                None => old.as_ref().and_then(|o| o.token_file.clone()),
            };
            file.contexts.insert(
                name.clone(),
                config::Context {
                    address,
                    ca,
                    token_file,
                },
            );
            if file.current_context.is_none() {
                file.current_context = Some(name.clone());
            }
            file.save(path)?;
            let action = if old.is_some() { "updated" } else { "added" };
            Ok(Output::stdout(match format {
                Format::Json => output::json(&ContextChangedJson::new(action, path, &file, &name)),
                Format::Table => format!("{action} context {name} in {}\n", path.display()),
            }))
        }
    }
}

/// Paths in the config file are read relative to its directory; the user
/// typed them relative to the working directory, so store them absolute.
fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("cannot read the working directory")?
        .join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: `context use|set` printed text whatever `-o` said.
    #[test]
    fn context_use_and_set_answer_in_json_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let flags = Flags {
            addr: Some("https://a:7400".into()),
            ..Flags::default()
        };
        let out = context_in(
            &path,
            ContextCommand::Set { name: "a".into() },
            Format::Json,
            &flags,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["action"], "added", "{v}");
        assert_eq!(v["context"]["name"], "a");
        assert_eq!(v["context"]["address"], "https://a:7400");
        assert_eq!(v["context"]["current"], true);
        assert_eq!(v["config_file"], path.to_str().unwrap());
        let out = context_in(
            &path,
            ContextCommand::Set { name: "a".into() },
            Format::Json,
            &flags,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["action"], "updated", "{v}");
        let out = context_in(
            &path,
            ContextCommand::Use { name: "a".into() },
            Format::Json,
            &flags,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["action"], "switched", "{v}");
    }

    #[test]
    fn contexts_set_use_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let flags = Flags {
            addr: Some("https://a:7400".into()),
            ca: Some("/abs/ca.pem".into()),
            token_file: Some("/abs/t".into()),
            context: None,
        };
        context_in(
            &path,
            ContextCommand::Set { name: "a".into() },
            Format::Table,
            &flags,
        )
        .unwrap();
        let flags_b = Flags {
            addr: Some("b:7400".into()),
            ..Flags::default()
        };
        context_in(
            &path,
            ContextCommand::Set { name: "b".into() },
            Format::Table,
            &flags_b,
        )
        .unwrap();
        let file = ConfigFile::load(&path).unwrap();
        assert_eq!(
            file.current_context.as_deref(),
            Some("a"),
            "set keeps the current one"
        );
        assert_eq!(
            file.contexts["a"].ca.as_deref(),
            Some(Path::new("/abs/ca.pem"))
        );
        context_in(
            &path,
            ContextCommand::Use { name: "b".into() },
            Format::Table,
            &flags_b,
        )
        .unwrap();
        assert_eq!(
            ConfigFile::load(&path).unwrap().current_context.as_deref(),
            Some("b")
        );
        let err = context_in(
            &path,
            ContextCommand::Use { name: "c".into() },
            Format::Table,
            &flags_b,
        )
        .unwrap_err();
        assert!(err.to_string().contains("known: a, b"), "{err}");
        let out = context_in(&path, ContextCommand::List, Format::Json, &Flags::default()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["current_context"], "b");
        assert_eq!(v["contexts"][1]["current"], true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

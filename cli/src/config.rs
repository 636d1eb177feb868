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
//! An address (flag, variable or context) may list several coordinators,
//! comma-separated (`https://c1:7400,https://c2:7400`): the client dials
//! them in turn and finds the one that leads.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub use convoy_api::client_config::{default_path, upsert_context, ConfigFile, Context};
pub use env::Env;

use context::select_context;

mod context;
mod env;
#[cfg(test)]
mod tests;

/// Values given on the command line.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub addr: Option<String>,
    pub ca: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub context: Option<String>,
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
    /// As given, one address or several separated by commas;
    /// `client::parse_addresses` checks it.
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

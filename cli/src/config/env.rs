//! The `CONVOY_*` environment variables the CLI reads; empty ones count as
//! unset, and the token never shows in debug output.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

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

//! Environments: every service lives in one; a node serves the environments
//! named by its `env` label.

/// The environment a request that names none is in.
pub const DEFAULT_ENV: &str = "default";

/// The node label that names the environments a node serves
/// (`env=prod`, `env=prod,staging`, `env=*` for all; absent: `default`).
pub const ENV_LABEL: &str = "env";

/// The `env` label value of a node that serves every environment.
pub const ANY_ENV: &str = "*";

/// The environment variable the CLI reads its default `--env` from.
pub const ENV_VAR: &str = "CONVOY_ENV";

/// `""` means [`DEFAULT_ENV`].
pub fn or_default(env: &str) -> &str {
    if env.is_empty() {
        DEFAULT_ENV
    } else {
        env
    }
}

//! `convoy token ...`, `convoy audit` and `convoy context ...`: who may talk
//! to the coordinator, what they did, and which coordinator this CLI talks
//! to. Token secrets are printed once, at creation, and never written to
//! disk by the CLI.
//!
//! One module per noun: `tokens` (CLI tokens), `join` (agent join tokens),
//! `audit`, `contexts`, `registries` and `secrets`.

mod audit;
mod contexts;
mod join;
mod registries;
mod secrets;
mod tokens;

pub use crate::args::{
    parse_duration_secs, parse_labels, ContextCommand, RegistryCommand, SecretCommand, TokenCommand,
};
pub use audit::audit;
pub use contexts::context;
pub use join::DEFAULT_AGENT_PORT;
pub use registries::{registry, RegistryJson};
pub use secrets::secret;
pub use tokens::{token, TokenJson};

/// `-` for an empty cell.
fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

//! What Convoy's binaries share (`convoyd`, `convoy-agent`, `convoy`, the load
//! test), so that no binary links another binary's crate: the JSON views of
//! INTERFACES.md, environment and node-name rules, time helpers, the CLI's
//! config file (which `convoyd dev` writes), the systemd notify protocol and
//! the shell completions and man pages made from each binary's flags.

pub mod agent_paths;
pub mod client_config;
pub mod clock;
pub mod env;
pub mod errors;
pub mod events;
pub mod host_access;
pub mod host_paths;
pub mod limits;
pub mod logs;
pub mod names;
pub mod notify;
pub mod shell_docs;
pub mod views;

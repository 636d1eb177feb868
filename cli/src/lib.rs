//! The `convoy` command line as a library: the binary in `main.rs` only parses
//! flags and prints. `config` holds the config file format and
//! [`config::upsert_context`], which `convoyd dev` can share.

pub mod args;
pub mod client;
pub mod commands;
pub mod compose;
pub mod config;
pub mod drain;
pub mod exec;
pub mod exit;
pub mod logs;
pub mod notify;
pub mod output;
pub mod progress;
pub mod rollouts;
pub mod trust;
pub mod volumes;

//! convoy-bench: thousands of simulated agents in one process against a real
//! `convoyd` in another (issue 7). Each agent has its own certificate, its own
//! mTLS connection and its own `AgentService.Session` stream, and speaks the
//! real protocol; only the container runtime is fake.

pub mod child;
pub mod control;
pub mod events;
pub mod fleet;
pub mod freeze;
pub mod identity;
pub mod scenario;
pub mod stats;

pub use convoy_api::clock::now_unix_ms;

/// Raises this process's open-file limit to its hard limit. Children (the
/// coordinator) inherit it. Returns the new soft limit.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

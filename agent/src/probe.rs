//! Convoy's probes: the agent checks each running instance over HTTP, TCP or
//! a command run in the container, and folds the results and Docker's own
//! healthcheck into one health per instance. `ProbeState` and `combine` are
//! pure (`state`); `Prober` runs one task per probed container (`prober`);
//! `run_now` answers `RunProbes`.

mod check;
mod config;
mod http;
mod prober;
mod run_now;
mod state;

pub use check::{run_check, RunResult};
pub use config::{
    human, Check, ProbeConfig, DEFAULT_FAILURE_THRESHOLD, DEFAULT_INTERVAL,
    DEFAULT_SUCCESS_THRESHOLD, DEFAULT_TIMEOUT,
};
pub use prober::{Prober, Target, Update};
pub use run_now::run_now;
pub use state::{combine, CheckView, Combined, ProbeState};

/// The name Docker's healthcheck goes by in results and statuses.
pub const DOCKER: &str = "docker";
/// The one result of an instance without checks: is its container running?
pub const RUNNING: &str = "running";

#[cfg(test)]
mod tests;

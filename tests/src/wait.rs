//! Polling until the world reaches a state, failing with what was last seen.

use std::fmt::Display;
use std::thread;
use std::time::{Duration, Instant};

/// How long the tests give a cluster to converge (containers started,
/// agents reconnected): generous, the CI machine has two cores.
pub const SETTLE: Duration = Duration::from_secs(60);

/// Calls `check` every `poll` until it returns `Ok`, and returns that value.
/// `check` returns an error that describes what it sees instead; if `timeout`
/// passes first, the test fails with `what` and the last such description.
pub fn wait_until<T>(
    what: impl Display,
    timeout: Duration,
    poll: Duration,
    mut check: impl FnMut() -> anyhow::Result<T>,
) -> T {
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match check() {
            Ok(value) => return value,
            Err(last) => {
                if start.elapsed() >= timeout {
                    panic!(
                        "timed out after {:.1?} ({attempts} checks) waiting until {what}\n\
                         last check said: {last:#}",
                        start.elapsed()
                    );
                }
            }
        }
        thread::sleep(poll);
    }
}

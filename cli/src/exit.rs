//! `convoy`'s exit codes (documented in INTERFACES.md and the README):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done: the command succeeded (a waited-for rollout succeeded, every check passed) |
//! | 1 | failed: an error, a refused request, a rollout that failed or rolled back, a failing check |
//! | 2 | usage: the command line could not be parsed (clap) |
//! | 3 | timed out: a wait (`apply --wait`) ran out before the outcome was known; what it waited for goes on |

use std::fmt;

/// Success.
pub const OK: u8 = 0;
/// An error or a failed outcome.
pub const FAILED: u8 = 1;
/// The command line could not be parsed (clap's own code).
pub const USAGE: u8 = 2;
/// A wait ran out before the outcome was known.
pub const TIMED_OUT: u8 = 3;

/// An error meaning "waited, and the outcome is not known yet": exits with
/// [`TIMED_OUT`] instead of [`FAILED`].
#[derive(Debug)]
pub struct TimedOut(pub String);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimedOut {}

/// The exit code for a command's error.
pub fn code_of(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<TimedOut>().is_some() {
        TIMED_OUT
    } else {
        FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: a timed-out `apply --wait` could not be told from a failed
    /// rollout by its exit code.
    #[test]
    fn a_timeout_exits_three_and_a_failure_one() {
        let timeout = anyhow::Error::new(TimedOut("timed out after 15m".into()));
        assert_eq!(code_of(&timeout), TIMED_OUT);
        let wrapped = timeout.context("apply --wait");
        assert_eq!(code_of(&wrapped), TIMED_OUT);
        assert_eq!(code_of(&anyhow::anyhow!("rollout did not succeed")), FAILED);
        assert_eq!((OK, FAILED, USAGE, TIMED_OUT), (0, 1, 2, 3));
    }
}

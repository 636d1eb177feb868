//! Several coordinators, one of them leading: which address to dial next and
//! how long to wait first. Each address is tried once per round, in order;
//! after a round in which none led, a pause that doubles (250 ms up to 4 s,
//! with jitter) and another round, until [`BUDGET`] is spent. A failover
//! (the leader dies, a standby takes over) takes a few seconds, so the
//! budget outlasts one.

use std::time::Duration;

use anyhow::{anyhow, Result};
use rand::Rng;
use tokio::time::Instant;

/// The pause after the first round that found no leader.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// Pauses stop doubling here.
const MAX_PAUSE: Duration = Duration::from_secs(4);
/// How long rounds go on before the CLI gives up.
pub(super) const BUDGET: Duration = Duration::from_secs(15);

/// The addresses and how the tries since the last leader's answer went.
#[derive(Debug)]
pub(super) struct Rotation {
    addresses: Vec<String>,
    current: usize,
    /// Each address's last failure since a leader last answered.
    reasons: Vec<Option<String>>,
    failed_in_round: usize,
    rounds: u32,
    /// The first failure since a leader last answered.
    since: Option<Instant>,
}

impl Rotation {
    /// `addresses` is not empty (`parse_addresses` returns at least one).
    pub(super) fn new(addresses: Vec<String>) -> Self {
        let reasons = vec![None; addresses.len()];
        Self {
            addresses,
            current: 0,
            reasons,
            failed_in_round: 0,
            rounds: 0,
            since: None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Every address, in the order given.
    pub(super) fn all(&self) -> &[String] {
        &self.addresses
    }

    /// The address to dial (or dialed) now.
    pub(super) fn current(&self) -> &str {
        &self.addresses[self.current]
    }

    /// A leader answered: the next failure starts afresh.
    pub(super) fn succeeded(&mut self) {
        self.reasons.iter_mut().for_each(|r| *r = None);
        self.failed_in_round = 0;
        self.rounds = 0;
        self.since = None;
    }

    /// The current address failed for `reason`; moves to the next one.
    /// Returns the pause before dialing it (zero within a round), or the
    /// error naming every address and its failure once the next pause would
    /// end past [`BUDGET`]. `jitter` (0.5 to 1) scales the pause.
    pub(super) fn failed(&mut self, reason: String, now: Instant, jitter: f64) -> Result<Duration> {
        let since = *self.since.get_or_insert(now);
        self.reasons[self.current] = Some(reason);
        self.current = (self.current + 1) % self.addresses.len();
        self.failed_in_round += 1;
        if self.failed_in_round < self.addresses.len() {
            return Ok(Duration::ZERO);
        }
        self.failed_in_round = 0;
        self.rounds += 1;
        let pause = round_pause(self.rounds, jitter);
        let spent = now.saturating_duration_since(since);
        if spent + pause > BUDGET {
            return Err(anyhow!(self.all_failed(spent)));
        }
        Ok(pause)
    }

    /// [`Rotation::failed`], with random jitter, then the pause.
    pub(super) async fn fail_and_wait(&mut self, reason: String) -> Result<()> {
        let jitter = rand::rng().random_range(0.5..=1.0);
        let pause = self.failed(reason, Instant::now(), jitter)?;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    fn all_failed(&self, spent: Duration) -> String {
        let each: Vec<String> = self
            .addresses
            .iter()
            .zip(&self.reasons)
            .map(|(address, reason)| {
                format!("{address}: {}", reason.as_deref().unwrap_or("not tried"))
            })
            .collect();
        format!(
            "cannot reach the coordinator at any of its {} addresses (tried for {:.1} s; a standby answers until it leads): {}",
            self.addresses.len(),
            spent.as_secs_f64(),
            each.join("; ")
        )
    }
}

/// The pause after `round` (1, 2, ...) rounds without a leader: 250 ms
/// doubling up to 4 s, times `jitter` (0.5 to 1) so that many clients do not
/// retry in step.
fn round_pause(round: u32, jitter: f64) -> Duration {
    let doublings = round.saturating_sub(1).min(16);
    FIRST_PAUSE
        .saturating_mul(1 << doublings)
        .min(MAX_PAUSE)
        .mul_f64(jitter.clamp(0.5, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(n: usize) -> Rotation {
        Rotation::new((1..=n).map(|i| format!("https://c{i}:7400")).collect())
    }

    #[test]
    fn pauses_double_from_250_ms_to_4_s_and_jitter_takes_up_to_half() {
        let ms = |round, jitter| round_pause(round, jitter).as_millis();
        assert_eq!(
            [1, 2, 3, 4, 5, 6, 50].map(|r| ms(r, 1.0)),
            [250, 500, 1000, 2000, 4000, 4000, 4000]
        );
        assert_eq!(ms(1, 0.5), 125);
        assert_eq!(ms(5, 0.5), 2000);
        // Out-of-range jitter is bounded, never a zero or a longer pause.
        assert_eq!(ms(1, 0.0), 125);
        assert_eq!(ms(1, 7.0), 250);
        assert_eq!(ms(u32::MAX, 1.0), 4000);
    }

    #[test]
    fn every_address_is_tried_in_order_before_a_pause() {
        let mut r = rotation(3);
        let t0 = Instant::now();
        assert_eq!(r.current(), "https://c1:7400");
        assert_eq!(r.failed("refused".into(), t0, 1.0).unwrap(), Duration::ZERO);
        assert_eq!(r.current(), "https://c2:7400");
        assert_eq!(r.failed("refused".into(), t0, 1.0).unwrap(), Duration::ZERO);
        assert_eq!(r.current(), "https://c3:7400");
        // The round is over: a pause, then c1 again.
        assert_eq!(
            r.failed("refused".into(), t0, 1.0).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(r.current(), "https://c1:7400");
        r.failed("refused".into(), t0, 1.0).unwrap();
        r.failed("refused".into(), t0, 1.0).unwrap();
        assert_eq!(
            r.failed("refused".into(), t0, 0.5).unwrap(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn rounds_end_when_the_budget_is_spent_naming_every_address_and_why() {
        let mut r = rotation(2);
        let t0 = Instant::now();
        r.failed("connection refused".into(), t0, 1.0).unwrap();
        r.failed("standby: not the leader".into(), t0, 1.0).unwrap();
        let late = t0 + BUDGET - Duration::from_millis(100);
        r.failed("connection refused".into(), late, 1.0).unwrap();
        let err = r
            .failed("standby: still not".into(), late, 1.0)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "cannot reach the coordinator at any of its 2 addresses (tried for 14.9 s"
            ),
            "{err}"
        );
        assert!(
            err.ends_with(
                "https://c1:7400: connection refused; https://c2:7400: standby: still not"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_answer_from_a_leader_starts_the_budget_afresh() {
        let mut r = rotation(2);
        let t0 = Instant::now();
        r.failed("refused".into(), t0, 1.0).unwrap();
        r.succeeded();
        // Long after the first failure, but the first since the leader answered.
        let later = t0 + BUDGET * 2;
        assert_eq!(
            r.failed("refused".into(), later, 1.0).unwrap(),
            Duration::ZERO
        );
        assert_eq!(
            r.failed("refused".into(), later, 1.0).unwrap(),
            Duration::from_millis(250)
        );
    }
}

//! sd_notify for the daemons (convoy-agent and convoyd) under a
//! `Type=notify` unit with `WatchdogSec=`: READY=1 once serving, WATCHDOG=1
//! at half the watchdog interval from a task on the daemon's runtime (a
//! wedged or stopped process sends none, and systemd restarts it), and
//! STOPPING=1 on the way out. Without `NOTIFY_SOCKET` every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Tells systemd the daemon is up (READY=1).
pub fn ready() {
    send(&[NotifyState::Ready], "READY=1");
}

/// Tells systemd the daemon is shutting down (STOPPING=1).
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

fn send(state: &[NotifyState], what: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    // `false`: the environment is left alone (this process has threads).
    match sd_notify::notify(false, state) {
        Ok(()) => debug!("told systemd {what}"),
        Err(e) => warn!("cannot tell systemd {what}: {e}"),
    }
}

/// Half of `WATCHDOG_USEC` when systemd watches this process.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec) / 2)
    } else {
        None
    }
}

/// READY=1 now, WATCHDOG=1 until `shutdown`, then STOPPING=1: the whole
/// conversation of a daemon that is up.
pub async fn supervise(shutdown: CancellationToken) {
    ready();
    watchdog(shutdown).await;
    stopping();
}

/// Sends WATCHDOG=1 at half the watchdog interval until `shutdown`.
pub async fn watchdog(shutdown: CancellationToken) {
    let Some(every) = watchdog_interval() else {
        shutdown.cancelled().await;
        return;
    };
    info!("systemd watchdog: keep-alive every {every:?}");
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = timer.tick() => {
                if let Err(e) = sd_notify::notify(false, &[NotifyState::Watchdog]) {
                    warn!("cannot send the watchdog keep-alive: {e}");
                }
            }
        }
    }
}

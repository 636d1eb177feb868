//! systemd's PropertiesChanged signals as wake-ups for the unit reconciler.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::controller::backoff::Backoff;
use crate::runtime::systemd::Systemd;

/// Wakes the reconciler when systemd signals a change of a unit it cares
/// about; subscribes again (with backoff) whenever the stream ends. Does not
/// touch the bus while there is no unit to care about.
pub(super) async fn watch_changes<S: Systemd>(
    systemd: Arc<S>,
    mut interest: watch::Receiver<BTreeSet<String>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        while interest.borrow_and_update().is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = interest.changed() => if changed.is_err() { return },
            }
        }
        match systemd.changes().await {
            Ok(mut stream) => {
                let since = Instant::now();
                // Something may have changed while nobody listened.
                wake.notify_one();
                loop {
                    let unit = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        unit = stream.next() => unit,
                    };
                    match unit {
                        Some(unit) if interest.borrow().contains(&unit) => {
                            debug!(unit = %unit, "unit changed");
                            wake.notify_one();
                        }
                        Some(_) => {}
                        None => {
                            debug!("systemd signal stream ended");
                            break;
                        }
                    }
                }
                if since.elapsed() >= Duration::from_secs(60) {
                    backoff.reset();
                }
            }
            Err(e) => debug!("cannot watch systemd signals: {e}"),
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

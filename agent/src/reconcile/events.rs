//! Docker's event stream as wake-ups for the container reconciler.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::controller::backoff::Backoff;
use crate::runtime::Runtime;

/// Wakes the reconciler on every lifecycle event of the node's managed
/// containers, subscribing again (with backoff) whenever the stream ends.
pub(super) async fn watch_events<R: Runtime>(
    runtime: Arc<R>,
    node: String,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        match runtime.events(&node).await {
            Ok(mut stream) => {
                let since = Instant::now();
                // Something may have happened while nobody listened.
                wake.notify_one();
                loop {
                    let item = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        item = stream.next() => item,
                    };
                    match item {
                        Some(Ok(event)) => {
                            debug!(
                                container = %event.container_id,
                                workload = %event.workload_id,
                                action = %event.action,
                                "container event"
                            );
                            wake.notify_one();
                        }
                        Some(Err(e)) => {
                            debug!("event stream failed: {e}");
                            break;
                        }
                        None => {
                            debug!("event stream ended");
                            break;
                        }
                    }
                }
                if since.elapsed() >= Duration::from_secs(60) {
                    backoff.reset();
                }
            }
            Err(e) => debug!("cannot watch container events: {e}"),
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

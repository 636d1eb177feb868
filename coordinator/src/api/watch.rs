//! `ControlService.Watch`: the cluster's events to a CLI or the load test,
//! the recent ones replayed first, filtered, counted while open.

use std::sync::Arc;

use convoy_proto as pb;
use tokio::sync::broadcast;
use tonic::Status;

use crate::{events::Filter, state::Coordinator};

pub(super) type WatchStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ClusterEvent, Status>> + Send>>;

/// Counts an open watch stream for as long as it lives.
struct WatchOpen(Arc<Coordinator>);

impl WatchOpen {
    fn new(coord: Arc<Coordinator>) -> Self {
        coord
            .metrics()
            .watch_streams
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(coord)
    }
}

impl Drop for WatchOpen {
    fn drop(&mut self) {
        self.0
            .metrics()
            .watch_streams
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A watcher's stream, polled by tonic itself: the replayed events, then
/// the live ones. Events already waiting are taken with `try_recv`, which
/// does not spend the task's cooperative budget, so one turn of the stream's
/// task sends as many as fit before tonic yields; with a forwarding task and
/// a queue, each turn moved at most ~128 and a watcher fell behind at ~20,000
/// events/s among 10,000 busy agent sessions (BENCHMARKS.md, ingest). A
/// reader that still falls behind the bus gets `ResourceExhausted`.
pub(super) fn watch_stream(
    coord: Arc<Coordinator>,
    filter: Filter,
    backlog: Vec<crate::events::SharedEvent>,
    rx: broadcast::Receiver<crate::events::SharedEvent>,
) -> WatchStream {
    struct State {
        backlog: std::vec::IntoIter<crate::events::SharedEvent>,
        rx: broadcast::Receiver<crate::events::SharedEvent>,
        filter: Filter,
        ended: bool,
        _open: WatchOpen,
    }
    let state = State {
        backlog: backlog.into_iter(),
        rx,
        filter,
        ended: false,
        _open: WatchOpen::new(coord),
    };
    Box::pin(futures::stream::unfold(state, |mut w| async move {
        use broadcast::error::{RecvError, TryRecvError};
        if w.ended {
            return None;
        }
        if let Some(ev) = w.backlog.by_ref().find(|e| w.filter.matches(e)) {
            return Some((Ok((*ev).clone()), w));
        }
        loop {
            let got = match w.rx.try_recv() {
                Ok(ev) => Ok(ev),
                Err(TryRecvError::Empty) => w.rx.recv().await,
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            match got {
                Ok(ev) => {
                    if w.filter.matches(&ev) {
                        return Some((Ok((*ev).clone()), w));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    // A reader this far behind would show a stale world;
                    // end its stream rather than slow anyone.
                    tracing::info!(missed = n, "dropping an event watcher that fell behind");
                    w.ended = true;
                    let status = Status::resource_exhausted(format!(
                        "the event stream fell {n} events behind; reconnect"
                    ));
                    return Some((Err(status), w));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Ev, CHANNEL};
    use futures::StreamExt;
    use std::sync::atomic::Ordering;

    async fn coordinator() -> (Arc<Coordinator>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn crate::store::Store> =
            Arc::new(crate::store::SledStore::open(dir.path()).unwrap());
        let coord = Coordinator::load(
            store,
            crate::state::Liveness::default(),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
        (coord, dir)
    }

    #[tokio::test]
    async fn a_watch_replays_then_streams_live_events_filtered_and_is_counted() {
        let (coord, _dir) = coordinator().await;
        coord.events().emit(Ev::new("a").node("n1"));
        coord.events().emit(Ev::new("b").node("n2"));
        let (backlog, rx) = coord.events().subscribe_with_replay();
        let filter = Filter {
            node: "n1".into(),
            ..Default::default()
        };
        let mut stream = watch_stream(coord.clone(), filter, backlog, rx);
        assert_eq!(coord.metrics().watch_streams.load(Ordering::Relaxed), 1);
        coord.events().emit(Ev::new("c").node("n2"));
        coord.events().emit(Ev::new("d").node("n1"));
        let first = stream.next().await.unwrap().unwrap();
        let second = stream.next().await.unwrap().unwrap();
        assert_eq!((first.kind.as_str(), second.kind.as_str()), ("a", "d"));
        assert!(second.seq > first.seq);
        drop(stream);
        assert_eq!(coord.metrics().watch_streams.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_the_bus_is_told_and_its_stream_ends() {
        let (coord, _dir) = coordinator().await;
        let rx = coord.events().subscribe();
        let mut stream = watch_stream(coord.clone(), Filter::default(), Vec::new(), rx);
        for _ in 0..CHANNEL + 10 {
            coord.events().emit(Ev::new("x"));
        }
        let err = stream.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("fell 10 events behind"), "{err:?}");
        assert!(stream.next().await.is_none());
    }
}

//! A `convoy events` watcher: one Watch stream, read as fast as it comes,
//! keeping what the benchmarks ask of it (node losses and returns with the
//! coordinator's timestamps, counts by kind, whether it fell behind).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use convoy_api::events::EventKind;
use convoy_proto as pb;

use crate::control::Control;

#[derive(Debug, Clone)]
pub struct NodeEvent {
    pub node: String,
    /// The coordinator's clock.
    pub unix_ms: i64,
    pub reason: String,
}

#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub received: u64,
    pub by_kind: HashMap<String, u64>,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Sequence numbers skipped (events the stream did not deliver).
    pub gaps: u64,
    pub lost: Vec<NodeEvent>,
    pub ready: Vec<NodeEvent>,
    /// Why the stream ended, if it did (e.g. the coordinator dropped a
    /// watcher that fell behind).
    pub ended: Option<String>,
}

pub struct Watcher {
    seen: Arc<Mutex<Seen>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Opens the stream on a thread of its own, with its own runtime: a
    /// `convoy events` watcher is a process of its own, and should not wait
    /// behind thousands of simulated agents' tasks for its turn.
    pub async fn start(control: &Control) -> anyhow::Result<Self> {
        let control = control.clone();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (opened_tx, opened) = tokio::sync::oneshot::channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let s = seen.clone();
        let thread = std::thread::Builder::new()
            .name("watcher".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = opened_tx.send(Err(anyhow::anyhow!("watcher runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    // A channel of this runtime's own.
                    let mut stream = match control.reconnected().await {
                        Ok(c) => match c.watch().await {
                            Ok(st) => st,
                            Err(e) => {
                                let _ = opened_tx.send(Err(e));
                                return;
                            }
                        },
                        Err(e) => {
                            let _ = opened_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = opened_tx.send(Ok(()));
                    let ended = loop {
                        tokio::select! {
                            _ = &mut stopped => return,
                            m = stream.message() => match m {
                                Ok(Some(ev)) => record(&mut s.lock().unwrap_or_else(|p| p.into_inner()), ev),
                                Ok(None) => break "the stream ended".to_string(),
                                Err(status) => break status.to_string(),
                            },
                        }
                    };
                    s.lock().unwrap_or_else(|p| p.into_inner()).ended = Some(ended);
                });
            })?;
        opened.await??;
        Ok(Self {
            seen,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads through `f` without copying the event lists.
    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn record(s: &mut Seen, ev: pb::ClusterEvent) {
    s.received += 1;
    if s.first_seq == 0 {
        s.first_seq = ev.seq;
    } else if ev.seq > s.last_seq + 1 {
        s.gaps += ev.seq - s.last_seq - 1;
    }
    s.last_seq = s.last_seq.max(ev.seq);
    let node_event = |ev: &pb::ClusterEvent| NodeEvent {
        node: ev.node.clone(),
        unix_ms: ev.unix_ms,
        reason: ev.fields.get("reason").cloned().unwrap_or_default(),
    };
    match EventKind::parse(&ev.kind) {
        Some(EventKind::NodeLost) => s.lost.push(node_event(&ev)),
        Some(EventKind::NodeReady) => s.ready.push(node_event(&ev)),
        _ => {}
    }
    match s.by_kind.get_mut(&ev.kind) {
        Some(n) => *n += 1,
        None => {
            s.by_kind.insert(ev.kind, 1);
        }
    }
}

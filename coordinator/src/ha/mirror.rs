//! A standby follows desired state (issue 18): one watch of the store
//! (everything under its prefix), a private copy of the keys desired state
//! is made of, and a coordinator on that copy that recomputes the plans
//! of the nodes each of the leader's writes touched
//! ([`Coordinator::follow`]). So a standby holds the plans the leader
//! sends, ready to serve agents from; `/metrics` says how far it follows
//! (`convoy_follower_revision`, `convoy_follower_plans`). It never writes
//! the shared store. A watch that breaks (etcd away, history compacted)
//! starts over from a fresh read, after a pause with jitter.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    secrets::Sealer,
    snapshot::MemStore,
    state::{followed, Coordinator, Liveness, StateError, PLAN_GENERATION_KEY},
    store::{Store, StoreError},
};

/// The first pause after a broken watch; doubled up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// What a follower holds now.
#[derive(Clone, Default)]
pub struct Following {
    /// The coordinator on the copy, once loaded.
    pub coord: Option<Arc<Coordinator>>,
    /// The store revision the copy is at (0 before the first load).
    pub revision: i64,
    /// Times the watch broke and was started over.
    pub restarts: u64,
}

/// Follows `store` until `stop`, publishing what it holds on `state`.
pub async fn follow(
    store: Arc<dyn Store>,
    sealer: Sealer,
    stop: CancellationToken,
    state: watch::Sender<Following>,
) {
    let mut pause = FIRST_PAUSE;
    while !stop.is_cancelled() {
        let why = match follow_once(&store, &sealer, &stop, &state, &mut pause).await {
            Ok(()) => return,
            Err(e) => e,
        };
        state.send_modify(|f| f.restarts += 1);
        tracing::warn!(error = %why, "following the store: starting over in {pause:?}");
        let jitter = pause.mul_f64(rand::random::<f64>() * 0.5);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause + jitter) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// One watch, from its first read until it breaks (`Err`) or `stop`.
async fn follow_once(
    store: &Arc<dyn Store>,
    sealer: &Sealer,
    stop: &CancellationToken,
    state: &watch::Sender<Following>,
    pause: &mut Duration,
) -> Result<(), StateError> {
    let mut watched = store.watch("").await?;
    let copy: Arc<dyn Store> = Arc::new(MemStore::new(
        watched
            .snapshot
            .drain(..)
            .filter(|(k, _)| followed(k))
            .map(one_generation_back),
    ));
    let coord = Coordinator::load_sealed(
        copy,
        Liveness::default(),
        stop.child_token(),
        sealer.clone(),
    )
    .await?;
    tracing::info!(
        revision = watched.revision,
        plans = coord.planned_nodes(),
        "following the store"
    );
    state.send_modify(|f| {
        f.coord = Some(coord.clone());
        f.revision = watched.revision;
    });
    *pause = FIRST_PAUSE;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            next = watched.changes.recv() => next,
        };
        let changes = match next {
            Some(Ok(changes)) => changes,
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(StateError::Store(StoreError::Backend {
                    key: String::new(),
                    message: "the watch ended".into(),
                }))
            }
        };
        let plans = coord.follow(&changes.changes).await?;
        if plans > 0 {
            tracing::debug!(revision = changes.revision, plans, "followed a write");
        }
        state.send_modify(|f| f.revision = changes.revision);
    }
}

/// The copy's plan counter one back, so the plans of the first load take
/// the leader's newest generation, not the one after it: the leader's plan
/// of each node has at most that generation (with the same content, the
/// store being read at one revision), and the leader's next change takes
/// the next one, which the follower's plans then take too.
fn one_generation_back((key, value): (String, Vec<u8>)) -> (String, Vec<u8>) {
    if key != PLAN_GENERATION_KEY {
        return (key, value);
    }
    match serde_json::from_slice::<u64>(&value) {
        Ok(g) if g > 0 => {
            let back = serde_json::to_vec(&(g - 1)).unwrap_or(value);
            (key, back)
        }
        _ => (key, value),
    }
}

#[cfg(test)]
mod tests;

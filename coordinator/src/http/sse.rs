//! `GET /api/stream`: the dashboard's Server-Sent Events, a snapshot and
//! then every cluster event, per client from its own bounded queue.

use super::*;

// ---- the live stream -------------------------------------------------

/// What the dashboard draws: `event: snapshot` data.
#[derive(Serialize)]
pub(super) struct Snapshot {
    pub(super) now_unix_ms: i64,
    #[serde(flatten)]
    pub(super) nodes: NodesJson,
    #[serde(flatten)]
    pub(super) services: StatusJson,
    /// Metric samples newer than the previous snapshot's, per node.
    pub(super) history: BTreeMap<String, Vec<MetricSample>>,
    /// The first snapshot only: the recent events, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) events: Option<Vec<EventJson>>,
}

/// `GET /api/stream`: a snapshot at once, then every cluster event, and a
/// new snapshot after changes (debounced) and every few seconds. Each client
/// has a small queue fed by its own task from the event bus. A client that
/// takes nothing for [`SseLimits::stall`], or falls so far behind that the
/// bus's bounded window passes it by (Lagged), is dropped; its browser
/// reconnects and starts again from a fresh snapshot. Bursts up to the bus's
/// window get through to a client that reads.
pub(super) async fn api_stream(
    State(app): State<App>,
    conn: Option<Extension<ConnectInfo<Conn>>>,
) -> Response {
    let Ok(slot) = app.sse_slots.clone().try_acquire_owned() else {
        let body = Json(serde_json::json!({
            "error": format!(
                "too many dashboard streams ({} open): try again later",
                app.sse.max_clients
            )
        }));
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    };
    let (tx, rx) = mpsc::channel(app.sse.buffer.max(2));
    let (replay, events) = app.coord.events().subscribe_with_replay();
    let stalled = conn.map(|Extension(ConnectInfo(c))| c.stalled);
    tokio::spawn(
        feed(app.clone(), replay, events, tx, slot, stalled)
            .instrument(tracing::debug_span!("sse")),
    );
    Sse::new(ReceiverStream::new(rx).map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(app.sse.keep_alive))
        .into_response()
}

/// Why a stream's feeder stopped sending.
pub(super) enum Stop {
    /// The client went away, or the coordinator is shutting down.
    Gone,
    /// The client fell behind.
    Slow(String),
}

/// Queues a message for the client, waiting at most `stall` for room.
pub(super) async fn offer(app: &App, tx: &mpsc::Sender<Event>, ev: Event) -> Result<(), Stop> {
    tokio::select! {
        sent = tx.send(ev) => sent.map_err(|_| Stop::Gone),
        _ = tokio::time::sleep(app.sse.stall) => {
            Err(Stop::Slow(format!("it took nothing for {:?}", app.sse.stall)))
        }
        _ = app.shutdown.cancelled() => Err(Stop::Gone),
    }
}

pub(super) async fn feed(
    app: App,
    replay: Vec<SharedEvent>,
    mut events: broadcast::Receiver<SharedEvent>,
    tx: mpsc::Sender<Event>,
    _slot: OwnedSemaphorePermit,
    stalled: Option<Arc<AtomicBool>>,
) {
    let coord = app.coord.clone();
    let _open = Metrics::open(&coord.metrics().sse_clients);
    let start = replay.len().saturating_sub(FEED_REPLAY);
    let replay = replay[start..]
        .iter()
        .map(|ev| EventJson::from(&**ev))
        .collect();
    let mut since = BTreeMap::new();
    let stop = async {
        offer(&app, &tx, snapshot(&coord, &mut since, Some(replay)).await).await?;
        let mut tick = tokio::time::interval(app.sse.debounce);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = false;
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = app.shutdown.cancelled() => return Err(Stop::Gone),
                _ = tx.closed() => return Err(Stop::Gone),
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        dirty = true;
                        offer(&app, &tx, cluster_event(&ev)).await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        return Err(Stop::Slow(format!("it missed {n} events")));
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(Stop::Gone),
                },
                _ = tick.tick() => {
                    if dirty || last.elapsed() >= app.sse.refresh {
                        dirty = false;
                        last = Instant::now();
                        offer(&app, &tx, snapshot(&coord, &mut since, None).await).await?;
                    }
                }
            }
        }
    };
    let stop: Result<Infallible, Stop> = stop.await;
    let stop = match stop {
        Ok(never) => match never {},
        Err(stop) => stop,
    };
    let slow = match stop {
        Stop::Slow(why) => Some(why),
        // Its connection was closed for not reading (see StallGuard).
        Stop::Gone if stalled.is_some_and(|s| s.load(Ordering::Relaxed)) => Some(format!(
            "its connection took nothing for {:?}",
            app.sse.stall
        )),
        Stop::Gone => None,
    };
    if let Some(why) = slow {
        coord.metrics().sse_dropped();
        tracing::info!(reason = %why, "dropped a dashboard stream that fell behind");
    }
}

pub(super) fn cluster_event(ev: &SharedEvent) -> Event {
    let data = serde_json::to_string(&EventJson::from(&**ev)).unwrap_or_default();
    Event::default()
        .event("cluster")
        .id(ev.seq.to_string())
        .data(data)
}

/// A snapshot of nodes and services, with the metric samples newer than
/// `since` (per node; updated).
pub(super) async fn snapshot(
    coord: &Coordinator,
    since: &mut BTreeMap<String, i64>,
    events: Option<Vec<EventJson>>,
) -> Event {
    let nodes = NodesJson::from(&convoy_proto::ListNodesResponse::from(coord.nodes().await));
    let mut status = convoy_proto::StatusResponse::from(coord.status("", "").await);
    status.control_plane = coord
        .control_plane()
        .await
        .as_ref()
        .map(convoy_proto::ControlPlane::from);
    let services = StatusJson::from(&status);
    let mut history = coord.metrics_history();
    for (node, samples) in history.iter_mut() {
        let after = since.get(node).copied().unwrap_or(i64::MIN);
        samples.retain(|s| s.unix_ms > after);
        if let Some(last) = samples.last() {
            since.insert(node.clone(), last.unix_ms);
        }
    }
    history.retain(|_, samples| !samples.is_empty());
    let snap = Snapshot {
        now_unix_ms: now_unix_ms(),
        nodes,
        services,
        history,
        events,
    };
    Event::default()
        .event("snapshot")
        .data(serde_json::to_string(&snap).unwrap_or_default())
}

// ---- slow readers ----------------------------------------------------

//! Webhook delivery (docs/NOTIFY.md). The leader's engine reads the event
//! bus; each event a notifier wants becomes a delivery written to the store
//! (`notify/outbox/NOTIFIER/SEQ`) before it is sent, so a receiver that is
//! down, or a coordinator that restarts (or fails over) in between, loses
//! nothing: the queue is read back on start. Each notifier has its own lane,
//! delivered in order, one request at a time, retried with exponential
//! backoff and jitter (1 s to 30 s) until the receiver answers 2xx; a lane
//! never holds another. Bounded: a lane keeps its newest [`MAX_QUEUED`]
//! deliveries and drops those older than [`MAX_AGE_MS`], saying so in
//! `convoy notify ls`. At least once: a delivery the receiver took but whose
//! answer was lost is sent again; `X-Convoy-Delivery` tells them apart.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use convoy_proto as pb;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

use crate::{
    state::{now_unix_ms, Coordinator, NotifierTarget, NotifierTargets, NotifyFormat},
    store::{self, Op, Store},
};

/// The kind of `convoy notify test`'s event.
pub const TEST_KIND: &str = "notify.test";
/// Store prefix of queued deliveries.
const OUTBOX: &str = "notify/outbox/";
/// Deliveries a lane keeps; beyond, the oldest are dropped.
pub const MAX_QUEUED: usize = 10_000;
/// A delivery older than this is dropped (a day).
pub const MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// One request's whole time (connect, send, answer).
const TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The most of a receiver's answer kept for an error message.
const MAX_ANSWER: usize = 512;

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// One delivery as queued (and stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Queued {
    notifier: String,
    /// `X-Convoy-Delivery`: unique per delivery.
    id: String,
    kind: String,
    /// The body, as it will be sent (its format fixed when queued).
    body: String,
    queued_unix_ms: i64,
}

#[derive(Default)]
struct Lane {
    queue: VecDeque<(String, Queued)>,
    wake: Arc<Notify>,
    delivered: u64,
    last_delivered_unix_ms: i64,
    last_error: String,
    dropped: u64,
}

/// What `convoy notify ls` shows of a lane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaneInfo {
    pub queued: u64,
    pub delivered: u64,
    pub last_delivered_unix_ms: i64,
    pub last_error: String,
}

/// The delivery engine of one leader term.
pub struct Notifier {
    coord: Arc<Coordinator>,
    store: Arc<dyn Store>,
    client: Client<Https, Full<Bytes>>,
    lanes: Mutex<BTreeMap<String, Lane>>,
    /// This coordinator's name, in every body.
    coordinator: String,
    seq: AtomicU64,
}

/// What a receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub error: String,
    pub duration: Duration,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn client() -> Client<Https, Full<Bytes>> {
    // The machine's roots (webhook receivers are public services or the
    // organisation's own, whose CA is installed on the host).
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let https = match builder.with_native_roots() {
        Ok(b) => b.https_or_http().enable_http1().build(),
        Err(e) => {
            tracing::warn!(error = %e, "no system CA certificates: https notifiers will fail");
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
                )
                .https_or_http()
                .enable_http1()
                .build()
        }
    };
    Client::builder(TokioExecutor::new()).build(https)
}

impl Notifier {
    /// Reads the queued deliveries back; [`Notifier::run`] sends them.
    pub async fn load(
        coord: Arc<Coordinator>,
        store: Arc<dyn Store>,
        coordinator: &str,
    ) -> Result<Arc<Self>, store::StoreError> {
        let mut lanes: BTreeMap<String, Lane> = BTreeMap::new();
        let mut last = 0u64;
        for (key, q) in store::scan_json::<Queued>(&*store, OUTBOX).await? {
            if let Some(seq) = key.rsplit('/').next().and_then(|s| s.parse::<u64>().ok()) {
                last = last.max(seq);
            }
            lanes
                .entry(q.notifier.clone())
                .or_default()
                .queue
                .push_back((key, q));
        }
        // Above every stored key and the clock: keys sort in queue order.
        let seq = last.max(now_unix_ms().max(0) as u64 * 1000);
        Ok(Arc::new(Self {
            coord,
            store,
            client: client(),
            lanes: Mutex::new(lanes),
            coordinator: coordinator.to_string(),
            seq: AtomicU64::new(seq),
        }))
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Lane>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lane figures of `name`.
    pub fn info(&self, name: &str) -> LaneInfo {
        let lanes = self.lanes();
        lanes
            .get(name)
            .map_or_else(LaneInfo::default, |l| LaneInfo {
                queued: l.queue.len() as u64,
                delivered: l.delivered,
                last_delivered_unix_ms: l.last_delivered_unix_ms,
                last_error: match (l.dropped, l.last_error.is_empty()) {
                    (0, _) => l.last_error.clone(),
                    (n, true) => format!("{n} deliveries dropped (queue full or a day old)"),
                    (n, false) => format!(
                        "{}; {n} deliveries dropped (queue full or a day old)",
                        l.last_error
                    ),
                },
            })
    }

    /// Queues the events the notifiers want, in one store write, and wakes
    /// their lanes.
    async fn enqueue(&self, events: &[Arc<pb::ClusterEvent>], targets: &NotifierTargets) {
        let mut ops = Vec::new();
        let mut added: Vec<(String, Queued)> = Vec::new();
        for ev in events {
            for t in targets.values().filter(|t| t.wants(&ev.kind)) {
                let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
                let q = Queued {
                    notifier: t.name.clone(),
                    id: format!("{seq:x}"),
                    kind: ev.kind.clone(),
                    body: body(t.format, ev, &self.coordinator, &format!("{seq:x}")),
                    queued_unix_ms: now_unix_ms(),
                };
                let key = format!("{OUTBOX}{}/{seq:020}", t.name);
                ops.push(Op::put_json(&key, &q));
                added.push((key, q));
            }
        }
        if added.is_empty() {
            return;
        }
        if let Err(e) = self.store.apply(ops).await {
            // Still sent from memory; only a restart before then loses it.
            tracing::warn!(error = %e, "could not store queued notifications");
        }
        let mut drop_keys = Vec::new();
        {
            let mut lanes = self.lanes();
            for (key, q) in added {
                let lane = lanes.entry(q.notifier.clone()).or_default();
                lane.queue.push_back((key, q));
                while lane.queue.len() > MAX_QUEUED {
                    if let Some((old, _)) = lane.queue.pop_front() {
                        lane.dropped += 1;
                        drop_keys.push(Op::Delete(old));
                    }
                }
                lane.wake.notify_one();
            }
        }
        if !drop_keys.is_empty() {
            let _ = self.store.apply(drop_keys).await;
        }
    }

    /// Reads events until `shutdown`, and runs a lane per notifier.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut targets = self.coord.notifier_targets();
        let mut events = self.coord.events().subscribe();
        let mut workers: BTreeMap<String, CancellationToken> = BTreeMap::new();
        loop {
            let current = targets.borrow_and_update().clone();
            self.sync_lanes(&current, &mut workers, &shutdown).await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = targets.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                got = events.recv() => {
                    let mut batch = Vec::new();
                    match got {
                        Ok(ev) => batch.push(ev),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "notifications fell behind the event stream; {n} events not notified");
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                    while batch.len() < 256 {
                        match events.try_recv() {
                            Ok(ev) => batch.push(ev),
                            Err(_) => break,
                        }
                    }
                    if !current.is_empty() {
                        self.enqueue(&batch, &current).await;
                    }
                }
            }
        }
        for (_, w) in workers {
            w.cancel();
        }
    }

    /// A lane per notifier: started for new ones; removed ones stop, their
    /// queue dropped from the store.
    async fn sync_lanes(
        self: &Arc<Self>,
        targets: &NotifierTargets,
        workers: &mut BTreeMap<String, CancellationToken>,
        shutdown: &CancellationToken,
    ) {
        let gone: Vec<String> = {
            let lanes = self.lanes();
            lanes
                .keys()
                .chain(workers.keys())
                .filter(|n| !targets.contains_key(*n))
                .cloned()
                .collect()
        };
        for name in gone {
            if let Some(w) = workers.remove(&name) {
                w.cancel();
            }
            let lane = self.lanes().remove(&name);
            if let Some(lane) = lane {
                let ops: Vec<Op> = lane.queue.into_iter().map(|(k, _)| Op::Delete(k)).collect();
                if !ops.is_empty() {
                    let _ = self.store.apply(ops).await;
                }
            }
        }
        for name in targets.keys() {
            if !workers.contains_key(name) {
                let stop = shutdown.child_token();
                workers.insert(name.clone(), stop.clone());
                let wake = self.lanes().entry(name.clone()).or_default().wake.clone();
                tokio::spawn(self.clone().lane(name.clone(), wake, stop));
            }
        }
    }

    /// Delivers `name`'s queue in order until `stop`.
    async fn lane(self: Arc<Self>, name: String, wake: Arc<Notify>, stop: CancellationToken) {
        let targets = self.coord.notifier_targets();
        let mut failures = 0u32;
        loop {
            let head = self
                .lanes()
                .get(&name)
                .and_then(|l| l.queue.front().cloned());
            let Some((key, q)) = head else {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = wake.notified() => continue,
                }
            };
            if now_unix_ms() - q.queued_unix_ms > MAX_AGE_MS {
                self.done(&name, &key, None).await;
                continue;
            }
            let Some(target) = targets.borrow().get(&name).cloned() else {
                return;
            };
            let answer = tokio::select! {
                _ = stop.cancelled() => return,
                a = self.send(&target, &q) => a,
            };
            if answer.ok() {
                failures = 0;
                self.done(&name, &key, Some(answer)).await;
                continue;
            }
            failures += 1;
            let wait = backoff(failures);
            let why = if answer.status == 0 {
                answer.error.clone()
            } else {
                format!("HTTP {}: {}", answer.status, answer.error)
            };
            tracing::info!(notifier = %name, delivery = %q.id, error = %why, retry_in_ms = wait.as_millis() as u64, "notification not delivered; retrying");
            if let Some(lane) = self.lanes().get_mut(&name) {
                lane.last_error = format!("{why} (try {failures}; next in {} s)", wait.as_secs());
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Takes delivered (or expired: `answer` None) `key` off the lane.
    async fn done(&self, name: &str, key: &str, answer: Option<Answer>) {
        if let Err(e) = self.store.apply(vec![Op::Delete(key.to_string())]).await {
            tracing::warn!(error = %e, "could not remove a delivered notification from the store");
        }
        let mut lanes = self.lanes();
        if let Some(lane) = lanes.get_mut(name) {
            if lane.queue.front().is_some_and(|(k, _)| k == key) {
                lane.queue.pop_front();
            }
            match answer {
                Some(_) => {
                    lane.delivered += 1;
                    lane.last_delivered_unix_ms = now_unix_ms();
                    lane.last_error.clear();
                }
                None => lane.dropped += 1,
            }
        }
    }

    /// One request, bounded by [`TIMEOUT`].
    async fn send(&self, target: &NotifierTarget, q: &Queued) -> Answer {
        send(&self.client, target, &q.kind, &q.id, q.body.clone()).await
    }

    /// `convoy notify test`: one `notify.test` delivery now, outside the
    /// queue.
    pub async fn test(&self, target: &NotifierTarget, by: &str) -> Answer {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let ev = pb::ClusterEvent {
            kind: TEST_KIND.into(),
            unix_ms: now_unix_ms(),
            message: format!("a test notification to `{}`, sent by {by}", target.name),
            ..Default::default()
        };
        let id = format!("{seq:x}");
        let body = body(target.format, &ev, &self.coordinator, &id);
        send(&self.client, target, TEST_KIND, &id, body).await
    }
}

/// Exponential, 1 s doubling to 30 s, ±20 % jitter (receivers that come
/// back are not hit by every coordinator's retries at once).
fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(BACKOFF_MAX);
    let jitter = rand::random_range(0.8..1.2);
    base.mul_f64(jitter)
}

/// `sha256=HEX` of HMAC-SHA256(secret, body).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body of a delivery of `ev` in `format`.
fn body(format: NotifyFormat, ev: &pb::ClusterEvent, coordinator: &str, id: &str) -> String {
    let value = match format {
        NotifyFormat::Json => serde_json::json!({
            "id": id,
            "kind": ev.kind,
            "time": convoy_api::clock::rfc3339_ms(ev.unix_ms),
            "unix_ms": ev.unix_ms,
            "env": ev.env,
            "service": ev.service,
            "instance": ev.instance,
            "node": ev.node,
            "message": ev.message,
            "fields": ev.fields.iter().collect::<BTreeMap<_, _>>(),
            "coordinator": coordinator,
        }),
        NotifyFormat::Slack => {
            let what = match (ev.service.is_empty(), ev.node.is_empty()) {
                (false, _) => format!(" {}/{}", ev.env, ev.service),
                (true, false) => format!(" node {}", ev.node),
                _ => String::new(),
            };
            serde_json::json!({
                "text": format!("*{}*{what}: {}", ev.kind, ev.message),
            })
        }
    };
    value.to_string()
}

async fn send(
    client: &Client<Https, Full<Bytes>>,
    target: &NotifierTarget,
    kind: &str,
    id: &str,
    body: String,
) -> Answer {
    let started = Instant::now();
    let fail = |error: String| Answer {
        status: 0,
        error,
        duration: started.elapsed(),
    };
    let mut request = ::http::Request::post(&target.url)
        .header(::http::header::CONTENT_TYPE, "application/json")
        .header(
            ::http::header::USER_AGENT,
            concat!("convoy/", env!("CARGO_PKG_VERSION")),
        )
        .header("X-Convoy-Event", kind)
        .header("X-Convoy-Delivery", id);
    if let Some(secret) = &target.secret {
        request = request.header(
            "X-Convoy-Signature",
            signature(secret.expose(), body.as_bytes()),
        );
    }
    let request = match request.body(Full::new(Bytes::from(body))) {
        Ok(r) => r,
        Err(e) => return fail(format!("building the request: {e}")),
    };
    let answered = tokio::time::timeout(TIMEOUT, async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        // Only the start of the answer is read (for an error message).
        let mut text = Vec::new();
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                text.extend_from_slice(&data[..data.len().min(MAX_ANSWER - text.len())]);
                if text.len() >= MAX_ANSWER {
                    break;
                }
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, text))
    })
    .await;
    match answered {
        Err(_) => fail(format!("no answer within {} s", TIMEOUT.as_secs())),
        Ok(Err(e)) => fail(convoy_api::errors::chain(&*e)),
        Ok(Ok((status, text))) => Answer {
            status,
            error: if (200..300).contains(&status) {
                String::new()
            } else {
                String::from_utf8_lossy(&text).trim().to_string()
            },
            duration: started.elapsed(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds_with_jitter() {
        for (n, base) in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (40, 30.0)] {
            let got = backoff(n).as_secs_f64();
            assert!(
                got >= base * 0.8 - 1e-9 && got <= base * 1.2 + 1e-9,
                "{n}: {got}"
            );
        }
    }

    #[test]
    fn bodies_carry_the_event() {
        let ev = pb::ClusterEvent {
            seq: 7,
            unix_ms: 1_700_000_000_000,
            kind: "rollout.rolled_back".into(),
            env: "default".into(),
            service: "web".into(),
            message: "web rolled back to r1".into(),
            fields: [("revision".to_string(), "3".to_string())].into(),
            ..Default::default()
        };
        let json: serde_json::Value =
            serde_json::from_str(&body(NotifyFormat::Json, &ev, "c1", "ab")).unwrap();
        assert_eq!(json["kind"], "rollout.rolled_back");
        assert_eq!(json["service"], "web");
        assert_eq!(json["fields"]["revision"], "3");
        assert_eq!(json["coordinator"], "c1");
        assert_eq!(json["id"], "ab");
        let slack: serde_json::Value =
            serde_json::from_str(&body(NotifyFormat::Slack, &ev, "c1", "ab")).unwrap();
        assert_eq!(
            slack["text"],
            "*rollout.rolled_back* default/web: web rolled back to r1"
        );
    }
}

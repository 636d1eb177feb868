//! `GET /api/logs`: a service's (instance's, unit's) output as Server-Sent
//! Events for the dashboard's log panel, following. The access path is
//! `convoy logs`'s own ([`access::open`]): deployer or admin in the
//! environment, audited; lines come from the same bounded, lossy receiver.

use axum::extract::rejection::QueryRejection;
use convoy_api::logs::InstanceLine;

use super::*;
use crate::api::control::logs::{self as access, LogsAsk, LogsRefused};
use crate::state::LogsError;

/// The query's parameters.
const ENV: &str = "env";
const TARGET: &str = "target";
const TAIL: &str = "tail";
const SINCE: &str = "since_unix_ms";
const PARAMS: [&str; 4] = [ENV, TARGET, TAIL, SINCE];

/// One output line: `data` is a [`LineJson`].
pub(super) const LINE_EVENT: &str = "line";
/// Every node's part ended (the workloads are gone, or a node failed,
/// which a `convoy` line said): nothing more comes, so do not reconnect.
pub(super) const END_EVENT: &str = "end";

/// What `GET /api/logs?env=E&target=T[&tail=N][&since_unix_ms=MS]` asks.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct LogsParams {
    pub(super) env: String,
    pub(super) target: String,
    pub(super) tail: Option<u64>,
    pub(super) since_unix_ms: i64,
}

impl LogsParams {
    /// Reads the query's pairs; an error names the parameter.
    pub(super) fn parse(pairs: Vec<(String, String)>) -> Result<Self, String> {
        let mut seen: Vec<&str> = Vec::new();
        let mut params = LogsParams::default();
        for (name, value) in &pairs {
            let Some(known) = PARAMS.iter().find(|p| **p == name.as_str()) else {
                return Err(format!(
                    "unknown parameter `{name}` (expected {})",
                    PARAMS.join(", ")
                ));
            };
            if seen.contains(known) {
                return Err(format!("parameter `{name}` is given twice"));
            }
            seen.push(known);
            match *known {
                ENV => params.env = value.clone(),
                TARGET => params.target = value.clone(),
                TAIL => {
                    let n = value.parse().map_err(|_| {
                        format!("parameter `{TAIL}`: `{value}` is not a line count (0 or more)")
                    })?;
                    params.tail = Some(n);
                }
                _ => {
                    let ms: i64 = value.parse().map_err(|_| {
                        format!("parameter `{SINCE}`: `{value}` is not unix milliseconds")
                    })?;
                    if ms < 0 {
                        return Err(format!("parameter `{SINCE}`: {ms} is before 1970"));
                    }
                    params.since_unix_ms = ms;
                }
            }
        }
        if params.target.is_empty() {
            return Err(format!(
                "parameter `{TARGET}` is missing: name a service, instance or unit"
            ));
        }
        Ok(params)
    }
}

/// A line as the dashboard gets it.
#[derive(Debug, Serialize)]
pub(super) struct LineJson {
    /// `web-2`, or the unit.
    pub(super) instance: String,
    pub(super) node: String,
    pub(super) unix_nanos: i64,
    /// `stdout`, `stderr`, or `convoy` for Convoy's own (drop markers).
    pub(super) stream: &'static str,
    pub(super) text: String,
}

impl From<InstanceLine> for LineJson {
    fn from(line: InstanceLine) -> Self {
        let InstanceLine {
            instance,
            node,
            entry,
        } = line;
        Self {
            instance,
            node,
            unix_nanos: entry.unix_nanos,
            stream: entry.stream.name(),
            text: entry.text,
        }
    }
}

fn line_event(line: InstanceLine) -> Option<Event> {
    let data = serde_json::to_string(&LineJson::from(line)).ok()?;
    Some(Event::default().event(LINE_EVENT).data(data))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

impl LogsRefused {
    fn status(&self) -> StatusCode {
        match self {
            LogsRefused::Denied(_) => StatusCode::FORBIDDEN,
            LogsRefused::BeforeEpoch(_) => StatusCode::BAD_REQUEST,
            LogsRefused::Target(LogsError::NotFound { .. }) => StatusCode::NOT_FOUND,
            LogsRefused::Target(LogsError::Swarm { .. } | LogsError::NotPlaced { .. }) => {
                StatusCode::CONFLICT
            }
        }
    }
}

/// Holds a log stream's slot and counts it open while the response lives.
struct OpenStream {
    coord: Arc<Coordinator>,
    _slot: OwnedSemaphorePermit,
}

impl OpenStream {
    fn new(coord: Arc<Coordinator>, slot: OwnedSemaphorePermit) -> Self {
        coord.metrics().log_streams.fetch_add(1, Ordering::Relaxed);
        Self { coord, _slot: slot }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.coord
            .metrics()
            .log_streams
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /api/logs`: `line` events as lines come (the last `tail` first),
/// then `end` if every node's part ends. A browser that goes away drops
/// the response, and with it the receiver: the fan-out sees it closed and
/// closes the tunnels. A reader slower than the workloads write loses
/// lines (a `convoy` line says how many), never holds up an agent.
pub(super) async fn api_logs(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let params = match query {
        Ok(Query(pairs)) => LogsParams::parse(pairs),
        Err(e) => Err(format!("bad query: {}", e.body_text())),
    };
    let params = match params {
        Ok(p) => p,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let Ok(slot) = app.log_slots.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many log streams ({} open): close one or try again later",
                app.sse.max_log_clients
            ),
        );
    };
    let ask = LogsAsk {
        env: &params.env,
        target: &params.target,
        follow: true,
        since_unix_ms: params.since_unix_ms,
        tail: params.tail,
    };
    let lines = match access::open(&app.coord, &app.audit, &caller, ask).await {
        Ok(lines) => lines,
        Err(LogsRefused::BeforeEpoch(ms)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("parameter `{SINCE}`: {ms} is before 1970"),
            )
        }
        Err(e) => return error(e.status(), e.to_string()),
    };
    let open = OpenStream::new(app.coord.clone(), slot);
    let end = futures::stream::once(async { Event::default().event(END_EVENT).data("{}") });
    let events = ReceiverStream::new(lines)
        .filter_map(|line| std::future::ready(line_event(line)))
        .chain(end)
        .take_until(app.shutdown.clone().cancelled_owned())
        .map(move |event| {
            let _open = &open;
            Ok::<_, Infallible>(event)
        });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(app.sse.keep_alive))
        .into_response()
}

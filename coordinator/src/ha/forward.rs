//! A standby's API and HTTP ports forward to the leader, so any coordinator
//! serves the CLI and the dashboard.
//!
//! Reads are forwarded as well as writes: live state (which agents are
//! connected, their statuses, the rollout driver's view) lives in the
//! leader's memory, so only the leader answers `status` truly; and one
//! commit path stays (issue 13). The forwarder never looks inside a call:
//! the bearer token travels to the leader, which authenticates, authorizes
//! and audits the caller as if it had called directly. The leader is
//! reached over TLS checked against the shared CA and the coordinators'
//! common server name, so a token is never handed to anything but a
//! coordinator.
//!
//! A forwarded call carries [`FORWARDED_BY`]; a standby never forwards such
//! a call again (two standbys with different ideas of who leads must not
//! bounce a call between them): it answers as a standby instead, and so
//! does one that knows no leader or cannot reach it. Its answers start with
//! `standby:`, on which the CLI moves on to its next address.

use std::{sync::Mutex, time::Duration};

use axum::{body::Body, extract::Request, response::Response};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::{Election, Member};

/// Set on every forwarded request to the coordinator that forwarded it.
pub const FORWARDED_BY: &str = "x-convoy-forwarded-by";

/// How long connecting to the leader may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Headers that belong to one HTTP/1 hop (RFC 9110 7.6.1; the framing is
/// chosen again on each side).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Why a call was not answered by the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotForwarded {
    /// It never left this coordinator (no leader known, the leader's port
    /// refused, ...): in a standby's words, `standby: …`, so a CLI sends
    /// it to its next address, safely even for a write.
    Standby(String),
    /// It was sent and the connection broke before the answer: the leader
    /// may have carried it out, so it must not be sent again blindly.
    Lost(String),
}

impl NotForwarded {
    /// As a gRPC status (`UNAVAILABLE`).
    pub fn status(self) -> tonic::Status {
        match self {
            Self::Standby(m) | Self::Lost(m) => tonic::Status::unavailable(m),
        }
    }

    /// As an HTTP answer: 503 for a standby, 502 for a lost call.
    pub fn http(self) -> (http::StatusCode, String) {
        match self {
            Self::Standby(m) => (http::StatusCode::SERVICE_UNAVAILABLE, format!("{m}\n")),
            Self::Lost(m) => (http::StatusCode::BAD_GATEWAY, format!("{m}\n")),
        }
    }
}

/// Forwards one standby's calls to whoever leads.
pub struct Forwarder {
    election: std::sync::Arc<Election>,
    ca_pem: String,
    /// A channel to the leader's API, by its address.
    api: Mutex<Option<(String, Channel)>>,
    http: Client<HttpConnector, Body>,
}

impl Forwarder {
    pub fn new(election: std::sync::Arc<Election>, ca_pem: String) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Self {
            election,
            ca_pem,
            api: Mutex::new(None),
            http: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The coordinator to forward to: the leader, when it is another one
    /// and the call was not forwarded already.
    async fn target(&self, headers: &http::HeaderMap) -> Result<Member, NotForwarded> {
        let me = &self.election.me().id;
        if let Some(by) = headers.get(FORWARDED_BY) {
            return Err(NotForwarded::Standby(format!(
                "standby: coordinator `{me}` stands by and does not forward a call that coordinator `{}` forwarded to it as the leader",
                String::from_utf8_lossy(by.as_bytes())
            )));
        }
        match self.election.leader().await {
            Some(leader) if leader.id != *me => Ok(leader),
            Some(_) => Err(NotForwarded::Standby(format!(
                "standby: coordinator `{me}` is taking the lead; try again"
            ))),
            None => Err(NotForwarded::Standby(format!(
                "standby: coordinator `{me}` stands by and no coordinator leads right now"
            ))),
        }
    }

    fn unreachable(&self, leader: &Member, what: &str, e: &dyn std::fmt::Display) -> NotForwarded {
        NotForwarded::Standby(format!(
            "standby: coordinator `{}` stands by; `{}` leads ({what} {}) but cannot be reached from here: {e}",
            self.election.me().id,
            leader.id,
            match what {
                "api" => &leader.api,
                _ => &leader.http,
            },
        ))
    }

    fn lost(&self, leader: &Member, e: &dyn std::fmt::Display) -> NotForwarded {
        NotForwarded::Lost(format!(
            "coordinator `{}` forwarded the call to the leader `{}`, and the connection broke before its answer ({e}): it may have been carried out; check (e.g. `convoy status`, `convoy history`) before trying again",
            self.election.me().id,
            leader.id,
        ))
    }

    /// A channel to `leader`'s API (kept while it leads).
    fn channel(&self, leader: &Member) -> Result<Channel, NotForwarded> {
        let mut cached = self.api.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((addr, ch)) = cached.as_ref() {
            if *addr == leader.api {
                return Ok(ch.clone());
            }
        }
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(convoy_proto::COORDINATOR_SERVER_NAME);
        let endpoint = Endpoint::from_shared(leader.api.clone())
            .and_then(|e| e.tls_config(tls))
            .map_err(|e| self.unreachable(leader, "api", &e))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let ch = endpoint.connect_lazy();
        *cached = Some((leader.api.clone(), ch.clone()));
        Ok(ch)
    }

    /// Forwards one gRPC call to the leader's API, bodies streamed both
    /// ways (watches and logs stay open as long as the leader keeps them).
    pub async fn grpc(&self, req: Request) -> Result<Response, NotForwarded> {
        use tonic::client::GrpcService;
        let leader = self.target(req.headers()).await?;
        let mut channel = self.channel(&leader)?;
        let mut req = req.map(tonic::body::Body::new);
        self.mark(req.headers_mut());
        futures::future::poll_fn(|cx| GrpcService::poll_ready(&mut channel, cx))
            .await
            .map_err(|e| self.unreachable(&leader, "api", &root_cause(&e)))?;
        match GrpcService::call(&mut channel, req).await {
            Ok(resp) => Ok(resp.map(Body::new)),
            Err(e) => {
                // The next call connects afresh.
                self.forget(&leader);
                if never_sent(&e) {
                    Err(self.unreachable(&leader, "api", &root_cause(&e)))
                } else {
                    Err(self.lost(&leader, &root_cause(&e)))
                }
            }
        }
    }

    /// Forwards one HTTP request to the leader's HTTP port (dashboard,
    /// `/api/…`, its event streams).
    pub async fn http(&self, req: Request) -> Result<Response, NotForwarded> {
        let leader = self.target(req.headers()).await?;
        let base = leader.http.trim_end_matches('/');
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri: http::Uri = format!("{base}{path}")
            .parse()
            .map_err(|e| self.unreachable(&leader, "dashboard", &e))?;
        let (mut parts, body) = req.into_parts();
        parts.uri = uri;
        for h in HOP_BY_HOP {
            parts.headers.remove(h);
        }
        self.mark(&mut parts.headers);
        let resp = self
            .http
            .request(http::Request::from_parts(parts, body))
            .await
            .map_err(|e| {
                if e.is_connect() {
                    self.unreachable(&leader, "dashboard", &root_cause(&e))
                } else {
                    self.lost(&leader, &root_cause(&e))
                }
            })?;
        let (mut parts, body) = resp.into_parts();
        for h in HOP_BY_HOP {
            parts.headers.remove(h);
        }
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    fn mark(&self, headers: &mut http::HeaderMap) {
        if let Ok(v) = http::HeaderValue::from_str(&self.election.me().id) {
            headers.insert(FORWARDED_BY, v);
        }
    }

    fn forget(&self, leader: &Member) {
        let mut cached = self.api.lock().unwrap_or_else(|p| p.into_inner());
        if cached.as_ref().is_some_and(|(a, _)| *a == leader.api) {
            *cached = None;
        }
    }
}

/// Whether a failed call never reached the leader: it failed while
/// connecting (refused, timed out, TLS refused), or hyper dropped it
/// unsent when the connection closed first (`canceled`).
fn never_sent(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut inner = Some(e);
    while let Some(err) = inner {
        if err.is::<tonic::ConnectError>()
            || err
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        inner = err.source();
    }
    false
}

/// The innermost error's words.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failure_to_connect_means_the_call_was_never_sent() {
        let refused = tonic::ConnectError(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        let wrapped = anyhow::Error::new(refused).context("transport error");
        assert!(never_sent(wrapped.as_ref()));
        let reset = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            .context("transport error");
        assert!(!never_sent(reset.as_ref()));
    }

    /// The classification against tonic's real errors: a port nobody
    /// listens on, and one that accepts and hangs up at once.
    #[tokio::test]
    async fn a_refused_or_dropped_connection_is_a_call_never_sent() {
        use tonic::client::GrpcService;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let hangs_up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hangs_up_addr = hangs_up.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = hangs_up.accept().await {
                drop(s);
            }
        });
        for addr in [closed, hangs_up_addr] {
            let mut ch = Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(2))
                .connect_lazy();
            let req = http::Request::builder()
                .uri("/convoy.v1.ControlService/Status")
                .header("content-type", "application/grpc")
                .body(tonic::body::Body::empty())
                .unwrap();
            futures::future::poll_fn(|cx| GrpcService::poll_ready(&mut ch, cx))
                .await
                .unwrap();
            let err = GrpcService::call(&mut ch, req).await.unwrap_err();
            assert!(never_sent(&err), "{addr}: {err:?}");
        }
    }

    /// A call the leader received, whose connection then broke, may have
    /// been carried out: it is not "never sent".
    #[tokio::test]
    async fn a_call_cut_off_after_it_arrived_is_not_a_call_never_sent() {
        use tonic::client::GrpcService;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (arrived_tx, arrived) = tokio::sync::oneshot::channel::<()>();
        let arrived_tx = std::sync::Mutex::new(Some(arrived_tx));
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = hyper::service::service_fn(move |_req| {
                if let Some(tx) = arrived_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                std::future::pending::<Result<http::Response<Body>, std::convert::Infallible>>()
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
        let mut ch = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let req = http::Request::builder()
            .uri("/convoy.v1.ControlService/Apply")
            .header("content-type", "application/grpc")
            .body(tonic::body::Body::empty())
            .unwrap();
        futures::future::poll_fn(|cx| GrpcService::poll_ready(&mut ch, cx))
            .await
            .unwrap();
        let call = tokio::spawn(async move { GrpcService::call(&mut ch, req).await });
        arrived.await.unwrap();
        server.abort();
        let err = call.await.unwrap().unwrap_err();
        assert!(!never_sent(&err), "{err:?}");
    }

    #[test]
    fn a_lost_call_is_not_a_standby_answer() {
        let (code, body) = NotForwarded::Lost("forwarded and lost".into()).http();
        assert_eq!(code, http::StatusCode::BAD_GATEWAY);
        assert!(!body.starts_with("standby:"));
        let status = NotForwarded::Standby("standby: no leader".into()).status();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().starts_with("standby:"));
    }

    #[test]
    fn the_root_cause_is_the_innermost_error() {
        let inner = std::io::Error::other("connection refused");
        let outer = anyhow::Error::new(inner).context("transport error");
        let e: &(dyn std::error::Error + 'static) = outer.as_ref();
        assert_eq!(root_cause(e), "connection refused");
    }
}

//! Connections to instances owned by one client connection: a request
//! goes out on a connection that the client connection's own task drives
//! (while the request waits for its answer, then from the answer's body),
//! so no request is handed to another task and back, as a shared pool's
//! connections need. Idle ones wait in the client connection's [`Local`]
//! for its next request to the same address, and close with it.
//!
//! Chosen over hyper-util's pooled client for the request path after
//! bench/proxy.sh (BENCHMARKS.md); upgrades still go through the pool.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::forward::ProxyBody;

/// Idle connections one client connection keeps (one per address it used
/// last, the oldest closed first).
const MAX_IDLE: usize = 8;

/// Why a request did not get an answer.
#[derive(Debug)]
pub enum SendError {
    /// The instance could not be reached: nothing was sent.
    Connect(std::io::Error),
    /// A connection kept idle failed before any answer came: its peer may
    /// be gone (a removed container's address is not answered, until
    /// another container gets it); a fresh connection may work.
    Stale(hyper::Error),
    /// The connection was up; the request or its answer failed.
    Http(hyper::Error),
}

impl SendError {
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }

    pub fn is_stale(&self) -> bool {
        matches!(self, Self::Stale(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Http(e) | Self::Stale(e) => write!(f, "{}", crate::error_chain(e)),
        }
    }
}

/// One connection to an instance and the future that drives it.
struct Conn {
    target: SocketAddr,
    sender: SendRequest<ProxyBody>,
    driver: Connection<TokioIo<TcpStream>, ProxyBody>,
    /// The driver has ended (the connection is closed).
    ended: bool,
}

impl Conn {
    async fn open(target: SocketAddr, timeout: Duration) -> Result<Self, SendError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(SendError::Connect(e)),
            Err(_) => {
                return Err(SendError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {timeout:?}"),
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        Ok(Self {
            target,
            sender,
            driver,
            ended: false,
        })
    }

    /// Drives the connection once; `true` while it is open.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended && Pin::new(&mut self.driver).poll(cx).is_ready() {
            self.ended = true;
        }
        !self.ended
    }

    /// Whether the connection can take a request now.
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            if !self.drive(cx) {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
    }
}

/// The idle connections of one client connection.
#[derive(Default)]
pub struct Local {
    // Boxed: a connection moves between here and an answer's body on
    // every request, and its driver is large (a pointer moves, not 900 bytes).
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Conn>>>,
}

impl Local {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn take(&self, target: SocketAddr) -> Option<Box<Conn>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let i = idle.iter().rposition(|c| c.target == target)?;
        Some(idle.swap_remove(i))
    }

    fn give_back(&self, conn: Box<Conn>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(conn);
    }

    /// Sends `req` (origin-form URI) to `target` on an idle connection
    /// that still works, or a new one.
    pub async fn send(
        self: &Arc<Self>,
        target: SocketAddr,
        req: Request<ProxyBody>,
        connect_timeout: Duration,
    ) -> Result<Response<LocalBody>, SendError> {
        let (mut conn, reused) = loop {
            match self.take(target) {
                Some(mut conn) => {
                    if conn.ready().await {
                        break (conn, true);
                    }
                }
                None => break (Box::new(Conn::open(target, connect_timeout).await?), false),
            }
        };
        let answer = conn.sender.send_request(req);
        let mut answer = std::pin::pin!(answer);
        let response = poll_fn(|cx| {
            conn.drive(cx);
            answer.as_mut().poll(cx)
        })
        .await
        .map_err(|e| {
            if reused {
                SendError::Stale(e)
            } else {
                SendError::Http(e)
            }
        })?;
        let mut response = response.map(|inner| LocalBody {
            inner,
            conn: Some(conn),
            home: Arc::downgrade(self),
        });
        // An answer without a body is done already (hyper may never poll it).
        if response.body().inner.is_end_stream() {
            response.body_mut().done();
        }
        Ok(response)
    }
}

/// An answer's body, driving its connection; the connection goes back to
/// its client connection's idle ones once the body is done.
pub struct LocalBody {
    inner: Incoming,
    /// Boxed: the connection's driver is large, and answers move.
    conn: Option<Box<Conn>>,
    home: std::sync::Weak<Local>,
}

impl LocalBody {
    fn done(&mut self) {
        if let (Some(conn), Some(home)) = (self.conn.take(), self.home.upgrade()) {
            if !conn.ended {
                home.give_back(conn);
            }
        }
    }
}

impl Body for LocalBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(conn) = self.conn.as_mut() {
            conn.drive(cx);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.done(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.done(),
            Poll::Ready(Some(Err(_))) => self.conn = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

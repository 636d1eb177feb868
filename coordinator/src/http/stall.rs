//! A listener whose connections are dropped when a client stops reading
//! (a stalled SSE client must not hold a socket and a task forever).

use super::*;

/// Accepts connections wrapped in [`StallGuard`].
pub(super) struct StallGuardListener {
    pub(super) inner: TcpListener,
    pub(super) stall: Duration,
}

impl axum::serve::Listener for StallGuardListener {
    type Io = StallGuard<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    return (StallGuard::new(tcp, self.stall), peer);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// What the handlers know of a connection: whether [`StallGuard`] closed it.
#[derive(Clone, Debug)]
pub(super) struct Conn {
    pub(super) stalled: Arc<AtomicBool>,
}

impl Connected<axum::serve::IncomingStream<'_, StallGuardListener>> for Conn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, StallGuardListener>) -> Self {
        Self {
            stalled: stream.io().timed_out.clone(),
        }
    }
}

/// A connection whose writes make no progress for `limit` fails, so a client
/// that stops reading cannot pin its connection's buffers forever.
pub struct StallGuard<T> {
    io: T,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    /// Set once the limit was hit.
    timed_out: Arc<AtomicBool>,
}

impl<T> StallGuard<T> {
    pub fn new(io: T, limit: Duration) -> Self {
        Self {
            io,
            limit,
            stalled: None,
            timed_out: Arc::new(AtomicBool::new(false)),
        }
    }

    /// After the inner write returned Pending: Ready(error) once stalled
    /// for too long; Pending (with a timer armed) until then.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {limit:?}"),
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        inner: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match inner {
            Poll::Pending => self.poll_stall(cx).map(Err),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let inner = Pin::new(&mut this.io).poll_write(cx, buf);
        this.guard(cx, inner)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let inner = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.guard(cx, inner)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let inner = Pin::new(&mut this.io).poll_flush(cx);
        this.guard(cx, inner)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let inner = Pin::new(&mut this.io).poll_shutdown(cx);
        this.guard(cx, inner)
    }
}

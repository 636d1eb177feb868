//! A TCP connection that can be frozen the way a SIGSTOPped agent is: while
//! frozen nothing is read or written and the socket stays open (no FIN), so
//! only the coordinator's heartbeat deadline can notice.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
};

use futures::task::AtomicWaker;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::transport::Uri;

/// The switch shared by an agent's task and its socket.
#[derive(Default)]
pub struct Freeze {
    frozen: AtomicBool,
    read: AtomicWaker,
    write: AtomicWaker,
}

impl Freeze {
    pub fn set(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
        if !frozen {
            self.read.wake();
            self.write.wake();
        }
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Ready once thawed; the waker is woken by [`Freeze::set`].
    fn poll_thawed(&self, waker: &AtomicWaker, cx: &mut Context<'_>) -> Poll<()> {
        if !self.is_frozen() {
            return Poll::Ready(());
        }
        waker.register(cx.waker());
        if self.is_frozen() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// A `TcpStream` that stops doing I/O while its [`Freeze`] is set.
pub struct FreezableTcp {
    inner: TcpStream,
    freeze: Arc<Freeze>,
}

impl AsyncRead for FreezableTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.freeze.poll_thawed(&this.freeze.read, cx));
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FreezableTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.freeze.poll_thawed(&this.freeze.write, cx));
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.freeze.poll_thawed(&this.freeze.write, cx));
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.freeze.poll_thawed(&this.freeze.write, cx));
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A frozen process sends no FIN either.
        ready!(this.freeze.poll_thawed(&this.freeze.write, cx));
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A connector for `Endpoint::connect_with_connector`: dials `addr` whatever
/// the URI says (tonic adds TLS on top) and hands back a freezable socket.
pub fn connector(
    addr: SocketAddr,
    freeze: Arc<Freeze>,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<FreezableTcp>,
    Error = io::Error,
    Future = impl std::future::Future<Output = io::Result<TokioIo<FreezableTcp>>> + Send,
> + Send
       + 'static {
    tower::service_fn(move |_uri: Uri| {
        let freeze = freeze.clone();
        async move {
            let inner = TcpStream::connect(addr).await?;
            inner.set_nodelay(true)?;
            Ok(TokioIo::new(FreezableTcp { inner, freeze }))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_frozen_socket_reads_nothing_until_thawed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let freeze = Arc::new(Freeze::default());
        let inner = TcpStream::connect(addr).await.unwrap();
        let mut client = FreezableTcp {
            inner,
            freeze: freeze.clone(),
        };
        let (mut server, _) = listener.accept().await.unwrap();
        server.write_all(b"ping").await.unwrap();

        freeze.set(true);
        let mut buf = [0u8; 4];
        let frozen =
            tokio::time::timeout(Duration::from_millis(200), client.read_exact(&mut buf)).await;
        assert!(frozen.is_err(), "a frozen socket read something");
        let frozen =
            tokio::time::timeout(Duration::from_millis(200), client.write_all(b"pong")).await;
        assert!(frozen.is_err(), "a frozen socket wrote something");

        freeze.set(false);
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        client.write_all(b"pong").await.unwrap();
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }
}

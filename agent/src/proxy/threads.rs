//! The proxy's threads: each listener address is served by several OS
//! threads, each with a current-thread runtime and its own `SO_REUSEPORT`
//! socket, as nginx's workers (the kernel spreads new connections over
//! them). A client connection, its instance connections and its requests
//! then stay on one thread: no task is stolen by or woken from another.
//! Measured with bench/proxy.sh (BENCHMARKS.md): 0.65 of nginx's requests/s
//! on the agent's work-stealing runtime, 0.88–0.96 spread over threads.
//! The shared state (pools, figures, certificates) is behind `Arc`s and
//! locks already; the pool and certificate updaters stay on the agent's
//! runtime.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{warn, Instrument as _};

/// The most threads a listener gets.
pub const MAX_THREADS: usize = 64;

/// Threads per listener when not told: twice the cores (more, smaller
/// shares of the connections kept the tail latency near nginx's on two
/// cores; one per core did not).
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(1, MAX_THREADS)
}

/// A listener on `addr` that the proxy's other threads may share
/// (`SO_REUSEPORT`; one without it elsewhere on the port still fails the
/// bind, so a taken port fails the agent's start).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves `first` (made by [`bind`]) and `threads - 1` more sockets on its
/// address, each on its own thread with `serve_one`, until they all return
/// (they return once `shutdown` is cancelled). A thread that cannot start
/// is logged; the others serve.
pub async fn spread<F, Fut>(
    first: TcpListener,
    threads: usize,
    shutdown: CancellationToken,
    serve_one: F,
) -> std::io::Result<()>
where
    F: FnOnce(TcpListener) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()>,
{
    let addr = first.local_addr()?;
    let mut listeners = vec![first.into_std()?];
    for _ in 1..threads.clamp(1, MAX_THREADS) {
        match bind(addr).and_then(TcpListener::into_std) {
            Ok(l) => listeners.push(l),
            Err(e) => warn!(%addr, "one more proxy socket cannot be bound: {e}"),
        }
    }
    let span = tracing::Span::current();
    let mut handles = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (serve_one, span) = (serve_one.clone(), span.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("proxy-{}-{i}", addr.port()))
            .spawn(move || {
                runtime.block_on(
                    async move {
                        match TcpListener::from_std(listener) {
                            Ok(l) => serve_one(l).await,
                            Err(e) => warn!("a proxy thread cannot take its socket: {e}"),
                        }
                    }
                    .instrument(span),
                );
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => warn!("a proxy thread cannot start: {e}"),
        }
    }
    if handles.is_empty() {
        shutdown.cancel();
        return Err(std::io::Error::other("no proxy thread could start"));
    }
    let joined = tokio::task::spawn_blocking(move || {
        for h in handles {
            if h.join().is_err() {
                warn!("a proxy thread panicked");
            }
        }
    })
    .await;
    if joined.is_err() {
        warn!("waiting for the proxy threads failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Answers each connection with the name of the thread that took it.
    async fn name_thread(listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let mut stream = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(_) => return,
                },
            };
            let name = std::thread::current().name().unwrap_or("?").to_string();
            let _ = stream.write_all(name.as_bytes()).await;
        }
    }

    #[tokio::test]
    async fn connections_are_spread_over_the_threads_and_shutdown_ends_them() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        // The address is shared: a second socket binds it too.
        assert!(bind(addr).is_ok());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let served = tokio::spawn(spread(first, 4, shutdown.clone(), move |l| {
            name_thread(l, stop)
        }));
        let mut names = BTreeSet::new();
        for _ in 0..64 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut name = String::new();
            s.read_to_string(&mut name).await.unwrap();
            names.insert(name);
        }
        assert!(
            names.len() >= 2,
            "one thread took every connection: {names:?}"
        );
        assert!(
            names
                .iter()
                .all(|n| n.starts_with(&format!("proxy-{}-", addr.port()))),
            "{names:?}"
        );
        shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), served)
            .await
            .expect("the threads end at shutdown")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn twice_the_cores_within_bounds() {
        let n = default_threads();
        assert!((1..=MAX_THREADS).contains(&n));
        assert_eq!(n % 2, 0);
    }
}

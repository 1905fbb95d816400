//! [`serve`] runs the server's own accept loop on hyper under [`ServerLimits`]: a header-read
//! timeout, an idle timeout on every connection, a cap on open connections that closes the
//! oldest idle one to admit a new one, and a graceful shutdown that lets in-flight requests
//! finish within a grace period; the same for plain HTTP and TLS. TLS handshakes run
//! concurrently under their own timeout, so one slow or hostile client cannot stall the others,
//! and failed handshakes are logged at debug level only. [`ServerLimits`] also holds the caps the
//! API (`api`) and basic auth (`web_config`) apply. This module defines no routes (it serves the
//! one `router` builds) and builds no TLS settings (see `tls`).

use super::{router, AppState};
use axum::Router;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete its TLS handshake before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits of the HTTP server. [`ServerLimits::default`] is what the daemon runs with; tests and
/// embedders may shorten them.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// A connection must deliver a complete request head within this long of being accepted
    /// (after its TLS handshake) or of its previous answer; so an idle keep-alive connection is
    /// closed after this long too.
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed (for example a
    /// client that stopped reading its answer).
    pub idle_timeout: Duration,
    /// How long a client may take to complete its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Connections open at once, TLS handshakes included. At the cap, a new connection closes the
    /// oldest connection that has no request in progress (a half-open or idle one); when every
    /// connection is busy, accepting waits.
    pub max_connections: usize,
    /// `/api/v1` requests in progress at once; more are answered `503` at once.
    pub max_api_requests: usize,
    /// The most bytes of one `/api/v1/diagnoses` answer: the newest rows that fit, with
    /// `"truncated": true` when rows were left out.
    pub max_api_response_bytes: usize,
    /// bcrypt checks of basic-auth passwords running at once.
    pub max_auth_checks: usize,
    /// Requests waiting for a bcrypt check; more are answered `503` at once.
    pub max_auth_waiting: usize,
    /// How long verified credentials are remembered after their last use (a keyed hash of them,
    /// never the password), so a regular scraper needs no bcrypt check.
    pub auth_cache_ttl: Duration,
    /// How many verified credentials are remembered.
    pub auth_cache_entries: usize,
    /// At shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

/// The most bytes hyper buffers per connection: a request head must fit.
const MAX_CONNECTION_BUFFER: usize = 64 * 1024;

/// The default cap on open connections (lowered to half the process's file descriptor limit).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
            max_connections: default_max_connections(),
            max_api_requests: 4,
            max_api_response_bytes: 4 * 1024 * 1024,
            max_auth_checks: 2,
            max_auth_waiting: 16,
            auth_cache_ttl: Duration::from_secs(300),
            auth_cache_entries: 256,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// [`DEFAULT_MAX_CONNECTIONS`], or half the soft `RLIMIT_NOFILE` when that is lower (at least 16),
/// so that the store, the API clients and the listener always have descriptors left.
fn default_max_connections() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match limit.and_then(|n| usize::try_from(n).ok()) {
        Some(n) => (n / 2).clamp(16, DEFAULT_MAX_CONNECTIONS),
        None => DEFAULT_MAX_CONNECTIONS,
    }
}

/// Serves the routes on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (within [`ServerLimits::shutdown_grace`]). Speaks TLS when the web config has
/// `tls_server_config`, plain HTTP otherwise; both under the same [`ServerLimits`].
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = state
        .web_config
        .as_ref()
        .and_then(|c| c.tls.as_ref())
        .map(|t| TlsAcceptor::from(t.server_config.clone()));
    let limits = state.limits.clone();
    let app = router(state)?;
    if tls.is_some() {
        tracing::info!(address = %listener.local_addr()?, "serving HTTPS");
    }
    let connections = Arc::new(Connections::new(limits.max_connections));
    let (drain, draining) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // Out of file descriptors and the like: wait for connections to close.
                    tracing::error!(%error, "accepting a connection failed; retrying in 1s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match connections.try_slot() {
            Some(slot) => slot,
            None => {
                connections.evict_oldest_idle();
                tokio::select! {
                    slot = connections.slot() => slot,
                    () = &mut shutdown => break,
                }
            }
        };
        tasks.spawn(connection(
            tcp,
            peer,
            tls.clone(),
            app.clone(),
            limits.clone(),
            slot,
            draining.clone(),
        ));
    }
    drop(listener);
    let _ = drain.send(true);
    let finished = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "shutdown: closed connections still busy after the grace period"
        );
    }
    tasks.abort_all();
    Ok(())
}

/// The open connections: a cap, and what is needed to close the oldest idle one.
struct Connections {
    slots: Arc<tokio::sync::Semaphore>,
    next_id: std::sync::atomic::AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<ConnectionState>>>,
}

/// One open connection as [`Connections`] sees it.
struct ConnectionState {
    /// Requests in progress (0 or 1 with HTTP/1.1).
    busy: std::sync::atomic::AtomicUsize,
    /// Notified to close the connection.
    close: tokio::sync::Notify,
}

/// A connection's place under the cap; dropping it frees the place.
struct Slot {
    id: u64,
    state: Arc<ConnectionState>,
    connections: Arc<Connections>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.remove(&self.id);
    }
}

impl Connections {
    fn new(max: usize) -> Connections {
        Connections {
            slots: Arc::new(tokio::sync::Semaphore::new(max.max(1))),
            next_id: std::sync::atomic::AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    fn register(self: &Arc<Self>, permit: tokio::sync::OwnedSemaphorePermit) -> Slot {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state = Arc::new(ConnectionState {
            busy: std::sync::atomic::AtomicUsize::new(0),
            close: tokio::sync::Notify::new(),
        });
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.insert(id, state.clone());
        Slot {
            id,
            state,
            connections: self.clone(),
            _permit: permit,
        }
    }

    fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        Some(self.register(permit))
    }

    async fn slot(self: &Arc<Self>) -> Slot {
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => self.register(permit),
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Asks the oldest connection without a request in progress to close; false when every
    /// connection is busy.
    fn evict_oldest_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let idle = open
            .values()
            .find(|c| c.busy.load(std::sync::atomic::Ordering::SeqCst) == 0);
        match idle {
            Some(connection) => {
                connection.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks its connection busy while a request is in progress.
struct BusyGuard(Arc<ConnectionState>);

impl BusyGuard {
    fn new(state: Arc<ConnectionState>) -> BusyGuard {
        state.busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        BusyGuard(state)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0
            .busy
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serves one accepted connection: the TLS handshake if any, then HTTP/1.1 under the limits,
/// until the client closes, a timeout fires, it is evicted, or shutdown drains it.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ServerLimits,
    slot: Slot,
    draining: tokio::sync::watch::Receiver<bool>,
) {
    // Small answers should not wait for Nagle; failure only costs latency.
    let _ = tcp.set_nodelay(true);
    match tls {
        None => serve_http(tcp, peer, app, limits, slot, draining).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(tcp));
            let stream = tokio::select! {
                r = handshake => r,
                () = slot.state.close.notified() => return,
            };
            match stream {
                Ok(Ok(stream)) => serve_http(stream, peer, app, limits, slot, draining).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    limits: ServerLimits,
    slot: Slot,
    mut draining: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(IdleTimeoutIo::new(stream, limits.idle_timeout));
    let state = slot.state.clone();
    let app = hyper_util::service::TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |request| {
        let busy = BusyGuard::new(state.clone());
        let response = hyper::service::Service::call(&app, request);
        async move {
            let response = response.await;
            drop(busy);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Bounds each connection's buffer, so a flood of connections sending huge heads costs
        // at most max_connections x 64 KiB (hyper's default is about 400 KiB).
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .max_header_size(MAX_CONNECTION_BUFFER)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut drained = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = slot.state.close.notified() => {
                tracing::debug!(%peer, "connection closed to admit a new one (connection cap)");
                return;
            }
            changed = draining.wait_for(|d| *d), if !drained => {
                drained = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A stream that fails with `TimedOut` when no byte has moved either way for `timeout` while
/// a read or write waits.
struct IdleTimeoutIo<S> {
    inner: S,
    timeout: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<S> IdleTimeoutIo<S> {
    fn new(inner: S, timeout: Duration) -> IdleTimeoutIo<S> {
        IdleTimeoutIo {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Bytes moved: the connection is active until `timeout` from now.
    fn active(&mut self) {
        let next = tokio::time::Instant::now() + self.timeout;
        self.deadline.as_mut().reset(next);
    }

    /// The inner stream is waiting: still `Pending`, or the idle error once the deadline passed.
    fn waiting<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection idle too long",
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for IdleTimeoutIo<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            std::task::Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.active();
                }
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => this.waiting(cx),
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for IdleTimeoutIo<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_write(cx, buf) {
            std::task::Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.active();
                }
                std::task::Poll::Ready(result)
            }
            std::task::Poll::Pending => this.waiting(cx),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_flush(cx) {
            std::task::Poll::Pending => this.waiting(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_shutdown(cx) {
            std::task::Poll::Pending => this.waiting(cx),
            ready => ready,
        }
    }
}

/// Whether an accept error concerns one connection only (retry at once) rather than the process.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::test_server::{client, start, start_limited};
    use std::time::Instant;

    /// Completing the shutdown future makes serve return Ok and stop accepting connections.
    #[tokio::test]
    async fn graceful_shutdown_returns() {
        let mut server = start().await;
        assert_eq!(
            client()
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        server.stop.take().unwrap().send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), &mut server.task).await;
        assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
        assert!(client()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err());
    }

    /// Short limits for the hardening tests.
    fn short_limits() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(2),
            ..ServerLimits::default()
        }
    }

    /// Reads from `stream` until the server closes it (EOF or reset), at most `within`; returns
    /// how long that took, or None when it stayed open.
    async fn closed_within(
        stream: &mut tokio::net::TcpStream,
        within: Duration,
    ) -> Option<Duration> {
        use tokio::io::AsyncReadExt as _;
        let started = Instant::now();
        let mut buffer = vec![0u8; 4096];
        let closed = tokio::time::timeout(within, async {
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        closed.ok().map(|()| started.elapsed())
    }

    /// A connection that sends nothing, one that sends half a request head, and a keep-alive
    /// connection idle after its answer are each closed within the header-read timeout.
    #[tokio::test]
    async fn idle_connections_are_closed_within_the_timeout() {
        use tokio::io::AsyncWriteExt as _;
        let server = start_limited(None, short_limits()).await;
        let address = server.base.trim_start_matches("http://").to_owned();
        let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
        let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
        half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut kept = tokio::net::TcpStream::connect(&address).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        for (name, stream) in [
            ("silent", &mut silent),
            ("half-sent", &mut half),
            ("keep-alive", &mut kept),
        ] {
            let took = closed_within(stream, Duration::from_secs(5)).await;
            let took = took.unwrap_or_else(|| panic!("{name} connection still open after 5 s"));
            assert!(
                took < Duration::from_secs(3),
                "{name}: closed after {took:?}"
            );
        }
    }

    /// A client that stops reading a large answer is disconnected after the idle timeout rather
    /// than holding its connection forever.
    #[tokio::test]
    async fn a_stalled_reader_is_disconnected() {
        let limits = ServerLimits {
            idle_timeout: Duration::from_millis(500),
            ..short_limits()
        };
        let server = start_limited(None, limits).await;
        let address = server.base.trim_start_matches("http://").to_owned();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(1024).unwrap();
        let mut stream = socket.connect(address.parse().unwrap()).await.unwrap();
        use tokio::io::AsyncWriteExt as _;
        // Pipelined requests whose answers fill both socket buffers; then never read.
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
        stream.write_all(&request).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let took = closed_within(&mut stream, Duration::from_secs(20)).await;
        assert!(took.is_some(), "a stalled reader kept its connection");
    }

    /// With the connection cap reached by 300 half-open connections, /metrics is still answered
    /// at once: the oldest connection without a request in progress makes room.
    #[tokio::test]
    async fn half_open_flood_leaves_metrics_answering() {
        use tokio::io::AsyncWriteExt as _;
        let limits = ServerLimits {
            header_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 64,
            ..ServerLimits::default()
        };
        let server = start_limited(None, limits).await;
        let address = server.base.trim_start_matches("http://").to_owned();
        let mut flood = Vec::new();
        for _ in 0..300 {
            let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
            let _ = stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .await;
            flood.push(stream);
        }
        let started = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            client().get(format!("{}/metrics", server.base)).send(),
        )
        .await
        .expect("/metrics did not answer during the flood")
        .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().ends_with("# EOF\n"));
        eprintln!(
            "/metrics answered in {:?} during a flood of 300 half-open connections",
            started.elapsed()
        );
    }
}

//! Connection hygiene for both servers: every accepted connection is
//! watched, and one that does nothing is closed — a silent TCP connection, a
//! TLS handshake begun and never finished, TLS done but no HTTP/2 preface or
//! request ever sent (all: no first request within `handshake_timeout`), an
//! HTTP/2 connection with no request in flight for `idle_timeout`. The
//! number of open connections is capped; at the cap, the connection that
//! has done nothing for the longest (never used first, then idle) makes
//! room, so a flood of idle connections never locks a new client out; only
//! when every connection is busy is a new one refused (closed at once).
//!
//! HTTP/2 keepalive pings (tonic's settings, see `server_router`) drop
//! peers that stopped answering; they do not count as use here.
use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    time::Sleep,
};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How often each connection looks at its own activity.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The limits of [`guarded_incoming`]; see the module's comment.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What a connection is doing, shared by its stream (which closes it) and
/// the requests on it (which mark it used).
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    /// Milliseconds since `opened` of the last request's start or end.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    used: AtomicBool,
    /// Set to make the connection close at its next check.
    evicted: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            used: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// A request starts on the connection; it is in flight until the guard
    /// (held by its response body) is dropped.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.used.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        RequestGuard(self.clone())
    }

    /// How long the connection has done nothing: `None` while a request is
    /// in flight.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.opened.elapsed().saturating_sub(last))
    }

    fn expired(&self, limits: &ConnectionLimits) -> Option<&'static str> {
        if self.evicted.load(Ordering::Relaxed) {
            return Some("made room for a new connection");
        }
        let idle = self.idle_for()?;
        if !self.used.load(Ordering::Relaxed) {
            (idle >= limits.handshake_timeout).then_some("no request within the handshake timeout")
        } else {
            (idle >= limits.idle_timeout).then_some("idle")
        }
    }
}

/// Marks a request finished when dropped.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// The connection info of a guarded connection: TCP's, and its activity.
#[derive(Debug, Clone)]
pub struct GuardedInfo {
    pub tcp: TcpConnectInfo,
    pub activity: Arc<Activity>,
}

/// An accepted connection that closes itself when it expires.
pub struct GuardedStream {
    inner: TcpStream,
    info: GuardedInfo,
    limits: ConnectionLimits,
    check: Pin<Box<Sleep>>,
    open: Arc<AtomicUsize>,
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl GuardedStream {
    /// An error once the connection has expired; re-arms its check.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        while self.check.as_mut().poll(cx).is_ready() {
            if let Some(why) = self.info.activity.expired(&self.limits) {
                tracing::debug!(peer = ?self.info.tcp.remote_addr, why, "closing a connection");
                return Some(io::Error::new(io::ErrorKind::TimedOut, why));
            }
            self.check
                .as_mut()
                .reset(tokio::time::Instant::now() + CHECK_EVERY);
        }
        None
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.poll_expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for GuardedStream {
    type ConnectInfo = GuardedInfo;

    fn connect_info(&self) -> GuardedInfo {
        self.info.clone()
    }
}

use std::future::Future as _;

/// The open connections, oldest first, for choosing one to make room.
#[derive(Default)]
struct Registry {
    connections: Mutex<VecDeque<Weak<Activity>>>,
}

impl Registry {
    fn add(&self, activity: &Arc<Activity>) {
        let mut list = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.push_back(Arc::downgrade(activity));
    }

    /// Marks the connection that has done nothing for the longest — one
    /// never used first — to close; `false` if every one is busy.
    fn evict_one(&self) -> bool {
        let list = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let candidates = list
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|a| !a.evicted.load(Ordering::Relaxed))
            .filter_map(|a| a.idle_for().map(|idle| (a.clone(), idle)));
        let chosen = candidates.max_by_key(|(a, idle)| (!a.used.load(Ordering::Relaxed), *idle));
        match chosen {
            Some((a, _)) => {
                a.evicted.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// Accepts connections on `listener` under `limits`: TCP_NODELAY on each
/// (small responses are not held back), each watched, at most
/// `max_connections` open. Accept errors (such as running out of file
/// descriptors) are logged and waited out, never ending the stream.
pub fn guarded_incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> impl Stream<Item = io::Result<GuardedStream>> {
    let open = Arc::new(AtomicUsize::new(0));
    let registry = Arc::new(Registry::default());
    futures::stream::unfold(
        (listener, open, registry),
        move |(listener, open, registry)| async move {
            loop {
                let (stream, remote) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if open.load(Ordering::Relaxed) >= limits.max_connections && !registry.evict_one() {
                    tracing::warn!(
                        peer = %remote,
                        max = limits.max_connections,
                        "refusing a connection: every open one is busy"
                    );
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let activity = Arc::new(Activity::new());
                registry.add(&activity);
                open.fetch_add(1, Ordering::Relaxed);
                let guarded = GuardedStream {
                    info: GuardedInfo {
                        tcp: TcpConnectInfo {
                            local_addr: stream.local_addr().ok(),
                            remote_addr: Some(remote),
                        },
                        activity,
                    },
                    inner: stream,
                    limits,
                    check: Box::pin(tokio::time::sleep(CHECK_EVERY)),
                    open: open.clone(),
                };
                return Some((Ok(guarded), (listener, open, registry)));
            }
        },
    )
}

/// Raises the process's soft limit on open files to its hard limit, so the
/// connection cap (not the operating system) decides when to refuse;
/// returns the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    }
}

/// The connection cap actually used: the configured one, lowered to leave
/// room under the open-files limit for database connections, files and the
/// listener itself.
pub fn effective_max_connections(configured: usize, open_files_limit: u64) -> usize {
    const RESERVED: u64 = 128;
    let room = open_files_limit.saturating_sub(RESERVED).max(16);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 2,
            handshake_timeout: Duration::from_millis(0),
            idle_timeout: Duration::from_secs(3600),
        }
    }

    #[test]
    fn an_unused_connection_expires_after_the_handshake_timeout_a_used_one_when_idle() {
        let fresh = Arc::new(Activity::new());
        assert!(fresh.expired(&limits()).is_some(), "never used");
        let used = Arc::new(Activity::new());
        let guard = used.begin();
        assert_eq!(used.expired(&limits()), None, "a request in flight");
        drop(guard);
        assert_eq!(used.expired(&limits()), None, "used, and idle only now");
    }

    #[test]
    fn making_room_picks_a_never_used_connection_and_never_a_busy_one() {
        let registry = Registry::default();
        let busy = Arc::new(Activity::new());
        let _guard = busy.begin();
        registry.add(&busy);
        assert!(!registry.evict_one(), "the only one is busy");
        let used = Arc::new(Activity::new());
        drop(used.begin());
        let unused = Arc::new(Activity::new());
        registry.add(&used);
        registry.add(&unused);
        assert!(registry.evict_one());
        assert!(
            unused.evicted.load(Ordering::Relaxed),
            "never used goes first"
        );
        assert!(registry.evict_one());
        assert!(used.evicted.load(Ordering::Relaxed));
        assert!(!busy.evicted.load(Ordering::Relaxed));
    }

    #[test]
    fn the_cap_leaves_room_under_the_open_files_limit() {
        assert_eq!(effective_max_connections(4096, 1024), 896);
        assert_eq!(effective_max_connections(4096, 1_048_576), 4096);
    }
}

/// Marks each request's connection used, for as long as the request is in
/// flight (until its response body is done): a tower layer for the server.
#[derive(Clone, Copy, Default)]
pub struct ActivityLayer;

impl<S> tower::Layer<S> for ActivityLayer {
    type Service = ActivityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ActivityService { inner }
    }
}

#[derive(Clone)]
pub struct ActivityService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for ActivityService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let guard = request
            .extensions()
            .get::<tonic::transport::server::TlsConnectInfo<GuardedInfo>>()
            .map(|info| info.get_ref().activity.begin());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(match guard {
                Some(guard) => response.map(|body| {
                    tonic::body::Body::new(GuardedBody {
                        inner: body,
                        _guard: guard,
                    })
                }),
                None => response,
            })
        })
    }
}

/// A response body that keeps its request in flight until it is done.
struct GuardedBody {
    inner: tonic::body::Body,
    _guard: RequestGuard,
}

impl http_body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

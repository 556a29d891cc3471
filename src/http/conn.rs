//! Serving HTTP connections: our own accept loop and hyper-util's connection builder (HTTP/1.1 only), in
//! place of `axum::serve`, which has no header-read timeout and no bound on connections: a client that sent
//! half a request line, or nothing, held its connection (and a task) for ever.
//!
//! - **Header-read timeout** (`http.header_read_timeout_secs`, 10 s): a connection that has not sent a
//!   complete request head within this time of opening, or of the first byte of its next request, is
//!   closed. This is hyper's `header_read_timeout`.
//! - **Idle timeout** (`http.idle_timeout_secs`, 60 s): a keep-alive connection that sends nothing after a
//!   response for this long is closed. In hyper 1 the header-read timer also covers that wait: after each
//!   response the HTTP/1 dispatcher goes straight back to reading the next head and arms the timer then
//!   (`proto/h1/conn.rs`, `poll_read_head`), so on its own it would close every idle connection after the
//!   header timeout. `PhaseTimer`, the timer we give hyper, therefore measures the keep-alive wait with
//!   the idle timeout and starts the header timeout at the first byte of the next request. (hyper's HTTP/1
//!   server uses its timer for nothing else.) A request in progress is bounded by neither: its body by
//!   `http.request_timeout_secs`, its handling by the tool timeouts.
//! - **Connection bound** (`http.max_connections`, 1024): each connection, TLS handshakes included, holds a
//!   slot of one semaphore. With every slot taken the listener stops accepting, so further clients wait in
//!   the kernel's listen backlog (they are served, late, as slots free up, rather than refused) and cost
//!   nothing here. The timeouts above keep silent clients from holding slots for long.
//! - **Graceful shutdown**: on the signal the loop stops accepting and asks every connection to finish
//!   (hyper closes idle keep-alive connections at once and others after their response); [`serve`]
//!   returns when every slot is back, i.e. every connection has closed.
//!
//! Every accepted socket has `TCP_NODELAY` set (see [`PlainListener`]), and every request carries the peer
//! address as `ConnectInfo<PeerAddr>`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::PeerAddr;

/// The timeouts of every connection (from `HttpSettings`; the connection bound is [`Slots`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// An accepted connection and the slot it holds until it closes.
pub struct Accepted<I> {
    pub io: I,
    pub peer: SocketAddr,
    pub slot: OwnedSemaphorePermit,
}

/// A source of connections: plain TCP ([`PlainListener`]) or finished TLS handshakes
/// (`super::tls::TlsListener`). `None`: no more will come.
pub trait Incoming: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = Option<Accepted<Self::Io>>> + Send;
}

/// The connection slots: one semaphore for the plain and the TLS listener.
#[derive(Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    total: usize,
    warned_at: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Slots {
    pub fn new(total: usize) -> Self {
        Slots { semaphore: Arc::new(Semaphore::new(total)), total, warned_at: Arc::default() }
    }

    /// A free slot, waiting for one when all are taken (with a warning at most once a minute).
    /// `None` once the slots are closed. Cancel-safe.
    pub async fn take(&self) -> Option<OwnedSemaphorePermit> {
        match self.semaphore.clone().try_acquire_owned() {
            Ok(slot) => return Some(slot),
            Err(TryAcquireError::Closed) => return None,
            Err(TryAcquireError::NoPermits) => {}
        }
        {
            let mut warned = self.warned_at.lock().unwrap_or_else(|p| p.into_inner());
            if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                *warned = Some(Instant::now());
                tracing::warn!(
                    max_connections = self.total,
                    "every HTTP connection slot is taken; new connections wait in the listen backlog"
                );
            }
        }
        self.semaphore.clone().acquire_owned().await.ok()
    }

    /// Wait until every slot is back (every connection closed).
    async fn all_free(&self) {
        let n = u32::try_from(self.total).unwrap_or(u32::MAX);
        let _ = self.semaphore.acquire_many(n).await;
    }
}

/// Plain TCP: take a slot, then accept. Nagle's algorithm is off on every connection: a streamed response
/// is written in several small pieces (headers, the SSE event, the end of the stream), and with Nagle on
/// each later piece waited for the client's delayed ACK, so every call took 40 ms longer
/// (benches/mutations.rs, docs/performance.md). The TLS listener does the same.
pub struct PlainListener {
    tcp: TcpListener,
    slots: Slots,
}

impl PlainListener {
    pub fn new(tcp: TcpListener, slots: Slots) -> Self {
        PlainListener { tcp, slots }
    }
}

impl Incoming for PlainListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> Option<Accepted<TcpStream>> {
        let slot = self.slots.take().await?;
        loop {
            match self.tcp.accept().await {
                Ok((io, peer)) => {
                    if let Err(e) = io.set_nodelay(true) {
                        tracing::debug!(error = %e, "could not set TCP_NODELAY");
                    }
                    return Some(Accepted { io, peer, slot });
                }
                // Mostly EMFILE/ENFILE: back off briefly instead of spinning (as axum does).
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a TCP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Accept and serve connections until `shutdown`, then let them finish; returns when all have closed.
pub async fn serve<L: Incoming>(
    mut listener: L,
    app: Router,
    limits: ConnLimits,
    slots: Slots,
    shutdown: CancellationToken,
) -> io::Result<()> {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Some(accepted) = accepted else { break };
        tokio::spawn(serve_connection(accepted, app.clone(), limits, shutdown.clone()));
    }
    drop(listener);
    slots.all_free().await;
    Ok(())
}

async fn serve_connection<I>(accepted: Accepted<I>, app: Router, limits: ConnLimits, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted { io, peer, slot } = accepted;
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { io, activity: activity.clone() });
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(PhaseTimer { activity, header: limits.header_read_timeout, idle: limits.idle_timeout })
        .header_read_timeout(limits.header_read_timeout);
    let service = PeerService { router: app, peer: ConnectInfo(PeerAddr(peer)) };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and clients speaking something else: routine, so not above debug.
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
    drop(slot);
}

/// The router as a hyper service, with the peer address in every request's extensions.
#[derive(Clone)]
struct PeerService {
    router: Router,
    peer: ConnectInfo<PeerAddr>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for PeerService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn call(&self, mut req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.peer);
        // A Router is always ready, so `call` needs no `poll_ready` first.
        tower_service::Service::call(&mut self.router.clone(), req)
    }
}

/// What [`PhaseTimer`] needs to know about a connection: when hyper last armed its header timer, how
/// often, and whether a byte has arrived since.
struct Activity {
    base: Instant,
    /// Times hyper armed the timer: 1 on a fresh connection, more after each response.
    arms: AtomicU64,
    /// Nanoseconds after `base` of the first byte read since the timer was last armed; 0: none yet.
    first_read: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity { base: Instant::now(), arms: AtomicU64::new(0), first_read: AtomicU64::new(0) }
    }

    fn since_base(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos)
    }

    fn read(&self) {
        if self.first_read.load(Ordering::Relaxed) == 0 {
            let now = self.since_base(Instant::now());
            let _ = self.first_read.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// hyper (re)armed the header timer: returns whether this is the connection's first request.
    fn arm(&self) -> bool {
        self.first_read.store(0, Ordering::Relaxed);
        self.arms.fetch_add(1, Ordering::Relaxed) == 0
    }
}

/// The IO of a connection, noting reads for [`PhaseTimer`].
struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// hyper's timer for one connection. hyper arms it each time it starts waiting for a request head, with
/// the header-read timeout; the sleep it returns fires instead at:
/// - on a fresh connection: `header` after the connection opened;
/// - on a kept-alive one: `idle` after the last response if no byte has come since, else `header` after
///   the first byte of the new request.
struct PhaseTimer {
    activity: Arc<Activity>,
    header: Duration,
    idle: Duration,
}

impl hyper::rt::Timer for PhaseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(PhaseSleep::fixed(Instant::now() + duration))
    }

    fn sleep_until(&self, _deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let fresh = self.activity.arm();
        let armed_at = Instant::now();
        Box::pin(PhaseSleep {
            sleep: Box::pin(tokio::time::sleep_until(armed_at + self.header.min(self.idle))),
            phase: Some(Phase {
                activity: self.activity.clone(),
                fresh,
                armed_at,
                header: self.header,
                idle: self.idle,
            }),
        })
    }
}

struct Phase {
    activity: Arc<Activity>,
    fresh: bool,
    armed_at: Instant,
    header: Duration,
    idle: Duration,
}

impl Phase {
    fn deadline(&self) -> Instant {
        if self.fresh {
            return self.armed_at + self.header;
        }
        match self.activity.first_read.load(Ordering::Relaxed) {
            0 => self.armed_at + self.idle,
            nanos => self.activity.at(nanos) + self.header,
        }
    }
}

struct PhaseSleep {
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// `None`: a plain sleep to a fixed deadline.
    phase: Option<Phase>,
}

impl PhaseSleep {
    fn fixed(deadline: Instant) -> Self {
        PhaseSleep { sleep: Box::pin(tokio::time::sleep_until(deadline)), phase: None }
    }
}

impl Future for PhaseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(phase) = &this.phase else {
            return this.sleep.as_mut().poll(cx);
        };
        loop {
            let deadline = phase.deadline();
            if this.sleep.deadline() != deadline {
                this.sleep.as_mut().reset(deadline);
            }
            ready!(this.sleep.as_mut().poll(cx));
            // A byte may have moved the deadline while the sleep ran.
            if phase.deadline() <= Instant::now() {
                return Poll::Ready(());
            }
        }
    }
}

impl hyper::rt::Sleep for PhaseSleep {}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    fn timer(activity: &Arc<Activity>) -> PhaseTimer {
        PhaseTimer { activity: activity.clone(), header: Duration::from_secs(10), idle: Duration::from_secs(60) }
    }

    async fn fires_after(sleep: Pin<Box<dyn hyper::rt::Sleep>>, start: Instant) -> Duration {
        sleep.await;
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_connection_gets_the_header_timeout() {
        let activity = Arc::new(Activity::new());
        let t = timer(&activity);
        let start = Instant::now();
        let sleep = t.sleep_until(std::time::Instant::now());
        tokio::time::advance(Duration::from_secs(3)).await;
        activity.read(); // half a request line
        assert_eq!(fires_after(sleep, start).await, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_idles_for_the_idle_timeout_then_gets_the_header_timeout() {
        let activity = Arc::new(Activity::new());
        let t = timer(&activity);
        drop(t.sleep_until(std::time::Instant::now())); // the first request's head
        activity.read();
        // After the response: nothing comes.
        let start = Instant::now();
        assert_eq!(fires_after(t.sleep_until(std::time::Instant::now()), start).await, Duration::from_secs(60));
        // After the response: the next request starts after 30 s and stalls. (hyper polls the sleep
        // again whenever a read comes back pending, as the poll with a zero timeout does here.)
        let start = Instant::now();
        let mut sleep = t.sleep_until(std::time::Instant::now());
        tokio::time::advance(Duration::from_secs(30)).await;
        activity.read();
        assert!(tokio::time::timeout(Duration::ZERO, sleep.as_mut()).await.is_err());
        assert_eq!(fires_after(sleep, start).await, Duration::from_secs(40));
    }
}

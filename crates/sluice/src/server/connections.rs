//! Connections: the accept loop, what every open connection is doing, and the clocks that
//! close the ones nobody uses, so that slow or idle clients cannot hold every slot.
//!
//! Each connection is in one phase at a time, kept in one atomic word beside it:
//!
//! | phase | starts when | then |
//! |---|---|---|
//! | `Head` | it is admitted, or a byte arrives while it is `Idle` | a complete request head makes it `Busy`; otherwise it is closed `server.header-read-timeout` after the phase began |
//! | `Busy` | a request head is complete (the request reaches the router) | `Idle` once its last response is written (`server.request-timeout` bounds each handler) |
//! | `Idle` | its last in-flight response has been written | a byte makes it `Head`; otherwise it is closed after `server.keep-alive-timeout`, or sooner when reclaimed |
//! | `Upgraded` | a `101 Switching Protocols` answer (WebSocket) | never closed by these clocks: the WebSocket's heartbeat and shutdown close it |
//! | `Closing` | the keep-alive clock ran out, or the accept loop reclaimed it | hyper closes it gracefully (the last response is flushed); dropped if that takes longer than `server.header-read-timeout` |
//!
//! The clocks are ours rather than hyper's `header_read_timeout`: hyper's timer also runs while
//! a keep-alive connection waits for its next request, so no connection could stay idle longer
//! than a request head may take to arrive.
//!
//! **The limit.** At most `server.max-connections` are open, upgraded ones included (the slot
//! travels with the socket, so it is given back when the WebSocket closes). At the limit the
//! loop holds the one connection it accepted and reclaims the connection idle the longest, one
//! at a time, whenever one is idle, until a slot is free; further clients wait in the kernel's
//! accept queue. Connections reading a head, busy or upgraded are never reclaimed: slow heads
//! are closed by their clock, so a waiting client is admitted within `header-read-timeout` at
//! worst.
//!
//! **Shutdown.** The loop stops accepting and every connection is closed gracefully: idle ones
//! at once, busy ones after their response. [`serve`] returns when every connection task has
//! ended; upgraded sockets are not waited for (they close on the same signal).
//!
//! **Metrics** (label `listener`: `main` or `metrics`): `sluice_http_connections` (open),
//! `sluice_http_connections_accepted_total`, `sluice_http_connection_limit_waits_total` (a new
//! client found every slot taken), `sluice_http_connections_closed_total{reason}` for the
//! connections these rules close (`header_timeout`, `keep_alive_timeout`, `reclaimed`).

use axum::Router;
use axum::http::StatusCode;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use metrics::{Counter, Gauge};
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// How one listener treats its connections (from `[server]`).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Names the listener in metrics and logs (`main`, `metrics`).
    pub listener: &'static str,
    /// Most connections open at once, upgraded ones included.
    pub max_connections: usize,
    /// Longest a request head may take to arrive, from its first byte (or from admission).
    pub header_read_timeout: Duration,
    /// Longest a connection may wait for its next request.
    pub keep_alive_timeout: Duration,
}

/// Serves `app` on `listener` under `limits` until `shutdown` is cancelled, then closes every
/// connection gracefully and returns once each has ended.
pub async fn serve(
    listener: TcpListener,
    limits: ConnectionLimits,
    app: Router,
    shutdown: CancellationToken,
) {
    let registry = Arc::new(Registry::new(limits));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header clock is ours (module docs); hyper's would also cut keep-alive idle time.
    builder.http1().header_read_timeout(None);
    // WebSockets over HTTP/2 need the extended CONNECT protocol.
    builder.http2().enable_connect_protocol();
    let builder = Arc::new(builder);
    // Every connection task holds a receiver; `closed()` resolves when the last one ends.
    let (tasks, task) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Out of file descriptors, most likely: wait before trying again.
                tracing::warn!(%error, listener = registry.limits.listener, "accepting a connection failed; retrying in 1 s");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let Some(permit) = registry.admit(&shutdown).await else {
            break;
        };
        // Latency matters more than packet count for small API responses.
        let _ = stream.set_nodelay(true);
        let stream = TrackedStream {
            stream,
            slot: registry.open(permit),
        };
        tokio::spawn(run_connection(
            Arc::clone(&builder),
            stream,
            peer,
            app.clone(),
            shutdown.clone(),
            task.clone(),
        ));
    }
    drop(task);
    drop(listener);
    tasks.closed().await;
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection's task: hyper serving it, beside the clock of its phase.
///
/// Every phase change but a reclaim happens inside hyper's poll, in this task (the socket and
/// the request guards are polled there), so the clock is re-armed right after that poll
/// whenever the phase word changed: no self-wakeups, and a timer reset only on a change (a later
/// deadline is a cheap extension in tokio's timer). Reclaims come from the accept loop through
/// [`Tracked::wake`].
async fn run_connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TrackedStream,
    peer: std::net::SocketAddr,
    app: Router,
    shutdown: CancellationToken,
    _task: watch::Receiver<()>,
) {
    let tracked = Arc::clone(&stream.slot.tracked);
    let registry = Arc::clone(&tracked.registry);
    let limits = &registry.limits;
    let service = {
        let tracked = Arc::clone(&tracked);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let guard = RequestGuard::begin(Arc::clone(&tracked));
            let app = app.clone();
            // The collector's enrichment reads the client's address from here.
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            async move {
                let response = app
                    .oneshot(request.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|never| match never {});
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    guard.0.upgraded();
                }
                Ok::<_, Infallible>(response.map(|body| GuardedBody {
                    body,
                    _guard: guard,
                }))
            }
        })
    };
    let mut connection =
        pin!(builder.serve_connection_with_upgrades(TokioIo::new(stream), service));
    let mut stopping = pin!(shutdown.cancelled());
    let mut draining = false;
    let mut timer = pin!(tokio::time::sleep(Duration::from_secs(86_400)));
    // What the timer is armed for, and the phase word it was armed from.
    let mut armed: Option<Clock> = None;
    let mut seen = u64::MAX;
    // Set once a graceful close has begun: the timer then waits for its end.
    let mut closing = false;
    loop {
        if !closing && tracked.phase() == Phase::Closing {
            // Only the accept loop moves a connection to `Closing` behind its task's back.
            registry.telemetry.reclaimed.increment(1);
            tracing::debug!(
                listener = limits.listener,
                "closing an idle connection for a waiting client"
            );
            connection.as_mut().graceful_shutdown();
            closing = true;
            timer
                .as_mut()
                .reset(Instant::now() + limits.header_read_timeout);
            armed = Some(Clock::Close);
        }
        let mut reclaimed = pin!(tracked.wake.notified());
        let event = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                return Poll::Ready(Event::Ended(result));
            }
            if !draining && stopping.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Shutdown);
            }
            if reclaimed.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Reclaimed);
            }
            let word = tracked.phase.load(Ordering::SeqCst);
            if !closing && word != seen {
                seen = word;
                armed = registry.clock(Phase::unpack(word)).map(|(at, clock)| {
                    timer.as_mut().reset(at);
                    clock
                });
            }
            if armed.is_some() && timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Expired);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Ended(result) => {
                if let Err(error) = result {
                    tracing::debug!(error = %error, listener = limits.listener, "connection ended with an error");
                }
                break;
            }
            Event::Shutdown => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            Event::Reclaimed => {}
            Event::Expired => match armed.take() {
                Some(Clock::Close) => {
                    tracing::debug!(
                        listener = limits.listener,
                        "a closing connection did not finish in time; dropped"
                    );
                    break;
                }
                Some(Clock::Head(since)) if tracked.phase() == (Phase::Head { since }) => {
                    registry.telemetry.header_timeout.increment(1);
                    tracing::debug!(
                        listener = limits.listener,
                        timeout = ?limits.header_read_timeout,
                        "no complete request head in time (server.header-read-timeout); connection closed"
                    );
                    break;
                }
                Some(Clock::Idle(since)) if tracked.close_if(Phase::Idle { since }) => {
                    registry.telemetry.keep_alive_timeout.increment(1);
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    timer
                        .as_mut()
                        .reset(Instant::now() + limits.header_read_timeout);
                    armed = Some(Clock::Close);
                }
                // The phase moved on meanwhile: arm the clock for the new one.
                _ => seen = u64::MAX,
            },
        }
    }
    // A waiting client may now find a slot, or another idle connection to reclaim.
    registry.signal_change();
}

/// Why a connection's task woke up.
enum Event {
    Ended(Result<(), Box<dyn std::error::Error + Send + Sync>>),
    Shutdown,
    Reclaimed,
    Expired,
}

/// What a connection's clock waits for.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// The end of the header-read time of the `Head` phase that began at `since`.
    Head(u64),
    /// The end of the keep-alive time of the `Idle` phase that began at `since`.
    Idle(u64),
    /// The end of a graceful close.
    Close,
}

/// A connection's phase (module docs); `since` is in microseconds from the registry's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head { since: u64 },
    Busy,
    Idle { since: u64 },
    Upgraded,
    Closing,
}

const TAG_SHIFT: u32 = 60;
const SINCE_MASK: u64 = (1 << TAG_SHIFT) - 1;

impl Phase {
    fn pack(self) -> u64 {
        match self {
            Phase::Head { since } => since & SINCE_MASK,
            Phase::Busy => 1 << TAG_SHIFT,
            Phase::Idle { since } => 2 << TAG_SHIFT | (since & SINCE_MASK),
            Phase::Upgraded => 3 << TAG_SHIFT,
            Phase::Closing => 4 << TAG_SHIFT,
        }
    }

    fn unpack(word: u64) -> Phase {
        let since = word & SINCE_MASK;
        match word >> TAG_SHIFT {
            0 => Phase::Head { since },
            1 => Phase::Busy,
            2 => Phase::Idle { since },
            3 => Phase::Upgraded,
            _ => Phase::Closing,
        }
    }
}

/// Every open connection of one listener, and the slots they hold.
#[derive(Debug)]
struct Registry {
    limits: ConnectionLimits,
    epoch: Instant,
    permits: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Tracked>>>,
    next_id: AtomicU64,
    /// Set while the accept loop waits for a slot: connections then say when one becomes idle
    /// or ends, through `changed`.
    waiting: AtomicBool,
    changed: Notify,
    telemetry: ConnectionTelemetry,
}

#[derive(Debug)]
struct ConnectionTelemetry {
    open: Gauge,
    accepted: Counter,
    limit_waits: Counter,
    header_timeout: Counter,
    keep_alive_timeout: Counter,
    reclaimed: Counter,
}

impl ConnectionTelemetry {
    fn new(listener: &'static str) -> ConnectionTelemetry {
        let closed = |reason: &'static str| metrics::counter!("sluice_http_connections_closed_total", "listener" => listener, "reason" => reason);
        ConnectionTelemetry {
            open: metrics::gauge!("sluice_http_connections", "listener" => listener),
            accepted: metrics::counter!("sluice_http_connections_accepted_total", "listener" => listener),
            limit_waits: metrics::counter!("sluice_http_connection_limit_waits_total", "listener" => listener),
            header_timeout: closed("header_timeout"),
            keep_alive_timeout: closed("keep_alive_timeout"),
            reclaimed: closed("reclaimed"),
        }
    }
}

impl Registry {
    fn new(limits: ConnectionLimits) -> Registry {
        Registry {
            epoch: Instant::now(),
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            changed: Notify::new(),
            telemetry: ConnectionTelemetry::new(limits.listener),
            limits,
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// When the clock of `phase` runs out, and what for.
    fn clock(&self, phase: Phase) -> Option<(Instant, Clock)> {
        let at = |since: u64, limit: Duration| self.epoch + Duration::from_micros(since) + limit;
        match phase {
            Phase::Head { since } => Some((
                at(since, self.limits.header_read_timeout),
                Clock::Head(since),
            )),
            Phase::Idle { since } => Some((
                at(since, self.limits.keep_alive_timeout),
                Clock::Idle(since),
            )),
            Phase::Busy | Phase::Upgraded | Phase::Closing => None,
        }
    }

    /// A slot for the connection just accepted: at once if one is free, else by reclaiming
    /// idle connections, one at a time, until one is. `None` on shutdown.
    async fn admit(&self, shutdown: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Some(permit);
        }
        self.telemetry.limit_waits.increment(1);
        tracing::debug!(
            listener = self.limits.listener,
            max_connections = self.limits.max_connections,
            "every connection slot is taken; reclaiming an idle connection for a new client"
        );
        let permit = loop {
            // Registered before looking, so a change between the look and the wait is seen.
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            self.waiting.store(true, Ordering::SeqCst);
            if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
                break Some(permit);
            }
            self.reclaim_oldest_idle();
            tokio::select! {
                permit = Arc::clone(&self.permits).acquire_owned() => break permit.ok(),
                () = changed => {}
                () = shutdown.cancelled() => break None,
            }
        };
        self.waiting.store(false, Ordering::SeqCst);
        permit
    }

    /// Moves the connection idle the longest to `Closing` and wakes its task, unless one is
    /// closing already (its slot is on its way) or none is idle.
    fn reclaim_oldest_idle(&self) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            // Idle the longest; of two idle since the same moment, the one opened first.
            let mut oldest: Option<(&Arc<Tracked>, u64)> = None;
            for tracked in open.values() {
                match tracked.phase() {
                    Phase::Closing => return,
                    Phase::Idle { since }
                        if oldest.is_none_or(|(first, first_since)| {
                            (since, tracked.id) < (first_since, first.id)
                        }) =>
                    {
                        oldest = Some((tracked, since));
                    }
                    _ => {}
                }
            }
            let Some((tracked, since)) = oldest else {
                return;
            };
            if tracked.close_if(Phase::Idle { since }) {
                tracked.wake.notify_one();
                return;
            }
            // It became busy meanwhile: look again.
        }
    }

    /// Tells a waiting accept loop that a connection became idle or ended.
    fn signal_change(&self) {
        if self.waiting.load(Ordering::SeqCst) {
            self.changed.notify_waiters();
        }
    }

    /// Registers a newly admitted connection, reading its first head from now.
    fn open(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let tracked = Arc::new(Tracked {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            phase: AtomicU64::new(
                Phase::Head {
                    since: self.now_us(),
                }
                .pack(),
            ),
            in_flight: AtomicU32::new(0),
            wake: Notify::new(),
            registry: Arc::clone(self),
        });
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tracked.id, Arc::clone(&tracked));
        self.telemetry.accepted.increment(1);
        self.telemetry.open.increment(1.0);
        Slot {
            tracked,
            _permit: permit,
        }
    }
}

/// One connection's phase and requests in flight.
#[derive(Debug)]
struct Tracked {
    id: u64,
    phase: AtomicU64,
    in_flight: AtomicU32,
    /// Wakes the connection's task when the accept loop reclaims it (every other phase change
    /// happens in that task).
    wake: Notify,
    registry: Arc<Registry>,
}

impl Tracked {
    fn phase(&self) -> Phase {
        Phase::unpack(self.phase.load(Ordering::SeqCst))
    }

    /// Moves from `from` to `Closing`; false if the phase is no longer `from`.
    fn close_if(&self, from: Phase) -> bool {
        self.phase
            .compare_exchange(
                from.pack(),
                Phase::Closing.pack(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }

    /// Bytes arrived: an idle connection starts reading a head.
    fn on_read(&self) {
        let current = self.phase.load(Ordering::Relaxed);
        if !matches!(Phase::unpack(current), Phase::Idle { .. }) {
            return;
        }
        let head = Phase::Head {
            since: self.registry.now_us(),
        };
        // The connection's task re-arms its clock after the poll this read happens in.
        let _ =
            self.phase
                .compare_exchange(current, head.pack(), Ordering::SeqCst, Ordering::Relaxed);
    }

    /// A request head is complete.
    fn begin_request(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _ =
            self.phase.fetch_update(
                Ordering::SeqCst,
                Ordering::SeqCst,
                |word| match Phase::unpack(word) {
                    Phase::Head { .. } | Phase::Idle { .. } => Some(Phase::Busy.pack()),
                    Phase::Busy | Phase::Upgraded | Phase::Closing => None,
                },
            );
    }

    /// A response has been written (or its request abandoned).
    fn end_request(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let idle = Phase::Idle {
            since: self.registry.now_us(),
        }
        .pack();
        if self
            .phase
            .compare_exchange(Phase::Busy.pack(), idle, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            // Another request (HTTP/2) began meanwhile: it keeps the connection busy.
            let _ = self.phase.compare_exchange(
                idle,
                Phase::Busy.pack(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            return;
        }
        self.registry.signal_change();
    }

    /// The connection now belongs to a WebSocket.
    fn upgraded(&self) {
        self.phase.store(Phase::Upgraded.pack(), Ordering::SeqCst);
    }
}

/// A connection's slot: registered while the socket lives (an upgraded one included), and
/// its permit given back when it closes.
#[derive(Debug)]
struct Slot {
    tracked: Arc<Tracked>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let registry = &self.tracked.registry;
        registry
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.tracked.id);
        registry.telemetry.open.decrement(1.0);
    }
}

/// A request in flight, from its complete head until its response body is written or dropped.
#[derive(Debug)]
struct RequestGuard(Arc<Tracked>);

impl RequestGuard {
    fn begin(tracked: Arc<Tracked>) -> RequestGuard {
        tracked.begin_request();
        RequestGuard(tracked)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// A response body that ends its request when hyper is done with it.
#[derive(Debug)]
struct GuardedBody {
    body: axum::body::Body,
    _guard: RequestGuard,
}

impl hyper::body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket, which reports arriving bytes to its phase and holds its slot.
#[derive(Debug)]
struct TrackedStream {
    stream: TcpStream,
    slot: Slot,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.slot.tracked.on_read();
        }
        polled
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max: usize) -> Arc<Registry> {
        Arc::new(Registry::new(ConnectionLimits {
            listener: "test",
            max_connections: max,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
        }))
    }

    #[test]
    fn phases_pack_into_one_word_and_back() {
        for phase in [
            Phase::Head { since: 0 },
            Phase::Head { since: SINCE_MASK },
            Phase::Busy,
            Phase::Idle { since: 12_345 },
            Phase::Upgraded,
            Phase::Closing,
        ] {
            assert_eq!(Phase::unpack(phase.pack()), phase);
        }
    }

    #[tokio::test]
    async fn requests_move_a_connection_between_head_busy_and_idle() {
        let registry = registry(4);
        let slot = registry.open(Arc::clone(&registry.permits).try_acquire_owned().unwrap());
        let tracked = &slot.tracked;
        assert!(
            matches!(tracked.phase(), Phase::Head { .. }),
            "reading its first head"
        );
        tracked.on_read();
        assert!(matches!(tracked.phase(), Phase::Head { .. }));
        // Two requests at once (HTTP/2): idle only after both.
        let first = RequestGuard::begin(Arc::clone(tracked));
        let second = RequestGuard::begin(Arc::clone(tracked));
        assert_eq!(tracked.phase(), Phase::Busy);
        tracked.on_read();
        assert_eq!(
            tracked.phase(),
            Phase::Busy,
            "body bytes do not start a head"
        );
        drop(first);
        assert_eq!(tracked.phase(), Phase::Busy);
        drop(second);
        assert!(matches!(tracked.phase(), Phase::Idle { .. }));
        tracked.on_read();
        assert!(
            matches!(tracked.phase(), Phase::Head { .. }),
            "a byte after idling starts the next head"
        );
        let upgrade = RequestGuard::begin(Arc::clone(tracked));
        upgrade.0.upgraded();
        drop(upgrade);
        assert_eq!(tracked.phase(), Phase::Upgraded, "an upgrade is for good");
    }

    #[tokio::test]
    async fn reclaiming_takes_the_connection_idle_longest_and_only_idle_ones() {
        let registry = registry(8);
        let mut slots = Vec::new();
        for phase in [
            Phase::Idle { since: 50 },
            Phase::Busy,
            Phase::Idle { since: 20 },
            Phase::Upgraded,
            Phase::Head { since: 1 },
            Phase::Idle { since: 30 },
        ] {
            let slot = registry.open(Arc::clone(&registry.permits).try_acquire_owned().unwrap());
            slot.tracked.phase.store(phase.pack(), Ordering::SeqCst);
            slots.push(slot);
        }
        let phases = |slots: &[Slot]| -> Vec<Phase> {
            slots.iter().map(|slot| slot.tracked.phase()).collect()
        };
        registry.reclaim_oldest_idle();
        assert_eq!(
            phases(&slots)[2],
            Phase::Closing,
            "idle since 20: the oldest"
        );
        registry.reclaim_oldest_idle();
        assert_eq!(
            phases(&slots)
                .iter()
                .filter(|p| **p == Phase::Closing)
                .count(),
            1,
            "one reclaim at a time while one is closing"
        );
        slots.remove(2);
        registry.reclaim_oldest_idle();
        assert_eq!(phases(&slots)[4], Phase::Closing, "then idle since 30");
        slots.remove(4);
        registry.reclaim_oldest_idle();
        slots.remove(0);
        registry.reclaim_oldest_idle();
        assert_eq!(
            phases(&slots),
            vec![Phase::Busy, Phase::Upgraded, Phase::Head { since: 1 }],
            "busy, upgraded and head-reading connections are never reclaimed"
        );
    }
}

//! Bind, accept loop, TLS handshake, HTTP/1.1 and h2 serving, graceful drain.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::framing;
use crate::proxy::{self, ConnInfo, Site};
use crate::proxy_protocol::{Header, ProxyHeaderError};
use crate::ratelimit::{ListenerErrors, ReportOnDrop};

// Public for its fuzz target (fuzz/fuzz_targets/client_request.rs) only.
#[doc(hidden)]
pub mod simple_http1;

/// What every accept loop shares: the current site, the connection limit and
/// the drain tracker.
pub struct Shared {
    pub site: ArcSwap<Site>,
    /// Open connections, reloads and generation, for the admin endpoint.
    pub instance: crate::metrics::Instance,
    connections: Arc<Semaphore>,
    /// Taken at shutdown; `None` afterwards so late connections are not tracked.
    graceful: Mutex<Option<Drain>>,
    /// Plain connections whose first bytes may be h2's preface: HTTP/1.1 or
    /// h2 with prior knowledge, told apart by those bytes.
    http: auto::Builder<TokioExecutor>,
    /// HTTP/1: TLS connections where ALPN chose it, and plain ones that do not
    /// start like h2's preface. Besides parking, skipping the sniffing matters
    /// for memory: its short first read made hyper grow each connection's read
    /// buffer from 8 to 16 KiB.
    http1: http1::Builder,
    /// TLS connections where ALPN chose h2.
    http2: http2::Builder<TokioExecutor>,
    /// How long a kept-alive connection may wait for its next request.
    idle_limit: Duration,
    /// With `worker_threads` above 1: the runtimes connections are spread over.
    workers: Option<crate::workers::Spread>,
}

impl Shared {
    /// Shares `site`; at most `max_connections` client connections at once,
    /// spread over `workers` when given.
    pub fn new(site: Arc<Site>, workers: Option<crate::workers::Spread>) -> Shared {
        let runtime = &site.snapshot.runtime;
        // The head timer (hyper's for h2c's builder, `serve_http1`'s checks for
        // HTTP/1) also runs while a kept-alive connection waits for its next
        // request, so it serves as the idle timeout too: the shorter of the
        // two limits applies to both.
        let header_timeout = runtime.client_header_timeout.min(runtime.keepalive_timeout);
        // The read buffer leaves room past the header limit so that portico, not
        // hyper's buffer, decides: 414 for a long target, 431 for a big block.
        let read_buffer = (runtime.max_request_header_size * 2).max(72 * 1024);
        let header_list = u32::try_from(runtime.max_request_header_size).unwrap_or(u32::MAX);
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(read_buffer);
        http.http2().timer(TokioTimer::new()).max_header_list_size(header_list);
        // No header timer of hyper's here: it boxes and registers a timer for
        // every request. `serve_http1`'s periodic checks time the head instead.
        let mut http1 = http1::Builder::new();
        http1.timer(TokioTimer::new()).header_read_timeout(None).max_buf_size(read_buffer);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new()).max_header_list_size(header_list);
        Shared {
            connections: Arc::new(Semaphore::new(runtime.max_connections.max(1))),
            graceful: Mutex::new(Some(Drain(watch::channel(false).0))),
            http,
            http1,
            http2,
            idle_limit: header_timeout,
            workers,
            instance: crate::metrics::Instance::default(),
            site: ArcSwap::new(site),
        }
    }

    /// Stops tracking new connections and returns the tracker to drain.
    pub fn take_graceful(&self) -> Option<Drain> {
        self.graceful.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The graceful drain: every connection holds a receiver; shutdown turns the
/// value true and waits until every receiver is gone.
pub struct Drain(watch::Sender<bool>);

impl Drain {
    /// Asks every connection to finish its requests in flight and close, and
    /// returns once all have.
    pub async fn shutdown(self) {
        self.0.send_replace(true);
        self.0.closed().await;
    }
}

/// How many idle checks the keep-alive limit of an h2 connection is cut into:
/// it closes between the limit and a quarter more after its last stream.
const STREAM_CHECKS: u32 = 4;

/// Drives an h2 connection (or one hyper-util's auto builder sniffs) to its
/// end. Once the drain starts, or once no stream has been open for the
/// keep-alive limit, `graceful_shutdown` sends GOAWAY, lets the streams in
/// flight finish and closes it. hyper's h2 server has no idle timeout of its
/// own, so without this an idle h2 connection stayed open for good. Only
/// streams count: PINGs and SETTINGS do not keep an idle connection open.
async fn serve_streams<C, E>(
    conn: C,
    activity: &Activity,
    idle_limit: Duration,
    mut drain: watch::Receiver<bool>,
    graceful_shutdown: fn(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut conn = std::pin::pin!(conn);
    let period = (idle_limit / STREAM_CHECKS).max(Duration::from_millis(1));
    let ended = {
        let mut drained = std::pin::pin!(drain.wait_for(|draining| *draining));
        let timer = std::pin::pin!(tokio::time::sleep(period));
        let mut check = PeriodicCheck::new(timer, period);
        let mut quiet = 0;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(Ended::Served(result));
            }
            if drained.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ended::Draining);
            }
            let idle = check.poll_check(cx, || {
                quiet = if activity.no_streams_since_last_check() { quiet + 1 } else { 0 };
                (quiet >= STREAM_CHECKS).then_some(())
            });
            idle.map(|()| Ended::Idle)
        })
        .await
    };
    match ended {
        Ended::Served(result) => result,
        // Streams in flight may take as long as they take; the shutdown
        // timeout bounds the drain as a whole.
        Ended::Draining => {
            graceful_shutdown(conn.as_mut());
            conn.await
        }
        // Nothing in flight: hyper's GOAWAY, then a PING the client should
        // answer before the connection closes. A client that does not is cut off.
        Ended::Idle => {
            graceful_shutdown(conn.as_mut());
            tokio::time::timeout(CLOSE_WITHIN, conn).await.unwrap_or(Ok(()))
        }
    }
}

/// Why [`serve_streams`] stopped waiting on hyper alone.
enum Ended<T> {
    Served(T),
    Draining,
    Idle,
}

/// Serves an HTTP/1 connection: portico's own loop while its requests are
/// simple ones (`simple_http1`), hyper from the first other one. Parked
/// whenever it goes idle for [`PARK_AFTER`]: the loop's state or hyper's
/// connection is dropped without closing the client's, and serving starts
/// again in the loop, on the same I/O, once the client sends more.
async fn serve_http1<T, S>(
    shared: &Shared,
    mut io: Guarded<T>,
    mut service: S,
    mut drain: watch::Receiver<bool>,
) -> Result<(), ServeError>
where
    T: AsyncRead + AsyncWrite + Socket + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = ServedBody> + Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = io.conn.clone();
    let activity = &conn.activity;
    loop {
        // portico's own loop serves the simple requests; hyper the others.
        // Boxed, as hyper's connection is, and the box dropped before the
        // match (a temporary there would live through the park below).
        let ended = Box::pin(simple_http1::serve(shared, &mut io, &conn, &mut drain)).await;
        match ended {
            simple_http1::Ended::Closed(result) => return result,
            simple_http1::Ended::Idle => {
                if !park(shared, &mut io, &mut drain).await {
                    return Ok(());
                }
                continue;
            }
            simple_http1::Ended::Hyper => {}
        }
        let mut http = Box::pin(shared.http1.serve_connection(TokioIo::new(io), service).with_upgrades());
        let result = {
            let began = drain.clone();
            let wait = std::pin::pin!(drain.wait_for(|draining| *draining));
            let mut drained = DrainWatch::new(began, wait);
            let mut draining = false;
            let timer = std::pin::pin!(tokio::time::sleep(PARK_AFTER));
            let mut check = PeriodicCheck::new(timer, PARK_AFTER);
            let mut head = HeadClock::new(shared.idle_limit);
            std::future::poll_fn(|cx| {
                loop {
                    if let Poll::Ready(result) = http.as_mut().poll(cx) {
                        return Poll::Ready(result.map_err(ServeError::from));
                    }
                    if !draining && drained.poll_began(cx) {
                        draining = true;
                        activity.parking.store(false, Ordering::Relaxed);
                    } else if draining || activity.parking.load(Ordering::Relaxed) {
                        return Poll::Pending;
                    } else {
                        let found = std::task::ready!(check.poll_check(cx, || idle_or_slow_head(activity, &mut head)));
                        if found == Found::SlowHead {
                            // As hyper's own header timer did: the connection
                            // ends, with no answer to a head never complete.
                            return Poll::Ready(Err(ServeError::HeadTimeout(shared.idle_limit)));
                        }
                        // Idle, so hyper closes at once, with no response to
                        // mark `Connection: close`.
                        activity.parking.store(true, Ordering::Relaxed);
                    }
                    http.as_mut().graceful_shutdown();
                }
            })
            .await
        };
        // Not parking: the client or the drain ended it (the drain clears the flag).
        if !activity.parking.swap(false, Ordering::Relaxed) {
            if result.is_ok()
                && let Some(parts) = Pin::into_inner(http).into_parts()
            {
                // The service and hyper's buffer go now; the socket stays.
                let io = { parts }.io.into_inner();
                // Boxed: made only at a close, it adds nothing to the future
                // every connection keeps.
                Box::pin(linger(io.io.tcp())).await;
            }
            return result;
        }
        result?;
        // None: the connection was upgraded and belongs to its tunnel now.
        let Some(parts) = Pin::into_inner(http).into_parts() else { return Ok(()) };
        (io, service) = take_back(parts);
        if io.carry.is_empty() && !park(shared, &mut io, &mut drain).await {
            return Ok(());
        }
    }
}

/// What a periodic check of an idle-looking HTTP/1 connection finds, if anything.
fn idle_or_slow_head(activity: &Activity, head: &mut HeadClock) -> Option<Found> {
    if activity.idle_since_last_check() { Some(Found::Idle) } else { head.overdue(activity).then_some(Found::SlowHead) }
}

/// Waits, with no HTTP state kept, for a parked connection's client to send
/// more. False, with the connection shut, when the keep-alive limit or the
/// drain came first.
async fn park<T: AsyncWrite + Socket + Unpin>(
    shared: &Shared,
    io: &mut Guarded<T>,
    drain: &mut watch::Receiver<bool>,
) -> bool {
    // The wait for the next request had begun before the checks that found
    // the connection idle: that much of the limit is used.
    let wait = shared.idle_limit.saturating_sub(PARK_AFTER);
    let _parked = shared.instance.parked();
    let resumed = tokio::select! {
        readable = io.io.tcp().readable() => readable.is_ok(),
        () = tokio::time::sleep(wait) => false,
        _ = drain.wait_for(|draining| *draining) => false,
    };
    if !resumed {
        let _ = tokio::time::timeout(CLOSE_WITHIN, tokio::io::AsyncWriteExt::shutdown(io)).await;
    }
    resumed
}

/// Reads and drops what a client still sends after portico (its own loop or
/// hyper) has answered and shut the connection's sending side, for at most [`LINGER_FOR`], before the
/// socket closes (nginx's `lingering_close`). Closing a socket with unread
/// bytes sends a reset, and a reset can destroy an answer the client has not
/// read yet: a 413 to an upload, or any answer that cut a body short. Only
/// when bytes are waiting at the close; otherwise it closes at once.
async fn linger(tcp: &TcpStream) {
    if !matches!(tcp.try_read(&mut [0u8; 1]), Ok(1)) {
        return;
    }
    let drain = async {
        // Made only here: most connections close with nothing to read.
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match tcp.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if tcp.readable().await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_FOR, drain).await;
}

/// Why [`serve_http1`]'s connection ended with an error.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("no complete request head within {0:?} (client_header_timeout)")]
    HeadTimeout(Duration),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("error from the response body: {0}")]
    Body(proxy::body::BoxError),
    #[error("response body not of its declared length")]
    BodyLength,
}

/// What a periodic check of an HTTP/1 connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// Nothing happened since the last check: park.
    Idle,
    /// A request head has been arriving for longer than allowed: close.
    SlowHead,
}

/// The drain, watched from a connection's poll function. `wait` (the
/// receiver's `wait_for` a drain) wakes the task when the drain begins, but
/// each poll of it takes the channel's lock for its waiters; once it is
/// registered, a copy of the receiver reads the value instead (a read lock).
/// A drain dropped without being sent counts as begun, as `wait_for` has it.
struct DrainWatch<'a, F> {
    began: watch::Receiver<bool>,
    wait: Pin<&'a mut F>,
    armed: bool,
}

impl<'a, F: Future> DrainWatch<'a, F> {
    fn new(began: watch::Receiver<bool>, wait: Pin<&'a mut F>) -> Self {
        DrainWatch { began, wait, armed: false }
    }

    /// Whether the drain has begun, the task woken when it does. Not to be
    /// called again once it has said so (`wait` is then finished).
    fn poll_began(&mut self, cx: &mut Context<'_>) -> bool {
        if self.armed && !self.has_begun() {
            return false;
        }
        self.armed = true;
        self.wait.as_mut().poll(cx).is_ready()
    }

    /// Whether the drain has begun, read without registering for it.
    fn has_begun(&self) -> bool {
        *self.began.borrow() || self.began.has_changed().is_err()
    }
}

/// Times a request head by the periodic checks rather than a timer of its
/// own per request: a head is overdue when the checks have seen the same
/// one in progress, with no request in flight (hyper reads the next head
/// only then), for longer than `limit`: cut between `limit` and `limit`
/// plus two check periods after it began.
struct HeadClock {
    /// Checks that must see one head in progress.
    checks_allowed: u32,
    /// Completed heads before the one in progress, and how many checks saw it.
    seen: Option<(u64, u32)>,
}

impl HeadClock {
    fn new(limit: Duration) -> HeadClock {
        // The check after `periods` more has come at least `limit` after the
        // head began (it began before the first check that saw it), and less
        // than two periods after that.
        let periods = limit.as_nanos().div_ceil(PARK_AFTER.as_nanos().max(1));
        HeadClock { checks_allowed: u32::try_from(periods).unwrap_or(u32::MAX), seen: None }
    }

    /// Called at each check: whether the head in progress, if any, is overdue.
    fn overdue(&mut self, activity: &Activity) -> bool {
        let in_head = !activity.between_requests.load(Ordering::Relaxed) && activity.open.load(Ordering::Relaxed) == 0;
        if !in_head {
            self.seen = None;
            return false;
        }
        let heads = activity.heads.load(Ordering::Relaxed);
        let checks = match self.seen {
            Some((seen, checks)) if seen == heads => checks + 1,
            _ => 1,
        };
        self.seen = Some((heads, checks));
        checks > self.checks_allowed
    }
}

/// The timer of the periodic checks while hyper serves a connection (is it
/// idle; on HTTP/1, is a request head overdue).
struct PeriodicCheck<'t> {
    timer: Pin<&'t mut tokio::time::Sleep>,
    period: Duration,
    /// Registered with the timer since it was last reset: until it fires, a
    /// wake-up of the task need not poll it.
    armed: bool,
}

impl<'t> PeriodicCheck<'t> {
    /// Checks every `period`, the first time when `timer` fires.
    fn new(timer: Pin<&'t mut tokio::time::Sleep>, period: Duration) -> PeriodicCheck<'t> {
        PeriodicCheck { timer, period, armed: false }
    }

    /// Ready with what a check, every `period`, finds.
    fn poll_check<T>(&mut self, cx: &mut Context<'_>, mut check: impl FnMut() -> Option<T>) -> Poll<T> {
        if self.armed && !self.timer.is_elapsed() {
            return Poll::Pending;
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            if let Some(found) = check() {
                return Poll::Ready(found);
            }
            self.timer.as_mut().reset(tokio::time::Instant::now() + self.period);
        }
        self.armed = true;
        Poll::Pending
    }
}

/// The I/O and service of a hyper connection that has ended for parking; the
/// rest of it, hyper's buffers, is freed on return.
fn take_back<T, S>(parts: http1::Parts<TokioIo<Guarded<T>>, S>) -> (Guarded<T>, S) {
    let mut io = parts.io.into_inner();
    // Empty lines before a request line are skipped by the parser anyway
    // (RFC 9112 section 2.2); kept, a client's stray CRLF after a request would
    // come back with every new hyper connection and the connection never park.
    let start = parts.read_buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(parts.read_buf.len());
    // A copy: `read_buf` holds on to hyper's whole read buffer, even when empty.
    io.carry = Bytes::copy_from_slice(&parts.read_buf[start..]);
    (io, parts.service)
}

/// One client connection's view of the configuration. Each request uses the
/// site current when it arrives, so a reload reaches kept-alive clients too
/// (a request already in flight finishes on the site it started with).
struct Connection {
    shared: Arc<Shared>,
    /// The listen address as configured, to find this listener in a new site.
    addr: SocketAddr,
    info: ArcSwap<ConnInfo>,
    /// Requests answered, and requests the client dropped before their answer.
    answered: AtomicU64,
    abandoned: AtomicU64,
    /// Set when the client abandons requests wholesale (h2 rapid reset,
    /// CVE-2023-44487): reading from it then fails and the connection ends.
    condemned: AtomicBool,
    /// Which HTTP/1 request, if any, the framing tracker found ambiguous.
    framing: framing::Verdict,
    /// The listener's rate-limited error lines.
    errors: Arc<ListenerErrors>,
    /// What tells an idle connection: to park it (HTTP/1) or close it (h2).
    activity: Activity,
}

/// Abandoned requests a connection may pile up beyond those it let finish.
const ABANDON_ALLOWANCE: u64 = 100;

impl Connection {
    fn new(shared: &Arc<Shared>, addr: SocketAddr, info: ConnInfo, errors: &Arc<ListenerErrors>) -> Connection {
        Connection {
            shared: shared.clone(),
            addr,
            info: ArcSwap::from_pointee(info),
            answered: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            condemned: AtomicBool::new(false),
            framing: framing::Verdict::default(),
            errors: errors.clone(),
            activity: Activity::default(),
        }
    }

    /// Serves one request, counting it as abandoned if the client drops it
    /// before the answer (an h2 stream reset, a closed connection).
    async fn serve(
        self: Arc<Self>,
        mut request: hyper::Request<Option<hyper::body::Incoming>>,
    ) -> Result<hyper::Response<ServedBody>, hyper::Error> {
        let open = OpenResponse::new(self);
        let this = &*open.0;
        let (number, ambiguous) = this.framing.next_request();
        if ambiguous {
            request.extensions_mut().insert(framing::Ambiguous);
        }
        // What the framing tracker waits on after a head (HTTP/1 only).
        let upgrade = request.version() < hyper::Version::HTTP_2
            && (request.method() == hyper::Method::CONNECT || request.headers().contains_key(hyper::header::UPGRADE));
        let mut pending = Pending { conn: this, answered: false };
        // Through a pin, as `handle` awaits `forward`: awaited by value, the
        // future takes its room twice (rust-lang/rust#62958), and hyper
        // moves this one into place for every request (11 KiB, now 3.7).
        let response = std::pin::pin!(proxy::handle(this.current(), request, number)).await;
        pending.answered = true;
        if upgrade && response.as_ref().is_ok_and(|r| r.status() != hyper::StatusCode::SWITCHING_PROTOCOLS) {
            // The connection stays HTTP/1: its tracker follows the next request.
            this.framing.upgrade_declined(number);
        }
        drop(pending);
        Ok(response?.map(|body| ServedBody { body, _open: open }))
    }

    /// The context for the next request: rebuilt once after a reload.
    fn current(&self) -> Arc<ConnInfo> {
        let info = self.info.load_full();
        let site = self.shared.site.load();
        if Arc::ptr_eq(&info.site, &site) {
            return info;
        }
        // A listener the reload removed: its last connections finish on the old site.
        let Some(index) = site.listener_index(self.addr) else { return info };
        let fresh = Arc::new(info.on_site(Arc::clone(&site), index));
        self.info.store(fresh.clone());
        fresh
    }
}

/// A request in progress on a connection; counts itself when dropped.
struct Pending<'c> {
    conn: &'c Connection,
    answered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.answered {
            self.conn.answered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Opening streams and resetting them at once costs the client nothing
        // and portico an upstream request each: past an allowance, and when
        // most requests end that way, the connection is ended.
        let abandoned = self.conn.abandoned.fetch_add(1, Ordering::Relaxed) + 1;
        if abandoned > ABANDON_ALLOWANCE + self.conn.answered.load(Ordering::Relaxed)
            && !self.conn.condemned.swap(true, Ordering::Relaxed)
        {
            self.conn.errors.abandoned(self.conn.info.load().remote, abandoned);
        }
    }
}

/// How long an HTTP/1 connection goes without a byte read or written before it
/// is parked (it parks within twice this): hyper's state for it, two 8 KiB
/// buffers and the service future's box, is dropped, and made again when the
/// client sends its next request. nginx frees its buffers on idle keep-alive
/// connections too; waiting a moment keeps busy connections from paying for
/// it on every request.
const PARK_AFTER: Duration = Duration::from_millis(250);

/// How long [`linger`] reads what a client still sends after its connection
/// was closed on it (nginx: `lingering_time` 30 s, `lingering_timeout` 5 s).
const LINGER_FOR: Duration = Duration::from_secs(2);

/// How long closing an idle connection may take: a parked one's TLS
/// close_notify, an h2 one's GOAWAY and the client's answer to its PING.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);

/// What the I/O wrapper and the service record for the connection's task to
/// tell when hyper is idle, between requests with nothing left to send. The
/// I/O belongs to hyper while it serves, hence atomics; relaxed, as no other
/// memory is published through them. h2 connections are never parked; their
/// idle checks read only `open` and `started`.
#[derive(Debug)]
struct Activity {
    /// Set by every read and write; cleared by each idle check.
    io: AtomicBool,
    /// No write since the last completed flush.
    flushed: AtomicBool,
    /// The framing tracker is between requests: no head or body half read.
    between_requests: AtomicBool,
    /// Request heads the framing tracker has seen complete.
    heads: AtomicU64,
    /// Requests being served plus responses hyper has not dropped yet.
    open: AtomicU64,
    /// Set when a request begins; cleared by each idle check of an h2 connection.
    started: AtomicBool,
    /// While hyper is being parked its shutdown of the I/O is skipped.
    parking: AtomicBool,
}

impl Default for Activity {
    fn default() -> Activity {
        Activity {
            io: AtomicBool::new(false),
            flushed: AtomicBool::new(true),
            between_requests: AtomicBool::new(true),
            heads: AtomicU64::new(0),
            open: AtomicU64::new(0),
            started: AtomicBool::new(false),
            parking: AtomicBool::new(false),
        }
    }
}

impl Activity {
    /// Whether hyper has been idle since the last check: no I/O, every
    /// response sent and flushed, no request begun. Starts the next period.
    fn idle_since_last_check(&self) -> bool {
        let busy = self.io.swap(false, Ordering::Relaxed);
        !busy
            && self.flushed.load(Ordering::Relaxed)
            && self.between_requests.load(Ordering::Relaxed)
            && self.open.load(Ordering::Relaxed) == 0
    }

    /// Whether no stream has been open since the last check (h2, where the
    /// I/O also carries PINGs and the like). Starts the next period.
    fn no_streams_since_last_check(&self) -> bool {
        let begun = self.started.swap(false, Ordering::Relaxed);
        !begun && self.open.load(Ordering::Relaxed) == 0
    }
}

/// A request counted in [`Activity::open`] from the moment it is served until
/// hyper drops its response body (or the request ends without a response).
struct OpenResponse(Arc<Connection>);

impl OpenResponse {
    fn new(conn: Arc<Connection>) -> OpenResponse {
        conn.activity.open.fetch_add(1, Ordering::Relaxed);
        conn.activity.started.store(true, Ordering::Relaxed);
        OpenResponse(conn)
    }
}

impl Drop for OpenResponse {
    fn drop(&mut self) {
        self.0.activity.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The response body handed to hyper: portico's, plus the count of open
/// responses it keeps until hyper is done with it.
struct ServedBody {
    body: proxy::body::ResponseBody,
    _open: OpenResponse,
}

impl hyper::body::Body for ServedBody {
    type Data = <proxy::body::ResponseBody as hyper::body::Body>::Data;
    type Error = <proxy::body::ResponseBody as hyper::body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The TCP socket under a client connection's I/O, waited on while parked.
trait Socket {
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Socket for Box<tokio_rustls::server::TlsStream<TcpStream>> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Client I/O that fails once its connection is condemned, so that hyper ends
/// it, shows every byte read to the framing tracker before hyper, and records
/// the connection's [`Activity`].
struct Guarded<T> {
    io: T,
    conn: Arc<Connection>,
    framing: framing::Tracker,
    /// Bytes hyper had read and not used when it was parked (tracked already),
    /// read again first.
    carry: Bytes,
}

impl<T> Guarded<T> {
    fn new(io: T, conn: Arc<Connection>, framing: framing::Tracker) -> Guarded<T> {
        Guarded { io, conn, framing, carry: Bytes::new() }
    }

    /// Any write attempt, even one that takes nothing, means bytes wait to be
    /// sent until the next completed flush.
    fn wrote(&self) {
        let activity = &self.conn.activity;
        activity.io.store(true, Ordering::Relaxed);
        activity.flushed.store(false, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.conn.condemned.load(Ordering::Relaxed) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "too many abandoned requests",
            )));
        }
        let this = &mut *self;
        if !this.carry.is_empty() {
            let n = this.carry.len().min(buf.remaining());
            buf.put_slice(&this.carry.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let start = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.framing.answered(&this.conn.framing);
        if let Some(request) = this.framing.feed(&buf.filled()[start..]) {
            this.conn.framing.flag(request);
        }
        let activity = &this.conn.activity;
        activity.io.store(true, Ordering::Relaxed);
        activity.between_requests.store(this.framing.between_requests(), Ordering::Relaxed);
        activity.heads.store(this.framing.heads(), Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.wrote();
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.conn.activity.flushed.store(true, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Parking ends hyper's connection, not the client's.
        if self.conn.activity.parking.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.wrote();
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// Binds `addr` with SO_REUSEADDR (a restart must not wait for TIME_WAIT).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections on `listener`, configured as `addr`, until `stop` turns
/// true. Each connection is served by the site current when it was accepted.
pub async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let errors = Arc::new(ListenerErrors::new(addr));
    let _report = ReportOnDrop(errors.clone());
    loop {
        // Over max_connections, wait here: further clients queue in the backlog.
        let permit = tokio::select! {
            permit = shared.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    errors.accept_failed(&e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Some(drain) =
            shared.graceful.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|d| d.0.subscribe())
        else {
            return;
        };
        let accepted = Accepted { stream, remote, addr, permit, drain, site: shared.site.load_full() };
        match shared.workers.as_ref().and_then(crate::workers::Spread::next) {
            None => {
                tokio::spawn(serve_accepted(accepted, shared.clone(), errors.clone()));
            }
            Some(worker) => accepted.hand_over(worker, shared.clone(), errors.clone()),
        }
    }
}

/// A connection just accepted, with what its serving needs from the loop.
struct Accepted {
    stream: TcpStream,
    remote: SocketAddr,
    /// The listen address as configured.
    addr: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
    drain: watch::Receiver<bool>,
    site: Arc<Site>,
}

impl Accepted {
    /// Serves it on `worker`'s runtime rather than this one: its socket leaves
    /// this runtime's reactor and joins that one's, there.
    fn hand_over(self, worker: &tokio::runtime::Handle, shared: Arc<Shared>, errors: Arc<ListenerErrors>) {
        let Accepted { stream, remote, addr, permit, drain, site } = self;
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => return errors.accept_failed(&e),
        };
        worker.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => {
                    serve_accepted(Accepted { stream, remote, addr, permit, drain, site }, shared, errors).await
                }
                Err(e) => errors.accept_failed(&e),
            }
        });
    }
}

/// Caps what the kernel holds unsent for a client at `bytes`, so that a
/// client slower than its backend leaves its answer waiting in the backend's
/// socket, not megabytes of portico's kernel memory (up to `tcp_wmem`'s 4 MiB
/// per connection otherwise), and h2 frames are not queued behind what was
/// written before them. `0` leaves the kernel's setting.
fn limit_unsent(stream: &TcpStream, bytes: u32) {
    if bytes > 0 {
        // Best effort, as TCP_NODELAY: the connection works without it.
        let _ = socket2::SockRef::from(stream).set_tcp_notsent_lowat(bytes);
    }
}

/// Serves one accepted connection to its end: TLS handshake, then HTTP/1 or h2.
async fn serve_accepted(accepted: Accepted, shared: Arc<Shared>, errors: Arc<ListenerErrors>) {
    let Accepted { mut stream, mut remote, addr, permit, mut drain, site } = accepted;
    let _permit = permit;
    let _active = shared.instance.connection();
    let _ = stream.set_nodelay(true);
    limit_unsent(&stream, site.snapshot.runtime.tcp_notsent_lowat);
    let Ok(local) = stream.local_addr() else { return };
    // A reload that removes this address closes the loop right after
    // the switch; a connection accepted in between is dropped.
    let Some(index) = site.listener_index(addr) else { return };
    let state = &site.listeners[index];
    let handshake_timeout = site.snapshot.runtime.client_header_timeout;
    if site.snapshot.listeners[index].proxy_protocol {
        match tokio::time::timeout(handshake_timeout, crate::proxy_protocol::read(&mut stream)).await {
            // Only a trusted balancer may say who the client is; from anyone
            // else the header is read past and the socket's address stands.
            Ok(Ok(Header::Client(client))) if site.snapshot.runtime.is_trusted_proxy(remote.ip()) => remote = client,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return errors.proxy_header_failed(remote, &e),
            Err(_) => return errors.proxy_header_failed(remote, &ProxyHeaderError::TimedOut),
        }
    }
    match &state.tls {
        Some(acceptor) => {
            // Boxed, like the connection below: the handshake's state is
            // needed only until it completes, not for the connection's life.
            let handshake = Box::pin(acceptor.accept(stream));
            let (tls, client_auth) = match tokio::time::timeout(handshake_timeout, handshake).await {
                // Boxed: the TLS state is 1.2 KiB, and the task would
                // keep room for it beside hyper's copy or the parked one.
                Ok(Ok((tls, client_auth))) => (Box::new(tls), client_auth),
                Ok(Err(e)) => return errors.handshake_failed(remote, &e),
                Err(_) => return errors.handshake_timed_out(remote),
            };
            let client_cert = client_auth.map(|policy| Arc::new(policy.outcome(tls.get_ref().1.peer_certificates())));
            let session = crate::tls::TlsSession::of(tls.get_ref().1);
            let info = ConnInfo::new(site, index, remote, local, Some(session), client_cert);
            let conn = Arc::new(Connection::new(&shared, addr, info, &errors));
            // ALPN has chosen; with h2 there are no HTTP/1 requests to follow.
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let framing = if h2 { framing::Tracker::inert() } else { framing::Tracker::new() };
            let io = Guarded::new(tls, conn.clone(), framing);
            let service = service_fn(|request: hyper::Request<_>| conn.clone().serve(request.map(Some)));
            let served = if h2 {
                let http = Box::pin(shared.http2.serve_connection(TokioIo::new(io), service));
                serve_streams(http, &conn.activity, shared.idle_limit, drain, |c| {
                    c.get_mut().as_mut().graceful_shutdown();
                })
                .await
                .map_err(ServeError::from)
            } else {
                serve_http1(&shared, io, service, drain).await
            };
            if let Err(e) = served {
                errors.connection_failed(remote, &e);
            }
        }
        None => {
            let conn = Arc::new(Connection::new(
                &shared,
                addr,
                ConnInfo::new(site, index, remote, local, None, None),
                &errors,
            ));
            // h2 with prior knowledge opens with its preface ("PRI * HTTP/2.0"):
            // hyper-util's auto builder serves it. Anything else is HTTP/1,
            // served so that it can park. A peek leaves the bytes to hyper.
            let mut first = [0u8; 4];
            let peeked = tokio::select! {
                peeked = tokio::time::timeout(shared.idle_limit, stream.peek(&mut first)) => peeked,
                _ = drain.wait_for(|draining| *draining) => return,
            };
            // Closed, failed, or silent for as long as an idle connection may be.
            let Ok(Ok(peeked @ 1..)) = peeked else { return };
            let io = Guarded::new(stream, conn.clone(), framing::Tracker::new());
            let service = service_fn(|request: hyper::Request<_>| conn.clone().serve(request.map(Some)));
            let served = if b"PRI ".starts_with(&first[..peeked]) {
                let http = Box::pin(shared.http.serve_connection_with_upgrades(TokioIo::new(io), service));
                serve_streams(http, &conn.activity, shared.idle_limit, drain, |c| {
                    c.get_mut().as_mut().graceful_shutdown();
                })
                .await
            } else {
                serve_http1(&shared, io, service, drain).await.map_err(Into::into)
            };
            if let Err(e) = served {
                errors.connection_failed(remote, &e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A connection of a one-listener site, as the accept loop makes it, its
    /// I/O wrapper over a pipe of `capacity` bytes, and the pipe's client end.
    fn wrapped(capacity: usize) -> (Arc<Connection>, Guarded<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let toml = "[upstream.app]\nservers = [\"127.0.0.1:9\"]\n\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nproxy_pass = \"app\"\n";
        let snapshot = crate::config::parse_str(toml, Path::new("test.toml")).unwrap();
        let site = Arc::new(Site::build(Arc::new(snapshot), &crate::log::Logs::new(), None).unwrap());
        let shared = Arc::new(Shared::new(site.clone(), None));
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let errors = Arc::new(ListenerErrors::new(addr));
        let conn = Arc::new(Connection::new(&shared, addr, ConnInfo::new(site, 0, remote, addr, None, None), &errors));
        let (ours, client) = tokio::io::duplex(capacity);
        (conn.clone(), Guarded::new(ours, conn, framing::Tracker::new()), client)
    }

    #[test]
    fn head_clock_cuts_a_head_seen_for_longer_than_the_limit() {
        // 500 ms at a check every 250 ms: the third check that sees one head
        // comes at least 500 ms after it began.
        let mut clock = HeadClock::new(Duration::from_millis(500));
        let activity = Activity::default();
        assert!(!clock.overdue(&activity), "between requests: nothing to time");
        activity.between_requests.store(false, Ordering::Relaxed);
        assert_eq!(
            [clock.overdue(&activity), clock.overdue(&activity), clock.overdue(&activity)],
            [false, false, true]
        );

        // A request being answered stops the clock; a new head starts it afresh.
        let mut clock = HeadClock::new(Duration::from_millis(500));
        assert!(!clock.overdue(&activity) && !clock.overdue(&activity));
        activity.open.store(1, Ordering::Relaxed);
        assert!(!clock.overdue(&activity));
        activity.open.store(0, Ordering::Relaxed);
        assert!(!clock.overdue(&activity) && !clock.overdue(&activity));
        activity.heads.store(1, Ordering::Relaxed);
        assert!(!clock.overdue(&activity) && !clock.overdue(&activity));
        assert!(clock.overdue(&activity));

        // A limit under one period: the second check.
        let mut clock = HeadClock::new(Duration::from_millis(100));
        assert_eq!([clock.overdue(&activity), clock.overdue(&activity)], [false, true]);
    }

    #[tokio::test]
    async fn a_response_waiting_on_the_client_keeps_the_connection_busy_until_flushed() {
        let (conn, mut io, mut client) = wrapped(64);
        let activity = &conn.activity;
        assert!(activity.idle_since_last_check(), "a fresh connection is idle");

        // The client reads nothing: the pipe fills and the rest of the write waits.
        let written = io.write(&[b'x'; 100]).await.unwrap();
        let waiting = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll_write(cx, &[b'y'; 36]))).await;
        assert!(waiting.is_pending(), "the pipe took more than it holds ({written} bytes first)");
        assert!(!activity.idle_since_last_check(), "busy: it wrote");
        assert!(!activity.idle_since_last_check(), "no I/O since, but the write has not been flushed");

        let mut read = vec![0u8; written];
        client.read_exact(&mut read).await.unwrap();
        io.write_all(&[b'y'; 36]).await.unwrap();
        io.flush().await.unwrap();
        assert!(!activity.idle_since_last_check(), "busy: it wrote");
        assert!(activity.idle_since_last_check(), "flushed and quiet since");
    }

    #[tokio::test]
    async fn a_request_read_in_part_keeps_the_connection_busy() {
        let (conn, mut io, mut client) = wrapped(1024);
        let activity = &conn.activity;
        let mut buf = [0u8; 1024];

        client.write_all(b"GET / HTTP/1.1\r\nHost: a").await.unwrap();
        let _ = io.read(&mut buf).await.unwrap();
        assert!(!activity.idle_since_last_check(), "busy: it read");
        assert!(!activity.idle_since_last_check(), "half a head read");

        client.write_all(b".test\r\n\r\n").await.unwrap();
        let _ = io.read(&mut buf).await.unwrap();
        assert!(!activity.idle_since_last_check(), "busy: it read");
        assert!(activity.idle_since_last_check(), "a whole head, and no request served: idle");

        // A request being served (its response not yet dropped by hyper).
        let open = OpenResponse::new(conn.clone());
        assert!(!activity.idle_since_last_check(), "a response is open");
        drop(open);
        assert!(activity.idle_since_last_check());
    }
}

//! Streaming bodies: the request body toward the upstream (stamping progress
//! for the silence timeouts) and the response body toward the client (idle
//! timeout, connection reuse and the access log line when it ends).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Version;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::exchange::Exchange;
use crate::upstream::Pool;
use crate::upstream::http1::{BodyReader, Upload};
use crate::upstream::pool::{Connection, UnwantedRead};

/// Boxed error type of bodies that can fail for more than one reason.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// When the request body last moved, so that waiting for the upstream's answer
/// times out on silence, not on the total time an upload takes.
#[derive(Debug)]
pub struct Progress {
    base: Instant,
    /// Milliseconds since `base` of the last body frame read.
    last_ms: AtomicU64,
    /// Whether the whole request body was read.
    done: AtomicBool,
    /// Whether the body went past `client_max_body_size`.
    too_large: AtomicBool,
    /// Whether reading the client's body failed (bad chunking, client gone).
    client_failed: AtomicBool,
    /// Body bytes read from the client (`$request_length`).
    read: AtomicU64,
}

impl Progress {
    /// Starts counting now. Shared (in an `Arc`) only with a body to send:
    /// an empty one never moves, and most requests have none.
    pub fn new(done: bool) -> Progress {
        Progress {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            done: AtomicBool::new(done),
            too_large: AtomicBool::new(false),
            client_failed: AtomicBool::new(false),
            read: AtomicU64::new(0),
        }
    }

    /// Body bytes read from the client so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the body last moved.
    pub fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Whether the whole request body has been sent on.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    /// Whether the body was cut off for exceeding `client_max_body_size` (413).
    pub fn is_too_large(&self) -> bool {
        self.too_large.load(Ordering::Relaxed)
    }

    /// Whether the client's side of the body failed: the attempt failed
    /// because of the client, not the upstream server.
    pub fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Relaxed)
    }
}

/// A request body that went past `client_max_body_size`.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than client_max_body_size ({0} bytes)")]
pub struct TooLarge(u64);

/// The client's request body on its way to the upstream.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    progress: Option<Arc<Progress>>,
    /// Bytes still allowed (`client_max_body_size`); `None` = unlimited.
    remaining: Option<u64>,
    limit: u64,
}

impl RequestBody {
    /// Streams `inner`, recording progress in `progress`, failing once more
    /// than `limit` bytes (if any) came.
    pub fn new(inner: Incoming, progress: Arc<Progress>, limit: Option<u64>) -> RequestBody {
        RequestBody { inner: Some(inner), progress: Some(progress), remaining: limit, limit: limit.unwrap_or(0) }
    }

    /// No body.
    pub fn empty() -> RequestBody {
        RequestBody { inner: None, progress: None, remaining: None, limit: 0 }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        let frame = ready!(Pin::new(inner).poll_frame(cx)).map(|f| f.map_err(BoxError::from));
        if let (Some(Err(_)), Some(progress)) = (&frame, &this.progress) {
            progress.client_failed.store(true, Ordering::Relaxed);
        }
        if let (Some(remaining), Some(Ok(frame))) = (this.remaining.as_mut(), &frame) {
            let len = frame.data_ref().map_or(0, |d| d.len() as u64);
            match remaining.checked_sub(len) {
                Some(left) => *remaining = left,
                None => {
                    if let Some(progress) = &this.progress {
                        progress.too_large.store(true, Ordering::Relaxed);
                    }
                    this.inner = None;
                    return Poll::Ready(Some(Err(TooLarge(this.limit).into())));
                }
            }
        }
        if let Some(progress) = &this.progress {
            progress.touch();
            if let Some(Ok(frame)) = &frame
                && let Some(data) = frame.data_ref()
            {
                progress.read.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            if frame.is_none() {
                progress.done.store(true, Ordering::Relaxed);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The body portico answers a client with.
pub enum ResponseBody {
    /// A short body made here (errors, redirects), or none.
    Full(Option<Bytes>),
    /// The same, with its request's access log line, which waits for the
    /// answer's final head (a format that prints `$sent_http_NAME` or
    /// `$bytes_sent`): written when the body is done with.
    Answer(Box<Answered>),
    /// An upstream's body, streamed.
    Upstream(Box<UpstreamBody>),
    /// An upstream's body, compressed as it streams (`gzip`).
    Gzip(Box<super::gzip::GzipBody>),
}

impl ResponseBody {
    /// No body.
    pub fn empty() -> ResponseBody {
        ResponseBody::Full(None)
    }

    /// A fixed body.
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        let bytes = bytes.into();
        ResponseBody::Full((!bytes.is_empty()).then_some(bytes))
    }

    /// `bytes`, with `exchange`'s line written once they are sent.
    pub fn answered(bytes: Option<Bytes>, exchange: Exchange) -> ResponseBody {
        let length = bytes.as_ref().map_or(0, |b| b.len() as u64);
        ResponseBody::Answer(Box::new(Answered { bytes, length, exchange: Some(exchange) }))
    }

    /// Whether it is an answer made here without a body.
    pub fn is_empty_answer(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Answer(answer) => answer.length == 0,
            _ => false,
        }
    }

    /// The request's facts this body logs when it ends, if it still holds them.
    fn exchange(&self) -> Option<&Exchange> {
        match self {
            ResponseBody::Full(_) => None,
            ResponseBody::Answer(answer) => answer.exchange.as_ref(),
            ResponseBody::Upstream(body) => body.exchange.as_ref(),
            ResponseBody::Gzip(body) => body.inner().exchange(),
        }
    }

    fn exchange_mut(&mut self) -> Option<&mut Exchange> {
        match self {
            ResponseBody::Full(_) => None,
            ResponseBody::Answer(answer) => answer.exchange.as_mut(),
            ResponseBody::Upstream(body) => body.exchange.as_mut(),
            ResponseBody::Gzip(body) => body.inner_mut().exchange_mut(),
        }
    }
}

/// Keeps the head of `response`, as it goes to the client, for its access
/// log line, when the line prints some of it.
pub fn keep_sent_head(response: &mut http::Response<ResponseBody>) {
    if !response.body().exchange().is_some_and(Exchange::keeps_sent_head) {
        return;
    }
    let (parts, mut body) = std::mem::replace(response, http::Response::new(ResponseBody::empty())).into_parts();
    let length = body.size_hint().exact();
    if let Some(exchange) = body.exchange_mut() {
        exchange.keep_sent_head(parts.status, &parts.headers, length);
    }
    *response = http::Response::from_parts(parts, body);
}

/// A body made here whose request is logged once it is sent (or dropped).
pub struct Answered {
    bytes: Option<Bytes>,
    length: u64,
    exchange: Option<Exchange>,
}

impl Drop for Answered {
    fn drop(&mut self) {
        if let Some(exchange) = self.exchange.take() {
            // A HEAD answer is whole without its body.
            let sent = self.bytes.is_none();
            let complete = sent || exchange.is_head();
            exchange.finish(if sent { self.length } else { 0 }, complete);
        }
    }
}

/// The most of a message nobody wants read and dropped, and for how long at
/// most, so that its connection can carry another one: a client's upload
/// once the upstream server has answered in full before taking all of it
/// (an HTTP/1.1 connection can carry the client's next request only once
/// this one's body has been read; nginx discards an unread body the same
/// way), and an answer (its rest, or all of it with the wait for its head)
/// once its client has gone (`drain`). Past either limit the connection
/// closes, as it must with a message left unread.
const DISCARD_MAX: u64 = 1024 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(5);

/// Reads what is left of a client's upload and drops it (see `DISCARD_MAX`).
/// A task of its own: hyper drops the answer's body once its last byte is
/// out, and reads the request body on for as long as someone takes it.
async fn discard(mut rest: RequestBody) {
    let read = async {
        let mut left = DISCARD_MAX;
        while let Some(Ok(frame)) = rest.frame().await {
            let len = frame.data_ref().map_or(0, |d| d.len() as u64);
            match left.checked_sub(len) {
                Some(l) => left = l,
                None => return,
            }
        }
    };
    // Dropping `rest` unread, on either limit, makes hyper close the connection.
    let _ = tokio::time::timeout(DISCARD_TIME, read).await;
}

/// What is still to be read of an answer whose client has gone.
pub enum Unread {
    /// All of it: the request went whole, its answer's head has not come
    /// (`head_request`: the request was HEAD).
    Answer { head_request: bool },
    /// The rest of its body, found `worth_draining`.
    Body(BodyReader),
}

/// Whether the rest of a body is worth reading for nobody to keep its
/// connection: it has an end other than the close, and is known not to be
/// more than `DISCARD_MAX` (a chunked one is cut there).
fn worth_draining(reader: &BodyReader) -> bool {
    reader.ends_reusable() && reader.remaining().is_none_or(|left| left <= DISCARD_MAX)
}

/// Reads, in a task of its own, what is left of an answer whose client has
/// gone, and gives its connection back to `pool` if the answer ends within
/// `DISCARD_MAX` and `DISCARD_TIME`: the server's next request then needs no
/// new connection, which is a TLS handshake on the server and, when it is
/// busy, a long wait (performance-log step 43). nginx closes it, unless it
/// had the answer whole in its buffers already.
///
/// At most as many at once as the pool may keep idle (`Pool::unwanted_read`);
/// past that, and with `keepalive = 0`, the connection closes.
pub fn drain(connection: Connection, unread: Unread, pool: &Arc<Pool>) {
    let Some(room) = pool.unwanted_read() else { return };
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(read_unwanted(connection, unread, room));
    }
}

async fn read_unwanted(mut connection: Connection, unread: Unread, room: UnwantedRead) {
    let read = async {
        let mut no_upload = None;
        let mut reader = match unread {
            Unread::Body(reader) => reader,
            Unread::Answer { head_request } => {
                let head = std::future::poll_fn(|cx| connection.conn.poll_head(cx, &mut no_upload, head_request))
                    .await
                    .ok()?;
                // A switch of protocols leaves no HTTP/1.1 connection to keep.
                if head.status == http::StatusCode::SWITCHING_PROTOCOLS || !worth_draining(&head.body) {
                    return None;
                }
                head.body
            }
        };
        let mut left = DISCARD_MAX;
        loop {
            match std::future::poll_fn(|cx| connection.conn.poll_body(cx, &mut reader, &mut no_upload)).await {
                Some(Ok(data)) => left = left.checked_sub(data.len() as u64)?,
                Some(Err(_)) => return None,
                None => return Some(reader),
            }
        }
    };
    if let Ok(Some(reader)) = tokio::time::timeout(DISCARD_TIME, read).await
        && reader.is_reusable()
    {
        room.pool().release(connection);
    }
}

/// An upstream response body on its way to the client (and the request body
/// still on its way up, if the server answered before it was all sent).
pub struct UpstreamBody {
    reader: BodyReader,
    upload: Option<Upload>,
    idle_timeout: Duration,
    /// Made on the first wait (none when the body is there at once) and reset
    /// once per wait rather than once per frame: the timer's upkeep was a
    /// measurable part of a small request's cost.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether `timer` counts from the latest frame (else it is reset before use).
    timer_armed: bool,
    sent: u64,
    /// Set when gzip compresses this body on its way: then the line, which
    /// logs the bytes the client got, waits for the compressed count, given
    /// here as the gzip body ends ([`UpstreamBody::compressed_to`]).
    compressed: Option<u64>,
    /// The pool and connection to give back once the body has been read whole.
    pool: Arc<Pool>,
    connection: Option<Connection>,
    exchange: Option<Exchange>,
}

impl UpstreamBody {
    /// Streams the body `reader` reads from `connection`, failing after
    /// `idle_timeout` without a frame; then returns `connection` to `pool`
    /// and logs `exchange`.
    pub fn new(
        reader: BodyReader,
        upload: Option<Upload>,
        idle_timeout: Duration,
        pool: Arc<Pool>,
        connection: Connection,
        mut exchange: Exchange,
    ) -> UpstreamBody {
        exchange.upstream_answered();
        UpstreamBody {
            reader,
            upload,
            idle_timeout,
            timer: None,
            timer_armed: false,
            sent: 0,
            compressed: None,
            pool,
            connection: Some(connection),
            exchange: Some(exchange),
        }
    }

    /// Notes that gzip compresses this body: its line waits for the count.
    pub fn compressed(&mut self) {
        self.compressed = Some(0);
    }

    /// The compressed bytes the client got, from gzip as it ends.
    pub fn compressed_to(&mut self, bytes: u64) {
        self.compressed = Some(bytes);
    }

    /// The client went away before the end of the answer: if the rest is
    /// small, it is read on (`drain`) and the connection kept.
    fn drain_rest(&mut self) {
        if !worth_draining(&self.reader) || self.upload.is_some() {
            return;
        }
        let Some(connection) = self.take_connection() else { return };
        let reader = std::mem::replace(&mut self.reader, BodyReader::Done { reusable: false });
        drain(connection, Unread::Body(reader), &self.pool);
    }

    /// The connection, taken to give back or to close, with what it carried
    /// for this request noted for the log.
    fn take_connection(&mut self) -> Option<Connection> {
        let connection = self.connection.take()?;
        if let Some(exchange) = &mut self.exchange {
            exchange.upstream_traffic(&connection.conn);
        }
        Some(connection)
    }

    fn finish(&mut self, complete: bool) {
        // Reused only when both messages went whole: the server may have
        // answered before the request body was all sent.
        let upload = self.upload.take();
        if let Some(connection) = self.take_connection()
            && complete
            && self.reader.is_reusable()
            && upload.is_none()
        {
            self.pool.release(connection);
        }
        // h2 ends the request's stream by itself when its body is dropped.
        if complete
            && self.exchange.as_ref().is_some_and(|e| e.version() == Version::HTTP_11)
            && let Some(rest) = upload.and_then(Upload::into_unread)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(discard(rest));
        }
        // A compressed body is logged when gzip is done with it (on drop).
        if self.compressed.is_none()
            && let Some(exchange) = self.exchange.take()
        {
            exchange.finish_streamed(self.sent, None, complete);
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // hyper may drop a body as soon as it reports its end, without polling
        // for the final `None`: that is still a whole body. Otherwise the client
        // went away first: the line is logged, and the connection closes unless
        // the rest of the answer is small enough to read on (`drain_rest`).
        let complete = self.reader.is_end();
        if !complete {
            if let Some(exchange) = &self.exchange {
                exchange.error(
                    crate::config::runtime::LogLevel::Info,
                    format_args!("client closed the connection while the response was sent ({} bytes sent)", self.sent),
                );
            }
            self.drain_rest();
        }
        self.finish(complete);
        if let Some(exchange) = self.exchange.take() {
            exchange.finish_streamed(self.sent, self.compressed, complete);
        }
    }
}

/// An upstream body that stalled for longer than `read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing for {0:?} (read_timeout)")]
pub struct IdleTimeout(Duration);

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Answer(answer) => Poll::Ready(answer.bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Gzip(body) => body.poll_frame(cx),
            ResponseBody::Upstream(body) => {
                let body = &mut **body;
                let Some(connection) = body.connection.as_mut() else { return Poll::Ready(None) };
                match connection.conn.poll_body(cx, &mut body.reader, &mut body.upload) {
                    Poll::Ready(Some(Ok(data))) => {
                        body.sent += data.len() as u64;
                        body.timer_armed = false;
                        if body.reader.is_end() && body.upload.is_none() {
                            // Given back now, not when hyper next asks: the
                            // next request on this connection may want it.
                            body.finish(true);
                        }
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        if let Some(exchange) = &body.exchange {
                            exchange.upstream_error(format_args!("upstream response body failed: {e}"));
                        }
                        body.finish(false);
                        Poll::Ready(Some(Err(e.into())))
                    }
                    Poll::Ready(None) => {
                        body.finish(true);
                        Poll::Ready(None)
                    }
                    Poll::Pending => {
                        // The wait counts from now: the frame before it was
                        // passed on just now, or the response head was.
                        let deadline = tokio::time::Instant::now() + body.idle_timeout;
                        let timer = body.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                        if !body.timer_armed {
                            timer.as_mut().reset(deadline);
                            body.timer_armed = true;
                        }
                        if timer.as_mut().poll(cx).is_ready() {
                            let error = IdleTimeout(body.idle_timeout);
                            if let Some(exchange) = &body.exchange {
                                exchange.upstream_error(format_args!("{error}"));
                            }
                            body.finish(false);
                            return Poll::Ready(Some(Err(error.into())));
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Answer(answer) => answer.bytes.is_none(),
            ResponseBody::Upstream(body) => body.reader.is_end(),
            ResponseBody::Gzip(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Answer(answer) => SizeHint::with_exact(answer.bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Upstream(body) => match body.reader.remaining() {
                Some(remaining) => SizeHint::with_exact(remaining),
                None => SizeHint::default(),
            },
            ResponseBody::Gzip(body) => body.size_hint(),
        }
    }
}

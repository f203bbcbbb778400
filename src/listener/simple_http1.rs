//! portico's own HTTP/1.1 server loop for the requests most traffic is made
//! of: HTTP/1.1, no body, no upgrade, no `Expect` or `TE`. It reads and
//! parses their heads (httparse, the parser hyper uses), calls the same
//! service, and writes the answers as hyper would, minus hyper's dispatcher,
//! its write buffer and its per-request buffer churn: 0.88x of the user CPU
//! of a plain request (docs/performance-log.md, steps 31 and 34).
//!
//! Anything else goes to hyper, which keeps the connection until it parks: a
//! request with a body or framing headers (Content-Length, Transfer-Encoding:
//! request smuggling is hyper's and the framing tracker's to refuse), an
//! upgrade or CONNECT, `Expect` or `TE`, HTTP/1.0, a head over [`MAX_HEAD`] or
//! over [`MAX_HEADERS`] fields, and whatever httparse or `http` refuses (hyper
//! answers it with its own 400). The bytes already read go back to the
//! connection's I/O and hyper reads them first, so hyper sees the request as
//! the client sent it.

use std::io::{IoSlice, Write as _};
use std::mem::MaybeUninit;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::proxy::forwarded::names_token;

use super::{
    CLOSE_WITHIN, Connection, DrainWatch, Found, Guarded, HeadClock, PARK_AFTER, PeriodicCheck, ServeError, ServedBody,
    Shared, Socket, idle_or_slow_head, linger,
};

/// The longest request head the loop reads. Longer ones go to hyper, whose
/// buffer is larger: portico refuses lines over 8 KiB (414, 431) either way.
pub const MAX_HEAD: usize = 16 * 1024;

/// The most header fields the loop parses: hyper's limit, so a head with more
/// is refused by hyper as it always was.
const MAX_HEADERS: usize = 100;

/// A data frame under this size is copied behind the response head (one
/// piece for a small answer); a larger one is sent from where it is.
const COPY_UNDER: usize = 4 * 1024;

/// Read buffer reserve: hyper's initial size.
const READ_CHUNK: usize = 8 * 1024;

/// Why the loop stopped serving the connection.
pub(super) enum Ended {
    /// The connection is over: the client closed it, it failed, it asked to
    /// close, or the drain began.
    Closed(Result<(), ServeError>),
    /// Idle for a check period with nothing read or in flight: park it.
    Idle,
    /// The next request is hyper's: its bytes are in the I/O's carry.
    Hyper,
}

/// Serves requests from `io` while they are simple ones, until the connection
/// ends, goes idle, or hyper is needed. Its buffers live only while it runs.
pub(super) async fn serve<T>(
    shared: &Shared,
    io: &mut Guarded<T>,
    conn: &Arc<Connection>,
    drain: &mut watch::Receiver<bool>,
) -> Ended
where
    T: AsyncRead + AsyncWrite + Socket + Unpin,
{
    let activity = &conn.activity;
    let mut read = BytesMut::new();
    let mut write = Outgoing::default();
    // The last answer's header map, emptied, for the next request's headers
    // (as hyper keeps it): its room is already there.
    let mut spare = HeaderMap::new();
    let began = drain.clone();
    let wait = pin!(drain.wait_for(|draining| *draining));
    let mut drained = DrainWatch::new(began, wait);
    let mut draining = false;
    let timer = pin!(tokio::time::sleep(PARK_AFTER));
    let mut check = PeriodicCheck::new(timer, PARK_AFTER);
    let mut head = HeadClock::new(shared.idle_limit);
    loop {
        let (request, client_close) = match parse(&mut read, &mut spare) {
            Parsed::Simple(request, close) => (request, close),
            Parsed::Hyper => {
                io.carry = read.split().freeze();
                return Ended::Hyper;
            }
            Parsed::Partial => {
                let waited = std::future::poll_fn(|cx| {
                    if let Poll::Ready(read) = poll_fill(io, &mut read, cx) {
                        return Poll::Ready(Waited::Read(read));
                    }
                    if !draining && drained.poll_began(cx) {
                        draining = true;
                        return Poll::Ready(Waited::Draining);
                    }
                    // Idle only with nothing read: a head begun is timed.
                    let found = check.poll_check(cx, || {
                        if read.is_empty() {
                            idle_or_slow_head(activity, &mut head)
                        } else {
                            head.overdue(activity).then_some(Found::SlowHead)
                        }
                    });
                    found.map(Waited::Check)
                })
                .await;
                match waited {
                    Waited::Read(Ok(1..)) => continue,
                    // The client closed between requests (`parse` has taken
                    // out any blank lines); halfway through a head, hyper
                    // reports it as it always has.
                    Waited::Read(Ok(0)) if read.is_empty() => {
                        return Ended::Closed(Ok(()));
                    }
                    Waited::Read(Ok(_)) => {
                        io.carry = read.split().freeze();
                        return Ended::Hyper;
                    }
                    Waited::Read(Err(e)) => return Ended::Closed(Err(ServeError::Io(e))),
                    Waited::Draining => {
                        let _ = tokio::time::timeout(CLOSE_WITHIN, io.shutdown()).await;
                        return Ended::Closed(Ok(()));
                    }
                    Waited::Check(Found::Idle) => return Ended::Idle,
                    Waited::Check(Found::SlowHead) => {
                        return Ended::Closed(Err(ServeError::HeadTimeout(shared.idle_limit)));
                    }
                }
            }
        };
        let head_request = request.method() == Method::HEAD;
        let response = {
            let mut serving = pin!(conn.clone().serve(request));
            // While it is served, a read notices a client that goes (its
            // request is then dropped: logged as 499, its upstream request
            // cancelled), as hyper's does: only with nothing pipelined read.
            std::future::poll_fn(|cx| {
                if let Poll::Ready(response) = serving.as_mut().poll(cx) {
                    return Poll::Ready(Some(response));
                }
                if read.is_empty()
                    && let Poll::Ready(Ok(0) | Err(_)) = poll_fill(io, &mut read, cx)
                {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await
        };
        let response = match response {
            Some(Ok(response)) => response,
            Some(Err(e)) => return Ended::Closed(Err(ServeError::Http(e))),
            None => return Ended::Closed(Ok(())),
        };
        draining = draining || drained.has_begun();
        let closing = client_close || draining;
        match write_response(io, &mut write, &mut spare, response, head_request, closing).await {
            Ok(false) => {}
            Ok(true) => {
                let _ = io.shutdown().await;
                drop((read, write));
                // Boxed, as in `serve_http1`: made only at a close.
                Box::pin(linger(io.io.tcp())).await;
                return Ended::Closed(Ok(()));
            }
            Err(e) => return Ended::Closed(Err(e)),
        }
    }
}

/// What the wait for more of a request head ended with.
enum Waited {
    Read(std::io::Result<usize>),
    Draining,
    Check(Found),
}

/// Reads more into `read`; `Ok(0)` at the end of the stream.
fn poll_fill<T: AsyncRead + Unpin>(
    io: &mut Guarded<T>,
    read: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if read.capacity() - read.len() < READ_CHUNK / 4 {
        read.reserve(READ_CHUNK);
    }
    pin!(io.read_buf(read)).poll(cx)
}

/// What the front of the read buffer holds.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "taken apart at once; a box would be an allocation per request")]
pub enum Parsed {
    /// A request the loop serves, and whether its client asked to close after it.
    Simple(Request<Option<Incoming>>, bool),
    /// Not a whole head yet.
    Partial,
    /// A request for hyper, or bytes it refuses.
    Hyper,
}

/// Parses the request head at the front of `read`, taking it out when the
/// loop serves it and leaving `read` whole otherwise. The request's headers
/// go into `spare`, a map kept from the last answer for its room.
pub fn parse(read: &mut BytesMut, spare: &mut HeaderMap) -> Parsed {
    // Empty lines before a request line are skipped (RFC 9112 section 2.2),
    // as hyper skips them.
    let blank = read.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    read.advance(blank);
    if read.is_empty() {
        return Parsed::Partial;
    }
    if !has_head_end(read) {
        return if read.len() < MAX_HEAD { Parsed::Partial } else { Parsed::Hyper };
    }
    // Parsed as shared bytes, so that the target and the values are slices
    // of them rather than copies; what follows the head goes back.
    let bytes = read.split().freeze();
    let parsed = request(&bytes, spare);
    match parsed {
        Ok((request, close, len)) => {
            read.extend_from_slice(&bytes[len..]);
            Parsed::Simple(request, close)
        }
        Err(partial) => {
            // Put back as it came (rare, so a copy): more is to come, or hyper serves it.
            read.extend_from_slice(&bytes);
            if partial && read.len() < MAX_HEAD { Parsed::Partial } else { Parsed::Hyper }
        }
    }
}

/// Whether `bytes` hold a line end followed by an empty line: a whole head
/// for httparse, which takes bare LF line ends as well.
fn has_head_end(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', bytes).any(|at| matches!(bytes.get(at + 1..), Some([b'\n', ..] | [b'\r', b'\n', ..])))
}

/// The request whose head `bytes` begin with, whether its client asked to
/// close after it, and the head's length. `Err(true)`: the head is not whole;
/// `Err(false)`: it is not one the loop serves.
fn request(bytes: &Bytes, spare: &mut HeaderMap) -> Result<(Request<Option<Incoming>>, bool, usize), bool> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut parsed, bytes, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) => return Err(true),
        _ => return Err(false),
    };
    let (Some(1), Some(method), Some(target)) = (parsed.version, parsed.method, parsed.path) else {
        return Err(false);
    };
    let method = match Method::from_bytes(method.as_bytes()) {
        Ok(method) if method != Method::CONNECT => method,
        _ => return Err(false),
    };
    let uri = Uri::from_maybe_shared(bytes.slice_ref(target.as_bytes())).map_err(|_| false)?;
    let Some(close) = fill(spare, parsed.headers, bytes) else {
        spare.clear();
        return Err(false);
    };
    let mut request = Request::new(None);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = std::mem::take(spare);
    Ok((request, close, len))
}

/// Puts the head's `fields` into `headers`; whether they ask to close after
/// the answer. `None` for a field the loop leaves to hyper or `http` refuses.
fn fill(headers: &mut HeaderMap, fields: &[httparse::Header<'_>], bytes: &Bytes) -> Option<bool> {
    let mut close = false;
    headers.reserve(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        if is_for_hyper(&name) {
            return None;
        }
        let value = HeaderValue::from_maybe_shared(bytes.slice_ref(field.value)).ok()?;
        if name == header::CONNECTION {
            close |= names_token(&value, "close");
        }
        headers.append(name, value);
    }
    Some(close)
}

/// Headers that make a request hyper's: a body's framing (and with it the
/// smuggling checks), an interim answer, a protocol switch, trailers.
fn is_for_hyper(name: &HeaderName) -> bool {
    [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::EXPECT, header::UPGRADE, header::TE].contains(name)
}

/// Writes `response` as hyper's HTTP/1.1 server would to a request without a
/// body: status line, its headers with lower-case names, the framing its body
/// declares (Content-Length for a known size, else chunked), `date` unless it
/// has one, then the body. `closing`: the connection closes after it, which
/// the answer says (`connection: close`) as hyper's does. The emptied header
/// map is left in `spare`. Returns whether the connection closes.
async fn write_response<T: AsyncWrite + Unpin>(
    io: &mut Guarded<T>,
    out: &mut Outgoing,
    spare: &mut HeaderMap,
    response: Response<ServedBody>,
    head_request: bool,
    closing: bool,
) -> Result<bool, ServeError> {
    let (parts, body) = response.into_parts();
    let status = parts.status;
    out.clear();
    if status == StatusCode::OK {
        out.push(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.push(b"HTTP/1.1 ");
        out.push(status.as_str().as_bytes());
        out.push(b" ");
        // A reason must be written: many parsers expect one.
        out.push(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.push(b"\r\n");
    }
    let (mut close, mut dated, mut length_given) = (false, false, false);
    for (name, value) in &parts.headers {
        match *name {
            // A HEAD answer's length is the upstream's, passed on as given.
            header::CONTENT_LENGTH if head_request => length_given = true,
            // Otherwise the body's size decides the framing, written below
            // (portico's bodies carry the upstream's length as their size).
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING => continue,
            header::CONNECTION => close |= names_token(value, "close"),
            header::DATE => dated = true,
            _ => {}
        }
        out.push(name.as_str().as_bytes());
        out.push(b": ");
        out.push(value.as_bytes());
        out.push(b"\r\n");
    }
    *spare = parts.headers;
    spare.clear();
    if closing && !close {
        out.push(b"connection: close\r\n");
        close = true;
    }
    // hyper's rules (`Server::can_have_body` and friends).
    let no_length = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let bodyless = no_length || head_request;
    let mut left = body.size_hint().exact();
    match left {
        _ if length_given => {}
        Some(0) if !bodyless => out.push(b"content-length: 0\r\n"),
        Some(len @ 1..) if !no_length => {
            out.push(b"content-length: ");
            push_number(&mut out.copied, len, 10);
            out.push(b"\r\n");
        }
        None if !bodyless => out.push(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if !dated {
        out.push(b"date: ");
        push_date(&mut out.copied);
        out.push(b"\r\n");
    }
    out.push(b"\r\n");
    if bodyless || body.is_end_stream() {
        drop(body);
        out.send(io).await?;
        return Ok(close);
    }
    let chunked = left.is_none();
    let mut body = pin!(body);
    while !body.is_end_stream() {
        let frame = match std::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Nothing more yet: what is ready goes out while it comes.
                out.send(io).await?;
                std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(ServeError::Body(e)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                // Trailers are not sent: hyper sends them only to a client
                // that asked (`TE: trailers`), which the loop leaves to hyper.
                _ => continue,
            },
        };
        if let Some(left) = left.as_mut() {
            *left = left.checked_sub(data.len() as u64).ok_or(ServeError::BodyLength)?;
        } else {
            push_number(&mut out.copied, data.len() as u64, 16);
            out.push(b"\r\n");
        }
        out.push_frame(data);
        if chunked {
            out.push(b"\r\n");
        }
        if out.is_full() {
            out.send(io).await?;
        }
    }
    match left {
        Some(0) => {}
        Some(_) => return Err(ServeError::BodyLength),
        None => out.push(b"0\r\n\r\n"),
    }
    out.send(io).await?;
    Ok(close)
}

/// An answer's bytes on their way out: the head, chunk lines and small frames
/// copied in order, larger frames queued as they are, each at its place
/// among the copied bytes, all sent in one vectored write where the I/O
/// takes them so (as hyper's write queue does).
#[derive(Default)]
struct Outgoing {
    copied: Vec<u8>,
    /// Frames not copied, each with the length `copied` had when it came.
    frames: Vec<(usize, Bytes)>,
    /// Bytes in `frames`.
    queued: usize,
}

impl Outgoing {
    /// Frames queued before a send, at most.
    const MAX_FRAMES: usize = 16;
    /// Bytes held before a send, at most (about hyper's).
    const MAX_BYTES: usize = 64 * 1024;

    /// Copies `bytes` in, after everything held.
    fn push(&mut self, bytes: &[u8]) {
        self.copied.extend_from_slice(bytes);
    }

    /// Drops everything held.
    fn clear(&mut self) {
        self.copied.clear();
        self.frames.clear();
        self.queued = 0;
    }

    fn push_frame(&mut self, data: Bytes) {
        if data.len() < COPY_UNDER {
            self.copied.extend_from_slice(&data);
        } else {
            self.queued += data.len();
            self.frames.push((self.copied.len(), data));
        }
    }

    fn is_full(&self) -> bool {
        self.frames.len() >= Self::MAX_FRAMES || self.copied.len() + self.queued >= Self::MAX_BYTES
    }

    /// Writes everything held, in order, and flushes; empty afterwards.
    async fn send<T: AsyncWrite + Unpin>(&mut self, io: &mut T) -> std::io::Result<()> {
        let mut written = 0;
        loop {
            let mut slices = [IoSlice::new(&[]); 2 * Self::MAX_FRAMES + 1];
            let count = self.slices_from(written, &mut slices);
            if count == 0 {
                break;
            }
            let n = io.write_vectored(&slices[..count]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            written += n;
        }
        self.clear();
        io.flush().await
    }

    /// Fills `slices` with what is left after the first `skip` bytes, in
    /// order; returns how many it filled.
    fn slices_from<'a>(&'a self, mut skip: usize, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        let mut from = 0;
        let ends = self.frames.iter().map(|(until, frame)| (*until, &frame[..]));
        for (until, frame) in ends.chain(std::iter::once((self.copied.len(), &[][..]))) {
            let copied = &self.copied[from..until];
            from = until;
            for piece in [copied, frame] {
                if skip >= piece.len() {
                    skip -= piece.len();
                    continue;
                }
                let Some(slot) = slices.get_mut(count) else { return count };
                *slot = IoSlice::new(&piece[skip..]);
                skip = 0;
                count += 1;
            }
        }
        count
    }
}

/// Appends `n` in `radix` (10 or 16, upper-case digits), without the
/// formatting machinery: it runs for most answers.
fn push_number(out: &mut Vec<u8>, mut n: u64, radix: u64) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = DIGITS[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends the current time as an HTTP date, formatted once a second per
/// thread (as hyper caches it).
fn push_date(out: &mut Vec<u8>) {
    /// "Sun, 06 Nov 1994 08:49:37 GMT".len()
    const LEN: usize = 29;
    /// 9999-12-31T23:59:59Z: HTTP dates have four-digit years.
    const LAST: u64 = 253_402_300_799;
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, [u8; LEN])> = const { std::cell::RefCell::new((u64::MAX, [0; LEN])) };
    }
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).min(LAST);
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != secs {
            let date = httpdate::HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs));
            if write!(&mut text[..], "{date}").is_ok() {
                *at = secs;
            }
        }
        out.extend_from_slice(text);
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parsed(bytes: &[u8]) -> (Parsed, BytesMut) {
        let mut read = BytesMut::from(bytes);
        let mut spare = HeaderMap::new();
        let parsed = parse(&mut read, &mut spare);
        assert!(spare.is_empty(), "the spare map is taken or left empty");
        (parsed, read)
    }

    #[test]
    fn a_plain_get_is_served_here_and_taken_out_of_the_buffer() {
        let (parsed, rest) =
            parsed(b"\r\nGET /a?b=1 HTTP/1.1\r\nHost: a.test\r\nX-Many: 1\r\nx-many: 2\r\n\r\nGET /next");
        let Parsed::Simple(request, close) = parsed else { panic!("{parsed:?}") };
        assert!(!close);
        assert_eq!((request.method(), request.uri().to_string().as_str()), (&Method::GET, "/a?b=1"));
        assert_eq!(request.version(), http::Version::HTTP_11);
        assert_eq!(request.headers()["host"], "a.test");
        assert_eq!(request.headers().get_all("x-many").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(&rest[..], b"GET /next", "the pipelined bytes stay");
    }

    #[test]
    fn connection_close_is_noted_in_any_case_and_list_position() {
        for value in ["close", "Keep-Alive, CLOSE", " close ,foo"] {
            let head = format!("GET / HTTP/1.1\r\nConnection: {value}\r\n\r\n");
            let (parsed, _) = parsed(head.as_bytes());
            assert!(matches!(parsed, Parsed::Simple(_, true)), "{value}: {parsed:?}");
        }
        let (parsed, _) = parsed(b"GET / HTTP/1.1\r\nConnection: keep-alive, closed\r\n\r\n");
        assert!(matches!(parsed, Parsed::Simple(_, false)), "{parsed:?}");
    }

    #[test]
    fn a_connection_value_with_bytes_outside_visible_ascii_names_nothing_as_in_hyper() {
        // Found by fuzz/fuzz_targets/client_request.rs, whose first oracle
        // expected `close`: hyper reads such a value as naming no option, and
        // the loop must close exactly when hyper's path would.
        let (parsed, _) = parsed(b"GET / HTTP/1.1\r\nConnection: k\x9b\x9ae, close\r\n\r\n");
        assert!(matches!(parsed, Parsed::Simple(_, false)), "{parsed:?}");
    }

    #[test]
    fn a_partial_head_waits_and_a_long_one_is_hyper_s() {
        assert!(matches!(parsed(b"GET / HTTP/1.1\r\nHost: a").0, Parsed::Partial));
        assert!(matches!(parsed(b"\r\n\r\n").0, Parsed::Partial));
        let long = format!("GET / HTTP/1.1\r\nX-Long: {}", "a".repeat(MAX_HEAD));
        assert!(matches!(parsed(long.as_bytes()).0, Parsed::Hyper));
        let whole = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(parsed(whole.as_bytes()).0, Parsed::Hyper));
    }

    #[test]
    fn requests_it_does_not_serve_are_left_whole_for_hyper() {
        let heads: [&[u8]; 12] = [
            b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.1\r\nTE: trailers\r\n\r\n",
            b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
            b"GET http://[::1 HTTP/1.1\r\n\r\n",
        ];
        for head in heads {
            let (parsed, rest) = parsed(head);
            assert!(matches!(parsed, Parsed::Hyper), "{:?}: {parsed:?}", String::from_utf8_lossy(head));
            assert_eq!(&rest[..], head, "left whole");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(parsed(head.as_bytes()).0, Parsed::Hyper), "more fields than hyper takes");
    }

    #[test]
    fn numbers_are_written_in_decimal_and_hex() {
        for (n, radix, text) in [(0, 10, "0"), (1234, 10, "1234"), (u64::MAX, 10, "18446744073709551615")] {
            let mut out = b"x".to_vec();
            push_number(&mut out, n, radix);
            assert_eq!(out, format!("x{text}").as_bytes());
        }
        for n in [0, 9, 10, 255, 4096, u64::MAX] {
            let mut out = Vec::new();
            push_number(&mut out, n, 16);
            assert_eq!(out, format!("{n:X}").as_bytes());
        }
    }

    #[test]
    fn outgoing_bytes_keep_their_order_from_any_point() {
        let big = |fill: u8| Bytes::from(vec![fill; COPY_UNDER]);
        let mut out = Outgoing::default();
        out.push(b"head;");
        out.push_frame(big(b'a'));
        out.push_frame(Bytes::from_static(b"small;"));
        out.push_frame(big(b'b'));
        out.push_frame(big(b'c'));
        out.push(b"tail");
        let mut expected = b"head;".to_vec();
        expected.extend_from_slice(&big(b'a'));
        expected.extend_from_slice(b"small;");
        expected.extend_from_slice(&big(b'b'));
        expected.extend_from_slice(&big(b'c'));
        expected.extend_from_slice(b"tail");
        assert_eq!((out.frames.len(), out.queued), (3, 3 * COPY_UNDER), "large frames are not copied");
        // Every piece's first, second and last byte, and points between.
        let mut ends = vec![0];
        for piece in [5, COPY_UNDER, 6, COPY_UNDER, COPY_UNDER, 4] {
            ends.push(ends[ends.len() - 1] + piece);
        }
        let edges = ends.iter().flat_map(|&end| [end.saturating_sub(1), end, end + 1]);
        for skip in (0..expected.len()).step_by(97).chain(edges).filter(|&skip| skip <= expected.len()) {
            let mut slices = [IoSlice::new(&[]); 2 * Outgoing::MAX_FRAMES + 1];
            let count = out.slices_from(skip, &mut slices);
            let joined: Vec<u8> = slices[..count].iter().flat_map(|s| s.to_vec()).collect();
            assert_eq!(joined, expected[skip..], "from byte {skip}");
            assert!(slices[..count].iter().all(|s| !s.is_empty()));
        }
        // Fewer slots than pieces: the first ones, the rest for the next write.
        let mut slices = [IoSlice::new(&[]); 2];
        assert_eq!(out.slices_from(0, &mut slices), 2);
        assert_eq!((&slices[0][..], slices[1].len()), (&b"head;"[..], COPY_UNDER));
    }

    #[tokio::test]
    async fn outgoing_sends_everything_through_short_writes() {
        let mut out = Outgoing::default();
        out.push(b"head;");
        out.push_frame(Bytes::from(vec![b'x'; 3 * COPY_UNDER]));
        out.push(b"tail");
        // A pipe that takes at most 1000 bytes at a time.
        let (mut ours, mut theirs) = tokio::io::duplex(1000);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut theirs, &mut got).await.unwrap();
            got
        });
        out.send(&mut ours).await.unwrap();
        assert!(out.copied.is_empty() && out.frames.is_empty() && out.queued == 0, "empty after a send");
        drop(ours);
        let mut expected = b"head;".to_vec();
        expected.extend_from_slice(&[b'x'; 3 * COPY_UNDER]);
        expected.extend_from_slice(b"tail");
        assert_eq!(reader.await.unwrap(), expected);
    }

    #[test]
    fn dates_are_http_dates_of_now() {
        let mut out = Vec::new();
        push_date(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let date = httpdate::parse_http_date(text).unwrap();
        let off = SystemTime::now().duration_since(date).unwrap();
        assert!(off < Duration::from_secs(2), "{text}");
    }
}

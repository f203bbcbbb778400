//! HTTP/1.1 toward upstream servers: writes a request head and streams its
//! body, reads the response head and body, and says whether the connection
//! may carry another request.
//!
//! Driven from the request's own task: no connection task and no channels
//! between it and the socket, which is what hyper's client cost per request
//! (a third of a plain request's instructions, performance-log steps 22 and
//! 29). The rules follow RFC 9112 section 6 and, where it leaves room, nginx.

use std::future::Future;
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body::Body;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::proxy::body::{BoxError, RequestBody};

/// The most a response head may take (status line and headers; each
/// interim response's head is held to it on its own). nginx's
/// `proxy_buffer_size` is 4 or 8 KiB; Java servers with many cookies go past
/// that, hyper allowed about 400 KiB.
pub const MAX_HEAD: usize = 64 * 1024 - 1;

/// Response header lines accepted (hyper's limit).
const MAX_HEADERS: usize = 100;

/// The most a chunk-size line (with extensions) or one trailer line may take.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;

/// What went wrong talking to an upstream server.
#[derive(Debug, Error)]
pub enum Error {
    #[error("upstream closed the connection before answering")]
    ClosedBeforeAnswer,
    #[error("upstream closed the connection in the middle of the response head")]
    ClosedInHead,
    #[error("upstream closed the connection before the end of the response body")]
    Truncated,
    #[error("upstream sent an invalid response: {0}")]
    Invalid(&'static str),
    #[error("upstream sent a response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("upstream connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("client request body failed: {0}")]
    ClientBody(#[source] BoxError),
}

/// A connection to an upstream server, plain or TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    // Boxed: rustls's state is large, and most connections in most setups are plain.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// A connection and the bytes read from it but not yet used.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    read: BytesMut,
    /// Boxed, once per connection: a connection moves between the pool, the
    /// request and its body several times per request, and past 128 bytes
    /// each move is a `memcpy` call (performance-log step 44).
    state: Box<ConnState>,
}

#[derive(Debug, Default)]
struct ConnState {
    /// The request head being written; kept for the next request's head.
    write: Vec<u8>,
    /// A write failed or an upload was cut short: the server and portico no
    /// longer agree where one message ends, so the connection is not reused.
    broken: bool,
    /// A request head is out and its answer's head is not yet in: the
    /// answer can still be waited for without the request (see `awaits_head`).
    awaiting_head: bool,
    traffic: Traffic,
}

/// The bytes of HTTP written to and read from a connection over its life
/// (inside TLS, as nginx's `$upstream_bytes_sent` and `_received` count
/// them): heads, bodies and chunk framing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
}

impl Traffic {
    /// What moved since `before`, an earlier reading of the same connection.
    pub fn since(self, before: Traffic) -> Traffic {
        Traffic { sent: self.sent.saturating_sub(before.sent), received: self.received.saturating_sub(before.received) }
    }
}

impl Conn {
    pub fn new(stream: Stream) -> Conn {
        Conn { stream, read: BytesMut::new(), state: Box::default() }
    }

    /// The socket and what was read past the response head (a protocol
    /// switch's first bytes).
    pub fn into_parts(self) -> (Stream, Bytes) {
        (self.stream, self.read.freeze())
    }

    /// Whether the connection, idle in a pool, is still fit for a request:
    /// the server has neither closed it nor sent anything unasked. Looks at
    /// what the socket has now, without waiting.
    pub fn is_idle_and_open(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Anything read (a close, bytes, an error) makes the connection unfit.
        matches!(self.poll_fill(&mut cx), Poll::Pending)
    }

    /// Whether a request head was sent whole and no answer head has been
    /// read since: a wait for the answer left midway can go on from where it
    /// stopped (what came of the head so far is kept in the read buffer).
    pub fn awaits_head(&self) -> bool {
        self.state.awaiting_head && !self.state.broken
    }

    /// The bytes this connection has carried so far.
    pub fn traffic(&self) -> Traffic {
        self.state.traffic
    }

    /// Reads more into `read`; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 4 {
            self.read.reserve(READ_CHUNK);
        }
        let read = ready!(std::pin::pin!(self.stream.read_buf(&mut self.read)).poll(cx));
        if let Ok(n) = read {
            self.state.traffic.received += n as u64;
        }
        Poll::Ready(read)
    }

    /// Writes the request head for `method` `target` with the header
    /// `fields`, its body sent as `framing` says (see [`framing`]). Nothing of
    /// the body is sent yet.
    pub async fn send_head<'h>(
        &mut self,
        method: &Method,
        target: &str,
        fields: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
        framing: Framing,
    ) -> Result<(), Error> {
        // Until all of this head is out, there is no answer to wait for.
        self.state.awaiting_head = false;
        let mut out = std::mem::take(&mut self.state.write);
        out.clear();
        encode_head(&mut out, method, target, fields, framing);
        let written = write_all(&mut self.stream, &out).await;
        self.state.write = out;
        match written {
            Ok(()) => {
                self.state.traffic.sent += self.state.write.len() as u64;
                self.state.awaiting_head = true;
                Ok(())
            }
            Err(e) => {
                self.state.broken = true;
                // A kept-alive connection the server had closed.
                Err(if is_closed(&e) { Error::ClosedBeforeAnswer } else { e.into() })
            }
        }
    }

    /// Waits for the response head, uploading `upload` meanwhile; interim
    /// (1xx) responses other than 101 are skipped. `head_request`: the
    /// request was HEAD, so the response has no body whatever it says.
    pub fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        upload: &mut Option<Upload>,
        head_request: bool,
    ) -> Poll<Result<ResponseHead, Error>> {
        self.poll_upload(upload, cx)?;
        loop {
            if let Some(head) = parse_head(&mut self.read, head_request)? {
                self.state.awaiting_head = false;
                return Poll::Ready(Ok(head));
            }
            if self.read.len() >= MAX_HEAD {
                return Poll::Ready(Err(Error::HeadTooLarge));
            }
            let before = self.read.len();
            match ready!(self.poll_fill(cx)) {
                Ok(0) if before == 0 => return Poll::Ready(Err(Error::ClosedBeforeAnswer)),
                Ok(0) => return Poll::Ready(Err(Error::ClosedInHead)),
                Ok(_) => {}
                // A reset before any byte of the answer is the same as a close.
                Err(e) if before == 0 && is_closed(&e) => return Poll::Ready(Err(Error::ClosedBeforeAnswer)),
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    /// The next piece of the response body, uploading `upload` meanwhile.
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut BodyReader,
        upload: &mut Option<Upload>,
    ) -> Poll<Option<Result<Bytes, Error>>> {
        if let Err(e) = self.poll_upload(upload, cx) {
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            match body.take(&mut self.read) {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) if body.is_end() => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => match body {
                    BodyReader::Close => {
                        *body = BodyReader::Done { reusable: false };
                        return Poll::Ready(None);
                    }
                    _ => return Poll::Ready(Some(Err(Error::Truncated))),
                },
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
        }
    }

    /// Whether the connection can carry another request: nothing is left
    /// over from the last response and nothing went wrong on the way up.
    pub fn is_clean(&self) -> bool {
        self.read.is_empty() && !self.state.broken
    }

    /// Moves `upload` along as far as it goes without waiting; `None` once
    /// it is all written. A server that stops taking the body (it answered
    /// early, or closed) ends the upload silently: its answer, or the read
    /// side's error, says what happened. The client's side of the body
    /// failing is an error.
    fn poll_upload(&mut self, upload: &mut Option<Upload>, cx: &mut Context<'_>) -> Result<(), Error> {
        let Some(up) = upload else { return Ok(()) };
        let (stream, traffic) = (&mut self.stream, &mut self.state.traffic);
        loop {
            while up.pending.iter().any(|part| !part.is_empty()) {
                let [line, data, end] = &up.pending;
                let slices = [io::IoSlice::new(line), io::IoSlice::new(data), io::IoSlice::new(end)];
                match Pin::new(&mut *stream).poll_write_vectored(cx, &slices) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        traffic.sent += n as u64;
                        let mut n = n;
                        for part in &mut up.pending {
                            let k = n.min(part.len());
                            part.advance(k);
                            n -= k;
                        }
                    }
                    Poll::Ready(_) => {
                        self.state.broken = true;
                        *upload = None;
                        return Ok(());
                    }
                    Poll::Pending => return Ok(()),
                }
            }
            if up.read_all {
                return match Pin::new(&mut *stream).poll_flush(cx) {
                    Poll::Pending => Ok(()),
                    Poll::Ready(result) => {
                        self.state.broken |= result.is_err();
                        *upload = None;
                        Ok(())
                    }
                };
            }
            match Pin::new(&mut up.body).poll_frame(cx) {
                Poll::Pending => {
                    // What was written must reach the server while the client pauses.
                    let _ = Pin::new(&mut *stream).poll_flush(cx);
                    return Ok(());
                }
                Poll::Ready(None) => {
                    up.read_all = true;
                    if up.chunked {
                        up.pending[0] = Bytes::from_static(b"0\r\n\r\n");
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    self.state.broken = true;
                    *upload = None;
                    return Err(Error::ClientBody(e));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not passed on: few servers read them, and
                    // the chunked end carries none.
                    let Ok(data) = frame.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    up.pending = if up.chunked {
                        [chunk_line(data.len()), data, Bytes::from_static(b"\r\n")]
                    } else {
                        [Bytes::new(), data, Bytes::new()]
                    };
                }
            }
        }
    }
}

fn is_closed(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof)
}

async fn write_all(stream: &mut Stream, bytes: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// How a request body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// None at all.
    Empty,
    /// This many bytes, as its Content-Length says.
    Length(u64),
    /// Chunked.
    Chunked,
}

/// How a request body with `headers` goes up. As hyper's client did, which
/// portico used before: an empty body is sent as none (with the client's
/// own `Content-Length: 0` kept); otherwise by the client's Content-Length,
/// else chunked. (A client body's length is known only from its
/// Content-Length, on HTTP/1 and h2 alike; header rules may not set one.)
pub fn framing(headers: &HeaderMap, body: &RequestBody) -> Framing {
    if body.is_end_stream() {
        Framing::Empty
    } else if let Some(length) = content_length(headers) {
        Framing::Length(length)
    } else {
        Framing::Chunked
    }
}

/// Writes the request line and header `fields`, with the framing header a
/// chunked body needs (and without a Content-Length it would contradict).
fn encode_head<'h>(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    fields: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
    framing: Framing,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    for (name, value) in fields {
        if framing == Framing::Chunked && name == header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The one Content-Length `headers` give (repeats must agree), if valid.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        add_content_length(&mut length, value).ok()?;
    }
    length
}

/// Adds one Content-Length field (a comma list: some servers repeat the
/// value) to `length`; `Err` when it is not a number or disagrees.
fn add_content_length(length: &mut Option<u64>, value: &HeaderValue) -> Result<(), ()> {
    for part in value.as_bytes().split(|&b| b == b',') {
        // Read as the client side's framing tracker reads a request's.
        let n = crate::framing::digits(crate::framing::trim(part)).ok_or(())?;
        if length.is_some_and(|l| l != n) {
            return Err(());
        }
        *length = Some(n);
    }
    Ok(())
}

/// A request body on its way up, sent while the response is awaited and
/// read (a server may answer, or echo, before the upload ends).
#[derive(Debug)]
pub struct Upload {
    body: RequestBody,
    chunked: bool,
    /// What of the current frame is not yet written: its chunk-size line,
    /// its data, the CRLF after it (the first and last empty unless chunked).
    pending: [Bytes; 3],
    /// The body has been read whole; `pending` is the last of it.
    read_all: bool,
}

impl Upload {
    pub fn new(body: RequestBody, framing: Framing) -> Option<Upload> {
        (framing != Framing::Empty).then(|| Upload {
            body,
            chunked: framing == Framing::Chunked,
            pending: Default::default(),
            read_all: false,
        })
    }

    /// What the client has not sent of the body yet, if anything: the
    /// upload stops here, and the rest can be read and dropped.
    pub fn into_unread(self) -> Option<RequestBody> {
        (!self.read_all).then_some(self.body)
    }
}

/// The size line of a chunk of `len` bytes.
fn chunk_line(len: usize) -> Bytes {
    let mut line = Vec::with_capacity(18);
    // Writing to a Vec cannot fail.
    let _ = write!(line, "{len:x}\r\n");
    Bytes::from(line)
}

/// A response head, and how its body is read.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyReader,
}

/// Where a response body ends, and what is left of it.
#[derive(Debug)]
pub enum BodyReader {
    /// `remaining` bytes more.
    Length { remaining: u64, reusable: bool },
    /// Chunked, in `state`.
    Chunked { state: Chunk, reusable: bool },
    /// Until the server closes: the connection ends with it.
    Close,
    /// Read whole.
    Done { reusable: bool },
}

/// Where a chunked body's reader is.
#[derive(Debug, Clone, Copy)]
pub enum Chunk {
    /// At a chunk-size line.
    Size,
    /// In a chunk, with this many bytes left.
    Data(u64),
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk, in the trailer section.
    Trailers,
}

impl BodyReader {
    /// Whether the body has been read whole.
    pub fn is_end(&self) -> bool {
        matches!(self, BodyReader::Done { .. })
    }

    /// Whether the connection may carry another request once the body is read.
    pub fn is_reusable(&self) -> bool {
        matches!(self, BodyReader::Done { reusable: true })
    }

    /// Whether the connection could carry another request once the rest of
    /// the body is read: the body has an end other than the close.
    pub fn ends_reusable(&self) -> bool {
        match self {
            BodyReader::Length { reusable, .. }
            | BodyReader::Chunked { reusable, .. }
            | BodyReader::Done { reusable } => *reusable,
            BodyReader::Close => false,
        }
    }

    /// Bytes still to come when the body's length is known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            BodyReader::Length { remaining, .. } => Some(*remaining),
            BodyReader::Done { .. } => Some(0),
            _ => None,
        }
    }

    /// The next piece of body in `read`; `None` when more must be read first
    /// (or the body ended: see `is_end`).
    pub fn take(&mut self, read: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        loop {
            match self {
                BodyReader::Done { .. } => return Ok(None),
                BodyReader::Close => {
                    return Ok((!read.is_empty()).then(|| read.split().freeze()));
                }
                BodyReader::Length { remaining, reusable } => {
                    if *remaining == 0 {
                        *self = BodyReader::Done { reusable: *reusable };
                        return Ok(None);
                    }
                    if read.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(read.len());
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        *self = BodyReader::Done { reusable: *reusable };
                    }
                    return Ok(Some(read.split_to(n).freeze()));
                }
                BodyReader::Chunked { state, reusable } => match *state {
                    Chunk::Size => {
                        let Some(line) = take_line(read)? else { return Ok(None) };
                        let size = chunk_size(&line)?;
                        *state = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
                    }
                    Chunk::Data(left) => {
                        if read.is_empty() {
                            return Ok(None);
                        }
                        let n = usize::try_from(left).unwrap_or(usize::MAX).min(read.len());
                        let left = left - n as u64;
                        *state = if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) };
                        return Ok(Some(read.split_to(n).freeze()));
                    }
                    Chunk::DataEnd => {
                        if read.len() < 2 {
                            return Ok(None);
                        }
                        if &read[..2] != b"\r\n" {
                            return Err(Error::Invalid("chunk not followed by CRLF"));
                        }
                        read.advance(2);
                        *state = Chunk::Size;
                    }
                    Chunk::Trailers => {
                        // Trailer fields are read past and dropped (hyper's
                        // server sends none to HTTP/1 clients unasked either).
                        let Some(line) = take_line(read)? else { return Ok(None) };
                        if line.is_empty() {
                            *self = BodyReader::Done { reusable: *reusable };
                            return Ok(None);
                        }
                    }
                },
            }
        }
    }
}

/// One CRLF-ended line from `read`, without its CRLF; `None` until it is whole.
fn take_line(read: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
    let Some(at) = memchr::memchr(b'\n', read) else {
        if read.len() > MAX_CHUNK_LINE {
            return Err(Error::Invalid("chunk line too long"));
        }
        return Ok(None);
    };
    // As long as the check above would have found it had the line come in
    // smaller reads.
    if at > MAX_CHUNK_LINE {
        return Err(Error::Invalid("chunk line too long"));
    }
    if at == 0 || read[at - 1] != b'\r' {
        return Err(Error::Invalid("chunk line not ended by CRLF"));
    }
    let mut line = read.split_to(at + 1);
    line.truncate(at - 1);
    Ok(Some(line))
}

/// The size of a chunk from its line: hex digits, then optional extensions.
fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(Error::Invalid("bad chunk size"));
    }
    // Extensions (`;name=value`), which say nothing portico needs, may follow.
    let rest = line[digits..].trim_ascii_start();
    if rest.first().is_some_and(|&b| b != b';') {
        return Err(Error::Invalid("bad chunk size"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let digit = (b as char).to_digit(16).unwrap_or(0);
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(digit)))
            .ok_or(Error::Invalid("bad chunk size"))?;
    }
    Ok(size)
}

/// Parses a response head from the front of `read` and takes it out;
/// `None` until the head is whole. Interim responses are taken out and skipped.
pub fn parse_head(read: &mut BytesMut, head_request: bool) -> Result<Option<ResponseHead>, Error> {
    loop {
        if read.is_empty() {
            return Ok(None);
        }
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed =
            httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, read, &mut slots);
        let len = match parsed {
            // `Conn::poll_head` stops waiting for a head at `MAX_HEAD` bytes:
            // one that came whole in fewer reads is held to the same limit.
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => return Err(Error::HeadTooLarge),
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(Error::Invalid("too many headers")),
            Err(_) => return Err(Error::Invalid("malformed response head")),
        };
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| Error::Invalid("bad status code"))?;
        if status.is_informational() && code != 101 {
            read.advance(len);
            continue;
        }
        let http10 = response.version == Some(0);
        // Where each name and value sit in the head (`u16`: the head is at
        // most `MAX_HEAD`, checked above), so that the values can be slices of
        // its bytes rather than copies. httparse's slices lie in the head; the
        // error is for the parser breaking that, not for any input.
        let base = read.as_ptr() as usize;
        let at = |part: &[u8]| -> Result<[u16; 2], Error> {
            let start = (part.as_ptr() as usize).checked_sub(base).filter(|start| start + part.len() <= len);
            match start.and_then(|start| Some([u16::try_from(start).ok()?, u16::try_from(part.len()).ok()?])) {
                Some(span) => Ok(span),
                None if part.is_empty() => Ok([0, 0]),
                None => Err(Error::Invalid("header outside the response head")),
            }
        };
        let count = response.headers.len();
        let mut spans = [[[0u16; 2]; 2]; MAX_HEADERS];
        for (span, h) in spans.iter_mut().zip(response.headers.iter()) {
            *span = [at(h.name.as_bytes())?, at(h.value)?];
        }
        let bytes = read.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        let mut framing = Framed::default();
        let range = |[start, len]: [u16; 2]| usize::from(start)..usize::from(start) + usize::from(len);
        for &[name, value] in &spans[..count] {
            let name = header_name(&bytes[range(name)])?;
            let value = HeaderValue::from_maybe_shared(bytes.slice(range(value)))
                .map_err(|_| Error::Invalid("bad header value"))?;
            // What only framed this message on this connection is not kept:
            // the hop-by-hop rule would drop it anyway, after a lookup.
            if !framing.note(&name, &value)? || code == 101 {
                headers.append(name, value);
            }
        }
        let reusable = if http10 { framing.keep_alive } else { !framing.close };
        let body = if code == 101 {
            BodyReader::Done { reusable: false }
        } else if head_request || code == 204 || code == 304 {
            BodyReader::Done { reusable }
        } else if framing.transfer_encoding {
            if http10 {
                return Err(Error::Invalid("Transfer-Encoding in an HTTP/1.0 response"));
            }
            if framing.content_length.is_some() {
                // A response two parsers could frame differently (nginx refuses it too).
                return Err(Error::Invalid("both Content-Length and Transfer-Encoding"));
            }
            if framing.chunked_last { BodyReader::Chunked { state: Chunk::Size, reusable } } else { BodyReader::Close }
        } else if let Some(length) = framing.content_length {
            if length == 0 { BodyReader::Done { reusable } } else { BodyReader::Length { remaining: length, reusable } }
        } else {
            BodyReader::Close
        };
        return Ok(Some(ResponseHead { status, headers, body }));
    }
}

/// The header name `raw` spells. The names servers send on nearly every
/// answer, spelled as they send them, are matched as they are (a switch on
/// the length, then one comparison); `HeaderName::from_bytes` lower-cases
/// and looks up the others, at about four times the instructions.
fn header_name(raw: &[u8]) -> Result<HeaderName, Error> {
    Ok(match raw {
        b"Server" => header::SERVER,
        b"Date" => header::DATE,
        b"Content-Type" => header::CONTENT_TYPE,
        b"Content-Length" => header::CONTENT_LENGTH,
        b"Connection" => header::CONNECTION,
        b"Last-Modified" => header::LAST_MODIFIED,
        b"ETag" => header::ETAG,
        b"Accept-Ranges" => header::ACCEPT_RANGES,
        b"Transfer-Encoding" => header::TRANSFER_ENCODING,
        b"Cache-Control" => header::CACHE_CONTROL,
        b"Expires" => header::EXPIRES,
        b"Vary" => header::VARY,
        b"Set-Cookie" => header::SET_COOKIE,
        b"Location" => header::LOCATION,
        b"Content-Encoding" => header::CONTENT_ENCODING,
        b"Strict-Transport-Security" => header::STRICT_TRANSPORT_SECURITY,
        b"X-Frame-Options" => header::X_FRAME_OPTIONS,
        b"X-Content-Type-Options" => header::X_CONTENT_TYPE_OPTIONS,
        _ => HeaderName::from_bytes(raw).map_err(|_| Error::Invalid("bad header name"))?,
    })
}

/// What a response's headers say about its framing and its connection.
#[derive(Default)]
struct Framed {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// The last transfer coding named is `chunked`.
    chunked_last: bool,
    close: bool,
    keep_alive: bool,
}

impl Framed {
    /// Takes in one header; true when it says nothing beyond this message's
    /// framing and this connection's keep-alive (Transfer-Encoding,
    /// Keep-Alive, a Connection of `close` / `keep-alive`), all of it taken in here.
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<bool, Error> {
        if name == header::CONTENT_LENGTH {
            add_content_length(&mut self.content_length, value)
                .map_err(|()| Error::Invalid("bad or conflicting Content-Length"))?;
            Ok(false)
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            let last = value.as_bytes().rsplit(|&b| b == b',').next().unwrap_or_default();
            self.chunked_last = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            Ok(true)
        } else if name == header::CONNECTION {
            let mut only_these = true;
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if !token.is_empty() {
                    // It names other headers, which must go too: left to
                    // the hop-by-hop rule.
                    only_these = false;
                }
            }
            Ok(only_these)
        } else {
            Ok(name == crate::proxy::forwarded::KEEP_ALIVE)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<ResponseHead>, Error> {
        parse_head(&mut BytesMut::from(bytes), false)
    }

    fn body_of(reader: &mut BodyReader, wire: &[u8]) -> Result<Vec<u8>, Error> {
        let mut read = BytesMut::from(wire);
        let mut out = Vec::new();
        while let Some(piece) = reader.take(&mut read)? {
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    #[test]
    fn header_names_are_read_alike_on_either_path() {
        for raw in [&b"Content-Length"[..], b"content-length", b"CONTENT-LENGTH", b"ETag", b"etag", b"X-Custom-Thing"] {
            assert_eq!(header_name(raw).unwrap(), HeaderName::from_bytes(raw).unwrap(), "{raw:?}");
        }
        let listed = [
            "Server",
            "Date",
            "Content-Type",
            "Content-Length",
            "Connection",
            "Last-Modified",
            "ETag",
            "Accept-Ranges",
            "Transfer-Encoding",
            "Cache-Control",
            "Expires",
            "Vary",
            "Set-Cookie",
            "Location",
            "Content-Encoding",
            "Strict-Transport-Security",
            "X-Frame-Options",
            "X-Content-Type-Options",
        ];
        for raw in listed {
            assert_eq!(header_name(raw.as_bytes()).unwrap().as_str(), raw.to_ascii_lowercase(), "{raw}");
        }
        assert!(matches!(header_name(b"Bad Name"), Err(Error::Invalid(_))));
        assert!(matches!(header_name(b""), Err(Error::Invalid(_))));
    }

    #[test]
    fn content_length_body_ends_reusable() {
        let mut head = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.headers["server"], "x");
        assert_eq!(body_of(&mut head.body, b"hello").unwrap(), b"hello");
        assert!(head.body.is_reusable());
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let mut head = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap().unwrap();
        let wire = b"5;foo=bar\r\nhello\r\n1 ; x\r\n!\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(body_of(&mut head.body, wire).unwrap(), b"hello!");
        assert!(head.body.is_reusable());
    }

    #[test]
    fn chunked_body_split_anywhere_reads_the_same() {
        let wire = b"5\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
        for cut in 0..wire.len() {
            let mut reader = BodyReader::Chunked { state: Chunk::Size, reusable: true };
            let mut read = BytesMut::from(&wire[..cut]);
            let mut out = Vec::new();
            while let Some(piece) = reader.take(&mut read).unwrap() {
                out.extend_from_slice(&piece);
            }
            read.extend_from_slice(&wire[cut..]);
            while let Some(piece) = reader.take(&mut read).unwrap() {
                out.extend_from_slice(&piece);
            }
            assert_eq!(out, b"hello0123456789abcdef", "cut at {cut}");
            assert!(reader.is_reusable(), "cut at {cut}");
        }
    }

    #[test]
    fn bad_chunk_framing_is_an_error() {
        for wire in [&b"zz\r\nhello\r\n"[..], b"5\r\nhelloXX0\r\n\r\n", b"5\nhello\r\n", b"11111111111111111\r\n"] {
            let mut reader = BodyReader::Chunked { state: Chunk::Size, reusable: true };
            assert!(body_of(&mut reader, wire).is_err(), "{wire:?}");
        }
    }

    #[test]
    fn a_chunk_line_past_the_limit_is_refused_even_when_whole() {
        // Whether the line's end came in the same read must not matter.
        let mut line = b"1;x=".to_vec();
        line.resize(MAX_CHUNK_LINE + 1, b'a');
        for (wire, refused) in [(line.clone(), true), (line[..MAX_CHUNK_LINE - 1].to_vec(), false)] {
            let mut whole = wire.clone();
            whole.extend_from_slice(b"\r\n!\r\n0\r\n\r\n");
            let mut reader = BodyReader::Chunked { state: Chunk::Size, reusable: true };
            assert_eq!(body_of(&mut reader, &whole).is_err(), refused, "{} bytes, whole", wire.len());
            let mut reader = BodyReader::Chunked { state: Chunk::Size, reusable: true };
            let mut read = BytesMut::new();
            let mut failed = false;
            for &byte in &whole {
                read.extend_from_slice(&[byte]);
                if reader.take(&mut read).is_err() {
                    failed = true;
                    break;
                }
            }
            assert_eq!(failed, refused, "{} bytes, one byte per read", wire.len());
        }
    }

    #[test]
    fn framing_rules() {
        let close = parse(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(matches!(close.body, BodyReader::Close));
        let http10 = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert!(!http10.body.is_reusable());
        let http10_ka =
            parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert!(http10_ka.body.is_reusable());
        let closing = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert!(!closing.body.is_reusable());
        let not_modified = parse(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n").unwrap().unwrap();
        assert!(not_modified.body.is_reusable());
        let head = parse_head(&mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"[..]), true);
        assert!(head.unwrap().unwrap().body.is_reusable());
        let gzip_only = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap().unwrap();
        assert!(matches!(gzip_only.body, BodyReader::Close));
    }

    #[test]
    fn ambiguous_or_malformed_heads_are_refused() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(parse(wire).is_err(), "{}", String::from_utf8_lossy(wire));
        }
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn interim_responses_are_skipped() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let mut read = BytesMut::from(&wire[..]);
        let mut head = parse_head(&mut read, false).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert!(head.headers.get("link").is_none());
        assert_eq!(head.body.take(&mut read).unwrap().unwrap(), "ok");
    }

    #[test]
    fn a_head_past_max_head_is_refused_even_when_whole() {
        let mut wire = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        wire.resize(wire.len() + MAX_HEAD, b'a');
        wire.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(parse(&wire), Err(Error::HeadTooLarge)));
        let mut fits = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        fits.resize(MAX_HEAD - 100, b'a');
        fits.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(parse(&fits).unwrap().unwrap().headers["x-big"].len(), MAX_HEAD - 100 - 24);
        // At the limit itself: as `Conn::poll_head` finds when the head comes
        // in smaller reads (it stops waiting at `MAX_HEAD` bytes).
        for (len, refused) in [(MAX_HEAD + 1, true), (MAX_HEAD, false)] {
            let mut wire = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
            wire.resize(len - 4, b'a');
            wire.extend_from_slice(b"\r\n\r\n");
            assert_eq!(matches!(parse(&wire), Err(Error::HeadTooLarge)), refused, "a head of {len} bytes");
        }
    }

    #[test]
    fn framing_only_headers_are_taken_in_not_kept() {
        let head = parse(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n");
        let head = head.unwrap().unwrap();
        assert_eq!(head.headers.len(), 1, "{:?}", head.headers);
        assert!(matches!(head.body, BodyReader::Chunked { reusable: true, .. }));
        // A Connection naming other headers stays for the hop-by-hop rule to act on.
        let named = parse(b"HTTP/1.1 200 OK\r\nConnection: close, x-a\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n");
        let named = named.unwrap().unwrap();
        assert_eq!(named.headers["connection"], "close, x-a");
        assert!(!named.body.is_reusable());
        let switched = parse(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(switched.unwrap().unwrap().headers.len(), 2);
    }

    #[test]
    fn a_partial_head_waits_for_more() {
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Len").unwrap().is_none());
    }

    #[test]
    fn request_heads_carry_the_framing_hyper_gave_them() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a.test"));
        let framing = framing(&headers, &RequestBody::empty());
        assert_eq!(framing, Framing::Empty);
        let mut out = Vec::new();
        encode_head(&mut out, &Method::GET, "/x?y", headers.iter(), framing);
        assert_eq!(out, b"GET /x?y HTTP/1.1\r\nhost: a.test\r\n\r\n");
    }
}

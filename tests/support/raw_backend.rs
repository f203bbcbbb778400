//! A raw HTTP/1 backend for tests of portico's upstream client: it reads
//! each request head (and, by default, its body), records it with the bytes
//! it took on the wire, and writes exactly the bytes the test chose, so every
//! response framing is under the test's control.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use super::TestCert;

/// Bound on every wait here: a hang fails the test instead of blocking it.
pub const WITHIN: Duration = Duration::from_secs(10);

/// How a request's body was framed on the wire, from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Neither Content-Length nor Transfer-Encoding.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// One request as the raw backend read it off the wire.
#[derive(Debug, Clone)]
pub struct Wire {
    /// Which accepted connection (0, 1, ...) carried it.
    pub conn: u64,
    /// The head's bytes on the wire, through its blank line.
    pub head_len: usize,
    /// The request line, e.g. `GET /a HTTP/1.1`.
    pub line: String,
    /// Header fields in order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    /// The body, de-chunked; empty when the answer said not to read it.
    pub body: Vec<u8>,
}

impl Wire {
    pub fn method(&self) -> &str {
        self.line.split(' ').next().unwrap_or("")
    }

    pub fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }

    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}

/// What the backend does after writing an answer.
pub enum Then {
    /// Reads the next request on the same connection.
    KeepAlive,
    /// Closes the connection (FIN, or close_notify then FIN over TLS).
    Close,
    /// Waits (not reading) until the test notifies, then closes.
    CloseWhen(Arc<Notify>),
    /// Reads the request body it answered before reading, then the next request.
    ReadBodyThenKeepAlive,
}

/// The backend's answer to one request: these exact bytes, then `then`.
pub struct Answer {
    pub bytes: Vec<u8>,
    pub then: Then,
    /// Whether the request body is read before answering (default yes).
    pub read_body: bool,
}

/// Writes `bytes` and keeps the connection for the next request.
pub fn keep(bytes: impl AsRef<[u8]>) -> Answer {
    Answer { bytes: bytes.as_ref().to_vec(), then: Then::KeepAlive, read_body: true }
}

/// Writes `bytes` and closes the connection.
pub fn close(bytes: impl AsRef<[u8]>) -> Answer {
    Answer { bytes: bytes.as_ref().to_vec(), then: Then::Close, read_body: true }
}

/// `200 OK` with the body `early`, written before the request body is read
/// (which is read after it), connection kept: a server answering an upload
/// before taking it.
pub fn early() -> Answer {
    Answer {
        bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly".to_vec(),
        then: Then::ReadBodyThenKeepAlive,
        read_body: false,
    }
}

/// `200 OK` with `body` and its Content-Length, connection kept.
pub fn ok(body: &str) -> Answer {
    keep(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()))
}

pub type Script = dyn Fn(&Wire) -> Answer + Send + Sync;

pub struct Shared {
    /// Picks the answer from the request head (`Wire::body` still empty).
    pub script: Box<Script>,
    pub seen: Mutex<Vec<Wire>>,
    pub accepted: AtomicU64,
    /// Connections that have ended, for `wait_closed`.
    pub closed: watch::Sender<u64>,
}

/// A backend on `127.0.0.1:<ephemeral>` speaking raw bytes, listening when
/// `spawn` returns; stopped with its connections when dropped.
pub struct RawBackend {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    pub async fn spawn(script: impl Fn(&Wire) -> Answer + Send + Sync + 'static) -> RawBackend {
        RawBackend::start(Box::new(script), None).await
    }

    /// The same behind TLS with `cert` (ALPN http/1.1).
    pub async fn spawn_tls(cert: &TestCert, script: impl Fn(&Wire) -> Answer + Send + Sync + 'static) -> RawBackend {
        let acceptor = TlsAcceptor::from(Arc::new(cert.server_config(&["http/1.1"])));
        RawBackend::start(Box::new(script), Some(acceptor)).await
    }

    pub async fn start(script: Box<Script>, tls: Option<TlsAcceptor>) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            script,
            seen: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            closed: watch::Sender::new(0),
        });
        let state = shared.clone();
        let task = tokio::spawn(async move {
            // Dropped with the task: aborts every connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = state.accepted.fetch_add(1, Ordering::SeqCst);
                let (state, tls) = (state.clone(), tls.clone());
                connections.spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    match tls {
                        None => serve(tcp, conn, &state).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, conn, &state).await;
                            }
                        }
                    }
                    state.closed.send_modify(|n| *n += 1);
                });
                while connections.try_join_next().is_some() {}
            }
        });
        RawBackend { addr, shared, task }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Wire> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The connection number of each request so far.
    pub fn conns(&self) -> Vec<u64> {
        self.requests().iter().map(|w| w.conn).collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections have ended on the backend's side.
    pub async fn wait_closed(&self, n: u64) {
        let mut closed = self.shared.closed.subscribe();
        tokio::time::timeout(WITHIN, closed.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} backend connections not closed within {WITHIN:?}"))
            .unwrap();
    }
}

/// Answers the requests of one connection by the script until it ends.
pub async fn serve<S>(mut stream: S, conn: u64, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf).await else { break };
        let mut wire = parse_head(conn, &head);
        let answer = (shared.script)(&wire);
        if answer.read_body {
            let Some(body) = read_body(&mut stream, &mut buf, wire.framing).await else { break };
            wire.body = body;
        }
        let wire_framing = wire.framing;
        shared.seen.lock().unwrap().push(wire);
        if stream.write_all(&answer.bytes).await.is_err() || stream.flush().await.is_err() {
            break;
        }
        match answer.then {
            Then::KeepAlive => {}
            Then::Close => break,
            Then::CloseWhen(signal) => {
                signal.notified().await;
                break;
            }
            Then::ReadBodyThenKeepAlive => {
                if read_body(&mut stream, &mut buf, wire_framing).await.is_none() {
                    break;
                }
            }
        }
    }
    // A FIN (after close_notify over TLS), so that a close-delimited body ends cleanly.
    let _ = stream.shutdown().await;
}

/// Reads more into `buf`; false at EOF or on an error.
pub async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(n) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// The next request head (through `\r\n\r\n`), taken from the front of `buf`.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(buf.drain(..at + 4).collect());
        }
        if !fill(stream, buf).await {
            return None;
        }
    }
}

/// One line (without its CRLF) from the front of `buf`.
pub async fn read_line<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.drain(..at + 2).take(at).collect();
            return Some(line);
        }
        if !fill(stream, buf).await {
            return None;
        }
    }
}

/// Exactly `n` bytes from the front of `buf`.
pub async fn read_n<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>, n: usize) -> Option<Vec<u8>> {
    while buf.len() < n {
        if !fill(stream, buf).await {
            return None;
        }
    }
    Some(buf.drain(..n).collect())
}

/// The body as framed; `None` if the connection ended first or the chunked
/// framing is broken.
pub async fn read_body<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>, framing: Framing) -> Option<Vec<u8>> {
    match framing {
        Framing::None => Some(Vec::new()),
        Framing::Length(n) => read_n(stream, buf, usize::try_from(n).ok()?).await,
        Framing::Chunked => {
            let mut body = Vec::new();
            loop {
                let line = read_line(stream, buf).await?;
                let text = String::from_utf8(line).ok()?;
                let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !read_line(stream, buf).await?.is_empty() {}
                    return Some(body);
                }
                body.extend(read_n(stream, buf, size).await?);
                if !read_n(stream, buf, 2).await?.eq(b"\r\n") {
                    return None;
                }
            }
        }
    }
}

pub fn parse_head(conn: u64, head: &[u8]) -> Wire {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let value = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let framing = if value("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        Framing::Chunked
    } else if let Some(length) = value("content-length") {
        Framing::Length(length.parse().unwrap_or_else(|_| panic!("portico sent Content-Length {length:?}")))
    } else {
        Framing::None
    };
    Wire { conn, head_len: head.len(), line, headers, framing, body: Vec::new() }
}

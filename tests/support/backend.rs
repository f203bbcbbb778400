//! Upstream servers for tests: `TestBackend` (an HTTP/1.1 app server that
//! answers with its name and records what it saw) and `SilentBackend` (accepts,
//! never answers).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SET_COOKIE, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::body::{self, Body};
use super::cert::TestCert;
use super::websocket;

/// One request as a backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    /// The connecting peer (portico's side of the upstream connection).
    pub peer: SocketAddr,
    /// The SNI name the client sent (TLS backends only).
    pub sni: Option<String>,
    /// Which accepted connection (0, 1, ...) carried it: equal numbers mean a
    /// reused keep-alive connection.
    pub conn: u64,
    /// Request body length, read to the end before answering; `None` for
    /// `/echo` (streamed back instead) and `/ws`.
    pub body_len: Option<u64>,
}

impl Seen {
    /// A request header as text (the first, if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

struct Shared {
    name: String,
    seen: Mutex<Vec<Seen>>,
    connections: AtomicU64,
    /// Connections that have closed (or whose TLS handshake failed).
    closed: AtomicU64,
    /// TLS connections whose handshake resumed an earlier session.
    resumed: AtomicU64,
    tunnels: AtomicUsize,
    /// What `/health` answers (`set_health`); 0: never answers.
    health: AtomicU16,
    /// The body `/health` answers with (`set_health_body`); `None`: the name.
    health_body: Mutex<Option<bytes::Bytes>>,
}

/// An HTTP/1.1 (keep-alive) backend on `127.0.0.1:<ephemeral>`.
///
/// Every response has `x-backend: NAME`. Behaviour is picked by the last path
/// segment(s), ignoring any `;param` suffix and any prefix, so `/api/echo`
/// behaves as `/echo`:
/// - `.../echo`: streams the request body back.
/// - `.../big?bytes=N`: streams N pattern bytes (see `body::verify_pattern`)
///   in 64 KiB chunks, with Content-Length (and the `set=` headers below).
/// - `.../slow?ms=N`: waits N ms, then answers as the default.
/// - `.../login`: sets `JSESSIONID=<random>; Path=/; HttpOnly`, body = name.
/// - `.../status/NNN`: answers status NNN, body = name.
/// - `.../ws`: WebSocket upgrade (101, correct Sec-WebSocket-Accept), then
///   echoes raw bytes; 400 if the request is not an upgrade. `open_tunnels()`
///   counts the upgraded connections still open.
/// - `.../headers?set=Name:Value&set=...`: 200, body = name, with each
///   `Name: Value` added to the response (`%XX` escapes decoded), for
///   response-header tests (hop-by-hop headers and the like).
/// - `.../health[?ms=N][&chunk=N][&hang=1]`: after N ms (default 0), the
///   status `set_health` chose (200 at first; 0: never answers), body = name
///   or what `set_health_body` chose, with Content-Length: for active health
///   checks. `chunk=N`: the body chunked, N bytes a chunk; `hang=1`: chunked
///   (4 KiB chunks unless `chunk` says), and never ended after the body.
/// - `.../trickle?chunks=N&ms=M`: 200 at once, then N body chunks
///   (`chunk 0\n`, `chunk 1\n`, ...), each after M ms of silence (no
///   Content-Length): for read timeouts that limit silence, not totals.
///   `set=` headers as for `/big`.
/// - anything else: 200, body = name.
///
/// Each request is recorded (and counted) before it is answered, so once a
/// client has the response head, `requests()` includes it.
pub struct TestBackend {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Tasks,
    /// After `stop`: a socket bound to `addr` and never listening, so that the
    /// port keeps refusing connections instead of going to whichever test
    /// binds next (a stopped backend whose port another test's listener took
    /// answered a request it should have refused).
    hold: Mutex<Option<tokio::net::TcpSocket>>,
}

impl TestBackend {
    /// A plain-HTTP backend, listening when this returns.
    pub async fn spawn(name: &str) -> TestBackend {
        TestBackend::start(name, None).await
    }

    /// A TLS backend serving `cert` (ALPN http/1.1), listening when this returns.
    pub async fn spawn_tls(name: &str, cert: &TestCert) -> TestBackend {
        let acceptor = TlsAcceptor::from(Arc::new(cert.server_config(&["http/1.1"])));
        TestBackend::start(name, Some(acceptor)).await
    }

    /// A TLS backend speaking only `version`, listening when this returns.
    pub async fn spawn_tls_only(
        name: &str,
        cert: &TestCert,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> TestBackend {
        let acceptor = TlsAcceptor::from(Arc::new(cert.server_config_for(&["http/1.1"], &[version])));
        TestBackend::start(name, Some(acceptor)).await
    }

    /// A TLS backend with its own server `config` (one that asks for client
    /// certificates, say), listening when this returns.
    pub async fn spawn_tls_config(name: &str, config: rustls::ServerConfig) -> TestBackend {
        TestBackend::start(name, Some(TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start(name: &str, tls: Option<TlsAcceptor>) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind test backend");
        let addr = listener.local_addr().expect("backend local addr");
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            seen: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            tunnels: AtomicUsize::new(0),
            health: AtomicU16::new(200),
            health_body: Mutex::new(None),
        });
        let tasks = Tasks::default();
        tasks.spawn(accept_loop(listener, shared.clone(), tasks.clone(), tls));
        TestBackend { shared, addr, tasks, hold: Mutex::new(None) }
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests it has seen.
    pub fn count(&self) -> usize {
        lock(&self.shared.seen).len()
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> u64 {
        self.connections() - self.shared.closed.load(Ordering::SeqCst)
    }

    /// How many TLS connections resumed an earlier session.
    pub fn resumed(&self) -> u64 {
        self.shared.resumed.load(Ordering::SeqCst)
    }

    /// How many upgraded (`/ws`) connections are open: counted once the
    /// upgrade completes, uncounted when the tunnel's socket is closed.
    pub fn open_tunnels(&self) -> usize {
        self.shared.tunnels.load(Ordering::SeqCst)
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// The latest request; panics if there was none.
    pub fn last(&self) -> Seen {
        lock(&self.shared.seen)
            .last()
            .cloned()
            .unwrap_or_else(|| panic!("backend {} has seen no request", self.shared.name))
    }

    /// Makes `.../health` answer `status` from now on; 0: never answer.
    pub fn set_health(&self, status: u16) {
        self.shared.health.store(status, Ordering::SeqCst);
    }

    /// Makes `.../health` answer `body` from now on, instead of the name.
    pub fn set_health_body(&self, body: impl Into<bytes::Bytes>) {
        *lock(&self.shared.health_body) = Some(body.into());
    }

    /// The requests seen so far that were not for `.../health`: the traffic,
    /// without the health checks.
    pub fn traffic(&self) -> usize {
        lock(&self.shared.seen).iter().filter(|seen| !seen.uri.path().ends_with("/health")).count()
    }

    /// Closes the listener and every connection (upgraded ones too); when this
    /// returns, new connections to `addr()` are refused.
    pub async fn stop(&self) {
        self.tasks.stop().await;
        // SO_REUSEADDR: the closed connections' TIME_WAIT must not stop the bind.
        let held = tokio::net::TcpSocket::new_v4().and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(self.addr)?;
            Ok(socket)
        });
        *lock(&self.hold) = held.ok();
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.tasks.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tasks: Tasks, tls: Option<TlsAcceptor>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let conn = shared.connections.fetch_add(1, Ordering::SeqCst);
        let ctx = Arc::new(ConnCtx { shared: shared.clone(), tasks: tasks.clone(), peer, conn, sni: None });
        tasks.spawn(serve_tcp(stream, ctx, tls.clone()));
    }
}

struct ConnCtx {
    shared: Arc<Shared>,
    tasks: Tasks,
    peer: SocketAddr,
    conn: u64,
    sni: Option<String>,
}

async fn serve_tcp(stream: TcpStream, ctx: Arc<ConnCtx>, tls: Option<TlsAcceptor>) {
    struct CountClosed(Arc<Shared>);
    impl Drop for CountClosed {
        fn drop(&mut self) {
            self.0.closed.fetch_add(1, Ordering::SeqCst);
        }
    }
    let _closed = CountClosed(ctx.shared.clone());
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve(TokioIo::new(stream), ctx).await,
        Some(acceptor) => {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let sni = stream.get_ref().1.server_name().map(str::to_owned);
            if stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                ctx.shared.resumed.fetch_add(1, Ordering::SeqCst);
            }
            let ctx = Arc::new(ConnCtx {
                shared: ctx.shared.clone(),
                tasks: ctx.tasks.clone(),
                peer: ctx.peer,
                conn: ctx.conn,
                sni,
            });
            serve(TokioIo::new(stream), ctx).await;
        }
    }
}

async fn serve<I>(io: I, ctx: Arc<ConnCtx>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, ctx.clone()));
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(io, service)
        .with_upgrades()
        .await;
}

async fn handle(req: Request<Incoming>, ctx: Arc<ConnCtx>) -> Result<Response<Body>, Infallible> {
    let route = Route::of(req.uri());
    let extra_headers = set_headers(req.uri());
    let (mut parts, incoming) = req.into_parts();
    let mut seen = Seen {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        version: parts.version,
        headers: parts.headers.clone(),
        peer: ctx.peer,
        sni: ctx.sni.clone(),
        conn: ctx.conn,
        body_len: None,
    };
    let name = ctx.shared.name.clone();

    let response = match route {
        Route::Echo => {
            record(&ctx, seen);
            respond(&name, StatusCode::OK, incoming.map_err(Into::into).boxed())
        }
        Route::WebSocket => {
            record(&ctx, seen);
            upgrade_websocket(&mut parts, &ctx)
        }
        _ => {
            seen.body_len = body::count(incoming).await.ok();
            record(&ctx, seen);
            match route {
                Route::Big(n) => with_headers(respond(&name, StatusCode::OK, body::pattern(n)), extra_headers),
                Route::Slow(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    respond(&name, StatusCode::OK, body::full(name.clone()))
                }
                Route::Login => {
                    let mut response = respond(&name, StatusCode::OK, body::full(name.clone()));
                    let cookie = format!(
                        "JSESSIONID={:016X}{:016X}; Path=/; HttpOnly",
                        super::random_u64(),
                        super::random_u64()
                    );
                    response.headers_mut().insert(SET_COOKIE, HeaderValue::try_from(cookie).expect("cookie is ASCII"));
                    response
                }
                Route::Status(status) => respond(&name, status, body::full(name.clone())),
                Route::Health { ms, chunk, hang } => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let code = ctx.shared.health.load(Ordering::SeqCst);
                    let Ok(status) = StatusCode::from_u16(code) else {
                        return std::future::pending().await;
                    };
                    let text = lock(&ctx.shared.health_body).clone().unwrap_or_else(|| name.clone().into());
                    let body = match (chunk, hang) {
                        (None, false) => body::full(text),
                        (chunk, hang) => chunked(&ctx.tasks, text, chunk.unwrap_or(4096), hang),
                    };
                    respond(&name, status, body)
                }
                Route::Headers(extra) => {
                    let mut response = respond(&name, StatusCode::OK, body::full(name.clone()));
                    for (header, value) in extra {
                        response.headers_mut().append(header, value);
                    }
                    response
                }
                Route::Trickle { chunks, ms } => {
                    with_headers(respond(&name, StatusCode::OK, trickle(chunks, ms)), extra_headers)
                }
                _ => respond(&name, StatusCode::OK, body::full(name.clone())),
            }
        }
    };
    Ok(response)
}

/// What a request asks the backend to do, from its path.
enum Route {
    Default,
    Echo,
    Big(u64),
    Slow(u64),
    Login,
    Status(StatusCode),
    WebSocket,
    Headers(Vec<(http::HeaderName, HeaderValue)>),
    Trickle {
        chunks: u64,
        ms: u64,
    },
    /// `chunk`: bytes a chunk (the body chunked); `hang`: chunked, never ended.
    Health {
        ms: u64,
        chunk: Option<usize>,
        hang: bool,
    },
}

impl Route {
    fn of(uri: &Uri) -> Route {
        let segments: Vec<&str> = uri.path().split('/').map(|s| s.split(';').next().unwrap_or("")).collect();
        let last = segments.last().copied().unwrap_or("");
        let before_last = segments.len().checked_sub(2).map_or("", |i| segments[i]);
        if before_last == "status"
            && let Some(status) = last.parse::<u16>().ok().and_then(|s| StatusCode::from_u16(s).ok())
        {
            return Route::Status(status);
        }
        match last {
            "echo" => Route::Echo,
            "big" => Route::Big(query_number(uri, "bytes").unwrap_or(0)),
            "slow" => Route::Slow(query_number(uri, "ms").unwrap_or(0)),
            "login" => Route::Login,
            "health" => Route::Health {
                ms: query_number(uri, "ms").unwrap_or(0),
                chunk: query_number(uri, "chunk").and_then(|n| usize::try_from(n).ok()).filter(|&n| n > 0),
                hang: query_number(uri, "hang") == Some(1),
            },
            "ws" => Route::WebSocket,
            "headers" => Route::Headers(set_headers(uri)),
            "trickle" => Route::Trickle {
                chunks: query_number(uri, "chunks").unwrap_or(1),
                ms: query_number(uri, "ms").unwrap_or(0),
            },
            _ => Route::Default,
        }
    }
}

fn query_number(uri: &Uri, key: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// The `set=Name:Value` query parameters, `%XX`-decoded.
fn set_headers(uri: &Uri) -> Vec<(http::HeaderName, HeaderValue)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == "set")
        .filter_map(|(_, v)| {
            let decoded = percent_decode(v);
            let (name, value) = decoded.split_once(':')?;
            let name = http::HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
            let value = HeaderValue::from_str(value.trim()).ok()?;
            Some((name, value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `chunks` chunks, each sent after `ms` ms of silence, from a task.
fn trickle(chunks: u64, ms: u64) -> Body {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for i in 0..chunks {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if sender.send(bytes::Bytes::from(format!("chunk {i}\n"))).await.is_err() {
                return;
            }
        }
    });
    body::channel(receiver)
}

/// `response` with `headers` added (the `set=` parameters of `/big` and `/trickle`).
fn with_headers(mut response: Response<Body>, headers: Vec<(http::HeaderName, HeaderValue)>) -> Response<Body> {
    for (name, value) in headers {
        response.headers_mut().append(name, value);
    }
    response
}

/// `text` in chunks of `size` bytes (no Content-Length: chunked on
/// HTTP/1.1), from a task of the backend's; `hang`: the body never ends.
fn chunked(tasks: &Tasks, text: bytes::Bytes, size: usize, hang: bool) -> Body {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    tasks.spawn(async move {
        for start in (0..text.len()).step_by(size) {
            if sender.send(text.slice(start..text.len().min(start + size))).await.is_err() {
                return;
            }
        }
        if hang {
            // The sender, kept, holds the body open until the client goes.
            sender.closed().await;
        }
    });
    body::channel(receiver)
}

fn respond(name: &str, status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::try_from(name) {
        response.headers_mut().insert("x-backend", value);
    }
    response
}

fn record(ctx: &ConnCtx, seen: Seen) {
    lock(&ctx.shared.seen).push(seen);
}

fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn upgrade_websocket(parts: &mut http::request::Parts, ctx: &ConnCtx) -> Response<Body> {
    let name = &ctx.shared.name;
    let headers = &parts.headers;
    let key = headers.get(SEC_WEBSOCKET_KEY).map(|k| k.as_bytes().to_vec());
    let (Some(key), true, true) =
        (key, has_token(headers, UPGRADE, "websocket"), has_token(headers, CONNECTION, "upgrade"))
    else {
        return respond(name, StatusCode::BAD_REQUEST, body::full("not a websocket upgrade"));
    };

    // The upgrade future lives in the request's extensions.
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return respond(name, StatusCode::BAD_REQUEST, body::full("connection cannot upgrade"));
    };
    let shared = ctx.shared.clone();
    ctx.tasks.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        // Declared before `io`, so dropped after it: uncounted once the
        // socket is closed, whether the tunnel ends or is aborted.
        let _open = TunnelGuard::new(shared);
        let mut io = TokioIo::new(upgraded);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() || io.flush().await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = io.shutdown().await;
    });

    let mut response = respond(name, StatusCode::SWITCHING_PROTOCOLS, body::empty());
    let h = response.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::try_from(websocket::accept_key(&key)).expect("base64 is ASCII"));
    response
}

/// Counts one open upgraded connection while alive.
struct TunnelGuard(Arc<Shared>);

impl TunnelGuard {
    fn new(shared: Arc<Shared>) -> TunnelGuard {
        shared.tunnels.fetch_add(1, Ordering::SeqCst);
        TunnelGuard(shared)
    }
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.0.tunnels.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A backend that accepts connections, reads and discards what arrives, and
/// never answers: upstream timeouts (504) and hung-server tests.
pub struct SilentBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    tasks: Tasks,
}

impl SilentBackend {
    /// Listening when this returns.
    pub async fn spawn() -> SilentBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind silent backend");
        let addr = listener.local_addr().expect("silent backend local addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let tasks = Tasks::default();
        let (count, spawner) = (accepted.clone(), tasks.clone());
        tasks.spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                spawner.spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        });
        SilentBackend { addr, accepted, tasks }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection.
    pub async fn stop(&self) {
        self.tasks.stop().await;
    }
}

impl Drop for SilentBackend {
    fn drop(&mut self) {
        self.tasks.abort();
    }
}

/// Every task a test server runs (accept loop, connections, upgraded
/// tunnels), so stopping it closes all of its sockets.
#[derive(Clone, Default)]
struct Tasks(Arc<Mutex<TaskState>>);

#[derive(Default)]
struct TaskState {
    stopped: bool,
    set: JoinSet<()>,
}

impl Tasks {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut state = lock(&self.0);
        if state.stopped {
            return;
        }
        while state.set.try_join_next().is_some() {}
        state.set.spawn(task);
    }

    fn abort(&self) {
        let mut state = lock(&self.0);
        state.stopped = true;
        state.set.abort_all();
    }

    async fn stop(&self) {
        let mut set = {
            let mut state = lock(&self.0);
            state.stopped = true;
            std::mem::take(&mut state.set)
        };
        set.abort_all();
        // Each task's sockets are closed once its future is dropped, which
        // join_next waits for.
        while set.join_next().await.is_some() {}
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

//! Idle HTTP/1 client connections are parked: once a connection has gone
//! 250 ms (up to twice that) without a byte read or written, with no request
//! begun and every response sent, portico drops hyper's state for it (its two
//! 8 KiB buffers and the service future) and keeps only the socket and TLS
//! state until the client sends again. `portico_connections_parked` counts them.
//!
//! What must hold: a parked connection serves its next request as if nothing
//! happened, on the site current then; it still closes at the keep-alive
//! timeout and at shutdown; and nothing in flight is ever parked: a request
//! head or body that pauses, a response that pauses, a client slow to read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

/// Longer than twice the park delay: a connection idle this long would be
/// parked if portico thought it idle.
const PAUSE: Duration = Duration::from_millis(800);

/// One listener for app.test, TLS with `cert`, plain without; `[admin]` for the gauge.
fn config(backend: &TestBackend, cert: Option<&TestCert>, runtime: &str) -> String {
    AppConfig::new(backend.addr()).runtime(runtime).admin().tls(cert).build()
}

/// Backend "app" behind a TLS listener for app.test, with `runtime` settings.
struct Setup {
    backend: TestBackend,
    cert: TestCert,
    portico: Portico,
    admin: SocketAddr,
}

async fn setup(runtime: &str) -> Setup {
    let backend = TestBackend::spawn("app").await;
    let cert = TestCert::new(&["app.test"]);
    let portico = start_portico(&config(&backend, Some(&cert), runtime)).await;
    let admin = portico.admin_addr();
    Setup { backend, cert, portico, admin }
}

async fn parked(admin: SocketAddr) -> u64 {
    let mut client = Client::http1(admin).await.unwrap();
    let text = client.get("admin", "/metrics").await.unwrap().text();
    let line = text.lines().find(|l| l.starts_with("portico_connections_parked ")).expect("the parked gauge");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Waits (up to 5 s) until `n` connections are parked.
async fn until_parked(admin: SocketAddr, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = parked(admin).await;
        if now == n {
            return;
        }
        assert!(Instant::now() < deadline, "{now} connections parked, not {n}, after 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn https(portico: &Portico, cert: &TestCert) -> Client {
    Client::https(portico.addr(0), "app.test", &cert.roots(), &["http/1.1"]).await.unwrap()
}

/// A raw TLS connection (ALPN http/1.1) for byte-level requests.
async fn raw_tls(portico: &Portico, cert: &TestCert) -> TlsStream<tokio::net::TcpStream> {
    Connect::to(portico.addr(0)).tls("app.test", cert.roots()).tls_stream().await.unwrap()
}

/// Reads one response with a Content-Length body from `stream`; returns its head and body.
async fn read_response(stream: &mut TlsStream<tokio::net::TcpStream>) -> (String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the response head: {:?}", String::from_utf8_lossy(&data));
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).expect("a Content-Length").trim().parse().unwrap();
    while data.len() < head_end + length {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed inside the body");
        data.extend_from_slice(&buf[..n]);
    }
    (head, data[head_end..].to_vec())
}

#[tokio::test]
async fn an_idle_connection_is_parked_and_serves_its_next_requests() {
    let Setup { backend, cert, portico, admin } = setup("").await;
    let mut client = https(&portico, &cert).await;

    for round in 0..3 {
        let reply = client.get("app.test", "/").await.unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "app"), "round {round}");
        until_parked(admin, 1).await;
    }
    let reply = client.get("app.test", "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    // One client connection carried all four: the hyper client would fail a
    // request on a connection portico had closed.
    assert_eq!(backend.count(), 4);
    portico.shutdown().await;
}

#[tokio::test]
async fn a_parked_connection_serves_the_site_of_a_later_reload() {
    let first = TestBackend::spawn("first").await;
    let second = TestBackend::spawn("second").await;
    let cert = TestCert::new(&["app.test"]);
    let mut portico = start_portico(&config(&first, Some(&cert), "")).await;
    let admin = portico.admin_addr();
    let mut client = https(&portico, &cert).await;
    assert_eq!(client.get("app.test", "/").await.unwrap().text(), "first");
    until_parked(admin, 1).await;

    portico.reload(&config(&second, Some(&cert), "")).unwrap();
    let admin = portico.admin_addr();
    assert_eq!(parked(admin).await, 1, "the reload closed the parked connection");
    assert_eq!(client.get("app.test", "/").await.unwrap().text(), "second");
    portico.shutdown().await;
}

#[tokio::test]
async fn a_parked_connection_closes_at_the_keepalive_timeout() {
    let Setup { backend: _backend, cert, portico, admin } = setup("keepalive_timeout = \"1500ms\"").await;
    let mut client = https(&portico, &cert).await;
    assert_eq!(client.get("app.test", "/").await.unwrap().status, StatusCode::OK);
    let answered = Instant::now();
    until_parked(admin, 1).await;

    tokio::time::timeout(Duration::from_secs(5), client.closed()).await.expect("the parked connection stayed open");
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_millis(1200) && idle < Duration::from_secs(3), "closed after {idle:?} idle");
    until_parked(admin, 0).await;
    portico.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_parked_connections_at_once() {
    let Setup { backend: _backend, cert, portico, admin } = setup("shutdown_timeout = \"20s\"").await;
    let mut stream = raw_tls(&portico, &cert).await;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"app");
    until_parked(admin, 1).await;

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), portico.shutdown())
        .await
        .expect("shutdown waited for the parked connection");
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
    // A TLS close_notify, then the end of the stream.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?} after {rest:?}");
}

#[tokio::test]
async fn a_request_head_that_pauses_is_not_parked() {
    let Setup { backend, cert, portico, admin } = setup("").await;
    let mut stream = raw_tls(&portico, &cert).await;

    // The first request and one on a kept-alive connection: hyper handles
    // them in different states.
    for round in 0..2 {
        stream.write_all(b"GET /first HTTP/1.1\r\nHost: app.te").await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(PAUSE).await;
        assert_eq!(parked(admin).await, 0, "round {round}: parked with half a head read");
        stream.write_all(b"st\r\n\r\n").await.unwrap();
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("http/1.1 200"), "round {round}: {head}");
        assert!(!head.contains("connection: close"), "round {round}: {head}");
        assert_eq!(body, b"app");
    }
    stream.write_all(b"GET /last HTTP/1.1\r\nHost: app.test\r\n\r\n").await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(backend.count(), 3);
    portico.shutdown().await;
}

#[tokio::test]
async fn an_upload_that_pauses_arrives_whole() {
    let Setup { backend, cert, portico, admin } = setup("").await;
    let mut client = https(&portico, &cert).await;

    let (chunks, receiver) = tokio::sync::mpsc::channel(4);
    let request = client.request(Method::POST, "app.test", "/").body(body::channel(receiver)).unwrap();
    let sender = tokio::spawn(async move {
        chunks.send(Bytes::from_static(b"first part, ")).await.unwrap();
        tokio::time::sleep(PAUSE).await;
        let during = parked(admin).await;
        chunks.send(Bytes::from_static(b"second part")).await.unwrap();
        during
    });
    let reply = Reply::read(client.send(request).await.unwrap()).await.unwrap();
    assert_eq!(sender.await.unwrap(), 0, "parked while the request body was coming");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(backend.requests()[0].body_len, Some(23));
    assert_eq!(client.get("app.test", "/").await.unwrap().status, StatusCode::OK);
    portico.shutdown().await;
}

#[tokio::test]
async fn a_response_that_pauses_arrives_whole() {
    let Setup { backend: _backend, cert, portico, admin } = setup("").await;
    let mut client = https(&portico, &cert).await;

    let request = client.request(Method::GET, "app.test", "/trickle?chunks=3&ms=700").body(body::empty()).unwrap();
    let mut response = client.send(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut received = Vec::new();
    while let Some(frame) = response.body_mut().frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received.extend_from_slice(&data);
            assert_eq!(parked(admin).await, 0, "parked while the response was coming");
        }
    }
    assert_eq!(String::from_utf8(received).unwrap(), "chunk 0\nchunk 1\nchunk 2\n");
    // Its last byte was written just now: a connection parks only after a
    // quiet 250 ms. Parked already, hyper was told to close mid-response.
    assert_eq!(parked(admin).await, 0, "parked as soon as the paused response ended");
    assert_eq!(client.get("app.test", "/").await.unwrap().status, StatusCode::OK);
    portico.shutdown().await;
}

#[tokio::test]
async fn a_client_slow_to_read_gets_the_whole_response() {
    let Setup { backend: _backend, cert, portico, admin } = setup("").await;
    let mut client = https(&portico, &cert).await;

    // Far more than the socket buffers hold: portico waits on the client.
    let len = 16 * 1024 * 1024;
    let request = client.request(Method::GET, "app.test", &format!("/big?bytes={len}")).body(body::empty()).unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::sleep(PAUSE).await;
    assert_eq!(parked(admin).await, 0, "parked while the response waited for the client");
    assert_eq!(verify_pattern(response.into_body()).await.unwrap(), len);
    assert_eq!(client.get("app.test", "/").await.unwrap().status, StatusCode::OK);
    portico.shutdown().await;
}

#[tokio::test]
async fn the_end_of_a_response_waiting_for_the_client_arrives_whole() {
    let Setup { backend: _backend, cert, portico, .. } = setup("").await;
    // A small receive window, and a pause near the end: the upstream body
    // has been passed on whole while its end still waits in portico's
    // buffers (hyper's, rustls's, the socket's) for the client.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(portico.addr(0)).await.unwrap();
    let mut stream = Connect::to(portico.addr(0)).tls("app.test", cert.roots()).tls_over(tcp).await.unwrap();
    let len = 4 * 1024 * 1024;
    let pause_at = len - 256 * 1024;
    stream.write_all(format!("GET /big?bytes={len} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes()).await.unwrap();
    let mut data = Vec::with_capacity(len + 1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut head_end = None;
    let mut paused = false;
    while head_end.is_none_or(|end| data.len() < end + len) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("stalled after {} bytes", data.len()))
            .unwrap();
        assert!(n > 0, "closed after {} bytes", data.len());
        data.extend_from_slice(&buf[..n]);
        head_end = head_end.or_else(|| data.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4));
        if !paused && head_end.is_some_and(|end| data.len() >= end + pause_at) {
            paused = true;
            tokio::time::sleep(PAUSE).await;
        }
    }
    let head_end = head_end.unwrap();
    assert!(data.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&data[..head_end]));
    assert_eq!(data.len(), head_end + len);
    let period = body::pattern_bytes(len);
    assert!(data[head_end..] == period[..], "the body differs from what the backend sent");
    stream.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"app");
    portico.shutdown().await;
}

#[tokio::test]
async fn an_idle_plain_connection_is_parked_too() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, None, "")).await;
    let admin = portico.admin_addr();
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    for round in 0..2 {
        let reply = client.get("app.test", "/").await.unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "app"), "round {round}");
        until_parked(admin, 1).await;
    }
    assert_eq!(client.get("app.test", "/").await.unwrap().status, StatusCode::OK);
    assert_eq!(backend.count(), 3);
    portico.shutdown().await;
}

#[tokio::test]
async fn a_plain_connection_that_sends_nothing_closes_at_the_keepalive_timeout() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, None, "keepalive_timeout = \"500ms\"")).await;
    let mut stream = tokio::net::TcpStream::connect(portico.addr(0)).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?}");
    let open = started.elapsed();
    assert!(open >= Duration::from_millis(400) && open < Duration::from_secs(3), "closed after {open:?}");
    portico.shutdown().await;
}

#[tokio::test]
async fn blank_lines_between_requests_do_not_stop_parking_or_the_next_request() {
    let Setup { backend, cert, portico, admin } = setup("").await;
    let mut stream = raw_tls(&portico, &cert).await;
    // Some clients send a CRLF after a request; a parser skips empty lines
    // before a request line (RFC 9112 section 2.2). hyper may hold them unread
    // when the connection parks: they are handed to the next hyper connection.
    stream.write_all(b"GET /one HTTP/1.1\r\nHost: app.test\r\n\r\n").await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    stream.write_all(b"\r\n").await.unwrap();
    until_parked(admin, 1).await;
    stream.write_all(b"GET /two HTTP/1.1\r\nHost: app.test\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"app");
    let paths: Vec<String> = backend.requests().iter().map(|r| r.uri.path().to_owned()).collect();
    assert_eq!(paths, ["/one", "/two"]);
    portico.shutdown().await;
}

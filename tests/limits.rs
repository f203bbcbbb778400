//! Client-side limits (issue 7): header read timeout (slowloris), idle
//! keep-alive timeout, request body size (and the lingering close after a 413
//! cuts an upload short), concurrent connections, h2 streams per connection
//! and the h2 rapid-reset guard.
//!
//! What `src/listener.rs` configures: a head timer of `client_header_timeout`
//! (checked every 250 ms while a head is arriving and no request is being
//! answered; waiting for the next request, the connection parks and is ended
//! at the same limit), `max_buf_size` =
//! `max_request_header_size`, h2 `max_header_list_size`; `max_connections` is a
//! semaphore taken before `accept`. h2 streams and resets are hyper's defaults:
//! 200 concurrent streams, h2's 20 pending-accept resets per connection.
//! `keepalive_timeout` is the shorter limit for idle HTTP/1 connections
//! (with `client_header_timeout`) and the idle limit of h2 connections, which
//! portico closes with GOAWAY once no stream has been open that long.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(backend: SocketAddr, runtime: &str) -> String {
    AppConfig::new(backend).server_name("a.test").runtime(runtime).build()
}

/// Waits until the peer closes `stream` (EOF or reset); `None` if it is still
/// open after `within`. Discards what arrives.
async fn closed_after(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A connection to `addr` that has had one `GET /` answered 200 and stays open.
async fn kept_alive_after_one_request(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(raw_status(&buf[..n]), Some(200), "{}", String::from_utf8_lossy(&buf[..n]));
    stream
}

#[tokio::test]
async fn slowloris_is_cut_at_client_header_timeout() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), r#"client_header_timeout = "500ms""#)).await;
    let mut stream = tokio::net::TcpStream::connect(portico.addr(0)).await.unwrap();
    let head = b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut cut_at = None;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            cut_at = Some(started.elapsed());
            break;
        }
        // A read that ends means the server closed (or answered 408 and closed).
        let mut buf = [0u8; 1024];
        if let Ok(result) = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            assert!(!matches!(result, Ok(n) if n > 0 && raw_status(&buf[..n]).is_some_and(|s| s != 408)));
            cut_at = Some(started.elapsed());
            break;
        }
    }
    let cut_at = cut_at.expect("the slow head was never cut off");
    assert!(cut_at >= Duration::from_millis(400) && cut_at < Duration::from_secs(2), "cut after {cut_at:?}");
    assert_eq!(backend.count(), 0);
    // Others are served meanwhile and after.
    assert_eq!(Client::http1(portico.addr(0)).await.unwrap().get("a.test", "/").await.unwrap().status, StatusCode::OK);
    portico.shutdown().await;
}

/// A half-sent head on a kept-alive connection does not hold up a drain:
/// the connection ends with the drain (hyper's graceful shutdown does not
/// wait for a request it has not read whole), not at `shutdown_timeout`.
#[tokio::test]
async fn half_sent_head_does_not_hold_up_a_drain() {
    let backend = TestBackend::spawn("app").await;
    let runtime = "client_header_timeout = \"500ms\"\nshutdown_timeout = \"20s\"";
    let portico = start_portico(&config(backend.addr(), runtime)).await;
    // A whole request first: the connection is being served, not accepted.
    let mut stream = kept_alive_after_one_request(portico.addr(0)).await;
    stream.write_all(b"GET /second HTTP/1.1\r\nHost: a.te").await.unwrap();
    let started = Instant::now();
    let shutdown = tokio::spawn(portico.shutdown());
    let closed = closed_after(&mut stream, Duration::from_secs(5)).await.expect("the slow head outlived the drain");
    assert!(closed < Duration::from_secs(2), "closed after {closed:?}");
    tokio::time::timeout(Duration::from_secs(5), shutdown).await.expect("shutdown waited on the slow head").unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "shutdown took {:?}", started.elapsed());
    assert_eq!(backend.count(), 1);
}

/// A drain closes an idle kept-alive connection at once, and lets requests
/// in flight finish, on either HTTP/1 server (portico's loop serves the GET,
/// hyper the POST with its body): each answer says `connection: close` and
/// its connection closes after it, long before `shutdown_timeout`.
#[tokio::test]
async fn a_drain_closes_idle_connections_and_answers_those_in_flight_with_close() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), "shutdown_timeout = \"20s\"")).await;
    let mut idle = kept_alive_after_one_request(portico.addr(0)).await;
    let mut getting = kept_alive_after_one_request(portico.addr(0)).await;
    let mut posting = kept_alive_after_one_request(portico.addr(0)).await;
    getting.write_all(b"GET /slow?ms=500 HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
    posting.write_all(b"POST /slow?ms=500 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n\r\nbody").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.count() < 5 {
        assert!(Instant::now() < deadline, "the slow requests never reached the backend");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let shutdown = tokio::spawn(portico.shutdown());
    let closed = closed_after(&mut idle, Duration::from_secs(5)).await.expect("the idle connection outlived the drain");
    assert!(closed < Duration::from_millis(400), "idle connection closed after {closed:?}");
    for (busy, method) in [(&mut getting, "GET"), (&mut posting, "POST")] {
        let answer = read_until_close(busy, Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert_eq!(raw_status(&answer), Some(200), "{method}: {text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{method}: {text}");
    }
    tokio::time::timeout(Duration::from_secs(5), shutdown).await.expect("the drain waited too long").unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "shutdown took {:?}", started.elapsed());
}

/// The head timer stops when the head is complete: a body may take longer.
#[tokio::test]
async fn slow_request_body_is_not_cut_at_client_header_timeout() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), r#"client_header_timeout = "300ms""#)).await;
    let mut stream = tokio::net::TcpStream::connect(portico.addr(0)).await.unwrap();
    stream.write_all(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 12\r\n\r\n").await.unwrap();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(b"x").await.unwrap();
    }
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(raw_status(&buf[..n]), Some(200), "{}", String::from_utf8_lossy(&buf[..n]));
    assert_eq!(backend.last().body_len, Some(12));
    portico.shutdown().await;
}

/// A pipelined head behind a request in flight is not timed until hyper
/// reads it, after the answer before it, as with hyper's own header timer.
#[tokio::test]
async fn pipelined_head_is_not_timed_while_the_request_before_it_is_served() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), r#"client_header_timeout = "300ms""#)).await;
    let mut stream = tokio::net::TcpStream::connect(portico.addr(0)).await.unwrap();
    stream
        .write_all(b"GET /slow?ms=1200 HTTP/1.1\r\nHost: a.test\r\n\r\nGET /second HTTP/1.1\r\nHost: a.te")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"app") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the first answer: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(raw_status(&got), Some(200), "{}", String::from_utf8_lossy(&got));
    stream.write_all(b"st\r\n\r\n").await.unwrap();
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(raw_status(&buf[..n]), Some(200), "{}", String::from_utf8_lossy(&buf[..n]));
    assert_eq!(backend.last().uri, "/second");
    portico.shutdown().await;
}

#[tokio::test]
async fn idle_keepalive_connection_is_closed_after_client_header_timeout() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), r#"client_header_timeout = "300ms""#)).await;
    let mut stream = kept_alive_after_one_request(portico.addr(0)).await;
    let closed = closed_after(&mut stream, Duration::from_secs(3)).await.expect("idle connection left open");
    assert!(closed >= Duration::from_millis(200) && closed < Duration::from_secs(2), "closed after {closed:?}");
    portico.shutdown().await;
}

#[tokio::test]
async fn idle_keepalive_connection_is_closed_after_keepalive_timeout() {
    let backend = TestBackend::spawn("app").await;
    let runtime = "client_header_timeout = \"10s\"\nkeepalive_timeout = \"300ms\"";
    let portico = start_portico(&config(backend.addr(), runtime)).await;
    let mut stream = kept_alive_after_one_request(portico.addr(0)).await;
    let closed = closed_after(&mut stream, Duration::from_secs(3)).await;
    assert!(closed.is_some_and(|c| c < Duration::from_secs(2)), "idle connection closed after {closed:?}, not ~300ms");
    portico.shutdown().await;
}

#[tokio::test]
async fn body_over_client_max_body_size_is_413() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), r#"client_max_body_size = "1k""#)).await;

    // Declared length: refused before anything goes upstream.
    let mut request = b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2000\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 2000));
    let response = raw_request_within(portico.addr(0), &request, Duration::from_secs(3)).await;
    assert_eq!(raw_status(&response), Some(413), "{}", String::from_utf8_lossy(&response));
    assert_eq!(backend.count(), 0);

    // Chunked: found out while streaming; the backend never gets a whole body.
    let mut request = b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        request.extend_from_slice(b"1f4\r\n");
        request.extend(std::iter::repeat_n(b'y', 500));
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = raw_request_within(portico.addr(0), &request, Duration::from_secs(3)).await;
    assert_eq!(raw_status(&response), Some(413), "{}", String::from_utf8_lossy(&response));
    assert!(backend.requests().iter().all(|r| r.body_len.is_none_or(|n| n <= 1024)), "{:?}", backend.requests());

    // At the limit: fine.
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let reply = client.post("a.test", "/", body::full(vec![b'z'; 1024])).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(backend.last().body_len, Some(1024));
    portico.shutdown().await;
}

/// A 413 to an upload still coming: portico answers, shuts its side, and
/// reads what the client still sends for a moment before closing (nginx's
/// lingering close). The client sees the answer, then a clean end; closing
/// with the upload unread would send a reset, which can destroy an answer
/// not yet read (and breaks the client's next write here).
#[tokio::test]
async fn answer_cutting_an_upload_short_ends_without_a_reset() {
    const LEN: usize = 4 << 20;
    const WITHIN: Duration = Duration::from_secs(10);
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), r#"client_max_body_size = "1k""#)).await;

    let stream = tokio::net::TcpStream::connect(portico.addr(0)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let uploader = tokio::spawn(async move {
        let head = format!("POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: {LEN}\r\n\r\n");
        write.write_all(head.as_bytes()).await?;
        let piece = vec![b'x'; 64 * 1024];
        for _ in 0..LEN / piece.len() {
            write.write_all(&piece).await?;
        }
        // Kept open: portico's close must not wait for the client's.
        std::io::Result::Ok(write)
    });
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 4096];
    let end = loop {
        match tokio::time::timeout(WITHIN, read.read(&mut buf)).await.expect("the answer did not end") {
            Ok(0) => break Ok(()),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    assert_eq!(raw_status(&answer), Some(413), "{}", String::from_utf8_lossy(&answer));
    assert!(end.is_ok(), "the connection ended with {end:?}, not a FIN");
    let write = uploader.await.unwrap().expect("the upload's writes failed: the connection was reset");
    drop(write);
    assert_eq!(backend.count(), 0);
    portico.shutdown().await;
}

#[tokio::test]
async fn connections_over_max_connections_wait_in_the_backlog() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), "max_connections = 4")).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut client = Client::http1(portico.addr(0)).await.unwrap();
        assert_eq!(client.get("a.test", "/").await.unwrap().status, StatusCode::OK);
        held.push(client);
    }
    // The fifth connects (the kernel completes the handshake) but is not served.
    let mut fifth = tokio::net::TcpStream::connect(portico.addr(0)).await.unwrap();
    fifth.write_all(b"GET /fifth HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let early = read_until_close(&mut fifth, Duration::from_millis(500)).await;
    assert!(early.is_empty(), "served over max_connections: {}", String::from_utf8_lossy(&early));
    assert_eq!(backend.count(), 4);

    // One closes: the fifth is accepted and served.
    drop(held.pop());
    let started = Instant::now();
    let response = read_until_close(&mut fifth, Duration::from_secs(3)).await;
    assert_eq!(raw_status(&response), Some(200), "{}", String::from_utf8_lossy(&response));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(backend.last().uri.path(), "/fifth");
    // The held ones still work.
    for client in &mut held {
        assert_eq!(client.get("a.test", "/").await.unwrap().status, StatusCode::OK);
    }
    portico.shutdown().await;
}

/// What the h2 idle tests configure: a short keep-alive limit, and a
/// client_header_timeout that would not end anything by itself.
const H2_IDLE: &str = "client_header_timeout = \"10s\"\nkeepalive_timeout = \"300ms\"";

/// `GET path` on an h2 connection: 200, and the whole body.
async fn h2_ok(sender: &mut H2Sender, path: &str) -> bytes::Bytes {
    let response = sender.send_request(h2_get(path)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.into_body().collect().await.unwrap().to_bytes()
}

/// Closed at the 300 ms limit of `H2_IDLE`: not before it (less the timer's
/// slack), and well before 2 s.
fn assert_closed_at_the_limit(after: Duration) {
    assert!(after >= Duration::from_millis(250) && after < Duration::from_secs(2), "closed after {after:?}");
}

/// How long from now until the client's connection task ends (the server
/// closed), or `None` if it is still running after 3 s.
async fn ended_after(conn: H2Task) -> Option<(Duration, Result<(), hyper::Error>)> {
    let since = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(3), conn).await.ok()?;
    Some((since.elapsed(), result.unwrap()))
}

/// A backend, portico with `H2_IDLE`, and an h2c connection to it.
async fn h2_idle_setup() -> (TestBackend, Portico, H2Sender, H2Task) {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), H2_IDLE)).await;
    let (sender, conn) = h2c(portico.addr(0)).await;
    (backend, portico, sender, conn)
}

#[tokio::test]
async fn idle_h2c_connection_is_closed_after_keepalive_timeout() {
    let (_backend, portico, mut sender, conn) = h2_idle_setup().await;
    h2_ok(&mut sender, "/").await;
    let (after, result) = ended_after(conn).await.expect("idle h2 connection left open");
    // GOAWAY, then a clean close: not an error for the client.
    assert!(result.is_ok(), "{result:?}");
    assert_closed_at_the_limit(after);
    portico.shutdown().await;
}

#[tokio::test]
async fn idle_h2_connection_over_tls_is_closed_after_keepalive_timeout() {
    let backend = TestBackend::spawn("app").await;
    let cert = TestCert::new(&["a.test"]);
    let toml = AppConfig::new(backend.addr()).server_name("a.test").runtime(H2_IDLE).tls(Some(&cert)).build();
    let portico = start_portico(&toml).await;
    let mut client = Client::https(portico.addr(0), "a.test", &cert.roots(), &["h2"]).await.unwrap();
    assert_eq!(client.version(), http::Version::HTTP_2);
    assert_eq!(client.get("a.test", "/").await.unwrap().status, StatusCode::OK);
    let answered = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), client.closed()).await.expect("idle h2 connection left open");
    assert_closed_at_the_limit(answered.elapsed());
    portico.shutdown().await;
}

/// PINGs are not requests: a client that keeps pinging an idle connection
/// does not keep it open.
#[tokio::test]
async fn h2_pings_do_not_keep_an_idle_connection_open() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), H2_IDLE)).await;
    let tcp = tokio::net::TcpStream::connect(portico.addr(0)).await.unwrap();
    let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(50))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    h2_ok(&mut sender, "/").await;
    let (after, _) = ended_after(conn).await.expect("pings kept an idle h2 connection open");
    assert_closed_at_the_limit(after);
    portico.shutdown().await;
}

/// Idle means no stream: a response that streams for longer than the limit,
/// and one that takes longer than the limit to begin, both finish.
#[tokio::test]
async fn h2_connection_with_a_stream_in_flight_is_not_idle() {
    let (_backend, portico, mut sender, conn) = h2_idle_setup().await;
    let body = h2_ok(&mut sender, "/trickle?chunks=6&ms=150").await;
    assert_eq!(body.as_ref(), b"chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\nchunk 5\n");
    h2_ok(&mut sender, "/slow?ms=900").await;
    // And once idle, it closes.
    let (after, _) = ended_after(conn).await.expect("idle h2 connection left open");
    assert!(after < Duration::from_secs(2), "closed after {after:?}");
    portico.shutdown().await;
}

/// Short requests that come more often than the limit keep the connection,
/// even though none is open at the moment of most checks.
#[tokio::test]
async fn h2_connection_with_requests_more_often_than_the_limit_stays_open() {
    let (backend, portico, mut sender, conn) = h2_idle_setup().await;
    for i in 0..8 {
        h2_ok(&mut sender, &format!("/?i={i}")).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(!conn.is_finished(), "closed while requests kept coming");
    assert_eq!(backend.count(), 8);
    portico.shutdown().await;
}

type H2Sender = http2::SendRequest<Body>;
type H2Task = tokio::task::JoinHandle<Result<(), hyper::Error>>;

/// h2 with prior knowledge over plain TCP (hyper-util's auto server speaks both).
async fn h2c(addr: SocketAddr) -> (H2Sender, H2Task) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    (sender, tokio::spawn(conn))
}

fn h2_get(path: &str) -> Request<Body> {
    Request::get(format!("http://a.test{path}")).body(body::empty()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h2_streams_over_the_concurrency_limit_are_served_or_refused_cleanly() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), "")).await;
    let (sender, _conn) = h2c(portico.addr(0)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let mut sender = sender.clone();
        tasks.spawn(async move {
            sender.ready().await?;
            let response = sender.send_request(h2_get(&format!("/slow?ms=200&i={i}"))).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<StatusCode, hyper::Error>(status)
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(status) => {
                assert_eq!(status, StatusCode::OK);
                ok += 1;
            }
            // REFUSED_STREAM is a clean refusal.
            Err(e) => {
                assert!(format!("{e:?}").contains("REFUSED_STREAM"), "{e:?}");
                refused += 1;
            }
        }
    }
    assert_eq!(ok + refused, 300);
    assert_eq!(backend.count(), ok, "every answered stream went upstream once");
    assert!(ok >= 200, "{ok} served, {refused} refused");
    // Still serving.
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    assert_eq!(client.get("a.test", "/").await.unwrap().status, StatusCode::OK);
    portico.shutdown().await;
}

/// The other half of rapid reset: streams that portico has accepted and
/// forwarded, then reset by the client. Each costs an upstream request, so a
/// connection that abandons far more requests than it lets finish is ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h2_streams_reset_after_acceptance_end_the_connection() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), "")).await;
    let (mut sender, conn) = h2c(portico.addr(0)).await;
    let mut opened = 0;
    for i in 0..400 {
        if sender.ready().await.is_err() {
            break;
        }
        let before = backend.count();
        let mut response = Box::pin(sender.send_request(h2_get(&format!("/slow?ms=2000&i={i}"))));
        // Reset only once the request has reached the backend: accepted work.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut answered = false;
        while backend.count() == before && !answered && Instant::now() < deadline {
            answered = tokio::time::timeout(Duration::from_millis(1), &mut response).await.is_ok();
        }
        drop(response);
        opened += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !conn.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("accepted-then-reset: {opened} streams, backend saw {}", backend.count());
    assert!(opened < 400 && conn.is_finished(), "{opened} accepted streams reset without the connection ending");
    assert!(backend.count() <= 150, "{} abandoned requests reached the backend", backend.count());

    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    assert_eq!(client.get("a.test", "/").await.unwrap().status, StatusCode::OK);
    portico.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h2_rapid_reset_is_bounded_and_others_are_served() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), "")).await;
    let (mut sender, conn) = h2c(portico.addr(0)).await;
    let started = Instant::now();
    let mut opened = 0;
    for i in 0..5000 {
        if sender.ready().await.is_err() {
            break;
        }
        // Dispatch the request (HEADERS), then drop it: RST_STREAM(CANCEL).
        let mut response = Box::pin(sender.send_request(h2_get(&format!("/slow?ms=100&i={i}"))));
        let _ = tokio::time::timeout(Duration::ZERO, &mut response).await;
        drop(response);
        opened += 1;
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let attack = started.elapsed();
    // Let what was forwarded arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = backend.count();
    eprintln!(
        "rapid reset: {opened} streams in {attack:?}, connection finished: {}, backend saw {seen}",
        conn.is_finished()
    );
    assert!(seen <= 1000, "{seen} of {opened} reset streams reached the backend");
    // The guard: the attacking connection is ended (GOAWAY) long before 5000.
    assert!(opened < 5000 && conn.is_finished(), "{opened} streams opened and reset without a GOAWAY");

    // Others are served, on h1 and on a fresh h2 connection.
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    assert_eq!(client.get("a.test", "/").await.unwrap().status, StatusCode::OK);
    let (mut h2, _conn) = h2c(portico.addr(0)).await;
    h2.ready().await.unwrap();
    assert_eq!(h2.send_request(h2_get("/")).await.unwrap().status(), StatusCode::OK);
    portico.shutdown().await;
}

//! Upstream timeouts and failures: 504 on silence, 502 when nothing listens;
//! the timeouts limit silence, not the total time of an answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::*;

/// One plain server proxying to `server` (a single-server pool); `upstream`
/// and `server_extra` go into the `[upstream.app]` and `[[server]]` tables.
fn config(server: SocketAddr, upstream: &str, server_extra: &str) -> String {
    AppConfig::new(server).upstream(upstream).server(server_extra).build()
}

/// `GET path` on a fresh connection: the reply and how long it took.
async fn timed_get(portico: &Portico, path: &str) -> (Reply, Duration) {
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let started = Instant::now();
    let reply = client.get("app.test", path).await.unwrap();
    (reply, started.elapsed())
}

#[tokio::test]
async fn silent_backend_times_out_with_504() {
    let silent = SilentBackend::spawn().await;
    let portico = start_portico(&config(silent.addr(), r#"read_timeout = "300ms""#, "")).await;

    let (reply, took) = timed_get(&portico, "/").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "504 after {took:?}");
    assert!(silent.accepted() >= 1);
}

#[tokio::test]
async fn server_read_timeout_overrides_the_upstreams() {
    // Lower: the server's 300ms wins over the upstream's 60s.
    let silent = SilentBackend::spawn().await;
    let portico = start_portico(&config(silent.addr(), r#"read_timeout = "60s""#, r#"read_timeout = "300ms""#)).await;
    let (reply, took) = timed_get(&portico, "/").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "504 after {took:?}");

    // Higher: the server's 3s wins over the upstream's 300ms.
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), r#"read_timeout = "300ms""#, r#"read_timeout = "3s""#)).await;
    let (reply, took) = timed_get(&portico, "/slow?ms=800").await;
    assert_eq!(reply.status, StatusCode::OK, "after {took:?}");
    assert_eq!(reply.text(), "app");
}

#[tokio::test]
async fn slow_answer_within_read_timeout_is_200() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), r#"read_timeout = "3s""#, "")).await;

    let (reply, took) = timed_get(&portico, "/slow?ms=1000").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "app");
    assert!(took >= Duration::from_millis(1000), "{took:?}");
}

#[tokio::test]
async fn read_timeout_limits_silence_not_the_total() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), r#"read_timeout = "500ms""#, "")).await;

    // Eight chunks 150 ms apart: 1.2 s in all, never 500 ms of silence.
    let (reply, took) = timed_get(&portico, "/trickle?chunks=8&ms=150").await;
    assert_eq!(reply.status, StatusCode::OK);
    let expected: String = (0..8).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(reply.text(), expected);
    assert!(took >= Duration::from_millis(1200), "{took:?}");
}

#[tokio::test]
async fn body_stalled_longer_than_read_timeout_is_cut_off() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), r#"read_timeout = "300ms""#, "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let request = client.request(Method::GET, "app.test", "/trickle?chunks=3&ms=1500").body(body::empty()).unwrap();
    let started = Instant::now();
    let response = client.send(request).await.unwrap();
    // The head came at once; the body then stalls for 1.5 s.
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect()).await.expect("ended");
    let took = started.elapsed();
    assert!(body.is_err(), "a body cut off by read_timeout must not look complete: {body:?}");
    assert!(took < Duration::from_millis(1400), "cut off after {took:?}, not after 300ms of silence");
}

#[tokio::test]
async fn stopped_backend_is_502() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(backend.addr(), "", "")).await;
    assert_eq!(timed_get(&portico, "/").await.0.status, StatusCode::OK);

    backend.stop().await;

    for _ in 0..3 {
        let (reply, took) = timed_get(&portico, "/").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert!(took < Duration::from_secs(3), "502 after {took:?}");
    }
}

#[tokio::test]
async fn address_nobody_listens_on_is_502() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let portico = start_portico(&config(addr, "", "")).await;

    let (reply, took) = timed_get(&portico, "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(took < Duration::from_secs(3), "502 after {took:?}");
    // A request with a body too.
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let reply = client.post("app.test", "/upload", pattern(100_000)).await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
}

/// A listener whose accept queue is full: Linux drops further SYNs, so a
/// connect hangs. `None` if this system answers them anyway.
async fn unreachable_listener() -> Option<(tokio::net::TcpListener, Vec<tokio::net::TcpStream>, SocketAddr)> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(_)) => return None,
            Err(_) => return Some((listener, fillers, addr)),
        }
    }
    None
}

#[tokio::test]
async fn connect_timeout_is_504() {
    let Some((_listener, _fillers, addr)) = unreachable_listener().await else {
        eprintln!("skipped: connects to a full accept queue do not hang here");
        return;
    };
    let portico = start_portico(&config(addr, r#"connect_timeout = "300ms""#, "")).await;

    let (reply, took) = timed_get(&portico, "/").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "504 after {took:?}");
}

//! WebSocket upgrades tunnelled through portico, plain and TLS, without any
//! extra configuration; the tunnel closes with either side or when idle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One server proxying to `backend`; TLS with `cert` when given.
fn config(backend: &TestBackend, cert: Option<&TestCert>, upstream_extra: &str) -> String {
    AppConfig::new(backend.addr()).upstream(upstream_extra).tls(cert).build()
}

/// Round trips of several sizes, then a large transfer written and read at once.
async fn echo_both_ways(ws: &mut WebSocket) {
    for (i, size) in [1usize, 5, 100, 1000, 16 * 1024, 70_000].into_iter().enumerate() {
        let message: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8).collect();
        ws.io.write_all(&message).await.unwrap();
        ws.io.flush().await.unwrap();
        let mut got = vec![0u8; size];
        tokio::time::timeout(Duration::from_secs(5), ws.io.read_exact(&mut got))
            .await
            .expect("echo within 5 s")
            .unwrap();
        assert_eq!(got, message, "round trip {i} ({size} bytes)");
    }

    let big = body::pattern_bytes(2 << 20);
    let (mut reader, mut writer) = tokio::io::split(&mut ws.io);
    let write = async {
        writer.write_all(&big).await.unwrap();
        writer.flush().await.unwrap();
    };
    let read = async {
        let mut got = vec![0u8; big.len()];
        reader.read_exact(&mut got).await.unwrap();
        got
    };
    let ((), got) = tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(write, read) })
        .await
        .expect("2 MiB echoed within 20 s");
    assert!(got == big, "the 2 MiB echo differs");
}

fn check_upgrade_seen(backend: &TestBackend, ws: &WebSocket) {
    let seen = backend.last();
    assert_eq!(seen.uri, "/chat/ws");
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert!(seen.header("connection").unwrap_or("").to_ascii_lowercase().contains("upgrade"), "{:?}", seen.headers);
    assert!(seen.header("sec-websocket-key").is_some());
    assert_eq!(seen.header("sec-websocket-version"), Some("13"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(
        ws.headers.get("upgrade").map(|v| v.to_str().unwrap().to_ascii_lowercase()).as_deref(),
        Some("websocket")
    );
    assert_eq!(ws.headers.get("x-backend").map(|v| v.to_str().unwrap()), Some("app"));
}

#[tokio::test]
async fn websocket_through_a_plain_listener() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, None, "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    // `websocket` requires 101 and the right Sec-WebSocket-Accept.
    let mut ws = client.websocket("app.test", "/chat/ws").await.unwrap();
    check_upgrade_seen(&backend, &ws);
    assert_eq!(backend.open_tunnels(), 1);
    echo_both_ways(&mut ws).await;
}

#[tokio::test]
async fn websocket_through_a_tls_listener() {
    let backend = TestBackend::spawn("app").await;
    let cert = TestCert::new(&["app.test"]);
    let portico = start_portico(&config(&backend, Some(&cert), "")).await;
    let mut client = Client::https(portico.addr(0), "app.test", &cert.roots(), &["http/1.1"]).await.unwrap();

    let mut ws = client.websocket("app.test", "/chat/ws").await.unwrap();
    check_upgrade_seen(&backend, &ws);
    echo_both_ways(&mut ws).await;
}

#[tokio::test]
async fn closing_the_client_closes_the_tunnel() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, None, "")).await;

    // Half-close: the backend sees the end, closes its side, the client sees EOF.
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let mut ws = client.websocket("app.test", "/ws").await.unwrap();
    ws.io.write_all(b"last words").await.unwrap();
    ws.io.shutdown().await.unwrap();
    let rest = read_until_close(&mut ws.io, Duration::from_secs(5)).await;
    assert_eq!(rest, b"last words");
    eventually("backend tunnel closed after the client's half-close", Duration::from_secs(5), || {
        backend.open_tunnels() == 0
    })
    .await;

    // Dropping the client's connection altogether.
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let mut ws = client.websocket("app.test", "/ws").await.unwrap();
    ws.io.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    ws.io.read_exact(&mut got).await.unwrap();
    assert_eq!(backend.open_tunnels(), 1);
    drop(ws);
    drop(client);
    eventually("backend tunnel closed after the client went away", Duration::from_secs(5), || {
        backend.open_tunnels() == 0
    })
    .await;
}

#[tokio::test]
async fn closing_the_backend_closes_the_client_side() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, None, "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let mut ws = client.websocket("app.test", "/ws").await.unwrap();
    ws.io.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    ws.io.read_exact(&mut got).await.unwrap();

    backend.stop().await;

    let started = Instant::now();
    let rest = read_until_close(&mut ws.io, Duration::from_secs(5)).await;
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "client side still open {:?} after the backend closed",
        started.elapsed()
    );
}

#[tokio::test]
async fn idle_tunnel_is_closed_after_read_timeout() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, None, "read_timeout = \"300ms\"")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let mut ws = client.websocket("app.test", "/ws").await.unwrap();

    // Traffic keeps it open past the timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ws.io.write_all(b"tick").await.unwrap();
        let mut got = [0u8; 4];
        ws.io.read_exact(&mut got).await.unwrap();
    }
    // ...silence closes it.
    let started = Instant::now();
    let rest = read_until_close(&mut ws.io, Duration::from_secs(5)).await;
    let idle = started.elapsed();
    assert!(rest.is_empty());
    assert!(idle >= Duration::from_millis(250) && idle < Duration::from_secs(3), "closed after {idle:?} of silence");
    eventually("backend tunnel closed after the idle timeout", Duration::from_secs(5), || backend.open_tunnels() == 0)
        .await;
}

#[tokio::test]
async fn upgrade_refused_by_the_backend_is_passed_on() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, None, "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    // The backend answers 200 (not 101) on this path: no tunnel, plain answer.
    let error = client.websocket("app.test", "/not-a-socket").await.err().expect("no 101");
    assert!(error.to_string().contains("200"), "{error}");
    assert_eq!(backend.open_tunnels(), 0);
    // The same connection then serves ordinary requests.
    let reply = client.get("app.test", "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
}

//! The test support helpers against each other, without portico: if these
//! fail, no other integration test means anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn backend_answers_with_its_name_and_records_the_request() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();

    let reply = client.get_with("api.test:8443", "/some/path?q=1", &[("x-probe", "42")]).await.unwrap();

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "alpha");
    assert_eq!(reply.header("x-backend"), Some("alpha"));
    assert_eq!(backend.count(), 1);
    let seen = backend.last();
    assert_eq!(seen.method, Method::GET);
    assert_eq!(seen.uri, "/some/path?q=1");
    assert_eq!(seen.header("host"), Some("api.test:8443"));
    assert_eq!(seen.header("x-probe"), Some("42"));
    assert_eq!(seen.peer, client.local_addr());
    assert_eq!(seen.body_len, Some(0));
    assert_eq!(seen.sni, None);
}

#[tokio::test]
async fn backend_keeps_connections_alive_and_counts_them() {
    let backend = TestBackend::spawn("alpha").await;
    let mut first = Client::http1(backend.addr()).await.unwrap();
    first.get("a", "/1").await.unwrap();
    first.get("a", "/2").await.unwrap();
    let mut second = Client::http1(backend.addr()).await.unwrap();
    second.get("a", "/3").await.unwrap();

    assert_eq!(backend.count(), 3);
    assert_eq!(backend.connections(), 2);
    let conns: Vec<u64> = backend.requests().iter().map(|s| s.conn).collect();
    assert_eq!(conns, [0, 0, 1]);
}

#[tokio::test]
async fn client_binds_the_requested_source_address() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Connect::to(backend.addr()).source_ip("127.0.1.5").connect().await.unwrap();
    client.get("a", "/").await.unwrap();
    assert_eq!(backend.last().peer.ip().to_string(), "127.0.1.5");
}

#[tokio::test]
async fn echo_streams_a_mebibyte_back() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();

    let request = client.request(Method::POST, "a", "/echo").body(pattern(1 << 20)).unwrap();
    let response = client.send(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(verify_pattern(response.into_body()).await.unwrap(), 1 << 20);
    assert_eq!(backend.last().body_len, None);
}

#[tokio::test]
async fn other_paths_read_the_request_body_before_answering() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();
    let reply = client.post("a", "/upload", pattern(300_000)).await.unwrap();
    assert_eq!(reply.text(), "alpha");
    assert_eq!(backend.last().body_len, Some(300_000));
    // The connection is still usable after a body the handler did not echo.
    assert_eq!(client.get("a", "/").await.unwrap().text(), "alpha");
}

#[tokio::test]
async fn big_streams_the_requested_number_of_pattern_bytes() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();
    let n: u64 = 5 * 64 * 1024 + 123;

    let request = client.request(Method::GET, "a", &format!("/big?bytes={n}")).body(body::empty()).unwrap();
    let response = client.send(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"].to_str().unwrap(), n.to_string());
    assert_eq!(verify_pattern(response.into_body()).await.unwrap(), n);
}

#[tokio::test]
async fn verify_pattern_notices_a_wrong_byte() {
    let mut bytes = body::pattern_bytes(70_000);
    bytes[66_000] ^= 1;
    let error = verify_pattern(http_body_util::Full::new(bytes::Bytes::from(bytes))).await.unwrap_err();
    assert!(error.to_string().contains("66000"), "{error}");
}

#[tokio::test]
async fn login_sets_a_fresh_session_cookie() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();

    let first = client.get("a", "/login").await.unwrap();
    let second = client.get("a", "/app/login").await.unwrap();

    let cookie = first.header("set-cookie").unwrap();
    assert!(cookie.starts_with("JSESSIONID="), "{cookie}");
    assert!(cookie.ends_with("; Path=/; HttpOnly"), "{cookie}");
    let id = &cookie["JSESSIONID=".len()..cookie.find(';').unwrap()];
    assert_eq!(id.len(), 32);
    assert_ne!(second.header("set-cookie"), Some(cookie));
    assert_eq!(client.get("a", "/").await.unwrap().header("set-cookie"), None);
}

#[tokio::test]
async fn status_and_slow_paths() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();

    let reply = client.get("a", "/status/503").await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.text(), "alpha");
    let reply = client.get("a", "/api/status/404").await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    let started = Instant::now();
    let reply = client.get("a", "/slow?ms=300").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn tls_backend_serves_its_test_certificate() {
    let cert = TestCert::new(&["localhost", "api.test"]);
    assert!(std::fs::read_to_string(cert.cert_path()).unwrap().contains("BEGIN CERTIFICATE"));
    assert!(std::fs::read_to_string(cert.key_path()).unwrap().contains("PRIVATE KEY"));
    assert!(std::fs::read_to_string(cert.ca_path()).unwrap().contains("BEGIN CERTIFICATE"));
    let backend = TestBackend::spawn_tls("secure", &cert).await;

    let mut client = Client::https(backend.addr(), "api.test", &cert.roots(), &["http/1.1"]).await.unwrap();
    let reply = client.get("api.test", "/").await.unwrap();

    assert_eq!(reply.text(), "secure");
    assert_eq!(client.peer_certificate(), Some(cert.der()));
    assert_eq!(client.tls().unwrap().alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(backend.last().sni.as_deref(), Some("api.test"));
}

#[tokio::test]
async fn tls_client_rejects_a_certificate_it_does_not_trust() {
    let served = TestCert::new(&["api.test"]);
    let other = TestCert::new(&["api.test"]);
    let backend = TestBackend::spawn_tls("secure", &served).await;

    let untrusted = Client::https(backend.addr(), "api.test", &other.roots(), &[]).await;
    assert!(untrusted.is_err());
    let wrong_name = Client::https(backend.addr(), "other.test", &served.roots(), &[]).await;
    assert!(wrong_name.is_err());

    let mut insecure = Connect::to(backend.addr()).tls_insecure("other.test").connect().await.unwrap();
    assert_eq!(insecure.peer_certificate(), Some(served.der()));
    assert_eq!(insecure.get("x", "/").await.unwrap().text(), "secure");
}

#[tokio::test]
async fn websocket_upgrade_then_raw_echo() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();

    let mut ws = client.websocket("a", "/ws").await.unwrap();
    ws.io.write_all(b"hello over the tunnel").await.unwrap();
    let mut got = [0u8; 21];
    ws.io.read_exact(&mut got).await.unwrap();

    assert_eq!(&got, b"hello over the tunnel");
    assert_eq!(ws.headers["x-backend"], "alpha");
    assert_eq!(backend.last().header("upgrade"), Some("websocket"));
}

#[tokio::test]
async fn ws_path_without_upgrade_headers_is_a_bad_request() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();
    assert_eq!(client.get("a", "/ws").await.unwrap().status, StatusCode::BAD_REQUEST);
}

#[test]
fn websocket_accept_matches_rfc_6455() {
    assert_eq!(websocket::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(
        websocket::base64(&websocket::sha1(b"abc")),
        websocket::base64(&[
            0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50, 0xc2, 0x6c, 0x9c, 0xd0,
            0xd8, 0x9d
        ])
    );
    assert_eq!(websocket::base64(b"f"), "Zg==");
    assert_eq!(websocket::base64(b"fo"), "Zm8=");
    assert_eq!(websocket::base64(b"foo"), "Zm9v");
}

#[tokio::test]
async fn stopped_backend_refuses_and_drops_its_connections() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();
    client.get("a", "/").await.unwrap();

    backend.stop().await;

    assert!(client.get("a", "/").await.is_err());
    assert!(Client::http1(backend.addr()).await.is_err());
}

#[tokio::test]
async fn silent_backend_accepts_and_never_answers() {
    let silent = SilentBackend::spawn().await;
    let response =
        raw_request_within(silent.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Duration::from_millis(300)).await;
    assert!(response.is_empty());
    assert_eq!(silent.accepted(), 1);
}

#[tokio::test]
async fn raw_request_reads_until_the_server_closes() {
    let backend = TestBackend::spawn("alpha").await;
    let response = raw_request(backend.addr(), b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&response), Some(200));
    assert!(response.ends_with(b"alpha"));
}

#[tokio::test]
async fn temp_dirs_are_unique_and_removed() {
    let a = TempDir::new("x");
    let b = TempDir::new("x");
    assert_ne!(a.path(), b.path());
    let path = a.path().to_path_buf();
    assert!(path.is_dir());
    drop(a);
    assert!(!path.exists());
}

/// The h2 client path, against a bare hyper h2 server (portico's own h2 is
/// tested elsewhere): ALPN picks h2 and the request carries `:authority`.
#[tokio::test]
async fn https_client_speaks_h2_when_the_server_picks_it() {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let cert = TestCert::new(&["api.test"]);
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cert.server_config(&["h2"])));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let authority = req.uri().authority().map(|a| a.to_string());
            let text = format!("{:?} {}", req.version(), authority.unwrap_or_default());
            Ok::<_, std::convert::Infallible>(http::Response::new(body::full(text)))
        });
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tls), service)
            .await
            .unwrap();
    });

    let mut client = Client::https(addr, "api.test", &cert.roots(), &["h2", "http/1.1"]).await.unwrap();
    assert_eq!(client.version(), http::Version::HTTP_2);
    let reply = client.get("api.test", "/x").await.unwrap();
    assert_eq!(reply.version, http::Version::HTTP_2);
    assert_eq!(reply.text(), "HTTP/2.0 api.test");
}

#[tokio::test]
async fn headers_path_sets_the_requested_response_headers() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();
    let reply = client.get("a", "/x/headers?set=X-One:1&set=Keep-Alive:timeout%3D5&set=X-One:2&other=1").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "alpha");
    assert_eq!(reply.headers_all("x-one"), ["1", "2"]);
    assert_eq!(reply.header("keep-alive"), Some("timeout=5"));
}

#[tokio::test]
async fn trickle_sends_chunks_after_silences() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();
    let started = Instant::now();
    let reply = client.get("a", "/trickle?chunks=3&ms=100").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "chunk 0\nchunk 1\nchunk 2\n");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.header("content-length"), None);
}

#[tokio::test]
async fn open_tunnels_counts_upgraded_connections_until_closed() {
    let backend = TestBackend::spawn("alpha").await;
    let mut client = Client::http1(backend.addr()).await.unwrap();
    let mut ws = client.websocket("a", "/ws").await.unwrap();
    ws.io.write_all(b"x").await.unwrap();
    let mut got = [0u8; 1];
    ws.io.read_exact(&mut got).await.unwrap();
    assert_eq!(backend.open_tunnels(), 1);
    drop(ws);
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.open_tunnels() != 0 {
        assert!(Instant::now() < deadline, "tunnel still counted after the client closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

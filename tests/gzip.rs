//! `gzip` (nginx's `gzip on`): upstream responses compressed for clients that
//! accept it, as they stream, over HTTP/1.1 and h2; what is left alone, and a
//! location's own setting replacing the server's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    decoder.write_all(bytes).unwrap();
    decoder.finish().unwrap()
}

const GZIP: &[(&str, &str)] = &[("accept-encoding", "deflate, gzip;q=0.8")];

async fn start(backend: &TestBackend, cert: &TestCert) -> Portico {
    let toml = AppConfig::new(backend.addr())
        .tls(Some(cert))
        .server(
            r#"gzip = true

[[server.location]]
prefix = "/plain/"
proxy_pass = "app"
gzip = false

[[server.location]]
prefix = "/json/"
proxy_pass = "app"
gzip = { types = ["application/json"], min_length = "1k", level = 9 }"#,
        )
        .build();
    start_portico(&toml).await
}

#[tokio::test]
async fn compresses_what_the_client_accepts() {
    let cert = TestCert::new(&["app.test"]);
    let backend = TestBackend::spawn("app").await;
    let portico = start(&backend, &cert).await;
    for alpn in [&["http/1.1"][..], &["h2"]] {
        let mut client = Client::https(portico.addr(0), "app.test", &cert.roots(), alpn).await.unwrap();
        let mut get =
            async |path: &str, headers: &[(&str, &str)]| client.get_with("app.test", path, headers).await.unwrap();

        // 200 KB of text, accepted: compressed, whole, and marked so.
        let reply = get("/big?bytes=200000&set=Content-Type:text/plain;charset=utf-8", GZIP).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "{alpn:?}");
        assert_eq!(reply.header("content-length"), None, "{alpn:?}");
        assert_eq!(reply.header("vary"), Some("Accept-Encoding"), "{alpn:?}");
        assert!(reply.body.len() < 200_000 / 4, "{} bytes", reply.body.len());
        assert_eq!(gunzip(&reply.body), body::pattern_bytes(200_000), "{alpn:?}");

        // Not accepted: as the upstream sent it, still marked as varying.
        for refused in [&[][..], &[("accept-encoding", "gzip;q=0, br")]] {
            let reply = get("/big?bytes=5000&set=Content-Type:text/plain", refused).await;
            assert_eq!(reply.header("content-encoding"), None, "{refused:?}");
            assert_eq!(reply.header("vary"), Some("Accept-Encoding"), "{refused:?}");
            assert_eq!(reply.body.len(), 5000);
        }

        // Left alone: a type not listed, a body shorter than min_length, one
        // already encoded, one marked no-transform.
        for path in [
            "/big?bytes=5000&set=Content-Type:image/png",
            "/headers?set=Content-Type:text/html",
            "/big?bytes=5000&set=Content-Type:text/plain&set=Content-Encoding:br",
            "/big?bytes=5000&set=Content-Type:text/plain&set=Cache-Control:public,%20no-transform",
        ] {
            let reply = get(path, GZIP).await;
            assert_ne!(reply.header("content-encoding"), Some("gzip"), "{path}");
            assert_eq!(reply.body.len(), if path.starts_with("/headers") { 3 } else { 5000 }, "{path}");
        }

        // A strong validator turns weak; Accept-Ranges goes.
        let reply =
            get("/big?bytes=5000&set=Content-Type:text/css&set=ETag:%22v1%22&set=Accept-Ranges:bytes", GZIP).await;
        assert_eq!(reply.header("content-encoding"), Some("gzip"));
        assert_eq!(reply.header("etag"), Some("W/\"v1\""));
        assert_eq!(reply.header("accept-ranges"), None);

        // A location's own setting replaces the server's.
        let reply = get("/plain/big?bytes=5000&set=Content-Type:text/plain", GZIP).await;
        assert_eq!(reply.header("content-encoding"), None);
        assert_eq!(reply.header("vary"), None);
        let reply = get("/json/big?bytes=5000&set=Content-Type:application/json", GZIP).await;
        assert_eq!(reply.header("content-encoding"), Some("gzip"));
        assert_eq!(gunzip(&reply.body), body::pattern_bytes(5000));
        let reply = get("/json/big?bytes=5000&set=Content-Type:text/plain", GZIP).await;
        assert_eq!(reply.header("content-encoding"), None, "text/plain is not in the location's types");
        let reply = get("/json/big?bytes=5000&set=Content-Type:text/html", GZIP).await;
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "text/html always is, as with nginx");
        let reply = get("/json/big?bytes=1000&set=Content-Type:application/json", GZIP).await;
        assert_eq!(reply.header("content-encoding"), None, "shorter than the location's min_length");

        // HEAD gets the head it would get uncompressed.
        let request = client
            .request(Method::HEAD, "app.test", "/big?bytes=5000&set=Content-Type:text/plain")
            .header("accept-encoding", "gzip")
            .body(body::empty())
            .unwrap();
        let reply = client.reply(request).await.unwrap();
        assert_eq!(reply.header("content-encoding"), None);
        assert_eq!(reply.header("content-length"), Some("5000"));
    }
    portico.shutdown().await;
}

/// A server-sent event stream of three pieces, 100 ms apart, from portico at
/// `addr`, asking for gzip.
async fn event_stream(addr: std::net::SocketAddr, cert: &TestCert) -> http::Response<hyper::body::Incoming> {
    let mut client = Client::https(addr, "app.test", &cert.roots(), &["http/1.1"]).await.unwrap();
    let request = client
        .request(Method::GET, "app.test", "/trickle?chunks=3&ms=100&set=Content-Type:text/event-stream")
        .header("accept-encoding", "gzip")
        .body(body::empty())
        .unwrap();
    client.send(request).await.unwrap()
}

/// Each piece the upstream sends reaches the client at once, compressed and
/// decodable, not when the body ends: a trickling answer keeps its pace.
#[tokio::test]
async fn a_trickling_body_is_flushed_piece_by_piece() {
    let cert = TestCert::new(&["app.test"]);
    let backend = TestBackend::spawn("app").await;
    let portico = start(&backend, &cert).await;
    // text/event-stream is not a default type: add it to the server's list.
    let response = event_stream(portico.addr(0), &cert).await;
    assert_eq!(response.headers().get("content-encoding"), None);
    drop(response);
    portico.shutdown().await;

    let toml =
        AppConfig::new(backend.addr()).tls(Some(&cert)).server(r#"gzip = { types = ["text/event-stream"] }"#).build();
    let portico = start_portico(&toml).await;
    let response = event_stream(portico.addr(0), &cert).await;
    assert_eq!(response.headers().get("content-encoding").unwrap(), "gzip");
    let mut body = response.into_body();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut seen = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else { continue };
        decoder.write_all(&data).unwrap();
        decoder.flush().unwrap();
        let text = String::from_utf8(decoder.get_ref().clone()).unwrap();
        seen.push(text);
    }
    decoder.try_finish().unwrap();
    // The first chunk was readable before the second was sent.
    assert_eq!(seen.first().map(String::as_str), Some("chunk 0\n"), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("chunk 0\nchunk 1\nchunk 2\n"), "{seen:?}");
    portico.shutdown().await;
}

/// HTTP/1.0 clients get no chunked body, and a compressed body's length is
/// known only at its end: they get it as it is (nginx's gzip_http_version 1.1).
#[tokio::test]
async fn http_1_0_is_answered_uncompressed() {
    let backend = TestBackend::spawn("app").await;
    let toml = AppConfig::new(backend.addr()).server("gzip = true").build();
    let portico = start_portico(&toml).await;
    let mut stream = tokio::net::TcpStream::connect(portico.addr(0)).await.unwrap();
    stream
        .write_all(b"GET /big?bytes=3000&set=Content-Type:text/plain HTTP/1.0\r\nHost: app.test\r\nAccept-Encoding: gzip\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.0 200") || text.starts_with("http/1.1 200"), "{text}");
    assert!(!text.contains("content-encoding"), "{text}");
    assert!(text.contains("content-length: 3000"), "{text}");
    portico.shutdown().await;
}

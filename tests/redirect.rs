//! Answers portico makes itself: server redirects, `return` locations, and
//! longest-prefix location matching.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use support::*;

async fn redirecting(extra: &str) -> Portico {
    start_portico(&format!(
        r#"
[[server]]
listen = ["127.0.0.1:0"]
server_name = ["example.test"]
redirect = "https://example.test$request_uri"
{extra}
"#
    ))
    .await
}

#[tokio::test]
async fn redirect_is_301_and_keeps_path_and_query() {
    let portico = redirecting("").await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    for (path, location) in [
        ("/", "https://example.test/"),
        ("/a/b/c", "https://example.test/a/b/c"),
        ("/search?q=rust&page=2", "https://example.test/search?q=rust&page=2"),
        ("/p%20q;jsessionid=1?x=%2F", "https://example.test/p%20q;jsessionid=1?x=%2F"),
    ] {
        let reply = client.get("example.test", path).await.unwrap();
        assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY, "{path}");
        assert_eq!(reply.header("location"), Some(location), "{path}");
    }

    // Other methods are redirected as well, with the same Location.
    let reply = client.post("example.test", "/form?id=7", body::full("a=1")).await.unwrap();
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(reply.header("location"), Some("https://example.test/form?id=7"));
}

#[tokio::test]
async fn redirect_status_308() {
    let portico = redirecting("redirect_status = 308").await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let reply = client.get("example.test", "/x?y=1").await.unwrap();
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.header("location"), Some("https://example.test/x?y=1"));
}

#[tokio::test]
async fn redirect_answers_an_http1_0_request_without_host() {
    let portico = redirecting("").await;
    let response = raw_request(portico.addr(0), b"GET /old?k=v HTTP/1.0\r\n\r\n").await;
    let text = String::from_utf8_lossy(&response);
    assert_eq!(raw_status(&response), Some(301), "{text}");
    assert!(text.to_ascii_lowercase().contains("\r\nlocation: https://example.test/old?k=v\r\n"), "{text}");
}

async fn locations(backend: &TestBackend) -> Portico {
    start_portico(&format!(
        r#"
[upstream.app]
servers = ["{}"]

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["app.test"]

[[server.location]]
prefix = "/"
proxy_pass = "app"

[[server.location]]
prefix = "/internal/"
return = 403

[[server.location]]
prefix = "/internal/public/"
proxy_pass = "app"

[[server.location]]
prefix = "/gone"
return = 410

[[server.location]]
prefix = "/moved/"
redirect = "https://new.test$request_uri"
redirect_status = 302
"#,
        backend.addr()
    ))
    .await
}

#[tokio::test]
async fn return_answers_without_the_backend() {
    let backend = TestBackend::spawn("app").await;
    let portico = locations(&backend).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let reply = client.get("app.test", "/internal/secret").await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_ne!(reply.header("x-backend"), Some("app"));
    let reply = client.get("app.test", "/gone/forever").await.unwrap();
    assert_eq!(reply.status, StatusCode::GONE);
    let reply = client.get("app.test", "/moved/here?x=1").await.unwrap();
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(reply.header("location"), Some("https://new.test/moved/here?x=1"));
    assert_eq!(backend.count(), 0, "the backend saw {:?}", backend.requests());

    // The connection is still good for a proxied request afterwards.
    assert_eq!(client.get("app.test", "/").await.unwrap().text(), "app");
    assert_eq!(backend.count(), 1);

    // A request body is not passed on either.
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let reply = client.post("app.test", "/internal/upload", pattern(50_000)).await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(backend.count(), 1);
}

/// After answering a request with a body it did not read (here `return = 403`),
/// portico must either keep the connection usable (read and discard the body,
/// as nginx does) or say `Connection: close`; closing silently makes the
/// client's next request on the kept-alive connection fail.
#[tokio::test]
async fn direct_answer_to_a_request_with_a_body_keeps_the_connection_or_says_close() {
    let backend = TestBackend::spawn("app").await;
    let portico = locations(&backend).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let reply = client.post("app.test", "/internal/upload", pattern(50_000)).await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let announced_close =
        reply.headers_all("connection").iter().any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
    if !announced_close {
        let next = client.get("app.test", "/").await;
        assert!(
            next.is_ok(),
            "403 without Connection: close, then the next request on the connection failed: {:?}",
            next.err()
        );
    }
}

#[tokio::test]
async fn longest_prefix_wins() {
    let backend = TestBackend::spawn("app").await;
    let portico = locations(&backend).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    for (path, status) in [
        ("/", StatusCode::OK),
        ("/app/x", StatusCode::OK),
        ("/internal", StatusCode::OK),
        ("/internalx", StatusCode::OK),
        ("/internal/", StatusCode::FORBIDDEN),
        ("/internal/a/b", StatusCode::FORBIDDEN),
        ("/internal/public", StatusCode::FORBIDDEN),
        ("/internal/public/", StatusCode::OK),
        ("/internal/public/page?x=1", StatusCode::OK),
        ("/gone", StatusCode::GONE),
        ("/goner", StatusCode::GONE),
        ("/moved", StatusCode::OK),
    ] {
        let reply = client.get("app.test", path).await.unwrap();
        assert_eq!(reply.status, status, "{path}");
    }
    let proxied: Vec<String> = backend.requests().iter().map(|s| s.uri.to_string()).collect();
    assert_eq!(
        proxied,
        ["/", "/app/x", "/internal", "/internalx", "/internal/public/", "/internal/public/page?x=1", "/moved"]
    );
}

#[tokio::test]
async fn a_request_matching_no_location_is_404() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&format!(
        r#"
[upstream.app]
servers = ["{}"]

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["app.test"]

[[server.location]]
prefix = "/api/"
proxy_pass = "app"
"#,
        backend.addr()
    ))
    .await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    for path in ["/", "/api", "/other/api/", "/API/x"] {
        let reply = client.get("app.test", path).await.unwrap();
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(backend.count(), 0);
    let reply = client.get("app.test", "/api/v1").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(backend.last().uri, "/api/v1");
}

//! `[server.response_headers]`: headers set on every response a server sends
//! (nginx's `add_header ... always`), on proxied answers and on portico's own,
//! and `""` removing the upstream's header of that name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use support::*;

const HEADERS: &str = "[server.response_headers]\n\
    Strict-Transport-Security = \"max-age=63072000; includeSubDomains\"\n\
    X-Frame-Options = \"DENY\"\n\
    X-Backend = \"\"\n";

#[tokio::test]
async fn response_headers_are_set_on_proxied_and_own_answers_over_http1_and_h2() {
    let backend = TestBackend::spawn("app").await;
    let cert = TestCert::new(&["app.test"]);
    let mut toml = AppConfig::new(backend.addr())
        .tls(Some(&cert))
        .server("[[server.location]]\nprefix = \"/blocked/\"\nreturn = 403\n")
        .build();
    // A second server on the listener, that only redirects, sets its own.
    toml = toml.replacen("[[server.location]]", &format!("{HEADERS}\n[[server.location]]"), 1);
    toml += &format!(
        "\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"old.test\"]\ntls = {}\n\
         redirect = \"https://app.test$request_uri\"\n[server.response_headers]\nX-Frame-Options = \"SAMEORIGIN\"\n",
        cert.toml_tls()
    );
    let portico = start_portico(&toml).await;
    let addr = portico.addr(0);

    for alpn in [&["http/1.1"][..], &["h2"]] {
        let mut client = Connect::to(addr).tls("app.test", cert.roots()).alpn(alpn).connect().await.unwrap();
        // Proxied: the backend's X-Backend is removed, the others added.
        let reply = client.get("app.test", "/").await.unwrap();
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, "app".to_owned()), "{alpn:?}");
        assert_eq!(reply.header("strict-transport-security"), Some("max-age=63072000; includeSubDomains"));
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        assert_eq!(reply.header("x-backend"), None, "{alpn:?}: the upstream's header was not removed");
        // portico's own answer: a return (and, below, the other server's
        // redirect with its own set).
        let reply = client.get("app.test", "/blocked/x").await.unwrap();
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{alpn:?}");
        assert_eq!(reply.header("strict-transport-security"), Some("max-age=63072000; includeSubDomains"));
    }
    let mut client = Connect::to(addr).tls("app.test", cert.roots()).connect().await.unwrap();
    let reply = client.get("old.test", "/a?b").await.unwrap();
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(reply.header("location"), Some("https://app.test/a?b"));
    assert_eq!(reply.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(reply.header("strict-transport-security"), None, "one server's headers leaked to another's");
}

#[tokio::test]
async fn an_upstream_header_of_the_same_name_is_replaced_not_doubled() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(
        &AppConfig::new(backend.addr()).server("[server.response_headers]\nX-Backend = \"portico\"\n").build(),
    )
    .await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let reply = client.get("app.test", "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers_all("x-backend"), ["portico"]);
}

/// `[server.location.response_headers]` replaces the server's for the
/// requests that location takes (as nginx's add_header in a location does),
/// proxied or answered by portico; other locations keep the server's.
#[tokio::test]
async fn a_location_s_own_response_headers_replace_the_server_s() {
    let backend = TestBackend::spawn("app").await;
    let toml = AppConfig::new(backend.addr())
        .server(&format!(
            "{HEADERS}\n[[server.location]]\nprefix = \"/api/\"\nproxy_pass = \"app\"\n\
             [server.location.response_headers]\nAccess-Control-Allow-Origin = \"*\"\n\n\
             [[server.location]]\nprefix = \"/gone/\"\nreturn = 410\n\
             [server.location.response_headers]\nCache-Control = \"no-store\"\n\n\
             [[server.location]]\nprefix = \"/plain/\"\nreturn = 204\n"
        ))
        .build();
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let api = client.get("app.test", "/api/users").await.unwrap();
    assert_eq!(api.status, StatusCode::OK);
    assert_eq!(api.header("access-control-allow-origin"), Some("*"));
    assert_eq!(api.header("x-frame-options"), None, "the server's are replaced, not added to");
    assert_eq!(api.header("x-backend"), Some("app"), "nor is the server's removal applied");

    let gone = client.get("app.test", "/gone/x").await.unwrap();
    assert_eq!((gone.status, gone.header("cache-control")), (StatusCode::GONE, Some("no-store")));
    assert_eq!(gone.header("strict-transport-security"), None);

    for path in ["/plain/x", "/"] {
        let reply = client.get("app.test", path).await.unwrap();
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}: the server's");
        assert_eq!(reply.header("access-control-allow-origin"), None, "{path}");
    }
}

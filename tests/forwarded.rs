//! What the backend sees: the default X-Forwarded-* set, `[server.headers]`
//! rules, hop-by-hop headers removed both ways, and `trusted_proxies`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use http::StatusCode;
use support::*;

/// One plain server on `127.0.0.1:0` proxying to `backend`; `extra` goes into
/// the `[[server]]` table, `runtime` into `[runtime]`.
fn config(backend: &TestBackend, runtime: &str, extra: &str) -> String {
    AppConfig::new(backend.addr()).runtime(runtime).server(extra).build()
}

fn header_names(seen: &Seen) -> BTreeSet<String> {
    seen.headers.keys().map(|k| k.as_str().to_owned()).collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

const DEFAULT_SET: [&str; 6] =
    ["host", "x-forwarded-host", "x-forwarded-server", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"];

#[tokio::test]
async fn backend_sees_exactly_the_default_set() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, "", "")).await;
    let port = portico.addr(0).port();

    let response =
        raw_request(portico.addr(0), b"GET /p?q=1 HTTP/1.1\r\nHost: API.Test:8080\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&response), Some(200), "{}", String::from_utf8_lossy(&response));

    let seen = backend.last();
    assert_eq!(header_names(&seen), names(&DEFAULT_SET), "{:?}", seen.headers);
    assert_eq!(seen.uri, "/p?q=1");
    assert_eq!(seen.header("host"), Some("API.Test:8080"));
    assert_eq!(seen.header("x-forwarded-host"), Some("api.test"));
    assert_eq!(seen.header("x-forwarded-server"), Some("api.test"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-port"), Some(port.to_string().as_str()));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

#[tokio::test]
async fn default_set_appends_to_incoming_forwarded_for_and_replaces_the_rest() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, "", "")).await;
    let port = portico.addr(0).port();
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let reply = client
        .get_with(
            "app.test",
            "/",
            &[
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Port", "1"),
                ("X-Forwarded-Host", "evil.test"),
                ("X-Custom", "kept"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);

    let seen = backend.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-port"), Some(port.to_string().as_str()));
    assert_eq!(seen.header("x-forwarded-host"), Some("app.test"));
    assert_eq!(seen.header("x-custom"), Some("kept"));
    for name in DEFAULT_SET {
        assert_eq!(seen.headers.get_all(name).iter().count(), 1, "{name} once: {:?}", seen.headers);
    }
}

#[tokio::test]
async fn forwarded_for_ends_with_the_clients_address() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, "", "")).await;

    let mut client = Connect::to(portico.addr(0)).source_ip("127.0.1.5").connect().await.unwrap();
    client.get("app.test", "/").await.unwrap();
    assert_eq!(backend.last().header("x-forwarded-for"), Some("127.0.1.5"));

    client.get_with("app.test", "/", &[("x-forwarded-for", "203.0.113.9, 198.51.100.1")]).await.unwrap();
    assert_eq!(backend.last().header("x-forwarded-for"), Some("203.0.113.9, 198.51.100.1, 127.0.1.5"));
}

#[tokio::test]
async fn https_listener_sends_https_proto_and_its_port() {
    let backend = TestBackend::spawn("app").await;
    let cert = TestCert::new(&["app.test"]);
    let portico = start_portico(&config(&backend, "", &format!("tls = {}", cert.toml_tls()))).await;
    let port = portico.addr(0).port();

    for alpn in [&["http/1.1"][..], &["h2"][..]] {
        let mut client = Client::https(portico.addr(0), "app.test", &cert.roots(), alpn).await.unwrap();
        let reply = client.get("app.test", "/secure").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        let seen = backend.last();
        assert_eq!(header_names(&seen), names(&DEFAULT_SET), "{alpn:?}: {:?}", seen.headers);
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{alpn:?}");
        assert_eq!(seen.header("x-forwarded-port"), Some(port.to_string().as_str()), "{alpn:?}");
        assert_eq!(seen.header("x-forwarded-host"), Some("app.test"), "{alpn:?}");
        assert_eq!(seen.header("host"), Some("app.test"), "{alpn:?}");
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "{alpn:?}");
    }
}

#[tokio::test]
async fn custom_headers_table_replaces_the_default_set() {
    let backend = TestBackend::spawn("app").await;
    let headers = r#"
[server.headers]
X-Forwarded-Port = "443"
X-Real-IP = "$remote_addr"
X-Drop = ""
X-Info = "$scheme://$http_host$request_uri on $server_port"
X-Session = "$cookie_JSESSIONID"
X-Agent = "$http_user_agent"
X-Client-Port = "$remote_port"
"#;
    let portico = start_portico(&config(&backend, "", headers)).await;
    let port = portico.addr(0).port();
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    client
        .get_with(
            "app.test:8080",
            "/x?y=1",
            &[("X-Drop", "secret"), ("Cookie", "a=1; JSESSIONID=abc123; b=2"), ("User-Agent", "probe/1.0")],
        )
        .await
        .unwrap();

    let seen = backend.last();
    let client_port = client.local_addr().port().to_string();
    assert_eq!(
        header_names(&seen),
        names(&[
            "host",
            "cookie",
            "user-agent",
            "x-forwarded-port",
            "x-real-ip",
            "x-info",
            "x-session",
            "x-agent",
            "x-client-port"
        ]),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("host"), Some("app.test:8080"));
    assert_eq!(seen.header("x-forwarded-port"), Some("443"));
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-drop"), None);
    assert_eq!(seen.header("x-info"), Some(format!("http://app.test:8080/x?y=1 on {port}").as_str()));
    assert_eq!(seen.header("x-session"), Some("abc123"));
    assert_eq!(seen.header("x-agent"), Some("probe/1.0"));
    assert_eq!(seen.header("x-client-port"), Some(client_port.as_str()));

    // A variable that renders empty removes the header too.
    client.get_with("app.test", "/", &[("X-Session", "forged")]).await.unwrap();
    let seen = backend.last();
    assert_eq!(seen.header("x-session"), None, "{:?}", seen.headers);
    assert_eq!(seen.header("x-agent"), None);
}

#[tokio::test]
async fn request_line_clock_and_connection_variables_reach_the_backend() {
    let backend = TestBackend::spawn("app").await;
    let headers = r#"
[server.headers]
Host = "$http_host"
X-Request-Start = "t=${msec}"
X-Line = "$request_method $uri ? $args ($server_protocol)"
X-Page = "$arg_page"
X-Local = "$server_addr #$connection"
"#;
    let portico = start_portico(&config(&backend, "", headers)).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    client.get("app.test", "/apis/list?limit=5&Page=3").await.unwrap();
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let seen = backend.last();
    // New Relic's and Datadog's queue time header: the moment portico passed the request on.
    let start: f64 = seen.header("x-request-start").unwrap().strip_prefix("t=").unwrap().parse().unwrap();
    assert!(start >= before - 0.001 && start <= after, "{start} not in {before}..{after}");
    assert_eq!(seen.header("x-line"), Some("GET /apis/list ? limit=5&Page=3 (HTTP/1.1)"));
    assert_eq!(seen.header("x-page"), Some("3"));
    let local = seen.header("x-local").unwrap().to_owned();
    assert!(local.starts_with("127.0.0.1 #") && local[11..].parse::<u64>().is_ok(), "{local}");
    // The same connection's next request: the same number.
    client.get("app.test", "/").await.unwrap();
    assert_eq!(backend.last().header("x-local"), Some(local.as_str()));
    assert_eq!(backend.last().header("x-page"), None);
}

#[tokio::test]
async fn hop_by_hop_request_headers_do_not_reach_the_backend() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, "", "")).await;

    let request = b"GET /hop HTTP/1.1\r\n\
        Host: app.test\r\n\
        Connection: close, X-Secret\r\n\
        Connection: X-Other\r\n\
        X-Secret: 1\r\n\
        X-Other: 2\r\n\
        Keep-Alive: timeout=5\r\n\
        TE: trailers\r\n\
        Trailer: X-Checksum\r\n\
        Upgrade: h2c\r\n\
        Proxy-Connection: keep-alive\r\n\
        X-Kept: yes\r\n\
        \r\n";
    let response = raw_request(portico.addr(0), request).await;
    assert_eq!(raw_status(&response), Some(200), "{}", String::from_utf8_lossy(&response));

    let seen = backend.last();
    for name in ["connection", "x-secret", "x-other", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"] {
        assert_eq!(seen.headers.get(name), None, "{name} reached the backend: {:?}", seen.headers);
    }
    assert_eq!(seen.header("x-kept"), Some("yes"));
}

#[tokio::test]
async fn hop_by_hop_response_headers_do_not_reach_the_client() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, "", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let path = "/headers?set=Connection:X-Resp-Secret&set=X-Resp-Secret:1&set=Keep-Alive:timeout%3D5\
                &set=Proxy-Connection:keep-alive&set=Trailer:X-Sum&set=Upgrade:h2c&set=X-Kept:yes";
    // Without portico the backend does send them all.
    let mut direct = Client::http1(backend.addr()).await.unwrap();
    let reply = direct.get("app.test", path).await.unwrap();
    for name in ["connection", "x-resp-secret", "keep-alive", "proxy-connection", "trailer", "upgrade"] {
        assert!(reply.headers.contains_key(name), "backend did not send {name}: {:?}", reply.headers);
    }

    let reply = client.get("app.test", path).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "app");
    for name in ["connection", "x-resp-secret", "keep-alive", "proxy-connection", "trailer", "upgrade"] {
        assert_eq!(reply.headers.get(name), None, "{name} reached the client: {:?}", reply.headers);
    }
    assert_eq!(reply.header("x-kept"), Some("yes"));
    assert_eq!(reply.header("x-backend"), Some("app"));
}

#[tokio::test]
async fn trusted_proxies_decide_whether_incoming_forwarded_for_is_kept() {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&backend, r#"trusted_proxies = ["127.0.2.0/24"]"#, "")).await;
    let incoming = [("X-Forwarded-For", "203.0.113.9")];

    let mut trusted = Connect::to(portico.addr(0)).source_ip("127.0.2.7").connect().await.unwrap();
    trusted.get_with("app.test", "/", &incoming).await.unwrap();
    assert_eq!(backend.last().header("x-forwarded-for"), Some("203.0.113.9, 127.0.2.7"));

    let mut untrusted = Connect::to(portico.addr(0)).source_ip("127.0.1.5").connect().await.unwrap();
    untrusted.get_with("app.test", "/", &incoming).await.unwrap();
    assert_eq!(backend.last().header("x-forwarded-for"), Some("127.0.1.5"));

    untrusted.get("app.test", "/").await.unwrap();
    assert_eq!(backend.last().header("x-forwarded-for"), Some("127.0.1.5"));
    trusted.get("app.test", "/").await.unwrap();
    assert_eq!(backend.last().header("x-forwarded-for"), Some("127.0.2.7"));
}

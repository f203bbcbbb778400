//! Virtual servers: several `[[server]]`s on one listen address, the
//! certificate picked by SNI, the server picked by Host, h2 clients, and
//! keep-alive on both sides.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use http::{StatusCode, Version};
use support::*;

/// One TLS-terminating virtual server for the tests below.
struct Site {
    names: &'static [&'static str],
    cert: TestCert,
    backend: TestBackend,
}

impl Site {
    async fn new(backend: &str, names: &'static [&'static str]) -> Site {
        Site { names, cert: TestCert::new(names), backend: TestBackend::spawn(backend).await }
    }
}

/// `sites` in order, all on one TLS listener `127.0.0.1:0`, each proxying to
/// its own backend; `default` (an index) gets `default_server = true`.
fn tls_config(sites: &[&Site], default: Option<usize>) -> String {
    let mut toml = String::new();
    for (i, site) in sites.iter().enumerate() {
        toml += &format!("[upstream.u{i}]\nservers = [\"{}\"]\n\n", site.backend.addr());
    }
    for (i, site) in sites.iter().enumerate() {
        let names: Vec<String> = site.names.iter().map(|n| format!("\"{n}\"")).collect();
        toml += &format!(
            "[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [{}]\ntls = {}\nproxy_pass = \"u{i}\"\n",
            names.join(", "),
            site.cert.toml_tls()
        );
        if default == Some(i) {
            toml += "default_server = true\n";
        }
        toml += "\n";
    }
    toml
}

/// The leaf certificate served for `sni` (no SNI when `sni` is an IP address).
async fn served_cert(addr: SocketAddr, sni: &str) -> rustls_pki_types::CertificateDer<'static> {
    let client = Connect::to(addr).tls_insecure(sni).connect().await.unwrap();
    client.peer_certificate().expect("a TLS server presents a certificate").clone()
}

#[tokio::test]
async fn sni_picks_the_certificate_for_exact_and_wildcard_names() {
    let a = Site::new("alpha", &["a.test"]).await;
    let b = Site::new("bravo", &["b.test", "www.b.test"]).await;
    let w = Site::new("wild", &["*.wild.test"]).await;
    let portico = start_portico(&tls_config(&[&a, &b, &w], None)).await;
    let addr = portico.addr(0);
    assert_eq!(portico.addrs().len(), 1, "three servers on one address share one listener");

    assert_eq!(&served_cert(addr, "a.test").await, a.cert.der());
    assert_eq!(&served_cert(addr, "b.test").await, b.cert.der());
    assert_eq!(&served_cert(addr, "www.b.test").await, b.cert.der());
    assert_eq!(&served_cert(addr, "x.wild.test").await, w.cert.der());
    assert_eq!(&served_cert(addr, "deep.x.wild.test").await, w.cert.der());
    // The bare domain is not covered by its wildcard: the default server's.
    assert_eq!(&served_cert(addr, "wild.test").await, a.cert.der());

    // A verifying client accepts each server for its name, and is routed to it.
    for (site, sni) in [(&a, "a.test"), (&b, "www.b.test"), (&w, "api.wild.test")] {
        let mut client = Client::https(addr, sni, &site.cert.roots(), &["http/1.1"]).await.unwrap();
        assert_eq!(client.peer_certificate(), Some(site.cert.der()));
        let reply = client.get(sni, "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), site.backend.name(), "SNI and Host {sni}");
    }
}

#[tokio::test]
async fn clients_get_aes_128_unless_they_put_chacha_first_and_are_served_either_way() {
    use rustls::CipherSuite;
    use rustls::crypto::aws_lc_rs::cipher_suite::*;

    let a = Site::new("alpha", &["a.test"]).await;
    let portico = start_portico(&tls_config(&[&a], None)).await;
    let cases = [
        // OpenSSL 3's order (curl, wrk): AES-256 first.
        (
            vec![TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_128_GCM_SHA256],
            CipherSuite::TLS13_AES_128_GCM_SHA256,
        ),
        // A client without AES hardware.
        (
            vec![TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_AES_128_GCM_SHA256],
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        ),
    ];
    for (suites, expected) in cases {
        let mut client =
            Connect::to(portico.addr(0)).tls("a.test", a.cert.roots()).cipher_suites(&suites).connect().await.unwrap();
        assert_eq!(client.tls().and_then(|tls| tls.suite), Some(expected));
        let reply = client.get("a.test", "/").await.unwrap();
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, a.backend.name().to_owned()));
    }
}

#[tokio::test]
async fn unknown_or_missing_sni_gets_the_first_declared_servers_certificate() {
    let a = Site::new("alpha", &["a.test"]).await;
    let b = Site::new("bravo", &["b.test"]).await;
    let portico = start_portico(&tls_config(&[&a, &b], None)).await;
    let addr = portico.addr(0);

    assert_eq!(&served_cert(addr, "unknown.test").await, a.cert.der());
    // An IP address as the name: rustls sends no SNI at all.
    assert_eq!(&served_cert(addr, "127.0.0.1").await, a.cert.der());
    assert_eq!(&served_cert(addr, "b.test").await, b.cert.der());
}

#[tokio::test]
async fn default_server_flag_picks_the_certificate_and_server_for_unknown_names() {
    let a = Site::new("alpha", &["a.test"]).await;
    let b = Site::new("bravo", &["b.test"]).await;
    let c = Site::new("charlie", &["c.test"]).await;
    let portico = start_portico(&tls_config(&[&a, &b, &c], Some(1))).await;
    let addr = portico.addr(0);

    assert_eq!(&served_cert(addr, "unknown.test").await, b.cert.der());
    assert_eq!(&served_cert(addr, "127.0.0.1").await, b.cert.der());
    assert_eq!(&served_cert(addr, "a.test").await, a.cert.der());
    assert_eq!(&served_cert(addr, "c.test").await, c.cert.der());

    let mut client = Connect::to(addr).tls_insecure("unknown.test").connect().await.unwrap();
    assert_eq!(client.get("unknown.test", "/").await.unwrap().text(), "bravo");
    assert_eq!(client.get("c.test", "/").await.unwrap().text(), "charlie");
    assert_eq!(client.get("a.test", "/").await.unwrap().text(), "alpha");
}

#[tokio::test]
async fn host_picks_the_server_on_a_tls_listener() {
    let a = Site::new("alpha", &["a.test"]).await;
    let b = Site::new("bravo", &["b.test"]).await;
    let w = Site::new("wild", &["*.wild.test"]).await;
    let portico = start_portico(&tls_config(&[&a, &b, &w], None)).await;
    let addr = portico.addr(0);

    let mut client = Client::https(addr, "a.test", &a.cert.roots(), &["http/1.1"]).await.unwrap();
    let cases = [
        ("a.test", "alpha"),
        ("b.test", "bravo"),
        ("B.Test", "bravo"),
        ("b.test:443", "bravo"),
        ("B.TEST:8443", "bravo"),
        ("b.test.", "bravo"),
        ("x.wild.test", "wild"),
        ("X.Wild.Test:443", "wild"),
        ("unknown.test", "alpha"),
        ("wild.test", "alpha"),
        ("127.0.0.1", "alpha"),
    ];
    for (host, expected) in cases {
        let reply = client.get(host, "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "Host {host}");
        assert_eq!(reply.text(), expected, "Host {host}");
    }
    assert_eq!(a.backend.count(), 4);
    assert_eq!(b.backend.count(), 5);
    assert_eq!(w.backend.count(), 2);
    // The Host the client sent goes upstream as sent.
    assert_eq!(b.backend.requests()[3].header("host"), Some("B.TEST:8443"));
}

#[tokio::test]
async fn plain_listener_routes_two_servers_by_host() {
    let a = TestBackend::spawn("alpha").await;
    let b = TestBackend::spawn("bravo").await;
    let toml = format!(
        r#"
[upstream.a]
servers = ["{}"]

[upstream.b]
servers = ["{}"]

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["a.test"]
proxy_pass = "a"

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["b.test", "*.b.test"]
proxy_pass = "b"
"#,
        a.addr(),
        b.addr()
    );
    let portico = start_portico(&toml).await;
    let addr = portico.addr(0);
    assert_eq!(portico.addrs().len(), 1);

    let mut client = Client::http1(addr).await.unwrap();
    for (host, expected) in [
        ("a.test", "alpha"),
        ("b.test", "bravo"),
        ("b.test:8080", "bravo"),
        ("B.TEST", "bravo"),
        ("api.b.test", "bravo"),
        ("A.Test:80", "alpha"),
        ("nobody.test", "alpha"),
    ] {
        let reply = client.get(host, "/").await.unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, expected), "Host {host}");
    }

    // HTTP/1.0 without any Host: the default server.
    let response = raw_request(addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&response), Some(200), "{}", String::from_utf8_lossy(&response));
    assert!(response.ends_with(b"alpha"), "{}", String::from_utf8_lossy(&response));
    // The HTTP/1.1 upstream still gets a Host: the server's name.
    assert_eq!(a.last().header("host"), Some("a.test"));
}

#[tokio::test]
async fn h2_client_reaches_the_http1_backend_with_a_host_header() {
    let a = Site::new("alpha", &["a.test"]).await;
    let b = Site::new("bravo", &["b.test"]).await;
    let portico = start_portico(&tls_config(&[&a, &b], None)).await;

    let mut client = Client::https(portico.addr(0), "b.test", &b.cert.roots(), &["h2", "http/1.1"]).await.unwrap();
    assert_eq!(client.version(), Version::HTTP_2);
    assert_eq!(client.tls().unwrap().alpn.as_deref(), Some(&b"h2"[..]));

    let reply = client.get("b.test", "/h2/path?q=1").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.text(), "bravo");
    let seen = b.backend.last();
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.header("host"), Some("b.test"));
    assert_eq!(seen.uri, "/h2/path?q=1");

    // The same h2 connection, another virtual host (:authority picks it).
    let reply = client.get("a.test", "/").await.unwrap();
    assert_eq!(reply.text(), "alpha");
    assert_eq!(a.backend.last().header("host"), Some("a.test"));

    // A streamed request body over h2 reaches the backend whole.
    let reply = client.post("b.test", "/upload", pattern(200_000)).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(b.backend.last().body_len, Some(200_000));
}

#[tokio::test]
async fn http1_keep_alive_on_both_sides_reuses_the_upstream_connection() {
    let backend = TestBackend::spawn("alpha").await;
    let toml = format!(
        r#"
[upstream.a]
servers = ["{}"]

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["a.test"]
proxy_pass = "a"
"#,
        backend.addr()
    );
    let portico = start_portico(&toml).await;

    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    for i in 0..5 {
        let reply = client.get("a.test", &format!("/r{i}")).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "alpha");
    }
    // A request with a body and one with a bigger streamed answer, too.
    assert_eq!(client.post("a.test", "/upload", pattern(100_000)).await.unwrap().status, StatusCode::OK);
    let reply = client.get("a.test", "/big?bytes=300000").await.unwrap();
    assert_eq!(reply.body.len(), 300_000);
    assert_eq!(client.get("a.test", "/last").await.unwrap().text(), "alpha");
    assert!(!client.is_closed(), "the client connection stays open between requests");

    // A second client connection later: the pooled upstream connection again.
    let mut second = Client::http1(portico.addr(0)).await.unwrap();
    assert_eq!(second.get("a.test", "/second").await.unwrap().text(), "alpha");

    let seen = backend.requests();
    assert_eq!(seen.len(), 9);
    let conns: Vec<u64> = seen.iter().map(|s| s.conn).collect();
    assert!(conns.iter().all(|&c| c == conns[0]), "upstream connection per request: {conns:?}");
    assert_eq!(backend.connections(), 1);
    assert!(seen.iter().all(|s| s.version == Version::HTTP_11));
}

/// `tls.protocols` on every server of an address: the versions its
/// handshakes offer, changed by a reload like the rest of the file.
#[tokio::test]
async fn tls_protocols_limit_the_versions_offered_and_follow_a_reload() {
    use rustls::ProtocolVersion;

    let a = Site::new("alpha", &["a.test"]).await;
    let b = Site::new("bravo", &["b.test"]).await;
    // Each server's `tls = { cert, key }` with the protocols added.
    let only = |protocols: &str| {
        tls_config(&[&a, &b], None).replace(" }\nproxy_pass", &format!(", protocols = {protocols} }}\nproxy_pass"))
    };
    let tls13 = only(r#"["TLSv1.3"]"#);
    assert_eq!(tls13.matches("protocols = [\"TLSv1.3\"]").count(), 2, "both servers name it:\n{tls13}");
    let mut portico = start_portico(&tls13).await;
    let addr = portico.addr(0);

    // A client that speaks TLS 1.2 only is refused for either name; one that
    // offers both gets TLS 1.3 and is served.
    for (site, sni) in [(&a, "a.test"), (&b, "b.test")] {
        let refused = Connect::to(addr).tls(sni, site.cert.roots()).tls12_only().connect().await;
        assert!(refused.is_err(), "{sni}: a TLS 1.2 client was served by a TLSv1.3-only listener");
        let mut client = Connect::to(addr).tls(sni, site.cert.roots()).connect().await.unwrap();
        assert_eq!(client.tls().and_then(|tls| tls.version), Some(ProtocolVersion::TLSv1_3));
        let reply = client.get(sni, "/").await.unwrap();
        assert_eq!((reply.status, reply.text()), (StatusCode::OK, site.backend.name().to_owned()));
    }

    // TLS 1.2 only, by reload: a client offering both now gets 1.2.
    portico.reload(&only(r#"["TLSv1.2"]"#)).unwrap();
    let mut client = Connect::to(addr).tls("a.test", a.cert.roots()).connect().await.unwrap();
    assert_eq!(client.tls().and_then(|tls| tls.version), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(client.get("a.test", "/").await.unwrap().status, StatusCode::OK);

    // Without the key, both again.
    portico.reload(&tls_config(&[&a, &b], None)).unwrap();
    let client = Connect::to(addr).tls("b.test", b.cert.roots()).tls12_only().connect().await.unwrap();
    assert_eq!(client.tls().and_then(|tls| tls.version), Some(ProtocolVersion::TLSv1_2));
    let client = Connect::to(addr).tls("b.test", b.cert.roots()).connect().await.unwrap();
    assert_eq!(client.tls().and_then(|tls| tls.version), Some(ProtocolVersion::TLSv1_3));
}

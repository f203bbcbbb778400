//! Who the client is when portico sits behind another balancer: a PROXY
//! protocol header from an L4 balancer (`proxy_protocol = true`), or a
//! header from an L7 proxy (`[runtime] real_ip_header`), believed only from
//! `trusted_proxies`. The client's address is then what the upstream is told,
//! what is logged, and what allow/deny and limit_req count. The balancers
//! here are clients bound to 127.0.5.x (trusted) and 127.0.6.x (not).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TRUSTED: &str = "127.0.5.1";
const UNTRUSTED: &str = "127.0.6.1";

fn v1(client: &str) -> Vec<u8> {
    let family = if client.contains(':') { "TCP6" } else { "TCP4" };
    let destination = if client.contains(':') { "::1" } else { "127.0.0.1" };
    format!("PROXY {family} {client} {destination} 50000 443\r\n").into_bytes()
}

/// A v2 header: PROXY for an IPv6 client, or LOCAL (a balancer's own check).
fn v2(client: Option<std::net::Ipv6Addr>) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match client {
        Some(ip) => {
            header.extend([0x21, 0x21, 0, 36]);
            header.extend(ip.octets());
            header.extend(std::net::Ipv6Addr::LOCALHOST.octets());
            header.extend([0xc3, 0x50, 0x01, 0xbb]);
        }
        None => header.extend([0x20, 0x00, 0, 0]),
    }
    header
}

/// One GET through a connection from `source` that begins with `preamble`;
/// the X-Forwarded-For the backend saw, or the status when it saw nothing.
async fn forwarded_for(
    portico: &Portico,
    backend: &TestBackend,
    source: &str,
    preamble: &[u8],
) -> Result<String, StatusCode> {
    let before = backend.count();
    let mut client = Connect::to(portico.addr(0)).source_ip(source).preamble(preamble).connect().await.unwrap();
    let reply = client.get("app.test", "/").await.unwrap();
    if backend.count() == before {
        return Err(reply.status);
    }
    Ok(backend.last().header("x-forwarded-for").unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_proxy_protocol_header_names_the_client() {
    let backend = TestBackend::spawn("app").await;
    let logs = TempDir::new("proxy-protocol");
    let toml = AppConfig::new(backend.addr())
        .runtime(r#"trusted_proxies = ["127.0.5.0/24"]"#)
        .server(&format!(
            "proxy_protocol = true\ndeny = [\"192.0.2.66\"]\naccess_log = {}\nerror_log = {}",
            toml_path(&logs.join("access.log")),
            toml_path(&logs.join("error.log"))
        ))
        .build();
    let portico = start_portico(&toml).await;

    // v1 and v2, from a trusted balancer: the header's client is the client.
    assert_eq!(forwarded_for(&portico, &backend, TRUSTED, &v1("192.0.2.7")).await.as_deref(), Ok("192.0.2.7"));
    let ipv6 = "2001:db8::7".parse().unwrap();
    assert_eq!(forwarded_for(&portico, &backend, TRUSTED, &v2(Some(ipv6))).await.as_deref(), Ok("2001:db8::7"));
    // The balancer's own connection (LOCAL), and an untrusted peer's claim:
    // the socket's address stands.
    assert_eq!(forwarded_for(&portico, &backend, TRUSTED, &v2(None)).await.as_deref(), Ok(TRUSTED));
    assert_eq!(forwarded_for(&portico, &backend, UNTRUSTED, &v1("192.0.2.7")).await.as_deref(), Ok(UNTRUSTED));
    // deny counts the header's client.
    assert_eq!(forwarded_for(&portico, &backend, TRUSTED, &v1("192.0.2.66")).await, Err(StatusCode::FORBIDDEN));
    assert_eq!(forwarded_for(&portico, &backend, UNTRUSTED, &v1("192.0.2.66")).await.as_deref(), Ok(UNTRUSTED));

    // The header holds for every request on its connection.
    let mut client =
        Connect::to(portico.addr(0)).source_ip(TRUSTED).preamble(&v1("192.0.2.8")).connect().await.unwrap();
    for _ in 0..2 {
        assert_eq!(client.get("app.test", "/").await.unwrap().status, StatusCode::OK);
        assert_eq!(backend.last().header("x-forwarded-for"), Some("192.0.2.8"));
    }

    // A header in pieces is read in exact steps, and nothing after it is lost.
    let mut stream = Connect::to(portico.addr(0)).source_ip(TRUSTED).tcp().await.unwrap();
    stream.write_all(b"PROXY TCP4 192.0.2.9 127.0.0.1").await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    stream.write_all(b" 50000 80\r\nGET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(backend.last().header("x-forwarded-for"), Some("192.0.2.9"));

    // A connection without the header is closed unanswered (and a warning
    // goes to the process's log).
    let before = backend.count();
    let mut stream = Connect::to(portico.addr(0)).source_ip(TRUSTED).tcp().await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    // Closed with the request unread: a reset, or an end, but no answer.
    if let Err(e) = stream.read_to_end(&mut answer).await {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(backend.count(), before);

    portico.shutdown().await;
    let access = std::fs::read_to_string(logs.join("access.log")).unwrap();
    let clients: Vec<&str> = access.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(
        clients,
        [
            "192.0.2.7",
            "2001:db8::7",
            TRUSTED,
            UNTRUSTED,
            "192.0.2.66",
            UNTRUSTED,
            "192.0.2.8",
            "192.0.2.8",
            "192.0.2.9"
        ],
        "{access}"
    );
    let errors = std::fs::read_to_string(logs.join("error.log")).unwrap();
    assert!(errors.contains("access forbidden by rule") && errors.contains("client: 192.0.2.66"), "{errors}");
}

#[tokio::test]
async fn the_header_comes_before_the_tls_handshake() {
    let cert = TestCert::new(&["app.test"]);
    let backend = TestBackend::spawn("app").await;
    let toml = AppConfig::new(backend.addr())
        .runtime(r#"trusted_proxies = ["127.0.5.0/24"]"#)
        .tls(Some(&cert))
        .server("proxy_protocol = true")
        .build();
    let portico = start_portico(&toml).await;
    for alpn in [&["h2"][..], &["http/1.1"]] {
        let mut client = Connect::to(portico.addr(0))
            .source_ip(TRUSTED)
            .preamble(&v2(Some("2001:db8::9".parse().unwrap())))
            .tls("app.test", cert.roots())
            .alpn(alpn)
            .connect()
            .await
            .unwrap();
        assert_eq!(client.get("app.test", "/").await.unwrap().status, StatusCode::OK, "{alpn:?}");
        let seen = backend.last();
        assert_eq!(seen.header("x-forwarded-for"), Some("2001:db8::9"), "{alpn:?}");
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{alpn:?}");
    }
    portico.shutdown().await;
}

/// GET from `source` with `X-Forwarded-For: xff`; what the backend saw as
/// `(X-Real-IP, X-Forwarded-For)`, or the status when it saw nothing.
async fn real_ip(
    portico: &Portico,
    backend: &TestBackend,
    source: &str,
    xff: &str,
) -> Result<(String, String), StatusCode> {
    let before = backend.count();
    let mut client = Connect::to(portico.addr(0)).source_ip(source).connect().await.unwrap();
    let reply = client.get_with("app.test", "/", &[("x-forwarded-for", xff)]).await.unwrap();
    if backend.count() == before {
        return Err(reply.status);
    }
    let seen = backend.last();
    let header = |name| seen.header(name).unwrap_or_default().to_owned();
    Ok((header("x-real-ip"), header("x-forwarded-for")))
}

#[tokio::test]
async fn real_ip_header_believes_only_trusted_proxies() {
    let backend = TestBackend::spawn("app").await;
    let logs = TempDir::new("real-ip");
    let config = |recursive: bool| {
        AppConfig::new(backend.addr())
            .runtime(&format!(
                "trusted_proxies = [\"127.0.5.0/24\"]\nreal_ip_header = \"X-Forwarded-For\"\nreal_ip_recursive = {recursive}"
            ))
            .server(&format!(
                r#"deny = ["192.0.2.66"]
access_log = {}
limit_req = {{ zone = "one", nodelay = true }}

[server.headers]
X-Real-IP = "$remote_addr"
X-Forwarded-For = "$proxy_add_x_forwarded_for"

[limit_req.one]
rate = "1r/m""#,
                toml_path(&logs.join("access.log"))
            ))
            .build()
    };
    let mut portico = start_portico(&config(true)).await;
    let pair = |real: &str, xff: &str| Ok((real.to_owned(), xff.to_owned()));

    // From a trusted proxy: the rightmost address that is not a trusted
    // proxy is the client. X-Forwarded-For still ends with the proxy that
    // sent the request, as it would without real_ip_header.
    assert_eq!(
        real_ip(&portico, &backend, TRUSTED, "198.51.100.1, 192.0.2.7, 127.0.5.9").await,
        pair("192.0.2.7", "198.51.100.1, 192.0.2.7, 127.0.5.9, 127.0.5.1")
    );
    // From anyone else the header is not believed (and, as without
    // real_ip_header, not passed on either).
    assert_eq!(real_ip(&portico, &backend, UNTRUSTED, "192.0.2.8").await, pair(UNTRUSTED, UNTRUSTED));
    // What is not an address leaves the proxy as the client.
    assert_eq!(real_ip(&portico, &backend, "127.0.5.2", "unknown").await, pair("127.0.5.2", "unknown, 127.0.5.2"));
    // allow/deny and limit_req count the client the header names.
    assert_eq!(real_ip(&portico, &backend, "127.0.5.3", "192.0.2.66").await, Err(StatusCode::FORBIDDEN));
    assert_eq!(real_ip(&portico, &backend, TRUSTED, "192.0.2.7").await, Err(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(real_ip(&portico, &backend, TRUSTED, "192.0.2.10").await, pair("192.0.2.10", "192.0.2.10, 127.0.5.1"));

    // Without recursion the rightmost address is the client, trusted or not.
    portico.reload(&config(false)).unwrap();
    assert_eq!(
        real_ip(&portico, &backend, TRUSTED, "192.0.2.11, 127.0.5.9").await,
        pair("127.0.5.9", "192.0.2.11, 127.0.5.9, 127.0.5.1")
    );

    portico.shutdown().await;
    let access = std::fs::read_to_string(logs.join("access.log")).unwrap();
    let clients: Vec<&str> = access.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(
        clients,
        ["192.0.2.7", UNTRUSTED, "127.0.5.2", "192.0.2.66", "192.0.2.7", "192.0.2.10", "127.0.5.9"],
        "{access}"
    );
}

//! HTTPS upstreams: trust from `ca_file`, the name from `tls_server_name`
//! (SNI and certificate check), `tls_verify = false`, the versions offered, a
//! client certificate presented (`tls_client_cert`), and failures as 502.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use http::StatusCode;
use support::*;

/// The HTTPS upstream "secure" of `backend` with the `upstream` settings, behind app.test.
fn config(backend: &TestBackend, upstream: &str) -> String {
    config_for(&format!("\"{}\"", backend.addr()), upstream)
}

/// The same with `servers` as the entries of its `servers` array.
fn config_for(servers: &str, upstream: &str) -> String {
    format!(
        r#"
[upstream.secure]
servers = [{servers}]
tls = true
{upstream}

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["app.test"]
proxy_pass = "secure"
"#
    )
}

async fn get(portico: &Portico, path: &str) -> Reply {
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.get("app.test", path)).await.expect("answer").unwrap()
}

#[tokio::test]
async fn ca_file_and_tls_server_name() {
    let cert = TestCert::new(&["backend.internal"]);
    let backend = TestBackend::spawn_tls("secure", &cert).await;
    let upstream = format!("ca_file = {}\ntls_server_name = \"backend.internal\"", toml_path(&cert.ca_path()));
    let portico = start_portico(&config(&backend, &upstream)).await;

    let reply = get(&portico, "/x?y=1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "secure");
    let seen = backend.last();
    assert_eq!(seen.sni.as_deref(), Some("backend.internal"));
    assert_eq!(seen.uri, "/x?y=1");
    // The Host is still the client's; only SNI and the checked name change.
    assert_eq!(seen.header("host"), Some("app.test"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));

    // A streamed body both ways over the upstream TLS connection.
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let request = client.request(http::Method::POST, "app.test", "/echo").body(pattern(3 << 20)).unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(verify_pattern(response.into_body()).await.unwrap(), 3 << 20);
}

#[tokio::test]
async fn certificate_for_the_ip_address_needs_no_server_name() {
    let cert = TestCert::new(&["127.0.0.1"]);
    let backend = TestBackend::spawn_tls("secure", &cert).await;
    let portico = start_portico(&config(&backend, &format!("ca_file = {}", toml_path(&cert.ca_path())))).await;

    let reply = get(&portico, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "secure");
    // An IP address is never sent as SNI.
    assert_eq!(backend.last().sni, None);
}

#[tokio::test]
async fn tls_verify_false_accepts_an_untrusted_certificate() {
    let cert = TestCert::new(&["somewhere.else"]);
    let backend = TestBackend::spawn_tls("secure", &cert).await;
    let portico = start_portico(&config(&backend, "tls_verify = false\ntls_server_name = \"named.test\"")).await;

    let reply = get(&portico, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "secure");
    assert_eq!(backend.last().sni.as_deref(), Some("named.test"));
}

#[tokio::test]
async fn system_roots_do_not_trust_the_test_certificate() {
    let cert = TestCert::new(&["backend.internal"]);
    let backend = TestBackend::spawn_tls("secure", &cert).await;
    let portico = start_portico(&config(&backend, "tls_server_name = \"backend.internal\"")).await;

    let reply = get(&portico, "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(backend.count(), 0);
}

#[tokio::test]
async fn wrong_ca_or_wrong_name_is_502() {
    let cert = TestCert::new(&["backend.internal"]);
    let other = TestCert::new(&["backend.internal"]);
    let backend = TestBackend::spawn_tls("secure", &cert).await;

    // Another CA.
    let upstream = format!("ca_file = {}\ntls_server_name = \"backend.internal\"", toml_path(&other.ca_path()));
    let portico = start_portico(&config(&backend, &upstream)).await;
    assert_eq!(get(&portico, "/").await.status, StatusCode::BAD_GATEWAY);

    // The right CA, a name the certificate does not have.
    let upstream = format!("ca_file = {}\ntls_server_name = \"other.internal\"", toml_path(&cert.ca_path()));
    let portico = start_portico(&config(&backend, &upstream)).await;
    assert_eq!(get(&portico, "/").await.status, StatusCode::BAD_GATEWAY);

    // The right CA, no tls_server_name: the name checked is the server's host, 127.0.0.1.
    let upstream = format!("ca_file = {}", toml_path(&cert.ca_path()));
    let portico = start_portico(&config(&backend, &upstream)).await;
    assert_eq!(get(&portico, "/").await.status, StatusCode::BAD_GATEWAY);

    assert_eq!(backend.count(), 0);
}

#[tokio::test]
async fn plain_http_to_a_tls_backend_is_502() {
    let cert = TestCert::new(&["backend.internal"]);
    let backend = TestBackend::spawn_tls("secure", &cert).await;
    let portico = start_portico(&format!(
        r#"
[upstream.plain]
servers = ["{}"]
read_timeout = "2s"

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["app.test"]
proxy_pass = "plain"
"#,
        backend.addr()
    ))
    .await;

    let reply = get(&portico, "/").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn upstream_tls_connections_are_kept_alive() {
    let cert = TestCert::new(&["backend.internal"]);
    let backend = TestBackend::spawn_tls("secure", &cert).await;
    let upstream = format!("ca_file = {}\ntls_server_name = \"backend.internal\"", toml_path(&cert.ca_path()));
    let portico = start_portico(&config(&backend, &upstream)).await;

    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    for _ in 0..4 {
        assert_eq!(client.get("app.test", "/").await.unwrap().text(), "secure");
    }
    assert_eq!(backend.count(), 4);
    assert_eq!(backend.connections(), 1, "{:?}", backend.requests().iter().map(|s| s.conn).collect::<Vec<_>>());
}

/// `clients` kept-alive clients at once, each making `each` requests that
/// must all be answered by the backend named "secure".
async fn concurrent_gets(portico: &Portico, clients: usize, each: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let addr = portico.addr(0);
        tasks.spawn(async move {
            let mut client = Client::http1(addr).await.unwrap();
            for _ in 0..each {
                assert_eq!(client.get("app.test", "/").await.unwrap().text(), "secure");
            }
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(30), tasks.join_all()).await;
    all.expect("every client answered within 30 s");
}

/// Concurrent clients: a connection given back after its response serves the
/// next request rather than being replaced, so the backend sees at most one
/// connection per request in flight (each new one is a TLS handshake).
#[tokio::test]
async fn upstream_tls_connections_are_reused_under_concurrency() {
    const CLIENTS: usize = 16;
    let cert = TestCert::new(&["backend.internal"]);
    let backend = TestBackend::spawn_tls("secure", &cert).await;
    let upstream = format!("tls_verify = false\nkeepalive = {CLIENTS}");
    let portico = start_portico(&config(&backend, &upstream)).await;

    concurrent_gets(&portico, CLIENTS, 25).await;

    assert_eq!(backend.count(), CLIENTS * 25);
    // At most one connection per concurrent request, each kept for the next.
    assert!(backend.connections() <= CLIENTS as u64, "{} upstream connections", backend.connections());
}

/// `keepalive` is per server, but shared over the upstream like nginx's
/// cache: with its partner down, one server takes all the requests and keeps
/// a connection for each one in flight instead of closing and reopening them.
#[tokio::test]
async fn idle_connections_follow_the_traffic_between_servers() {
    const CLIENTS: usize = 4;
    let cert = TestCert::new(&["backend.internal"]);
    let backend = TestBackend::spawn_tls("secure", &cert).await;
    let partner = TestBackend::spawn_tls("partner", &cert).await;
    let servers = format!("\"{}\", {{ address = \"{}\", down = true }}", backend.addr(), partner.addr());
    let portico =
        start_portico(&config_for(&servers, &format!("tls_verify = false\nkeepalive = {}", CLIENTS / 2))).await;

    concurrent_gets(&portico, CLIENTS, 25).await;

    assert_eq!((backend.count(), partner.count()), (CLIENTS * 25, 0));
    assert!(backend.connections() <= CLIENTS as u64, "{} upstream connections", backend.connections());
}

/// Concurrent load over two servers, in rounds: every client sends at once,
/// and all are answered before the next round, so each round ends with every
/// connection idle and three times as many of them (12) as `keepalive` ×
/// servers (4). The pool keeps that surplus while it is in use, however large
/// (h2 clients with many streams make it large), and closes it once unused,
/// instead of closing a few connections at the end of each round and opening
/// as many (a TLS handshake each) in the next: under real load those moments
/// come hundreds of times a second.
#[tokio::test]
async fn a_surplus_of_idle_connections_in_use_is_kept() {
    const CLIENTS: usize = 12;
    const ROUNDS: usize = 50;
    let cert = TestCert::new(&["backend.internal"]);
    let one = TestBackend::spawn_tls("secure", &cert).await;
    let two = TestBackend::spawn_tls("secure", &cert).await;
    let servers = format!("\"{}\", \"{}\"", one.addr(), two.addr());
    let portico = start_portico(&config_for(&servers, "tls_verify = false\nkeepalive = 2")).await;

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Client::http1(portico.addr(0)).await.unwrap());
    }
    for _ in 0..ROUNDS {
        clients = every_client_gets_once(clients).await;
    }
    assert_eq!(one.count() + two.count(), CLIENTS * ROUNDS);
    // One connection per request of a round (6 to each server), none replaced.
    assert_eq!((one.connections(), two.connections()), (6, 6));

    // Unused for a second (SURPLUS_GRACE), the surplus is closed, down to the
    // budget of 4, with no further request needed; the next round opens 8 again.
    let open = || one.open_connections() + two.open_connections();
    eventually("the surplus closed", Duration::from_secs(5), || open() <= 4).await;
    assert_eq!(open(), 4);
    every_client_gets_once(clients).await;
    assert_eq!(one.connections() + two.connections(), 20);
}

/// Every client sends one request at once; all are answered before it returns.
async fn every_client_gets_once(clients: Vec<Client>) -> Vec<Client> {
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        tasks.spawn(async move {
            assert_eq!(client.get("app.test", "/").await.unwrap().text(), "secure");
            client
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(30), tasks.join_all()).await;
    all.expect("every client answered within 30 s")
}

/// Each server of an HTTPS upstream resumes its own TLS sessions. Both here
/// answer to one name (`tls_server_name`), which a single session cache keyed
/// by name would offer each the other's sessions, making a full handshake of
/// every other new connection.
#[tokio::test]
async fn each_upstream_server_resumes_its_own_tls_sessions() {
    let cert = TestCert::new(&["backend.internal"]);
    let one = TestBackend::spawn_tls("one", &cert).await;
    let two = TestBackend::spawn_tls("two", &cert).await;
    let servers = format!("\"{}\", \"{}\"", one.addr(), two.addr());
    let upstream =
        format!("ca_file = {}\ntls_server_name = \"backend.internal\"\nkeepalive = 0", toml_path(&cert.ca_path()));
    let portico = start_portico(&config_for(&servers, &upstream)).await;

    // keepalive = 0: every request is a new TLS connection, alternating servers.
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    for _ in 0..10 {
        assert_eq!(client.get("app.test", "/").await.unwrap().status, StatusCode::OK);
    }
    assert_eq!((one.connections(), two.connections()), (5, 5));
    // The first connection to each is a full handshake; the others resume.
    assert_eq!((one.resumed(), two.resumed()), (4, 4));
}

/// `tls_protocols` limits the versions offered to the servers: a server that
/// speaks only the other one is a 502 (a handshake failure), one that speaks
/// it is served. Without the key, both are offered.
#[tokio::test]
async fn tls_protocols_limit_the_versions_offered_to_the_servers() {
    let cert = TestCert::new(&["127.0.0.1"]);
    let ca = format!("ca_file = {}", toml_path(&cert.ca_path()));
    let only12 = TestBackend::spawn_tls_only("tls12", &cert, &rustls::version::TLS12).await;
    let only13 = TestBackend::spawn_tls_only("tls13", &cert, &rustls::version::TLS13).await;

    for (backend, protocols, expected) in [
        (&only12, r#"tls_protocols = ["TLSv1.3"]"#, StatusCode::BAD_GATEWAY),
        (&only12, r#"tls_protocols = ["TLSv1.2"]"#, StatusCode::OK),
        (&only12, "", StatusCode::OK),
        (&only13, r#"tls_protocols = ["TLSv1.2"]"#, StatusCode::BAD_GATEWAY),
        (&only13, r#"tls_protocols = ["TLSv1.3", "TLSv1.2"]"#, StatusCode::OK),
    ] {
        let served = backend.count();
        let portico = start_portico(&config(backend, &format!("{ca}\n{protocols}"))).await;
        let reply = get(&portico, "/").await;
        assert_eq!(reply.status, expected, "{} with {protocols:?}", backend.name());
        let answered = usize::from(expected == StatusCode::OK);
        assert_eq!(backend.count(), served + answered, "{} with {protocols:?}", backend.name());
        if expected == StatusCode::OK {
            assert_eq!(reply.text(), backend.name());
        }
        portico.shutdown().await;
    }
}

#[tokio::test]
async fn tls_client_cert_is_presented_to_servers_that_ask_for_one() {
    let cert = TestCert::new(&["127.0.0.1"]);
    let member = TestCert::new(&["portico.lb"]);
    let stranger = TestCert::new(&["elsewhere"]);
    let backend = TestBackend::spawn_tls_config("mutual", cert.server_config_requiring(&member)).await;
    let ca = format!("ca_file = {}", toml_path(&cert.ca_path()));
    let client = |c: &TestCert| {
        format!("tls_client_cert = {}\ntls_client_key = {}", toml_path(&c.cert_path()), toml_path(&c.key_path()))
    };

    for (identity, expected) in [
        (String::new(), StatusCode::BAD_GATEWAY),
        (client(&stranger), StatusCode::BAD_GATEWAY),
        (client(&member), StatusCode::OK),
    ] {
        let served = backend.count();
        let portico = start_portico(&config(&backend, &format!("{ca}\n{identity}"))).await;
        let reply = get(&portico, "/").await;
        assert_eq!(reply.status, expected, "{identity:?}");
        assert_eq!(backend.count(), served + usize::from(expected == StatusCode::OK), "{identity:?}");
        portico.shutdown().await;
    }
}

/// A reload applies new TLS material toward the servers, also when the file
/// names stay the same and only their contents changed (a renewed client
/// certificate, a rotated CA file): each step below is a reload of the same
/// text over new file contents, and each answer shows the new files in use.
#[tokio::test]
async fn reload_applies_renewed_tls_files_under_the_same_names() {
    let cert = TestCert::new(&["127.0.0.1"]);
    let other_ca = TestCert::new(&["127.0.0.1"]);
    let member = TestCert::new(&["portico.lb"]);
    let stranger = TestCert::new(&["elsewhere"]);
    let backend = TestBackend::spawn_tls_config("mutual", cert.server_config_requiring(&member)).await;
    let dir = TempDir::new("renewed-tls");
    let (ca, lb_cert, lb_key) = (dir.join("ca.pem"), dir.join("lb.crt"), dir.join("lb.key"));
    let install = |trusted: &TestCert, identity: &TestCert| {
        std::fs::copy(trusted.ca_path(), &ca).unwrap();
        std::fs::copy(identity.cert_path(), &lb_cert).unwrap();
        std::fs::copy(identity.key_path(), &lb_key).unwrap();
    };
    let toml = config(
        &backend,
        &format!(
            "ca_file = {}\ntls_client_cert = {}\ntls_client_key = {}",
            toml_path(&ca),
            toml_path(&lb_cert),
            toml_path(&lb_key)
        ),
    );

    install(&cert, &stranger);
    let mut portico = start_portico(&toml).await;
    assert_eq!(get(&portico, "/").await.status, StatusCode::BAD_GATEWAY, "another CA's client certificate");
    for (trusted, identity, expected, step) in [
        (&cert, &member, StatusCode::OK, "client certificate renewed"),
        (&other_ca, &member, StatusCode::BAD_GATEWAY, "CA file rotated to one that does not sign the server"),
        (&cert, &member, StatusCode::OK, "CA file rotated back"),
        (&cert, &stranger, StatusCode::BAD_GATEWAY, "client certificate replaced by a stranger's"),
    ] {
        install(trusted, identity);
        portico.reload(&toml).unwrap();
        assert_eq!(get(&portico, "/").await.status, expected, "{step}");
    }
    portico.shutdown().await;
}

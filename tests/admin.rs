//! The admin endpoint: `/metrics` counts requests per server, upstream server
//! and status class and keeps them across reloads; `/status` shows each
//! upstream's servers; `/healthz` turns 503 while draining.
//!
//! Counters are process-wide and the tests in this file share a process, so
//! each test uses server and upstream names of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use support::*;

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n\n";

/// One server block on the shared test listener.
fn server(name: &str, upstream: &str) -> String {
    format!("[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"{name}\"]\nproxy_pass = \"{upstream}\"\n\n")
}

/// One upstream over `backends`; `extra` is appended inside the table.
fn upstream(name: &str, backends: &[SocketAddr], extra: &str) -> String {
    let servers: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[upstream.{name}]\nservers = [{}]\n{extra}\n", servers.join(", "))
}

fn server_requests(scrape: &Scrape, server: &str) -> f64 {
    scrape.get("portico_server_request_duration_seconds_count", &[("server", server)]).unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_requests_per_server_peer_and_status_class() {
    let a = TestBackend::spawn("A").await;
    let b = TestBackend::spawn("B").await;
    let toml = format!(
        "{ADMIN}{}{}{}{}",
        upstream("count_a", &[a.addr()], ""),
        upstream("count_b", &[b.addr()], ""),
        server("a.count.test", "count_a"),
        server("b.count.test", "count_b"),
    );
    let portico = start_portico(&toml).await;
    let admin = portico.admin_addr();
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    for path in ["/", "/x", "/status/404"] {
        client.get("a.count.test", path).await.unwrap();
    }
    for _ in 0..2 {
        assert_eq!(client.get("b.count.test", "/").await.unwrap().status, StatusCode::OK);
    }

    let m =
        scrape_until(admin, |m| server_requests(m, "a.count.test") + server_requests(m, "b.count.test") >= 5.0).await;
    let (a_addr, b_addr) = (a.addr().to_string(), b.addr().to_string());
    let requests = "portico_server_requests_total";
    assert_eq!(m.value(requests, &[("server", "a.count.test"), ("listen", "127.0.0.1:0"), ("code", "2xx")]), 2.0);
    assert_eq!(m.value(requests, &[("server", "a.count.test"), ("code", "4xx")]), 1.0);
    assert_eq!(m.value(requests, &[("server", "a.count.test"), ("code", "5xx")]), 0.0);
    assert_eq!(m.value(requests, &[("server", "b.count.test"), ("code", "2xx")]), 2.0);
    // The histogram saw every request, each in a bucket no later than +Inf.
    assert_eq!(server_requests(&m, "a.count.test") + server_requests(&m, "b.count.test"), 5.0);
    let bucket = "portico_server_request_duration_seconds_bucket";
    assert_eq!(m.value(bucket, &[("server", "a.count.test"), ("le", "+Inf")]), 3.0);
    assert_eq!(m.value(bucket, &[("server", "a.count.test"), ("le", "60")]), 3.0);
    assert!(m.value("portico_server_sent_bytes_total", &[("server", "b.count.test")]) >= 2.0);

    let responses = "portico_upstream_responses_total";
    assert_eq!(m.value(responses, &[("upstream", "count_a"), ("peer", &a_addr), ("code", "2xx")]), 2.0);
    assert_eq!(m.value(responses, &[("upstream", "count_a"), ("peer", &a_addr), ("code", "4xx")]), 1.0);
    assert_eq!(m.value(responses, &[("upstream", "count_b"), ("peer", &b_addr), ("code", "2xx")]), 2.0);
    assert_eq!(m.value("portico_upstream_selected_total", &[("upstream", "count_a")]), 3.0);
    assert_eq!(m.value("portico_upstream_failures_total", &[("upstream", "count_b")]), 0.0);
    assert_eq!(m.value("portico_upstream_up", &[("upstream", "count_a"), ("peer", &a_addr)]), 1.0);
    // Three requests to A and two to B, each upstream over one kept-alive connection.
    let opened = "portico_upstream_connections_opened_total";
    assert_eq!(m.value(opened, &[("upstream", "count_a"), ("peer", &a_addr)]), 1.0);
    assert_eq!(m.value(opened, &[("upstream", "count_b"), ("peer", &b_addr)]), 1.0);
    assert_eq!(m.value("portico_upstream_idle_connections", &[("upstream", "count_a"), ("peer", &a_addr)]), 1.0);
    // This instance's own gauges: one client connection is open.
    assert_eq!(m.value("portico_connections_active", &[]), 1.0);
    assert_eq!(m.value("portico_config_generation", &[]), 1.0);
    assert_eq!(m.value("portico_reloads_total", &[("result", "ok")]), 0.0);
    assert!(m.text.contains("# TYPE portico_server_request_duration_seconds histogram\n"), "{}", m.text);
    assert!(m.text.contains("# TYPE portico_server_requests_total counter\n"), "{}", m.text);
    portico.shutdown().await;
}

#[tokio::test]
async fn a_dead_upstream_counts_5xx_and_failures_and_shows_the_servers_failed() {
    // Bound, never listening: connecting is refused, and unlike a stopped
    // backend's port, no other test can take the address meanwhile.
    let (_d1, d1) = refusing_address();
    let (_d2, d2) = refusing_address();
    let toml = format!("{ADMIN}{}{}", upstream("dead", &[d1, d2], ""), server("dead.test", "dead"));
    let portico = start_portico(&toml).await;
    let admin = portico.admin_addr();
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    assert_eq!(client.get("dead.test", "/").await.unwrap().status, StatusCode::BAD_GATEWAY);

    let m = scrape_until(admin, |m| server_requests(m, "dead.test") >= 1.0).await;
    assert_eq!(m.value("portico_server_requests_total", &[("server", "dead.test"), ("code", "5xx")]), 1.0);
    for dead in [d1.to_string(), d2.to_string()] {
        let peer = [("upstream", "dead"), ("peer", dead.as_str())];
        assert_eq!(m.value("portico_upstream_failures_total", &peer), 1.0);
        assert_eq!(m.value("portico_upstream_up", &peer), 0.0);
        assert_eq!(m.value("portico_upstream_fails", &peer), 1.0);
        // Portico's own 502 is not a response of the server.
        assert_eq!(m.value("portico_upstream_responses_total", &[peer[0], peer[1], ("code", "5xx")]), 0.0);
    }

    let status = admin_get(admin, "/status").await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.header("content-type"), Some("text/html; charset=utf-8"));
    let page = status.text();
    assert!(page.contains("<h2>upstream dead</h2>"), "{page}");
    for dead in [d1, d2] {
        assert!(page.contains(&format!("<td>{dead}</td><td class=\"failed\">failed</td>")), "{page}");
    }
    portico.shutdown().await;
}

#[tokio::test]
async fn sticky_tables_are_counted_and_shown() {
    let app = TestBackend::spawn("app").await;
    let toml = format!(
        "{ADMIN}{}{}",
        upstream("sticky_up", &[app.addr()], "[upstream.sticky_up.sticky]\nlearn = \"JSESSIONID\"\n"),
        server("sticky.test", "sticky_up"),
    );
    let portico = start_portico(&toml).await;
    let admin = portico.admin_addr();
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let login = client.get("sticky.test", "/login").await.unwrap();
    let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    client.get_with("sticky.test", "/", &[("cookie", &cookie)]).await.unwrap();
    client.get_with("sticky.test", "/", &[("cookie", "JSESSIONID=unknown")]).await.unwrap();

    let m = scrape_until(admin, |m| server_requests(m, "sticky.test") >= 3.0).await;
    let up = [("upstream", "sticky_up")];
    assert_eq!(
        m.value("portico_sticky_learned_total", &up),
        2.0,
        "the login, and the unknown session seen going to app"
    );
    assert_eq!(m.value("portico_sticky_entries", &up), 2.0);
    assert_eq!(m.value("portico_sticky_hits_total", &up), 1.0);
    assert_eq!(m.value("portico_sticky_misses_total", &up), 1.0);
    assert_eq!(m.value("portico_sticky_evictions_total", &up), 0.0);
    assert_eq!(m.value("portico_sticky_expiries_total", &up), 0.0);
    assert!(m.value("portico_sticky_capacity", &up) > 0.0);

    let page = admin_get(admin, "/status").await.text();
    assert!(page.contains("sticky sessions: 2 of"), "{page}");
    assert!(page.contains("1 hits, 1 misses"), "{page}");
    portico.shutdown().await;
}

#[tokio::test]
async fn reloads_are_counted_and_counters_survive_them() {
    let a = TestBackend::spawn("A").await;
    let b = TestBackend::spawn("B").await;
    let config = |backend: &TestBackend, admin: &str| {
        format!(
            "[admin]\nlisten = \"{admin}\"\n\n{}{}",
            upstream("reload_up", &[backend.addr()], ""),
            server("reload.admin.test", "reload_up")
        )
    };
    let mut portico = start_portico(&config(&a, "127.0.0.1:0")).await;
    let admin = portico.admin_addr();
    for _ in 0..2 {
        let mut client = Client::http1(portico.addr(0)).await.unwrap();
        assert_eq!(client.get("reload.admin.test", "/").await.unwrap().text(), "A");
    }
    scrape_until(admin, |m| server_requests(m, "reload.admin.test") >= 2.0).await;

    portico.reload(&config(&b, "127.0.0.1:0")).unwrap();
    assert_eq!(portico.admin_addr(), admin, "an unchanged admin listen keeps its socket");
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    assert_eq!(client.get("reload.admin.test", "/").await.unwrap().text(), "B");

    let m = scrape_until(admin, |m| server_requests(m, "reload.admin.test") >= 3.0).await;
    assert_eq!(m.value("portico_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(m.value("portico_reloads_total", &[("result", "error")]), 0.0);
    assert_eq!(m.value("portico_config_generation", &[]), 2.0);
    assert_eq!(m.value("portico_server_requests_total", &[("server", "reload.admin.test"), ("code", "2xx")]), 3.0);
    let b_addr = b.addr().to_string();
    assert_eq!(m.value("portico_upstream_selected_total", &[("upstream", "reload_up"), ("peer", &b_addr)]), 1.0);
    let a_addr = a.addr().to_string();
    assert_eq!(m.get("portico_upstream_selected_total", &[("peer", &a_addr)]), None, "A left the configuration");

    // A reload that cannot bind is refused, counted, and changes nothing.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let broken =
        format!("{}[[server]]\nlisten = [\"{taken_addr}\"]\nproxy_pass = \"reload_up\"\n", config(&b, "127.0.0.1:0"));
    assert!(portico.reload(&broken).is_err());
    let m = scrape(admin).await;
    assert_eq!(m.value("portico_reloads_total", &[("result", "error")]), 1.0);
    assert_eq!(m.value("portico_config_generation", &[]), 2.0);

    // A new admin address is bound by the reload itself.
    portico.reload(&config(&b, "127.0.0.2:0")).unwrap();
    let moved = portico.admin_addr();
    assert_eq!(moved.ip().to_string(), "127.0.0.2");
    let m = scrape(moved).await;
    assert_eq!(m.value("portico_config_generation", &[]), 3.0);
    assert_eq!(m.value("portico_server_requests_total", &[("server", "reload.admin.test"), ("code", "2xx")]), 3.0);
    portico.shutdown().await;
}

#[tokio::test]
async fn healthz_not_found_and_method_not_allowed() {
    let app = TestBackend::spawn("app").await;
    let toml = format!("{ADMIN}{}{}", upstream("health_up", &[app.addr()], ""), server("health.test", "health_up"));
    let portico = start_portico(&toml).await;
    let admin = portico.admin_addr();

    let health = admin_get(admin, "/healthz").await;
    assert_eq!((health.status, health.text().as_str()), (StatusCode::OK, "ok\n"));
    assert_eq!(admin_get(admin, "/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(admin_get(admin, "/metrics/").await.status, StatusCode::NOT_FOUND);
    let mut client = Client::http1(admin).await.unwrap();
    let post = client.reply(client.request(Method::POST, "admin", "/metrics").body(body::empty()).unwrap()).await;
    let post = post.unwrap();
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET"));
    portico.shutdown().await;
}

#[tokio::test]
async fn healthz_answers_503_while_draining() {
    let app = TestBackend::spawn("app").await;
    let toml = format!("{ADMIN}{}{}", upstream("drain_up", &[app.addr()], ""), server("drain.test", "drain_up"));
    let portico = start_portico(&toml).await;
    let (addr, admin) = (portico.addr(0), portico.admin_addr());
    // A slow request keeps the drain going long enough to look at it.
    let slow = tokio::spawn(async move {
        let mut client = Client::http1(addr).await.unwrap();
        client.get("drain.test", "/slow?ms=1500").await.unwrap().status
    });
    while app.count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut admin_client = Client::http1(admin).await.unwrap();
    let shutdown = tokio::spawn(portico.shutdown());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let status = admin_client.get("admin", "/healthz").await.unwrap().status;
        if status != StatusCode::OK || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(slow.await.unwrap(), StatusCode::OK, "the request in flight finishes");
    shutdown.await.unwrap();
}

/// A loopback address that refuses connections for as long as the socket lives.
fn refusing_address() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A self-signed certificate for `name` valid until `not_after` (Unix
/// seconds), written into `dir` as `NAME.crt` and `NAME.key`; its `tls = { ... }`.
fn certificate_until(dir: &TempDir, name: &str, not_after: u64) -> String {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(not_after);
    let key = rcgen::KeyPair::generate().unwrap();
    let (cert_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert_path, params.self_signed(&key).unwrap().pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    format!("{{ cert = {}, key = {} }}", toml_path(&cert_path), toml_path(&key_path))
}

#[tokio::test]
async fn certificate_expiry_is_a_gauge_that_follows_a_renewal() {
    let app = TestBackend::spawn("app").await;
    let dir = TempDir::new("expiry");
    let config = |tls: &str| {
        format!(
            "{ADMIN}{}[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"tls.expiry.test\"]\ntls = {tls}\n\
             proxy_pass = \"expiry_up\"\n\n{}",
            upstream("expiry_up", &[app.addr()], ""),
            server("plain.expiry.test", "expiry_up").replace("127.0.0.1:0", "127.0.0.2:0"),
        )
    };
    let mut portico = start_portico(&config(&certificate_until(&dir, "tls.expiry.test", 1_935_360_000))).await;
    let admin = portico.admin_addr();
    const EXPIRY: &str = "portico_server_certificate_expiry_timestamp_seconds";

    let m = scrape(admin).await;
    assert_eq!(m.value(EXPIRY, &[("server", "tls.expiry.test")]), 1_935_360_000.0, "2031-05-01 00:00 UTC");
    assert_eq!(m.get(EXPIRY, &[("server", "plain.expiry.test")]), None, "a plain server has no certificate");
    assert!(m.text.contains(&format!("# TYPE {EXPIRY} gauge\n")), "{}", m.text);
    let page = admin_get(admin, "/status").await.text();
    assert!(page.contains("<tr><td>tls.expiry.test</td><td>127.0.0.1:"), "{page}");
    assert!(page.contains("<td>2031-05-01 00:00 UTC</td>"), "{page}");
    assert!(!page.contains("plain.expiry.test</td><td>127.0.0.2"), "a plain server has no certificate: {page}");

    // The renewed certificate, written over the old one, counts from the reload.
    portico.reload(&config(&certificate_until(&dir, "tls.expiry.test", 1_966_982_400))).unwrap();
    let m = scrape(admin).await;
    assert_eq!(m.value(EXPIRY, &[("server", "tls.expiry.test")]), 1_966_982_400.0, "2032-05-01 00:00 UTC");
    portico.shutdown().await;
}

#[tokio::test]
async fn status_marks_a_certificate_that_ends_within_the_warning_days() {
    let app = TestBackend::spawn("app").await;
    let dir = TempDir::new("expiring");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let server = |name: &str, days: u64| {
        let tls = certificate_until(&dir, name, now + days * 86_400 + 3_600);
        format!(
            "[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"{name}\"]\ntls = {tls}\nproxy_pass = \"soon_up\"\n\n"
        )
    };
    let toml = format!(
        "{ADMIN}{}{}{}",
        upstream("soon_up", &[app.addr()], ""),
        server("soon.expiry.test", 5),
        server("later.expiry.test", 60)
    );
    let portico = start_portico(&toml).await;
    let page = admin_get(portico.admin_addr(), "/status").await.text();
    let row = |name: &str| {
        let at = page.find(&format!("<tr><td>{name}</td>")).unwrap_or_else(|| panic!("{name}: {page}"));
        page[at..].lines().next().unwrap_or_default().to_owned()
    };
    assert!(row("soon.expiry.test").ends_with("<td class=\"failed\">5</td></tr>"), "{page}");
    assert!(row("later.expiry.test").ends_with("<td>60</td></tr>"), "{page}");
    portico.shutdown().await;
}

//! Active health checks (`[upstream.NAME.health_check]`): a server whose
//! checks fail takes no traffic until they pass again, without a client
//! request failing on the way; `mandatory` holds a server back until its first
//! check passes; a reload keeps the verdicts; checks speak the upstream's TLS;
//! sticky sessions leave a server the checks took out.
//!
//! Readiness comes from `/metrics` (`portico_upstream_health_check_passing`),
//! which turns once portico has acted on a check's answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

/// Checks every 50 ms that fail only on a real failure: a check's timeout
/// defaults to its interval, which a loaded test machine can overrun.
const CHECK_50MS: &str = "uri = \"/health\"\ninterval = \"50ms\"\ntimeout = \"5s\"";

/// `[upstream.app]` over `backends` with `[upstream.app.health_check]` lines
/// `check`, behind app.test, with an admin listener.
fn config(backends: &[&TestBackend], upstream: &str, check: &str) -> String {
    let servers: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr())).collect();
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[upstream.app]
servers = [{}]
{upstream}

[upstream.app.health_check]
{check}

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["app.test"]
proxy_pass = "app"
"#,
        servers.join(", ")
    )
}

/// Waits (up to 10 s) until `/metrics` says the checks pass `backend`
/// (`passing`) or do not.
async fn wait_passing(portico: &Portico, backend: &TestBackend, passing: bool) {
    let line = format!(
        "portico_upstream_health_check_passing{{upstream=\"app\",peer=\"{}\"}} {}",
        backend.addr(),
        u8::from(passing)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = portico.admin_text("/metrics").await;
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {line:?} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `n` requests, each on a new connection; every one must be a 200.
async fn send(portico: &Portico, n: usize) {
    for _ in 0..n {
        let mut client = Client::http1(portico.addr(0)).await.unwrap();
        let reply = client.get("app.test", "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn failing_checks_take_a_server_out_and_passing_ones_bring_it_back() {
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    let portico = start_portico(&config(&[&a, &b], "", CHECK_50MS)).await;
    wait_passing(&portico, &b, true).await;

    b.set_health(503);
    wait_passing(&portico, &b, false).await;
    let before = (a.traffic(), b.traffic());
    send(&portico, 10).await;
    assert_eq!((a.traffic(), b.traffic()), (before.0 + 10, before.1), "b takes nothing while failing");

    let status = portico.admin_text("/status").await;
    assert!(status.contains("<td class=\"unhealthy\">unhealthy</td>"), "{status}");
    assert!(status.contains(&format!("{}: GET /health: status 503 Service Unavailable", b.addr())), "{status}");
    let metrics = portico.admin_text("/metrics").await;
    let failed =
        format!("portico_upstream_health_checks_total{{upstream=\"app\",peer=\"{}\",result=\"failed\"}} ", b.addr());
    assert!(metrics.lines().any(|l| l.starts_with(&failed) && !l.ends_with(" 0")), "{metrics}");
    assert!(metrics.contains(&format!("portico_upstream_up{{upstream=\"app\",peer=\"{}\"}} 0", b.addr())), "{metrics}");

    b.set_health(200);
    wait_passing(&portico, &b, true).await;
    let before = b.traffic();
    send(&portico, 10).await;
    assert_eq!(b.traffic(), before + 5, "round robin gives b its half again");

    // What a check sends: GET of the uri, Host the server's address (no
    // tls_server_name), a User-Agent naming portico, no keep-alive.
    let check = b.requests().into_iter().find(|seen| seen.uri.path() == "/health").unwrap();
    assert_eq!(check.method, http::Method::GET);
    assert_eq!(check.header("host"), Some(b.addr().to_string().as_str()));
    assert!(check.header("user-agent").is_some_and(|ua| ua.starts_with("portico/")), "{check:?}");
    assert_eq!(check.header("connection"), Some("close"));
    portico.shutdown().await;
}

/// `fails = 3`: the first scrape that shows b taken out counts at least 3
/// failed checks. (Scrapes come every few milliseconds and checks every 50,
/// so with `fails` ignored the scrape would show 1 or 2; a slow machine can
/// only make the count larger, never fail the test.)
#[tokio::test]
async fn fails_counts_failed_checks_in_a_row() {
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    let portico = start_portico(&config(&[&a, &b], "", &format!("{CHECK_50MS}\nfails = 3"))).await;
    wait_passing(&portico, &b, true).await;
    b.set_health(500);
    let failed =
        format!("portico_upstream_health_checks_total{{upstream=\"app\",peer=\"{}\",result=\"failed\"}} ", b.addr());
    let out = format!("portico_upstream_health_check_passing{{upstream=\"app\",peer=\"{}\"}} 0", b.addr());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = portico.admin_text("/metrics").await;
        let count: u64 = text.lines().find_map(|l| l.strip_prefix(&failed)).unwrap().parse().unwrap();
        if text.lines().any(|l| l == out) {
            assert!(count >= 3, "taken out after {count} failed checks");
            break;
        }
        assert!(Instant::now() < deadline, "never taken out:\n{text}");
    }
    portico.shutdown().await;
}

#[tokio::test]
async fn a_server_that_does_not_answer_or_refuses_fails_its_checks() {
    let (a, b, c) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await, TestBackend::spawn("c").await);
    let portico =
        start_portico(&config(&[&a, &b, &c], "", "uri = \"/health\"\ninterval = \"50ms\"\ntimeout = \"1s\"")).await;
    b.set_health(0);
    c.stop().await;
    wait_passing(&portico, &b, false).await;
    wait_passing(&portico, &c, false).await;
    let status = portico.admin_text("/status").await;
    assert!(status.contains(&format!("{}: GET /health: no answer within 1s", b.addr())), "{status}");
    assert!(status.contains(&format!("{}: GET /health: connect failed", c.addr())), "{status}");
    let before = a.traffic();
    send(&portico, 6).await;
    assert_eq!(a.traffic(), before + 6);
    portico.shutdown().await;
}

/// `mandatory`: a server takes no traffic before its first check has passed.
/// Here b's first check never ends (its `/health` does not answer, the
/// timeout is an hour), so b stays "checking"; without `mandatory` the same
/// b takes its share at once.
#[tokio::test]
async fn mandatory_holds_a_server_back_until_its_first_check_passes() {
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    b.set_health(0);
    let check = "uri = \"/health\"\ninterval = \"1h\"\ntimeout = \"1h\"";

    let portico = start_portico(&config(&[&a, &b], "", &format!("{check}\nmandatory = true"))).await;
    wait_passing(&portico, &a, true).await;
    send(&portico, 6).await;
    assert_eq!((a.traffic(), b.traffic()), (6, 0));
    let status = portico.admin_text("/status").await;
    assert!(status.contains("<td class=\"checking\">checking</td>"), "{status}");
    portico.shutdown().await;

    let portico = start_portico(&config(&[&a, &b], "", check)).await;
    send(&portico, 6).await;
    assert_eq!((a.traffic(), b.traffic()), (9, 3), "without mandatory b is passing from the start");
    portico.shutdown().await;
}

/// A reload that replaces the pool (a changed health_check) keeps each
/// server's verdict: b, failed, takes no traffic and a, passed under
/// `mandatory`, keeps taking it, though neither has been checked by the new
/// configuration (its checks wait an hour for their answer).
#[tokio::test]
async fn a_reload_keeps_the_verdicts() {
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    let fast = "uri = \"/health\"\ninterval = \"20ms\"\ntimeout = \"5s\"\nmandatory = true";
    let mut portico = start_portico(&config(&[&a, &b], "", fast)).await;
    wait_passing(&portico, &a, true).await;
    b.set_health(503);
    wait_passing(&portico, &b, false).await;

    // A kept-alive connection holds the old configuration until its next
    // request: its checks must stop all the same.
    let mut kept = Client::http1(portico.addr(0)).await.unwrap();
    assert_eq!(kept.get("app.test", "/").await.unwrap().status, StatusCode::OK);
    let hanging = "uri = \"/health?ms=3600000\"\ninterval = \"1h\"\ntimeout = \"1h\"\nmandatory = true";
    portico.reload(&config(&[&a, &b], "", hanging)).unwrap();
    let before = (a.traffic(), b.traffic());
    send(&portico, 6).await;
    assert_eq!((a.traffic(), b.traffic()), (before.0 + 6, before.1));

    // The old configuration's checks stopped: its 20 ms interval would have
    // asked b again many times in this pause (there is no event for "nothing
    // more happened"), the new one's single check of b is still waiting.
    let asked = b.requests().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.requests().len() <= asked + 1, "{} more checks after the reload", b.requests().len() - asked);
    assert!(!kept.is_closed());
    portico.shutdown().await;
}

/// Checks speak the upstream's TLS: SNI and Host from `tls_server_name`,
/// trust from `ca_file`. A server whose certificate the upstream does not
/// trust fails its checks with the handshake as the reason.
#[tokio::test]
async fn checks_use_the_upstream_tls_settings() {
    let cert = TestCert::new(&["backend.internal"]);
    let stranger = TestCert::new(&["backend.internal"]);
    let good = TestBackend::spawn_tls("good", &cert).await;
    let bad = TestBackend::spawn_tls("bad", &stranger).await;
    let upstream =
        format!("tls = true\nca_file = {}\ntls_server_name = \"backend.internal\"", toml_path(&cert.ca_path()));
    let portico = start_portico(&config(&[&good, &bad], &upstream, CHECK_50MS)).await;
    wait_passing(&portico, &bad, false).await;
    wait_passing(&portico, &good, true).await;
    let check = good.requests().into_iter().find(|seen| seen.uri.path() == "/health").unwrap();
    assert_eq!(check.sni.as_deref(), Some("backend.internal"));
    assert_eq!(check.header("host"), Some("backend.internal"));
    let status = portico.admin_text("/status").await;
    assert!(status.contains(&format!("{}: GET /health: TLS handshake failed", bad.addr())), "{status}");
    send(&portico, 4).await;
    assert_eq!(good.traffic(), 4);
    portico.shutdown().await;
}

/// A sticky session whose server the checks take out moves to one that takes
/// traffic, as it does for a server down by passive health.
#[tokio::test]
async fn sticky_sessions_leave_a_server_the_checks_took_out() {
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    let sticky = "[upstream.app.sticky]\nlearn = \"JSESSIONID\"";
    let toml = config(&[&a, &b], "", CHECK_50MS).replace("[[server]]", &format!("{sticky}\n\n[[server]]"));
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let mut on_b = support::sessions::login(&mut client, "app.test").await;
    if on_b.node != "b" {
        on_b = support::sessions::login(&mut client, "app.test").await;
    }
    assert_eq!(on_b.node, "b", "round robin gives the second login to the other node");
    let node_for = |reply: Reply| reply.header("x-backend").unwrap_or_default().to_owned();
    let cookie = on_b.cookie();
    assert_eq!(node_for(client.get_with("app.test", "/page", &[("cookie", &cookie)]).await.unwrap()), "b");

    b.set_health(503);
    wait_passing(&portico, &b, false).await;
    for _ in 0..3 {
        assert_eq!(node_for(client.get_with("app.test", "/page", &[("cookie", &cookie)]).await.unwrap()), "a");
    }
    portico.shutdown().await;
}

/// At start, portico accepts once a mandatory upstream has a server that
/// passed: its first client is served, not answered 502, although the first
/// check takes 300 ms to answer.
#[tokio::test]
async fn start_waits_for_the_first_mandatory_pass() {
    let a = TestBackend::spawn("a").await;
    let check = "uri = \"/health?ms=300\"\ninterval = \"1h\"\nmandatory = true";
    let portico = start_portico(&config(&[&a], "", check)).await;
    send(&portico, 1).await;
    assert_eq!(a.traffic(), 1);
    portico.shutdown().await;
}

/// The start's wait for mandatory checks is one wait, not one per upstream:
/// with three upstreams whose only server never answers its check (timeout an
/// hour, so the start's own 5 s cap decides), portico starts after 5 s, not 15.
#[tokio::test]
async fn the_start_waits_once_for_all_mandatory_upstreams() {
    let backends = [TestBackend::spawn("a").await, TestBackend::spawn("b").await, TestBackend::spawn("c").await];
    let mut toml = String::new();
    for (name, backend) in ["one", "two", "three"].iter().zip(&backends) {
        backend.set_health(0);
        toml += &format!(
            "[upstream.{name}]\nservers = [\"{}\"]\n[upstream.{name}.health_check]\n\
             uri = \"/health\"\ninterval = \"1h\"\ntimeout = \"1h\"\nmandatory = true\n\n",
            backend.addr()
        );
    }
    toml += "[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"app.test\"]\nproxy_pass = \"one\"\n";
    let started = Instant::now();
    let portico = start_portico(&toml).await;
    let took = started.elapsed();
    // The cap (a lower bound a timer keeps), and well under two of them.
    assert!(took >= Duration::from_millis(4900) && took < Duration::from_secs(9), "start took {took:?}");
    portico.shutdown().await;
}

/// `port`: checks go to the server's host on the check's port, not to the
/// port that takes the traffic (a WSO2 node answering checks on its servlet
/// port beside its gateway port). The check port's answer alone decides: the
/// server goes out while its traffic port is healthy, and comes back.
#[tokio::test]
async fn a_check_port_of_its_own_decides_for_the_server() {
    let (a, servlet) = (TestBackend::spawn("a").await, TestBackend::spawn("a-servlet").await);
    let port = servlet.addr().port();
    // mandatory: a takes traffic only once a check on the other port passed.
    let check = format!("{CHECK_50MS}\nmandatory = true\nport = {port}");
    let portico = start_portico(&config(&[&a], "", &check)).await;
    wait_passing(&portico, &a, true).await;
    send(&portico, 2).await;
    assert_eq!(a.traffic(), 2);

    servlet.set_health(503);
    wait_passing(&portico, &a, false).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    assert_eq!(client.get("app.test", "/").await.unwrap().status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.traffic(), 2, "a takes nothing while its check port fails");
    let status = portico.admin_text("/status").await;
    assert!(status.contains(&format!("health checks: GET /health on port {port} every")), "{status}");
    assert!(
        status.contains(&format!("{}: GET /health on port {port}: status 503 Service Unavailable", a.addr())),
        "{status}"
    );

    servlet.set_health(200);
    wait_passing(&portico, &a, true).await;
    send(&portico, 2).await;
    assert_eq!(a.traffic(), 4);
    // Every check went to the other port, named in its Host.
    assert!(a.requests().iter().all(|seen| seen.uri.path() != "/health"), "{:?}", a.requests());
    assert_eq!(servlet.traffic(), 0);
    let check = servlet.requests().into_iter().find(|seen| seen.uri.path() == "/health").unwrap();
    assert_eq!(check.header("host"), Some(format!("127.0.0.1:{port}").as_str()));
    portico.shutdown().await;
}

/// A check port of its own speaks the upstream's TLS: SNI and Host from
/// `tls_server_name`, trust from `ca_file` (a plain check, or one naming
/// another server, would not pass there).
#[tokio::test]
async fn a_check_port_speaks_the_upstream_tls() {
    let cert = TestCert::new(&["backend.internal"]);
    let a = TestBackend::spawn_tls("a", &cert).await;
    let servlet = TestBackend::spawn_tls("a-servlet", &cert).await;
    let upstream =
        format!("tls = true\nca_file = {}\ntls_server_name = \"backend.internal\"", toml_path(&cert.ca_path()));
    let check = format!("{CHECK_50MS}\nmandatory = true\nport = {}", servlet.addr().port());
    let portico = start_portico(&config(&[&a], &upstream, &check)).await;
    wait_passing(&portico, &a, true).await;
    let check = servlet.requests().into_iter().find(|seen| seen.uri.path() == "/health").unwrap();
    assert_eq!(check.sni.as_deref(), Some("backend.internal"));
    assert_eq!(check.header("host"), Some("backend.internal"));
    send(&portico, 2).await;
    assert_eq!(a.traffic(), 2);
    assert!(a.requests().iter().all(|seen| seen.uri.path() != "/health"));
    portico.shutdown().await;
}

/// `[upstream.app.health_check]` lines that check `uri` every 50 ms, hold a
/// server back until its first check passes, and look for `UP` in the body.
fn body_check(uri: &str) -> String {
    format!("uri = \"{uri}\"\ninterval = \"50ms\"\ntimeout = \"5s\"\nmandatory = true\nbody = \"UP\"")
}

/// Waits (up to 10 s) until `/status` contains `text`.
async fn wait_status(portico: &Portico, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = portico.admin_text("/status").await;
        if status.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {text:?} in:\n{status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `body`: a check passes when its status passes and the body contains the
/// text. A 200 without it fails (the reason in `/status`), and so does a 503
/// with it. Content-Length and chunked bodies alike; the chunks are 3 bytes,
/// so that the text spans two of them.
#[tokio::test]
async fn a_body_check_passes_only_with_the_text_in_the_body() {
    for uri in ["/health", "/health?chunk=3"] {
        let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
        for backend in [&a, &b] {
            backend.set_health_body(r#"{"status":"UP"}"#);
        }
        let portico = start_portico(&config(&[&a, &b], "", &body_check(uri))).await;
        wait_passing(&portico, &b, true).await;

        b.set_health_body(r#"{"status":"DOWN"}"#);
        wait_passing(&portico, &b, false).await;
        let status = portico.admin_text("/status").await;
        assert!(status.contains(&format!("{}: GET {uri}: body lacks &quot;UP&quot;</p>", b.addr())), "{status}");
        assert!(status.contains(", the body to contain &quot;UP&quot;</p>"), "{status}");
        let before = (a.traffic(), b.traffic());
        send(&portico, 4).await;
        assert_eq!((a.traffic(), b.traffic()), (before.0 + 4, before.1), "{uri}: b takes nothing while failing");

        b.set_health(503);
        b.set_health_body(r#"{"status":"UP"}"#);
        wait_status(&portico, &format!("{}: GET {uri}: status 503 Service Unavailable", b.addr())).await;
        assert_eq!(b.traffic(), before.1, "{uri}");
        b.set_health(200);
        wait_passing(&portico, &b, true).await;
        portico.shutdown().await;
    }
}

/// A check reads at most the body's first 64 KiB: a text ending at its
/// 65536th byte is found, one ending a byte later is not, in a Content-Length
/// body and a chunked one.
#[tokio::test]
async fn a_body_check_reads_the_first_64_kib() {
    for uri in ["/health", "/health?chunk=1000"] {
        let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
        a.set_health_body(format!("{}UP", ".".repeat(65534)));
        b.set_health_body(format!("{}UP", ".".repeat(65535)));
        let portico = start_portico(&config(&[&a, &b], "", &body_check(uri))).await;
        wait_passing(&portico, &a, true).await;
        wait_passing(&portico, &b, false).await;
        let status = portico.admin_text("/status").await;
        assert!(
            status.contains(&format!("{}: GET {uri}: body lacks &quot;UP&quot; in its first 64 KiB", b.addr())),
            "{status}"
        );
        portico.shutdown().await;
    }
}

/// A check stops reading once the text shows, or once 64 KiB went by
/// without it: bodies that never end pass or fail at once, not at the
/// timeout (an hour here, so a check that read on would never end).
#[tokio::test]
async fn a_body_check_stops_reading_at_the_text_or_the_limit() {
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    a.set_health_body("UP");
    b.set_health_body(".".repeat(70_000));
    let check = body_check("/health?hang=1").replace("timeout = \"5s\"", "timeout = \"1h\"");
    let portico = start_portico(&config(&[&a, &b], "", &check)).await;
    wait_passing(&portico, &a, true).await;
    wait_passing(&portico, &b, false).await;
    let status = portico.admin_text("/status").await;
    assert!(
        status.contains(&format!("{}: GET /health?hang=1: body lacks &quot;UP&quot; in its first 64 KiB", b.addr())),
        "{status}"
    );
    portico.shutdown().await;
}

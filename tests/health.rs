//! Passive health and retries: failed servers are retried on the next one and
//! then skipped for `fail_timeout`; requests that were sent and cannot be
//! repeated are not retried; a single server is never marked down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What a `RawBackend` does once it has read a request head.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Mode {
    /// Closes the connection without a byte of answer.
    Close = 0,
    /// Writes something that is not HTTP, then closes.
    Garbage = 1,
    /// Answers `200 raw` and closes.
    Answer = 2,
}

/// A hand-written upstream: reads one request head per connection and then
/// behaves as its (switchable) mode says. Counts connections and heads.
struct RawBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: Arc<AtomicUsize>,
    mode: Arc<AtomicU8>,
    task: JoinHandle<()>,
}

impl RawBackend {
    async fn spawn(mode: Mode) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(AtomicU8::new(mode as u8));
        let (a, h, m) = (accepted.clone(), heads.clone(), mode.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let (h, m) = (h.clone(), m.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    match m.load(Ordering::SeqCst) {
                        0 => {}
                        1 => {
                            let _ = stream.write_all(b"this is not HTTP at all\r\n\r\n").await;
                        }
                        _ => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nraw")
                                .await;
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        RawBackend { addr, accepted, heads, mode, task }
    }

    fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn portico_toml(servers: &[String], extra_server_lines: &str) -> String {
    format!(
        "[upstream.pool]\nservers = [{}]\n\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"health.test\"]\nproxy_pass = \"pool\"\n{extra_server_lines}\n",
        servers.join(", ")
    )
}

fn server(addr: SocketAddr, options: &str) -> String {
    if options.is_empty() { format!("\"{addr}\"") } else { format!("{{ address = \"{addr}\", {options} }}") }
}

#[tokio::test]
async fn a_stopped_server_costs_the_client_nothing_and_is_tried_once() {
    let dir = TempDir::new("health");
    let error_log = dir.join("error.log");
    let dead = TestBackend::spawn("dead").await;
    let live = TestBackend::spawn("live").await;
    let dead_addr = dead.addr();
    dead.stop().await;
    let toml = portico_toml(
        &[server(dead_addr, "fail_timeout = \"10s\""), server(live.addr(), "")],
        &format!("error_log = {}", toml_path(&error_log)),
    );
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    for i in 0..50 {
        let reply = client.get("health.test", &format!("/{i}")).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "request {i}: {}", reply.text());
        assert_eq!(reply.text(), "live");
    }
    assert_eq!(live.count(), 50);

    // Shutdown flushes the log: every line of the 50 requests is in the file.
    portico.shutdown().await;
    let text = std::fs::read_to_string(&error_log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one failed attempt, then the dead server is skipped:\n{text}");
    assert!(lines[0].contains(&dead_addr.to_string()), "{text}");
}

#[tokio::test]
async fn a_failed_server_is_not_even_connected_to_within_fail_timeout() {
    let broken = RawBackend::spawn(Mode::Close).await;
    let live = TestBackend::spawn("live").await;
    let toml = portico_toml(&[server(broken.addr, "fail_timeout = \"10s\""), server(live.addr(), "")], "");
    let portico = start_portico(&toml).await;

    for i in 0..50 {
        // A new client connection each time: nothing rides on one connection's state.
        let mut client = Client::http1(portico.addr(0)).await.unwrap();
        let reply = client.get("health.test", &format!("/{i}")).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "request {i}: {}", reply.text());
        assert_eq!(reply.text(), "live");
    }

    assert_eq!(broken.accepted(), 1, "the broken server was connected to again within fail_timeout");
    assert_eq!(live.count(), 50);
}

#[tokio::test]
async fn a_sent_post_is_not_retried_but_a_get_is() {
    for mode in [Mode::Close, Mode::Garbage] {
        // POST with a body: the first server read it and failed -> 502, not repeated.
        let broken = RawBackend::spawn(mode).await;
        let live = TestBackend::spawn("live").await;
        let portico = start_portico(&portico_toml(&[server(broken.addr, ""), server(live.addr(), "")], "")).await;
        let mut client = Client::http1(portico.addr(0)).await.unwrap();
        let reply = client.post("health.test", "/upload", body::full("a body that must not be sent twice")).await;
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{mode:?}: POST answered {}", reply.text());
        assert_eq!(broken.heads(), 1, "{mode:?}");
        assert_eq!(live.count(), 0, "{mode:?}: the POST was repeated on the next server");
        portico.shutdown().await;

        // The same first failure for a GET: retried on the next server.
        let broken = RawBackend::spawn(mode).await;
        let live = TestBackend::spawn("live").await;
        let portico = start_portico(&portico_toml(&[server(broken.addr, ""), server(live.addr(), "")], "")).await;
        let mut client = Client::http1(portico.addr(0)).await.unwrap();
        // A repeated header and a custom one: the retry sends the head the
        // first attempt sent, kept aside because the first attempt consumed it.
        let sent = [("x-trace", "t-1"), ("accept", "text/plain"), ("accept", "application/json")];
        let reply = client.get_with("health.test", "/read", &sent).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{mode:?}: GET answered {}", reply.text());
        assert_eq!(reply.text(), "live");
        assert_eq!(broken.heads(), 1, "{mode:?}: the GET did not try the first server first");
        assert_eq!(live.count(), 1);
        let seen = live.last();
        assert_eq!(seen.header("x-trace"), Some("t-1"), "{mode:?}: {:?}", seen.headers);
        let accept: Vec<_> = seen.headers.get_all("accept").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(accept, ["text/plain", "application/json"], "{mode:?}");
        assert_eq!(seen.header("host"), Some("health.test"), "{mode:?}");
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "{mode:?}");
        assert_eq!(seen.headers.len(), 9, "{mode:?}: {:?}", seen.headers);
        portico.shutdown().await;
    }
}

#[tokio::test]
async fn a_single_server_pool_never_marks_its_server_down() {
    let only = RawBackend::spawn(Mode::Close).await;
    let portico = start_portico(&portico_toml(&[server(only.addr, "fail_timeout = \"10s\"")], "")).await;

    for i in 0..3 {
        let mut client = Client::http1(portico.addr(0)).await.unwrap();
        let reply = client.get("health.test", "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "failure {i}");
    }
    assert_eq!(only.heads(), 3, "each request reached the only server");

    only.set_mode(Mode::Answer);
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let reply = client.get("health.test", "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "the only server is back but was skipped: {}", reply.text());
    assert_eq!(reply.text(), "raw");
}

#[tokio::test]
async fn a_failed_server_of_two_is_skipped_even_when_it_is_back() {
    // The contrast to the single-server pool: with two servers, one failure
    // (max_fails = 1) takes it out for fail_timeout.
    let flaky = RawBackend::spawn(Mode::Close).await;
    let live = TestBackend::spawn("live").await;
    let toml = portico_toml(&[server(flaky.addr, "fail_timeout = \"10s\""), server(live.addr(), "")], "");
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    assert_eq!(client.get("health.test", "/").await.unwrap().text(), "live");
    assert_eq!(flaky.heads(), 1);

    flaky.set_mode(Mode::Answer);
    for _ in 0..10 {
        assert_eq!(client.get("health.test", "/").await.unwrap().text(), "live");
    }
    assert_eq!(flaky.accepted(), 1);
}

#[tokio::test]
async fn every_server_down_is_a_quick_502() {
    let a = RawBackend::spawn(Mode::Close).await;
    let b = RawBackend::spawn(Mode::Close).await;
    let toml = portico_toml(&[server(a.addr, "fail_timeout = \"10s\""), server(b.addr, "fail_timeout = \"10s\"")], "");
    let portico = start_portico(&toml).await;

    let started = Instant::now();
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let reply = client.get("health.test", "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!((a.heads(), b.heads()), (1, 1), "each server tried once");

    // Both are now down: the next requests fail at once, without a connection.
    for _ in 0..5 {
        let started = Instant::now();
        let mut client = Client::http1(portico.addr(0)).await.unwrap();
        let reply = client.get("health.test", "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
    }
    assert_eq!((a.accepted(), b.accepted()), (1, 1));
}

#[tokio::test]
async fn every_stopped_server_is_a_quick_502() {
    let a = TestBackend::spawn("a").await;
    let b = TestBackend::spawn("b").await;
    a.stop().await;
    b.stop().await;
    let toml = portico_toml(&[server(a.addr(), ""), server(b.addr(), "")], "");
    let portico = start_portico(&toml).await;
    for _ in 0..3 {
        let started = Instant::now();
        let mut client = Client::http1(portico.addr(0)).await.unwrap();
        let reply = client.get("health.test", "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn a_post_that_never_reached_the_first_server_goes_to_the_next() {
    let dead = TestBackend::spawn("dead").await;
    let live = TestBackend::spawn("live").await;
    dead.stop().await;
    let portico = start_portico(&portico_toml(&[server(dead.addr(), ""), server(live.addr(), "")], "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let reply = client.post("health.test", "/upload", pattern(100_000)).await.unwrap();

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), "live");
    assert_eq!(live.last().body_len, Some(100_000));
}

//! `sticky.learn`: sessions created by `/login` (the upstream's Set-Cookie) stay
//! on their node, found by cookie or `;jsessionid=` path parameter, for HTTP/1.1
//! and h2 clients and plain or HTTPS upstreams; a stopped or removed node's
//! sessions move and are rebound; the table evicts the least recently used,
//! forgets expired and deleted sessions, survives a reload, and a retried
//! request does not corrupt it.
//!
//! Round robin with equal weights never picks the same server twice in a row,
//! which makes "was the table consulted?" observable with one request: send a
//! request without a session until one lands on the session's node, then the
//! session's request. A remembered session goes to its node; a forgotten one is
//! balanced, which means to another node (`routed`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::sessions::{Session, login, nodes};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HOST: &str = "sticky.test";

/// A portico on `127.0.0.1:0` proxying to upstream `am` (`servers` are TOML
/// entries, verbatim) with `[upstream.am.sticky] learn = "JSESSIONID"` plus
/// `sticky` lines; `upstream` adds lines to the upstream table and `server` to
/// the virtual server.
fn config(servers: &[String], upstream: &str, sticky: &str, server: &str) -> String {
    format!(
        r#"
[upstream.am]
servers = [{}]
{upstream}

[upstream.am.sticky]
learn = "JSESSIONID"
{sticky}

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["{HOST}"]
proxy_pass = "am"
{server}
"#,
        servers.join(", ")
    )
}

/// `"ADDR"` entries for `config`.
fn plain(backends: &[&TestBackend]) -> Vec<String> {
    backends.iter().map(|b| format!("\"{}\"", b.addr())).collect()
}

/// `GET path` with `headers`; asserts 200 and returns the answering node.
async fn node_of(client: &mut Client, path: &str, headers: &[(&str, &str)]) -> String {
    let reply = client.get_with(HOST, path, headers).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "GET {path} {headers:?}: {}", reply.text());
    let node = reply.text();
    assert_eq!(reply.header("x-backend"), Some(node.as_str()), "GET {path}");
    node
}

/// Sends session-less requests until one is answered by `owner`, then
/// `GET path` with `headers`, and returns the node that answered that. Round
/// robin picks a node other than `owner` next, so the answer is `owner` only
/// if the sticky table sent the request there.
async fn routed(client: &mut Client, path: &str, headers: &[(&str, &str)], owner: &str) -> String {
    let mut probes = Vec::new();
    while probes.last().map(String::as_str) != Some(owner) {
        assert!(probes.len() < 8, "no probe reached {owner}: {probes:?}");
        probes.push(node_of(client, "/probe", &[]).await);
    }
    node_of(client, path, headers).await
}

/// `routed` with the session's cookie.
async fn routed_cookie(client: &mut Client, session: &Session, owner: &str) -> String {
    routed(client, "/app/page", &[("cookie", &session.cookie())], owner).await
}

async fn many_sessions(n: usize) {
    const SESSIONS: usize = 200;
    const FOLLOW_UPS: usize = 20;
    const CLIENTS: usize = 8;
    let backends = nodes(n).await;
    let portico = start_portico(&config(&plain(&backends.iter().collect::<Vec<_>>()), "", "", "")).await;
    let addr = portico.addr(0);
    let started = Instant::now();

    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = Client::http1(addr).await.unwrap();
                let mut sessions = Vec::new();
                for _ in 0..SESSIONS / CLIENTS {
                    sessions.push(login(&mut client, HOST).await);
                }
                // Interleaved: one follow-up of each session per round.
                let mut answers = vec![Vec::new(); sessions.len()];
                for _ in 0..FOLLOW_UPS {
                    for (session, answers) in sessions.iter().zip(&mut answers) {
                        let cookie = session.cookie();
                        answers.push(node_of(&mut client, "/app/page", &[("cookie", &cookie)]).await);
                    }
                }
                sessions.into_iter().zip(answers).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    eprintln!("{n} nodes: {SESSIONS} logins and {} follow-ups in {elapsed:?}", SESSIONS * FOLLOW_UPS);

    assert_eq!(results.len(), SESSIONS);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (session, answers) in &results {
        *per_node.entry(session.node.clone()).or_default() += 1;
        let strays: Vec<_> = answers.iter().enumerate().filter(|(_, a)| **a != session.node).collect();
        assert!(
            strays.is_empty(),
            "session {} of {} went elsewhere (index, node): {strays:?}",
            session.id,
            session.node
        );
    }
    // Round robin spread the logins evenly.
    assert_eq!(per_node.len(), n, "{per_node:?}");
    for (node, count) in &per_node {
        assert!(count.abs_diff(SESSIONS / n) <= 1, "{node} created {count} sessions: {per_node:?}");
    }
    // Every request is accounted for on the node that owns its session.
    for backend in &backends {
        let sessions = per_node[backend.name()];
        assert_eq!(backend.count(), sessions * (1 + FOLLOW_UPS), "{}", backend.name());
    }
}

#[tokio::test]
async fn two_hundred_sessions_stay_on_two_nodes() {
    many_sessions(2).await;
}

#[tokio::test]
async fn two_hundred_sessions_stay_on_three_nodes() {
    many_sessions(3).await;
}

/// `/app/page;jsessionid=VALUE?x=1` without a cookie, Tomcat's URL rewriting.
#[tokio::test]
async fn path_parameter_routes_to_the_node() {
    let backends = nodes(2).await;
    let portico = start_portico(&config(&plain(&[&backends[0], &backends[1]]), "", "", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(login(&mut client, HOST).await);
    }

    for session in &sessions {
        let owner = &session.node;
        for path in [
            format!("/app/page;jsessionid={}?x=1", session.id),
            format!("/app/page;JSESSIONID={}?x=1", session.id),
            format!("/app;JSessionId={}/page", session.id),
            format!("/app/page;v=2;jsessionid={};x=y", session.id),
        ] {
            assert_eq!(&routed(&mut client, &path, &[], owner).await, owner, "GET {path}");
            // Passed on as sent.
            let backend = backends.iter().find(|b| b.name() == owner).unwrap();
            assert_eq!(backend.last().uri, path.as_str());
        }
        let path = format!("/app/page;jsessionid={}?x=1", session.id);
        for _ in 0..20 {
            assert_eq!(&node_of(&mut client, &path, &[]).await, owner, "GET {path}");
        }
    }
}

/// The cookie's name is matched case-insensitively, among other cookies.
#[tokio::test]
async fn cookie_name_is_case_insensitive() {
    let backends = nodes(2).await;
    let portico = start_portico(&config(&plain(&[&backends[0], &backends[1]]), "", "", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    for _ in 0..10 {
        let session = login(&mut client, HOST).await;
        let owner = &session.node;
        for cookie in [
            format!("jsessionid={}", session.id),
            format!("_ga=GA1.2.3; JSessionId={}; XSRF-TOKEN=1", session.id),
            format!("JSESSIONID=\"{}\"", session.id),
        ] {
            assert_eq!(&routed(&mut client, "/app/page", &[("cookie", &cookie)], owner).await, owner, "{cookie}");
        }
        // A cookie whose name only contains the session cookie's is another cookie.
        let other = format!("XJSESSIONID={}", session.id);
        assert_ne!(&routed(&mut client, "/app/page", &[("cookie", &other)], owner).await, owner, "{other}");
    }
}

/// A stopped node's sessions move to a node that answers, with no failed
/// request, and are rebound there: with three nodes, they do not bounce
/// between the two that are left.
#[tokio::test]
async fn stopped_node_sessions_move_and_are_rebound() {
    let backends = nodes(3).await;
    let portico = start_portico(&config(&plain(&[&backends[0], &backends[1], &backends[2]]), "", "", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..30 {
        sessions.push(login(&mut client, HOST).await);
    }
    // Warm keep-alive connections to every node, the stopped one's included.
    for session in &sessions {
        assert_eq!(node_of(&mut client, "/app/page", &[("cookie", &session.cookie())]).await, session.node);
    }

    backends[0].stop().await;
    let stopped = backends[0].name();
    let mut moved: BTreeMap<String, String> = BTreeMap::new();
    for session in &sessions {
        let answer = node_of(&mut client, "/app/page", &[("cookie", &session.cookie())]).await;
        if session.node == stopped {
            assert_ne!(answer, stopped);
            moved.insert(session.id.clone(), answer);
        } else {
            assert_eq!(answer, session.node, "a session of a live node moved");
        }
    }
    assert_eq!(moved.len(), 10);
    // Both remaining nodes took some (round robin), so staying put means rebound.
    let takers: std::collections::BTreeSet<_> = moved.values().collect();
    assert_eq!(takers.len(), 2, "{moved:?}");

    for round in 0..5 {
        for session in &sessions {
            let owner = moved.get(&session.id).unwrap_or(&session.node);
            let answer = routed(&mut client, "/app/page", &[("cookie", &session.cookie())], owner).await;
            assert_eq!(
                &answer,
                owner,
                "round {round}: session of {} (moved: {:?})",
                session.node,
                moved.get(&session.id)
            );
        }
    }
}

/// A session value the table does not know is balanced, then belongs to the
/// node that answered it.
#[tokio::test]
async fn unknown_session_is_balanced_then_rebound() {
    let backends = nodes(2).await;
    let portico = start_portico(&config(&plain(&[&backends[0], &backends[1]]), "", "", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let mut first = Vec::new();
    for i in 0..6 {
        let cookie = format!("JSESSIONID=made-up-{i}");
        let node = node_of(&mut client, "/app/page", &[("cookie", &cookie)]).await;
        first.push((cookie, node));
    }
    // Balanced: round robin alternates.
    assert!(first.windows(2).all(|w| w[0].1 != w[1].1), "{first:?}");
    for (cookie, node) in &first {
        for _ in 0..5 {
            assert_eq!(&routed(&mut client, "/app/page", &[("cookie", cookie)], node).await, node, "{cookie}");
        }
    }
    // The same for a path parameter.
    let path = "/app/page;jsessionid=made-up-path";
    let node = node_of(&mut client, path, &[]).await;
    for _ in 0..5 {
        assert_eq!(routed(&mut client, path, &[], &node).await, node);
    }
}

/// `size = "25k"` holds 1024 sessions (25 bytes each), in two shards that each
/// evict their least recently used. 1024 sessions, then 100 of the middle ones
/// used, then 400 new: the used and the new ones stay, and so do the newest of
/// the old; the 100 oldest are forgotten (balanced, so sent elsewhere).
#[tokio::test]
async fn full_table_forgets_the_least_recently_used() {
    let backends = nodes(2).await;
    let portico = start_portico(&config(&plain(&[&backends[0], &backends[1]]), "", "size = \"25k\"", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let mut old = Vec::new();
    for _ in 0..1024 {
        old.push(login(&mut client, HOST).await);
    }
    let touched = &old[500..600];
    for session in touched {
        assert_eq!(node_of(&mut client, "/app/page", &[("cookie", &session.cookie())]).await, session.node);
    }
    let mut new = Vec::new();
    for _ in 0..400 {
        new.push(login(&mut client, HOST).await);
    }

    // Remembered: only lookups here, so nothing is learned or evicted.
    for (what, sessions) in [("used", touched), ("new", &new[..]), ("newest old", &old[924..])] {
        for session in sessions {
            let answer = routed_cookie(&mut client, session, &session.node).await;
            assert_eq!(answer, session.node, "{what} session {} was forgotten", session.id);
        }
    }
    // Forgotten (and then rebound, which evicts more of the old ones).
    let mut kept = Vec::new();
    for (i, session) in old[..100].iter().enumerate() {
        if routed_cookie(&mut client, session, &session.node).await == session.node {
            kept.push(i);
        }
    }
    assert!(kept.is_empty(), "of the 100 oldest sessions, these were still known: {kept:?}");
}

/// `timeout = "300ms"`: a session unused that long is forgotten (balanced, then
/// rebound); one used every 100 ms stays.
#[tokio::test]
async fn expired_session_falls_back() {
    let backends = nodes(2).await;
    let portico = start_portico(&config(&plain(&[&backends[0], &backends[1]]), "", "timeout = \"300ms\"", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let used = login(&mut client, HOST).await;
    let idle = login(&mut client, HOST).await;

    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(700) {
        // The timeout must really elapse; 100 ms between uses is a third of it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(routed_cookie(&mut client, &used, &used.node).await, used.node);
    }

    let moved = routed_cookie(&mut client, &idle, &idle.node).await;
    assert_ne!(moved, idle.node, "a session idle for 700 ms with timeout = 300ms was still known");
    // Rebound to the node that answered.
    assert_eq!(routed_cookie(&mut client, &idle, &moved).await, moved);
    assert_eq!(routed_cookie(&mut client, &used, &used.node).await, used.node);
}

/// Logs in 10 sessions over `client`, then checks each by cookie (split in two
/// Cookie headers, as h2 clients send them) and by path parameter.
async fn sessions_stick_over(client: &mut Client) {
    let mut sessions = Vec::new();
    for _ in 0..10 {
        sessions.push(login(client, HOST).await);
    }
    for session in &sessions {
        let owner = &session.node;
        let cookie = session.cookie();
        let headers = [("cookie", "_ga=GA1.2.3"), ("cookie", cookie.as_str()), ("cookie", "XSRF-TOKEN=1")];
        assert_eq!(&routed(client, "/app/page", &headers, owner).await, owner, "{cookie}");
        let path = format!("/app/page;jsessionid={}?x=1", session.id);
        assert_eq!(&routed(client, &path, &[], owner).await, owner, "{path}");
        for _ in 0..5 {
            assert_eq!(&node_of(client, "/app/page", &headers).await, owner);
        }
    }
}

/// h2 clients (ALPN on a TLS listener) to plain upstreams.
#[tokio::test]
async fn h2_client_sessions_stick() {
    let cert = TestCert::new(&[HOST]);
    let backends = nodes(2).await;
    let tls = format!("tls = {}", cert.toml_tls());
    let portico = start_portico(&config(&plain(&[&backends[0], &backends[1]]), "", "", &tls)).await;

    let mut h2 = Client::https(portico.addr(0), HOST, &cert.roots(), &["h2"]).await.unwrap();
    assert_eq!(h2.version(), http::Version::HTTP_2);
    sessions_stick_over(&mut h2).await;
    // And HTTP/1.1 over the same TLS listener.
    let mut h1 = Client::https(portico.addr(0), HOST, &cert.roots(), &["http/1.1"]).await.unwrap();
    assert_eq!(h1.version(), http::Version::HTTP_11);
    sessions_stick_over(&mut h1).await;
}

/// HTTPS upstreams (`tls = true`, `ca_file`), for HTTP/1.1 and h2 clients.
#[tokio::test]
async fn https_upstream_sessions_stick() {
    let backend_cert = TestCert::new(&["127.0.0.1"]);
    let a = TestBackend::spawn_tls("secure-a", &backend_cert).await;
    let b = TestBackend::spawn_tls("secure-b", &backend_cert).await;
    let cert = TestCert::new(&[HOST]);
    let upstream = format!("tls = true\nca_file = {}", toml_path(&backend_cert.ca_path()));
    let toml = config(&plain(&[&a, &b]), &upstream, "", "");
    // A plain and a TLS listener (another address: one is TLS or plain) on the same upstream.
    let toml = format!(
        "{toml}\n[[server]]\nlisten = [\"127.0.0.2:0\"]\nserver_name = [\"{HOST}\"]\nproxy_pass = \"am\"\ntls = {}\n",
        cert.toml_tls()
    );
    let portico = start_portico(&toml).await;

    let mut h1 = Client::http1(portico.addr(0)).await.unwrap();
    sessions_stick_over(&mut h1).await;
    let mut h2 = Client::https(portico.addr(1), HOST, &cert.roots(), &["h2"]).await.unwrap();
    assert_eq!(h2.version(), http::Version::HTTP_2);
    sessions_stick_over(&mut h2).await;
    assert!(a.count() > 0 && b.count() > 0);
}

/// A backend for retries: answers `x-backend: flaky` (and `/login` sets a
/// JSESSIONID) until `closing` is set; then it reads each request and closes
/// the connection without answering.
struct Flaky {
    addr: SocketAddr,
    closing: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Flaky {
    async fn spawn() -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let closing = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (closing.clone(), requests.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Flaky::serve(stream, c.clone(), r.clone()));
            }
        });
        Flaky { addr, closing, requests, accept }
    }

    async fn serve(mut stream: tokio::net::TcpStream, closing: Arc<AtomicBool>, requests: Arc<AtomicUsize>) {
        let _ = stream.set_nodelay(true);
        let mut buf = Vec::new();
        loop {
            // GET requests only: the head is the whole request.
            let end = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head: Vec<u8> = buf.drain(..end).collect();
            requests.fetch_add(1, Ordering::SeqCst);
            if closing.load(Ordering::SeqCst) {
                return;
            }
            let line = String::from_utf8_lossy(&head);
            let path = line.split(' ').nth(1).unwrap_or("/");
            let cookie = if path.ends_with("/login") {
                format!("Set-Cookie: JSESSIONID=flaky{:016X}; Path=/; HttpOnly\r\n", random_u64())
            } else {
                String::new()
            };
            let response = format!("HTTP/1.1 200 OK\r\nx-backend: flaky\r\n{cookie}content-length: 5\r\n\r\nflaky");
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A GET whose node closes the connection unanswered is retried on the other
/// node, and its session is rebound there: once the first node answers again
/// (`max_fails = 0` keeps it in use), the session stays on the second, while
/// the first node's other sessions stay on the first.
#[tokio::test]
async fn retried_request_rebinds_only_its_session() {
    let flaky = Flaky::spawn().await;
    let b = TestBackend::spawn("b").await;
    let servers = [format!("{{ address = \"{}\", max_fails = 0 }}", flaky.addr), format!("\"{}\"", b.addr())];
    let portico = start_portico(&config(&servers, "", "", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(login(&mut client, HOST).await);
    }
    let on_flaky: Vec<_> = sessions.iter().filter(|s| s.node == "flaky").cloned().collect();
    let on_b: Vec<_> = sessions.iter().filter(|s| s.node == "b").cloned().collect();
    assert_eq!((on_flaky.len(), on_b.len()), (4, 4), "{sessions:?}");
    for session in &sessions {
        assert_eq!(routed_cookie(&mut client, session, &session.node).await, session.node);
    }

    // The first flaky session's request is retried on b.
    flaky.closing.store(true, Ordering::SeqCst);
    let retried = &on_flaky[0];
    let before = flaky.requests();
    assert_eq!(node_of(&mut client, "/app/page", &[("cookie", &retried.cookie())]).await, "b");
    assert!(flaky.requests() > before, "the request did not try flaky first");
    // A login retried on b: the new session is b's, not flaky's.
    let before = flaky.requests();
    let mut retried_logins = Vec::new();
    while flaky.requests() == before {
        assert!(retried_logins.len() < 4, "no login was tried on flaky");
        retried_logins.push(login(&mut client, HOST).await);
    }
    assert!(retried_logins.iter().all(|s| s.node == "b"), "{retried_logins:?}");
    flaky.closing.store(false, Ordering::SeqCst);

    for round in 0..5 {
        let answer = routed_cookie(&mut client, retried, "b").await;
        assert_eq!(answer, "b", "round {round}: the retried session went back to flaky");
        for session in &retried_logins {
            assert_eq!(routed_cookie(&mut client, session, "b").await, "b", "round {round}: {session:?}");
        }
        for session in on_flaky[1..].iter().chain(&on_b) {
            let answer = routed_cookie(&mut client, session, &session.node).await;
            assert_eq!(answer, session.node, "round {round}: a session that was not retried moved");
        }
    }
}

/// Sessions learned before a reload that adds a node still stick; after a
/// reload that removes a node, its sessions are balanced and rebound.
#[tokio::test]
async fn table_survives_reload_for_servers_still_present() {
    let backends = nodes(3).await;
    let (a, b, c) = (&backends[0], &backends[1], &backends[2]);
    let mut portico = start_portico(&config(&plain(&[a, b]), "", "", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(login(&mut client, HOST).await);
    }
    drop(client);

    portico.reload(&config(&plain(&[a, b, c]), "", "", "")).unwrap();
    // Connections opened after the reload use the new configuration.
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    for session in &sessions {
        for _ in 0..3 {
            assert_eq!(routed_cookie(&mut client, session, &session.node).await, session.node, "{session:?}");
        }
    }
    // The new node gets sessions too.
    for _ in 0..9 {
        sessions.push(login(&mut client, HOST).await);
    }
    assert!(sessions.iter().any(|s| s.node == c.name()), "{sessions:?}");
    drop(client);

    // Remove a: its sessions fall back to b or c, and stay where they land.
    portico.reload(&config(&plain(&[b, c]), "", "", "")).unwrap();
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let a_count = a.count();
    let mut moved = BTreeMap::new();
    for session in sessions.iter().filter(|s| s.node == a.name()) {
        let answer = node_of(&mut client, "/app/page", &[("cookie", &session.cookie())]).await;
        moved.insert(session.id.clone(), answer);
    }
    assert!(moved.len() >= 10, "{moved:?}");
    let takers: std::collections::BTreeSet<_> = moved.values().cloned().collect();
    assert_eq!(takers.len(), 2, "the removed node's sessions were not balanced over b and c: {moved:?}");
    for round in 0..3 {
        for session in &sessions {
            let owner = moved.get(&session.id).unwrap_or(&session.node);
            let answer = routed_cookie(&mut client, session, owner).await;
            assert_eq!(&answer, owner, "round {round}: {session:?}, moved to {:?}", moved.get(&session.id));
        }
    }
    assert_eq!(a.count(), a_count, "the removed node got requests");
}

/// A response deleting the cookie (`Set-Cookie: JSESSIONID=; Max-Age=0`) makes
/// the table forget the session; deleting another cookie does not.
#[tokio::test]
async fn deleted_cookie_forgets_the_session() {
    let backends = nodes(2).await;
    let portico = start_portico(&config(&plain(&[&backends[0], &backends[1]]), "", "", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    for _ in 0..4 {
        let session = login(&mut client, HOST).await;
        let cookie = session.cookie();
        let owner = &session.node;

        let other = "/logout/headers?set=Set-Cookie:other=;%20Max-Age=0";
        let reply = client.get_with(HOST, other, &[("cookie", &cookie)]).await.unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, owner.as_str()));
        assert_eq!(reply.header("set-cookie"), Some("other=; Max-Age=0"));
        assert_eq!(&routed_cookie(&mut client, &session, owner).await, owner, "deleting another cookie forgot it");

        let logout = "/logout/headers?set=Set-Cookie:JSESSIONID=;%20Path=/;%20Max-Age=0";
        let reply = client.get_with(HOST, logout, &[("cookie", &cookie)]).await.unwrap();
        assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, owner.as_str()));
        assert_eq!(reply.header("set-cookie"), Some("JSESSIONID=; Path=/; Max-Age=0"));
        assert_ne!(&routed_cookie(&mut client, &session, owner).await, owner, "the deleted session is still known");
    }
}

/// A reload that marks a node `down = true`: its sessions fall back to the
/// others and are rebound; the other nodes' sessions stay.
#[tokio::test]
async fn down_node_sessions_fall_back_after_reload() {
    let backends = nodes(3).await;
    let (a, b, c) = (&backends[0], &backends[1], &backends[2]);
    let mut portico = start_portico(&config(&plain(&[a, b, c]), "", "", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..12 {
        sessions.push(login(&mut client, HOST).await);
    }
    drop(client);

    let servers =
        [format!("{{ address = \"{}\", down = true }}", a.addr()), plain(&[b])[0].clone(), plain(&[c])[0].clone()];
    portico.reload(&config(&servers, "", "", "")).unwrap();
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let a_count = a.count();
    let mut moved = BTreeMap::new();
    for session in sessions.iter().filter(|s| s.node == a.name()) {
        moved.insert(session.id.clone(), node_of(&mut client, "/app/page", &[("cookie", &session.cookie())]).await);
    }
    assert_eq!(moved.len(), 4, "{sessions:?}");
    let takers: std::collections::BTreeSet<_> = moved.values().cloned().collect();
    assert_eq!(takers.len(), 2, "{moved:?}");
    for round in 0..3 {
        for session in &sessions {
            let owner = moved.get(&session.id).unwrap_or(&session.node);
            let answer = routed_cookie(&mut client, session, owner).await;
            assert_eq!(&answer, owner, "round {round}: {session:?}, moved to {:?}", moved.get(&session.id));
        }
    }
    assert_eq!(a.count(), a_count, "the down node got requests");
}

/// `drain = true` (NGINX Plus's `drain`, for taking a node out of a cluster
/// without logging its users out): the sessions it holds keep going to it,
/// while new clients and session-less requests go to the others; only when no
/// other server can take a request does a draining one.
#[tokio::test]
async fn a_draining_server_keeps_its_sessions_and_takes_no_new_ones() {
    let (a, b) = (TestBackend::spawn("a").await, TestBackend::spawn("b").await);
    let entries =
        |b_extra: &str| vec![format!("\"{}\"", a.addr()), format!("{{ address = \"{}\"{b_extra} }}", b.addr())];
    let admin = |toml: String| format!("[admin]\nlisten = \"127.0.0.1:0\"\n{toml}");
    let mut portico = start_portico(&admin(config(&entries(""), "", "", ""))).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let mut sessions = [login(&mut client, HOST).await, login(&mut client, HOST).await];
    sessions.sort_by(|x, y| x.node.cmp(&y.node));
    assert_eq!([sessions[0].node.as_str(), sessions[1].node.as_str()], ["a", "b"]);

    portico.reload(&admin(config(&entries(", drain = true"), "", "", ""))).unwrap();
    let page = portico.admin_text("/status").await;
    assert!(page.contains(&format!("<td>{}</td><td class=\"draining\">draining</td>", b.addr())), "{page}");
    for _ in 0..4 {
        assert_eq!(node_of(&mut client, "/page", &[("cookie", &sessions[1].cookie())]).await, "b");
        assert_eq!(node_of(&mut client, "/page", &[("cookie", &sessions[0].cookie())]).await, "a");
        assert_eq!(node_of(&mut client, "/page", &[]).await, "a", "no new request for the draining b");
        assert_eq!(login(&mut client, HOST).await.node, "a", "no new session on the draining b");
    }

    // The last server up besides it: a draining server beats a 502.
    portico
        .reload(&admin(config(
            &[format!("{{ address = \"{}\", down = true }}", a.addr()), entries(", drain = true")[1].clone()],
            "",
            "",
            "",
        )))
        .unwrap();
    assert_eq!(node_of(&mut client, "/page", &[]).await, "b");
    portico.shutdown().await;
}

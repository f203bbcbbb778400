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

/// `n` backends named `node0`, `node1`, ...
async fn nodes(n: usize) -> Vec<TestBackend> {
    let mut backends = Vec::new();
    for i in 0..n {
        backends.push(TestBackend::spawn(&format!("node{i}")).await);
    }
    backends
}

/// A session as `/login` created it.
#[derive(Debug, Clone)]
struct Session {
    /// The JSESSIONID value.
    id: String,
    /// The node that created it.
    node: String,
}

impl Session {
    fn cookie(&self) -> String {
        format!("JSESSIONID={}", self.id)
    }
}

/// `GET /login`: the node that answered and the JSESSIONID it set.
async fn login(client: &mut Client) -> Session {
    let reply = client.get(HOST, "/login").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "/login: {}", reply.text());
    let node = reply.text();
    assert_eq!(reply.header("x-backend"), Some(node.as_str()));
    let set_cookie = reply.header("set-cookie").expect("/login passes on the Set-Cookie");
    let id = set_cookie
        .strip_prefix("JSESSIONID=")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("unexpected Set-Cookie {set_cookie:?}"));
    Session { id: id.to_owned(), node }
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
                    sessions.push(login(&mut client).await);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_stay_on_two_nodes() {
    many_sessions(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        sessions.push(login(&mut client).await);
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
        let session = login(&mut client).await;
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
        sessions.push(login(&mut client).await);
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_table_forgets_the_least_recently_used() {
    let backends = nodes(2).await;
    let portico = start_portico(&config(&plain(&[&backends[0], &backends[1]]), "", "size = \"25k\"", "")).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let mut old = Vec::new();
    for _ in 0..1024 {
        old.push(login(&mut client).await);
    }
    let touched = &old[500..600];
    for session in touched {
        assert_eq!(node_of(&mut client, "/app/page", &[("cookie", &session.cookie())]).await, session.node);
    }
    let mut new = Vec::new();
    for _ in 0..400 {
        new.push(login(&mut client).await);
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
    let used = login(&mut client).await;
    let idle = login(&mut client).await;

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

//! `[upstream.NAME.sticky] store`: two portico nodes in front of the same
//! backends share their sticky table through a real `redis-server` (started
//! here on a free loopback port, persistence off).
//!
//! - 200 sessions created through node A keep their backend when their
//!   follow-ups go through node B, also after A is shut down;
//! - with Redis stopped no request fails, sessions learned meanwhile stick on
//!   the node that learned them, and sharing resumes when Redis is back;
//! - a Redis that does not answer delays a request by `store_timeout` at most;
//! - a server Redis still names but the upstream no longer lists gets nothing;
//! - a reload with the same store settings keeps the store (and its connection);
//! - `rediss://` connects over TLS, checking Redis's certificate;
//! - bad store settings are configuration errors with a position.
//!
//! Needs `redis-server` on the PATH (Debian package `redis-server`, installed
//! by `.ci/run`); without it these tests fail, they do not skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::sessions::{Session, login, nodes};
use support::*;

const HOST: &str = "store.test";

/// A `redis-server` of this test's own, on a loopback port, killed on drop.
struct Redis {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl Redis {
    /// Starts a server on a free port and returns once it answers PING.
    fn start() -> Redis {
        // If the port is taken anyway (a leftover process), redis exits and
        // another port is tried.
        for _ in 0..5 {
            let port = child_port();
            let mut redis = Redis { port, child: None, dir: TempDir::new("redis") };
            if redis.spawn() {
                return redis;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts `redis-server` on `self.port`; false if it exited (port taken).
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed, and tests/sticky_store.rs needs a real one: \
                 apt-get install redis-server (.ci/run installs it)"
            ),
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            if self.answers_ping() {
                return true;
            }
            assert!(Instant::now() < deadline, "redis-server on port {} never answered PING", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else { return false };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(200)) else { return false };
        redis::cmd("PING").query::<String>(&mut connection).is_ok_and(|pong| pong == "PONG")
    }

    /// Kills the server (as a crash or an OOM kill would); its data is gone.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    fn restart(&mut self) {
        assert!(self.spawn(), "redis-server could not bind port {} again", self.port);
    }

    /// A synchronous connection for looking at or changing what portico wrote.
    fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection_with_timeout(Duration::from_secs(2)).unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node: admin on a free port, upstream `am` over `backends`, sticky on
/// JSESSIONID with `store` lines (`store = ...` and friends).
fn node_config(backends: &[&TestBackend], store: &str) -> String {
    let servers: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr())).collect();
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[upstream.am]
servers = [{}]

[upstream.am.sticky]
learn = "JSESSIONID"
timeout = "10m"
{store}

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["{HOST}"]
proxy_pass = "am"
"#,
        servers.join(", ")
    )
}

/// The store settings of most tests: a generous `store_timeout`, so that a
/// loaded CI machine (two cores, tests in parallel) does not turn a slow
/// answer into a misrouted session; `slow_redis_delays_no_request` shows
/// the timeout itself.
fn store_line(redis: &Redis) -> String {
    format!("store = \"{}\"\nstore_timeout = \"1s\"", redis.url())
}

/// Two portico nodes in front of `backends`, sharing the store `store`, both
/// connected to it.
async fn two_nodes(backends: &[&TestBackend], store: &str) -> (Portico, Portico) {
    let a = start_portico(&node_config(backends, store)).await;
    let b = start_portico(&node_config(backends, store)).await;
    wait_up(&a, true).await;
    wait_up(&b, true).await;
    (a, b)
}

/// `n` sessions created through `addr` by 8 clients at once.
async fn logins(addr: SocketAddr, n: usize) -> Vec<Session> {
    const CLIENTS: usize = 8;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(async move {
                let mut client = Client::http1(addr).await.unwrap();
                let mut sessions = Vec::new();
                for _ in (c..n).step_by(CLIENTS) {
                    sessions.push(login(&mut client, HOST).await);
                }
                sessions
            })
        })
        .collect();
    let mut sessions = Vec::new();
    for task in tasks {
        sessions.extend(task.await.unwrap());
    }
    assert_eq!(sessions.len(), n);
    sessions
}

/// One follow-up of each session through `addr`, 8 clients at once; every
/// answer must be 200. Returns the sessions that were answered by another
/// node than their own, with that node.
async fn strays(addr: SocketAddr, sessions: &[Session]) -> Vec<(Session, String)> {
    const CLIENTS: usize = 8;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mine: Vec<Session> = sessions.iter().skip(c).step_by(CLIENTS).cloned().collect();
            tokio::spawn(async move {
                let mut client = Client::http1(addr).await.unwrap();
                let mut strays = Vec::new();
                for session in mine {
                    let reply = client.get_with(HOST, "/app/page", &[("cookie", &session.cookie())]).await.unwrap();
                    assert_eq!(reply.status, StatusCode::OK, "follow-up of {session:?}: {}", reply.text());
                    let node = reply.text();
                    if node != session.node {
                        strays.push((session, node));
                    }
                }
                strays
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// `name{upstream="am"}` from the node's `/metrics`.
async fn metric(portico: &Portico, name: &str) -> f64 {
    let mut client = Client::http1(portico.admin_addr()).await.unwrap();
    let text = client.get("admin", "/metrics").await.unwrap().text();
    let series = format!("{name}{{upstream=\"am\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

/// Polls `/metrics` until `name` satisfies `ready`, for at most 15 s.
async fn wait_metric(portico: &Portico, name: &str, ready: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = metric(portico, name).await;
        if ready(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is still {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_up(portico: &Portico, up: bool) {
    wait_metric(portico, "portico_sticky_store_up", |v| v == f64::from(u8::from(up))).await;
}

/// Waits until the node has written at least `n` entries to Redis.
async fn wait_written(portico: &Portico, n: usize) {
    wait_metric(portico, "portico_sticky_store_writes_total", |v| v >= n as f64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_learned_on_one_node_stick_on_the_other() {
    let redis = Redis::start();
    let backends = nodes(3).await;
    let all: Vec<&TestBackend> = backends.iter().collect();
    let (a, b) = two_nodes(&all, &store_line(&redis)).await;

    let sessions = logins(a.addr(0), 200).await;
    wait_written(&a, 200).await;
    // Redis holds one key per session, none of them showing the session value.
    let keys: Vec<String> = redis::cmd("KEYS").arg("portico:sticky:am:*").query(&mut redis.connection()).unwrap();
    assert_eq!(keys.len(), 200);
    assert!(sessions.iter().all(|s| !keys.iter().any(|k| k.contains(&s.id))));
    // Each lives as long as an unused session does (timeout = "10m").
    let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query(&mut redis.connection()).unwrap();
    assert!((540_000..=600_000).contains(&ttl), "PTTL {ttl}");

    // Half the follow-ups reach B while A still runs...
    let (first, second) = sessions.split_at(100);
    assert_eq!(strays(b.addr(0), first).await, vec![]);
    // ...and all of them after A is gone (a failover to B).
    a.shutdown().await;
    assert_eq!(strays(b.addr(0), &sessions).await, vec![]);
    assert_eq!(strays(b.addr(0), second).await, vec![]);
    // B asked Redis once per session, then knew them.
    assert_eq!(metric(&b, "portico_sticky_store_lookups_total").await, 200.0);
    assert_eq!(metric(&b, "portico_sticky_store_lookup_hits_total").await, 200.0);
    assert_eq!(metric(&b, "portico_sticky_store_lookup_failures_total").await, 0.0);
    assert_eq!(metric(&b, "portico_sticky_hits_total").await, 200.0);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_no_request_and_sharing_resumes() {
    let mut redis = Redis::start();
    let backends = nodes(3).await;
    let all: Vec<&TestBackend> = backends.iter().collect();
    let (a, b) = two_nodes(&all, &store_line(&redis)).await;

    let before = logins(a.addr(0), 60).await;
    wait_written(&a, 60).await;
    assert_eq!(strays(b.addr(0), &before).await, vec![]);

    // Redis dies. Every request below must still be answered (strays and
    // logins assert 200 for each).
    redis.stop();
    let during = logins(a.addr(0), 60).await;
    assert_eq!(strays(a.addr(0), &during).await, vec![]);
    assert_eq!(strays(b.addr(0), &before).await, vec![], "B forgot what it had learned from Redis");
    wait_up(&a, false).await;
    wait_up(&b, false).await;
    // Down is known now: sessions learned and used while it lasts stick on
    // their node without any wait on Redis.
    let down = logins(a.addr(0), 60).await;
    let started = Instant::now();
    assert_eq!(strays(a.addr(0), &down).await, vec![]);
    assert_eq!(strays(a.addr(0), &before).await, vec![]);
    assert!(started.elapsed() < Duration::from_secs(5));
    let b_lookups = metric(&b, "portico_sticky_store_lookups_total").await;
    // B does not know `down`: it balances them without asking the dead Redis.
    let misrouted = strays(b.addr(0), &down).await;
    assert_eq!(metric(&b, "portico_sticky_store_lookups_total").await, b_lookups);
    assert!(!misrouted.is_empty(), "round robin over 3 nodes sent all 60 unknown sessions home");

    // Redis is back, empty: the stores reconnect and sharing resumes.
    redis.restart();
    wait_up(&a, true).await;
    wait_up(&b, true).await;
    let written = metric(&a, "portico_sticky_store_writes_total").await as usize;
    let after = logins(a.addr(0), 60).await;
    wait_written(&a, written + 60).await;
    assert_eq!(strays(b.addr(0), &after).await, vec![]);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_redis_delays_no_request() {
    let redis = Redis::start();
    let backends = nodes(2).await;
    let all: Vec<&TestBackend> = backends.iter().collect();
    let store = format!("store = \"{}\"\nstore_timeout = \"50ms\"", redis.url());
    let (a, b) = two_nodes(&all, &store).await;
    let sessions = logins(a.addr(0), 4).await;
    wait_written(&a, 4).await;

    // Redis holds every command for 3 s: B's questions go unanswered.
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(3000).arg("ALL").query(&mut redis.connection()).unwrap();
    let mut client = Client::http1(b.addr(0)).await.unwrap();
    for session in &sessions {
        let started = Instant::now();
        let reply = client.get_with(HOST, "/app/page", &[("cookie", &session.cookie())]).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1000), "a request waited {took:?} on a paused Redis");
    }
    assert!(metric(&b, "portico_sticky_store_lookup_failures_total").await >= 1.0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_server_named_in_redis_is_not_routed_to() {
    let redis = Redis::start();
    let backends = nodes(3).await;
    let [n0, n1, n2] = [&backends[0], &backends[1], &backends[2]];
    let (a, mut b) = two_nodes(&[n0, n1], &store_line(&redis)).await;

    let sessions = logins(a.addr(0), 20).await;
    wait_written(&a, 20).await;
    let on_n1: Vec<Session> = sessions.iter().filter(|s| s.node == "node1").cloned().collect();
    assert_eq!(on_n1.len(), 10);

    // B drops node1 (and gains node2); Redis still names node1 for these.
    b.reload(&node_config(&[n0, n2], &store_line(&redis))).unwrap();
    let n1_seen = n1.count();
    let strays = strays(b.addr(0), &on_n1).await;
    assert_eq!(strays.len(), on_n1.len(), "{strays:?}");
    assert_eq!(n1.count(), n1_seen, "node1 is not in B's upstream but got requests");
    assert_eq!(metric(&b, "portico_sticky_store_lookup_hits_total").await, 10.0);
    // B bound them to the servers that answered, and told Redis.
    wait_written(&b, 10).await;
    let mut connection = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("portico:sticky:am:*").query(&mut connection).unwrap();
    let servers: Vec<String> = keys.iter().map(|k| redis::cmd("GET").arg(k).query(&mut connection).unwrap()).collect();
    assert_eq!(servers.iter().filter(|s| **s == n1.addr().to_string()).count(), 0, "{servers:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_store_when_its_settings_stay() {
    let redis = Redis::start();
    let backends = nodes(2).await;
    let all: Vec<&TestBackend> = backends.iter().collect();
    let mut a = start_portico(&node_config(&all, &store_line(&redis))).await;
    wait_up(&a, true).await;
    logins(a.addr(0), 10).await;
    wait_written(&a, 10).await;

    // Another server list, same store settings: the same store, counts and all.
    let more = TestBackend::spawn("node2").await;
    a.reload(&node_config(&[&backends[0], &backends[1], &more], &store_line(&redis))).unwrap();
    assert_eq!(metric(&a, "portico_sticky_store_writes_total").await, 10.0);
    assert_eq!(metric(&a, "portico_sticky_store_up").await, 1.0);

    // Another prefix: a new store, whose keys live beside the old ones.
    let prefixed = format!("{}\nstore_prefix = \"cluster2:\"", store_line(&redis));
    a.reload(&node_config(&all, &prefixed)).unwrap();
    assert_eq!(metric(&a, "portico_sticky_store_writes_total").await, 0.0);
    wait_up(&a, true).await;
    logins(a.addr(0), 4).await;
    wait_written(&a, 4).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("cluster2:am:*").query(&mut redis.connection()).unwrap();
    assert_eq!(keys.len(), 4);
    let status = Client::http1(a.admin_addr()).await.unwrap().get("admin", "/status").await.unwrap().text();
    assert!(status.contains(&format!("sticky store {}: <span class=\"store-up\">up</span>", redis.url())), "{status}");
    a.shutdown().await;
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rediss://`: the portico binary (so that `SSL_CERT_FILE` can name the
/// trust roots, as it does for any rustls-native-certs user) reaches a
/// TLS-only redis-server whose self-signed certificate it trusts that way.
#[tokio::test]
async fn rediss_store_connects_over_tls() {
    let dir = TempDir::new("rediss");
    let bin = env!("CARGO_BIN_EXE_portico");
    let made = Command::new(bin).args(["cert", "--name", "localhost", "--out"]).arg(dir.path()).output().unwrap();
    assert!(made.status.success(), "portico cert: {}", String::from_utf8_lossy(&made.stderr));
    let (cert, key) = (dir.join("localhost.crt"), dir.join("localhost.key"));

    let port = child_port();
    let redis = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run redis-server (apt-get install redis-server): {e}"));
    let _redis = Killed(redis);
    // Listening means ready: redis binds once it has loaded its certificate.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server never listened on TLS port {port}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let admin = child_port();
    let config = dir.join("portico.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[upstream.am]\nservers = [\"127.0.0.1:9\"]\n\n\
             [upstream.am.sticky]\nlearn = \"JSESSIONID\"\nstore = \"rediss://localhost:{port}/0\"\n\n\
             [[server]]\nlisten = [\"127.0.0.1:0\"]\nproxy_pass = \"am\"\n"
        ),
    )
    .unwrap();
    let portico = Command::new(bin)
        .args(["run", "-c"])
        .arg(&config)
        .env("SSL_CERT_FILE", &cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _portico = Killed(portico);
    let admin: SocketAddr = ([127, 0, 0, 1], admin).into();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut client) = Client::http1(admin).await
            && let Ok(reply) = client.get("admin", "/metrics").await
            && reply.text().contains("portico_sticky_store_up{upstream=\"am\"} 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "portico never connected to rediss://localhost:{port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn bad_store_settings_are_config_errors() {
    let config = |sticky: &str| {
        format!(
            "[upstream.am]\nservers = [\"127.0.0.1:9\"]\n\n[upstream.am.sticky]\nlearn = \"JSESSIONID\"\n{sticky}\n\n\
             [[server]]\nlisten = [\"127.0.0.1:0\"]\nproxy_pass = \"am\"\n"
        )
    };
    let errors = |sticky: &str| match portico::config::parse_str(&config(sticky), Path::new("test.toml")) {
        Ok(_) => panic!("{sticky:?} was accepted"),
        Err(errors) => errors.to_string(),
    };
    let e = errors("store = \"http://127.0.0.1:6379\"");
    assert!(e.contains("test.toml:6:9: store: the URL must start with redis:// or rediss://, not http://"), "{e}");
    let e = errors("store = \"redis://:hunter2@127.0.0.1:6379/db0\"");
    assert!(e.contains("test.toml:6:9: store: the Redis client cannot use this URL (Invalid database number)"), "{e}");
    assert!(!e.contains("hunter2"), "the password is shown: {e}");
    let e = errors("store = \"redis://127.0.0.1:6379/0\"\nstore_timeout = \"0s\"");
    assert!(e.contains("test.toml:7:17: store_timeout = \"0s\""), "{e}");
    let e = errors("store = \"redis://127.0.0.1:6379/0\"\nstore_timeout = \"fast\"");
    assert!(e.contains("test.toml:7:17: store_timeout = \"fast\": expected a duration"), "{e}");
    let e = errors("store_prefix = \"x:\"");
    assert!(e.contains("test.toml:6:16: store_prefix only applies with a store"), "{e}");

    for good in
        ["store = \"rediss://:pw@redis.internal:6380/2\"", "store = \"redis://127.0.0.1\"\nstore_timeout = \"1s\""]
    {
        portico::config::parse_str(&config(good), Path::new("test.toml")).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

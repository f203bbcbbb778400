//! Balancing over real backends: round robin (plain and weighted), backup and
//! down servers, and ip_hash stickiness per client /24.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use http::StatusCode;
use support::*;

/// A portico on `127.0.0.1:0` proxying everything to upstream `pool`, whose
/// `servers = [...]` entries are `servers` (TOML, verbatim), plus `extra`
/// lines in the upstream table.
async fn proxy(servers: &[String], extra: &str) -> Portico {
    let toml = format!(
        "[upstream.pool]\nservers = [{}]\n{extra}\n\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nproxy_pass = \"pool\"\n",
        servers.join(", ")
    );
    start_portico(&toml).await
}

fn plain(backend: &TestBackend) -> String {
    format!("\"{}\"", backend.addr())
}

/// `GET /` on a fresh connection from `source`; returns the answering backend's name.
async fn get_from(addr: SocketAddr, source: &str) -> String {
    let mut client = Connect::to(addr).source_ip(source).connect().await.unwrap();
    let reply = client.get("balance.test", "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "request from {source}: {}", reply.text());
    reply.text()
}

#[tokio::test]
async fn round_robin_splits_evenly() {
    let a = TestBackend::spawn("a").await;
    let b = TestBackend::spawn("b").await;
    let portico = proxy(&[plain(&a), plain(&b)], "").await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let mut names = Vec::new();
    for i in 0..100 {
        let reply = client.get("balance.test", &format!("/{i}")).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        names.push(reply.text());
    }

    assert_eq!((a.count(), b.count()), (50, 50));
    // Round robin alternates rather than sending runs to one server.
    assert!(names.windows(2).all(|w| w[0] != w[1]), "{names:?}");
}

#[tokio::test]
async fn weights_two_to_one() {
    let a = TestBackend::spawn("a").await;
    let b = TestBackend::spawn("b").await;
    let servers = [
        format!("{{ address = \"{}\", weight = 2 }}", a.addr()),
        format!("{{ address = \"{}\", weight = 1 }}", b.addr()),
    ];
    let portico = proxy(&servers, "").await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    for _ in 0..99 {
        assert_eq!(client.get("balance.test", "/").await.unwrap().status, StatusCode::OK);
    }

    assert_eq!((a.count(), b.count()), (66, 33));
}

#[tokio::test]
async fn backup_only_when_every_primary_is_gone() {
    let a = TestBackend::spawn("a").await;
    let b = TestBackend::spawn("b").await;
    let backup = TestBackend::spawn("backup").await;
    let servers = [plain(&a), plain(&b), format!("{{ address = \"{}\", backup = true }}", backup.addr())];
    let portico = proxy(&servers, "").await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    for _ in 0..20 {
        let reply = client.get("balance.test", "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_ne!(reply.text(), "backup");
    }
    assert_eq!(backup.count(), 0);
    assert_eq!(a.count() + b.count(), 20);

    a.stop().await;
    b.stop().await;
    for i in 0..20 {
        let reply = client.get("balance.test", &format!("/after/{i}")).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "request {i} with the primaries stopped: {}", reply.text());
        assert_eq!(reply.text(), "backup");
    }
    assert_eq!(backup.count(), 20);
}

#[tokio::test]
async fn down_server_gets_nothing() {
    let a = TestBackend::spawn("a").await;
    let b = TestBackend::spawn("b").await;
    let c = TestBackend::spawn("c").await;
    let servers = [plain(&a), format!("{{ address = \"{}\", down = true }}", b.addr()), plain(&c)];
    let portico = proxy(&servers, "").await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    for _ in 0..30 {
        assert_eq!(client.get("balance.test", "/").await.unwrap().status, StatusCode::OK);
    }

    assert_eq!(b.count(), 0);
    assert_eq!(b.connections(), 0);
    assert_eq!((a.count(), c.count()), (15, 15));
}

#[tokio::test]
async fn ip_hash_keeps_a_slash_24_together() {
    let backends = [TestBackend::spawn("a").await, TestBackend::spawn("b").await, TestBackend::spawn("c").await];
    let servers: Vec<String> = backends.iter().map(plain).collect();
    let portico = proxy(&servers, "balance = \"ip_hash\"").await;

    for net in [1, 7, 23] {
        let mut chosen = BTreeSet::new();
        for host in [1, 2, 9, 77, 128, 200, 254] {
            chosen.insert(get_from(portico.addr(0), &format!("127.0.{net}.{host}")).await);
        }
        assert_eq!(chosen.len(), 1, "clients of 127.0.{net}.0/24 went to {chosen:?}");
    }
    // Every request came from a fresh connection: stickiness is per address.
    assert_eq!(backends.iter().map(TestBackend::count).sum::<usize>(), 21);
}

/// The server each 127.0.N.1 (N = 1..=40) lands on.
async fn assignment(addr: SocketAddr) -> BTreeMap<u8, String> {
    let mut map = BTreeMap::new();
    for net in 1..=40u8 {
        map.insert(net, get_from(addr, &format!("127.0.{net}.1")).await);
    }
    map
}

#[tokio::test]
async fn ip_hash_spreads_networks_and_moves_only_a_stopped_servers_clients() {
    let backends = [TestBackend::spawn("a").await, TestBackend::spawn("b").await, TestBackend::spawn("c").await];
    let servers: Vec<String> = backends.iter().map(plain).collect();
    let portico = proxy(&servers, "balance = \"ip_hash\"").await;

    let before = assignment(portico.addr(0)).await;
    for backend in &backends {
        let clients = before.values().filter(|name| *name == backend.name()).count();
        assert!(clients > 0, "no /24 of 40 landed on {}: {before:?}", backend.name());
    }
    // Asking again changes nothing.
    assert_eq!(assignment(portico.addr(0)).await, before);

    backends[1].stop().await;
    let after = assignment(portico.addr(0)).await;

    for (net, old) in &before {
        let new = &after[net];
        if old == "b" {
            assert_ne!(new, "b", "127.0.{net}.0/24 still on the stopped server");
        } else {
            assert_eq!(new, old, "127.0.{net}.0/24 moved although its server {old} is up");
        }
    }
}
